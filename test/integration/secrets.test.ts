// Secrets in environments, on a real node and engine: `berth secret set|ls|rm`, `berth new
// --secret`, and where the value must never be: the environment's variables, the memory of a
// process that received the variable, its files, describe, identity, snapshots, the node's
// log, its state on disk. Bad inputs get one line and their own exit code, and change nothing.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EnvInfo } from '../../src/core/api.js';
import type { SecretInfo } from '../../src/core/secrets.js';
import { headerOf, startEcho, TestCa, type EchoHost } from '../helpers/echo-hosts.js';
import { failureTracker, makeRepo, NodeFixture, testEngines } from '../helpers/fixture.js';
import { TestNetwork } from '../helpers/hosts.js';

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0]!, /^berth: /);
  return lines[0]!;
}

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/**
 * Run in the environment by its own node binary, which received the variable: scans every
 * readable mapping of its own memory (/proc/self/maps and /proc/self/mem) for the placeholder
 * and for the value. The value itself is never given to it: only its first four bytes and its
 * SHA-256, so the scanner cannot put the value into the memory it scans. The placeholder is
 * looked for the same way, which shows the scan finds what is there.
 */
const SCANNER = `
const fs = require('node:fs'), crypto = require('node:crypto');
const [prefixHex, valueHash, length, phPrefixHex, phHash, phLength] = process.argv.slice(1);
const probes = [
  { prefix: Buffer.from(prefixHex, 'hex'), hash: valueHash, length: Number(length), found: 0 },
  { prefix: Buffer.from(phPrefixHex, 'hex'), hash: phHash, length: Number(phLength), found: 0 },
];
const fd = fs.openSync('/proc/self/mem', 'r');
let scanned = 0;
for (const line of fs.readFileSync('/proc/self/maps', 'utf8').split('\\n')) {
  const m = /^([0-9a-f]+)-([0-9a-f]+) (r)/.exec(line);
  if (!m || line.includes('[vvar]') || line.includes('[vsyscall]')) continue;
  const start = BigInt('0x' + m[1]), end = BigInt('0x' + m[2]);
  for (let at = start; at < end; at += 1048576n) {
    const n = Number(end - at < 1048576n ? end - at : 1048576n);
    const buf = Buffer.alloc(n + 256);
    let got = 0;
    try { got = fs.readSync(fd, buf, 0, Math.min(n + 256, Number(end - at)), at); } catch { continue; }
    scanned += got;
    const view = buf.subarray(0, got);
    for (const p of probes) {
      for (let i = view.indexOf(p.prefix); i >= 0 && i + p.length <= got; i = view.indexOf(p.prefix, i + 1)) {
        if (crypto.createHash('sha256').update(view.subarray(i, i + p.length)).digest('hex') === p.hash) p.found++;
      }
    }
  }
}
console.log(JSON.stringify({ value: probes[0].found, placeholder: probes[1].found, scanned }));
`;

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

for (const engine of testEngines()) {
  describe(`secrets on ${engine}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    const tracker = failureTracker();
    const track = tracker.track;
    // Random per run, so nothing else anywhere can hold it by chance.
    const VALUE = `sv${randomBytes(24).toString('hex')}`;
    let valueFile: string;
    let placeholder = '';
    let testCa: TestCa;
    let tnet: TestNetwork;
    let api: EchoHost;
    let other: EchoHost;

    before(async () => {
      repo = makeRepo();
      // Upstreams in namespaces, with certificates from a test CA the node trusts; the node
      // resolves their names from its egress-hosts file.
      testCa = new TestCa('secrets');
      tnet = TestNetwork.create();
      api = await startEcho(tnet.addHost('api'), testCa.issue(['api.secrets.test']));
      other = await startEcho(tnet.addHost('other'), testCa.issue(['other.secrets.test']));
      node = await NodeFixture.start(engine, { BERTH_CA_BUNDLE: testCa.cert });
      writeFileSync(join(node.home, 'egress-hosts'), `${api.host.addr} api.secrets.test\n${other.host.addr} other.secrets.test\n`);
      valueFile = join(tmpdir(), `berth-secret-${randomBytes(4).toString('hex')}.txt`);
      writeFileSync(valueFile, `${VALUE}\n`, { mode: 0o600 });
    });
    after(async () => {
      await node?.stop(tracker.failed);
      await tnet?.destroy();
      testCa?.cleanup();
      repo?.cleanup();
      if (valueFile) rmSync(valueFile, { force: true });
    });

    it('refuses bad input with one line and its own exit code, and changes nothing', { timeout: 120_000 }, () =>
      track(
        (async () => {
          const noHost = await node.cli(['secret', 'set', 'gh-token', '--value-file', valueFile]);
          assert.equal(noHost.code, 30, noHost.stderr);
          assert.match(oneLine(noHost.stderr), /needs the host it is for: give --host HOST\[:PORT\]/);
          const emptyHost = await node.cli(['secret', 'set', 'gh-token', '--value-file', valueFile, '--host', '']);
          assert.equal(emptyHost.code, 30, emptyHost.stderr);
          oneLine(emptyHost.stderr);
          const badName = await node.cli(['secret', 'set', 'Bad_Name', '--value-file', valueFile, '--host', 'api.example.test']);
          assert.equal(badName.code, 3, badName.stderr);
          oneLine(badName.stderr);
          const noValue = await node.cli(['secret', 'set', 'gh-token', '--host', 'api.example.test']);
          assert.equal(noValue.code, 2, noValue.stderr);
          assert.match(oneLine(noValue.stderr), /--value-file F and --value-stdin/);
          const twoLines = join(node.home, 'two-lines');
          writeFileSync(twoLines, 'a\nb\n');
          const broken = await node.cli(['secret', 'set', 'gh-token', '--value-file', twoLines, '--host', 'api.example.test']);
          assert.equal(broken.code, 2, broken.stderr);
          oneLine(broken.stderr);
          const badHost = await node.cli(['secret', 'set', 'gh-token', '--value-file', valueFile, '--host', 'a b:99999']);
          assert.equal(badHost.code, 2, badHost.stderr);
          oneLine(badHost.stderr);
          const badHeader = await node.cli([
            'secret',
            'set',
            'gh-token',
            '--value-file',
            valueFile,
            '--host',
            'h.test',
            '--header',
            'Authorization Bearer',
          ]);
          assert.equal(badHeader.code, 2, badHeader.stderr);
          oneLine(badHeader.stderr);
          assert.deepEqual(await node.json<SecretInfo[]>(['secret', 'ls']), []);

          // An unknown --secret: its own code, and no environment, container or row is made.
          const unknown = await node.cli(['new', 'nope', '--repo', repo.path, '--secret', 'no-such-secret']);
          assert.equal(unknown.code, 31, unknown.stderr);
          assert.match(oneLine(unknown.stderr), /no secret named no-such-secret/);
          assert.deepEqual(await node.json<EnvInfo[]>(['ls']), []);
          assert.deepEqual(node.containers(), []);
          const rmUnknown = await node.cli(['secret', 'rm', 'no-such-secret']);
          assert.equal(rmUnknown.code, 31, rmUnknown.stderr);
          oneLine(rmUnknown.stderr);

          // A secret with --no-trust or --network none could never be used: refused up front.
          await node.json(['secret', 'set', 'probe', '--value-file', valueFile, '--host', 'h.test']);
          for (const extra of [['--no-trust'], ['--network', 'none']]) {
            const r = await node.cli(['new', 'nope', '--repo', repo.path, '--secret', 'probe', ...extra]);
            assert.equal(r.code, 2, r.stderr);
            oneLine(r.stderr);
          }
          assert.deepEqual(await node.json<EnvInfo[]>(['ls']), []);
          await node.json(['secret', 'rm', 'probe']);
        })(),
      ),
    );

    it(
      'gives the environment only a placeholder: variables, memory, files, describe, identity, snapshots, logs, state',
      { timeout: 300_000 },
      () =>
        track(
          (async () => {
            const set = await node.json<SecretInfo>([
              'secret',
              'set',
              'api-token',
              '--value-file',
              valueFile,
              '--host',
              'api.secrets.test',
            ]);
            assert.equal(set.envVar, 'API_TOKEN');
            assert.equal(set.host, 'api.secrets.test');
            assert.ok(!JSON.stringify(set).includes(VALUE));
            const env = await node.json<EnvInfo>(['new', 's1', '--repo', repo.path, '--secret', 'api-token']);
            assert.deepEqual(env.secrets, [{ name: 'api-token', envVar: 'API_TOKEN', host: 'api.secrets.test' }]);
            const printed = await node.cli(['exec', 's1', '--', 'printenv', 'API_TOKEN']);
            assert.equal(printed.code, 0, printed.stderr);
            placeholder = printed.stdout.trim();
            assert.match(placeholder, /^berth-placeholder-api-token-[A-Za-z0-9_-]{24}$/);
            const all = await node.cli(['exec', 's1', '--', 'cat', '/proc/self/environ']);
            assert.ok(all.stdout.includes(placeholder));
            assert.ok(!all.stdout.includes(VALUE), 'the value is in the environment variables');

            // The memory of a process that received the variable holds the placeholder, never the value.
            const scan = await node.cli([
              'exec',
              's1',
              '--',
              '/.berth/bin/node',
              '-e',
              SCANNER,
              Buffer.from(VALUE.slice(0, 4)).toString('hex'),
              sha(VALUE),
              String(VALUE.length),
              Buffer.from(placeholder.slice(0, 4)).toString('hex'),
              sha(placeholder),
              String(placeholder.length),
            ]);
            assert.equal(scan.code, 0, scan.stderr);
            const found = JSON.parse(scan.stdout) as { value: number; placeholder: number; scanned: number };
            assert.ok(found.placeholder > 0, `the scan did not find the placeholder it was given: ${scan.stdout}`);
            assert.ok(found.scanned > 1_000_000, scan.stdout);
            assert.equal(found.value, 0, 'the value is in the memory of a process in the environment');

            // Its files: everything but the kernel's views.
            // The value goes in on stdin, never in an argv (which the node's events record).
            const grep = await node.cli(
              [
                'exec',
                's1',
                '--',
                'sh',
                '-c',
                'read -r v; grep -rlF -D skip --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -e "$v" / ; echo "exit $?"',
              ],
              { stdin: `${VALUE}\n` },
            );
            assert.match(grep.stdout, /exit 1\s*$/, `grep found the value in the environment's files:\n${grep.stdout}${grep.stderr}`);

            // What berth says about it, and what it keeps.
            const described = await node.cli(['describe', 's1', '--json']);
            assert.equal(described.code, 0, described.stderr);
            assert.ok(!described.stdout.includes(VALUE), 'describe shows the value');
            const identity = await node.cli(['id', 's1', '--json']);
            assert.ok(!identity.stdout.includes(VALUE), 'the identity holds the value');
            const listed = await node.cli(['secret', 'ls', '--json']);
            assert.ok(!listed.stdout.includes(VALUE));
            assert.deepEqual((JSON.parse(listed.stdout) as SecretInfo[]).find((s) => s.name === 'api-token')?.envs, ['s1']);
            await node.cli(['exec', 's1', '--', 'sh', '-c', 'printenv API_TOKEN > /workspace/token.txt']);
            const snap = await node.json<{ id: string }>(['snap', 's1']);
            assert.match(snap.id, /^sha256:/);
            // The node's home: state (and its WAL), the store of snapshot blobs, keys, certificates.
            for (const f of filesUnder(node.home)) {
              if (f === valueFile || statSync(f).size > 256 * 1024 * 1024) continue;
              assert.equal(readFileSync(f).indexOf(VALUE), -1, `${f} holds the value`);
            }
            assert.ok(!node.log().includes(VALUE), "the node's log holds the value");
            const fork = await node.json<EnvInfo>(['fork', snap.id, 's1-fork']);
            assert.deepEqual(fork.secrets, []);
            await node.json(['rm', '--discard', 's1-fork']);
          })(),
        ),
    );

    const curl = (env: string, args: string[]): ReturnType<NodeFixture['cli']> =>
      node.cli([
        'exec',
        env,
        '--',
        'sh',
        '-c',
        `curl -sS -m 20 --noproxy '*' -H "Authorization: Bearer $API_TOKEN" -H "X-Copy: $API_TOKEN" ${args.join(' ')}`,
      ]);

    it(
      'sends the value to the secret host only, per request on a keep-alive connection, and stops at once on rm',
      { timeout: 180_000 },
      () =>
        track(
          (async () => {
            const caFile = async (env: string): Promise<void> => {
              const w = await node.cli(['exec', env, '--', 'sh', '-c', 'cat > /tmp/test-ca.crt'], { stdin: readFileSync(testCa.cert) });
              assert.equal(w.code, 0, w.stderr);
            };
            await caFile('s1');
            // HTTPS through the egress proxy, terminated with the node's CA: two requests, one connection.
            const tls = await curl('s1', ['https://api.secrets.test/w-a', 'https://api.secrets.test/w-b']);
            assert.equal(tls.code, 0, tls.stderr);
            for (const [i, url] of ['/w-a', '/w-b'].entries()) {
              const seen = api.request(url);
              assert.equal(seen.scheme, 'https');
              assert.deepEqual(headerOf(seen, 'authorization'), [`Bearer ${VALUE}`]);
              assert.deepEqual(headerOf(seen, 'x-copy'), [VALUE]);
              assert.equal(seen.onConnection, i, 'the second request went over the same connection');
            }
            assert.ok(!tls.stdout.includes(VALUE));
            // Plain HTTP to the host: the secret names no port, so it is HTTPS only, and in clear
            // the placeholder goes out as it is.
            const plain = await curl('s1', ['http://api.secrets.test/w-plain']);
            assert.equal(plain.code, 0, plain.stderr);
            assert.deepEqual(headerOf(api.request('/w-plain'), 'authorization'), [`Bearer ${placeholder}`]);
            // Another host: the placeholder, and its own certificate (no interception): curl
            // trusts only the test CA here.
            const elsewhere = await curl('s1', ['--cacert', '/tmp/test-ca.crt', 'https://other.secrets.test/w-other']);
            assert.equal(elsewhere.code, 0, elsewhere.stderr);
            assert.deepEqual(headerOf(other.request('/w-other'), 'authorization'), [`Bearer ${placeholder}`]);
            assert.ok(!other.text().includes(VALUE));
            // An environment without the secret: nothing to swap, even on the secret's host.
            await node.json(['new', 'plain1', '--repo', repo.path, '--egress', 'learn']);
            await caFile('plain1');
            const bare = await node.cli([
              'exec',
              'plain1',
              '--',
              'sh',
              '-c',
              `curl -sS -m 20 --noproxy '*' --cacert /tmp/test-ca.crt -H "Authorization: Bearer ${placeholder}" https://api.secrets.test/w-bare`,
            ]);
            assert.equal(bare.code, 0, bare.stderr);
            assert.deepEqual(headerOf(api.request('/w-bare'), 'authorization'), [`Bearer ${placeholder}`]);
            await node.json(['rm', '--discard', 'plain1']);

            // rm: the next request carries the placeholder.
            await node.json(['secret', 'rm', 'api-token']);
            const after = await curl('s1', ['https://api.secrets.test/w-after']);
            assert.equal(after.code, 0, after.stderr);
            assert.deepEqual(headerOf(api.request('/w-after'), 'authorization'), [`Bearer ${placeholder}`]);
            assert.ok(!node.log().includes(VALUE), "the node's log holds the value");
          })(),
        ),
    );

    it('removes a secret at once: no environment holds it, describe forgets it', { timeout: 120_000 }, () =>
      track(
        (async () => {
          // Removed by the test before: gone from every view at once.
          const envs = await node.json<EnvInfo[]>(['ls']);
          assert.deepEqual(envs.find((e) => e.name === 's1')?.secrets, []);
          assert.deepEqual(await node.json<SecretInfo[]>(['secret', 'ls']), []);
          const again = await node.cli(['new', 's2', '--repo', repo.path, '--secret', 'api-token']);
          assert.equal(again.code, 31, again.stderr);
        })(),
      ),
    );
  });
}

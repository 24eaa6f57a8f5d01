// The foundation, end to end, on each real engine: the CLI as a user types it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeRepo, NodeFixture, testEngines, failureTracker } from '../helpers/fixture.js';
import type { EnvInfo } from '../../src/core/api.js';

for (const engine of testEngines()) {
  describe(`environments on ${engine}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    const tracker = failureTracker();
    const track = tracker.track;

    before(async () => {
      repo = makeRepo();
      node = await NodeFixture.start(engine);
    });
    after(async () => {
      await node?.stop(tracker.failed);
      repo?.cleanup();
    });

    it('creates an environment at the resolved commit with labels, limits and an identity', () =>
      track(
        (async () => {
          const env = await node.json<EnvInfo>([
            'new',
            'fix-login',
            '--repo',
            repo.path,
            '--ref',
            'main',
            '--agent',
            'claude-1',
            '--task',
            'fix login',
          ]);
          assert.equal(env.name, 'fix-login');
          assert.equal(env.state, 'running');
          assert.equal(env.commit, repo.main);
          assert.match(env.toolchain, /^sha256:[0-9a-f]{64}$/);
          assert.deepEqual(env.labels, { agent: 'claude-1', task: 'fix login' });
          assert.equal(env.engine, engine);
          assert.match(env.identity.hash, /^sha256:[0-9a-f]{64}$/);
          assert.equal(env.identity.ref, repo.main);

          const head = await node.cli(['exec', 'fix-login', '--', 'git', 'rev-parse', 'HEAD']);
          assert.equal(head.code, 0, head.stderr);
          assert.equal(head.stdout.trim(), repo.main);
          const files = await node.cli(['exec', 'fix-login', '--', 'ls', '/workspace']);
          assert.match(files.stdout, /package\.json/);
          assert.doesNotMatch(files.stdout, /FEATURE\.md/);

          const described = await node.json<EnvInfo>(['describe', 'fix-login']);
          assert.equal(described.id, env.id);
          assert.equal(described.limits.memoryMb, 2048);
          const ls = await node.json<EnvInfo[]>(['ls']);
          assert.deepEqual(
            ls.map((e) => e.name),
            ['fix-login'],
          );
        })(),
      ));

    it('runs commands with streamed output, stdin, the exit code and a timeout', () =>
      track(
        (async () => {
          const test = await node.cli(['exec', 'fix-login', '--', 'npm', 'test']);
          assert.equal(test.code, 0, test.stderr);
          assert.match(test.stdout, /# pass 1/);

          const notes = 'line one\nline two\n';
          const write = await node.cli(['exec', 'fix-login', '--', 'sh', '-c', 'cat > notes.txt'], { stdin: notes });
          assert.equal(write.code, 0, write.stderr);
          const read = await node.cli(['exec', 'fix-login', '--', 'cat', 'notes.txt']);
          assert.equal(read.stdout, notes);

          const code = await node.cli(['exec', 'fix-login', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
          assert.equal(code.code, 7);
          assert.equal(code.stdout, 'out\n');
          assert.equal(code.stderr, 'err\n');

          const json = await node.cli(['exec', 'fix-login', '--json', '--', 'sh', '-c', 'printf hi']);
          const parsed = JSON.parse(json.stdout) as { exitCode: number; stdout: string; timing: Record<string, number> };
          assert.equal(parsed.exitCode, 0);
          assert.equal(parsed.stdout, 'hi');
          for (const k of ['queueMs', 'spawnMs', 'runMs', 'transportMs']) assert.equal(typeof parsed.timing[k], 'number');

          const slow = await node.cli(['exec', 'fix-login', '--timeout', '0.5', '--', 'sleep', '30']);
          assert.equal(slow.code, 124);
          assert.match(slow.stderr, /timed out/);

          const killedBySignal = await node.cli(['exec', 'fix-login', '--', 'sh', '-c', 'kill -TERM $$']);
          assert.equal(killedBySignal.code, 143);

          const big = await node.cli(['exec', 'fix-login', '--', 'sh', '-c', 'head -c 5000000 /dev/zero | tr "\\0" x']);
          assert.equal(big.code, 0);
          assert.equal(big.stdout.length, 5_000_000);
        })(),
      ));

    it('inherits the node trust, so TLS through the machine CA works, and limits are on', () =>
      track(
        (async () => {
          const env = await node.json<EnvInfo>(['describe', 'fix-login']);
          assert.ok(env.trust, 'trust is on by default');
          const ca = await node.cli([
            'exec',
            'fix-login',
            '--',
            'sh',
            '-c',
            'echo "$SSL_CERT_FILE $NODE_EXTRA_CA_CERTS"; test -s "$SSL_CERT_FILE"',
          ]);
          assert.equal(ca.code, 0, ca.stderr);
          assert.equal(ca.stdout.trim(), '/.berth/ca/ca-certificates.crt /.berth/ca/ca-certificates.crt');
          // npm itself, over TLS, through the machine's CA.
          const npm = await node.cli(['exec', 'fix-login', '--timeout', '60', '--', 'npm', 'view', 'is-number@7.0.0', 'version']);
          assert.equal(npm.code, 0, npm.stderr);
          assert.equal(npm.stdout.trim(), '7.0.0');

          const pids = await node.cli([
            'exec',
            'fix-login',
            '--',
            'sh',
            '-c',
            'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max',
          ]);
          assert.equal(pids.stdout.trim(), '1024');
          const mem = await node.cli([
            'exec',
            'fix-login',
            '--',
            'sh',
            '-c',
            'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max',
          ]);
          assert.equal(mem.stdout.trim(), String(2048 * 1024 * 1024));
        })(),
      ));

    it('keeps environments apart: no reaching each other or the node, and --network none', () =>
      track(
        (async () => {
          await node.json(['new', 'server', '--repo', repo.path, '--memory', '256', '--pids', '128']);
          const started = await node.cli([
            'exec',
            'server',
            '--',
            'sh',
            '-c',
            // Up when it answers (bounded), not after a guessed sleep.
            'nohup python3 -m http.server 8000 >/dev/null 2>&1 & for i in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:8000/ && break; sleep 0.1; done; hostname -I',
          ]);
          const serverIp = started.stdout.trim().split(/\s+/)[0]!;
          assert.match(serverIp, /^\d+\.\d+\.\d+\.\d+$/);
          const self = await node.cli([
            'exec',
            'server',
            '--',
            'curl',
            '-s',
            '-o',
            '/dev/null',
            '-w',
            '%{http_code}',
            'http://127.0.0.1:8000/',
          ]);
          assert.equal(self.stdout, '200');
          const peer = await node.cli([
            'exec',
            'fix-login',
            '--',
            'curl',
            '-s',
            '-m',
            '2',
            '-o',
            '/dev/null',
            '-w',
            '%{http_code}',
            `http://${serverIp}:8000/`,
          ]);
          assert.notEqual(peer.stdout, '200', 'one environment reached another');
          const gw = await node.cli(['exec', 'fix-login', '--', 'sh', '-c', "ip route | awk '/default/ {print $3}'"]);
          const toNode = await node.cli([
            'exec',
            'fix-login',
            '--',
            'curl',
            '-s',
            '-m',
            '2',
            '-o',
            '/dev/null',
            '-w',
            '%{http_code}',
            `http://${gw.stdout.trim()}:22/`,
          ]);
          assert.equal(toNode.stdout, '000', 'an environment reached the node');
          const limits = await node.json<EnvInfo>(['describe', 'server']);
          assert.deepEqual(limits.limits, { memoryMb: 256, cpus: 1, pids: 128 });

          await node.json(['new', 'sealed', '--repo', repo.path, '--network', 'none']);
          const sealed = await node.cli(['exec', 'sealed', '--', 'sh', '-c', 'ip -o link | grep -vc " lo:" || true']);
          assert.equal(sealed.stdout.trim(), '0', 'a --network none environment has only loopback');
          const out = await node.cli(['exec', 'sealed', '--', 'curl', '-s', '-m', '3', 'https://registry.npmjs.org/']);
          assert.notEqual(out.code, 0);
          const rm = await node.cli(['rm', 'server', 'sealed']);
          assert.equal(rm.code, 0, rm.stderr);
        })(),
      ));

    it('an environment without the node trust cannot use TLS through the machine CA', () =>
      track(
        (async () => {
          await node.json(['new', 'untrusted', '--repo', repo.path, '--no-trust']);
          const env = await node.json<EnvInfo>(['describe', 'untrusted']);
          assert.equal(env.trust, null);
          // Debian's own bundle only: the machine's TLS-inspecting CA is not in it.
          const curl = await node.cli([
            'exec',
            'untrusted',
            '--',
            'curl',
            '-sS',
            '-m',
            '10',
            '-o',
            '/dev/null',
            'https://registry.npmjs.org/',
          ]);
          assert.notEqual(curl.code, 0, 'TLS worked without the node CA: the test machine does not inspect TLS');
          assert.match(curl.stderr, /certificate/i);
          await node.cli(['rm', 'untrusted']);
        })(),
      ));

    it('checks out other refs, and removes environments with nothing left behind', () =>
      track(
        (async () => {
          const env = await node.json<EnvInfo>(['new', 'feat', '--repo', repo.path, '--ref', 'feature']);
          assert.equal(env.commit, repo.feature);
          const f = await node.cli(['exec', 'feat', '--', 'cat', 'FEATURE.md']);
          assert.equal(f.stdout, 'a feature\n');
          const before = node.containers().length;
          const rm = await node.cli(['rm', 'feat']);
          assert.equal(rm.code, 0, rm.stderr);
          assert.equal(node.containers().length, before - 1);
          assert.ok(existsSync(await node.envsDir()), 'the node keeps its environments where it says');
          assert.ok(!existsSync(join(await node.envsDir(), env.id)));
          const gone = await node.cli(['describe', 'feat']);
          assert.equal(gone.code, 4);
        })(),
      ));

    it('a command that exits while its stdin is still coming leaves the environment answering', () =>
      track(
        (async () => {
          // `head` reads 3 MB and exits; the rest of 64 MiB keeps arriving after it has gone.
          const gone = await node.cli(['exec', 'fix-login', '--', 'head', '-c', '3000000'], {
            stdin: Buffer.alloc(64 * 1024 * 1024, 0x61),
          });
          assert.equal(gone.code, 0, gone.stderr);
          const next = await Promise.race([node.cli(['exec', 'fix-login', '--', 'echo', 'still here']), sleep(30_000).then(() => null)]);
          assert.ok(next, 'the environment stopped answering after a command left its stdin unread');
          assert.equal(next.stdout, 'still here\n');
        })(),
      ));

    it('survives a daemon restart: environments are picked up and commands run again', () =>
      track(
        (async () => {
          await node.killDaemon('SIGKILL');
          await node.startDaemon();
          const ls = await node.json<EnvInfo[]>(['ls']);
          assert.deepEqual(
            ls.map((e) => [e.name, e.state]),
            [['fix-login', 'running']],
          );
          const r = await node.cli(['exec', 'fix-login', '--', 'cat', 'notes.txt']);
          assert.equal(r.stdout, 'line one\nline two\n');
          // One environment directory where the node keeps them (its own storage's root).
          const info = await node.json<{ storage: { root: string } }>(['node', 'info']);
          assert.deepEqual(readdirSync(join(info.storage.root, 'envs')).length, 1);
        })(),
      ));
  });
}

// Egress policies, enforced on the node: upstream servers live in network namespaces this
// test makes (an HTTP server, an HTTPS server with a test CA's certificate, a UDP echo, and a
// canary at another address that must hear nothing). The node resolves the test names from
// its egress-hosts file; the environments trust the test CA through the node's bundle. The
// one connection to the internet is a real `npm install` through the `npm` preset.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NodeClient } from '../../src/client/client.js';
import type { EgressReport, EnvInfo } from '../../src/core/api.js';
import type { BerthEvent } from '../../src/core/events.js';
import { engineRun, failureTracker, makeRepo, NodeFixture, testEngines } from '../helpers/fixture.js';
import { startCanary, TestNetwork, type Canary, type TestHost } from '../helpers/hosts.js';

const SERVERS = `
const http = require('node:http'), https = require('node:https'), dgram = require('node:dgram'), fs = require('node:fs');
const [addr, dir] = process.argv.slice(2);
const big = Buffer.alloc(1024 * 1024, 120);
const app = (req, res) => {
  if (req.url === '/big') { res.writeHead(200, { 'content-length': big.length }); return res.end(big); }
  res.end('web ' + req.headers.host + ' ' + req.url + (req.socket.encrypted ? ' tls' : ''));
};
let up = 0;
const ready = () => { if (++up === 3) console.log('servers ready'); };
http.createServer(app).listen(80, addr, ready);
https.createServer({ key: fs.readFileSync(dir + '/leaf.key'), cert: fs.readFileSync(dir + '/leaf.pem') }, app).listen(443, addr, ready);
const u = dgram.createSocket('udp4');
u.on('message', (m, from) => u.send(m, from.port, from.address));
u.bind(7007, addr, ready);
`;

// Run inside an environment: a raw TCP connect (no name in its bytes) or a UDP exchange.
const PROBE = `
const [kind, host, port] = process.argv.slice(2);
const done = (what) => { console.log(what); process.exit(0); };
setTimeout(() => done(kind + ' hang'), 8000);
if (kind === 'udp') {
  const s = require('dgram').createSocket('udp4');
  s.on('error', (e) => done('udp error ' + e.code));
  s.on('message', (m) => done('udp echo ' + m));
  s.connect(Number(port), host, () => { s.send('ping'); setTimeout(() => s.send('ping'), 300); setTimeout(() => done('udp silence'), 3000); });
} else {
  const c = require('net').connect(Number(port), host, () => c.write('hello, raw bytes\\r\\n'));
  c.on('error', (e) => done('tcp error ' + e.code));
  c.on('data', (d) => done('tcp data ' + d));
  c.on('close', () => done('tcp closed'));
}
`;

function makeCerts(dir: string): void {
  const o = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  o(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=berth egress test CA',
  );
  o('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=allowed.test');
  writeFileSync(join(dir, 'ext'), 'subjectAltName=DNS:allowed.test,DNS:tls.test\n');
  o(
    'x509',
    '-req',
    '-in',
    'leaf.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'leaf.pem',
    '-days',
    '2',
    '-extfile',
    'ext',
  );
}

for (const engine of testEngines()) {
  describe(`egress policies on ${engine}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let net: TestNetwork;
    let web: TestHost;
    let other: TestHost;
    let canary: Canary;
    let certs: string;
    let client: NodeClient;
    const tracker = failureTracker();
    const track = tracker.track;

    before(async () => {
      repo = makeRepo();
      certs = mkdtempSync(join(tmpdir(), 'berth-egress-certs-'));
      makeCerts(certs);
      writeFileSync(join(certs, 'servers.js'), SERVERS);
      net = TestNetwork.create();
      web = net.addHost('web');
      other = net.addHost('other');
      const servers = web.spawn(process.execPath, [join(certs, 'servers.js'), web.addr, certs], process.env, 'servers');
      for (let i = 0; i < 100 && !web.log('servers').includes('servers ready'); i++) {
        if (servers.exitCode !== null) break;
        await sleep(50);
      }
      assert.match(web.log('servers'), /servers ready/);
      canary = await startCanary(other, [other.addr]);
      node = await NodeFixture.start(engine, { BERTH_CA_BUNDLE: join(certs, 'ca.pem') });
      writeFileSync(
        join(node.home, 'egress-hosts'),
        `${web.addr} allowed.test tls.test\n${other.addr} denied.test\n# comments and blank lines are fine\n\n`,
      );
      client = new NodeClient({ socketPath: join(node.home, 'berth.sock') });
      await node.json(['new', 'a1', '--repo', repo.path, '--egress', 'allow:allowed.test,tls.test:443']);
      await node.cli(['exec', 'a1', '--', 'sh', '-c', 'cat > /tmp/probe.js'], { stdin: PROBE });
    });
    after(async () => {
      client?.close();
      await node?.stop(tracker.failed);
      await canary?.close();
      await net?.destroy();
      repo?.cleanup();
      if (certs) rmSync(certs, { recursive: true, force: true });
    });

    const sh = (env: string, script: string): ReturnType<NodeFixture['cli']> => node.cli(['exec', env, '--', 'sh', '-c', script]);
    const curl = (args: string): string => `curl -s -S -m 10 --noproxy '*' -w ' %{http_code}' ${args}; echo " rc=$?"`;

    it(
      'lets an allowed name through and refuses the rest at once, whether a process honours proxy variables or not',
      { timeout: 120_000 },
      () =>
        track(
          (async () => {
            const ok = await sh('a1', `${curl('http://allowed.test/x')}; ${curl('https://tls.test/y')}`);
            assert.match(ok.stdout, /web allowed\.test \/x 200 rc=0/);
            assert.match(ok.stdout, /web tls\.test \/y tls 200 rc=0/);

            // Ignoring proxy variables: a raw IP, a denied Host, a raw TCP connect, UDP.
            const denied = await sh(
              'a1',
              `${curl(`http://${other.addr}/`)}; ${curl(`-H 'Host: denied.test' http://${web.addr}/`)}; node /tmp/probe.js tcp ${web.addr} 80; node /tmp/probe.js tcp ${other.addr} 5432; node /tmp/probe.js udp ${web.addr} 7007`,
            );
            const at = other.addr.replace(/\./g, '\\.');
            const policy = 'allow:allowed\\.test,tls\\.test:443';
            assert.match(
              denied.stdout,
              new RegExp(
                `berth: ${at}:80 is not allowed by the egress policy of environment a1 \\(${policy}\\): not in the allow list\\n 403 rc=0`,
              ),
            );
            assert.match(denied.stdout, /denied\.test:80 is not allowed by the egress policy .*\n 403 rc=0/);
            assert.match(denied.stdout, /^tcp error ECONNRESET$/m, denied.stdout);
            assert.equal(denied.stdout.match(/^tcp error ECONNRESET$/gm)?.length, 2, denied.stdout);
            assert.match(denied.stdout, /^udp error (EHOSTUNREACH|ECONNREFUSED|EACCES)$/m, denied.stdout);
            assert.doesNotMatch(denied.stdout, /hang|udp echo|tcp data/);

            // Honouring them: a CONNECT through "a proxy" at some address is judged by its target.
            const viaProxy = await sh(
              'a1',
              `HTTPS_PROXY=http://${other.addr}:3128 curl -s -S -m 10 -w ' %{http_code}' https://tls.test/p; echo " rc=$?"; HTTPS_PROXY=http://${other.addr}:3128 curl -s -S -m 10 https://denied.test/; echo " rc=$?"`,
            );
            assert.match(viaProxy.stdout, /web tls\.test \/p tls 200 rc=0/);
            assert.match(viaProxy.stdout + viaProxy.stderr, /403/);
            assert.match(viaProxy.stdout, /rc=56/);
            assert.deepEqual(canary.hits(), []);

            const report = await node.json<EgressReport>(['egress', 'a1']);
            assert.ok(report.destinations.some((d) => d.host === 'allowed.test' && d.port === 80 && d.allowed && d.bytesIn > 0));
            assert.ok(report.destinations.some((d) => d.host === 'denied.test' && !d.allowed));
            assert.ok(report.recentDenials.some((d) => d.host === other.addr));
            const info = await node.json<EnvInfo>(['describe', 'a1']);
            assert.equal(info.egress?.policy, 'allow:allowed.test,tls.test:443');
            assert.ok((info.egress?.recentDenials.length ?? 0) > 0);
          })(),
        ),
    );

    it('answers DNS only for allowed names', { timeout: 60_000 }, () =>
      track(
        (async () => {
          const r = await sh('a1', 'getent hosts allowed.test; echo "rc=$?"; getent hosts denied.test; echo "rc=$?"');
          assert.match(r.stdout, new RegExp(`^${web.addr.replace(/\./g, '\\.')}\\s+allowed\\.test\\nrc=0\\nrc=2$`, 'm'), r.stdout);
        })(),
      ),
    );

    it('connects to the address the node resolved: a forged Host or SNI sent to another address reaches nothing', { timeout: 60_000 }, () =>
      track(
        (async () => {
          const r = await sh(
            'a1',
            `${curl(`--resolve allowed.test:80:${other.addr} http://allowed.test/forged`)}; ${curl(`--resolve tls.test:443:${other.addr} https://tls.test/forged`)}`,
          );
          assert.match(r.stdout, /web allowed\.test \/forged 200 rc=0/);
          assert.match(r.stdout, /web tls\.test \/forged tls 200 rc=0/);
          assert.deepEqual(canary.hits(), []);
        })(),
      ),
    );

    it(
      'never dials into a container network for an environment: an allowed address of another environment or of an undeclared bridge host reaches nothing',
      { timeout: 120_000 },
      () =>
        track(
          (async () => {
            // A host on a bridge that egress-hosts does not declare, and another environment
            // (no policy) serving on its own address: the policy lists both, the node refuses both.
            const stray = net.addHost('stray');
            const strayCanary = await startCanary(stray, [stray.addr], 8081);
            try {
              await node.json(['new', 'n2', '--repo', repo.path]);
              await node.cli([
                'exec',
                'n2',
                '--',
                'sh',
                '-c',
                `nohup node -e "require('http').createServer((q,s)=>s.end('n2 answered')).listen(8082)" >/dev/null 2>&1 &`,
              ]);
              const n2ip = (await node.cli(['exec', 'n2', '--', 'sh', '-c', 'hostname -i'])).stdout.trim().split(/\s+/)[0]!;
              assert.match(n2ip, /^\d+\.\d+\.\d+\.\d+$/);
              for (let i = 0; i < 50; i++) {
                const up = await node.cli(['exec', 'n2', '--', 'curl', '-s', 'http://127.0.0.1:8082/']);
                if (up.stdout.includes('n2 answered')) break;
                await sleep(100);
              }
              const set = await node.cli(['egress', 'a1', '--set', `allow:allowed.test,tls.test:443,${stray.addr}:8081,${n2ip}:8082`]);
              assert.equal(set.code, 0, set.stderr);
              const r = await sh(
                'a1',
                `${curl(`http://${stray.addr}:8081/`)}; ${curl(`http://${n2ip}:8082/`)}; ${curl('http://allowed.test/still')}`,
              );
              assert.match(
                r.stdout,
                /resolves to no address the node connects to\n 403 rc=0[\s\S]*resolves to no address the node connects to\n 403 rc=0/,
                r.stdout,
              );
              assert.doesNotMatch(r.stdout, /n2 answered|canary/);
              assert.match(r.stdout, /web allowed\.test \/still 200 rc=0/);
              assert.deepEqual(strayCanary.hits(), []);
            } finally {
              await node.cli(['egress', 'a1', '--set', 'allow:allowed.test,tls.test:443']);
              await node.cli(['rm', '--discard', 'n2']);
              await strayCanary.close();
            }
          })(),
        ),
    );

    it('learn mode records the test servers with their bytes, and --suggest proposes exactly them', { timeout: 120_000 }, () =>
      track(
        (async () => {
          await node.json(['new', 'l1', '--repo', repo.path, '--egress', 'learn']);
          const r = await sh('l1', `${curl('http://allowed.test/one')}; ${curl('https://tls.test/two')}`);
          assert.equal(r.stdout.match(/ 200 rc=0/g)?.length, 2, r.stdout);
          const report = await node.json<EgressReport>(['egress', 'l1']);
          assert.equal(report.mode, 'learn');
          assert.deepEqual(
            report.destinations.map((d) => `${d.host}:${d.port}:${d.allowed}`),
            ['allowed.test:80:true', 'tls.test:443:true'],
          );
          for (const d of report.destinations) {
            assert.ok(d.bytesIn > 0 && d.bytesOut > 0, JSON.stringify(d));
            assert.equal(d.connections, 1);
          }
          const s = await node.cli(['egress', 'l1', '--suggest']);
          assert.equal(s.stdout.trim(), 'allow:allowed.test:80,tls.test:443');
          // The suggestion is a policy the node takes.
          const set = await node.cli(['egress', 'l1', '--set', s.stdout.trim()]);
          assert.equal(set.code, 0, set.stderr);
          await node.cli(['rm', '--discard', 'l1']);
        })(),
      ),
    );

    it('changes the policy of a running environment for new connections, without a restart', { timeout: 60_000 }, () =>
      track(
        (async () => {
          const before = await node.json<EnvInfo>(['describe', 'a1']);
          const set = await node.cli(['egress', 'a1', '--set', 'allow:tls.test:443']);
          assert.equal(set.code, 0, set.stderr);
          const r = await sh('a1', `${curl(`--resolve allowed.test:80:${web.addr} http://allowed.test/`)}; ${curl('https://tls.test/')}`);
          assert.match(r.stdout, /allowed\.test:80 is not allowed .*\n 403 rc=0/);
          assert.match(r.stdout, /web tls\.test \/ tls 200 rc=0/);
          const after = await node.json<EnvInfo>(['describe', 'a1']);
          assert.equal(after.containerId, before.containerId);
          assert.equal(after.egress?.policy, 'allow:tls.test:443');
          assert.equal((await node.cli(['egress', 'a1', '--set', 'allow:allowed.test,tls.test:443'])).code, 0);
        })(),
      ),
    );

    it('pauses an environment over its egress budget, with an event, and resume --budget raises it', { timeout: 120_000 }, () =>
      track(
        (async () => {
          await node.json(['new', 'b1', '--repo', repo.path, '--egress', 'allow:allowed.test', '--budget', 'egress=300KB']);
          const stop = new AbortController();
          const seen: BerthEvent[] = [];
          const watching = (async () => {
            try {
              for await (const e of client.events({ env: 'b1', signal: stop.signal })) {
                seen.push(e);
                if (e.type === 'env.state' && e.state === 'paused') return;
              }
            } catch {
              // stopped
            }
          })();
          await sleep(200);
          // Not awaited: the environment may be paused in the middle of the download (its
          // processes frozen), and the command goes on when it is resumed.
          const download = sh('b1', `${curl('-o /dev/null http://allowed.test/big')}`);
          let state = '';
          for (let i = 0; i < 100 && state !== 'paused'; i++) {
            state = (await client.getEnv('b1')).state; // not describe: that asks the frozen agent
            if (state !== 'paused') await sleep(100);
          }
          assert.equal(state, 'paused');
          await Promise.race([watching, sleep(5000)]);
          stop.abort();
          const over = seen.find((e) => e.type === 'budget.exceeded');
          assert.ok(
            over && over.type === 'budget.exceeded' && over.kind === 'egress' && over.limit === 300_000 && over.used > 300_000,
            JSON.stringify(seen),
          );
          assert.ok(seen.some((e) => e.type === 'env.state' && e.state === 'paused' && /egress budget/.test(e.reason ?? '')));
          const refused = await node.cli(['resume', 'b1']);
          assert.equal(refused.code, 28, refused.stderr);
          assert.match(refused.stderr, /over its egress budget/);
          const raised = await node.cli(['resume', 'b1', '--budget', 'egress=10MB']);
          assert.equal(raised.code, 0, raised.stderr);
          const info = await client.getEnv('b1');
          assert.equal(info.state, 'running');
          assert.equal(info.egress?.budget?.egressBytes, 10_000_000);
          assert.ok((info.egress?.budget?.leftBytes ?? 0) > 0);
          assert.equal((await download).code, 0);
          await node.cli(['rm', '--discard', 'b1']);
        })(),
      ),
    );

    it('refuses a malformed policy, an unknown preset and a bad budget with their own codes, and makes nothing', { timeout: 60_000 }, () =>
      track(
        (async () => {
          const cases: Array<[string[], number, RegExp]> = [
            [['--egress', 'allow:'], 25, /allow: needs at least one entry/],
            [['--egress', 'deny:example.com'], 25, /must be allow:LIST, learn or all/],
            [['--egress', 'allow:example.com:99999'], 25, /bad port/],
            [['--egress', 'allow:10.0.0.1/8'], 25, /host bits/],
            [['--egress', 'allow:npm,nosuchpreset'], 26, /unknown egress preset nosuchpreset/],
            [['--budget', 'egress=lots'], 27, /bad budget/],
            [['--network', 'none', '--egress', 'allow:npm'], 2, /needs --network egress/],
          ];
          for (const [args, code, msg] of cases) {
            const r = await node.cli(['new', 'bad1', '--repo', repo.path, ...args]);
            assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
            assert.match(r.stderr, msg);
            assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
          }
          const set = await node.cli(['egress', 'a1', '--set', 'allow:nosuchpreset']);
          assert.equal(set.code, 26);
          assert.equal((await node.json<EnvInfo>(['describe', 'a1'])).egress?.policy, 'allow:allowed.test,tls.test:443');
          const ls = await node.json<EnvInfo[]>(['ls']);
          assert.deepEqual(
            ls.map((e) => e.name),
            ['a1'],
          );
        })(),
      ),
    );

    it('after a reboot, saved services start only once the egress rules are back: nothing they send escapes', { timeout: 120_000 }, () =>
      track(
        (async () => {
          const r1 = await node.json<EnvInfo>(['new', 'r1', '--repo', repo.path, '--egress', 'allow:allowed.test']);
          const beacon = `echo started >> /tmp/beacon.log; for i in $(seq 40); do curl -s -m 1 --noproxy '*' http://${other.addr}/beacon-$i >> /tmp/beacon.out; sleep 0.05; done; exec sleep 3600`;
          const started = await node.cli(['service', 'start', 'r1', 'beacon', '--', 'sh', '-c', beacon]);
          assert.equal(started.code, 0, started.stderr);
          const runs = (): number =>
            engineRun(engine, ['exec', r1.containerId!, 'cat', '/tmp/beacon.log']).split('\n').filter(Boolean).length;
          assert.equal(runs(), 1);

          const denials = (): number =>
            Number(engineRun(engine, ['exec', r1.containerId!, 'sh', '-c', 'grep -c "not allowed" /tmp/beacon.out || true']).trim());
          for (let i = 0; i < 100 && denials() < 40; i++) await sleep(100);
          // The machine "reboots": the daemon is gone, the container stops, the kernel's rules
          // for its address go. The engine starts the container again before berth is back.
          const ip = engineRun(engine, [
            'inspect',
            '-f',
            '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}',
            r1.containerId!,
          ]).trim();
          await node.killDaemon('SIGTERM');
          engineRun(engine, ['stop', '-t', '0', r1.containerId!], { ignoreOutput: true });
          execFileSync('iptables', ['-w', '5', '-t', 'nat', '-F', `BERTH-EG-${node.nodeId}`]);
          for (const line of execFileSync('ip', ['rule', 'show'], { encoding: 'utf8' }).split('\n')) {
            const pref = line.split(':')[0]!;
            if (line.includes(`from ${ip} `)) execFileSync('ip', ['rule', 'del', 'from', ip, 'pref', pref]);
          }
          engineRun(engine, ['start', r1.containerId!], { ignoreOutput: true });
          await sleep(2000);
          assert.equal(runs(), 1, 'a saved service started before the node had put back its rules');
          assert.deepEqual(canary.hits(), []);

          await node.startDaemon();
          // The node restores the service once the rules are back; its beacons all meet them.
          let out = '';
          for (let i = 0; i < 100 && (out.match(/^started$/gm)?.length ?? 0) < 2; i++) {
            out = (await sh('r1', 'cat /tmp/beacon.log')).stdout;
            await sleep(100);
          }
          for (let i = 0; i < 100 && denials() < 80; i++) await sleep(100);
          assert.equal(out.match(/^started$/gm)?.length, 2, out);
          assert.equal(denials(), 80, 'every beacon of both runs met the policy');
          assert.deepEqual(canary.hits(), []);
          const list = await node.json<Array<{ name: string; state: string }>>(['service', 'ls', 'r1']);
          assert.equal(list.find((x) => x.name === 'beacon')?.state, 'ready');
          await node.cli(['rm', '--discard', 'r1']);
        })(),
      ),
    );

    it('keeps the policy across a daemon restart, and removes its rules with the environment', { timeout: 120_000 }, () =>
      track(
        (async () => {
          await node.killDaemon('SIGTERM');
          await node.startDaemon();
          const r = await sh('a1', `${curl('http://allowed.test/again')}; ${curl(`http://${other.addr}/`)}`);
          assert.match(r.stdout, /web allowed\.test \/again 200 rc=0/);
          assert.match(r.stdout, /is not allowed by the egress policy .*\n 403 rc=0/);
          assert.deepEqual(canary.hits(), []);
          const chain = `BERTH-EG-${node.nodeId}`;
          assert.match(execFileSync('iptables', ['-t', 'nat', '-S', chain], { encoding: 'utf8' }), /DNAT/);
          await node.json(['new', 'p1', '--repo', repo.path]);
          const plain = await sh('p1', curl(`http://${other.addr}/plain`));
          assert.match(plain.stdout, /canary 200 rc=0/);
          await node.cli(['rm', '--discard', 'p1', 'a1']);
          assert.doesNotMatch(execFileSync('iptables', ['-t', 'nat', '-S', chain], { encoding: 'utf8' }), /DNAT/);

          // An environment whose container goes while the daemon is down: its rules (DNAT to
          // listeners that died with that daemon) go at the next start, not when a later
          // environment happens to be given its address.
          const x1 = await node.json<EnvInfo>(['new', 'x1', '--repo', repo.path, '--egress', 'allow:allowed.test']);
          assert.match(execFileSync('iptables', ['-t', 'nat', '-S', chain], { encoding: 'utf8' }), /DNAT/);
          await node.killDaemon('SIGTERM');
          engineRun(engine, ['rm', '-f', x1.containerId!], { ignoreOutput: true });
          await node.startDaemon();
          assert.equal((await node.json<EnvInfo>(['describe', 'x1'])).state, 'vanished');
          assert.doesNotMatch(execFileSync('iptables', ['-t', 'nat', '-S', chain], { encoding: 'utf8' }), /DNAT/);
          await node.cli(['rm', '--discard', 'x1']);
        })(),
      ),
    );

    it('runs a real npm install through the npm preset, trusting what the node trusts', { timeout: 240_000 }, () =>
      track(
        (async () => {
          await node.json(['new', 'n1', '--repo', repo.path, '--egress', 'allow:npm']);
          const r = await sh(
            'n1',
            `cd /tmp && mkdir app && cd app && echo '{"name":"app","version":"1.0.0","dependencies":{"is-number":"7.0.0"}}' > package.json && npm install --no-audit --no-fund 2>&1; echo "rc=$?"; ls node_modules`,
          );
          assert.match(r.stdout, /rc=0/, r.stdout + r.stderr);
          assert.match(r.stdout, /is-number/);
          const report = await node.json<EgressReport>(['egress', 'n1']);
          assert.ok(report.destinations.some((d) => d.host === 'registry.npmjs.org' && d.port === 443 && d.allowed && d.bytesIn > 0));
          assert.equal(report.suggested, 'allow:npm');
          await node.cli(['rm', '--discard', 'n1']);
        })(),
      ),
    );
  });
}

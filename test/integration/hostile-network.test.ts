// A hostile environment on the network: it must not reach the cloud's instance metadata
// address (or any link-local address), and a page it serves must not steer the node's own
// browser (verify --screenshot) to the node's loopback, the LAN or the metadata address.
// The metadata address is a test host's: a network namespace that holds 169.254.169.254,
// reached through a /32 route on the test's own bridge, so nothing leaves the machine.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import http from 'node:http';
import { networkInterfaces } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeRepo, NodeFixture, testEngines, failureTracker } from '../helpers/fixture.js';
import { routeAddressTo, startCanary, startLoopbackCanary, TestNetwork, type Canary, type TestHost } from '../helpers/hosts.js';
import { pngStats } from '../../src/core/png.js';
import type { VerifyResult } from '../../src/core/api.js';

const METADATA = '169.254.169.254';

function commit(repo: string, file: string, body: string): void {
  writeFileSync(join(repo, file), body);
  execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', 'add', '-A']);
  execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', 'commit', '-q', '-m', file]);
}

// A page that tries to make the browser that renders it reach out: the node's loopback (the
// canary's port, from the query), a LAN host and the metadata address, by <img> and fetch().
// It also loads its own resources: same port (relative and absolute) and another port of the
// environment. Every request it gets is logged to /tmp/page.log inside the environment.
const PAGE = `const http = require('node:http');
const fs = require('node:fs');
const [port, other] = process.argv.slice(2).map(Number);
const seen = (p, url) => fs.appendFileSync('/tmp/page.log', p + ' ' + url + '\\n');
const svg = (fill) => '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><rect width="40" height="40" fill="' + fill + '"/></svg>';
http.createServer((req, res) => {
  seen(port, req.url);
  const u = new URL(req.url, 'http://page');
  if (u.pathname !== '/') { res.writeHead(200, { 'content-type': 'image/svg+xml' }); res.end(svg('#f59e0b')); return; }
  const away = ['http://127.0.0.1:' + u.searchParams.get('canary'), 'http://' + u.searchParams.get('lan'), 'http://${METADATA}'];
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<body style="background:#14532d;color:white"><h1>a page in the environment</h1>' +
    '<img src="/same-port.svg"><img src="http://127.0.0.1:' + port + '/same-port-absolute.svg">' +
    '<img src="http://localhost:' + other + '/other-port.svg">' +
    away.map((a) => '<img src="' + a + '/from-host-chromium">').join('') +
    '<script>for (const a of ' + JSON.stringify(away) + ") fetch(a + '/from-host-chromium-fetch', { mode: 'no-cors' }).catch(() => {});</script></body>");
}).listen(port);
http.createServer((req, res) => { seen(other, req.url); res.writeHead(200, { 'content-type': 'image/svg+xml' }); res.end(svg('#e11d48')); }).listen(other);
`;

/** The host side of an environment's network: the interface holding its gateway address. */
function hostInterface(gateway: string): { name: string; linkLocal: string | undefined } | undefined {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (addrs?.some((a) => a.address === gateway))
      return { name, linkLocal: addrs.find((a) => a.family === 'IPv6' && a.address.startsWith('fe80:'))?.address };
  }
  return undefined;
}

/** UDP and TCP echo servers on the gateway's port 53, where an environment's DNS may go. */
async function dnsEcho(gateway: string): Promise<{ close(): void } | string> {
  const udp = createSocket('udp4');
  udp.on('message', (m, from) => udp.send(m, from.port, from.address));
  const tcp: Server = createServer((s) => s.on('error', () => {}).pipe(s));
  try {
    await new Promise<void>((resolve, reject) => udp.once('error', reject).bind(53, gateway, resolve));
    await new Promise<void>((resolve, reject) => tcp.once('error', reject).listen(53, gateway, resolve));
  } catch (err) {
    udp.close();
    tcp.close();
    return (err as Error).message;
  }
  return {
    close: () => {
      udp.close();
      tcp.close();
    },
  };
}

for (const engine of testEngines()) {
  describe(`hostile network on ${engine}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let net: TestNetwork;
    let meta: TestHost;
    let route: { remove(): void };
    let canary: Canary;
    const tracker = failureTracker();
    const track = tracker.track;
    before(async () => {
      repo = makeRepo();
      commit(repo.path, 'page.js', PAGE);
      commit(
        repo.path,
        'berth.json',
        JSON.stringify({ services: { page: { command: 'node page.js 3000 3001', ready: 'http:3000/health' } } }),
      );
      net = TestNetwork.create();
      meta = net.addHost('meta');
      route = routeAddressTo(meta, METADATA);
      canary = await startCanary(meta, [METADATA, meta.addr]);
      node = await NodeFixture.start(engine);
      await node.json(['new', 'web', '--repo', repo.path]);
    });
    after(async () => {
      await node?.stop(tracker.failed);
      await canary?.close();
      route?.remove();
      await net?.destroy();
      repo?.cleanup();
    });

    const curl = (env: string, url: string, seconds = 10): ReturnType<NodeFixture['cli']> =>
      node.cli([
        'exec',
        env,
        '--',
        'curl',
        '-s',
        '-g',
        '-m',
        String(seconds),
        '--noproxy',
        '*',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        url,
      ]);

    it('refuses link-local destinations at once, on every network mode, and leaves egress and DNS working', { timeout: 240_000 }, () =>
      track(
        (async () => {
          // The metadata address leads to the test host, never off the machine.
          assert.match(execFileSync('ip', ['-o', 'route', 'get', METADATA], { encoding: 'utf8' }), new RegExp(`dev ${net.bridge} `));

          const refused = await curl('web', `http://${METADATA}/latest/meta-data/`);
          assert.deepEqual(
            canary.hits().filter((h) => h.includes('/latest/meta-data/')),
            [],
            'an environment reached the metadata address',
          );
          // 7: could not connect (refused at once); 28 would be a timeout.
          assert.equal(refused.code, 7, `curl exited ${refused.code}: ${refused.stderr}`);
          const connect = await node.cli([
            'exec',
            'web',
            '--',
            'node',
            '-e',
            `const s = require('node:net').connect(80, '${METADATA}');
             s.on('connect', () => { console.log('connected'); process.exit(0); });
             s.on('error', (e) => { console.log(e.code); process.exit(1); });
             setTimeout(() => { console.log('no answer'); process.exit(2); }, 10000);`,
          ]);
          assert.equal(connect.stdout.trim(), 'EHOSTUNREACH');

          // IPv6 link-local: the node's own address on the environment's bridge (where the node
          // has IPv6; Docker gives its containers none on a network without IPv6 subnets).
          const gateway = (await node.cli(['exec', 'web', '--', 'sh', '-c', "ip route | awk '/^default/ {print $3}'"])).stdout.trim();
          const bridge = hostInterface(gateway);
          assert.ok(bridge, `no interface holds the gateway ${gateway}`);
          if (bridge.linkLocal) {
            const heard: string[] = [];
            const v6 = http.createServer((req, res) => {
              heard.push(req.url ?? '');
              res.end('reached');
            });
            await new Promise<void>((resolve) => v6.listen(0, `${bridge.linkLocal}%${bridge.name}`, resolve));
            const port = (v6.address() as { port: number }).port;
            try {
              const r = await curl('web', `http://[${bridge.linkLocal}%25eth0]:${port}/link-local`, 4);
              assert.deepEqual(heard, [], 'an environment reached the node over IPv6 link-local');
              assert.notEqual(r.stdout, '200');
            } finally {
              v6.closeAllConnections();
              v6.close();
            }
          }

          // Egress to an ordinary address still works.
          const plain = await curl('web', `http://${meta.addr}/plain`);
          assert.equal(plain.stdout, '200', plain.stderr);
          assert.ok(canary.hits().some((h) => h.startsWith('GET /plain ')));

          // DNS to the network's gateway stays open, over UDP and TCP.
          const echo = await dnsEcho(gateway);
          if (typeof echo === 'string') process.stderr.write(`# skipped the DNS check: port 53 on ${gateway} is taken (${echo})\n`);
          else {
            try {
              const dns = await node.cli([
                'exec',
                'web',
                '--',
                'node',
                '-e',
                `const u = require('node:dgram').createSocket('udp4');
                 const fail = (why) => { console.log(why); process.exit(1); };
                 setTimeout(() => fail('no answer'), 5000);
                 u.on('message', (m) => {
                   const t = require('node:net').connect(53, '${gateway}', () => t.write('tcp'));
                   t.on('data', (d) => { console.log(m + ' ' + d); process.exit(0); }).on('error', (e) => fail(e.code));
                 });
                 u.send('udp', 53, '${gateway}');`,
              ]);
              assert.equal(dns.stdout.trim(), 'udp tcp', dns.stderr);
            } finally {
              echo.close();
            }
          }

          // No network at all: nothing to reach, and it says so at once.
          await node.json(['new', 'sealed', '--repo', repo.path, '--network', 'none']);
          const sealed = await curl('sealed', `http://${METADATA}/sealed`);
          assert.equal(sealed.code, 7, `curl exited ${sealed.code}`);
          assert.deepEqual(
            canary.hits().filter((h) => h.includes('/sealed')),
            [],
          );
          const rm = await node.cli(['rm', 'sealed']);
          assert.equal(rm.code, 0, rm.stderr);
        })(),
      ),
    );

    it("keeps the screenshot browser to the environment's own ports", { timeout: 240_000 }, () =>
      track(
        (async () => {
          const loopback = await startLoopbackCanary();
          try {
            await node.json(['service', 'start', 'web', 'page']);
            await node.cli(['exec', 'web', '--', 'rm', '-f', '/tmp/page.log']);
            const r = await node.cli([
              'verify',
              'web',
              '--json',
              '--screenshot',
              `http://localhost:3000/?canary=${loopback.port}&lan=${meta.addr}`,
            ]);
            const v = JSON.parse(r.stdout) as VerifyResult;
            assert.deepEqual(loopback.hits(), [], "the page steered the node's browser to the node's loopback");
            assert.deepEqual(
              canary.hits().filter((h) => h.includes('from-host-chromium')),
              [],
              "the page steered the node's browser to the LAN or the metadata address",
            );
            assert.equal(r.code, 0, JSON.stringify(v.failures));
            const shot = v.screenshots[0]!;
            assert.ok(shot.path);
            const stats = pngStats(readFileSync(shot.path));
            assert.equal(stats.blank, false);
            // The page's own resources came through: its port, relative and absolute, and another
            // port of the environment.
            const log = (await node.cli(['exec', 'web', '--', 'cat', '/tmp/page.log'])).stdout;
            for (const want of ['3000 /same-port.svg', '3000 /same-port-absolute.svg', '3001 /other-port.svg'])
              assert.ok(log.split('\n').includes(want), `the page did not load ${want}:\n${log}`);
          } finally {
            await loopback.close();
          }
        })(),
      ),
    );
  });
}

// Secrets on the wire, without an engine: the node's interceptor (as the egress proxy calls it
// through its hook) in front of real HTTPS and HTTP servers in test namespaces. The allowed
// host gets the value, per request on a keep-alive connection; another host gets the
// placeholder and is never intercepted; an upstream the node does not trust gets nothing;
// removing a secret takes effect on the next request of an open connection.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { interceptorFor, type Upstream } from '../../src/env/egress/intercept.js';
import { NodeSecrets } from '../../src/env/secrets/node-secrets.js';
import { StateDb } from '../../src/state/state-db.js';
import { headerOf, startEcho, TestCa, type EchoHost } from '../helpers/echo-hosts.js';
import { TestNetwork } from '../helpers/hosts.js';

const ENV = 'env-under-test';
const VALUE = `ghp_${'Zq7'.repeat(12)}realvalue`;

/** Stands in for the egress proxy: peeks, asks the hook, hands over or splices. */
async function proxyFor(up: Upstream): Promise<{ port: number; close: () => Promise<void> }> {
  const socks = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    sock.on('error', () => sock.destroy());
    sock.once('data', (head: Buffer) => {
      sock.pause();
      const handler = interceptorFor(ENV, up.host, up.port);
      if (handler) return handler(sock, head, up);
      const u = net.connect(up.port, up.addresses[0]);
      socks.add(u);
      u.on('close', () => socks.delete(u));
      u.on('error', () => sock.destroy());
      u.write(head);
      sock.pipe(u).pipe(sock);
      sock.resume();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        server.close(() => r());
      }),
  };
}

interface Reply {
  status: number;
  body: string;
  reused: boolean;
  peerIssuer: string;
  headers: http.IncomingHttpHeaders;
}

function request(
  o: { port: number; host: string; secure: boolean; ca?: string; agent?: http.Agent; method?: string },
  path: string,
  headers: Record<string, string>,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const opts: https.RequestOptions = {
      method: o.method ?? 'GET',
      host: '127.0.0.1',
      port: o.port,
      path,
      headers: { host: o.host, ...headers },
      servername: o.host,
      ...(o.ca ? { ca: o.ca } : {}),
      agent: o.agent ?? false,
    };
    const req = (o.secure ? https : http).request(opts, (res) => {
      const peer = res.socket instanceof tls.TLSSocket ? res.socket.getPeerCertificate() : undefined;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        resolve({
          status: res.statusCode ?? 0,
          body,
          reused: req.reusedSocket,
          peerIssuer: String(peer?.issuer?.CN ?? ''),
          headers: res.headers,
        });
      });
    });
    req.setTimeout(20_000, () => req.destroy(new Error(`no answer from ${o.host}${path}`)));
    req.on('error', reject);
    req.end();
  });
}

describe('secrets on the wire (the interceptor behind the egress hook)', () => {
  let tnet: TestNetwork;
  let testCa: TestCa;
  let rogueCa: TestCa;
  let api: EchoHost;
  let other: EchoHost;
  let rogue: EchoHost;
  let home: string;
  let db: StateDb;
  let secrets: NodeSecrets;
  let placeholder: string;
  let keyPlaceholder: string;
  let bundle: string;
  const proxies: Array<{ port: number; close: () => Promise<void> }> = [];
  const proxy = async (host: string, addr: string, port: number): Promise<number> => {
    const p = await proxyFor({ host, port, addresses: [addr] });
    proxies.push(p);
    return p.port;
  };

  before(async () => {
    testCa = new TestCa('trusted');
    rogueCa = new TestCa('rogue');
    tnet = TestNetwork.create();
    const a = tnet.addHost('api');
    const o = tnet.addHost('other');
    const r = tnet.addHost('rogue');
    api = await startEcho(a, testCa.issue(['api.secrets.test']));
    other = await startEcho(o, testCa.issue(['other.secrets.test']));
    rogue = await startEcho(r, rogueCa.issue(['rogue.secrets.test']));
    home = mkdtempSync(join(tmpdir(), 'berth-secrets-wire-'));
    // The node's trust: the system's bundle and the test CA (as BERTH_CA_BUNDLE would give).
    const nodeBundle = join(home, 'ca-bundle.crt');
    writeFileSync(nodeBundle, readFileSync('/etc/ssl/certs/ca-certificates.crt', 'utf8') + readFileSync(testCa.cert, 'utf8'));
    db = new StateDb(join(home, 'state.db'));
    secrets = await NodeSecrets.start({ db, home, nodeId: 'wiretest', caBundle: nodeBundle, resolveEnv: (e) => e, log: () => {} });
    secrets.vault.set('api-token', { value: VALUE, host: 'api.secrets.test' });
    // Plain HTTP gets a value only where the operator named the port.
    secrets.vault.set('api-key', { value: VALUE, host: 'api.secrets.test:80', header: 'X-Api-Key: key={}' });
    secrets.vault.set('rogue-token', { value: VALUE, host: 'rogue.secrets.test' });
    const bound = secrets.vault.prepare(['api-token', 'api-key', 'rogue-token']);
    bound.commit(ENV);
    placeholder = bound.vars.API_TOKEN!;
    keyPlaceholder = bound.vars.API_KEY!;
    bundle = readFileSync(secrets.bundle!, 'utf8');
  });
  after(async () => {
    for (const p of proxies) await p.close();
    secrets?.close();
    db?.close();
    await tnet?.destroy();
    testCa?.cleanup();
    rogueCa?.cleanup();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it(
    'the secret host gets the value in the header, per request on one keep-alive connection; the client sees the node CA',
    { timeout: 60_000 },
    async () => {
      assert.match(placeholder, /^berth-placeholder-api-token-/);
      assert.ok(!placeholder.includes(VALUE));
      const port = await proxy('api.secrets.test', api.host.addr, 443);
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const replies: Reply[] = [];
        for (let i = 0; i < 3; i++) {
          replies.push(
            await request({ port, host: 'api.secrets.test', secure: true, ca: bundle, agent }, `/r${i}?q=${placeholder}`, {
              authorization: `Bearer ${placeholder}`,
              'x-other': 'plain',
            }),
          );
        }
        for (const [i, r] of replies.entries()) {
          assert.equal(r.status, 200, r.body);
          // Only headers: the request line keeps the placeholder.
          const seen = api.request(`/r${i}?q=${placeholder}`);
          assert.deepEqual(headerOf(seen, 'authorization'), [`Bearer ${VALUE}`]);
          assert.deepEqual(headerOf(seen, 'x-other'), ['plain']);
          assert.equal(seen.onConnection, i);
          assert.ok(!r.body.includes(VALUE));
          assert.equal(r.peerIssuer, 'berth node wiretest secrets CA');
        }
        assert.deepEqual(
          replies.map((r) => r.reused),
          [false, true, true],
          'the three requests went over one connection',
        );
      } finally {
        agent.destroy();
      }
    },
  );

  it('a placeholder sent to another host stays a placeholder, and that TLS is not intercepted', { timeout: 60_000 }, async () => {
    const port = await proxy('other.secrets.test', other.host.addr, 443);
    // Only the test CA: the server's own certificate reaches the client, not one of the node's.
    const r = await request({ port, host: 'other.secrets.test', secure: true, ca: readFileSync(testCa.cert, 'utf8') }, '/', {
      authorization: `Bearer ${placeholder}`,
    });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(headerOf(other.request('/'), 'authorization'), [`Bearer ${placeholder}`]);
    assert.equal(r.peerIssuer, 'berth test CA trusted');
    assert.ok(!other.text().includes(VALUE));
  });

  it('Basic credentials over TLS; a Host naming another host gets 421; plain HTTP to 443 is refused', { timeout: 60_000 }, async () => {
    const port = await proxy('api.secrets.test', api.host.addr, 443);
    const basic = Buffer.from(`x-access-token:${placeholder}`).toString('base64');
    const r = await request({ port, host: 'api.secrets.test', secure: true, ca: bundle }, '/basic', { authorization: `Basic ${basic}` });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(headerOf(api.request('/basic'), 'authorization'), [
      `Basic ${Buffer.from(`x-access-token:${VALUE}`).toString('base64')}`,
    ]);
    // SNI says the secret's host, Host says another: never sent on with the value.
    const fronted = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port,
          servername: 'api.secrets.test',
          ca: bundle,
          path: '/fronted',
          headers: { host: 'other.secrets.test', authorization: `Bearer ${placeholder}` },
        },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(fronted.status, 421, fronted.body);
    assert.ok(!api.seen().some((x) => x.url === '/fronted'), 'a fronted request reached the host');
    // Plain HTTP on the TLS port would carry the value in clear.
    const clear = await request({ port, host: 'api.secrets.test', secure: false }, '/clear', { authorization: `Bearer ${placeholder}` });
    assert.equal(clear.status, 400, clear.body);
    assert.ok(!api.seen().some((x) => x.url === '/clear'), 'a request in clear reached the host');
  });

  it(
    'a host that reflects what it got hands back no value: headers, a body split across writes, gzip; TRACE is refused',
    { timeout: 60_000 },
    async () => {
      const port = await proxy('api.secrets.test', api.host.addr, 443);
      const o = { port, host: 'api.secrets.test', secure: true, ca: bundle };
      const basic = Buffer.from(`x-access-token:${placeholder}`).toString('base64');
      const sentBasic = Buffer.from(`x-access-token:${VALUE}`).toString('base64');
      for (const path of ['/reflect-plain', '/reflect-gzip']) {
        const r = await request(o, path, {
          authorization: `Bearer ${placeholder}`,
          'x-basic': `Basic ${basic}`,
          'accept-encoding': 'gzip',
        });
        assert.equal(r.status, 200, r.body);
        // The host did get the value, and sent it back; the environment sees it masked.
        assert.deepEqual(headerOf(api.request(path), 'authorization'), [`Bearer ${VALUE}`]);
        assert.match(r.body, /^you sent: /);
        assert.ok(!r.body.includes(VALUE) && !String(r.headers['x-you-sent']).includes(VALUE), r.body);
        assert.match(r.body, new RegExp(`Bearer \\*{${`Bearer ${VALUE}`.length - 7}}`));
        assert.equal(r.body.match(/\*{20,}/g)?.length, 4, r.body);
        assert.equal(r.headers['content-encoding'], undefined);
      }
      const b = await request(o, '/reflect-basic', { authorization: `Basic ${basic}` });
      assert.equal(b.status, 200, b.body);
      assert.deepEqual(headerOf(api.request('/reflect-basic'), 'authorization'), [`Basic ${sentBasic}`]);
      assert.ok(!b.body.includes(sentBasic) && !String(b.headers['x-you-sent']).includes(sentBasic), b.body);
      const trace = await request({ ...o, method: 'TRACE' }, '/reflect-trace', { authorization: `Bearer ${placeholder}` });
      assert.equal(trace.status, 405, trace.body);
      assert.match(trace.body, /TRACE to api\.secrets\.test refused/);
      assert.ok(!api.seen().some((x) => x.url === '/reflect-trace'), 'a TRACE reached the host');
    },
  );

  it('plain HTTP gets a value only for a secret whose port was named; header templates work', { timeout: 60_000 }, async () => {
    const port = await proxy('api.secrets.test', api.host.addr, 80);
    const basic = Buffer.from(`x-access-token:${placeholder}`).toString('base64');
    const r = await request({ port, host: 'api.secrets.test', secure: false }, '/plain', {
      authorization: `Basic ${basic}`,
      'x-api-key': keyPlaceholder,
      'x-elsewhere': keyPlaceholder,
    });
    assert.equal(r.status, 200, r.body);
    const seen = api.request('/plain');
    assert.equal(seen.scheme, 'http');
    // api-token names no port: HTTPS only, so in clear it stays a placeholder.
    assert.deepEqual(headerOf(seen, 'authorization'), [`Basic ${basic}`]);
    // A template names the one header that gets the value, written as the host wants it.
    assert.deepEqual(headerOf(seen, 'x-api-key'), [`key=${VALUE}`]);
    assert.deepEqual(headerOf(seen, 'x-elsewhere'), [keyPlaceholder]);
  });

  it('an upstream whose certificate the node does not trust gets nothing: 502', { timeout: 60_000 }, async () => {
    const port = await proxy('rogue.secrets.test', rogue.host.addr, 443);
    const r = await request({ port, host: 'rogue.secrets.test', secure: true, ca: bundle }, '/', {
      authorization: `Bearer ${placeholder}`,
    });
    assert.equal(r.status, 502);
    assert.match(r.body, /berth: secrets: rogue\.secrets\.test:443 unreachable/);
    assert.deepEqual(rogue.seen(), []);
  });

  it('removing a secret takes effect on the next request of an open connection', { timeout: 60_000 }, async () => {
    const port = await proxy('api.secrets.test', api.host.addr, 443);
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const o = { port, host: 'api.secrets.test', secure: true, ca: bundle, agent };
      await request(o, '/before', { authorization: `Bearer ${placeholder}` });
      assert.deepEqual(headerOf(api.request('/before'), 'authorization'), [`Bearer ${VALUE}`]);
      assert.ok(secrets.vault.remove('api-token'));
      const second = await request(o, '/after', { authorization: `Bearer ${placeholder}` });
      assert.equal(second.reused, true);
      assert.deepEqual(headerOf(api.request('/after'), 'authorization'), [`Bearer ${placeholder}`]);
      // A new connection to the host's HTTPS port is no longer intercepted at all; the
      // environment's other secret for the same host (its port 80) still is.
      assert.equal(interceptorFor(ENV, 'api.secrets.test', 443), null);
      assert.notEqual(interceptorFor(ENV, 'api.secrets.test', 80), null);
    } finally {
      agent.destroy();
    }
  });

  it('keeps values sealed at rest: the state database and the node home never hold one in clear', () => {
    db.close();
    db = new StateDb(join(home, 'state.db'));
    const files = ['state.db', 'state.db-wal', 'secrets.key'].map((f) => join(home, f));
    for (const f of files) {
      let bytes: Buffer;
      try {
        bytes = readFileSync(f);
      } catch {
        continue;
      }
      assert.equal(bytes.indexOf(VALUE), -1, `${f} holds the value in clear`);
    }
  });
});

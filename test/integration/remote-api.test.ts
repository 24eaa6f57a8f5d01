// The node over TCP: a bearer token on every endpoint, and a real latency on the link
// through the delaying proxy; one persistent connection makes sequential commands cost one
// round trip each.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { BERTH, makeRepo, NodeFixture, run, testEngines } from '../helpers/fixture.js';
import { startDelayProxy, type DelayProxy } from '../helpers/delay-proxy.js';
import { NodeClient } from '../../src/client/client.js';
import { BerthError } from '../../src/core/errors.js';
import { routeTable, WEBSOCKET_ROUTES } from '../../src/node/server.js';

function raw(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const engine = testEngines()[0];
if (engine) {
  describe(`remote API on ${engine}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let proxy: DelayProxy;
    let port = 0;
    let token = '';
    before(async () => {
      repo = makeRepo();
      node = await NodeFixture.start(engine, {});
      await node.killDaemon('SIGTERM');
      await node.startDaemonWith(['--listen', '127.0.0.1:0']);
      const m = /also listening on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(node.log());
      port = Number(m?.[1]);
      token = readFileSync(join(node.home, 'token'), 'utf8').trim();
      proxy = await startDelayProxy({ host: '127.0.0.1', port }, 100);
      await node.json(['new', 'remote', '--repo', repo.path]);
    });
    after(async () => {
      await proxy?.close();
      await node?.stop();
      repo?.cleanup();
    });

    it('refuses a missing or wrong token on every endpoint', async () => {
      // Every route the server has, synthesized from its own table, so a new one cannot be missed.
      const endpoints: Array<[string, string]> = routeTable().map((r) => [
        r.method,
        r.pattern
          .replace(/^\^|\$$/g, '')
          .replace(/\\\//g, '/')
          .replace(/\(\[0-9a-f\]\{64\}\)/g, 'a'.repeat(64))
          .replace(/\(\[\^\/\]\+\)/g, 'remote'),
      ]);
      assert.ok(endpoints.length >= 30, `only ${endpoints.length} routes found`);
      endpoints.push(['GET', '/v1/nonexistent']);
      for (const [method, path] of endpoints) {
        assert.equal(await raw(port, method, path), 401, `${method} ${path} without a token`);
        assert.equal(await raw(port, method, path, { authorization: 'Bearer wrong' }), 401, `${method} ${path} with a wrong token`);
        assert.equal(await raw(port, method, path, { authorization: `Basic ${token}` }), 401, `${method} ${path} with another scheme`);
      }
      for (const path of WEBSOCKET_ROUTES) {
        const status = await raw(port, 'GET', path, {
          connection: 'upgrade',
          upgrade: 'websocket',
          'sec-websocket-version': '13',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        });
        assert.equal(status, 401, `upgrade ${path}`);
      }
      // The environment is untouched.
      assert.equal((await node.json<Array<{ name: string }>>(['ls'])).length, 1);
      const wrong = new NodeClient({ url: `http://127.0.0.1:${port}`, token: 'nope' });
      await assert.rejects(wrong.listEnvs(), (e: BerthError) => e.code === 'unauthorized');
      wrong.close();
    });

    it('runs commands through a 100 ms link, over one connection, and batches them', async () => {
      const client = new NodeClient({ url: `http://127.0.0.1:${proxy.port}`, token });
      const r = await client.exec('remote', { argv: ['sh', '-c', 'echo $BERTH_ENV'] });
      assert.equal(Buffer.from(r.stdout, 'base64').toString(), 'remote\n');
      const b = await client.batch('remote', { steps: Array.from({ length: 10 }, (_, i) => ({ argv: ['echo', String(i)] })) });
      assert.equal(b.completed, 10);
      assert.deepEqual(
        b.steps.map((s) => Buffer.from(s.stdout, 'base64').toString().trim()),
        ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
      );
      // Streamed exec over a WebSocket, through the same link.
      const out: Buffer[] = [];
      const h = client.execStream('remote', { argv: ['cat'], interactiveStdin: true }, { stdout: (c) => out.push(c), stderr: () => {} });
      h.writeStdin(Buffer.from('through the proxy'));
      h.endStdin();
      assert.equal((await h.wait()).exitCode, 0);
      assert.equal(Buffer.concat(out).toString(), 'through the proxy');
      client.close();
    });
  });

  describe(`TLS on ${engine}`, () => {
    let node: NodeFixture;
    let dir: string;
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'berth-tls-'));
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-days',
          '1',
          '-subj',
          '/CN=127.0.0.1',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          join(dir, 'cert.pem'),
        ],
        { stdio: 'ignore' },
      );
      node = await NodeFixture.start(engine);
      await node.killDaemon('SIGTERM');
      await node.startDaemonWith(['--listen', '127.0.0.1:0', '--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')]);
    });
    after(async () => {
      await node?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('serves the API over TLS to clients that trust its certificate, and to no one else', async () => {
      const m = /also listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(node.log());
      assert.ok(m, node.log());
      const url = `https://127.0.0.1:${m[1]}`;
      const token = readFileSync(join(node.home, 'token'), 'utf8').trim();
      const good = new NodeClient({ url, token, ca: readFileSync(join(dir, 'cert.pem')) });
      assert.deepEqual(await good.listEnvs(), []);
      good.close();
      const untrusting = new NodeClient({ url, token });
      await assert.rejects(untrusting.listEnvs(), /self.signed|certificate/i);
      untrusting.close();
      // The CLI, as a user adds such a node.
      const laptop = mkdtempSync(join(tmpdir(), 'berth-laptop-'));
      writeFileSync(join(laptop, 'token'), token);
      const env = { ...process.env, BERTH_HOME: laptop, BERTH_NO_AUTOSTART: '1' };
      const add = await run(
        process.execPath,
        [BERTH, 'node', 'add', 'secure', `tls://127.0.0.1:${m[1]}`, '--token-file', join(laptop, 'token'), '--ca', join(dir, 'cert.pem')],
        { env },
      );
      assert.equal(add.code, 0, add.stderr);
      const noCa = await run(
        process.execPath,
        [BERTH, 'node', 'add', 'insecure', `tls://127.0.0.1:${m[1]}`, '--token-file', join(laptop, 'token')],
        { env },
      );
      assert.equal(noCa.code, 10);
      rmSync(laptop, { recursive: true, force: true });
    });
  });
}

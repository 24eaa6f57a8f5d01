// The client's small HTTP/1.1 client (src/client/http1.ts) against servers that frame their
// answers every way HTTP/1.1 allows, close early, or never answer; over a unix socket in a
// temporary directory.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Http1Error, Http1Pool } from '../../src/client/http1.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-http1-'));
let n = 0;

/** A raw server: `answer` gets each connection and what arrived on it so far. */
async function rawServer(answer: (socket: net.Socket, got: string) => void): Promise<{ path: string; close: () => Promise<void> }> {
  const path = join(dir, `s${n++}.sock`);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    let got = '';
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      answer(s, got);
    });
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe('the small HTTP/1.1 client', () => {
  let node: http.Server;
  let nodePath: string;
  const connections: net.Socket[] = [];

  before(async () => {
    nodePath = join(dir, 'node.sock');
    node = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (req.url === '/chunked') {
          res.write('{"a":');
          setTimeout(() => res.end('1}'), 5);
          return;
        }
        const text = JSON.stringify({ method: req.method, url: req.url, body, auth: req.headers.authorization ?? null });
        res.writeHead(req.url === '/missing' ? 404 : 200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(text),
        });
        res.end(text);
      });
    });
    node.on('connection', (s: net.Socket) => connections.push(s));
    await new Promise<void>((r) => node.listen(nodePath, r));
  });

  after(async () => {
    await new Promise<void>((r) => node.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("reads node:http's answers, sized and chunked, and keeps one connection for calls in turn", async () => {
    const pool = new Http1Pool({ socketPath: nodePath });
    const before = connections.length;
    const body = Buffer.from(JSON.stringify({ argv: ['true'] }));
    const a = await pool.request(
      'POST',
      '/v1/x',
      { 'content-type': 'application/json', 'content-length': String(body.length), authorization: 'Bearer t' },
      body,
    );
    assert.equal(a.status, 200);
    assert.deepEqual(JSON.parse(a.body.toString()), { method: 'POST', url: '/v1/x', body: '{"argv":["true"]}', auth: 'Bearer t' });
    const b = await pool.request('GET', '/chunked', {}, undefined);
    assert.deepEqual(JSON.parse(b.body.toString()), { a: 1 });
    const c = await pool.request('DELETE', '/missing', {}, undefined);
    assert.equal(c.status, 404);
    assert.equal(connections.length - before, 1, 'one kept-alive connection for three calls in turn');
    pool.destroy();
  });

  it('opens a connection per call at once', async () => {
    const pool = new Http1Pool({ socketPath: nodePath });
    const all = await Promise.all(Array.from({ length: 5 }, (_, i) => pool.request('GET', `/p${i}`, {}, undefined)));
    assert.deepEqual(
      all.map((a) => (JSON.parse(a.body.toString()) as { url: string }).url),
      ['/p0', '/p1', '/p2', '/p3', '/p4'],
    );
    pool.destroy();
  });

  it('takes an answer that runs to the end of the connection, and one sent before the body was read', async () => {
    const toEnd = await rawServer((s, got) => {
      if (got.includes('\r\n\r\n')) s.end('HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{"whole":true}');
    });
    const pool = new Http1Pool({ socketPath: toEnd.path });
    assert.equal((await pool.request('GET', '/', {}, undefined)).body.toString(), '{"whole":true}');
    await toEnd.close();
    // A node that refuses a body too large answers at once and closes without reading the rest.
    const early = await rawServer((s) => {
      const text = '{"error":{"code":"invalid_request","message":"too large"}}';
      s.end(`HTTP/1.1 413 Payload Too Large\r\ncontent-length: ${text.length}\r\nconnection: close\r\n\r\n${text}`);
    });
    const big = Buffer.alloc(8 * 1024 * 1024, 120);
    const a = await new Http1Pool({ socketPath: early.path }).request('PUT', '/', { 'content-length': String(big.length) }, big);
    assert.equal(a.status, 413);
    await early.close();
  });

  it('says whether the node was never reached, cut the answer off, or was given up on', async () => {
    const none = new Http1Pool({ socketPath: join(dir, 'nobody.sock') });
    await assert.rejects(none.request('GET', '/', {}, undefined), (e: unknown) => e instanceof Http1Error && e.stage === 'connect');
    const cut = await rawServer((s) => s.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"par'));
    await assert.rejects(
      new Http1Pool({ socketPath: cut.path }).request('GET', '/', {}, undefined),
      (e: unknown) => e instanceof Http1Error && e.stage === 'after-send',
    );
    await cut.close();
    const silent = await rawServer(() => {});
    await assert.rejects(
      new Http1Pool({ socketPath: silent.path }).request('GET', '/', {}, undefined, AbortSignal.timeout(50)),
      (e: unknown) => e instanceof Http1Error && e.stage === 'abort' && e.cause.name === 'AbortError',
    );
    await silent.close();
  });

  it('refuses what is not an HTTP/1.1 answer', async () => {
    const junk = await rawServer((s) => s.end('SSH-2.0-OpenSSH\r\n\r\n'));
    await assert.rejects(
      new Http1Pool({ socketPath: junk.path }).request('GET', '/', {}, undefined),
      (e: unknown) => e instanceof Http1Error && /not HTTP/.test(e.message),
    );
    await junk.close();
  });
});

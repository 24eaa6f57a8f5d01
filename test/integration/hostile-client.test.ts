// A hostile client cannot hurt the node. A malformed WebSocket frame closes that one connection
// with the close code that says why, and the node serves everyone else; a client's mistake is
// answered with a 4xx (never a 500, never a dropped connection); the bearer scheme is matched as
// RFC 7235 says; and a killed daemon's zombie does not keep the next daemon from starting.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BERTH, failureTracker, makeRepo, NodeFixture, testEngines } from '../helpers/fixture.js';
import { NodeClient } from '../../src/client/client.js';
import { routeTable } from '../../src/node/server.js';
import { TAR_END, tarHeader, tarPadding } from '../../src/toolchain/tar.js';

type Target = { socketPath: string } | { host: string; port: number };

/** How long any one wait in these tests may take before it is a failure, not a hang. */
const DEADLINE_MS = 30_000;

/** One WebSocket frame as a client writes it, with whatever it should not have. */
function wsFrame(f: { opcode: number; payload?: Buffer; fin?: boolean; rsv?: number; mask?: boolean; length?: bigint }): Buffer {
  const payload = f.payload ?? Buffer.alloc(0);
  const mask = f.mask ?? true;
  const length = f.length ?? BigInt(payload.length);
  const head: number[] = [((f.fin ?? true) ? 0x80 : 0) | ((f.rsv ?? 0) << 4) | f.opcode];
  const maskBit = mask ? 0x80 : 0;
  let ext = Buffer.alloc(0);
  if (length < 126n) head.push(maskBit | Number(length));
  else if (length < 65536n) {
    head.push(maskBit | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(Number(length));
  } else {
    head.push(maskBit | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(length);
  }
  if (!mask) return Buffer.concat([Buffer.from(head), ext, payload]);
  const key = randomBytes(4);
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length; i++) masked[i]! ^= key[i % 4]!;
  return Buffer.concat([Buffer.from(head), ext, key, masked]);
}

/** A WebSocket client written by hand over a raw socket, so it can send what no library would. */
class RawWebSocket {
  private buf = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | undefined;

  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.wake?.();
    });
    sock.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
    // The server closes on a bad frame while the rest of a large one is still being written.
    sock.on('error', () => {});
  }

  /** The handshake, by hand: the HTTP status, and the connection when it is 101. */
  static async open(target: Target, path: string, headers: Record<string, string> = {}): Promise<{ status: number; ws: RawWebSocket }> {
    const sock = 'socketPath' in target ? net.connect(target.socketPath) : net.connect(target.port, target.host);
    const ws = new RawWebSocket(sock);
    const lines = [
      `GET ${path} HTTP/1.1`,
      'Host: berth',
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
      'Sec-WebSocket-Version: 13',
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ];
    sock.write(lines.join('\r\n') + '\r\n\r\n');
    const end = await ws.until(() => {
      const i = ws.buf.indexOf('\r\n\r\n');
      return i < 0 ? undefined : i;
    });
    if (end === undefined) return { status: 0, ws };
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(ws.buf.subarray(0, end).toString('latin1'))?.[1] ?? 0);
    ws.buf = ws.buf.subarray(end + 4);
    return { status, ws };
  }

  /** Waits until `take` finds something in what has come, or the connection ends (undefined). */
  private async until<T>(take: () => T | undefined): Promise<T | undefined> {
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      const got = take();
      if (got !== undefined) return got;
      if (this.ended) return undefined;
      if (Date.now() > deadline) throw new Error(`nothing came from the node in ${DEADLINE_MS} ms`);
      await Promise.race([new Promise<void>((r) => (this.wake = r)), sleep(1000)]);
    }
  }

  /** The next frame the server sent, or null when the connection ended. */
  async frame(): Promise<{ opcode: number; payload: Buffer } | null> {
    const f = await this.until(() => {
      const b = this.buf;
      if (b.length < 2) return undefined;
      let len = b[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (b.length < 4) return undefined;
        len = b.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (b.length < 10) return undefined;
        len = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      if (b.length < at + len) return undefined;
      this.buf = b.subarray(at + len);
      return { opcode: b[0]! & 0x0f, payload: b.subarray(at, at + len) };
    });
    return f ?? null;
  }

  /** The code in the server's close frame ('none' if it closed without one), past any other frames. */
  async closeCode(): Promise<number | 'none'> {
    for (;;) {
      const f = await this.frame();
      if (!f) return 'none';
      if (f.opcode === 8) {
        this.sock.end();
        return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
      }
    }
  }

  write(bytes: Buffer): void {
    this.sock.write(bytes);
  }

  destroy(): void {
    this.sock.destroy();
  }
}

/** An HTTP request that always settles: the status, or what became of the connection instead. */
function request(
  target: Target,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number | string; text: string }> {
  return new Promise((resolve) => {
    const req = http.request(
      {
        ...target,
        method,
        path,
        agent: false,
        headers: { ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers },
      },
      (res) => {
        // An event stream never ends: its status is the answer.
        if (String(res.headers['content-type']).startsWith('text/event-stream')) {
          res.destroy();
          return resolve({ status: res.statusCode ?? 0, text: '' });
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err: NodeJS.ErrnoException) => resolve({ status: `response ${err.code ?? err.message}`, text: '' }));
      },
    );
    req.setTimeout(DEADLINE_MS, () => req.destroy(new Error('no answer in time')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ status: `no status (${err.code ?? err.message})`, text: '' }));
    req.end(body);
  });
}

/** The engine's own failure to freeze or thaw a container (runc pause fails now and then on a
 * loaded host): the node's fault, and rightly a 500. */
function engineFault(res: { status: number | string; text: string }): boolean {
  return res.status === 500 && /"message":"engine could not (pause|resume) container/.test(res.text);
}

function tcpListener(node: NodeFixture): { host: string; port: number; token: string } {
  const m = /also listening on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(node.log());
  assert.ok(m, node.log());
  return { host: '127.0.0.1', port: Number(m[1]), token: readFileSync(join(node.home, 'token'), 'utf8').trim() };
}

function assertAlive(node: NodeFixture, after: string): void {
  assert.ok(
    node.daemon && node.daemon.exitCode === null && node.daemon.signalCode === null,
    `the daemon died after ${after}:\n${node.log()}`,
  );
}

const tarFile = (name: string, text: string): Buffer => {
  const b = Buffer.from(text);
  return Buffer.concat([tarHeader(name, b.length, 1_700_000_000), b, tarPadding(b.length)]);
};

const first = testEngines()[0];
if (first) {
  describe(`malformed WebSocket frames on ${first}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let unix: Target;
    let tcp: { host: string; port: number; token: string };
    let owner: RawWebSocket | undefined;
    let session = '';
    const tracker = failureTracker();
    before(async () => {
      repo = makeRepo();
      node = await NodeFixture.start(first);
      await node.killDaemon('SIGTERM');
      await node.startDaemonWith(['--listen', '127.0.0.1:0']);
      unix = { socketPath: join(node.home, 'berth.sock') };
      tcp = tcpListener(node);
      await node.json(['new', 'hostile', '--repo', repo.path]);
      // Something for logs to follow and connect to reach: a TCP echo server, printing a line.
      const client = new NodeClient({ socketPath: join(node.home, 'berth.sock') });
      await client.startService('hostile', {
        name: 'echo',
        argv: ['/.berth/bin/node', '-e', "require('net').createServer((s) => s.pipe(s)).listen(7000, () => console.log('up'))"],
        ready: { kind: 'tcp', port: 7000 },
        wait: true,
      });
      client.close();
      // A terminal for watchers to watch, held open by its owner.
      const opened = await RawWebSocket.open(unix, '/v1/envs/hostile/pty?cols=80&rows=24');
      assert.equal(opened.status, 101);
      owner = opened.ws;
      for (let f = await owner.frame(); f; f = await owner.frame()) {
        if (f.opcode === 1) {
          session = (JSON.parse(f.payload.toString('utf8')) as { session: string }).session;
          break;
        }
      }
      assert.ok(session, 'the terminal session opened');
    });
    after(async () => {
      owner?.destroy();
      await node?.stop(tracker.failed);
      repo?.cleanup();
    });

    // Each route on a real environment; `text`: it says so in a text message once it serves.
    const routes = (): Array<{ path: string; ready: 'text' | null }> => [
      { path: '/v1/envs/hostile/exec/ws', ready: null },
      { path: '/v1/envs/hostile/pty?cols=80&rows=24', ready: 'text' },
      { path: `/v1/envs/hostile/pty/${session}/watch`, ready: 'text' },
      { path: '/v1/envs/hostile/logs/echo?follow=1', ready: null },
      { path: '/v1/envs/hostile/connect/7000', ready: 'text' },
    ];

    /** Opens a route by hand, waits until it serves, sends `bytes`, and returns the close code. */
    const attack = async (
      target: Target,
      route: { path: string; ready: 'text' | null },
      bytes: Buffer[],
      headers = {},
    ): Promise<number | 'none'> => {
      const { status, ws } = await RawWebSocket.open(target, route.path, headers);
      assert.equal(status, 101, `upgrade ${route.path}`);
      if (route.ready) {
        for (;;) {
          const f = await ws.frame();
          assert.ok(f, `${route.path} closed before it served`);
          if (f.opcode === 1) break;
        }
      }
      for (const b of bytes) ws.write(b);
      const code = await ws.closeCode();
      ws.destroy();
      return code;
    };

    const MALFORMED: Array<{ what: string; bytes: Buffer; code: number }> = [
      { what: 'an unmasked client frame', bytes: wsFrame({ opcode: 1, payload: Buffer.from('{}'), mask: false }), code: 1002 },
      { what: 'a reserved opcode', bytes: wsFrame({ opcode: 3, payload: Buffer.from('x') }), code: 1002 },
      { what: 'invalid UTF-8 in a text frame', bytes: wsFrame({ opcode: 1, payload: Buffer.from([0x7b, 0xc3, 0x28, 0x7d]) }), code: 1007 },
      { what: 'RSV1 set without an extension', bytes: wsFrame({ opcode: 1, rsv: 0b100, payload: Buffer.from('{}') }), code: 1002 },
      { what: 'RSV2 and RSV3 set', bytes: wsFrame({ opcode: 2, rsv: 0b011, payload: Buffer.from('x') }), code: 1002 },
      { what: 'a one-byte close frame', bytes: wsFrame({ opcode: 8, payload: Buffer.of(3) }), code: 1002 },
      { what: 'a bare continuation frame', bytes: wsFrame({ opcode: 0, payload: Buffer.from('x') }), code: 1002 },
      { what: 'a 2^63 payload length', bytes: wsFrame({ opcode: 2, length: 2n ** 63n }), code: 1009 },
    ];

    it('closes the connection of a malformed frame with the code that says why, on every route, and goes on serving', () =>
      tracker.track(
        (async () => {
          for (const route of routes()) {
            for (const m of MALFORMED) {
              const code = await attack(unix, route, [m.bytes]);
              assert.equal(code, m.code, `${m.what} on ${route.path}`);
              assertAlive(node, `${m.what} on ${route.path}`);
            }
          }
          const ls = await node.json<Array<{ name: string; state: string }>>(['ls']);
          assert.deepEqual(
            ls.map((e) => [e.name, e.state]),
            [['hostile', 'running']],
          );
          const r = await node.cli(['exec', 'hostile', '--', 'echo', 'still here']);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout, 'still here\n');
        })(),
      ));

    it('closes a message over 4 MiB on the TCP listener with 1009, whole or in fragments, and goes on serving', () =>
      tracker.track(
        (async () => {
          const auth = { authorization: `Bearer ${tcp.token}` };
          const whole = [wsFrame({ opcode: 2, payload: Buffer.alloc(4 * 1024 * 1024 + 1, 0x61) })];
          const fragments = [
            wsFrame({ opcode: 2, fin: false, payload: Buffer.alloc(3 * 1024 * 1024, 0x61) }),
            wsFrame({ opcode: 0, payload: Buffer.alloc(3 * 1024 * 1024, 0x61) }),
          ];
          for (const route of routes()) {
            assert.equal(await attack(tcp, route, whole, auth), 1009, `one 4 MiB + 1 message on ${route.path}`);
            assertAlive(node, `a large message on ${route.path}`);
            assert.equal(await attack(tcp, route, fragments, auth), 1009, `6 MiB in two fragments on ${route.path}`);
            assertAlive(node, `a large fragmented message on ${route.path}`);
          }
          const client = new NodeClient({ url: `http://127.0.0.1:${tcp.port}`, token: tcp.token });
          const r = await client.exec('hostile', { argv: ['echo', 'over tcp'] });
          client.close();
          assert.equal(Buffer.from(r.stdout, 'base64').toString(), 'over tcp\n');
        })(),
      ));

    it('takes the bearer scheme in any case, with the usual whitespace, and refuses everything else, for HTTP and upgrades', () =>
      tracker.track(
        (async () => {
          const t = tcp.token;
          const accepted = [`Bearer ${t}`, `bearer ${t}`, `BEARER ${t}`, `bEaReR ${t}`, `Bearer   ${t}`, `Bearer\t${t}`, `  Bearer ${t}  `];
          const refused: Array<[string, Record<string, string>, string]> = [
            ['no header', {}, ''],
            ['Basic', { authorization: `Basic ${t}` }, ''],
            ['a wrong token', { authorization: `Bearer ${'x'.repeat(t.length)}` }, ''],
            ['a short token', { authorization: `Bearer ${t.slice(0, -1)}` }, ''],
            ['a longer token', { authorization: `Bearer ${t}x` }, ''],
            ['a prefixed token', { authorization: `Bearer x${t}` }, ''],
            ['a prefixed scheme', { authorization: `XBearer ${t}` }, ''],
            ['no space after the scheme', { authorization: `Bearer${t}` }, ''],
            ['a second word', { authorization: `Bearer ${t} ${t}` }, ''],
            ['an empty token', { authorization: 'Bearer ' }, ''],
            ['a query-string token', {}, `?token=${t}&access_token=${t}`],
          ];
          for (const value of accepted) {
            const r = await request(tcp, 'GET', '/v1/envs', undefined, { authorization: value });
            assert.equal(r.status, 200, `HTTP with ${JSON.stringify(value.replace(t, 'TOKEN'))}`);
            const { status, ws } = await RawWebSocket.open(tcp, '/v1/envs/hostile/exec/ws', { authorization: value });
            ws.destroy();
            assert.equal(status, 101, `upgrade with ${JSON.stringify(value.replace(t, 'TOKEN'))}`);
          }
          for (const [what, headers, query] of refused) {
            const r = await request(tcp, 'GET', `/v1/envs${query}`, undefined, headers);
            assert.equal(r.status, 401, `HTTP with ${what}`);
            const { status, ws } = await RawWebSocket.open(tcp, `/v1/envs/hostile/exec/ws${query}`, headers);
            ws.destroy();
            assert.equal(status, 401, `upgrade with ${what}`);
          }
          assertAlive(node, 'the auth checks');
        })(),
      ));
  });

  describe(`daemon lock on ${first}`, () => {
    it('starts a daemon while the one before it, killed, is a zombie no one has reaped', async () => {
      const node = await NodeFixture.start(first);
      let holder: ReturnType<typeof spawn> | undefined;
      try {
        await node.killDaemon('SIGTERM');
        // sh starts the daemon in the background and becomes sleep, which never reaps a child:
        // the daemon, killed, stays a zombie as long as sleep runs (a host whose init reaps late).
        holder = spawn(
          'sh',
          ['-c', '"$0" "$1" daemon >>"$2" 2>&1 & echo $!; exec sleep 600', process.execPath, BERTH, join(node.home, 'first-daemon.log')],
          { env: node.env, stdio: ['ignore', 'pipe', 'ignore'] },
        );
        const pid = await new Promise<number>((resolve, reject) => {
          holder!.stdout!.once('data', (c: Buffer) => resolve(Number(c.toString().trim())));
          holder!.once('exit', () => reject(new Error('the holder exited')));
        });
        const sock = join(node.home, 'berth.sock');
        const serving = async (): Promise<boolean> =>
          existsSync(sock) && (await request({ socketPath: sock }, 'GET', '/v1/node')).status === 200;
        for (let i = 0; i < 400 && !(await serving()); i++) await sleep(50);
        assert.ok(await serving(), `the first daemon did not start:\n${readFileSync(join(node.home, 'first-daemon.log'), 'utf8')}`);

        process.kill(pid, 'SIGKILL');
        const state = (): string => {
          const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
          return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!;
        };
        for (let i = 0; i < 400 && state() !== 'Z'; i++) await sleep(25);
        assert.equal(state(), 'Z', `pid ${pid} is a zombie`);

        await node.startDaemon();
        assert.equal(state(), 'Z', 'the zombie was still there when the new daemon started');
        const ls = await node.cli(['ls']);
        assert.equal(ls.code, 0, ls.stderr);
        // And the lock holds against a second live daemon.
        const second = await new Promise<{ code: number | null; err: string }>((resolve) => {
          const d = spawn(process.execPath, [BERTH, 'daemon'], { env: node.env, stdio: ['ignore', 'ignore', 'pipe'] });
          let err = '';
          d.stderr.on('data', (c: Buffer) => (err += c.toString()));
          const timer = setTimeout(() => d.kill('SIGKILL'), DEADLINE_MS);
          d.on('exit', (code) => {
            clearTimeout(timer);
            resolve({ code, err });
          });
        });
        assert.equal(second.code, 5, second.err);
        assert.match(second.err, new RegExp(`a berth daemon \\(pid ${node.daemon!.pid}\\) is already running`));
      } finally {
        holder?.kill('SIGKILL'); // its zombie child goes to init, which reaps it
        await node.stop();
      }
    });
  });
}

for (const engine of testEngines()) {
  describe(`client mistakes on ${engine}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let unix: Target;
    let tcp: { host: string; port: number; token: string };
    const tracker = failureTracker();
    before(async () => {
      repo = makeRepo();
      node = await NodeFixture.start(engine);
      await node.killDaemon('SIGTERM');
      await node.startDaemonWith(['--listen', '127.0.0.1:0']);
      unix = { socketPath: join(node.home, 'berth.sock') };
      tcp = tcpListener(node);
      await node.json(['new', 'target', '--repo', repo.path]);
    });
    after(async () => {
      await node?.stop(tracker.failed);
      repo?.cleanup();
    });

    it('answers every route a hostile request with a status below 500, and lives', () =>
      tracker.track(
        (async () => {
          const wrongTypes = JSON.stringify({
            name: 1,
            repo: [],
            ref: {},
            toolchain: 5,
            argv: 'x',
            hashes: 'x',
            snapshot: 1,
            size: 'x',
            steps: 3,
            upstream: 'x',
            since: 2,
          });
          const nul = JSON.stringify({ name: 'a\u0000b', repo: '/tmp/\u0000', argv: ['\u0000'], snapshot: '\u0000', hashes: ['\u0000'] });
          const bodies: Array<[string, string | Buffer | undefined]> = [
            ['no body', undefined],
            ['invalid JSON', '{oops'],
            ['JSON null', 'null'],
            ['a JSON array', '[]'],
            ['wrong types', wrongTypes],
            ['NUL in strings', nul],
            ['deep nesting', '['.repeat(100_000) + ']'.repeat(100_000)],
            ['a 20 MB body', Buffer.alloc(20 * 1024 * 1024, 0x20)],
          ];
          const failures: string[] = [];
          for (const r of routeTable()) {
            // A real environment's name (not for DELETE: that would remove it), a bad
            // percent-encoding, invalid UTF-8, and NUL.
            const names = !r.pattern.includes('([^/]+)')
              ? ['target']
              : r.method === 'DELETE'
                ? ['%ZZ', '%C3%28', 'a%00b']
                : ['target', '%ZZ', '%C3%28', 'a%00b'];
            for (const name of names) {
              const path =
                r.pattern
                  .replace(/^\^|\$$/g, '')
                  .replace(/\\\//g, '/')
                  .replace(/\(\[0-9a-f\]\{64\}\)/g, 'a'.repeat(64))
                  .replace(/\(\[\^\/\]\+\)/g, name) + (r.pattern.includes('archive') ? '?path=/tmp/hostile' : '');
              for (const [what, body] of name === 'target' ? bodies : bodies.slice(0, 2)) {
                const res = await request(unix, r.method, path, body, { 'content-type': 'application/json' });
                if (engineFault(res)) continue;
                if (typeof res.status !== 'number' || res.status >= 500)
                  failures.push(`${r.method} ${path} with ${what}: ${res.status} ${res.text.slice(0, 200)}`);
              }
              assertAlive(node, `${r.method} ${path}`);
            }
          }
          assert.deepEqual(failures, []);
          assert.equal((await request(unix, 'GET', '/v1/envs/target')).status, 200);
        })(),
      ));

    it('answers a large body a route does not read, on both listeners, before closing', () =>
      tracker.track(
        (async () => {
          const auth = { authorization: `Bearer ${tcp.token}` };
          const failures: string[] = [];
          for (const [target, headers] of [
            [unix, {}],
            [tcp, auth],
          ] as const) {
            for (const [method, path, size, want] of [
              ['GET', '/v1/envs', 20, 200],
              ['POST', '/v1/envs/target/pause', 20, 200],
              ['POST', '/v1/envs/target/resume', 20, 200],
              ['GET', '/v1/node', 100, 200],
              ['POST', '/v1/envs', 30, 413],
              ['PUT', '/v1/envs/nope/archive?path=/tmp', 100, 404],
            ] as const) {
              const body = Buffer.alloc(size * 1024 * 1024, 0x20);
              for (let i = 0; i < 3; i++) {
                const r = await request(target, method, path, body, headers);
                if (r.status !== want && !engineFault(r))
                  failures.push(`${method} ${path} with ${size} MB on ${'port' in target ? 'tcp' : 'unix'}: ${r.status}`);
              }
            }
          }
          assert.deepEqual(failures, []);
          assertAlive(node, 'large bodies');
        })(),
      ));

    it('refuses archives the engine cannot unpack with a 400 and its reason', () =>
      tracker.track(
        (async () => {
          const put = (path: string, body: Buffer) =>
            request(unix, 'PUT', `/v1/envs/target/archive?path=${encodeURIComponent(path)}`, body, { 'content-type': 'application/x-tar' });
          const hardlinkOut = Buffer.concat([tarHeader('h', 0, 1_700_000_000, 0o644, '1', '../../../etc/passwd'), TAR_END]);
          const device = Buffer.concat([tarHeader('dev0', 0, 1_700_000_000, 0o666, '3'), TAR_END]);
          for (const [what, dir, body] of [
            ['not a tar', '/tmp', Buffer.from('this is not a tar archive')],
            ['a tar cut short', '/tmp', tarFile('a.txt', 'hello').subarray(0, 300)],
            ['a hard link out of the target', '/tmp/links', hardlinkOut],
            ['a device node', '/tmp/devices', device],
            ['a read-only target', '/.berth/agent', Buffer.concat([tarFile('x', 'x'), TAR_END])],
          ] as const) {
            const r = await put(dir, body);
            assert.equal(r.status, 400, `${what}: ${r.status} ${r.text}`);
            const e = (JSON.parse(r.text) as { error: { code: string; message: string } }).error;
            assert.equal(e.code, 'invalid_request', what);
            assert.match(e.message, /^the engine refused the archive for \S+: \S/, what);
            assert.ok(!e.message.includes('\n'), `${what}: one line`);
          }
          const good = await put('/tmp/fine', Buffer.concat([tarFile('ok.txt', 'ok\n'), TAR_END]));
          assert.equal(good.status, 200, good.text);
          assert.equal((await node.cli(['exec', 'target', '--', 'cat', '/tmp/fine/ok.txt'])).stdout, 'ok\n');
          assertAlive(node, 'refused archives');
        })(),
      ));

    it('refuses a malformed toolchain reference with a 400, and a missing image with image_missing', () =>
      tracker.track(
        (async () => {
          for (const toolchain of ['../../x', 'sha256:zz', 'sha256:' + 'A'.repeat(64), 'Upper/Case', 'x::y', 'a b', 'name@sha256:12', '']) {
            for (const [method, path, body] of [
              ['POST', '/v1/envs', { name: 'tc', repo: repo.path, toolchain }],
              ['PUT', '/v1/pools', { repo: repo.path, toolchain, size: 0 }],
            ] as const) {
              const r = await request(unix, method, path, JSON.stringify(body), { 'content-type': 'application/json' });
              assert.equal(r.status, 400, `${method} ${path} with toolchain ${JSON.stringify(toolchain)}: ${r.text}`);
              assert.match(r.text, /"code":"invalid_request".*toolchain/);
            }
          }
          const cli = await node.cli(['new', 'tc', '--repo', repo.path, '--toolchain', '../../x']);
          assert.equal(cli.code, 15, cli.stderr);
          assert.match(cli.stderr.trim(), /^berth: invalid request: toolchain: [^\n]+$/);
          // Well-formed but not there: the engine's 404, not a 500.
          const missing = await request(
            unix,
            'POST',
            '/v1/envs',
            JSON.stringify({ name: 'tc', repo: repo.path, toolchain: 'no-such/image:1' }),
            {
              'content-type': 'application/json',
            },
          );
          assert.equal(missing.status, 422, missing.text);
          assert.match(missing.text, /"code":"image_missing"/);
          assert.deepEqual(
            (await node.json<Array<{ name: string }>>(['ls'])).map((e) => e.name),
            ['target'],
          );
        })(),
      ));
  });
}

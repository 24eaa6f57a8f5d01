// The in-environment agent. It runs inside every environment as the node's own `node`
// binary, mounted read-only, so the toolchain image needs no runtime of its own. It listens
// on a unix socket in a per-environment directory that only the daemon shares, and serves
// many multiplexed streams over each connection.
import { createServer, type Socket } from 'node:net';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { readFile, writeFile, rename, stat, symlink } from 'node:fs/promises';
import type { OpContext, StreamHooks, ControlMessage } from './context.js';
import { runConnect } from './connect-op.js';
import { describe, toolVersions } from './describe-op.js';
import { listDir } from './files-op.js';
import { resources } from './procfs.js';
import { runBatch, runExec } from './exec-op.js';
import { makeRealDirs, resolveInside } from './paths.js';
import { httpProbe } from './probes.js';
import {
  AGENT_VERSION,
  encodeFrame,
  FrameDecoder,
  Kind,
  type AgentOp,
  type AgentResponse,
  type LogsOp,
  type ReadFileOp,
  type WriteFileOp,
} from './protocol.js';
import { runPty } from './pty-op.js';
import { ServiceError, ServiceManager } from './services.js';

const socketPath = argValue('--socket') ?? '/.berth/run/agent.sock';
const startedAt = Date.now();
/** Read whole into one frame (base64 grows it by a third), so well under MAX_FRAME. */
const MAX_FILE = 32 * 1024 * 1024;
const services = new ServiceManager();

function argValue(flag: string): string | undefined {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function serve(sock: Socket): void {
  sock.setNoDelay(true);
  const decoder = new FrameDecoder();
  const streams = new Map<number, { hooks: StreamHooks; abandon: Array<() => void> }>();
  let drainWaiters: Array<() => void> = [];

  sock.on('drain', () => {
    const w = drainWaiters;
    drainWaiters = [];
    w.forEach((f) => f());
  });

  const context = (id: number): OpContext => {
    const entry = { hooks: { early: [], earlyEnd: false } as StreamHooks, abandon: [] as Array<() => void> };
    streams.set(id, entry);
    let answered = false;
    const ctx: OpContext = {
      id,
      hooks: entry.hooks,
      send: (kind, payload) => (sock.destroyed ? false : sock.write(encodeFrame(kind, id, payload))),
      whenDrained: (f) => drainWaiters.push(f),
      respond: (body) => {
        if (answered) return;
        answered = true;
        streams.delete(id);
        if (!sock.destroyed) sock.write(encodeFrame(Kind.Response, id, JSON.stringify(body)));
      },
      fail: (code, message) => ctx.respond({ ok: false, error: { code, message } }),
      onAbandon: (cb) => entry.abandon.push(cb),
      hold: (w) => {
        // A reader already gone (a command that exited while its stdin still came) emits no
        // drain or close any more: holding the connection for it would wedge every stream.
        if (w.destroyed || w.writableFinished || w.closed) return;
        sock.pause();
        // Whichever comes first: the reader catches up, or it goes away without reading.
        const resume = (): void => {
          w.removeListener('drain', resume);
          w.removeListener('close', resume);
          w.removeListener('error', resume);
          sock.resume();
        };
        w.on('drain', resume);
        w.on('close', resume);
        w.on('error', resume);
      },
      takeStdin: (onData, onEnd) => {
        for (const c of entry.hooks.early.splice(0)) onData(c);
        if (entry.hooks.earlyEnd) return onEnd();
        entry.hooks.onStdin = onData;
        entry.hooks.onStdinEnd = onEnd;
      },
    };
    return ctx;
  };

  sock.on('data', (chunk: Buffer) => {
    let frames;
    try {
      frames = decoder.push(chunk);
    } catch {
      sock.destroy();
      return;
    }
    for (const f of frames) {
      if (f.kind === Kind.Request) {
        const ctx = context(f.id);
        let op: AgentOp;
        try {
          op = JSON.parse(f.payload.toString('utf8')) as AgentOp;
        } catch {
          ctx.fail('invalid_request', 'request is not JSON');
          continue;
        }
        handle(ctx, op).catch((err: unknown) => {
          if (err instanceof ServiceError) ctx.fail(err.code, err.message);
          else if ((err as NodeJS.ErrnoException)?.code === 'OUTSIDE') ctx.fail('invalid_request', (err as Error).message);
          else ctx.fail('internal', String(err));
        });
        continue;
      }
      const entry = streams.get(f.id);
      if (!entry) continue;
      const h = entry.hooks;
      if (f.kind === Kind.Stdin) {
        if (h.onStdin) h.onStdin(f.payload);
        else h.early.push(f.payload);
      } else if (f.kind === Kind.StdinEnd) {
        if (h.onStdinEnd) h.onStdinEnd();
        else h.earlyEnd = true;
      } else if (f.kind === Kind.Control) {
        try {
          h.onControl?.(JSON.parse(f.payload.toString('utf8')) as ControlMessage);
        } catch {
          /* ignore malformed control frames */
        }
      }
    }
  });

  const abandonAll = (): void => {
    for (const s of streams.values()) s.abandon.forEach((f) => f());
    streams.clear();
  };
  sock.on('close', abandonAll);
  sock.on('error', abandonAll);
}

async function handle(ctx: OpContext, op: AgentOp): Promise<void> {
  switch (op.op) {
    case 'ping':
      return ctx.respond({ ok: true, pong: { pid: process.pid, version: AGENT_VERSION, uptimeMs: Date.now() - startedAt } });
    case 'exec':
      return runExec(ctx, op);
    case 'batch':
      return runBatch(ctx, op);
    case 'pty':
      return runPty(ctx, op);
    case 'connect':
      return runConnect(ctx, op);
    case 'readFile':
      return readOne(ctx, op);
    case 'writeFile':
      return writeOne(ctx, op);
    case 'service.start':
      return ctx.respond({ ok: true, service: await services.start(op.spec, op.wait !== false) });
    case 'service.stop':
      return ctx.respond({ ok: true, service: await services.stop(op.name) });
    case 'service.list':
      return ctx.respond({ ok: true, services: services.list() });
    case 'service.check':
      return ctx.respond({ ok: true, services: await services.check() });
    case 'service.restore':
      services.restore();
      return ctx.respond({ ok: true, services: services.list() });
    case 'logs':
      return logs(ctx, op);
    case 'describe':
      return ctx.respond({ ok: true, describe: await describe(services.list()) });
    case 'stats':
      return ctx.respond({ ok: true, stats: { ...resources() } });
    case 'listDir':
      try {
        return ctx.respond({ ok: true, entries: await listDir(resolveInside(op.path)) });
      } catch (err) {
        return fsFail(ctx, err, op.path);
      }
    case 'probe.http':
      if (!Number.isInteger(op.port) || op.port < 1 || op.port > 65535) return ctx.fail('invalid_request', 'port must be 1-65535');
      return ctx.respond({ ok: true, probe: await httpProbe(op.port, op.path || '/', op.timeoutMs ?? 10_000) });
    default:
      return ctx.fail('invalid_request', 'unknown operation');
  }
}

function logs(ctx: OpContext, op: LogsOp): void {
  const s = services.mustGet(op.name);
  const tail = s.tail(Math.min(op.tailBytes ?? 64 * 1024, 256 * 1024));
  if (tail.length) ctx.send(Kind.Stdout, tail);
  if (!op.follow) return ctx.respond({ ok: true });
  let dropped = false;
  const follower = (c: Buffer): void => {
    // A reader that cannot keep up loses lines rather than growing the agent's memory.
    if (!ctx.send(Kind.Stdout, c) && !dropped) {
      dropped = true;
      s.followers.delete(follower);
      ctx.whenDrained(() => {
        dropped = false;
        ctx.send(Kind.Stdout, Buffer.from('--- berth: some lines were skipped for a slow reader ---\n'));
        s.followers.add(follower);
      });
    }
  };
  s.followers.add(follower);
  ctx.hooks.onControl = (msg) => {
    if (msg.pause) s.followers.delete(follower);
    if (msg.resume && !dropped) s.followers.add(follower);
  };
  const stop = (): void => {
    s.followers.delete(follower);
    ctx.respond({ ok: true });
  };
  ctx.onAbandon(() => s.followers.delete(follower));
  ctx.takeStdin(() => {}, stop); // the daemon ends the follow by closing stdin
}

async function readOne(ctx: OpContext, op: ReadFileOp): Promise<void> {
  try {
    const path = resolveInside(op.path);
    const max = Math.min(op.maxBytes ?? MAX_FILE, MAX_FILE);
    const st = await stat(path);
    if (!st.isFile()) return ctx.fail('invalid_request', `not a regular file: ${op.path}`);
    if (st.size > max) return ctx.fail('too_large', `file is ${st.size} bytes, over the ${max}-byte limit`);
    const data = await readFile(path);
    ctx.respond({ ok: true, data: data.toString('base64'), size: data.length });
  } catch (err) {
    fsFail(ctx, err, op.path);
  }
}

function writeOne(ctx: OpContext, op: WriteFileOp): void {
  let path: string;
  try {
    path = resolveInside(op.path);
  } catch (err) {
    return fsFail(ctx, err, op.path);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  ctx.takeStdin(
    (c) => {
      size += c.length;
      if (size > MAX_FILE) over = true;
      else chunks.push(c);
    },
    () => {
      if (over) return ctx.fail('too_large', `file content is over the ${MAX_FILE}-byte limit`);
      const tmp = `${path}.berth-tmp-${process.pid}-${ctx.id}`;
      const body: AgentResponse = { ok: true, size };
      try {
        if (op.exact) makeRealDirs(dirname(path));
        else mkdirSync(dirname(path), { recursive: true });
      } catch (err) {
        return fsFail(ctx, err, op.path);
      }
      const made = op.symlink !== undefined ? symlink(op.symlink, tmp) : writeFile(tmp, Buffer.concat(chunks), { mode: op.mode ?? 0o644 });
      made
        .then(() => rename(tmp, path))
        .then(() => ctx.respond(body))
        .catch((err: unknown) => {
          try {
            rmSync(tmp, { force: true });
          } catch {
            /* a name too long to make was never made */
          }
          fsFail(ctx, err, op.path);
        });
    },
  );
}

function fsFail(ctx: OpContext, err: unknown, path: string): void {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT') ctx.fail('not_found', `no such file: ${path}`);
  else if (e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS') ctx.fail('invalid_request', `not permitted: ${path}`);
  else if (e.code === 'EISDIR') ctx.fail('invalid_request', `is a directory: ${path}`);
  else if (e.code === 'ENOTDIR') ctx.fail('invalid_request', `a component of the path is not a directory: ${path.slice(0, 200)}`);
  else if (e.code === 'ENAMETOOLONG') ctx.fail('invalid_request', `the path is too long: ${path.slice(0, 200)}…`);
  else if (e.code === 'ELOOP') ctx.fail('invalid_request', `too many levels of symbolic links: ${path.slice(0, 200)}`);
  else if (e.code === 'EEXIST') ctx.fail('conflict', `something is in the way: ${path.slice(0, 200)}`);
  else if (e.code === 'OUTSIDE') ctx.fail('invalid_request', e.message);
  else ctx.fail('internal', e.message ?? String(err));
}

mkdirSync(dirname(socketPath), { recursive: true });
rmSync(socketPath, { force: true });
const server = createServer(serve);
server.listen(socketPath, () => {
  chmodSync(socketPath, 0o600);
  // Saved services wait for the node's `service.restore`, sent once its rules are in place.
  // Warm the toolchain-version cache off the critical path, so `describe` is fast at once.
  setTimeout(() => void toolVersions(), 1500).unref();
});
process.on('SIGTERM', () => {
  services.stopAll();
  server.close();
  process.exit(0);
});
process.on('uncaughtException', (err) => {
  process.stderr.write(`berth-agent: ${err.stack ?? String(err)}\n`);
});

// The in-environment agent. It runs inside every environment as the node's own `node`
// binary, mounted read-only, so the toolchain image needs no runtime of its own.
// It listens on a unix socket in a per-environment directory that only the daemon
// shares, and serves many multiplexed streams over each connection.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { readFile, writeFile, rename, stat } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  AGENT_VERSION,
  encodeFrame,
  FrameDecoder,
  Kind,
  type AgentOp,
  type AgentResponse,
  type ExecOp,
  type ReadFileOp,
  type WriteFileOp,
} from './protocol.js';

const socketPath = argValue('--socket') ?? '/.berth/run/agent.sock';
const workdir = argValue('--workdir') ?? '/workspace';
const startedAt = Date.now();
const MAX_READ = 8 * 1024 * 1024;

function argValue(flag: string): string | undefined {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

interface Stream {
  child?: ChildProcess;
  stdinChunks?: Buffer[];
  onStdin?: (chunk: Buffer) => void;
  onStdinEnd?: () => void;
}

function serve(sock: Socket): void {
  sock.setNoDelay(true);
  const decoder = new FrameDecoder();
  const streams = new Map<number, Stream>();
  let paused: Array<() => void> = [];

  const send = (kind: number, id: number, payload?: Buffer | string): boolean => {
    if (sock.destroyed) return false;
    return sock.write(encodeFrame(kind, id, payload));
  };
  const respond = (id: number, body: AgentResponse): void => {
    streams.delete(id);
    send(Kind.Response, id, JSON.stringify(body));
  };
  const fail = (id: number, code: string, message: string): void => respond(id, { ok: false, error: { code, message } });

  sock.on('drain', () => {
    const resume = paused;
    paused = [];
    for (const r of resume) r();
  });

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
        let op: AgentOp;
        try {
          op = JSON.parse(f.payload.toString('utf8')) as AgentOp;
        } catch {
          fail(f.id, 'invalid_request', 'request is not JSON');
          continue;
        }
        const stream: Stream = {};
        streams.set(f.id, stream);
        handle(f.id, op, stream).catch((err: unknown) => fail(f.id, 'internal', String(err)));
      } else {
        const stream = streams.get(f.id);
        if (!stream) continue;
        if (f.kind === Kind.Stdin) {
          if (stream.onStdin) stream.onStdin(f.payload);
          else (stream.stdinChunks ??= []).push(f.payload);
        } else if (f.kind === Kind.StdinEnd) stream.onStdinEnd?.();
        else if (f.kind === Kind.Control) control(stream, f.payload);
      }
    }
  });

  const cleanup = (): void => {
    for (const s of streams.values()) killGroup(s.child, 'SIGKILL');
    streams.clear();
  };
  sock.on('close', cleanup);
  sock.on('error', cleanup);

  async function handle(id: number, op: AgentOp, stream: Stream): Promise<void> {
    switch (op.op) {
      case 'ping':
        return respond(id, { ok: true, pong: { pid: process.pid, version: AGENT_VERSION, uptimeMs: Date.now() - startedAt } });
      case 'exec':
        return exec(id, op, stream);
      case 'readFile':
        return readOne(id, op);
      case 'writeFile':
        return writeOne(id, op, stream);
      default:
        return fail(id, 'invalid_request', 'unknown operation');
    }
  }

  function exec(id: number, op: ExecOp, stream: Stream): void {
    if (!Array.isArray(op.argv) || op.argv.length === 0 || typeof op.argv[0] !== 'string') {
      return fail(id, 'invalid_request', 'argv must be a non-empty list of strings');
    }
    const t0 = performance.now();
    let child: ChildProcess;
    try {
      child = spawn(op.argv[0], op.argv.slice(1), {
        cwd: op.cwd ? resolveInside(op.cwd) : workdir,
        env: op.env ? { ...process.env, ...op.env } : process.env,
        stdio: [op.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        detached: true, // its own process group, so signals and timeouts reach every descendant
      });
    } catch (err) {
      return fail(id, 'invalid_request', String(err));
    }
    stream.child = child;
    let spawnMs = 0;
    let spawned = false;
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    let killTimer: NodeJS.Timeout | undefined;

    child.once('spawn', () => {
      spawned = true;
      spawnMs = performance.now() - t0;
      if (op.timeoutMs) {
        timer = setTimeout(() => {
          timedOut = true;
          killGroup(child, 'SIGTERM');
          killTimer = setTimeout(() => killGroup(child, 'SIGKILL'), 2000);
        }, op.timeoutMs);
      }
    });
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (spawned) return;
      clearTimeout(timer);
      if (err.code === 'ENOENT') fail(id, 'command_not_found', `command not found: ${op.argv[0]}`);
      else if (err.code === 'EACCES') fail(id, 'command_not_found', `permission denied: ${op.argv[0]}`);
      else fail(id, 'internal', err.message);
    });

    if (child.stdin) {
      const stdin = child.stdin;
      stdin.on('error', () => {}); // a process that exits without reading its stdin
      for (const c of stream.stdinChunks ?? []) stdin.write(c);
      stream.stdinChunks = undefined;
      stream.onStdin = (c) => stdin.write(c);
      stream.onStdinEnd = () => stdin.end();
    }
    const pipeOut = (src: NodeJS.ReadableStream & { pause(): void; resume(): void }, kind: number): void => {
      src.on('data', (c: Buffer) => {
        if (!send(kind, id, c)) {
          src.pause();
          paused.push(() => src.resume());
        }
      });
    };
    pipeOut(child.stdout!, Kind.Stdout);
    pipeOut(child.stderr!, Kind.Stderr);

    child.once('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      if (!spawned) return;
      respond(id, {
        ok: true,
        exec: {
          exitCode: code ?? (signal ? 128 + (signalNumber(signal) ?? 0) : 1),
          signal: signal ?? null,
          timedOut,
          spawnMs,
          runMs: performance.now() - t0 - spawnMs,
        },
      });
    });
  }

  async function readOne(id: number, op: ReadFileOp): Promise<void> {
    try {
      const path = resolveInside(op.path);
      const max = Math.min(op.maxBytes ?? MAX_READ, MAX_READ);
      const st = await stat(path);
      if (!st.isFile()) return fail(id, 'invalid_request', `not a regular file: ${op.path}`);
      if (st.size > max) return fail(id, 'too_large', `file is ${st.size} bytes, over the ${max}-byte limit`);
      const data = await readFile(path);
      respond(id, { ok: true, data: data.toString('base64'), size: data.length });
    } catch (err) {
      fsFail(id, err, op.path);
    }
  }

  function writeOne(id: number, op: WriteFileOp, stream: Stream): void {
    let path: string;
    try {
      path = resolveInside(op.path);
    } catch (err) {
      return fsFail(id, err, op.path);
    }
    const chunks: Buffer[] = [...(stream.stdinChunks ?? [])];
    let size = chunks.reduce((n, c) => n + c.length, 0);
    stream.onStdin = (c) => {
      size += c.length;
      if (size > MAX_READ * 8) {
        stream.onStdin = () => {};
        stream.onStdinEnd = () => {};
        return fail(id, 'too_large', 'file content is over the 64 MiB limit');
      }
      chunks.push(c);
    };
    stream.onStdinEnd = () => {
      const tmp = `${path}.berth-tmp-${process.pid}-${id}`;
      mkdirSync(dirname(path), { recursive: true });
      writeFile(tmp, Buffer.concat(chunks), { mode: op.mode ?? 0o644 })
        .then(() => rename(tmp, path))
        .then(() => respond(id, { ok: true, size }))
        .catch((err: unknown) => {
          rmSync(tmp, { force: true });
          fsFail(id, err, op.path);
        });
    };
  }

  function fsFail(id: number, err: unknown, path: string): void {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') fail(id, 'not_found', `no such file: ${path}`);
    else if (e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS') fail(id, 'invalid_request', `not permitted: ${path}`);
    else if (e.code === 'EISDIR') fail(id, 'invalid_request', `is a directory: ${path}`);
    else if (e.code === 'OUTSIDE') fail(id, 'invalid_request', e.message);
    else fail(id, 'internal', e.message ?? String(err));
  }
}

/** Paths are relative to the workspace; berth's own mounts are out of bounds. */
function resolveInside(p: string): string {
  if (typeof p !== 'string' || p.length === 0 || p.includes('\0')) throw outside(`invalid path`);
  const abs = isAbsolute(p) ? resolve(p) : resolve(workdir, p);
  if (abs === '/.berth' || abs.startsWith('/.berth/') || abs.startsWith('/proc/') || abs.startsWith('/sys/')) {
    throw outside(`path is outside the environment's files: ${p}`);
  }
  return abs;
}

function outside(message: string): NodeJS.ErrnoException {
  const e = new Error(message) as NodeJS.ErrnoException;
  e.code = 'OUTSIDE';
  return e;
}

function control(stream: Stream, payload: Buffer): void {
  try {
    const msg = JSON.parse(payload.toString('utf8')) as { signal?: NodeJS.Signals };
    if (msg.signal) killGroup(stream.child, msg.signal);
  } catch {
    /* ignore malformed control frames */
  }
}

function killGroup(child: ChildProcess | undefined, signal: NodeJS.Signals): void {
  if (!child?.pid || child.exitCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

function signalNumber(sig: string): number | undefined {
  const table: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13, SIGABRT: 6, SIGSEGV: 11 };
  return table[sig];
}

mkdirSync(dirname(socketPath), { recursive: true });
rmSync(socketPath, { force: true });
const server = createServer(serve);
server.listen(socketPath, () => {
  chmodSync(socketPath, 0o600);
});
process.on('SIGTERM', () => {
  server.close();
  process.exit(0);
});
process.on('uncaughtException', (err) => {
  process.stderr.write(`berth-agent: ${err.stack ?? err}\n`);
});

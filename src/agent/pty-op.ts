// Interactive terminals: berth-pty (mounted next to this file) owns the pseudo-terminal;
// the agent relays bytes, resizes and signals.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import { killGroup, signalNumber, type OpContext } from './context.js';
import { resolveInside, WORKDIR } from './paths.js';
import { Kind, type PtyOp } from './protocol.js';

const PTY_HELPER = join(dirname(fileURLToPath(import.meta.url)), 'berth-pty');

export function runPty(ctx: OpContext, op: PtyOp): void {
  if (!existsSync(PTY_HELPER)) return ctx.fail('internal', 'berth-pty is missing from the agent directory');
  const argv = Array.isArray(op.argv) && op.argv.length ? op.argv : ['/bin/bash', '-l'];
  let cwd = WORKDIR;
  try {
    if (op.cwd) cwd = resolveInside(op.cwd);
  } catch (err) {
    return ctx.fail('invalid_request', (err as Error).message);
  }
  const t0 = performance.now();
  const child = spawn(PTY_HELPER, [String(clamp(op.cols, 80)), String(clamp(op.rows, 24)), ...argv], {
    cwd,
    env: { ...process.env, TERM: 'xterm-256color', ...(op.env ?? {}) },
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    detached: true,
  });
  const ctl = child.stdio[3] as Writable;
  ctl.on('error', () => {});
  child.stdin.on('error', () => {});
  let spawnMs = 0;
  child.once('spawn', () => {
    spawnMs = performance.now() - t0;
    ctx.send(Kind.Opened, JSON.stringify({ pid: child.pid }));
  });
  child.once('error', (err) => ctx.fail('internal', `could not start a terminal: ${err.message}`));
  ctx.onAbandon(() => killGroup(child.pid, 'SIGHUP'));
  ctx.takeStdin(
    (c) => {
      if (!child.stdin.write(c)) ctx.hold(child.stdin);
    },
    () => killGroup(child.pid, 'SIGHUP'),
  );
  for (const [src, kind] of [
    [child.stdout, Kind.Stdout],
    [child.stderr, Kind.Stderr],
  ] as const) {
    src.on('data', (c: Buffer) => {
      if (!ctx.send(kind, c)) {
        src.pause();
        ctx.whenDrained(() => !pausedByDaemon && src.resume());
      }
    });
  }
  let pausedByDaemon = false;
  ctx.hooks.onControl = (msg) => {
    if (msg.pause) {
      pausedByDaemon = true;
      child.stdout.pause();
      child.stderr.pause();
    }
    if (msg.resume) {
      pausedByDaemon = false;
      child.stdout.resume();
      child.stderr.resume();
    }
    if (msg.resize) ctl.write(`resize ${clamp(msg.resize[0], 80)} ${clamp(msg.resize[1], 24)}\n`);
    if (msg.signal) {
      const n = signalNumber(msg.signal);
      if (n > 0) ctl.write(`signal ${n}\n`);
    }
  };
  child.once('close', (code, signal) => {
    ctx.respond({
      ok: true,
      exec: {
        exitCode: code ?? 128 + signalNumber(signal ?? ''),
        signal: signal ?? null,
        timedOut: false,
        spawnMs,
        runMs: performance.now() - t0 - spawnMs,
      },
    });
  });
}

function clamp(n: unknown, fallback: number): number {
  return typeof n === 'number' && Number.isInteger(n) && n > 0 && n < 10_000 ? n : fallback;
}

// Running a command: spawned in its own process group with streamed output, stdin, a
// timeout that reaches every descendant, and flow control from the daemon.
import { spawn, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { killGroup, signalNumber, type OpContext } from './context.js';
import { resolveInside, WORKDIR } from './paths.js';
import { Kind, type BatchOp, type BatchStep, type BatchStepResult, type ExecDone, type ExecOp } from './protocol.js';

interface Spawned {
  child: ChildProcess;
  done: Promise<ExecDone | { error: { code: string; message: string } }>;
}

function spawnStep(step: BatchStep, withStdin: boolean): Spawned {
  const t0 = performance.now();
  let child: ChildProcess;
  try {
    child = spawn(step.argv[0]!, step.argv.slice(1), {
      cwd: step.cwd ? resolveInside(step.cwd) : WORKDIR,
      env: step.env ? { ...process.env, ...step.env } : process.env,
      stdio: [withStdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true,
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return {
      child: undefined as unknown as ChildProcess,
      done: Promise.resolve({ error: { code: 'invalid_request', message: e.message } }),
    };
  }
  let spawnMs = 0;
  let spawned = false;
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  const done = new Promise<ExecDone | { error: { code: string; message: string } }>((resolve) => {
    child.once('spawn', () => {
      spawned = true;
      spawnMs = performance.now() - t0;
      if (step.timeoutMs) {
        timer = setTimeout(() => {
          timedOut = true;
          killGroup(child.pid, 'SIGTERM');
          killTimer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), 2000);
        }, step.timeoutMs);
      }
    });
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (spawned) return;
      clearTimeout(timer);
      if (err.code === 'ENOENT') resolve({ error: { code: 'command_not_found', message: `command not found: ${step.argv[0]}` } });
      else if (err.code === 'EACCES') resolve({ error: { code: 'command_not_found', message: `permission denied: ${step.argv[0]}` } });
      else resolve({ error: { code: 'invalid_request', message: err.message } });
    });
    // A background descendant can hold the pipes open after the command itself exits; give
    // it a moment to flush, then stop reading so the caller is never left hanging.
    child.once('exit', () => {
      child.stdin?.destroy(); // a process that exits without reading stdin releases any hold on it
      setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
      }, 250).unref();
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      if (!spawned) return;
      resolve({
        exitCode: code ?? (signal ? 128 + signalNumber(signal) : 1),
        signal: signal ?? null,
        timedOut,
        spawnMs,
        runMs: performance.now() - t0 - spawnMs,
      });
    });
  });
  return { child, done };
}

function validArgv(argv: unknown): argv is string[] {
  return Array.isArray(argv) && argv.length > 0 && argv.every((a) => typeof a === 'string') && (argv[0] as string).length > 0;
}

export function runExec(ctx: OpContext, op: ExecOp): void {
  if (!validArgv(op.argv)) return ctx.fail('invalid_request', 'argv must be a non-empty list of strings');
  let cwdError: string | undefined;
  try {
    if (op.cwd) resolveInside(op.cwd);
  } catch (err) {
    cwdError = (err as Error).message;
  }
  if (cwdError) return ctx.fail('invalid_request', cwdError);
  const { child, done } = spawnStep(op, op.stdin === true);
  if (!child) {
    void done.then((r) => 'error' in r && ctx.fail(r.error.code, r.error.message));
    return;
  }
  ctx.onAbandon(() => killGroup(child.pid, 'SIGKILL'));
  if (child.stdin) {
    const stdin = child.stdin;
    stdin.on('error', () => {}); // a process that exits without reading its stdin
    ctx.takeStdin(
      (c) => {
        if (!stdin.write(c)) ctx.hold(stdin);
      },
      () => stdin.end(),
    );
  }
  const outputs = [child.stdout!, child.stderr!];
  let pausedByDaemon = false;
  const pump = (src: Readable, kind: number): void => {
    src.on('data', (c: Buffer) => {
      if (!ctx.send(kind, c)) {
        src.pause();
        ctx.whenDrained(() => !pausedByDaemon && src.resume());
      }
    });
  };
  pump(child.stdout!, Kind.Stdout);
  pump(child.stderr!, Kind.Stderr);
  ctx.hooks.onControl = (msg) => {
    if (msg.signal) killGroup(child.pid, msg.signal);
    if (msg.pause) {
      pausedByDaemon = true;
      outputs.forEach((o) => o.pause());
    }
    if (msg.resume) {
      pausedByDaemon = false;
      outputs.forEach((o) => o.resume());
    }
  };
  void done.then((r) => {
    if ('error' in r) ctx.fail(r.error.code, r.error.message);
    else ctx.respond({ ok: true, exec: r });
  });
}

const STEP_OUTPUT_LIMIT = 1 << 20;
const BATCH_OUTPUT_LIMIT = 16 << 20;

/** Many commands, one request: each step's output is captured (1 MiB per stream at most). */
export async function runBatch(ctx: OpContext, op: BatchOp): Promise<void> {
  if (!Array.isArray(op.steps) || op.steps.length === 0 || op.steps.length > 10_000) {
    return ctx.fail('invalid_request', 'steps must be a list of 1 to 10000 commands');
  }
  for (const s of op.steps) if (!validArgv(s?.argv)) return ctx.fail('invalid_request', 'every step needs a non-empty argv');
  const results: BatchStepResult[] = [];
  let totalOut = 0;
  let abandoned = false;
  let current: ChildProcess | undefined;
  ctx.onAbandon(() => {
    abandoned = true;
    killGroup(current?.pid, 'SIGKILL');
  });
  for (const step of op.steps) {
    if (abandoned) return;
    const { child, done } = spawnStep(step, false);
    current = child;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let truncated = false;
    const keep = (into: Buffer[], size: { n: number }) => (c: Buffer) => {
      if (size.n >= STEP_OUTPUT_LIMIT) return void (truncated = true);
      const part = c.subarray(0, STEP_OUTPUT_LIMIT - size.n);
      if (part.length < c.length) truncated = true;
      size.n += part.length;
      into.push(part);
    };
    child?.stdout?.on('data', keep(out, { n: 0 }));
    child?.stderr?.on('data', keep(err, { n: 0 }));
    const r = await done;
    totalOut += out.reduce((n, b) => n + b.length, 0) + err.reduce((n, b) => n + b.length, 0);
    const base = { stdout: Buffer.concat(out).toString('base64'), stderr: Buffer.concat(err).toString('base64'), truncated };
    if ('error' in r) {
      results.push({
        exitCode: r.error.code === 'command_not_found' ? 127 : 126,
        signal: null,
        timedOut: false,
        spawnMs: 0,
        runMs: 0,
        ...base,
        error: r.error,
      });
    } else results.push({ ...r, ...base });
    const last = results[results.length - 1]!;
    if (op.stopOnError !== false && last.exitCode !== 0) break;
    if (totalOut > BATCH_OUTPUT_LIMIT) {
      results.push({
        exitCode: 1,
        signal: null,
        timedOut: false,
        spawnMs: 0,
        runMs: 0,
        stdout: '',
        stderr: '',
        truncated: true,
        error: { code: 'too_large', message: 'the batch produced over 16 MiB of output; stopped here' },
      });
      break;
    }
  }
  ctx.respond({ ok: true, batch: results });
}

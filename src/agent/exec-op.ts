// Running a command: under berth-run, in its own session, with streamed output, stdin, a
// timeout that reaches every process it started, and flow control from the daemon.
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { OpContext } from './context.js';
import { Command, launch } from './launch.js';
import { resolveInside, WORKDIR } from './paths.js';
import { Kind, type BatchOp, type BatchStep, type BatchStepResult, type ExecDone, type ExecOp } from './protocol.js';

interface Spawned {
  cmd: Command | undefined;
  done: Promise<ExecDone | { error: { code: string; message: string } }>;
}

/** Grace between SIGTERM and SIGKILL for a command that ran out of time or lost its client. */
const GRACE_MS = 2000;

function spawnStep(step: BatchStep, withStdin: boolean): Spawned {
  const t0 = performance.now();
  let cwd: string;
  try {
    cwd = step.cwd ? resolveInside(step.cwd) : WORKDIR;
  } catch (err) {
    return { cmd: undefined, done: Promise.resolve({ error: { code: 'invalid_request', message: (err as Error).message } }) };
  }
  const cmd = launch({
    argv: step.argv,
    cwd,
    env: step.env ? { ...process.env, ...step.env } : process.env,
    stdin: withStdin,
    linger: Boolean(step.timeoutMs),
  });
  if (!(cmd instanceof Command)) return { cmd: undefined, done: Promise.resolve({ error: cmd }) };
  let timedOut = false;
  let ended = false;
  // The deadline covers everything the command started, even what outlives the command itself.
  const timer = step.timeoutMs
    ? setTimeout(() => {
        timedOut = !ended;
        void cmd.end(GRACE_MS);
      }, step.timeoutMs)
    : undefined;
  void cmd.runnerGone.then(() => clearTimeout(timer));
  const outputClosed = Promise.all([cmd.stdout, cmd.stderr].map((s) => new Promise((r) => s.once('close', r))));
  const done = cmd.started.then(async (error) => {
    if (error) return { error };
    const spawnMs = performance.now() - t0;
    const end = await cmd.ended;
    ended = true;
    // What the command left running may hold its output open: a moment to flush, then stop
    // reading, so the caller is never left hanging.
    cmd.stdin?.destroy();
    const flush = setTimeout(() => {
      cmd.stdout.destroy();
      cmd.stderr.destroy();
    }, 250);
    await outputClosed;
    clearTimeout(flush);
    // Out of time: answer once everything it started is gone, so the next command has room.
    if (timedOut) await cmd.end(GRACE_MS);
    return { ...end, timedOut, spawnMs, runMs: performance.now() - t0 - spawnMs };
  });
  return { cmd, done };
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
  const { cmd, done } = spawnStep(op, op.stdin === true);
  if (!cmd) {
    void done.then((r) => 'error' in r && ctx.fail(r.error.code, r.error.message));
    return;
  }
  ctx.onAbandon(() => void cmd.end(0));
  if (cmd.stdin) {
    const stdin = cmd.stdin;
    stdin.on('error', () => {}); // a process that exits without reading its stdin
    ctx.takeStdin(
      (c) => {
        if (!stdin.write(c)) ctx.hold(stdin);
      },
      () => stdin.end(),
    );
  }
  const outputs = [cmd.stdout, cmd.stderr];
  let pausedByDaemon = false;
  const pump = (src: Readable, kind: number): void => {
    src.on('data', (c: Buffer) => {
      if (!ctx.send(kind, c)) {
        src.pause();
        ctx.whenDrained(() => !pausedByDaemon && src.resume());
      }
    });
  };
  pump(cmd.stdout, Kind.Stdout);
  pump(cmd.stderr, Kind.Stderr);
  ctx.hooks.onControl = (msg) => {
    // A kill (SIGKILL, SIGTERM) or a hang-up (the daemon's word for "the client went away")
    // ends everything the command started; any other signal (Ctrl-C's SIGINT, a SIGHUP the
    // client passes on) goes to the command's process group, as a terminal's would.
    if (msg.hangup) void cmd.end(GRACE_MS);
    if (msg.signal === 'SIGKILL') void cmd.end(0);
    else if (msg.signal === 'SIGTERM') void cmd.end(GRACE_MS);
    else if (msg.signal) cmd.signal(msg.signal);
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
  let current: Command | undefined;
  ctx.onAbandon(() => {
    abandoned = true;
    void current?.end(0);
  });
  for (const step of op.steps) {
    if (abandoned) return;
    const { cmd, done } = spawnStep(step, false);
    current = cmd;
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
    cmd?.stdout.on('data', keep(out, { n: 0 }));
    cmd?.stderr.on('data', keep(err, { n: 0 }));
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

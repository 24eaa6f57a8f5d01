// Exec on the daemon side: one request becomes one stream on the environment's persistent
// agent connection. Two forms: buffered (one HTTP request) and streamed (a WebSocket).
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { ExecRequest, ExecResult } from '../core/api.js';
import { BerthError, isErrorCode } from '../core/errors.js';
import type { AgentResponse } from '../agent/protocol.js';
import { AgentGoneError } from '../agent/client.js';
import type { EnvManager } from './manager.js';
import { leaseOf } from './supervision.js';

export const MAX_BUFFERED_OUTPUT = 16 * 1024 * 1024;
/** How much of a command's output its `command.ended` event carries (for the dashboard's cards). */
const OUTPUT_TAIL_BYTES = 1024;

/** The last `max` bytes written to it, kept without copying every chunk. */
class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly max: number) {}
  add(c: Buffer): void {
    if (c.length >= this.max) {
      this.chunks = [Buffer.from(c.subarray(c.length - this.max))];
      this.size = this.max;
      return;
    }
    this.chunks.push(Buffer.from(c));
    this.size += c.length;
    while (this.size - this.chunks[0]!.length >= this.max) this.size -= this.chunks.shift()!.length;
  }
  text(): string {
    const all = Buffer.concat(this.chunks);
    let from = Math.max(0, all.length - this.max);
    // Not from the middle of a UTF-8 character.
    while (from < all.length && (all[from]! & 0xc0) === 0x80) from++;
    return all.subarray(from).toString('utf8');
  }
}

export function agentError(res: AgentResponse): BerthError {
  const code = res.error?.code;
  const message = res.error?.message ?? 'the environment agent failed';
  return new BerthError(isErrorCode(code) ? code : 'internal', message);
}

/** The agent's answer when a command could not start, in the environment's own words. */
function execError(res: AgentResponse, env: string): BerthError {
  if (res.error?.code !== 'pids_exhausted') return agentError(res);
  return new BerthError(
    'pids_exhausted',
    `environment ${env} has ${res.error.message}`,
    'end the command using them (its timeout, or killing its `berth exec`, ends all it started), or allow more with `berth new --pids N`',
  );
}

export interface ExecSink {
  stdout(chunk: Buffer): void;
  stderr(chunk: Buffer): void;
}

export interface RunningExec {
  /** False when the agent connection is congested: wait for `onDrain`. */
  writeStdin(chunk: Buffer): boolean;
  onDrain(cb: () => void): void;
  endStdin(): void;
  signal(sig: string): void;
  /** The client went away: the command and everything it started end. */
  hangUp(): void;
  /** Flow control: stop and restart the command's output while a slow client catches up. */
  pause(): void;
  resume(): void;
  result: Promise<Omit<ExecResult, 'stdout' | 'stderr' | 'truncated'>>;
}

export async function startExec(
  manager: EnvManager,
  name: string,
  req: ExecRequest & { interactiveStdin?: boolean },
  sink: ExecSink,
  via: 'exec' | 'stream' = 'stream',
): Promise<RunningExec> {
  const t0 = performance.now();
  const { row, conn } = await manager.agentFor(name, { resume: req.resume });
  const tAsk = performance.now();
  const hasStdin = req.interactiveStdin === true || req.stdin !== undefined;
  manager.busy(row.id, 1);
  const tail = new Tail(OUTPUT_TAIL_BYTES);
  const stream = conn.open(
    // The name is the environment's own, even for one claimed from a pool under another name.
    { op: 'exec', argv: req.argv, cwd: req.cwd, env: { ...req.env, BERTH_ENV: row.name }, timeoutMs: req.timeoutMs, stdin: hasStdin },
    {
      onStdout: (c) => (tail.add(c), sink.stdout(c)),
      onStderr: (c) => (tail.add(c), sink.stderr(c)),
    },
  );
  if (req.stdin !== undefined) {
    stream.writeStdin(Buffer.from(req.stdin, 'base64'));
    stream.endStdin();
  }
  void stream.done.finally(() => manager.busy(row.id, -1)).catch(() => {});
  const command = randomBytes(6).toString('hex');
  const who = { env: row.name, agent: row.agent };
  manager.events.emit({ type: 'command.started', ...who, command, argv: req.argv, via });
  const ended = (exitCode: number, timedOut: boolean): void => {
    const outputTail = tail.text();
    manager.events.emit({
      type: 'command.ended',
      ...who,
      command,
      exitCode,
      timedOut,
      durationMs: round(performance.now() - t0),
      ...(outputTail ? { outputTail } : {}),
    });
  };
  const result = stream.done.then(
    (res) => {
      if (!res.ok || !res.exec) throw execError(res, row.name);
      const total = performance.now() - tAsk;
      const e = res.exec;
      const timing = {
        queueMs: round(tAsk - t0),
        spawnMs: round(e.spawnMs),
        runMs: round(e.runMs),
        transportMs: round(Math.max(0, total - e.spawnMs - e.runMs)),
      };
      manager.stats.record(row.id, timing);
      const exitCode = e.timedOut ? 124 : e.exitCode;
      ended(exitCode, e.timedOut);
      const lease = leaseOf(row);
      return { exitCode, signal: e.signal, timedOut: e.timedOut, timing, ...(lease ? { lease } : {}) };
    },
    (err: unknown) => {
      ended(-1, false);
      if (err instanceof AgentGoneError) {
        throw new BerthError(
          'not_running',
          `environment ${row.name} went away while the command ran`,
          `check it with \`berth describe ${row.name}\``,
        );
      }
      throw err;
    },
  );
  return {
    writeStdin: (c) => stream.writeStdin(c),
    onDrain: (cb) => stream.onDrain(cb),
    endStdin: () => stream.endStdin(),
    signal: (s) => stream.signal(s),
    hangUp: () => stream.control({ hangup: true }),
    pause: () => stream.control({ pause: true }),
    resume: () => stream.control({ resume: true }),
    result,
  };
}

/** Runs a command and returns its whole output; `res` going away ends the command. */
export async function execBuffered(
  manager: EnvManager,
  name: string,
  req: ExecRequest,
  res?: { once(e: 'close', f: () => void): unknown; writableEnded: boolean },
  /** Ends the command (SIGKILL to all it started) and answers with the signal's reason. */
  signal?: AbortSignal,
): Promise<ExecResult> {
  signal?.throwIfAborted();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let size = 0;
  let truncated = false;
  const keep = (into: Buffer[]) => (c: Buffer) => {
    if (size + c.length > MAX_BUFFERED_OUTPUT) {
      truncated = true;
      c = c.subarray(0, Math.max(0, MAX_BUFFERED_OUTPUT - size));
    }
    size += c.length;
    if (c.length) into.push(c);
  };
  const run = await startExec(manager, name, req, { stdout: keep(out), stderr: keep(err) }, 'exec');
  res?.once('close', () => {
    if (!res.writableEnded) run.signal('SIGKILL');
  });
  let stop = (): void => {};
  const aborted = new Promise<never>((_, reject) => {
    if (!signal) return;
    const onAbort = (): void => {
      run.signal('SIGKILL');
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    stop = () => signal.removeEventListener('abort', onAbort);
  });
  aborted.catch(() => {});
  const r = await Promise.race([run.result, aborted]).finally(stop);
  return { ...r, stdout: Buffer.concat(out).toString('base64'), stderr: Buffer.concat(err).toString('base64'), truncated };
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

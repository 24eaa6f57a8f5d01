// One environment, as the SDK hands it out: commands, files, services, evidence and its
// lifetime. Everything goes through the one client of the node API.
import type { NodeClient } from '../client/client.js';
import type {
  DescribeResult,
  EgressReport,
  EgressSummary,
  EnvInfo,
  EnvStats,
  ExecTiming,
  Readiness,
  ServiceInfo,
  SnapshotInfo,
  VerifyResult,
} from '../core/api.js';
import { BerthError, typedError } from '../core/errors.js';
import { parseReadiness } from '../core/readiness.js';
import { AGENT_STATES } from '../core/attention.js';
import type { AgentState, Handback, Lease } from '../core/supervision.js';
import { defaultHolder } from './holder.js';

export interface ExecOptions {
  timeoutMs?: number;
  cwd?: string;
  env?: Record<string, string>;
  /** Given to the command on its standard input. */
  stdin?: string | Buffer;
  signal?: AbortSignal;
}

export interface ExecOutcome {
  exitCode: number;
  signal: string | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  /** Output past 16 MiB was cut. */
  truncated: boolean;
  timing: ExecTiming;
  /** A human's takeover lease on the environment as the command started; only while one is held. */
  lease?: Lease;
}

export interface BatchStep {
  argv: string[];
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}

/** Each step of a batch as it ran (output decoded; 1 MiB per stream per step at most). */
export interface BatchOutcome {
  steps: Array<Omit<ExecOutcome, 'timing'> & { argv: string[]; error?: { code: string; message: string } }>;
  /** How many steps ran. */
  completed: number;
  /** The exit code of the last step that ran. */
  exitCode: number;
}

/** A command that runs on: its output as it comes, its input, and its end. */
export interface CommandHandle {
  readonly stdout: AsyncIterable<Buffer>;
  readonly stderr: AsyncIterable<Buffer>;
  write(data: string | Buffer): void;
  /** Closes the command's standard input. */
  end(): void;
  kill(signal?: string): void;
  wait(): Promise<{ exitCode: number; signal: string | null; timedOut: boolean; timing: ExecTiming }>;
}

export interface ServiceOptions {
  cmd?: string[];
  /** `tcp:PORT`, `http:PORT/PATH` or `cmd:COMMAND`. */
  ready?: string | Readiness;
  readyTimeoutMs?: number;
  restart?: 'no' | 'on-failure' | 'always';
  cwd?: string;
  env?: Record<string, string>;
  /** Wait until ready (the default) or return as soon as it starts. */
  wait?: boolean;
  signal?: AbortSignal;
}

/** A readiness check given as text, parsed here; a bad one is an error of its code's class, as the node's are. */
function readiness(r: string | Readiness | undefined): Readiness | undefined {
  if (typeof r !== 'string') return r;
  try {
    return parseReadiness(r);
  } catch (err) {
    throw err instanceof BerthError ? typedError(err.code, err.message, err.hint) : err;
  }
}

/** A queue of chunks read as an async iterable; ends when the producer says so. */
class Chunks implements AsyncIterable<Buffer> {
  private readonly queue: Buffer[] = [];
  private waiting: ((r: IteratorResult<Buffer>) => void) | undefined;
  private done = false;

  push(c: Buffer): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w({ value: c, done: false });
    } else this.queue.push(c);
  }

  end(): void {
    this.done = true;
    this.waiting?.({ value: undefined, done: true });
    this.waiting = undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return {
      next: () => {
        const c = this.queue.shift();
        if (c) return Promise.resolve({ value: c, done: false });
        if (this.done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (this.waiting = resolve));
      },
    };
  }
}

export class Environment implements AsyncDisposable {
  constructor(
    private readonly client: NodeClient,
    /** The environment's name on its node. */
    readonly name: string,
    /** What the node said of it when it was handed out (see `refresh`). */
    public info: EnvInfo,
    private readonly onDispose?: () => void,
  ) {}

  /** Runs a command to its end; output is returned whole (16 MiB at most). */
  async exec(argv: string[], opts: ExecOptions = {}): Promise<ExecOutcome> {
    if (!Array.isArray(argv) || argv.length === 0) throw typedError('usage', 'exec needs a command, as a list of arguments');
    const r = await this.client.exec(
      this.name,
      {
        argv,
        timeoutMs: opts.timeoutMs,
        cwd: opts.cwd,
        env: opts.env,
        ...(opts.stdin !== undefined ? { stdin: Buffer.from(opts.stdin).toString('base64') } : {}),
      },
      opts.signal,
    );
    return { ...asText(r), timing: r.timing, ...(r.lease ? { lease: r.lease } : {}) };
  }

  /** Many commands in one round trip, in order; stops at the first that fails unless `stopOnError` is false. */
  async batch(steps: BatchStep[], opts: { stopOnError?: boolean; signal?: AbortSignal } = {}): Promise<BatchOutcome> {
    if (!Array.isArray(steps) || steps.length === 0) throw typedError('usage', 'batch needs at least one step');
    const r = await this.client.batch(this.name, { steps, stopOnError: opts.stopOnError }, opts.signal);
    return {
      steps: r.steps.map((x) => ({ argv: x.argv, ...asText(x), ...(x.error ? { error: x.error } : {}) })),
      completed: r.completed,
      exitCode: r.exitCode,
    };
  }

  /** Starts a command and hands it back running: stream its output, write to it, stop it. */
  spawn(argv: string[], opts: Omit<ExecOptions, 'stdin'> = {}): CommandHandle {
    if (!Array.isArray(argv) || argv.length === 0) throw typedError('usage', 'spawn needs a command, as a list of arguments');
    const stdout = new Chunks();
    const stderr = new Chunks();
    const h = this.client.execStream(
      this.name,
      { argv, timeoutMs: opts.timeoutMs, cwd: opts.cwd, env: opts.env, interactiveStdin: true },
      { stdout: (c) => stdout.push(c), stderr: (c) => stderr.push(c) },
    );
    const done = h.wait().finally(() => {
      stdout.end();
      stderr.end();
    });
    done.catch(() => {});
    const onAbort = (): void => h.kill('SIGKILL');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    void done.finally(() => opts.signal?.removeEventListener('abort', onAbort)).catch(() => {});
    return {
      stdout,
      stderr,
      write: (d) => h.writeStdin(Buffer.from(d)),
      end: () => h.endStdin(),
      kill: (sig = 'SIGTERM') => h.kill(sig),
      wait: () => done,
    };
  }

  readonly files = {
    read: async (path: string): Promise<string> => (await this.client.readFile(this.name, path)).toString('utf8'),
    readBytes: (path: string): Promise<Buffer> => this.client.readFile(this.name, path),
    write: (path: string, data: string | Buffer, opts: { mode?: number } = {}): Promise<{ path: string; bytes: number }> =>
      this.client.writeFile(this.name, path, Buffer.from(data), opts.mode),
    list: async (path = '/workspace') => (await this.client.listFiles(this.name, path)).entries,
  };

  readonly services = {
    // async, so that a readiness check that does not parse is a rejection, like every other error.
    start: async (name: string, opts: ServiceOptions = {}): Promise<ServiceInfo> =>
      this.client.startService(
        this.name,
        {
          name,
          argv: opts.cmd,
          ready: readiness(opts.ready),
          readyTimeoutMs: opts.readyTimeoutMs,
          restart: opts.restart,
          cwd: opts.cwd,
          env: opts.env,
          wait: opts.wait,
        },
        opts.signal,
      ),
    stop: (name: string): Promise<ServiceInfo> => this.client.stopService(this.name, name),
    list: (): Promise<ServiceInfo[]> => this.client.services(this.name),
    /** The tail of a service's log, and with `follow` what comes after, until `signal` aborts. */
    logs: async (name: string, opts: { follow?: boolean; tailBytes?: number; signal?: AbortSignal; onData?: (c: Buffer) => void } = {}) => {
      const chunks: Buffer[] = [];
      const l = this.client.logs(this.name, name, { follow: opts.follow, tailBytes: opts.tailBytes }, (c) =>
        opts.onData ? opts.onData(c) : chunks.push(c),
      );
      opts.signal?.addEventListener('abort', () => l.stop(), { once: true });
      await l.done;
      return Buffer.concat(chunks).toString('utf8');
    },
  };

  verify(
    req: { http?: string | string[]; screenshot?: string | string[]; test?: string[]; junit?: string },
    signal?: AbortSignal,
  ): Promise<VerifyResult> {
    const list = (v: string | string[] | undefined): string[] | undefined => (v === undefined ? undefined : Array.isArray(v) ? v : [v]);
    return this.client.verify(
      this.name,
      { http: list(req.http), screenshot: list(req.screenshot), ...(req.test ? { test: { argv: req.test, junit: req.junit } } : {}) },
      signal,
    );
  }

  describe(signal?: AbortSignal): Promise<DescribeResult> {
    return this.client.describe(this.name, signal);
  }

  /** CPU time, memory and pids now (cgroup counters; CPU time only grows). */
  stats(signal?: AbortSignal): Promise<EnvStats> {
    return this.client.stats(this.name, signal);
  }

  async refresh(signal?: AbortSignal): Promise<EnvInfo> {
    this.info = await this.client.getEnv(this.name, signal);
    return this.info;
  }

  /** Reports what the agent is doing: `working`, `waiting` (for a human), `blocked` or `done`, with a note. */
  async setStatus(state: AgentState, opts: { note?: string; signal?: AbortSignal } = {}): Promise<EnvInfo> {
    if (!AGENT_STATES.includes(state))
      throw typedError('invalid_request', `unknown status ${JSON.stringify(state)}`, `give one of ${AGENT_STATES.join(', ')}`);
    return (this.info = await this.client.setStatus(this.name, { state, note: opts.note }, opts.signal));
  }

  /**
   * Takes the environment over for a human (the node's token only). With `exclusive`, the
   * agent's commands are refused until `handback`. The holder is `$USER@hostname` unless given.
   */
  async takeover(opts: { exclusive?: boolean; note?: string; holder?: string; signal?: AbortSignal } = {}): Promise<EnvInfo> {
    const req = { exclusive: opts.exclusive, note: opts.note, holder: opts.holder ?? defaultHolder() };
    return (this.info = await this.client.takeover(this.name, req, opts.signal));
  }

  /** Ends the lease, leaving a note the agent reads (`lastHandback`, MCP's read_human_note). */
  async handback(opts: { note?: string; signal?: AbortSignal } = {}): Promise<EnvInfo> {
    return (this.info = await this.client.handback(this.name, { note: opts.note }, opts.signal));
  }

  /** The human's lease on the environment now, or null (asks the node). */
  async lease(signal?: AbortSignal): Promise<Lease | null> {
    return (await this.refresh(signal)).lease;
  }

  /** The last hand-back (its note is for the agent), or null (asks the node). */
  async lastHandback(signal?: AbortSignal): Promise<Handback | null> {
    return (await this.refresh(signal)).handback;
  }

  snapshot(opts: { artifacts?: string[] } = {}): Promise<SnapshotInfo> {
    return this.client.snap(this.name, opts);
  }

  /** What it reached (name, port, bytes, first and last seen, verdict) and the least-privilege allow list. */
  egress(signal?: AbortSignal): Promise<EgressReport> {
    return this.client.egress(this.name, signal);
  }

  /** A new egress policy for new connections, no restart (the node's token only). */
  setEgress(policy: string, signal?: AbortSignal): Promise<EgressSummary> {
    return this.client.setEgress(this.name, policy, signal);
  }

  /** Sets or raises its budgets, `egress=1GB,cpu=4h` (the node's token only). */
  setBudget(budget: string, signal?: AbortSignal): Promise<EgressSummary> {
    return this.client.setBudget(this.name, budget, signal);
  }

  async pause(): Promise<EnvInfo> {
    return (this.info = await this.client.pause(this.name));
  }

  async resume(): Promise<EnvInfo> {
    return (this.info = await this.client.resume(this.name));
  }

  /** Removes the environment; its work is snapshotted first unless `discard`. */
  async remove(opts: { discard?: boolean } = {}): Promise<{ snapshot: string | null }> {
    const r = await this.client.removeEnv(this.name, opts);
    this.onDispose?.();
    return { snapshot: r.snapshot };
  }

  /** `await using env = …`: removed (snapshot first) when the scope ends. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.remove();
    } catch (err) {
      if (!(err instanceof BerthError && err.code === 'not_found')) throw err;
    }
  }
}

/** A command's end as the wire gives it (output in base64), with its output as text. */
function asText<
  R extends { exitCode: number; signal: string | null; timedOut: boolean; stdout: string; stderr: string; truncated: boolean },
>(r: R): Pick<R, 'exitCode' | 'signal' | 'timedOut' | 'truncated'> & { stdout: string; stderr: string } {
  return {
    exitCode: r.exitCode,
    signal: r.signal,
    timedOut: r.timedOut,
    stdout: Buffer.from(r.stdout, 'base64').toString('utf8'),
    stderr: Buffer.from(r.stderr, 'base64').toString('utf8'),
    truncated: r.truncated,
  };
}

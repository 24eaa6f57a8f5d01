// A command, started under berth-run (run/berth-run.c) so that every process it starts stays
// findable, and ended with all of them: setsid, double forks and fork bombs included.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { signalCommand, type Signalled } from './command-tree.js';
import { launcher, Op, type Launcher, type Stream } from './launcher.js';
import { resources } from './procfs.js';

const RUN_HELPER = join(dirname(fileURLToPath(import.meta.url)), 'berth-run');
/** Set in each command's environment: finds its processes should berth-run itself be killed. */
const MARKER = 'BERTH_EXEC';
/** How long ending a command may keep killing what it forks; then berth-run itself goes. */
const FREEZE_FOR_MS = 5_000;
const KILL_FOR_MS = 10_000;
const GIVE_UP_MS = 15_000;

export interface LaunchError {
  code: string;
  message: string;
}

export interface Ended {
  exitCode: number;
  signal: string | null;
}

export interface LaunchOptions {
  argv: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  stdin: boolean;
  /** The command has a deadline: what it leaves running stays findable until then. */
  linger: boolean;
}

/** One output of a command, fed from the launcher; a full buffer pauses it at the launcher. */
class Output extends Readable {
  private held = false;
  private ended = false;

  constructor(
    private readonly l: Launcher,
    private readonly id: () => number | undefined,
    private readonly which: Stream,
  ) {
    super();
  }

  feed(data: Buffer): void {
    if (!this.ended && !this.push(data) && !this.held) {
      this.held = true;
      this.tell(Op.Pause);
    }
  }

  finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.push(null);
  }

  override _read(): void {
    if (!this.held) return;
    this.held = false;
    this.tell(Op.Resume);
  }

  override _destroy(err: Error | null, cb: (e: Error | null) => void): void {
    if (!this.ended) this.tell(Op.Close); // the launcher stops reading it, and says EOF
    cb(err);
  }

  private tell(op: number): void {
    const id = this.id();
    if (id !== undefined) this.l.stream(op, id, this.which);
  }
}

/** A command's stdin: each chunk is written on once the launcher has put the last in its pipe. */
class Input extends Writable {
  private readonly waiting: Array<() => void> = [];
  private shut = false;

  constructor(
    private readonly l: Launcher,
    private readonly id: () => number | undefined,
  ) {
    super();
  }

  acked(): void {
    this.waiting.shift()?.();
  }

  /** Nothing reads it any more: writes complete at once. */
  close(): void {
    this.shut = true;
    this.waiting.splice(0).forEach((f) => f());
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    const id = this.id();
    if (this.shut || id === undefined || !this.l.send(Op.Stdin, id, chunk)) return cb();
    this.waiting.push(() => cb());
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.end_();
    cb();
  }

  override _destroy(err: Error | null, cb: (e: Error | null) => void): void {
    this.end_();
    this.close();
    cb(err);
  }

  private end_(): void {
    const id = this.id();
    if (id !== undefined) this.l.send(Op.StdinEnd, id);
  }
}

export class Command {
  readonly stdin: Writable | null;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves when the command runs (undefined) or could not start. */
  readonly started: Promise<LaunchError | undefined>;
  /** The command's own end; what it left behind may still be running. */
  readonly ended: Promise<Ended>;
  /** berth-run is gone: so is every process it could reach. */
  readonly runnerGone: Promise<void>;
  /** berth-run, the command's supervisor (the launcher forked it). */
  private runnerPid: number | undefined;
  private readonly launcher: Launcher;
  private id: number | undefined;
  private pid: number | undefined;
  private commandEnded = false;
  private runnerExited = false;
  /** The launcher went under it: what the command started is found by its marker. */
  private launcherLost = false;
  private readonly marker = randomBytes(9).toString('base64url');
  private pendingSignals: string[] = [];
  private ending: Promise<void> | undefined;
  private hurry: (() => void) | undefined;

  constructor(o: LaunchOptions) {
    const name = o.argv[0]!;
    let settleStart!: (e: LaunchError | undefined) => void;
    let settleEnd!: (e: Ended) => void;
    let settleGone!: () => void;
    this.started = new Promise((r) => (settleStart = r));
    this.ended = new Promise((r) => (settleEnd = r));
    this.runnerGone = new Promise((r) => (settleGone = r));
    this.launcher = launcher(RUN_HELPER);
    const l = this.launcher;
    const id = (): number | undefined => this.id;
    const input = o.stdin ? new Input(l, id) : null;
    const outputs = { 1: new Output(l, id, 1), 2: new Output(l, id, 2) };
    this.stdin = input;
    this.stdout = outputs[1];
    this.stderr = outputs[2];
    this.id = l.start(
      { ...o, env: { ...o.env, [MARKER]: this.marker } },
      {
        runner: (pid) => (this.runnerPid = pid),
        line: (text) => {
          const [what, a, b] = text.split(' ');
          if (what === 'pid') {
            this.pid = Number(a);
            settleStart(undefined);
            for (const s of this.pendingSignals.splice(0)) this.signal(s);
          } else if (what === 'error') {
            const stage = a === 'exec' ? 'exec' : a === 'chdir' ? 'spawn' : 'fork';
            settleStart(startError(name, o.cwd, stage, errnoName(Number(b))));
          } else if (what === 'exit' || what === 'signal') {
            this.commandEnded = true;
            const n = Number(a);
            settleEnd(what === 'exit' ? { exitCode: n, signal: null } : { exitCode: 128 + n, signal: signalName(n) });
          }
        },
        out: (which, data) => outputs[which].feed(data),
        eof: (which) => outputs[which].finish(),
        stdinAck: () => input?.acked(),
        gone: (exit, lost) => {
          this.runnerExited = true;
          this.hurry?.();
          if (lost) {
            this.launcherLost = true;
            input?.close();
          }
          settleStart({ code: 'internal', message: `berth-run ended before ${name} started${lost ? ` (its launcher: ${l.reason})` : ''}` });
          if (this.pid !== undefined && !this.commandEnded) {
            // Something killed berth-run (or its launcher) under the command: end what it left, by its marker.
            settleEnd(
              exit.signal !== null
                ? { exitCode: 128 + exit.signal, signal: signalName(exit.signal) }
                : { exitCode: exit.code ?? 1, signal: null },
            );
            void this.end(0);
          } else if (lost) void this.end(0); // it may have started, unreported, or left processes behind
          settleGone();
        },
        finished: () => input?.close(),
      },
    );
    if (this.id === undefined) throw Object.assign(new Error(`the launcher is gone (${l.reason})`), { code: 'ELAUNCHER' });
  }

  /** A signal for the command's own process group, as a terminal would send it. */
  signal(sig: string): void {
    if (this.runnerExited || this.commandEnded) return; // its pid may be another's by now
    if (this.pid === undefined) return void this.pendingSignals.push(sig);
    try {
      process.kill(-this.pid, sig);
    } catch {
      try {
        process.kill(this.pid, sig);
      } catch {
        /* already gone */
      }
    }
  }

  /**
   * Ends every process of the command: SIGTERM to each, then after `graceMs` SIGKILL to
   * whatever is left, again and again while it forks, until none is left. Needs no process of
   * its own. A second call with less grace cuts the first one's short.
   */
  end(graceMs: number): Promise<void> {
    if (this.ending) {
      if (graceMs === 0) this.hurry?.();
      return this.ending;
    }
    this.ending = this.terminate(graceMs);
    return this.ending;
  }

  private async terminate(graceMs: number): Promise<void> {
    if (this.pid === undefined && this.runnerExited && !this.launcherLost) return; // it never started
    if (!this.runnerExited && this.id !== undefined) this.launcher.send(Op.Hold, this.id);
    if (graceMs > 0) {
      // Stopped first, so that the walk does not race a fork bomb; then asked to end.
      await this.freeze();
      this.signalAll('SIGTERM');
      this.signalAll('SIGCONT');
      if (!this.runnerExited) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, graceMs);
          this.hurry = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
    }
    const t0 = Date.now();
    await this.freeze();
    for (;;) {
      const left = this.signalAll('SIGKILL').found;
      if (left === 0 && this.runnerExited) return;
      const spent = Date.now() - t0;
      if (spent > KILL_FOR_MS && !this.runnerExited && this.runnerPid) process.kill(this.runnerPid, 'SIGKILL');
      if (spent > GIVE_UP_MS) return;
      await sleep(left ? 5 : 20);
    }
  }

  /**
   * Stops every process of the command. A stopped process cannot fork, so a fork bomb stops
   * growing; what one forked just before it stopped is found, running, on the next pass.
   */
  private async freeze(): Promise<void> {
    const t0 = Date.now();
    while (Date.now() - t0 < FREEZE_FOR_MS && this.signalAll('SIGSTOP').running > 0) await sleep(0);
  }

  /**
   * While berth-run lives, the command's processes are its descendants; after, its marked
   * ones. berth-run's own group (it leads it) is never signalled whole.
   */
  private signalAll(signal: NodeJS.Signals): Signalled {
    const who = this.runnerExited || !this.runnerPid ? { marker: `${MARKER}=${this.marker}` } : { root: this.runnerPid };
    return signalCommand(who, signal, [this.runnerPid ?? 0]);
  }
}

export function launch(o: LaunchOptions): Command | LaunchError {
  if (!existsSync(RUN_HELPER)) return { code: 'internal', message: 'berth-run is missing from the agent directory' };
  try {
    return new Command(o);
  } catch (err) {
    return startError(o.argv[0]!, o.cwd, 'spawn', (err as NodeJS.ErrnoException).code ?? (err as Error).message);
  }
}

function startError(name: string, cwd: string, stage: 'spawn' | 'fork' | 'exec', code: string): LaunchError {
  if (code === 'EAGAIN') return { code: 'pids_exhausted', message: `no process slots left (${pidUse()}): could not start ${name}` };
  if (stage === 'exec' && code === 'ENOENT') return { code: 'command_not_found', message: `command not found: ${name}` };
  if (stage === 'exec' && code === 'EACCES') return { code: 'command_not_found', message: `permission denied: ${name}` };
  if (stage === 'spawn' && (code === 'ENOENT' || code === 'ENOTDIR')) {
    return { code: 'invalid_request', message: `no such directory: ${cwd}` };
  }
  return { code: 'invalid_request', message: `could not start ${name}: ${code}` };
}

function pidUse(): string {
  const { current, limit } = resources().pids;
  if (current === null) return 'every pid in use';
  return limit === null ? `${current} pids in use` : `${current}/${limit} pids in use`;
}

function errnoName(n: number): string {
  return Object.entries(constants.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;
}

function signalName(n: number): string | null {
  return Object.entries(constants.signals).find(([, v]) => v === n)?.[0] ?? null;
}

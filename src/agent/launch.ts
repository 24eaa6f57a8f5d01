// A command, started under berth-run (run/berth-run.c) so that every process it starts stays
// findable, and ended with all of them: setsid, double forks and fork bombs included.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import type { Duplex, Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { signalCommand, type Signalled } from './command-tree.js';
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

export class Command {
  readonly runner: ChildProcess;
  readonly stdin: Writable | null;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves when the command runs (undefined) or could not start. */
  readonly started: Promise<LaunchError | undefined>;
  /** The command's own end; what it left behind may still be running. */
  readonly ended: Promise<Ended>;
  /** berth-run is gone: so is every process it could reach. */
  readonly runnerGone: Promise<void>;
  private pid: number | undefined;
  private commandEnded = false;
  private runnerExited = false;
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
    this.runner = spawn(RUN_HELPER, [...(o.linger ? ['--linger'] : []), ...o.argv], {
      cwd: o.cwd,
      env: { ...o.env, [MARKER]: this.marker },
      stdio: [o.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'],
      detached: true,
    });
    this.stdin = this.runner.stdin;
    this.stdout = this.runner.stdout!;
    this.stderr = this.runner.stderr!;
    const ctl = this.runner.stdio[3] as Duplex;
    ctl.on('error', () => {});
    let lines = '';
    ctl.on('data', (c: Buffer) => {
      lines += c.toString('latin1');
      let nl: number;
      while ((nl = lines.indexOf('\n')) >= 0) {
        const [what, a, b] = lines.slice(0, nl).split(' ');
        lines = lines.slice(nl + 1);
        if (what === 'pid') {
          this.pid = Number(a);
          settleStart(undefined);
          for (const s of this.pendingSignals.splice(0)) this.signal(s);
        } else if (what === 'error') {
          settleStart(startError(name, o.cwd, a === 'exec' ? 'exec' : 'fork', errnoName(Number(b))));
        } else if (what === 'exit' || what === 'signal') {
          this.commandEnded = true;
          const n = Number(a);
          settleEnd(what === 'exit' ? { exitCode: n, signal: null } : { exitCode: 128 + n, signal: signalName(n) });
        }
      }
    });
    this.runner.once('error', (err: NodeJS.ErrnoException) => {
      this.runnerExited = true;
      settleStart(startError(name, o.cwd, 'spawn', err.code ?? err.message));
      settleGone();
    });
    // berth-run's last report is read before its end is judged: its socket closes after.
    let exit: Ended | undefined;
    let ctlClosed = false;
    const gone = (): void => {
      if (!exit || !ctlClosed) return;
      settleStart({ code: 'internal', message: `berth-run ended before ${name} started` });
      if (this.pid !== undefined && !this.commandEnded) {
        // Something killed berth-run under the command: end what it left, by its marker.
        settleEnd(exit);
        void this.end(0);
      }
      settleGone();
    };
    ctl.once('close', () => {
      ctlClosed = true;
      gone();
    });
    this.runner.once('exit', (code, signal) => {
      this.runnerExited = true;
      this.hurry?.();
      exit = { exitCode: signal ? 128 + (constants.signals[signal] ?? 0) : (code ?? 1), signal };
      gone();
    });
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
    if (this.pid === undefined && this.runnerExited) return; // it never started
    const ctl = this.runner.stdio[3] as Duplex;
    if (!this.runnerExited && ctl.writable) ctl.write('hold\n');
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
      if (spent > KILL_FOR_MS && !this.runnerExited) this.runner.kill('SIGKILL');
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
    const who = this.runnerExited || !this.runner.pid ? { marker: `${MARKER}=${this.marker}` } : { root: this.runner.pid };
    return signalCommand(who, signal, [this.runner.pid ?? 0]);
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

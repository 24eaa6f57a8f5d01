// The agent's side of `berth-run --serve` (run/serve.c): one long-lived launcher that forks a
// supervisor for every command, so the agent's Node process never forks per command. Every
// command's stdio and report travel over the launcher's one socket, as frames.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Duplex } from 'node:stream';

const HEADER = 9;
/** Frame types: the agent's, then the launcher's (run/serve.c says what each carries). */
export const Op = { Start: 1, Stdin: 2, StdinEnd: 3, Hold: 4, Pause: 5, Resume: 6, Close: 7 } as const;
const Runner = 16;
const Line = 17;
const Out = 18;
const Eof = 19;
const StdinAck = 20;
const Gone = 21;

export type Stream = 1 | 2;

/** What one command hears from the launcher. */
export interface RunEvents {
  /** The supervisor runs as `pid`. */
  runner(pid: number): void;
  /** One line of berth-run's report: "pid N", "error exec ERRNO", "exit N", "signal N". */
  line(text: string): void;
  out(stream: Stream, data: Buffer): void;
  eof(stream: Stream): void;
  stdinAck(): void;
  /** The supervisor ended (after its last line), or the launcher did under it (`lost`). */
  gone(exit: { code: number | null; signal: number | null }, lost: boolean): void;
  /** Nothing more comes for this command: it is gone and both outputs have ended. */
  finished(): void;
}

interface Run {
  events: RunEvents;
  eofs: number;
  gone: boolean;
}

export interface StartOptions {
  argv: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  stdin: boolean;
  linger: boolean;
}

function frame(type: number, id: number, payload?: Buffer): Buffer {
  const h = Buffer.allocUnsafe(HEADER);
  h[0] = type;
  h.writeUInt32LE(id, 1);
  h.writeUInt32LE(payload?.length ?? 0, 5);
  return payload?.length ? Buffer.concat([h, payload]) : h;
}

function startPayload(o: StartOptions): Buffer {
  const env = Object.entries(o.env)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${v}`);
  const head = Buffer.allocUnsafe(9);
  head[0] = (o.stdin ? 1 : 0) | (o.linger ? 2 : 0);
  head.writeUInt32LE(o.argv.length, 1);
  head.writeUInt32LE(env.length, 5);
  return Buffer.concat([head, Buffer.from([o.cwd, ...o.argv, ...env].map((s) => `${s}\0`).join(''), 'utf8')]);
}

export class Launcher {
  readonly proc: ChildProcess;
  private readonly sock: Duplex;
  private readonly runs = new Map<number, Run>();
  private nextId = 1;
  private buf: Buffer = Buffer.alloc(0);
  private dead = false;
  private lostReason = '';

  constructor(helper: string) {
    this.proc = spawn(helper, ['--serve'], { stdio: ['ignore', 'ignore', 'inherit', 'pipe'], detached: true });
    this.sock = this.proc.stdio[3] as Duplex;
    this.sock.on('data', (c: Buffer) => this.receive(c));
    this.sock.on('error', () => {});
    this.proc.once('error', (err) => this.lose(err.message));
    this.sock.once('close', () => this.lose('its socket closed'));
    this.proc.once('exit', (code, signal) => this.lose(signal ? `killed by ${signal}` : `exit ${code}`));
  }

  get alive(): boolean {
    return !this.dead;
  }

  /** Starts a command; returns its id, or undefined when the launcher is gone. */
  start(o: StartOptions, events: RunEvents): number | undefined {
    if (this.dead) return undefined;
    const id = this.nextId++;
    if (this.nextId > 0xffff_fff0) this.nextId = 1;
    this.runs.set(id, { events, eofs: 0, gone: false });
    this.sock.write(frame(Op.Start, id, startPayload(o)));
    return id;
  }

  /** False when the command is finished (or the launcher gone): nothing was sent. */
  send(type: number, id: number, payload?: Buffer): boolean {
    if (this.dead || !this.runs.has(id)) return false;
    this.sock.write(frame(type, id, payload));
    return true;
  }

  stream(type: number, id: number, stream: Stream): void {
    this.send(type, id, Buffer.from([stream]));
  }

  private receive(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let off = 0;
    while (this.buf.length - off >= HEADER) {
      const len = this.buf.readUInt32LE(off + 5);
      if (this.buf.length - off - HEADER < len) break;
      const type = this.buf[off]!;
      const id = this.buf.readUInt32LE(off + 1);
      const p = this.buf.subarray(off + HEADER, off + HEADER + len);
      off += HEADER + len;
      const run = this.runs.get(id);
      if (!run) continue;
      const r = run.events;
      if (type === Runner) r.runner(p.readUInt32LE(0));
      else if (type === Line) r.line(p.toString('latin1'));
      else if (type === Out) r.out(p[0] as Stream, Buffer.from(p.subarray(1)));
      else if (type === StdinAck) r.stdinAck();
      else if (type === Eof) {
        run.eofs++;
        r.eof(p[0] as Stream);
      } else if (type === Gone) {
        run.gone = true;
        const n = p.readUInt32LE(1);
        r.gone(p[0] ? { code: null, signal: n } : { code: n, signal: null }, false);
      }
      if (run.gone && run.eofs >= 2 && this.runs.delete(id)) r.finished();
    }
    this.buf = off === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(off);
  }

  /** The launcher ended: every command it ran has lost its supervisor's reports. */
  private lose(reason: string): void {
    if (this.dead) return;
    this.dead = true;
    this.lostReason = reason;
    this.proc.kill('SIGKILL');
    const runs = [...this.runs.values()];
    this.runs.clear();
    for (const { events: r, eofs, gone } of runs) {
      if (eofs < 2) {
        r.eof(1);
        r.eof(2);
      }
      if (!gone) r.gone({ code: null, signal: 9 }, true);
      r.finished();
    }
  }

  get reason(): string {
    return this.lostReason;
  }
}

let current: Launcher | undefined;

/** The agent's launcher, started again when the last one is gone. */
export function launcher(helper: string): Launcher {
  if (!current?.alive) current = new Launcher(helper);
  return current;
}

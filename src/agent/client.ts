// The daemon's side of the agent connection: one persistent unix-socket connection per
// environment, with many multiplexed streams on it.
import { connect, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { encodeFrame, FrameDecoder, Kind, type AgentOp, type AgentResponse } from './protocol.js';

export interface StreamHandlers {
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  /** A connect or pty stream is open. */
  onOpened?: (info: Record<string, unknown>) => void;
}

export interface AgentStream {
  readonly id: number;
  readonly done: Promise<AgentResponse>;
  /** False when the connection to the agent is congested: wait for `onDrain`. */
  writeStdin(chunk: Buffer): boolean;
  onDrain(cb: () => void): void;
  endStdin(): void;
  signal(sig: string): void;
  control(msg: { resize?: [number, number]; pause?: boolean; resume?: boolean; signal?: string; hangup?: boolean }): void;
}

export class AgentGoneError extends Error {
  constructor(message = 'the environment agent connection closed') {
    super(message);
    this.name = 'AgentGoneError';
  }
}

interface Pending {
  handlers: StreamHandlers;
  resolve: (r: AgentResponse) => void;
  reject: (e: Error) => void;
}

export class AgentConnection {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  private constructor(private readonly sock: Duplex) {
    const decoder = new FrameDecoder();
    if (sock instanceof Socket) sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        this.fail(new AgentGoneError(`bad data from agent: ${String(err)}`));
        sock.destroy();
        return;
      }
      for (const f of frames) {
        const p = this.pending.get(f.id);
        if (!p) continue;
        if (f.kind === Kind.Stdout) p.handlers.onStdout?.(f.payload);
        else if (f.kind === Kind.Stderr) p.handlers.onStderr?.(f.payload);
        else if (f.kind === Kind.Opened) {
          try {
            p.handlers.onOpened?.(JSON.parse(f.payload.toString('utf8')) as Record<string, unknown>);
          } catch {
            /* ignore */
          }
        } else if (f.kind === Kind.Response) {
          this.pending.delete(f.id);
          try {
            p.resolve(JSON.parse(f.payload.toString('utf8')) as AgentResponse);
          } catch {
            p.reject(new AgentGoneError('agent sent a malformed response'));
          }
        }
      }
    });
    sock.on('close', () => this.fail(new AgentGoneError()));
    sock.on('error', (err) => this.fail(new AgentGoneError(`agent connection failed: ${err.message}`)));
  }

  /**
   * A connection over any byte stream to the agent (a Kubernetes exec or port-forward stream,
   * say), not only a unix socket on this host.
   */
  static fromStream(stream: Duplex): AgentConnection {
    return new AgentConnection(stream);
  }

  static open(socketPath: string, signal?: AbortSignal): Promise<AgentConnection> {
    return connectUnix(socketPath, signal).then((sock) => new AgentConnection(sock));
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  open(op: AgentOp, handlers: StreamHandlers = {}): AgentStream {
    if (this.closed) throw new AgentGoneError();
    const id = this.nextId++;
    if (this.nextId > 0xfffffff0) this.nextId = 1;
    const done = new Promise<AgentResponse>((resolve, reject) => {
      this.pending.set(id, { handlers, resolve, reject });
    });
    this.sock.write(encodeFrame(Kind.Request, id, JSON.stringify(op)));
    const write = (kind: number, payload?: Buffer | string): boolean => {
      if (!this.closed && this.pending.has(id)) return this.sock.write(encodeFrame(kind, id, payload));
      return true;
    };
    return {
      id,
      done,
      writeStdin: (chunk) => {
        // Split large chunks so one stream cannot hold the connection for long.
        let ok = true;
        for (let off = 0; off < chunk.length; off += 1 << 20) ok = write(Kind.Stdin, chunk.subarray(off, off + (1 << 20))) && ok;
        return ok;
      },
      onDrain: (cb) => {
        this.sock.once('drain', cb);
      },
      endStdin: () => void write(Kind.StdinEnd),
      signal: (sig) => void write(Kind.Control, JSON.stringify({ signal: sig })),
      control: (msg) => void write(Kind.Control, JSON.stringify(msg)),
    };
  }

  async request(op: AgentOp, stdin?: Buffer): Promise<AgentResponse> {
    const s = this.open(op);
    if (stdin) s.writeStdin(stdin);
    if (op.op === 'writeFile' || (op.op === 'exec' && op.stdin)) s.endStdin();
    return s.done;
  }

  close(): void {
    this.sock.destroy();
    this.fail(new AgentGoneError());
  }

  private fail(err: Error): void {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/** A connected unix socket, or the connect's error; `signal` abandons the attempt. */
export function connectUnix(path: string, signal?: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const onAbort = (): void => {
      sock.destroy();
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    sock.once('connect', () => {
      signal?.removeEventListener('abort', onAbort);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      reject(err);
    });
  });
}

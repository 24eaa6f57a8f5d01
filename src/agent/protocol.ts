// The daemon <-> in-environment agent wire format. Node built-ins only: this file is
// mounted read-only into every environment together with agent.js.
//
// A frame is: u32 length of what follows | u8 kind | u32 stream id | payload.

export const Kind = {
  Request: 1, // JSON, daemon -> agent: opens stream `id`
  Stdin: 2, // bytes, daemon -> agent
  StdinEnd: 3, // empty, daemon -> agent
  Stdout: 4, // bytes, agent -> daemon
  Stderr: 5, // bytes, agent -> daemon
  Response: 6, // JSON, agent -> daemon: closes stream `id`
  Control: 7, // JSON, daemon -> agent: signal or resize for stream `id`
} as const;
export type KindValue = (typeof Kind)[keyof typeof Kind];

export const MAX_FRAME = 16 * 1024 * 1024;

export function encodeFrame(kind: number, id: number, payload?: Uint8Array | string): Buffer {
  const body = payload === undefined ? Buffer.alloc(0) : typeof payload === 'string' ? Buffer.from(payload) : payload;
  const header = Buffer.allocUnsafe(9);
  header.writeUInt32BE(5 + body.length, 0);
  header.writeUInt8(kind, 4);
  header.writeUInt32BE(id, 5);
  return body.length === 0 ? header : Buffer.concat([header, body]);
}

export interface Frame {
  kind: number;
  id: number;
  payload: Buffer;
}

/** Accumulates bytes from a stream and yields whole frames. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const frames: Frame[] = [];
    for (;;) {
      if (this.buf.length < 4) break;
      const len = this.buf.readUInt32BE(0);
      if (len < 5 || len > MAX_FRAME + 5) throw new Error(`bad frame length ${len}`);
      if (this.buf.length < 4 + len) break;
      frames.push({
        kind: this.buf.readUInt8(4),
        id: this.buf.readUInt32BE(5),
        payload: this.buf.subarray(9, 4 + len),
      });
      this.buf = this.buf.subarray(4 + len);
    }
    return frames;
  }
}

export interface ExecOp {
  op: 'exec';
  argv: string[];
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
  /** When false, stdin is closed at once. */
  stdin?: boolean;
}
export interface ReadFileOp {
  op: 'readFile';
  path: string;
  maxBytes?: number;
}
export interface WriteFileOp {
  op: 'writeFile';
  path: string;
  mode?: number;
}
export interface PingOp {
  op: 'ping';
}
export type AgentOp = ExecOp | ReadFileOp | WriteFileOp | PingOp;

export interface AgentErrorBody {
  code: string;
  message: string;
}

export interface ExecDone {
  exitCode: number;
  signal: string | null;
  timedOut: boolean;
  spawnMs: number;
  runMs: number;
}

export interface AgentResponse {
  ok: boolean;
  error?: AgentErrorBody;
  exec?: ExecDone;
  data?: string; // base64 for readFile
  size?: number;
  pong?: { pid: number; version: string; uptimeMs: number };
}

export const AGENT_VERSION = '1';

// The daemon <-> in-environment agent wire format. Node built-ins only: this file is
// mounted read-only into every environment together with agent.js.
//
// A frame is: u32 length of what follows | u8 kind | u32 stream id | payload.

// The wire types the node and the agent share are in core; the agent takes them as types only
// (erased when compiled), so it stays a standalone program.
import type {
  AgentStepResult as BatchStepResult,
  ProbeEvidence as ProbeResult,
  Readiness,
  ServiceInfo as ServiceStatus,
  ServiceState,
} from '../core/api.js';

export type { BatchStepResult, ProbeResult, Readiness, ServiceState, ServiceStatus };

export const Kind = {
  Request: 1, // JSON, daemon -> agent: opens stream `id`
  Stdin: 2, // bytes, daemon -> agent
  StdinEnd: 3, // empty, daemon -> agent
  Stdout: 4, // bytes, agent -> daemon
  Stderr: 5, // bytes, agent -> daemon
  Response: 6, // JSON, agent -> daemon: closes stream `id`
  Control: 7, // JSON, daemon -> agent: signal, resize, pause or resume for stream `id`
  Opened: 8, // JSON, agent -> daemon: a connect or pty stream is open
} as const;
export type KindValue = (typeof Kind)[keyof typeof Kind];

export const MAX_FRAME = 64 * 1024 * 1024;

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
  /** Its directories are made real: a link or file in the way is replaced (restores). */
  exact?: boolean;
  /** Makes `path` a symbolic link to this target instead of a file (no content is sent). */
  symlink?: string;
}
export interface PingOp {
  op: 'ping';
}
export interface BatchStep {
  argv: string[];
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}
export interface BatchOp {
  op: 'batch';
  steps: BatchStep[];
  /** Stop at the first step that exits non-zero (default true). */
  stopOnError?: boolean;
}
export interface PtyOp {
  op: 'pty';
  argv: string[];
  cols: number;
  rows: number;
  cwd?: string;
  env?: Record<string, string>;
}
export interface ConnectOp {
  op: 'connect';
  port: number;
}
export interface ServiceSpec {
  name: string;
  argv: string[];
  cwd?: string;
  env?: Record<string, string>;
  ready?: Readiness;
  /** Milliseconds to wait for readiness (default 60 s). */
  readyTimeoutMs?: number;
  restart?: 'no' | 'on-failure' | 'always';
}
export interface ServiceStartOp {
  op: 'service.start';
  spec: ServiceSpec;
  /** Wait until ready or failed before answering (default true). */
  wait?: boolean;
}
export interface ServiceStopOp {
  op: 'service.stop';
  name: string;
}
export interface ServiceListOp {
  op: 'service.list';
}
export interface ServiceCheckOp {
  op: 'service.check';
}
/**
 * After a container restart, the node asks for the saved services once its rules for the
 * environment are in place (egress, isolation): never before, so nothing they send escapes.
 */
export interface ServiceRestoreOp {
  op: 'service.restore';
}
export interface LogsOp {
  op: 'logs';
  name: string;
  follow?: boolean;
  tailBytes?: number;
}
export interface DescribeOp {
  op: 'describe';
}
/** The environment's cgroup counters (CPU time, memory, pids): cheap, for sampling. */
export interface StatsOp {
  op: 'stats';
}
export interface ListDirOp {
  op: 'listDir';
  path: string;
}
export interface DirEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mode: number;
  mtime: string;
}
export interface HttpProbeOp {
  op: 'probe.http';
  port: number;
  path: string;
  timeoutMs?: number;
}
export type AgentOp =
  | ExecOp
  | ReadFileOp
  | WriteFileOp
  | PingOp
  | BatchOp
  | PtyOp
  | ConnectOp
  | ServiceStartOp
  | ServiceRestoreOp
  | ServiceStopOp
  | ServiceListOp
  | ServiceCheckOp
  | LogsOp
  | DescribeOp
  | StatsOp
  | ListDirOp
  | HttpProbeOp;

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
  batch?: BatchStepResult[];
  service?: ServiceStatus;
  services?: ServiceStatus[];
  describe?: Record<string, unknown>;
  stats?: Record<string, unknown>;
  probe?: ProbeResult;
  entries?: DirEntry[];
}

export const AGENT_VERSION = '2';

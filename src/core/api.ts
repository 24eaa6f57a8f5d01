// The wire schema: the one source for the daemon, the SDK and the CLI.
import { z } from 'zod';

export const API_VERSION = 'v1';

export const NetworkMode = z.enum(['egress', 'none']);
export type NetworkMode = z.infer<typeof NetworkMode>;

export const Limits = z.object({
  memoryMb: z.number().int().min(16).max(1_048_576),
  cpus: z.number().min(0.05).max(256),
  pids: z.number().int().min(16).max(1_000_000),
});
export type Limits = z.infer<typeof Limits>;

export const CreateEnvRequest = z
  .object({
    name: z.string(),
    repo: z.string().min(1, 'repo is required'),
    ref: z.string().min(1).max(256).optional(),
    toolchain: z.string().min(1).max(256).optional(),
    agent: z.string().optional(),
    task: z.string().optional(),
    network: NetworkMode.optional(),
    limits: Limits.partial().optional(),
    inheritTrust: z.boolean().optional(),
  })
  .strict();
export type CreateEnvRequest = z.infer<typeof CreateEnvRequest>;

export const ExecRequest = z
  .object({
    argv: z.array(z.string()).min(1, 'a command is required'),
    cwd: z.string().max(4096).optional(),
    env: z.record(z.string()).optional(),
    stdin: z.string().optional(), // base64, for the buffered form
    timeoutMs: z.number().int().positive().max(86_400_000).optional(),
  })
  .strict();
export type ExecRequest = z.infer<typeof ExecRequest>;

export const EnvState = z.enum(['creating', 'running', 'stopped', 'vanished', 'removing']);
export type EnvState = z.infer<typeof EnvState>;

export interface EnvInfo {
  id: string;
  name: string;
  state: EnvState;
  repo: string;
  ref: string;
  commit: string;
  toolchain: string;
  containerId: string | null;
  engine: string;
  network: NetworkMode;
  /** The node's CA bundle, mounted read-only, and the variables that point at it. */
  trust: { caBundle: string; variables: string[] } | null;
  limits: Limits;
  labels: { agent?: string; task?: string };
  createdAt: string;
  identity: { repo: string; ref: string; toolchain: string; hash: string; short: string };
}

export interface ExecTiming {
  /** Milliseconds: from the daemon receiving the request to the agent being asked. */
  queueMs: number;
  /** Milliseconds spent by the agent spawning the process. */
  spawnMs: number;
  /** Milliseconds the process ran. */
  runMs: number;
  /** Milliseconds of the daemon-agent round trip, less spawn and run. */
  transportMs: number;
}

export interface ExecResult {
  exitCode: number;
  signal: string | null;
  stdout: string; // base64
  stderr: string; // base64
  timedOut: boolean;
  truncated: boolean;
  timing: ExecTiming;
}

export interface NodeInfo {
  node: string;
  version: string;
  engine: { name: string; endpoint: string; version: string };
  defaultToolchain: string | null;
}

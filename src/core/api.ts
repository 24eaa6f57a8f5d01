// The wire schema: the one source for the daemon, the SDK and the CLI.
import { z } from 'zod';
import { IMAGE_DIGEST, IMAGE_REF_RULE, isImageRef } from './image-ref.js';

export const API_VERSION = 'v1';

export const NetworkMode = z.enum(['egress', 'none']);
export type NetworkMode = z.infer<typeof NetworkMode>;

/** A toolchain as a client names it: a digest, or an image name the engine resolves. */
const ImageRef = z.string().refine(isImageRef, IMAGE_REF_RULE);

export const Limits = z.object({
  memoryMb: z.number().int().min(16).max(1_048_576),
  cpus: z.number().min(0.05).max(256),
  pids: z.number().int().min(16).max(1_000_000),
});
export type Limits = z.infer<typeof Limits>;

export const CreateEnvRequest = z
  .object({
    name: z.string(),
    repo: z.string().max(4096).optional(),
    ref: z.string().min(1).max(256).optional(),
    toolchain: ImageRef.optional(),
    agent: z.string().optional(),
    task: z.string().optional(),
    network: NetworkMode.optional(),
    limits: Limits.partial().optional(),
    inheritTrust: z.boolean().optional(),
    /** Fork: start from this snapshot (its repo, commit and toolchain unless given). */
    snapshot: z.string().max(80).optional(),
    /** Recreate from an identity (the short form or its JSON). */
    identity: z.string().max(16_384).optional(),
    /** Lifetimes, in seconds: at most this long in all, and at most this long unused. */
    ttlSeconds: z.number().int().positive().max(31_536_000).optional(),
    idleTtlSeconds: z.number().int().positive().max(31_536_000).optional(),
    /** Never take one from a pre-warmed pool. */
    noPool: z.boolean().optional(),
    /** Entered from another node: where pushes go back to. */
    upstream: z
      .object({ node: z.string().max(256), env: z.string().max(63), url: z.string().max(2048), snapshot: z.string().max(80) })
      .strict()
      .optional(),
    /** Why it runs on this node (the placement policy's verdict). */
    placement: z
      .object({ operator: z.string().max(64), reason: z.string().max(512) })
      .strict()
      .optional(),
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
    /** Resume a paused environment instead of refusing. */
    resume: z.boolean().optional(),
  })
  .strict();
export type ExecRequest = z.infer<typeof ExecRequest>;

export const EnvState = z.enum(['creating', 'running', 'paused', 'pooled', 'stopped', 'vanished', 'removing']);
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
  identity: IdentityInfo;
  /** Where it came from: a snapshot it was forked from, a pool it was claimed from. */
  origin: { snapshot: string | null; pool: boolean };
  cacheKeys: Record<string, string>;
  ttl: { seconds: number | null; idleSeconds: number | null; expiresAt: string | null };
  upstream: { node: string; env: string; url: string; snapshot: string } | null;
  placement: { node: string; operator: string | null; reason: string };
}

export const SnapshotImport = z
  .object({
    id: z.string().regex(/^sha256:[0-9a-f]{64}$/),
    repo: z.string().max(4096),
    toolchain: z.string().regex(IMAGE_DIGEST),
    cacheKeys: z.record(z.string()).optional(),
    env: z.string().max(63).optional(),
    reason: z.string().max(64).optional(),
  })
  .strict();
export type SnapshotImport = z.infer<typeof SnapshotImport>;

export const ApplyRequest = z
  .object({ snapshot: z.string().regex(/^sha256:[0-9a-f]{64}$/), since: z.string().regex(/^sha256:[0-9a-f]{64}$/) })
  .strict();
export type ApplyRequest = z.infer<typeof ApplyRequest>;

export interface ApplyResult {
  applied: boolean;
  files: string[];
  conflicts: string[];
  snapshot: string;
}

export interface IdentityInfo {
  repo: string;
  ref: string;
  toolchain: string;
  snapshot?: string;
  cacheKeys?: Record<string, string>;
  hash: string;
  short: string;
}

export const SnapRequest = z.object({ artifacts: z.array(z.string().max(4096)).max(100).optional() }).strict();
export type SnapRequest = z.infer<typeof SnapRequest>;

export interface SnapshotInfo {
  id: string;
  env: string | null;
  base: string;
  repo: string;
  toolchain: string;
  cacheKeys: Record<string, string>;
  files: number;
  bytes: number;
  reason: string;
  createdAt: string;
  newBlobs?: number;
  ms?: number;
}

export const PoolRequest = z
  .object({
    toolchain: ImageRef.optional(),
    repo: z.string().min(1),
    ref: z.string().min(1).max(256).optional(),
    size: z.number().int().min(0).max(100),
  })
  .strict();
export type PoolRequest = z.infer<typeof PoolRequest>;

export interface PoolInfo {
  id: string;
  toolchain: string;
  repo: string;
  ref: string;
  commit: string;
  cacheKey: string;
  size: number;
  warm: number;
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

export const ReadinessSchema = z.union([
  z.object({ kind: z.literal('tcp'), port: z.number().int().min(1).max(65535) }).strict(),
  z
    .object({
      kind: z.literal('http'),
      port: z.number().int().min(1).max(65535),
      path: z.string().max(2048),
      status: z.number().int().optional(),
    })
    .strict(),
  z.object({ kind: z.literal('cmd'), command: z.string().min(1).max(4096) }).strict(),
]);

export const RestartPolicy = z.enum(['no', 'on-failure', 'always']);

export const ServiceStartRequest = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'service names are 1-63 lowercase letters, digits, - and _'),
    /** Omitted: taken from the repository's berth.json. */
    argv: z.array(z.string()).min(1).optional(),
    cwd: z.string().max(4096).optional(),
    env: z.record(z.string()).optional(),
    ready: ReadinessSchema.optional(),
    readyTimeoutMs: z.number().int().min(100).max(3_600_000).optional(),
    restart: RestartPolicy.optional(),
    wait: z.boolean().optional(),
  })
  .strict();
export type ServiceStartRequest = z.infer<typeof ServiceStartRequest>;

/** `berth.json` at the repository root: the services an environment declares. */
export const BerthFile = z.object({
  services: z
    .record(
      z
        .object({
          command: z.union([z.string().min(1), z.array(z.string()).min(1)]),
          ready: z.string().optional(),
          readyTimeout: z.number().positive().max(3600).optional(),
          restart: RestartPolicy.optional(),
          cwd: z.string().optional(),
          env: z.record(z.string()).optional(),
          autostart: z.boolean().optional(),
        })
        .strict(),
    )
    .optional(),
});
export type BerthFile = z.infer<typeof BerthFile>;

export const BatchRequest = z
  .object({
    steps: z
      .array(
        z
          .object({
            argv: z.array(z.string()).min(1),
            cwd: z.string().max(4096).optional(),
            env: z.record(z.string()).optional(),
            timeoutMs: z.number().int().positive().max(86_400_000).optional(),
          })
          .strict(),
      )
      .min(1)
      .max(10_000),
    stopOnError: z.boolean().optional(),
  })
  .strict();
export type BatchRequest = z.infer<typeof BatchRequest>;

export const VerifyRequest = z
  .object({
    http: z.array(z.string().max(4096)).max(50).optional(),
    screenshot: z.array(z.string().max(4096)).max(10).optional(),
    test: z
      .object({
        argv: z.array(z.string()).min(1),
        junit: z.string().max(4096).optional(),
        timeoutMs: z.number().int().positive().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();
export type VerifyRequest = z.infer<typeof VerifyRequest>;

export interface ProbeEvidence {
  ok: boolean;
  detail: string;
  status?: number;
  bodyExcerpt?: string;
  ms: number;
}

export interface ServiceInfo {
  name: string;
  state: 'starting' | 'ready' | 'failed' | 'exited' | 'restarting' | 'stopped';
  pid: number | null;
  argv: string[];
  ready: z.infer<typeof ReadinessSchema> | null;
  restart: 'no' | 'on-failure' | 'always';
  restarts: number;
  startedAt: string | null;
  readyAt: string | null;
  readyMs: number | null;
  exitCode: number | null;
  reason: string | null;
  logTail: string | null;
  ports: number[];
  check?: ProbeEvidence;
}

export interface VerifyResult {
  verified: boolean;
  checkedAt: string;
  services: Array<{ name: string; ok: boolean; state: string; check: ProbeEvidence | undefined; logTail: string | null }>;
  http: Array<{ url: string } & ProbeEvidence>;
  screenshots: Array<{
    url: string;
    ok: boolean;
    path: string | null;
    bytes: number;
    width: number;
    height: number;
    blank: boolean;
    detail: string;
  }>;
  tests: null | {
    argv: string[];
    exitCode: number;
    ok: boolean;
    summary: { format: string; passed: number; failed: number; skipped: number; total: number; failures: string[] } | null;
    outputTail: string;
  };
  failures: string[];
}

export interface BatchStepResultWire {
  argv: string[];
  exitCode: number;
  signal: string | null;
  timedOut: boolean;
  stdout: string; // base64
  stderr: string; // base64
  truncated: boolean;
  error?: { code: string; message: string };
  timing: { spawnMs: number; runMs: number };
}

export interface BatchResult {
  steps: BatchStepResultWire[];
  completed: number;
  exitCode: number;
  timing: { transportMs: number; queueMs: number };
}

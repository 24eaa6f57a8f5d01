// The wire schema: the one source for the daemon, the SDK and the CLI.
import { z } from 'zod';
import { IMAGE_DIGEST, IMAGE_REF_RULE, isImageRef } from './image-ref.js';
import { EnvSecret } from './secrets.js';
import { Lease, SupervisionInfo } from './supervision.js';

export const API_VERSION = 'v1';

export const NetworkMode = z.enum(['egress', 'none']);
export type NetworkMode = z.infer<typeof NetworkMode>;

/** The isolation tier: `runc` (namespaces, a user namespace, seccomp) or `gvisor` (runsc, a kernel of its own). */
export const Isolation = z.enum(['runc', 'gvisor']);
export type Isolation = z.infer<typeof Isolation>;

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
    /** The isolation tier; the node's default (BERTH_ISOLATION, else runc) when absent. */
    isolation: Isolation.optional(),
    limits: Limits.partial().optional(),
    inheritTrust: z.boolean().optional(),
    /** The egress policy: `allow:LIST`, `learn` or `all` (docs/egress.md). */
    egress: z.string().max(8192).optional(),
    /** Budgets: `egress=500MB,cpu=2h`; over one, the environment is paused. */
    budget: z.string().max(256).optional(),
    /** Fork: start from this snapshot (its repo, commit and toolchain unless given). */
    snapshot: z.string().max(80).optional(),
    /** Recreate from an identity (the short form or its JSON). */
    identity: z.string().max(16_384).optional(),
    /** Lifetimes, in seconds: at most this long in all, and at most this long unused. */
    ttlSeconds: z.number().int().positive().max(31_536_000).optional(),
    idleTtlSeconds: z.number().int().positive().max(31_536_000).optional(),
    /** Never take one from a pre-warmed pool. */
    noPool: z.boolean().optional(),
    /** Secrets by name: the environment gets each one's variable holding a placeholder. */
    secrets: z.array(z.string().min(1).max(63)).max(32).optional(),
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

export const IdentityInfo = z.object({
  repo: z.string(),
  ref: z.string(),
  toolchain: z.string(),
  snapshot: z.string().optional(),
  cacheKeys: z.record(z.string()).optional(),
  hash: z.string(),
  short: z.string(),
});
export type IdentityInfo = z.infer<typeof IdentityInfo>;

export const Placement = z.object({ node: z.string(), operator: z.string().nullable(), reason: z.string() });

export const EgressDenial = z.object({
  at: z.string(),
  host: z.string(),
  port: z.number(),
  /** A connection, or a DNS lookup. */
  via: z.enum(['tcp', 'dns']),
  reason: z.string(),
});
export type EgressDenial = z.infer<typeof EgressDenial>;

export const BudgetInfo = z.object({
  egressBytes: z.number().nullable(),
  cpuSeconds: z.number().nullable(),
  usedBytes: z.number(),
  /** The container's CPU time when last sampled (null before the first sample). */
  usedCpuSeconds: z.number().nullable(),
  leftBytes: z.number().nullable(),
  leftCpuSeconds: z.number().nullable(),
});
export type BudgetInfo = z.infer<typeof BudgetInfo>;

/** An environment's egress policy, as describe, the SDK and MCP show it. */
export const EgressSummary = z.object({
  policy: z.string(),
  mode: z.enum(['all', 'learn', 'allow']),
  /** Connections go through the node's proxy (every mode but plain `all`). */
  proxied: z.boolean(),
  budget: BudgetInfo.nullable(),
  recentDenials: z.array(EgressDenial),
});
export type EgressSummary = z.infer<typeof EgressSummary>;

export const EgressDestination = z.object({
  host: z.string(),
  port: z.number(),
  allowed: z.boolean(),
  connections: z.number(),
  bytesIn: z.number(),
  bytesOut: z.number(),
  firstSeen: z.string(),
  lastSeen: z.string(),
});
export type EgressDestination = z.infer<typeof EgressDestination>;

/** `GET /v1/envs/{name}/egress`: the policy, every destination, the least-privilege list. */
export const EgressReport = EgressSummary.extend({
  env: z.string(),
  destinations: z.array(EgressDestination),
  /** `allow:…` for what the environment reached (allowed destinations), or null. */
  suggested: z.string().nullable(),
});
export type EgressReport = z.infer<typeof EgressReport>;

export const EnvInfo = z.object({
  id: z.string(),
  name: z.string(),
  state: EnvState,
  repo: z.string(),
  ref: z.string(),
  commit: z.string(),
  toolchain: z.string(),
  containerId: z.string().nullable(),
  engine: z.string(),
  network: NetworkMode,
  /** The node's CA bundle, mounted read-only, and the variables that point at it. */
  trust: z.object({ caBundle: z.string(), variables: z.array(z.string()) }).nullable(),
  limits: Limits,
  labels: z.object({ agent: z.string().optional(), task: z.string().optional() }),
  createdAt: z.string(),
  identity: IdentityInfo,
  /** Where it came from: a snapshot it was forked from, a pool it was claimed from. */
  origin: z.object({ snapshot: z.string().nullable(), pool: z.boolean() }),
  /** How its workspace is kept: a btrfs subvolume (snapshots and forks in constant time) or a plain directory. */
  storage: z.enum(['btrfs', 'copy']).optional(),
  cacheKeys: z.record(z.string()),
  ttl: z.object({ seconds: z.number().nullable(), idleSeconds: z.number().nullable(), expiresAt: z.string().nullable() }),
  upstream: z.object({ node: z.string(), env: z.string(), url: z.string(), snapshot: z.string() }).nullable(),
  placement: Placement,
  /** Its egress policy and budget, when it has one (null: plain egress or none). */
  egress: EgressSummary.nullable().optional(),
  /** Its secrets: names, variables and hosts, never values. */
  secrets: z.array(EnvSecret),
  /** What its agent last reported of itself; a human's lease on it; the last hand-back's note. */
  ...SupervisionInfo,
});
export type EnvInfo = z.infer<typeof EnvInfo>;

/** `POST /v1/envs`: the environment, and the services its berth.json starts with it. */
export const CreatedEnv = EnvInfo.extend({ autostarted: z.array(z.string()).optional(), autostartError: z.string().optional() });
export type CreatedEnv = z.infer<typeof CreatedEnv>;

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

export const ApplyResult = z.object({
  applied: z.boolean(),
  files: z.array(z.string()),
  conflicts: z.array(z.string()),
  snapshot: z.string(),
});
export type ApplyResult = z.infer<typeof ApplyResult>;

export const SnapRequest = z.object({ artifacts: z.array(z.string().max(4096)).max(100).optional() }).strict();
export type SnapRequest = z.infer<typeof SnapRequest>;

export const SnapshotInfo = z.object({
  id: z.string(),
  env: z.string().nullable(),
  base: z.string(),
  repo: z.string(),
  toolchain: z.string(),
  cacheKeys: z.record(z.string()),
  files: z.number(),
  bytes: z.number(),
  reason: z.string(),
  createdAt: z.string(),
  newBlobs: z.number().optional(),
  ms: z.number().optional(),
});
export type SnapshotInfo = z.infer<typeof SnapshotInfo>;

export const RestoreResult = z.object({ restored: z.string(), files: z.number() });
export const GcResult = z.object({
  kept: z.number(),
  removed: z.number(),
  freedBytes: z.number(),
  tmpRemoved: z.number(),
  treesRemoved: z.number(),
});
export type GcResult = z.infer<typeof GcResult>;

export const PoolRequest = z
  .object({
    toolchain: ImageRef.optional(),
    repo: z.string().min(1),
    ref: z.string().min(1).max(256).optional(),
    size: z.number().int().min(0).max(100),
  })
  .strict();
export type PoolRequest = z.infer<typeof PoolRequest>;

export const PoolInfo = z.object({
  id: z.string(),
  toolchain: z.string(),
  repo: z.string(),
  ref: z.string(),
  commit: z.string(),
  cacheKey: z.string(),
  size: z.number(),
  warm: z.number(),
});
export type PoolInfo = z.infer<typeof PoolInfo>;

export const ExecTiming = z.object({
  /** Milliseconds: from the daemon receiving the request to the agent being asked. */
  queueMs: z.number(),
  /** Milliseconds spent by the agent spawning the process. */
  spawnMs: z.number(),
  /** Milliseconds the process ran. */
  runMs: z.number(),
  /** Milliseconds of the daemon-agent round trip, less spawn and run. */
  transportMs: z.number(),
});
export type ExecTiming = z.infer<typeof ExecTiming>;

export const ExecResult = z.object({
  exitCode: z.number(),
  signal: z.string().nullable(),
  stdout: z.string(), // base64
  stderr: z.string(), // base64
  timedOut: z.boolean(),
  truncated: z.boolean(),
  timing: ExecTiming,
  /** A human's takeover lease on the environment as the command started; only while one is held. */
  lease: Lease.optional(),
});
export type ExecResult = z.infer<typeof ExecResult>;

/** The end of a streamed command (the exec WebSocket's last message). */
export const ExecExit = z.object({
  exitCode: z.number(),
  signal: z.string().nullable(),
  timedOut: z.boolean(),
  timing: ExecTiming,
});
export type ExecExit = z.infer<typeof ExecExit>;

export const NodeInfo = z.object({
  node: z.string(),
  version: z.string(),
  engine: z.object({ name: z.string(), endpoint: z.string(), version: z.string() }),
  defaultToolchain: z.string().nullable(),
  /**
   * Where workspaces and snapshot trees live: `btrfs` (copy-on-write: forks in constant time)
   * or `copy` (whole copies: forks complete, cost grows with the workspace), and why.
   */
  storage: z.object({ kind: z.enum(['btrfs', 'copy']), reason: z.string(), root: z.string() }).optional(),
});
export type NodeInfo = z.infer<typeof NodeInfo>;

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

/** Evidence from one check (readiness, an HTTP probe). The agent returns this shape. */
export const ProbeEvidence = z.object({
  ok: z.boolean(),
  detail: z.string(),
  status: z.number().optional(),
  bodyExcerpt: z.string().optional(),
  ms: z.number(),
});
export type ProbeEvidence = z.infer<typeof ProbeEvidence>;
export type Readiness = z.infer<typeof ReadinessSchema>;

export const ServiceState = z.enum(['starting', 'ready', 'failed', 'exited', 'restarting', 'stopped']);
export type ServiceState = z.infer<typeof ServiceState>;

/** A service as the agent reports it. */
export const ServiceInfo = z.object({
  name: z.string(),
  state: ServiceState,
  pid: z.number().nullable(),
  argv: z.array(z.string()),
  ready: ReadinessSchema.nullable(),
  restart: RestartPolicy,
  restarts: z.number(),
  startedAt: z.string().nullable(),
  readyAt: z.string().nullable(),
  /** Milliseconds from start to the first passing readiness check. */
  readyMs: z.number().nullable(),
  exitCode: z.number().nullable(),
  reason: z.string().nullable(),
  logTail: z.string().nullable(),
  ports: z.array(z.number()),
  check: ProbeEvidence.optional(),
});
export type ServiceInfo = z.infer<typeof ServiceInfo>;

export const TestSummary = z.object({
  format: z.string(),
  passed: z.number(),
  failed: z.number(),
  skipped: z.number(),
  total: z.number(),
  failures: z.array(z.string()),
});

export const VerifyResult = z.object({
  verified: z.boolean(),
  checkedAt: z.string(),
  services: z.array(
    z.object({ name: z.string(), ok: z.boolean(), state: z.string(), check: ProbeEvidence.optional(), logTail: z.string().nullable() }),
  ),
  http: z.array(ProbeEvidence.extend({ url: z.string() })),
  screenshots: z.array(
    z.object({
      url: z.string(),
      ok: z.boolean(),
      path: z.string().nullable(),
      bytes: z.number(),
      width: z.number(),
      height: z.number(),
      blank: z.boolean(),
      detail: z.string(),
    }),
  ),
  tests: z
    .object({
      argv: z.array(z.string()),
      exitCode: z.number(),
      ok: z.boolean(),
      summary: TestSummary.nullable(),
      outputTail: z.string(),
    })
    .nullable(),
  failures: z.array(z.string()),
});
export type VerifyResult = z.infer<typeof VerifyResult>;

/** What the agent reports for one step of a batch. */
export const AgentStepResult = z.object({
  exitCode: z.number(),
  signal: z.string().nullable(),
  timedOut: z.boolean(),
  spawnMs: z.number(),
  runMs: z.number(),
  stdout: z.string(), // base64
  stderr: z.string(), // base64
  truncated: z.boolean(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type AgentStepResult = z.infer<typeof AgentStepResult>;

export const BatchStepResultWire = z.object({
  argv: z.array(z.string()),
  exitCode: z.number(),
  signal: z.string().nullable(),
  timedOut: z.boolean(),
  stdout: z.string(), // base64
  stderr: z.string(), // base64
  truncated: z.boolean(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  timing: z.object({ spawnMs: z.number(), runMs: z.number() }),
});
export type BatchStepResultWire = z.infer<typeof BatchStepResultWire>;

export const BatchResult = z.object({
  steps: z.array(BatchStepResultWire),
  completed: z.number(),
  exitCode: z.number(),
  timing: z.object({ transportMs: z.number(), queueMs: z.number() }),
});
export type BatchResult = z.infer<typeof BatchResult>;

export const TimingSummary = z.object({
  commands: z.number(),
  window: z.number(),
  p50: ExecTiming.nullable(),
  p99: ExecTiming.nullable(),
  /** Overhead berth adds to a command (queue + transport + spawn), p50 and p99, in ms. */
  overheadMs: z.object({ p50: z.number(), p99: z.number() }).nullable(),
});
export type TimingSummary = z.infer<typeof TimingSummary>;

const nullableNumber = z.number().nullable();

/** What the environment says about itself from inside (through its agent). */
export const LiveDescription = z.object({
  os: z.object({
    name: z.string(),
    id: z.string().nullable(),
    version: z.string().nullable(),
    kernel: z.string(),
    arch: z.string(),
    hostname: z.string(),
  }),
  tools: z.record(z.object({ path: z.string(), version: z.string() })),
  path: z.array(z.string()),
  workdir: z.string(),
  /** The environment's variables, values that look secret redacted. */
  env: z.record(z.string()),
  processes: z.array(
    z.object({ pid: z.number(), ppid: z.number(), sid: z.number(), rssKb: z.number(), cmd: z.string(), service: z.string().nullable() }),
  ),
  ports: z.array(
    z.object({
      port: z.number(),
      address: z.string(),
      protocol: z.enum(['tcp', 'tcp6']),
      pid: nullableNumber,
      service: z.string().nullable(),
    }),
  ),
  services: z.array(ServiceInfo),
  git: z.object({
    repository: z.boolean(),
    error: z.string().optional(),
    branch: z.string().nullable().optional(),
    head: z.string().nullable().optional(),
    base: z.string().nullable().optional(),
    ahead: nullableNumber.optional(),
    behind: nullableNumber.optional(),
    dirty: z.array(z.object({ path: z.string(), status: z.string() })).optional(),
    clean: z.boolean().optional(),
  }),
  resources: z.object({
    memory: z.object({ limitBytes: nullableNumber, usedBytes: nullableNumber }),
    pids: z.object({ limit: nullableNumber, current: nullableNumber }),
    cpu: z.object({ limitCpus: nullableNumber, usageSeconds: nullableNumber }),
  }),
});
export type LiveDescription = z.infer<typeof LiveDescription>;

/** `stats`: the environment's cgroup counters at one moment (CPU time only grows; sample it twice for a rate). */
export const EnvStats = z.object({
  at: z.string(),
  state: EnvState,
  memory: z.object({ limitBytes: nullableNumber, usedBytes: nullableNumber }),
  pids: z.object({ limit: nullableNumber, current: nullableNumber }),
  cpu: z.object({ limitCpus: nullableNumber, usageSeconds: nullableNumber }),
});
export type EnvStats = z.infer<typeof EnvStats>;

/** `describe`: the environment as the node knows it, and (when it runs) as it sees itself. */
export const DescribeResult = EnvInfo.merge(LiveDescription.partial()).extend({
  /** Null when the environment is not running (nothing to ask). */
  live: z.null().optional(),
  latency: TimingSummary,
  describeMs: z.number(),
});
export type DescribeResult = z.infer<typeof DescribeResult>;

// The node's toolchain and cache routes: build the default toolchain, move toolchains through an
// OCI registry, and say what the node holds. Long work answers as NDJSON (kind `progress`):
// progress lines while it runs, then one line with the result, or with the error.
import { z } from 'zod';
import { WireErrorSchema } from './wire-error.js';

export const Digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'a toolchain digest looks like sha256:<64 hex digits>');

/** A registry's address, as `docker pull` takes it: HOST[:PORT], no scheme, no path. */
export const RegistryAddress = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\](:\d{1,5})?$/, 'a registry is HOST:PORT');

/** One line of a `progress` answer. */
export const ProgressLine = z.union([
  z.object({ progress: z.object({ message: z.string(), fraction: z.number().min(0).max(1).optional() }).strict() }).strict(),
  z.object({ result: z.unknown() }).strict(),
  z.object({ error: WireErrorSchema }).strict(),
]);
export type ProgressLine = z.infer<typeof ProgressLine>;
export type ProgressReport = { message: string; fraction?: number };

export const BuildToolchainRequest = z.object({ force: z.boolean().optional() }).strict();
export const BuiltToolchain = z.object({
  digest: Digest,
  tag: z.string(),
  cached: z.enum(['image', 'archive', 'none']),
  key: z.string(),
  seconds: z.number(),
});
export type BuiltToolchain = z.infer<typeof BuiltToolchain>;

/** `berth toolchain build --devcontainer PATH`: a file (or folder) on the node's disk. */
export const BuildDevcontainerRequest = z
  .object({
    /** Absolute: a devcontainer.json, or a folder holding .devcontainer/devcontainer.json. */
    path: z.string().min(1).max(4096).regex(/^\//, 'the path must be absolute'),
    /** The folder `${localWorkspaceFolder}` names (default: the file's project folder). */
    workspaceFolder: z.string().min(1).max(4096).regex(/^\//, 'the path must be absolute').optional(),
    /** The path shown in messages. */
    shownAs: z.string().max(4096).optional(),
  })
  .strict();
export type BuildDevcontainerRequest = z.infer<typeof BuildDevcontainerRequest>;
export const BuildStep = z.object({
  line: z.number().int(),
  text: z.string(),
  cache: z.enum(['hit', 'miss', 'base']),
  why: z.string(),
});
export type BuildStep = z.infer<typeof BuildStep>;
export const BuiltDevcontainer = z.object({
  digest: Digest,
  /** The tag berth gave the build, or the image the file names. */
  tag: z.string(),
  /** No step was rebuilt. */
  cached: z.boolean(),
  image: z.string().optional(),
  build: z.object({ dockerfile: z.string(), context: z.string(), args: z.record(z.string()), target: z.string().optional() }).optional(),
  /** Each Dockerfile step: a cache hit or miss, and why. */
  steps: z.array(BuildStep),
  /** One line per field of the file berth does not honour. */
  warnings: z.array(z.string()),
  seconds: z.number(),
});
export type BuiltDevcontainer = z.infer<typeof BuiltDevcontainer>;

export const PullToolchainRequest = z
  .object({ digest: Digest, registry: RegistryAddress, via: z.enum(['auto', 'engine', 'berth']).optional() })
  .strict();
export type PullToolchainRequest = z.infer<typeof PullToolchainRequest>;
export const PulledToolchain = z.object({
  digest: Digest,
  registry: z.string(),
  /** Bytes downloaded (0 when the node had it). */
  bytes: z.number(),
  /** Layers the node already kept. */
  reused: z.number(),
  /** Who pulled: the engine itself, berth streaming the layers, or nobody (it was here). */
  via: z.enum(['engine', 'berth']).nullable(),
});
export type PulledToolchain = z.infer<typeof PulledToolchain>;

/** Without a digest, the node's default toolchain. */
export const PushToolchainRequest = z.object({ digest: Digest.optional(), registry: RegistryAddress }).strict();
export type PushToolchainRequest = z.infer<typeof PushToolchainRequest>;
export const PushedToolchain = z.object({
  digest: Digest,
  registry: z.string(),
  bytes: z.number(),
  /** Layers the registry already had. */
  reused: z.number(),
});
export type PushedToolchain = z.infer<typeof PushedToolchain>;

export const ToolchainStatus = z.object({ digest: Digest, present: z.boolean(), default: z.boolean() });
export type ToolchainStatus = z.infer<typeof ToolchainStatus>;

/** The package-manager cache volumes a node holds, by kind and key (src/core/cache-kinds.ts). */
export const CacheList = z.object({ caches: z.array(z.object({ kind: z.string(), key: z.string() })) });
export type CacheList = z.infer<typeof CacheList>;

/** The routes, spread into the contract's one table (src/core/contract.ts). */
export const TOOLCHAIN_ROUTES = {
  buildToolchain: {
    method: 'POST',
    path: '/v1/toolchain/build',
    kind: 'progress',
    access: 'node',
    summary: "build the default toolchain into the node's engine (cached by its inputs); progress as NDJSON",
    request: BuildToolchainRequest,
    response: BuiltToolchain,
  },
  buildDevcontainer: {
    method: 'POST',
    path: '/v1/toolchain/devcontainer',
    kind: 'progress',
    access: 'node',
    summary: "build a devcontainer.json's toolchain (its image, or its Dockerfile with per-step caching, explained); progress as NDJSON",
    request: BuildDevcontainerRequest,
    response: BuiltDevcontainer,
  },
  pullToolchain: {
    method: 'POST',
    path: '/v1/toolchain/pull',
    kind: 'progress',
    access: 'node',
    summary: "pull a toolchain by digest from a registry into the node's engine; progress as NDJSON",
    request: PullToolchainRequest,
    response: PulledToolchain,
  },
  pushToolchain: {
    method: 'POST',
    path: '/v1/toolchain/push',
    kind: 'progress',
    access: 'node',
    summary: "push a toolchain (the node's default unless named) to a registry; progress as NDJSON",
    request: PushToolchainRequest,
    response: PushedToolchain,
  },
  toolchainStatus: {
    method: 'GET',
    path: '/v1/toolchain',
    kind: 'json',
    access: 'node',
    summary: 'whether the node holds a toolchain (digest=), and whether it is the default',
    query: z.object({ digest: Digest }),
    response: ToolchainStatus,
  },
  listCaches: {
    method: 'GET',
    path: '/v1/caches',
    kind: 'json',
    access: 'node',
    summary: 'the package-manager cache volumes the node holds',
    response: CacheList,
  },
} as const;

// Toolchains, through the node that holds them: build the default one, move one through an OCI
// registry by digest, ask whether a node has one. The work is the node's (its engine, its layer
// cache); progress comes back as it goes.
import type { NodeClient } from '../client/client.js';
import type {
  BuiltDevcontainer,
  BuiltToolchain,
  ProgressReport,
  PulledToolchain,
  PushedToolchain,
  ToolchainStatus,
} from '../core/toolchain-api.js';

export type {
  BuildStep,
  BuiltDevcontainer,
  BuiltToolchain,
  ProgressReport,
  PulledToolchain,
  PushedToolchain,
  ToolchainStatus,
} from '../core/toolchain-api.js';

export interface ProgressOptions {
  onProgress?: (p: ProgressReport) => void;
  signal?: AbortSignal;
}

/** The registry named by BERTH_REGISTRY, if any. */
export function registryFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.BERTH_REGISTRY || undefined;
}

/** Builds the default toolchain into the node's engine (cached by its inputs unless `force`). */
export function buildToolchain(node: NodeClient, opts: ProgressOptions & { force?: boolean } = {}): Promise<BuiltToolchain> {
  return node.callProgress('buildToolchain', { body: { force: opts.force }, onProgress: opts.onProgress, signal: opts.signal });
}

/**
 * Builds the toolchain a devcontainer.json describes, on the node (the path is on its disk):
 * its image, or its Dockerfile with the engine's layer cache, each step explained.
 */
export function buildDevcontainer(
  node: NodeClient,
  path: string,
  opts: ProgressOptions & { workspaceFolder?: string; shownAs?: string } = {},
): Promise<BuiltDevcontainer> {
  return node.callProgress('buildDevcontainer', {
    body: {
      path,
      ...(opts.workspaceFolder ? { workspaceFolder: opts.workspaceFolder } : {}),
      ...(opts.shownAs ? { shownAs: opts.shownAs } : {}),
    },
    onProgress: opts.onProgress,
    signal: opts.signal,
  });
}

/**
 * Pulls a toolchain by digest from a registry into the node's engine. The node finishes a pull
 * whose caller went away, so a retry finds it there (or joins it).
 */
export function pullToolchain(
  node: NodeClient,
  digest: string,
  registry: string,
  opts: ProgressOptions & { via?: 'auto' | 'engine' | 'berth' } = {},
): Promise<PulledToolchain> {
  return node.callProgress('pullToolchain', {
    body: { digest, registry, ...(opts.via ? { via: opts.via } : {}) },
    onProgress: opts.onProgress,
    signal: opts.signal,
  });
}

/** Pushes a toolchain (the node's default unless `digest`) to a registry. */
export function pushToolchain(
  node: NodeClient,
  registry: string,
  opts: ProgressOptions & { digest?: string } = {},
): Promise<PushedToolchain> {
  return node.callProgress('pushToolchain', {
    body: { registry, ...(opts.digest ? { digest: opts.digest } : {}) },
    onProgress: opts.onProgress,
    signal: opts.signal,
  });
}

/** Whether the node holds a toolchain, and whether it is its default. */
export function toolchainStatus(node: NodeClient, digest: string, signal?: AbortSignal): Promise<ToolchainStatus> {
  return node.call('toolchainStatus', { query: { digest }, signal });
}

// The node's toolchain work behind the `progress` routes: building the default toolchain, and
// moving toolchains through a registry, each into or out of the node's own engine.
//
// The same work asked for twice at once is done once: a second caller joins the first and hears
// its progress from then on. A pull goes on when its caller goes away (an interrupted `enter`),
// so a retry finds the toolchain here or joins the pull still going; a build stops when nobody
// waits for it any more (Ctrl-C on `berth toolchain build`).
import type { BuildResult } from '../toolchain/base-image.js';
import { buildBaseImage, defaultToolchainDigest, setDefaultToolchain } from '../toolchain/base-image.js';
import { BerthError } from '../core/errors.js';
import { buildDevcontainer } from '../toolchain/devcontainer/build.js';
import { loadDevcontainer } from '../toolchain/devcontainer/load.js';
import type {
  BuildDevcontainerRequest,
  BuiltDevcontainer,
  BuiltToolchain,
  ProgressReport,
  PulledToolchain,
  PullToolchainRequest,
  PushedToolchain,
  PushToolchainRequest,
  ToolchainStatus,
} from '../core/toolchain-api.js';
import type { EnvManager } from '../env/manager.js';
import { pullImage, pushImage, type TransferProgress } from '../remote/registry.js';

interface Job<T> {
  done: Promise<T>;
  listeners: Set<(p: ProgressReport) => void>;
  waiters: number;
  abort: AbortController;
}

export class ToolchainOps {
  private readonly jobs = new Map<string, Job<unknown>>();

  constructor(private readonly manager: EnvManager) {}

  build(force: boolean, progress: (p: ProgressReport) => void, callerGone: AbortSignal): Promise<BuiltToolchain> {
    return this.shared(`build:${force}`, { stopWhenAlone: true }, progress, callerGone, async (report, signal): Promise<BuildResult> =>
      buildBaseImage(this.manager.engine, {
        force,
        signal,
        onProgress: (p) => (p.phase === 'done' ? undefined : report({ message: p.message, fraction: p.fraction })),
      }),
    );
  }

  buildDevcontainer(
    req: BuildDevcontainerRequest,
    progress: (p: ProgressReport) => void,
    callerGone: AbortSignal,
  ): Promise<BuiltDevcontainer> {
    return this.shared(`devcontainer:${req.path}`, { stopWhenAlone: true }, progress, callerGone, async (report, signal) => {
      const dc = await loadDevcontainer(req.path, { workspaceFolder: req.workspaceFolder, shownAs: req.shownAs });
      return buildDevcontainer(this.manager.engine, dc, { onProgress: report, signal });
    });
  }

  pull(req: PullToolchainRequest, progress: (p: ProgressReport) => void, callerGone: AbortSignal): Promise<PulledToolchain> {
    return this.shared(`pull:${req.digest}`, { stopWhenAlone: false }, progress, callerGone, async (report) => {
      const r = await pullImage(this.manager.engine, req.digest, req.registry, transfer(report), req.via ?? 'auto');
      // A node's first toolchain becomes its default.
      if (!defaultToolchainDigest()) setDefaultToolchain(req.digest);
      return { digest: req.digest, registry: req.registry, bytes: r.downloaded, reused: r.reused, via: r.via };
    });
  }

  push(req: PushToolchainRequest, progress: (p: ProgressReport) => void, callerGone: AbortSignal): Promise<PushedToolchain> {
    const digest = req.digest ?? defaultToolchainDigest();
    if (!digest)
      throw new BerthError(
        'image_missing',
        'this node has no default toolchain to push',
        'build one with `berth toolchain build`, or name a digest',
      );
    return this.shared(`push:${digest}:${req.registry}`, { stopWhenAlone: false }, progress, callerGone, async (report) => {
      const r = await pushImage(this.manager.engine, digest, req.registry, transfer(report));
      return { digest, registry: req.registry, bytes: r.uploaded, reused: r.skipped };
    });
  }

  async status(digest: string): Promise<ToolchainStatus> {
    const present = (await this.manager.engine.inspectImage(digest)) !== null;
    return { digest, present, default: defaultToolchainDigest() === digest };
  }

  /** Runs `work` once per key; every caller hears its progress, and gets its result or error. */
  private shared<T>(
    key: string,
    opts: { stopWhenAlone: boolean },
    progress: (p: ProgressReport) => void,
    callerGone: AbortSignal,
    work: (report: (p: ProgressReport) => void, signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    let job = this.jobs.get(key) as Job<T> | undefined;
    const first = !job;
    if (!job) {
      // The first caller hears the work from its very first report (made before it awaits anything).
      const listeners = new Set<(p: ProgressReport) => void>([progress]);
      const abort = new AbortController();
      const report = (p: ProgressReport): void => {
        for (const l of listeners) l(p);
      };
      const made: Job<T> = { done: Promise.resolve(undefined as T), listeners, waiters: 0, abort };
      this.jobs.set(key, made);
      made.done = (async () => work(report, abort.signal))().finally(() => this.jobs.delete(key));
      made.done.catch(() => {});
      job = made;
    }
    const j = job;
    j.waiters++;
    if (!first) j.listeners.add(progress);
    const leave = (): void => {
      j.listeners.delete(progress);
      j.waiters--;
      if (opts.stopWhenAlone && j.waiters === 0)
        j.abort.abort(new BerthError('interrupted', 'the toolchain build was stopped: nobody waits for it'));
    };
    callerGone.addEventListener('abort', leave, { once: true });
    return j.done.finally(() => {
      if (callerGone.aborted) return;
      callerGone.removeEventListener('abort', leave);
      j.listeners.delete(progress);
      j.waiters--;
    });
  }
}

/** A registry transfer's progress, as a message and a fraction. */
function transfer(report: (p: ProgressReport) => void): (p: TransferProgress) => void {
  return (p) =>
    report({
      message: p.message ?? `${p.phase} ${(p.bytes / 1e6).toFixed(1)} MB`,
      fraction: p.fraction ?? (p.total ? Math.min(1, p.bytes / p.total) : undefined),
    });
}

const OPS = new WeakMap<EnvManager, ToolchainOps>();

/** The one ToolchainOps of a node. */
export function toolchainOps(manager: EnvManager): ToolchainOps {
  let ops = OPS.get(manager);
  if (!ops) OPS.set(manager, (ops = new ToolchainOps(manager)));
  return ops;
}

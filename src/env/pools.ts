// Pre-warmed pools: per (toolchain, repo, commit, cache keys), a number of environments
// started ahead of time, refilled in the background one at a time, and claimed atomically
// by a matching `new`. Pools live in the database, so they survive a restart.
import { randomBytes } from 'node:crypto';
import type { PoolInfo, PoolRequest } from '../core/api.js';
import { BerthError } from '../core/errors.js';
import type { PoolRow } from '../state/state-db.js';
import { defaultToolchainDigest } from '../toolchain/base-image.js';
import { cacheKeyDigest, cacheKeysAt } from '../workspace/cache-keys.js';
import { resolveRepo } from '../workspace/git.js';
import type { EnvManager } from './manager.js';

export class PoolKeeper {
  private running = false;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly manager: EnvManager,
    private readonly maxEnvs = Number(process.env.BERTH_MAX_ENVS || 200),
  ) {
    manager.onPoolChange = () => this.kick();
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), 10_000);
    this.timer.unref();
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  async set(req: PoolRequest): Promise<PoolInfo> {
    const toolchainRef = req.toolchain ?? defaultToolchainDigest();
    if (!toolchainRef)
      throw new BerthError('image_missing', 'this node has no toolchain image yet', 'build one with `berth toolchain build`');
    const image = await this.manager.engine.inspectImage(toolchainRef);
    if (!image)
      throw new BerthError('image_missing', `toolchain image ${toolchainRef} is not on this node`, 'build it with `berth toolchain build`');
    const resolved = await resolveRepo(req.repo, req.ref, this.manager.config.cacheRoot);
    const keys = await cacheKeysAt(resolved.mirror, resolved.commit);
    const row = this.manager.db.upsertPool({
      id: randomBytes(6).toString('hex'),
      toolchain: image.id,
      repo: resolved.repo,
      ref: req.ref ?? 'HEAD',
      commit_sha: resolved.commit,
      cache_key: cacheKeyDigest(keys),
      size: req.size,
      created_at: new Date().toISOString(),
    });
    this.kick();
    this.changed(row);
    return this.info(row);
  }

  /** Tells subscribers how full a pool is. */
  changed(p: PoolRow): void {
    const info = this.info(p);
    this.manager.events.emit({ type: 'pool.changed', env: null, agent: null, pool: p.id, size: info.size, warm: info.warm });
  }

  list(): PoolInfo[] {
    return this.manager.db.pools().map((p) => this.info(p));
  }

  private info(p: PoolRow): PoolInfo {
    const warm = this.manager.db.listEnvs().filter((e) => e.pool_id === p.id && e.state === 'pooled').length;
    return { id: p.id, toolchain: p.toolchain, repo: p.repo, ref: p.ref, commit: p.commit_sha, cacheKey: p.cache_key, size: p.size, warm };
  }

  /** Asks for a refill pass; passes never overlap. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.pass()
      .catch((err: unknown) => this.manager.log(`berth: pool refill: ${(err as Error).message}`))
      .finally(() => {
        this.running = false;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async pass(): Promise<void> {
    for (const pool of this.manager.db.pools()) {
      if (this.stopped) return;
      const members = this.manager.db.listEnvs().filter((e) => e.pool_id === pool.id && (e.state === 'pooled' || e.state === 'creating'));
      // Shrink: drop the extras, newest first.
      for (const extra of members.slice(pool.size).reverse()) await this.manager.remove(extra.name, { discard: true }).catch(() => {});
      if (pool.size === 0 && members.length <= 0) {
        this.manager.db.deletePool(pool.id);
        continue;
      }
      // Grow: one at a time, within the node's budget.
      for (let n = members.length; n < pool.size; n++) {
        if (this.stopped) return;
        if (this.manager.db.listEnvs().length >= this.maxEnvs) {
          this.manager.log(`berth: pool ${pool.id} not refilled: the node is at its limit of ${this.maxEnvs} environments`);
          return;
        }
        const name = `pool-${pool.id.slice(0, 6)}-${randomBytes(3).toString('hex')}`;
        await this.manager.create({ name, repo: pool.repo, ref: pool.commit_sha, toolchain: pool.toolchain, noPool: true }, undefined, {
          poolId: pool.id,
        });
        this.changed(pool);
      }
    }
  }
}

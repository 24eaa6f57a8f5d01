// Lifetimes: an environment past its TTL, or unused for longer than its idle TTL, is
// snapshotted and removed. Its work stays in the snapshot.
import type { EnvManager } from './manager.js';
import { snap } from './snapshots.js';

export class Reaper {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly manager: EnvManager,
    private readonly everyMs = Number(process.env.BERTH_REAP_INTERVAL_MS || 10_000),
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.pass(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.flush();
  }

  /** Last-use times go to the database in batches, not on every command. */
  flush(): void {
    for (const [id, t] of this.manager.lastUsed) this.manager.db.updateEnv(id, { last_used_at: new Date(t).toISOString() });
  }

  async pass(): Promise<string[]> {
    if (this.busy) return [];
    this.busy = true;
    const expired: string[] = [];
    try {
      this.flush();
      const now = Date.now();
      for (const row of this.manager.db.listEnvs()) {
        if (row.state !== 'running' && row.state !== 'paused') continue;
        if (this.manager.inflight.has(row.id)) continue; // a command is running: in use
        const lastUsed = this.manager.lastUsed.get(row.id) ?? Date.parse(row.last_used_at ?? row.created_at);
        const tooOld = row.ttl_s !== null && now - Date.parse(row.created_at) > row.ttl_s * 1000;
        const idle = row.idle_ttl_s !== null && now - lastUsed > row.idle_ttl_s * 1000;
        if (!tooOld && !idle) continue;
        try {
          const r = await this.manager.remove(row.name, {
            snapshot: (n) => snap(this.manager, n, { reason: tooOld ? 'expired' : 'idle' }),
          });
          this.manager.log(
            `berth: ${row.name} ${tooOld ? 'reached its TTL' : 'was idle too long'}; removed, work kept in snapshot ${r.snapshot ?? '(none: no workspace)'}`,
          );
          expired.push(row.name);
        } catch (err) {
          this.manager.log(`berth: could not expire ${row.name}: ${(err as Error).message}`);
        }
      }
    } finally {
      this.busy = false;
    }
    return expired;
  }
}

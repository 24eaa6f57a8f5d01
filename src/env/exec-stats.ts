// Every command's overhead, kept per environment: the latency budget made visible.
import type { ExecTiming, TimingSummary } from '../core/api.js';

export type { TimingSummary };

const WINDOW = 256;

export class ExecStats {
  private readonly byEnv = new Map<string, { total: number; recent: ExecTiming[] }>();

  record(envId: string, t: ExecTiming): void {
    let e = this.byEnv.get(envId);
    if (!e) this.byEnv.set(envId, (e = { total: 0, recent: [] }));
    e.total++;
    e.recent.push(t);
    if (e.recent.length > WINDOW) e.recent.shift();
  }

  forget(envId: string): void {
    this.byEnv.delete(envId);
  }

  summary(envId: string): TimingSummary {
    const e = this.byEnv.get(envId);
    if (!e || e.recent.length === 0) return { commands: 0, window: 0, p50: null, p99: null, overheadMs: null };
    const pick = (q: number): ExecTiming => ({
      queueMs: pct(
        e.recent.map((t) => t.queueMs),
        q,
      ),
      spawnMs: pct(
        e.recent.map((t) => t.spawnMs),
        q,
      ),
      runMs: pct(
        e.recent.map((t) => t.runMs),
        q,
      ),
      transportMs: pct(
        e.recent.map((t) => t.transportMs),
        q,
      ),
    });
    const overhead = e.recent.map((t) => t.queueMs + t.transportMs + t.spawnMs);
    return {
      commands: e.total,
      window: e.recent.length,
      p50: pick(0.5),
      p99: pick(0.99),
      overheadMs: { p50: pct(overhead, 0.5), p99: pct(overhead, 0.99) },
    };
  }
}

function pct(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  const v = s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
  return Math.round(v * 1000) / 1000;
}

// Egress state in the node's SQLite: each environment's policy (as its text), budget and
// use so far, and the destinations it reached (what `berth egress` and `--suggest` read).
import type Database from 'better-sqlite3';
import type { Budget } from '../core/egress-policy.js';

export interface EgressRow {
  env_id: string;
  policy: string;
  budget: Budget | null;
  used_bytes: number;
  /** CPU time the container had used when its CPU budget was last set (ns). */
  cpu_base_ns: number;
}

export interface DestinationRow {
  host: string;
  port: number;
  allowed: boolean;
  connections: number;
  bytes_in: number;
  bytes_out: number;
  first_seen: string;
  last_seen: string;
}

export class EgressStore {
  constructor(private readonly db: Database.Database) {}

  get(envId: string): EgressRow | undefined {
    const r = this.db.prepare('SELECT * FROM egress WHERE env_id = ?').get(envId) as
      (Omit<EgressRow, 'budget'> & { budget: string | null }) | undefined;
    return r && { ...r, budget: r.budget ? (JSON.parse(r.budget) as Budget) : null };
  }

  all(): EgressRow[] {
    return (this.db.prepare('SELECT * FROM egress').all() as Array<Omit<EgressRow, 'budget'> & { budget: string | null }>).map((r) => ({
      ...r,
      budget: r.budget ? (JSON.parse(r.budget) as Budget) : null,
    }));
  }

  put(row: EgressRow): void {
    this.db
      .prepare(
        `INSERT INTO egress (env_id, policy, budget, used_bytes, cpu_base_ns) VALUES (@env_id, @policy, @budget, @used_bytes, @cpu_base_ns)
         ON CONFLICT(env_id) DO UPDATE SET policy = excluded.policy, budget = excluded.budget, used_bytes = excluded.used_bytes, cpu_base_ns = excluded.cpu_base_ns`,
      )
      .run({ ...row, budget: row.budget ? JSON.stringify(row.budget) : null });
  }

  destinations(envId: string): DestinationRow[] {
    return (
      this.db.prepare('SELECT * FROM egress_destinations WHERE env_id = ? ORDER BY host, port, allowed').all(envId) as Array<
        Omit<DestinationRow, 'allowed'> & { allowed: number }
      >
    ).map((r) => ({
      host: r.host,
      port: r.port,
      allowed: r.allowed === 1,
      connections: r.connections,
      bytes_in: r.bytes_in,
      bytes_out: r.bytes_out,
      first_seen: r.first_seen,
      last_seen: r.last_seen,
    }));
  }

  /** Adds what was counted since the last flush, in one transaction. */
  flush(envId: string, used: number, deltas: Array<DestinationRow>): void {
    const up = this.db.prepare(
      `INSERT INTO egress_destinations (env_id, host, port, allowed, connections, bytes_in, bytes_out, first_seen, last_seen)
       VALUES (@env_id, @host, @port, @allowed, @connections, @bytes_in, @bytes_out, @first_seen, @last_seen)
       ON CONFLICT(env_id, host, port, allowed) DO UPDATE SET connections = connections + excluded.connections,
         bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out, last_seen = excluded.last_seen`,
    );
    this.db.transaction(() => {
      for (const d of deltas) up.run({ ...d, env_id: envId, allowed: d.allowed ? 1 : 0 });
      this.db.prepare('UPDATE egress SET used_bytes = ? WHERE env_id = ?').run(used, envId);
    })();
  }
}

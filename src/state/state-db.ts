// The node's state: embedded SQLite, WAL mode, so a killed daemon loses nothing it confirmed.
import Database from 'better-sqlite3';
import type { EnvState, Limits, NetworkMode } from '../core/api.js';

export interface EnvRow {
  id: string;
  name: string;
  state: EnvState;
  repo: string;
  ref: string;
  commit_sha: string;
  toolchain: string;
  container_id: string | null;
  engine: string;
  network: NetworkMode;
  limits: Limits;
  agent: string | null;
  task: string | null;
  dir: string;
  trust: boolean;
  created_at: string;
}

type RawRow = Omit<EnvRow, 'limits' | 'trust'> & { limits: string; trust: number };

const MIGRATIONS: string[] = [
  `CREATE TABLE envs (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     state TEXT NOT NULL,
     repo TEXT NOT NULL,
     ref TEXT NOT NULL,
     commit_sha TEXT NOT NULL,
     toolchain TEXT NOT NULL,
     container_id TEXT,
     engine TEXT NOT NULL,
     network TEXT NOT NULL,
     limits TEXT NOT NULL,
     agent TEXT,
     task TEXT,
     dir TEXT NOT NULL,
     trust INTEGER NOT NULL DEFAULT 1,
     created_at TEXT NOT NULL
   );
   CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
];

export class StateDb {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    const version = this.db.pragma('user_version', { simple: true }) as number;
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  meta(key: string): string | undefined {
    const row = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value;
  }

  setMeta(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  /** Inserts a new row; false when the name is taken. */
  insertEnv(row: EnvRow): boolean {
    try {
      this.db
        .prepare(
          `INSERT INTO envs (id, name, state, repo, ref, commit_sha, toolchain, container_id, engine, network, limits, agent, task, dir, trust, created_at)
           VALUES (@id, @name, @state, @repo, @ref, @commit_sha, @toolchain, @container_id, @engine, @network, @limits, @agent, @task, @dir, @trust, @created_at)`,
        )
        .run({ ...row, limits: JSON.stringify(row.limits), trust: row.trust ? 1 : 0 });
      return true;
    } catch (err) {
      if (
        (err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE' ||
        (err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY'
      )
        return false;
      throw err;
    }
  }

  updateEnv(id: string, fields: Partial<Pick<EnvRow, 'state' | 'container_id'>>): void {
    const sets = Object.keys(fields).map((k) => `${k} = @${k}`);
    if (sets.length === 0) return;
    this.db.prepare(`UPDATE envs SET ${sets.join(', ')} WHERE id = @id`).run({ ...fields, id });
  }

  deleteEnv(id: string): void {
    this.db.prepare('DELETE FROM envs WHERE id = ?').run(id);
  }

  envByName(name: string): EnvRow | undefined {
    const r = this.db.prepare('SELECT * FROM envs WHERE name = ?').get(name) as RawRow | undefined;
    return r && decode(r);
  }

  envById(id: string): EnvRow | undefined {
    const r = this.db.prepare('SELECT * FROM envs WHERE id = ?').get(id) as RawRow | undefined;
    return r && decode(r);
  }

  listEnvs(): EnvRow[] {
    return (this.db.prepare('SELECT * FROM envs ORDER BY created_at, name').all() as RawRow[]).map(decode);
  }

  close(): void {
    this.db.close();
  }
}

function decode(r: RawRow): EnvRow {
  return { ...r, limits: JSON.parse(r.limits) as Limits, trust: r.trust === 1 };
}

// The node's state: embedded SQLite, WAL mode, so a killed daemon loses nothing it confirmed.
import Database from 'better-sqlite3';
import type { EnvState, Limits, NetworkMode } from '../core/api.js';
import { SecretRows } from './secret-rows.js';

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
  snapshot: string | null;
  cache_keys: Record<string, string>;
  pool_id: string | null;
  ttl_s: number | null;
  idle_ttl_s: number | null;
  last_used_at: string | null;
  /** Read only: set when a pool member is claimed. */
  from_pool?: number;
  /** JSON: where an entered environment came from ({node, env, url, snapshot}). */
  upstream?: string | null;
  /** JSON: why it runs here ({operator, node, reason}). */
  placement?: string | null;
  /** JSON: what its agent last reported ({state, note, at}). */
  agent_status?: string | null;
  /** JSON: a human's takeover lease ({holder, since, note, exclusive}). */
  lease?: string | null;
  /** JSON: the last hand-back ({note, by, at}), kept until the next takeover. */
  handback?: string | null;
}

export interface SnapshotRow {
  id: string;
  env: string | null;
  base: string;
  repo: string;
  toolchain: string;
  cache_keys: Record<string, string>;
  files: number;
  bytes: number;
  reason: string;
  created_at: string;
  /** The agent label of the environment it was taken from (what an agent's token may fork). */
  agent?: string | null;
}

export interface PoolRow {
  id: string;
  toolchain: string;
  repo: string;
  ref: string;
  commit_sha: string;
  cache_key: string;
  size: number;
  created_at: string;
}

type RawRow = Omit<EnvRow, 'limits' | 'trust' | 'cache_keys'> & { limits: string; trust: number; cache_keys: string };

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
  `ALTER TABLE envs ADD COLUMN snapshot TEXT;
   ALTER TABLE envs ADD COLUMN cache_keys TEXT NOT NULL DEFAULT '{}';
   ALTER TABLE envs ADD COLUMN pool_id TEXT;
   ALTER TABLE envs ADD COLUMN ttl_s INTEGER;
   ALTER TABLE envs ADD COLUMN idle_ttl_s INTEGER;
   ALTER TABLE envs ADD COLUMN last_used_at TEXT;
   ALTER TABLE envs ADD COLUMN from_pool INTEGER NOT NULL DEFAULT 0;
   CREATE INDEX envs_pool ON envs (pool_id, state);
   CREATE TABLE snapshots (
     id TEXT PRIMARY KEY,
     env TEXT,
     base TEXT NOT NULL,
     repo TEXT NOT NULL,
     toolchain TEXT NOT NULL,
     cache_keys TEXT NOT NULL,
     files INTEGER NOT NULL,
     bytes INTEGER NOT NULL,
     reason TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE TABLE pools (
     id TEXT PRIMARY KEY,
     toolchain TEXT NOT NULL,
     repo TEXT NOT NULL,
     ref TEXT NOT NULL,
     commit_sha TEXT NOT NULL,
     cache_key TEXT NOT NULL,
     size INTEGER NOT NULL,
     created_at TEXT NOT NULL,
     UNIQUE (toolchain, repo, commit_sha, cache_key)
   );`,
  `ALTER TABLE envs ADD COLUMN upstream TEXT;
   ALTER TABLE envs ADD COLUMN placement TEXT;`,
  `CREATE TABLE tokens (
     id TEXT PRIMARY KEY,
     hash TEXT NOT NULL,
     agent TEXT NOT NULL,
     envs TEXT,
     read_only INTEGER NOT NULL DEFAULT 0,
     created_at TEXT NOT NULL,
     expires_at TEXT,
     last_used_at TEXT
   );
   ALTER TABLE snapshots ADD COLUMN agent TEXT;
   CREATE TABLE events (
     id INTEGER PRIMARY KEY,
     at TEXT NOT NULL,
     env TEXT,
     agent TEXT,
     body TEXT NOT NULL
   );`,
  `ALTER TABLE envs ADD COLUMN agent_status TEXT;
   ALTER TABLE envs ADD COLUMN lease TEXT;
   ALTER TABLE envs ADD COLUMN handback TEXT;`,
  // Egress: each environment's policy and budget, and every destination it reached.
  `CREATE TABLE egress (
     env_id TEXT PRIMARY KEY,
     policy TEXT NOT NULL,
     budget TEXT,
     used_bytes INTEGER NOT NULL DEFAULT 0,
     cpu_base_ns INTEGER NOT NULL DEFAULT 0
   );
   CREATE TABLE egress_destinations (
     env_id TEXT NOT NULL,
     host TEXT NOT NULL,
     port INTEGER NOT NULL,
     allowed INTEGER NOT NULL,
     connections INTEGER NOT NULL,
     bytes_in INTEGER NOT NULL,
     bytes_out INTEGER NOT NULL,
     first_seen TEXT NOT NULL,
     last_seen TEXT NOT NULL,
     PRIMARY KEY (env_id, host, port, allowed)
   );`,
];

export interface TokenRow {
  id: string;
  /** sha256 of the secret, hex: the secret itself is never stored. */
  hash: string;
  agent: string;
  envs: string[] | null;
  read_only: boolean;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
}

export interface EventRow {
  id: number;
  at: string;
  env: string | null;
  agent: string | null;
  /** The event as JSON. */
  body: string;
}

export class StateDb {
  private readonly db: Database.Database;
  /** Secrets and the placeholders environments hold (src/state/secret-rows.ts). */
  readonly secrets: SecretRows;

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
    this.secrets = new SecretRows(this.db);
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
          `INSERT INTO envs (id, name, state, repo, ref, commit_sha, toolchain, container_id, engine, network, limits, agent, task, dir, trust, created_at, snapshot, cache_keys, pool_id, ttl_s, idle_ttl_s, last_used_at, upstream, placement)
           VALUES (@id, @name, @state, @repo, @ref, @commit_sha, @toolchain, @container_id, @engine, @network, @limits, @agent, @task, @dir, @trust, @created_at, @snapshot, @cache_keys, @pool_id, @ttl_s, @idle_ttl_s, @last_used_at, @upstream, @placement)`,
        )
        .run({
          upstream: null,
          placement: null,
          ...row,
          limits: JSON.stringify(row.limits),
          trust: row.trust ? 1 : 0,
          cache_keys: JSON.stringify(row.cache_keys),
        });
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

  updateEnv(
    id: string,
    fields: Partial<
      Pick<EnvRow, 'state' | 'container_id' | 'last_used_at' | 'snapshot' | 'upstream' | 'agent_status' | 'lease' | 'handback'>
    >,
  ): void {
    const sets = Object.keys(fields).map((k) => `${k} = @${k}`);
    if (sets.length === 0) return;
    this.db.prepare(`UPDATE envs SET ${sets.join(', ')} WHERE id = @id`).run({ ...fields, id });
  }

  deleteEnv(id: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM envs WHERE id = ?').run(id);
      this.db.prepare('DELETE FROM egress WHERE env_id = ?').run(id);
      this.db.prepare('DELETE FROM egress_destinations WHERE env_id = ?').run(id);
    })();
  }

  /** The database itself, for the stores of one feature each (src/state/egress-store.ts). */
  get sqlite(): Database.Database {
    return this.db;
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

  /**
   * Hands a warm pooled environment to a new owner in one transaction: two claims can never
   * get the same one.
   */
  claimPooled(
    poolId: string,
    fields: { name: string; agent: string | null; task: string | null; ttl_s: number | null; idle_ttl_s: number | null },
  ): EnvRow | undefined {
    return this.db.transaction(() => {
      const r = this.db.prepare("SELECT id FROM envs WHERE pool_id = ? AND state = 'pooled' ORDER BY created_at LIMIT 1").get(poolId) as
        { id: string } | undefined;
      if (!r) return undefined;
      const res = this.db
        .prepare(
          "UPDATE envs SET name = @name, agent = @agent, task = @task, ttl_s = @ttl_s, idle_ttl_s = @idle_ttl_s, state = 'running', pool_id = NULL, from_pool = 1, created_at = @now WHERE id = @id AND state = 'pooled'",
        )
        .run({ ...fields, id: r.id, now: new Date().toISOString() });
      return res.changes === 1 ? this.envById(r.id) : undefined;
    })();
  }

  countPooled(poolId: string): number {
    return (
      this.db.prepare("SELECT count(*) AS n FROM envs WHERE pool_id = ? AND state IN ('pooled', 'creating')").get(poolId) as { n: number }
    ).n;
  }

  // ---- snapshots ----------------------------------------------------------------------

  insertSnapshot(s: SnapshotRow): void {
    this.db
      .prepare(
        `INSERT INTO snapshots (id, env, base, repo, toolchain, cache_keys, files, bytes, reason, created_at, agent)
         VALUES (@id, @env, @base, @repo, @toolchain, @cache_keys, @files, @bytes, @reason, @created_at, @agent)
         ON CONFLICT(id) DO UPDATE SET created_at = excluded.created_at, env = excluded.env, reason = excluded.reason, agent = excluded.agent`,
      )
      .run({ agent: null, ...s, cache_keys: JSON.stringify(s.cache_keys) });
  }

  snapshot(id: string): SnapshotRow | undefined {
    const r = this.db.prepare('SELECT * FROM snapshots WHERE id = ?').get(id) as
      (Omit<SnapshotRow, 'cache_keys'> & { cache_keys: string }) | undefined;
    return r && { ...r, cache_keys: JSON.parse(r.cache_keys) as Record<string, string> };
  }

  snapshots(): SnapshotRow[] {
    return (
      this.db.prepare('SELECT * FROM snapshots ORDER BY created_at DESC').all() as Array<
        Omit<SnapshotRow, 'cache_keys'> & { cache_keys: string }
      >
    ).map((r) => ({
      ...r,
      cache_keys: JSON.parse(r.cache_keys) as Record<string, string>,
    }));
  }

  deleteSnapshot(id: string): void {
    this.db.prepare('DELETE FROM snapshots WHERE id = ?').run(id);
  }

  // ---- pools --------------------------------------------------------------------------

  upsertPool(p: PoolRow): PoolRow {
    this.db
      .prepare(
        `INSERT INTO pools (id, toolchain, repo, ref, commit_sha, cache_key, size, created_at)
         VALUES (@id, @toolchain, @repo, @ref, @commit_sha, @cache_key, @size, @created_at)
         ON CONFLICT(toolchain, repo, commit_sha, cache_key) DO UPDATE SET size = excluded.size, ref = excluded.ref`,
      )
      .run(p);
    return this.db
      .prepare('SELECT * FROM pools WHERE toolchain = ? AND repo = ? AND commit_sha = ? AND cache_key = ?')
      .get(p.toolchain, p.repo, p.commit_sha, p.cache_key) as PoolRow;
  }

  pools(): PoolRow[] {
    return this.db.prepare('SELECT * FROM pools ORDER BY created_at').all() as PoolRow[];
  }

  findPool(toolchain: string, repo: string, commit: string, cacheKey: string): PoolRow | undefined {
    return this.db
      .prepare('SELECT * FROM pools WHERE toolchain = ? AND repo = ? AND commit_sha = ? AND cache_key = ? AND size > 0')
      .get(toolchain, repo, commit, cacheKey) as PoolRow | undefined;
  }

  deletePool(id: string): void {
    this.db.prepare('DELETE FROM pools WHERE id = ?').run(id);
  }

  // ---- tokens -------------------------------------------------------------------------

  insertToken(t: TokenRow): void {
    this.db
      .prepare(
        `INSERT INTO tokens (id, hash, agent, envs, read_only, created_at, expires_at, last_used_at)
         VALUES (@id, @hash, @agent, @envs, @read_only, @created_at, @expires_at, @last_used_at)`,
      )
      .run({ ...t, envs: t.envs ? JSON.stringify(t.envs) : null, read_only: t.read_only ? 1 : 0 });
  }

  token(id: string): TokenRow | undefined {
    const r = this.db.prepare('SELECT * FROM tokens WHERE id = ?').get(id) as RawToken | undefined;
    return r && decodeToken(r);
  }

  tokens(): TokenRow[] {
    return (this.db.prepare('SELECT * FROM tokens ORDER BY created_at').all() as RawToken[]).map(decodeToken);
  }

  touchToken(id: string, at: string): void {
    this.db.prepare('UPDATE tokens SET last_used_at = ? WHERE id = ?').run(at, id);
  }

  deleteToken(id: string): boolean {
    return this.db.prepare('DELETE FROM tokens WHERE id = ?').run(id).changes === 1;
  }

  // ---- events -------------------------------------------------------------------------

  /** Appends an event; its id is one more than the last. */
  appendEvent(e: Omit<EventRow, 'id'>): number {
    return Number(this.db.prepare('INSERT INTO events (at, env, agent, body) VALUES (@at, @env, @agent, @body)').run(e).lastInsertRowid);
  }

  /** Events after `since`, oldest first. */
  eventsSince(since: number, limit: number): EventRow[] {
    return this.db.prepare('SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?').all(since, limit) as EventRow[];
  }

  lastEventId(): number {
    return (this.db.prepare('SELECT max(id) AS id FROM events').get() as { id: number | null }).id ?? 0;
  }

  /** Keeps the newest `keep` events. */
  trimEvents(keep: number): void {
    this.db.prepare('DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?').run(keep);
  }

  close(): void {
    this.db.close();
  }
}

type RawToken = Omit<TokenRow, 'envs' | 'read_only'> & { envs: string | null; read_only: number };

function decodeToken(r: RawToken): TokenRow {
  return { ...r, envs: r.envs ? (JSON.parse(r.envs) as string[]) : null, read_only: r.read_only === 1 };
}

function decode(r: RawRow): EnvRow {
  return {
    ...r,
    limits: JSON.parse(r.limits) as Limits,
    trust: r.trust === 1,
    cache_keys: JSON.parse(r.cache_keys) as Record<string, string>,
  };
}

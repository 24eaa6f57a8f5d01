// The secrets' rows in the node's state database: each secret's value sealed (AES-256-GCM,
// see src/env/secrets/vault.ts), and which environment holds which placeholder. Tables are
// made here, idempotently, so they stand apart from the envs table's migrations.
import type Database from 'better-sqlite3';

export interface SecretRow {
  name: string;
  host: string;
  port: number | null;
  /** `Name: template`, or null for in-place substitution in any header. */
  header: string | null;
  env_var: string;
  /** iv (12) | tag (16) | ciphertext. */
  sealed: Buffer;
  created_at: string;
  updated_at: string;
}

export interface EnvSecretRow {
  env_id: string;
  secret: string;
  env_var: string;
  placeholder: string;
}

export class SecretRows {
  constructor(private readonly db: Database.Database) {
    db.exec(`
      CREATE TABLE IF NOT EXISTS secrets (
        name TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        port INTEGER,
        header TEXT,
        env_var TEXT NOT NULL,
        sealed BLOB NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS env_secrets (
        env_id TEXT NOT NULL,
        secret TEXT NOT NULL,
        env_var TEXT NOT NULL,
        placeholder TEXT NOT NULL UNIQUE,
        PRIMARY KEY (env_id, secret)
      );
      CREATE TRIGGER IF NOT EXISTS env_secrets_follow_envs AFTER DELETE ON envs
        BEGIN DELETE FROM env_secrets WHERE env_id = old.id; END;
      CREATE TRIGGER IF NOT EXISTS env_secrets_follow_secrets AFTER DELETE ON secrets
        BEGIN DELETE FROM env_secrets WHERE secret = old.name; END;
    `);
  }

  all(): SecretRow[] {
    return this.db.prepare('SELECT * FROM secrets ORDER BY name').all() as SecretRow[];
  }

  get(name: string): SecretRow | undefined {
    return this.db.prepare('SELECT * FROM secrets WHERE name = ?').get(name) as SecretRow | undefined;
  }

  put(row: SecretRow): void {
    this.db
      .prepare(
        `INSERT INTO secrets (name, host, port, header, env_var, sealed, created_at, updated_at)
         VALUES (@name, @host, @port, @header, @env_var, @sealed, @created_at, @updated_at)
         ON CONFLICT(name) DO UPDATE SET host = excluded.host, port = excluded.port, header = excluded.header,
           env_var = excluded.env_var, sealed = excluded.sealed, updated_at = excluded.updated_at`,
      )
      .run(row);
  }

  remove(name: string): boolean {
    return this.db.prepare('DELETE FROM secrets WHERE name = ?').run(name).changes > 0;
  }

  bind(rows: EnvSecretRow[]): void {
    const stmt = this.db.prepare(
      'INSERT INTO env_secrets (env_id, secret, env_var, placeholder) VALUES (@env_id, @secret, @env_var, @placeholder)',
    );
    this.db.transaction(() => {
      for (const r of rows) stmt.run(r);
    })();
  }

  forEnv(envId: string): EnvSecretRow[] {
    return this.db.prepare('SELECT * FROM env_secrets WHERE env_id = ? ORDER BY secret').all(envId) as EnvSecretRow[];
  }

  /** The names of the environments holding a placeholder for each secret. */
  holders(): Map<string, string[]> {
    const rows = this.db
      .prepare('SELECT s.secret AS secret, e.name AS env FROM env_secrets s JOIN envs e ON e.id = s.env_id ORDER BY e.name')
      .all() as Array<{ secret: string; env: string }>;
    const out = new Map<string, string[]>();
    for (const r of rows) out.set(r.secret, [...(out.get(r.secret) ?? []), r.env]);
    return out;
  }
}

// The node's secrets: sealed at rest with AES-256-GCM under a key kept in a 0600 file in the
// node's home (never in the state database, so a copy of the database, a backup of it or a
// snapshot reveals nothing), opened into memory for the substitution, and bound to
// environments as random per-environment placeholders.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError } from '../../core/errors.js';
import {
  envVarFor,
  parseHeaderTemplate,
  parseSecretHost,
  secretApplies,
  validateEnvVar,
  validateSecretName,
  validateSecretValue,
  type Binding,
  type EnvSecret,
  type SecretInfo,
  type SecretSetRequest,
} from '../../core/secrets.js';
import type { EnvSecretRow, SecretRow, SecretRows } from '../../state/secret-rows.js';

interface Open {
  host: string;
  port: number | null;
  header: { name: string; template: string } | null;
  value: string;
}

export class SecretVault {
  private readonly key: Buffer;
  /** The opened values, by name: what the substitution reads on every request. */
  private readonly open = new Map<string, Open>();

  constructor(
    private readonly rows: SecretRows,
    home: string,
  ) {
    this.key = loadKey(join(home, 'secrets.key'));
    // One that does not open (a key restored from elsewhere) is left out: it substitutes nothing.
    for (const r of rows.all()) {
      try {
        this.open.set(r.name, this.unseal(r));
      } catch {
        continue;
      }
    }
  }

  set(name: string, req: SecretSetRequest): SecretInfo {
    validateSecretName(name);
    const { host, port } = parseSecretHost(req.host);
    const header = req.header ? parseHeaderTemplate(req.header) : null;
    const value = validateSecretValue(req.value);
    const envVar = validateEnvVar(req.envVar ?? envVarFor(name));
    const now = new Date().toISOString();
    const before = this.rows.get(name);
    this.rows.put({
      name,
      host,
      port,
      header: header ? `${header.name}: ${header.template}` : null,
      env_var: envVar,
      sealed: this.seal(name, value),
      created_at: before?.created_at ?? now,
      updated_at: now,
    });
    this.open.set(name, { host, port, header, value });
    return this.info(name);
  }

  /** Takes effect at once: the next request on any connection no longer gets the value. */
  remove(name: string): boolean {
    this.open.delete(name);
    return this.rows.remove(name);
  }

  list(): SecretInfo[] {
    const holders = this.rows.holders();
    return this.rows.all().map((r) => toInfo(r, holders.get(r.name) ?? []));
  }

  info(name: string): SecretInfo {
    const r = this.rows.get(name);
    if (!r) throw unknown(name);
    return toInfo(r, this.rows.holders().get(name) ?? []);
  }

  /**
   * Placeholders for a new environment's secrets: checked before anything is made (an unknown
   * name is `secret_unknown`), bound with `commit` once the environment's row exists.
   */
  prepare(names: string[]): { vars: Record<string, string>; commit: (envId: string) => void; shown: EnvSecret[] } {
    const rows: Array<Omit<EnvSecretRow, 'env_id'>> = [];
    const seen = new Set<string>();
    for (const name of names) {
      if (seen.has(name)) continue;
      seen.add(name);
      const r = this.rows.get(name);
      if (!r) throw unknown(name);
      if (rows.some((x) => x.env_var === r.env_var)) {
        throw new BerthError('usage', `two secrets give the variable ${r.env_var}`, 'set one of them with another --env-var');
      }
      rows.push({ secret: name, env_var: r.env_var, placeholder: `berth-placeholder-${name}-${randomBytes(18).toString('base64url')}` });
    }
    return {
      vars: Object.fromEntries(rows.map((r) => [r.env_var, r.placeholder])),
      commit: (envId) => this.rows.bind(rows.map((r) => ({ ...r, env_id: envId }))),
      shown: rows.map((r) => ({ name: r.secret, envVar: r.env_var, host: this.open.get(r.secret)?.host ?? '' })),
    };
  }

  /** The variables an existing environment holds (its container is made again from them). */
  varsOf(envId: string): Record<string, string> {
    return Object.fromEntries(this.rows.forEnv(envId).map((r) => [r.env_var, r.placeholder]));
  }

  shown(envId: string): EnvSecret[] {
    return this.rows.forEnv(envId).flatMap((r) => {
      const o = this.open.get(r.secret);
      return o ? [{ name: r.secret, envVar: r.env_var, host: o.host }] : [];
    });
  }

  /** Does any secret of this environment apply to `host`:`port`? */
  appliesTo(envId: string, host: string, port: number): boolean {
    return this.rows.forEnv(envId).some((r) => {
      const o = this.open.get(r.secret);
      return !!o && secretApplies(o, host, port);
    });
  }

  /**
   * The bindings for one request: read again each time, so a secret removed or changed
   * mid-connection takes effect on the next request.
   */
  bindings(envId: string, host: string, port: number): Binding[] {
    return this.rows.forEnv(envId).flatMap((r) => {
      const o = this.open.get(r.secret);
      return o && secretApplies(o, host, port) ? [{ placeholder: r.placeholder, value: o.value, header: o.header }] : [];
    });
  }

  private seal(name: string, value: string): Buffer {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    c.setAAD(Buffer.from(`berth-secret:${name}`));
    const body = Buffer.concat([c.update(value, 'utf8'), c.final()]);
    return Buffer.concat([iv, c.getAuthTag(), body]);
  }

  private unseal(r: SecretRow): Open {
    const sealed = Buffer.from(r.sealed);
    const d = createDecipheriv('aes-256-gcm', this.key, sealed.subarray(0, 12));
    d.setAAD(Buffer.from(`berth-secret:${r.name}`));
    d.setAuthTag(sealed.subarray(12, 28));
    let value: string;
    try {
      value = Buffer.concat([d.update(sealed.subarray(28)), d.final()]).toString('utf8');
    } catch {
      throw new BerthError('corrupt', `secret ${r.name} does not open with this node's key`, 'set it again with `berth secret set`');
    }
    return { host: r.host, port: r.port, header: r.header ? parseHeaderTemplate(r.header) : null, value };
  }
}

function toInfo(r: SecretRow, envs: string[]): SecretInfo {
  return {
    name: r.name,
    host: r.host,
    port: r.port,
    header: r.header,
    envVar: r.env_var,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    envs,
  };
}

function unknown(name: string): BerthError {
  return new BerthError(
    'secret_unknown',
    `no secret named ${name} on this node`,
    'list them with `berth secret ls`, or set it with `berth secret set`',
  );
}

function loadKey(path: string): Buffer {
  if (!existsSync(path)) {
    writeFileSync(path + '.tmp', randomBytes(32), { mode: 0o600 });
    renameSync(path + '.tmp', path);
  }
  chmodSync(path, 0o600);
  const key = readFileSync(path);
  if (key.length !== 32)
    throw new BerthError('corrupt', `${path} is not a 32-byte key`, 'restore it from a backup; without it the secrets cannot be opened');
  return key;
}

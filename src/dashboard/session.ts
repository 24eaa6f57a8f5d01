// Dashboard sessions. A one-time login token (minted for a caller holding the node's own token)
// is exchanged for a session cookie; preview hosts get a cookie of their own through a short
// handoff token in the URL. Cookies are signed (HMAC-SHA256) with a key kept 0600 in the node's
// home, so they hold no server-side state and survive a daemon restart; replacing the key file
// ends every session at once. Login links not used yet are kept (as hashes) in a 0600 file, so
// a link printed just before a restart still works once after it.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** How long a login link works, unused. */
export const LOGIN_TTL_MS = 10 * 60_000;
/** How long a session lasts. */
export const SESSION_TTL_MS = 12 * 3600_000;
/** How long a preview handoff token works (it is used at once, by a redirect). */
const HANDOFF_TTL_MS = 60_000;

export const SESSION_COOKIE = 'berth_session';
export const PREVIEW_COOKIE = 'berth_preview';

function loadKey(home: string): Buffer {
  const path = join(home, 'dashboard.key');
  if (!existsSync(path)) writeFileSync(path, randomBytes(32).toString('hex'), { mode: 0o600 });
  chmodSync(path, 0o600);
  const key = Buffer.from(readFileSync(path, 'utf8').trim(), 'hex');
  if (key.length < 32) throw new Error(`${path} holds no usable key; remove it and restart the node`);
  return key;
}

const hashOf = (token: string): string => createHash('sha256').update(token).digest('base64url');

export class Sessions {
  private readonly key: Buffer;
  /** Login tokens not used yet, by their SHA-256, with their expiry. */
  private readonly logins = new Map<string, number>();
  private readonly loginsFile: string;

  constructor(home: string) {
    this.key = loadKey(home);
    this.loginsFile = join(home, 'dashboard-logins.json');
    try {
      const kept = JSON.parse(readFileSync(this.loginsFile, 'utf8')) as Record<string, unknown>;
      for (const [h, exp] of Object.entries(kept)) if (typeof exp === 'number' && exp > Date.now()) this.logins.set(h, exp);
    } catch {
      /* none kept, or unreadable: links made before are void, as after a key change */
    }
  }

  private saveLogins(): void {
    const tmp = `${this.loginsFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.logins)), { mode: 0o600 });
    renameSync(tmp, this.loginsFile);
  }

  private mac(text: string): string {
    return createHmac('sha256', this.key).update(text).digest('base64url');
  }

  private sign(kind: string, fields: string[]): string {
    return [...fields, this.mac([kind, ...fields].join('|'))].join('.');
  }

  /** The fields of a signed value of this kind whose expiry (the field at `expAt`) is not past. */
  private open(kind: string, value: string | undefined, count: number): string[] | null {
    if (!value) return null;
    const parts = value.split('.');
    if (parts.length !== count + 1) return null;
    const fields = parts.slice(0, count);
    const want = Buffer.from(this.mac([kind, ...fields].join('|')));
    const got = Buffer.from(parts[count]!);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return null;
    const exp = Number(fields[0]);
    return Number.isFinite(exp) && exp > Date.now() ? fields : null;
  }

  /** A login token, good once, for LOGIN_TTL_MS. */
  mintLogin(): { token: string; expiresAt: string } {
    const now = Date.now();
    for (const [t, exp] of this.logins) if (exp <= now) this.logins.delete(t);
    const token = randomBytes(24).toString('base64url');
    this.logins.set(hashOf(token), now + LOGIN_TTL_MS);
    this.saveLogins();
    return { token, expiresAt: new Date(now + LOGIN_TTL_MS).toISOString() };
  }

  /** A session cookie's value for a login token, or null when the token is unknown, used or expired. */
  exchange(token: unknown): string | null {
    if (typeof token !== 'string') return null;
    const h = hashOf(token);
    const exp = this.logins.get(h);
    if (exp === undefined) return null;
    this.logins.delete(h);
    this.saveLogins();
    if (exp <= Date.now()) return null;
    return this.sign('session', [String(Date.now() + SESSION_TTL_MS), randomBytes(12).toString('base64url')]);
  }

  validSession(cookie: string | undefined): boolean {
    return this.open('session', cookie, 2) !== null;
  }

  /** A short token that lets one preview host set its own cookie. */
  handoff(host: string): string {
    return this.sign('handoff', [String(Date.now() + HANDOFF_TTL_MS), Buffer.from(host).toString('base64url')]);
  }

  /** The preview cookie for `host`, given a handoff token made for that host. */
  previewCookie(token: string | null, host: string): string | null {
    const f = this.open('handoff', token ?? undefined, 2);
    if (!f || Buffer.from(f[1]!, 'base64url').toString() !== host) return null;
    return this.sign('preview', [String(Date.now() + SESSION_TTL_MS), f[1]!]);
  }

  validPreview(cookie: string | undefined, host: string): boolean {
    const f = this.open('preview', cookie, 2);
    return !!f && Buffer.from(f[1]!, 'base64url').toString() === host;
  }
}

/** The cookies of a request, by name. */
export function cookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

export function setCookie(name: string, value: string, opts: { sameSite: 'Strict' | 'Lax'; maxAgeMs: number }): string {
  return `${name}=${value}; HttpOnly; SameSite=${opts.sameSite}; Path=/; Max-Age=${Math.floor(opts.maxAgeMs / 1000)}`;
}

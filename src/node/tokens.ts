// Who is calling: the node's own token (or the unix socket, guarded by its file mode) means
// the node; an agent's token means that agent, limited to its own environments. Agent
// tokens are stored as hashes, compared in constant time, and never logged.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { BerthError } from '../core/errors.js';
import {
  NODE_PRINCIPAL,
  splitToken,
  validateTokenRequest,
  type Principal,
  type TokenCreateRequest,
  type TokenCreated,
  type TokenInfo,
} from '../core/tokens.js';
import type { StateDb, TokenRow } from '../state/state-db.js';

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** The bearer credential of an Authorization header; the scheme is case-insensitive (RFC 7235). */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^[ \t]*bearer[ \t]+([^ \t]+)[ \t]*$/i.exec(header ?? '');
  return m?.[1];
}

export class TokenStore {
  constructor(
    private readonly db: StateDb,
    /** The node's own token: everything. Absent on a node that serves only its unix socket. */
    private readonly nodeToken: string | undefined,
  ) {}

  create(req: TokenCreateRequest): TokenCreated {
    const r = validateTokenRequest(req);
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(24).toString('base64url');
    const now = new Date();
    const row: TokenRow = {
      id,
      hash: sha256(secret).toString('hex'),
      agent: r.agent,
      envs: r.envs?.length ? r.envs : null,
      read_only: r.readOnly === true,
      created_at: now.toISOString(),
      expires_at: r.ttlSeconds ? new Date(now.getTime() + r.ttlSeconds * 1000).toISOString() : null,
      last_used_at: null,
    };
    this.db.insertToken(row);
    return { ...info(row), token: `berth_${id}_${secret}` };
  }

  list(): TokenInfo[] {
    return this.db.tokens().map(info);
  }

  remove(id: string): void {
    if (!this.db.deleteToken(id)) throw new BerthError('not_found', `no token ${id}`, 'see `berth token ls`');
  }

  /**
   * The principal a presented token stands for. `trusted` callers (the unix socket) are the
   * node when they present nothing; a presented token is always honoured, so a client can
   * act with an agent's reach on any listener.
   */
  authenticate(header: string | undefined, trusted: boolean): Principal {
    const given = bearerToken(header);
    if (given === undefined) {
      if (trusted) return NODE_PRINCIPAL;
      throw new BerthError('unauthorized', 'a bearer token is required', 'pass a token (Authorization: Bearer ...)');
    }
    if (this.nodeToken !== undefined && equal(given, this.nodeToken)) return NODE_PRINCIPAL;
    const parts = splitToken(given);
    const row = parts ? this.db.token(parts.id) : undefined;
    // The same work whether or not the id exists, so timing tells nothing.
    const ok = equal(sha256(parts?.secret ?? given).toString('hex'), row?.hash ?? '0'.repeat(64));
    if (!row || !ok) throw new BerthError('unauthorized', 'the bearer token is wrong');
    if (row.expires_at && Date.parse(row.expires_at) <= Date.now())
      throw new BerthError('unauthorized', 'the bearer token has expired', 'ask for a new one (`berth token create`)');
    const now = new Date().toISOString();
    if (!row.last_used_at || Date.parse(now) - Date.parse(row.last_used_at) > 60_000) this.db.touchToken(row.id, now);
    return { kind: 'agent', tokenId: row.id, agent: row.agent, envs: row.envs, readOnly: row.read_only };
  }
}

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function info(r: TokenRow): TokenInfo {
  return {
    id: r.id,
    agent: r.agent,
    envs: r.envs,
    readOnly: r.read_only,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    lastUsedAt: r.last_used_at,
  };
}

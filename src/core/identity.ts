import { BerthError } from './errors.js';
import { canonicalJson, sha256Hex } from './canonical-json.js';

/** The minimum set of pins that makes an environment reproducible anywhere. */
export interface Identity {
  repo: string;
  ref: string; // commit SHA
  toolchain: string; // image digest, sha256:...
  snapshot?: string;
  cacheKeys?: Record<string, string>;
}

export function identityHash(id: Identity): string {
  return 'sha256:' + sha256Hex(canonicalJson(id));
}

/** A short printable form: berth1.<base64url of canonical JSON>. Small enough to paste. */
export function encodeIdentity(id: Identity): string {
  return 'berth1.' + Buffer.from(canonicalJson(id)).toString('base64url');
}

/** The short form (`berth1.…`) or the JSON form, checked field by field. */
export function decodeIdentity(text: string): Identity {
  let raw: unknown;
  try {
    const t = text.trim();
    raw = JSON.parse(t.startsWith('berth1.') ? Buffer.from(t.slice('berth1.'.length), 'base64url').toString('utf8') : t);
  } catch {
    throw new BerthError('invalid_request', 'that is not a berth identity', 'pass the output of `berth id NAME` (short form or JSON)');
  }
  const o = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  const id = (o.identity && typeof o.identity === 'object' ? o.identity : o) as Record<string, unknown>;
  if (
    typeof id.repo !== 'string' ||
    typeof id.ref !== 'string' ||
    !/^[0-9a-f]{40}$/.test(id.ref) ||
    typeof id.toolchain !== 'string' ||
    !/^sha256:[0-9a-f]{64}$/.test(id.toolchain)
  ) {
    throw new BerthError('invalid_request', 'the identity is missing repo, ref (a commit id) or toolchain (a digest)');
  }
  if (id.snapshot !== undefined && (typeof id.snapshot !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(id.snapshot))) {
    throw new BerthError('invalid_request', 'the identity has an invalid snapshot id');
  }
  const cacheKeys = id.cacheKeys && typeof id.cacheKeys === 'object' ? (id.cacheKeys as Record<string, string>) : undefined;
  return {
    repo: id.repo,
    ref: id.ref,
    toolchain: id.toolchain,
    ...(id.snapshot ? { snapshot: id.snapshot } : {}),
    ...(cacheKeys ? { cacheKeys } : {}),
  };
}

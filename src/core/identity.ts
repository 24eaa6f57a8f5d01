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

// The package managers' caches berth keeps per lockfile: each kind, and where its cache lives
// inside an environment. Pure data, shared by the node (which keys and mounts the volumes) and
// the SDK (which moves caches between nodes on enter).
import { sha256Hex } from './canonical-json.js';

export interface CacheKind {
  kind: string;
  lockfiles: RegExp;
  /** Where the package manager keeps its cache inside the environment. */
  target: string;
}

export const CACHE_KINDS: CacheKind[] = [
  { kind: 'npm', lockfiles: /^package-lock\.json$/, target: '/root/.npm' },
  { kind: 'pnpm', lockfiles: /^pnpm-lock\.yaml$/, target: '/root/.local/share/pnpm/store' },
  { kind: 'yarn', lockfiles: /^yarn\.lock$/, target: '/usr/local/share/.cache/yarn' },
  { kind: 'pip', lockfiles: /^requirements.*\.txt$/, target: '/root/.cache/pip' },
  { kind: 'poetry', lockfiles: /^poetry\.lock$/, target: '/root/.cache/pypoetry' },
  { kind: 'go', lockfiles: /^go\.sum$/, target: '/root/go/pkg/mod' },
  { kind: 'cargo', lockfiles: /^Cargo\.lock$/, target: '/root/.cargo/registry' },
];

export function cacheVolumeName(kind: string, key: string): string {
  return `berth-cache-${kind}-${key}`;
}

export function cacheTarget(kind: string): string | undefined {
  return CACHE_KINDS.find((k) => k.kind === kind)?.target;
}

/** One short key over all of an identity's cache keys, for matching pools. */
export function cacheKeyDigest(keys: Record<string, string>): string {
  const parts = Object.keys(keys)
    .sort()
    .map((k) => `${k}=${keys[k]}`);
  return parts.length ? sha256Hex(parts.join(',')).slice(0, 16) : 'none';
}

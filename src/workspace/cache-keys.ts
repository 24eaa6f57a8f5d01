// Caches keyed by lockfiles: environments whose lockfile is the same share one cache volume,
// so the second `npm ci` downloads nothing. Keys come from the node's own mirror (the blob id
// of each lockfile at the commit), so they are known before any checkout.
import { execFile } from 'node:child_process';
import { sha256Hex } from '../core/canonical-json.js';

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

/** {kind: key} for every kind whose lockfile is at the repository root at `commit`. */
export function cacheKeysAt(mirror: string, commit: string): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      ['--git-dir', mirror, 'ls-tree', '-z', commit],
      { env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1' } },
      (err, stdout) => {
        if (err) return reject(err);
        const blobs: Array<[string, string]> = [];
        for (const entry of String(stdout).split('\0')) {
          const m = /^\d+ blob ([0-9a-f]+)\t(.+)$/.exec(entry);
          if (m) blobs.push([m[2]!, m[1]!]);
        }
        const keys: Record<string, string> = {};
        for (const k of CACHE_KINDS) {
          const ids = blobs.filter(([name]) => k.lockfiles.test(name)).sort(([a], [b]) => a.localeCompare(b));
          if (ids.length) keys[k.kind] = sha256Hex(`${k.kind}:${ids.map(([n, id]) => `${n}=${id}`).join(',')}`).slice(0, 16);
        }
        resolve(keys);
      },
    );
  });
}

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

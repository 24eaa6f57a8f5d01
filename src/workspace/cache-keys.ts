// Caches keyed by lockfiles: environments whose lockfile is the same share one cache volume,
// so the second `npm ci` downloads nothing. Keys come from the node's own mirror (the blob id
// of each lockfile at the commit), so they are known before any checkout.
import { execFile } from 'node:child_process';
import { sha256Hex } from '../core/canonical-json.js';
import { CACHE_KINDS } from '../core/cache-kinds.js';

export { CACHE_KINDS, cacheKeyDigest, cacheTarget, cacheVolumeName, type CacheKind } from '../core/cache-kinds.js';

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

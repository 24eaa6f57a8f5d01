// A snapshot's manifest as the node reads it from its blob store. The manifest's shape and its
// one check are core's (src/core/manifest.ts), shared with the SDK.
import { BerthError } from '../core/errors.js';
import { MAX_LINK_TARGET, validateManifest, type SnapshotManifest } from '../core/manifest.js';
import type { BlobStore } from './blob-store.js';

export { safeRelative, validateManifest, type SnapshotEntry, type SnapshotManifest } from '../core/manifest.js';

export function loadManifest(store: BlobStore, id: string): SnapshotManifest {
  const m = /^sha256:([0-9a-f]{64})$/.exec(id);
  if (!m) throw new BerthError('invalid_request', `invalid snapshot id ${id}`, 'snapshot ids look like sha256:<64 hex digits>');
  let parsed: unknown;
  try {
    parsed = JSON.parse(store.get(m[1]!).toString('utf8'));
  } catch (err) {
    if (err instanceof BerthError) throw err;
    throw new BerthError('corrupt', `snapshot ${id.slice(0, 19)} is not a valid manifest`);
  }
  return validateManifest(parsed, id.slice(0, 19));
}

/**
 * Every blob a manifest needs, checked by hash before anything is written; a link's target
 * must be one the kernel can hold (not empty, no NUL, at most PATH_MAX).
 */
export function verifyBlobs(store: BlobStore, manifest: SnapshotManifest): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const e of manifest.entries) {
    if (!e.blob) continue;
    const data = out.get(e.blob) ?? store.get(e.blob);
    out.set(e.blob, data);
    if (e.kind === 'symlink' && (data.length === 0 || data.length > MAX_LINK_TARGET || data.includes(0))) {
      throw new BerthError('corrupt', `snapshot has a link ${JSON.stringify(e.path)} whose target is not a plain path`);
    }
  }
  return out;
}

// What moves between nodes: snapshot manifests and their blobs (only the ones the other side
// lacks), and pushes applied to a running environment with conflicts reported the way git
// reports them.
import type { ApplyResult, SnapshotImport, SnapshotInfo } from '../core/api.js';
import { BerthError } from '../core/errors.js';
import { loadManifest, safeRelative, verifyBlobs, type SnapshotEntry } from '../workspace/snapshot.js';
import { ask } from './env-ops.js';
import type { EnvManager } from './manager.js';
import { snap, snapshotInfo } from './snapshots.js';

export function missingBlobs(manager: EnvManager, hashes: string[]): string[] {
  return hashes.filter((h) => !manager.store.has(h));
}

/** Records a snapshot whose manifest and blobs were sent here, after checking every one. */
export function importSnapshot(manager: EnvManager, req: SnapshotImport): SnapshotInfo {
  const manifest = loadManifest(manager.store, req.id);
  const blobs = verifyBlobs(manager.store, manifest);
  const bytes = [...blobs.values()].reduce((n, b) => n + b.length, 0);
  const row = {
    id: req.id,
    env: req.env ?? null,
    base: manifest.base,
    repo: req.repo,
    toolchain: req.toolchain,
    cache_keys: req.cacheKeys ?? {},
    files: manifest.entries.length,
    bytes,
    reason: req.reason ?? 'imported',
    created_at: new Date().toISOString(),
  };
  manager.db.insertSnapshot(row);
  return snapshotInfo(row);
}

function byPath(entries: SnapshotEntry[]): Map<string, SnapshotEntry> {
  return new Map(entries.map((e) => [e.path, e]));
}

function same(a: SnapshotEntry | undefined, b: SnapshotEntry | undefined): boolean {
  if (!a || !b) return a === b;
  return a.kind === b.kind && a.blob === b.blob;
}

/**
 * Applies what changed between `since` (the state the human entered from) and `snapshot`
 * (what they pushed) to the running environment. Files the agent also changed since then,
 * differently, are conflicts: nothing is written and the conflicts are listed.
 */
export async function applyPush(manager: EnvManager, name: string, sinceId: string, pushedId: string): Promise<ApplyResult> {
  const row = manager.row(name);
  const since = loadManifest(manager.store, sinceId);
  const pushed = loadManifest(manager.store, pushedId);
  if (since.base !== row.commit_sha || pushed.base !== row.commit_sha) {
    throw new BerthError(
      'invalid_request',
      `the push is based on commit ${pushed.base.slice(0, 12)}, but ${name} is at ${row.commit_sha.slice(0, 12)}`,
    );
  }
  const blobs = verifyBlobs(manager.store, pushed);
  // Where the agent is now, as a snapshot of its own.
  const current = loadManifest(manager.store, (await snap(manager, name, { reason: 'before-push' })).id);
  const s = byPath(since.entries);
  const p = byPath(pushed.entries);
  const c = byPath(current.entries);
  const paths = new Set([...s.keys(), ...p.keys()]);
  const changes: SnapshotEntry[] = [];
  const conflicts: string[] = [];
  for (const path of [...paths].sort()) {
    const before = s.get(path);
    const mine = p.get(path);
    if (same(before, mine)) continue; // the human did not touch it
    const theirs = c.get(path);
    if (!same(before, theirs) && !same(mine, theirs)) conflicts.push(path);
    else if (!same(mine, theirs)) changes.push(mine ?? { path, kind: 'deleted' });
  }
  // A path the human changed that was unchanged from the commit in `since` but is gone from
  // `pushed` means the human reverted it to the commit: restore the committed version.
  if (conflicts.length) return { applied: false, files: [], conflicts, snapshot: pushedId };
  const reverts: string[] = [];
  for (const e of changes) {
    const rel = safeRelative(e.path);
    if (!p.has(e.path) && s.has(e.path)) {
      reverts.push(rel);
      continue;
    }
    if (e.kind === 'deleted') {
      await ask(manager, name, { op: 'exec', argv: ['rm', '-f', '--', rel] });
    } else if (e.kind === 'symlink') {
      await ask(manager, name, { op: 'exec', argv: ['ln', '-sfn', '--', blobs.get(e.blob!)!.toString('utf8'), rel] });
    } else {
      const { conn } = await manager.agentFor(name);
      const r = await conn.request({ op: 'writeFile', path: rel, mode: e.kind === 'exec' ? 0o755 : 0o644 }, blobs.get(e.blob!));
      if (!r.ok) throw new BerthError('internal', `could not write ${rel}: ${r.error?.message ?? ''}`);
    }
  }
  if (reverts.length) {
    const r = await ask(manager, name, { op: 'exec', argv: ['git', 'checkout', row.commit_sha, '--', ...reverts] });
    if (r.exec?.exitCode !== 0) throw new BerthError('internal', `could not restore ${reverts.join(', ')} in ${name}`);
  }
  const after = await snap(manager, name, { reason: 'pushed' });
  return { applied: true, files: changes.map((e) => e.path), conflicts: [], snapshot: after.id };
}

// snap, restore, list and garbage collection, over the content-addressed store.
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { freezeTree, removeTree } from '../workspace/trees.js';
import { performance } from 'node:perf_hooks';
import type { SnapshotInfo } from '../core/api.js';
import { BerthError } from '../core/errors.js';
import { failpoint } from '../core/failpoint.js';
import type { SnapshotRow } from '../state/state-db.js';
import { captureSnapshot, loadManifest, safeRelative, verifyBlobs } from '../workspace/snapshot.js';
import { resolveRepo } from '../workspace/git.js';
import type { AgentOp } from '../agent/protocol.js';
import { ask } from './env-ops.js';
import { agentError } from './exec-service.js';
import type { EnvManager } from './manager.js';

export function snapshotInfo(r: SnapshotRow, extra: Partial<SnapshotInfo> = {}): SnapshotInfo {
  return {
    id: r.id,
    env: r.env,
    base: r.base,
    repo: r.repo,
    toolchain: r.toolchain,
    cacheKeys: r.cache_keys,
    files: r.files,
    bytes: r.bytes,
    reason: r.reason,
    createdAt: r.created_at,
    ...extra,
  };
}

/**
 * The workspace's difference from its commit, plus named artifacts. It reads the workspace
 * from the node's side, so it works even when the environment's container has vanished.
 */
let inFlight = 0;
const GC_GRACE_MS = Number(process.env.BERTH_GC_GRACE_MS ?? 10 * 60 * 1000);

export async function snap(manager: EnvManager, name: string, opts: { artifacts?: string[]; reason?: string } = {}): Promise<SnapshotInfo> {
  inFlight++;
  try {
    return await snapOnce(manager, name, opts);
  } finally {
    inFlight--;
  }
}

async function snapOnce(manager: EnvManager, name: string, opts: { artifacts?: string[]; reason?: string }): Promise<SnapshotInfo> {
  const t0 = performance.now();
  const row = manager.row(name);
  const ws = join(row.dir, 'workspace');
  // Looked at, not followed: the environment may have made `.git` a link to a host path.
  if (!lstatSync(join(ws, '.git'), { throwIfNoEntry: false }))
    throw new BerthError('not_found', `environment ${name} has no workspace left to snapshot`);
  for (const a of opts.artifacts ?? []) {
    // A name git cannot take as a pathspec (a newline, a control character) is refused here.
    if (/[\u0000-\u001f\u007f]/.test(a) || a.length > 4096)
      throw new BerthError(
        'invalid_request',
        `artifact ${JSON.stringify(a.slice(0, 200))} is not a path berth can keep`,
        'name a file in the workspace',
      );
    try {
      safeRelative(a);
    } catch {
      throw new BerthError(
        'invalid_request',
        `artifact ${JSON.stringify(a.slice(0, 200))} is outside the workspace`,
        'name a file in the workspace',
      );
    }
  }
  const resolved = await resolveRepo(row.repo, row.commit_sha, manager.config.cacheRoot);
  // Freeze the whole tree first (constant time on copy-on-write storage, a copy elsewhere),
  // then read the diff from the frozen tree, so the two always agree and a busy agent cannot
  // change files mid-read. The tree is what a fork starts from: ignored files too.
  const frozen = join(manager.config.workRoot, 'trees', `tmp-${randomBytes(6).toString('hex')}`);
  let pending: string | undefined = frozen;
  let captured;
  try {
    await freezeTree(ws, frozen, { previous: previousTree(manager, row.name) });
    captured = await captureSnapshot(manager.store, {
      workspace: frozen,
      mirror: resolved.mirror,
      base: row.commit_sha,
      artifacts: opts.artifacts,
    });
    // The newest tree wins: the id covers the diff, not ignored files such as node_modules.
    const tree = manager.treePath(captured.id);
    await removeTree(tree);
    renameSync(frozen, tree);
    pending = undefined;
  } finally {
    if (pending) await removeTree(pending).catch(() => {});
  }
  // The row goes in last: a crash before this leaves only unreferenced blobs, never a
  // snapshot that points at something missing.
  await failpoint('snap:before-record');
  const rec: SnapshotRow = {
    id: captured.id,
    env: row.name,
    base: row.commit_sha,
    repo: row.repo,
    toolchain: row.toolchain,
    cache_keys: row.cache_keys,
    files: captured.files,
    bytes: captured.bytes,
    reason: opts.reason ?? 'snap',
    created_at: new Date().toISOString(),
    agent: row.agent,
  };
  manager.db.insertSnapshot(rec);
  manager.events.emit({
    type: 'snapshot.taken',
    env: row.name,
    agent: row.agent,
    snapshot: rec.id,
    reason: rec.reason,
    files: rec.files,
    bytes: rec.bytes,
  });
  return snapshotInfo(rec, { newBlobs: captured.newBlobs, ms: Math.round((performance.now() - t0) * 10) / 10 });
}

export function listSnapshots(manager: EnvManager): SnapshotInfo[] {
  return manager.db.snapshots().map((r) => snapshotInfo(r));
}

export function getSnapshot(manager: EnvManager, id: string): SnapshotRow {
  const full = resolveSnapshotId(manager, id);
  const r = manager.db.snapshot(full);
  if (!r) throw new BerthError('not_found', `no snapshot ${id}`, 'see `berth snapshots`');
  return r;
}

/** Accepts a unique prefix (`sha256:ab12…` or `ab12…`), as git does. */
export function resolveSnapshotId(manager: EnvManager, id: string): string {
  const want = id.startsWith('sha256:') ? id : `sha256:${id}`;
  if (/^sha256:[0-9a-f]{64}$/.test(want)) return want;
  if (!/^sha256:[0-9a-f]{4,63}$/.test(want))
    throw new BerthError('invalid_request', `invalid snapshot id ${id}`, 'snapshot ids look like sha256:<hex>');
  const matches = manager.db.snapshots().filter((s) => s.id.startsWith(want));
  if (matches.length === 1) return matches[0]!.id;
  if (matches.length === 0) throw new BerthError('not_found', `no snapshot ${id}`, 'see `berth snapshots`');
  throw new BerthError('invalid_request', `snapshot prefix ${id} is ambiguous`, 'give more digits');
}

/**
 * Puts an existing environment's workspace back to a snapshot. The work happens inside the
 * environment (through its agent), so nothing the environment wrote can redirect it.
 */
export async function restore(manager: EnvManager, name: string, id: string): Promise<{ restored: string; files: number }> {
  const full = resolveSnapshotId(manager, id);
  const row = manager.row(name);
  const manifest = loadManifest(manager.store, full);
  if (manifest.base !== row.commit_sha) {
    throw new BerthError(
      'invalid_request',
      `snapshot ${full.slice(0, 19)} was taken on commit ${manifest.base.slice(0, 12)}, not ${row.commit_sha.slice(0, 12)}`,
      'fork it into a new environment instead',
    );
  }
  const blobs = verifyBlobs(manager.store, manifest);
  const reset = await ask(manager, name, { op: 'exec', argv: ['sh', '-c', `git reset -q --hard ${row.commit_sha} && git clean -q -fd`] });
  if (reset.exec?.exitCode !== 0) throw new BerthError('internal', `could not reset ${name}'s workspace`);
  const deletions: string[] = [];
  for (const e of manifest.entries) {
    const rel = safeRelative(e.path);
    if (e.kind === 'deleted') {
      deletions.push(rel);
      continue;
    }
    // Files and links alike go in as a checkout puts them: their directories made real first,
    // so nothing lands through a link the environment left in the way.
    const data = blobs.get(e.blob!)!;
    const op: AgentOp =
      e.kind === 'symlink'
        ? { op: 'writeFile', path: rel, exact: true, symlink: data.toString('utf8') }
        : { op: 'writeFile', path: rel, mode: e.kind === 'exec' ? 0o755 : 0o644, exact: true };
    const { conn } = await manager.agentFor(name);
    const r = await conn.request(op, e.kind === 'symlink' ? Buffer.alloc(0) : data);
    if (!r.ok) {
      const why = agentError(r);
      throw new BerthError(why.code, `could not restore ${rel}: ${why.message}`);
    }
  }
  if (deletions.length) {
    const script = deletions.map((_, i) => `rm -f -- "$${i + 1}"`).join(' && ');
    const r = await ask(manager, name, { op: 'exec', argv: ['sh', '-c', script, 'restore', ...deletions] });
    if (r.exec?.exitCode !== 0) throw new BerthError('internal', `could not finish restoring ${name}`);
  }
  manager.db.updateEnv(row.id, { snapshot: full });
  return { restored: full, files: manifest.entries.length };
}

/** Removes blobs no recorded snapshot needs; a snapshot an environment came from is kept. */
export function gc(manager: EnvManager): { kept: number; removed: number; freedBytes: number; tmpRemoved: number } {
  if (inFlight > 0) throw new BerthError('already_exists', 'a snapshot is being taken', 'run gc again in a moment');
  const needed = new Set<string>();
  for (const s of manager.db.snapshots()) {
    const hash = s.id.slice('sha256:'.length);
    needed.add(hash);
    try {
      for (const e of loadManifest(manager.store, s.id).entries) if (e.blob) needed.add(e.blob);
    } catch {
      /* a corrupt manifest keeps nothing extra; its row stays for the user to see */
    }
  }
  let removed = 0;
  let freedBytes = 0;
  for (const b of [...manager.store.list()]) {
    // Blobs sent by another node for an `enter` or `push` wait a while to be recorded.
    if (needed.has(b.hash) || b.ageMs < GC_GRACE_MS) continue;
    manager.store.remove(b.hash);
    removed++;
    freedBytes += b.size;
  }
  return { kept: needed.size, removed, freedBytes, tmpRemoved: manager.store.sweepTmp(10 * 60 * 1000) };
}

/** Snapshot trees whose snapshot is no longer recorded. */
export async function gcTrees(manager: EnvManager): Promise<number> {
  const dir = join(manager.config.workRoot, 'trees');
  if (!existsSync(dir)) return 0;
  const known = new Set(manager.db.snapshots().map((s) => s.id.replace(/^sha256:/, '')));
  let n = 0;
  for (const name of readdirSync(dir)) {
    if (known.has(name) || (name.startsWith('tmp-') && inFlight > 0)) continue;
    await removeTree(join(dir, name)).catch(() => {});
    n++;
  }
  return n;
}

/** The environment's newest tree: a whole-copy tree borrows its unchanged files. */
function previousTree(manager: EnvManager, env: string): string | undefined {
  const mine = manager.db
    .snapshots()
    .filter((s) => s.env === env)
    .sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  for (const s of mine) {
    const t = manager.treePath(s.id);
    if (existsSync(t)) return t;
  }
  return undefined;
}

export function deleteSnapshot(manager: EnvManager, id: string): void {
  const full = resolveSnapshotId(manager, id);
  const users = manager.db.listEnvs().filter((e) => e.snapshot === full);
  if (users.length)
    throw new BerthError(
      'already_exists',
      `snapshot ${full.slice(0, 19)} is in use by ${users.map((u) => u.name).join(', ')}`,
      'remove those environments first',
    );
  manager.db.deleteSnapshot(full);
}

// Snapshots: a workspace's difference from the commit it started at (tracked changes,
// untracked files, deletions) plus named artifacts, stored content-addressed.
//
// The difference is computed by git, but never with the workspace's own repository
// configuration: the environment can write that, and hooks, fsmonitor or filter drivers
// configured there would run on the node. berth uses a private git directory of its own whose
// objects come from the node's mirror, with the workspace only as the work tree. Symlinks are
// stored as links, never followed.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  lstatSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { canonicalJson } from '../core/canonical-json.js';
import { BerthError } from '../core/errors.js';
import type { BlobStore } from './blob-store.js';
import { safeRelative, type SnapshotEntry, type SnapshotManifest } from './manifest.js';

export { loadManifest, safeRelative, validateManifest, verifyBlobs, type SnapshotEntry, type SnapshotManifest } from './manifest.js';

export interface Captured {
  id: string;
  manifest: SnapshotManifest;
  files: number;
  bytes: number;
  newBlobs: number;
}

const SAFE_GIT_ENV = {
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_TERMINAL_PROMPT: '0',
  GIT_OPTIONAL_LOCKS: '0',
};
const SAFE_GIT_CONFIG = [
  '-c',
  'core.fsmonitor=false',
  '-c',
  'core.hooksPath=/dev/null',
  '-c',
  'core.untrackedCache=false',
  '-c',
  'core.symlinks=true',
  '-c',
  'core.autocrlf=false',
  '-c',
  'safe.directory=*',
];

function plumbing(gitDir: string, workTree: string, args: string[], signal?: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      [...SAFE_GIT_CONFIG, `--git-dir=${gitDir}`, `--work-tree=${workTree}`, ...args],
      {
        env: { ...process.env, ...SAFE_GIT_ENV, HOME: gitDir, GIT_INDEX_FILE: join(gitDir, 'index') },
        encoding: 'buffer',
        maxBuffer: 256 << 20,
        signal,
      },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`git ${args[0]}: ${stderr.toString().trim().split('\n').pop() ?? err.message}`));
        else resolve(stdout);
      },
    );
  });
}

/** Reads many blobs through one `git cat-file --batch`. */
function catBlobs(gitDir: string, shas: string[], onBlob: (sha: string, data: Buffer) => void): Promise<void> {
  if (shas.length === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const child = spawn('git', [...SAFE_GIT_CONFIG, `--git-dir=${gitDir}`, 'cat-file', '--batch'], {
      env: { ...process.env, ...SAFE_GIT_ENV, HOME: gitDir },
    });
    let buf: Buffer = Buffer.alloc(0);
    let i = 0;
    child.stdout.on('data', (c: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, c]) : c;
      for (;;) {
        const nl = buf.indexOf(10);
        if (nl < 0) return;
        const header = buf.subarray(0, nl).toString();
        const m = /^([0-9a-f]{40}) \w+ (\d+)$/.exec(header);
        if (!m) {
          child.kill();
          return reject(new Error(`git cat-file: ${header}`));
        }
        const size = Number(m[2]);
        if (buf.length < nl + 1 + size + 1) return;
        onBlob(m[1]!, buf.subarray(nl + 1, nl + 1 + size));
        buf = buf.subarray(nl + 1 + size + 1);
        i++;
      }
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 && i === shas.length ? resolve() : reject(new Error(`git cat-file exited ${code} after ${i}/${shas.length} blobs`)),
    );
    child.stdin.end(shas.join('\n') + '\n');
  });
}

export async function captureSnapshot(
  store: BlobStore,
  opts: { workspace: string; mirror: string; base: string; artifacts?: string[]; signal?: AbortSignal },
): Promise<Captured> {
  try {
    return await capture(store, opts);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOSPC' || e.code === 'EDQUOT' || /No space left on device|Disk quota exceeded/.test(e.message ?? '')) {
      throw new BerthError('no_space', 'the node ran out of disk space while storing a snapshot', 'free space, or run `berth gc`');
    }
    throw err;
  }
}

async function capture(
  store: BlobStore,
  opts: { workspace: string; mirror: string; base: string; artifacts?: string[]; signal?: AbortSignal },
): Promise<Captured> {
  const gitDir = join(store.tmp, `scan-${randomBytes(6).toString('hex')}`);
  try {
    await new Promise<void>((resolve, reject) =>
      execFile('git', ['init', '--quiet', '--bare', gitDir], { env: { ...process.env, ...SAFE_GIT_ENV } }, (e) =>
        e ? reject(e) : resolve(),
      ),
    );
    writeFileSync(join(gitDir, 'objects', 'info', 'alternates'), join(opts.mirror, 'objects') + '\n');
    const g = (args: string[]): Promise<Buffer> => plumbing(gitDir, opts.workspace, args, opts.signal);
    await g(['read-tree', opts.base]);
    await g(['add', '-A', '--', '.']);
    for (const a of opts.artifacts ?? []) {
      const rel = safeRelative(a);
      await g(['add', '-f', '-A', '--', rel]).catch(() => {
        throw new BerthError('not_found', `artifact ${a} does not exist in the workspace`);
      });
    }
    const tree = (await g(['write-tree'])).toString().trim();
    const raw = (await g(['diff-tree', '-r', '-z', '--no-renames', '--raw', opts.base, tree])).toString('utf8');
    const fields = raw.split('\0');
    const changes: Array<{ path: string; mode: string; sha: string; status: string }> = [];
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const m = /^:(\d+) (\d+) [0-9a-f]+ ([0-9a-f]+) (\w)/.exec(fields[i]!);
      if (!m) continue;
      changes.push({ mode: m[2]!, sha: m[3]!, status: m[4]!, path: fields[i + 1]! });
    }
    const artifactSet = new Set((opts.artifacts ?? []).map((a) => safeRelative(a)));
    const isArtifact = (p: string): boolean => [...artifactSet].some((a) => p === a || p.startsWith(a + sep));
    const wanted = changes.filter((c) => c.status !== 'D' && c.mode !== '160000');
    const blobOf = new Map<string, { hash: string; size: number }>();
    let newBlobs = 0;
    let bytes = 0;
    await catBlobs(gitDir, [...new Set(wanted.map((c) => c.sha))], (sha, data) => {
      const r = store.put(Buffer.from(data));
      if (r.added) newBlobs++;
      blobOf.set(sha, { hash: r.hash, size: data.length });
    });
    const entries: SnapshotEntry[] = changes
      .filter((c) => c.mode !== '160000')
      .map((c): SnapshotEntry => {
        if (c.status === 'D') return { path: c.path, kind: 'deleted' as const };
        const b = blobOf.get(c.sha)!;
        bytes += b.size;
        const kind: SnapshotEntry['kind'] = c.mode === '120000' ? 'symlink' : c.mode === '100755' ? 'exec' : 'file';
        return { path: c.path, kind, blob: b.hash, size: b.size, ...(isArtifact(c.path) ? { artifact: true } : {}) };
      })
      .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const manifest: SnapshotManifest = { version: 1, base: opts.base, head: readHead(opts.workspace), entries };
    const m = store.put(Buffer.from(canonicalJson(manifest)));
    if (m.added) newBlobs++;
    return { id: `sha256:${m.hash}`, manifest, files: entries.length, bytes, newBlobs };
  } finally {
    rmSync(gitDir, { recursive: true, force: true });
  }
}

/** HEAD of the workspace, read as data (never by running git in it). */
function readHead(ws: string): SnapshotManifest['head'] {
  try {
    const head = readSmall(join(ws, '.git', 'HEAD'));
    const ref = /^ref: (refs\/heads\/[A-Za-z0-9._\/-]+)$/.exec(head)?.[1];
    if (ref?.split('/').some((c) => c === '..' || c === '.' || c === '')) return { branch: null, commit: null };
    if (!ref) return { branch: null, commit: /^[0-9a-f]{40}$/.test(head) ? head : null };
    let commit: string | null = null;
    try {
      commit = readSmall(join(ws, '.git', ...ref.split('/')));
    } catch {
      const packed = readSmall(join(ws, '.git', 'packed-refs'));
      commit = new RegExp(`^([0-9a-f]{40}) ${ref.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm').exec(packed)?.[1] ?? null;
    }
    return { branch: ref.slice('refs/heads/'.length), commit: commit && /^[0-9a-f]{40}$/.test(commit) ? commit : null };
  } catch {
    return { branch: null, commit: null };
  }
}

function readSmall(path: string): string {
  const st = lstatSync(path);
  if (!st.isFile() || st.size > 1 << 20) throw new Error('not a small regular file');
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const b = Buffer.alloc(st.size);
    const n = readSync(fd, b);
    return b.subarray(0, n).toString('utf8').trim();
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes a snapshot into a workspace that berth has just checked out itself (no environment
 * has touched it). No path component may be a symlink: a link committed in the repository
 * must not redirect a write outside the workspace.
 */
export function applyToFreshWorkspace(ws: string, manifest: SnapshotManifest, blobs: Map<string, Buffer>): void {
  for (const e of manifest.entries) {
    const rel = safeRelative(e.path);
    const dest = join(ws, rel);
    ensureParents(ws, rel);
    if (e.kind === 'deleted') {
      try {
        unlinkSync(dest);
      } catch {
        /* already absent */
      }
      continue;
    }
    const data = blobs.get(e.blob!);
    if (!data) throw new BerthError('corrupt', `snapshot is missing the content of ${e.path}`);
    removeIfLink(dest);
    if (e.kind === 'symlink') {
      rmSync(dest, { force: true });
      symlinkSync(data.toString('utf8'), dest);
      continue;
    }
    const tmp = `${dest}.berth-${randomBytes(4).toString('hex')}`;
    const fd = openSync(
      tmp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      e.kind === 'exec' ? 0o755 : 0o644,
    );
    try {
      writeSync(fd, data);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, e.kind === 'exec' ? 0o755 : 0o644);
    renameSync(tmp, dest);
  }
}

function ensureParents(ws: string, rel: string): void {
  const parts = dirname(rel)
    .split(sep)
    .filter((p) => p && p !== '.');
  let cur = ws;
  for (const p of parts) {
    cur = join(cur, p);
    let st;
    try {
      st = lstatSync(cur);
    } catch {
      mkdirSync(cur);
      continue;
    }
    if (st.isSymbolicLink()) throw new BerthError('corrupt', `snapshot writes through a symlink at ${cur.slice(ws.length + 1)}`);
    if (!st.isDirectory()) {
      rmSync(cur, { force: true });
      mkdirSync(cur);
    }
  }
}

function removeIfLink(p: string): void {
  try {
    if (lstatSync(p).isSymbolicLink()) unlinkSync(p);
  } catch {
    /* absent */
  }
}

// Snapshots: a workspace's difference from the commit it started at (tracked changes,
// untracked files, deletions) plus named artifacts, stored content-addressed.
//
// The difference is computed by git, but never with the workspace's own repository
// configuration: the environment can write that, and hooks, fsmonitor or filter drivers
// configured there would run on the node. berth uses a private git directory of its own whose
// objects come from the node's mirror, with the workspace only as the work tree. Symlinks are
// stored as links, never followed: git reads the tree where no link in it can be followed
// (confined-tree.ts), and berth's own reads and writes under a workspace go one component at a
// time through no link (confined-fs.ts), however the environment rewrites it meanwhile.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import { canonicalJson } from '../core/canonical-json.js';
import { BerthError } from '../core/errors.js';
import type { BlobStore } from './blob-store.js';
import { ConfinedDir, ConfinedPathError, readFileBeneath } from './confined-fs.js';
import { lastLine, runConfinedToTree, type TreeRunFailure } from './confined-tree.js';
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

function gitEnv(gitDir: string): NodeJS.ProcessEnv {
  return { ...process.env, ...SAFE_GIT_ENV, HOME: gitDir, GIT_INDEX_FILE: join(gitDir, 'index') };
}

function plumbing(gitDir: string, workTree: string, args: string[], signal?: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      [...SAFE_GIT_CONFIG, `--git-dir=${gitDir}`, `--work-tree=${workTree}`, ...args],
      { env: gitEnv(gitDir), encoding: 'buffer', maxBuffer: 256 << 20, signal },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`git ${args[0]}: ${lastLine(stderr.toString()) || err.message}`));
        else resolve(stdout);
      },
    );
  });
}

/**
 * `git add` over the workspace, run where no link inside it can be followed. A directory the
 * environment swaps for a link while git reads it makes git fail (ELOOP), never read the host.
 */
async function addConfined(gitDir: string, workTree: string, args: string[], signal?: AbortSignal): Promise<void> {
  try {
    await runConfinedToTree(workTree, (view) => ['git', ...SAFE_GIT_CONFIG, `--git-dir=${gitDir}`, `--work-tree=${view}`, 'add', ...args], {
      env: gitEnv(gitDir),
      signal,
    });
  } catch (err) {
    if (err instanceof BerthError || !('stderr' in (err as object))) throw err;
    const e = err as TreeRunFailure;
    const missing = /pathspec '([\s\S]*?)' (did not match any files|is beyond a symbolic link)/.exec(e.stderr);
    if (missing) throw new BerthError('not_found', `artifact ${missing[1]} does not exist in the workspace`);
    if (/Too many levels of symbolic links/.test(e.stderr)) {
      throw new BerthError(
        'conflict',
        'the workspace changed while the snapshot read it (a directory was replaced by a symbolic link)',
        'snapshot again once the environment stops rewriting its files',
      );
    }
    throw new Error(`git add: ${e.message}`);
  }
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
    await addConfined(gitDir, opts.workspace, ['-A', '--', '.'], opts.signal);
    const artifacts = (opts.artifacts ?? []).map((a) => safeRelative(a));
    if (artifacts.length) await addConfined(gitDir, opts.workspace, ['-f', '-A', '--', ...artifacts], opts.signal);
    const tree = (await g(['write-tree'])).toString().trim();
    const raw = (await g(['diff-tree', '-r', '-z', '--no-renames', '--raw', opts.base, tree])).toString('utf8');
    const fields = raw.split('\0');
    const changes: Array<{ path: string; mode: string; sha: string; status: string }> = [];
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const m = /^:(\d+) (\d+) [0-9a-f]+ ([0-9a-f]+) (\w)/.exec(fields[i]!);
      if (!m) continue;
      changes.push({ mode: m[2]!, sha: m[3]!, status: m[4]!, path: fields[i + 1]! });
    }
    const artifactSet = new Set(artifacts);
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

/**
 * HEAD of the workspace, read as data (never by running git in it), through no link: a `.git`
 * (or `.git/refs`) the environment made a link to a host directory reads as no HEAD at all.
 */
function readHead(ws: string): SnapshotManifest['head'] {
  const none = { branch: null, commit: null };
  const read = (...parts: string[]): string =>
    readFileBeneath(ws, ['.git', ...parts], 1 << 20)
      .toString('utf8')
      .trim();
  try {
    const head = read('HEAD');
    const ref = /^ref: (refs\/heads\/[A-Za-z0-9._\/-]+)$/.exec(head)?.[1];
    if (ref?.split('/').some((c) => c === '..' || c === '.' || c === '')) return none;
    if (!ref) return { branch: null, commit: /^[0-9a-f]{40}$/.test(head) ? head : null };
    let commit: string | null = null;
    try {
      commit = read(...ref.split('/'));
    } catch {
      try {
        const packed = read('packed-refs');
        commit = new RegExp(`^([0-9a-f]{40}) ${ref.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm').exec(packed)?.[1] ?? null;
      } catch {
        commit = null; // the branch is known, its commit is not
      }
    }
    return { branch: ref.slice('refs/heads/'.length), commit: commit && /^[0-9a-f]{40}$/.test(commit) ? commit : null };
  } catch {
    return none;
  }
}

/**
 * Writes a snapshot into a workspace that berth has just checked out itself (no environment
 * has touched it yet). Every write goes through no link, committed in the repository or made
 * by the manifest itself, so none can land outside the workspace.
 */
export function applyToFreshWorkspace(ws: string, manifest: SnapshotManifest, blobs: Map<string, Buffer>): void {
  // Deletions first: a directory that became a file or a link is empty by the time it is replaced.
  const deletions = manifest.entries.filter((e) => e.kind === 'deleted');
  for (const e of [...deletions, ...manifest.entries.filter((e) => e.kind !== 'deleted')]) {
    const parts = safeRelative(e.path).split(sep);
    const name = parts.pop()!;
    try {
      if (e.kind === 'deleted') {
        deleteBeneath(ws, parts, name);
        continue;
      }
      const data = blobs.get(e.blob!);
      if (!data) throw new BerthError('corrupt', `snapshot is missing the content of ${e.path}`);
      const dir = ConfinedDir.open(ws, parts, { create: true, replaceFiles: true });
      try {
        if (e.kind === 'symlink') dir.symlink(name, data);
        else dir.writeFile(name, data, e.kind === 'exec' ? 0o755 : 0o644);
      } finally {
        dir.close();
      }
    } catch (err) {
      if (!(err instanceof ConfinedPathError)) throw err;
      if (err.reason === 'link') throw new BerthError('corrupt', `snapshot writes through a symlink at ${err.component}`);
      throw new BerthError('corrupt', `snapshot cannot be applied at ${e.path}: ${err.message}`);
    }
  }
}

/** Removes `parts/name`, then the directories that emptied (git keeps no empty directory). */
function deleteBeneath(ws: string, parts: string[], name: string): void {
  let dir: ConfinedDir;
  try {
    dir = ConfinedDir.open(ws, parts);
  } catch (err) {
    if (err instanceof ConfinedPathError && (err.reason === 'missing' || err.reason === 'not_directory')) return;
    throw err;
  }
  try {
    if (dir.kind(name) === 'directory') return;
    dir.remove(name);
  } finally {
    dir.close();
  }
  for (let i = parts.length; i > 0; i--) {
    const up = ConfinedDir.open(ws, parts.slice(0, i - 1));
    try {
      if (!up.removeEmptyDir(parts[i - 1]!)) return;
    } finally {
      up.close();
    }
  }
}

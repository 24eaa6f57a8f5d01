// A snapshot's tree: the whole workspace as it was when the snapshot was taken, ignored files
// (node_modules, build output), the git index and branches included. Forks start from it.
//
// On copy-on-write storage a tree is a read-only btrfs subvolume snapshot and a fork is a
// writable snapshot of it: constant time at any size. Elsewhere a tree is a whole copy, made
// where no link in the workspace can be followed (the environment may rewrite it meanwhile),
// with files that did not change since the environment's previous tree hard-linked to it, so
// ten snapshots of one node_modules hold it about once. A fork copies the tree back out.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { BerthError } from '../core/errors.js';
import { createSubvolume, deleteSubvolume, isSubvolumeSync, snapshotSubvolume } from './btrfs.js';
import { runConfinedToTree, type TreeRunFailure } from './confined-tree.js';

let rsyncKnown: boolean | undefined;
function hasRsync(): Promise<boolean> {
  if (rsyncKnown !== undefined) return Promise.resolve(rsyncKnown);
  return new Promise((resolve) =>
    execFile('rsync', ['--version'], (err) => {
      rsyncKnown = !err;
      resolve(rsyncKnown);
    }),
  );
}

function run(argv: string[], signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile(argv[0]!, argv.slice(1), { maxBuffer: 16 << 20, signal }, (err, _out, stderr) =>
      err ? reject(Object.assign(new Error(String(stderr).trim() || err.message), { stderr: String(stderr) })) : resolve(),
    ),
  );
}

function noSpace(text: string): boolean {
  return /No space left on device|Disk quota exceeded|ENOSPC/.test(text);
}

export type TreeKind = 'subvolume' | 'copy';

export function treeKind(path: string): TreeKind {
  return isSubvolumeSync(path) ? 'subvolume' : 'copy';
}

/**
 * Freezes the workspace `ws` into `dest` (which must not exist). `previous`, a tree of the same
 * environment, lends its unchanged files on the copy path.
 */
export async function freezeTree(ws: string, dest: string, opts: { previous?: string; signal?: AbortSignal } = {}): Promise<TreeKind> {
  mkdirSync(dirname(dest), { recursive: true, mode: 0o700 });
  if (isSubvolumeSync(ws)) {
    await snapshotSubvolume(ws, dest, true);
    return 'subvolume';
  }
  const prev = opts.previous && existsSync(opts.previous) && !isSubvolumeSync(opts.previous) ? opts.previous : undefined;
  const rsync = await hasRsync();
  // The copy reads the workspace through its link-proof view (see confined-tree.ts).
  const argv = (view: string): string[] =>
    rsync
      ? // Files unchanged since the previous tree are linked to it, judged by size and mtime to the
        // nanosecond (--modify-window=-1): a same-size rewrite within one second is still copied.
        [
          'rsync',
          '-aH',
          '--no-devices',
          '--no-specials',
          '--modify-window=-1',
          ...(prev ? [`--link-dest=${prev}`] : []),
          '--',
          `${view}/`,
          `${dest}/`,
        ]
      : ['cp', '-a', '--reflink=auto', '--', view, dest];
  try {
    await runConfinedToTree(ws, argv, { env: process.env, signal: opts.signal });
  } catch (err) {
    rmSync(dest, { recursive: true, force: true });
    if (err instanceof BerthError || !('stderr' in (err as object))) throw err;
    const text = (err as TreeRunFailure).stderr;
    if (noSpace(text))
      throw new BerthError('no_space', 'the node ran out of disk space while keeping the workspace', 'free space, or run `berth gc`');
    if (/Too many levels of symbolic links/.test(text)) {
      throw new BerthError(
        'conflict',
        'the workspace changed while the snapshot read it (a directory was replaced by a symbolic link)',
        'snapshot again once the environment stops rewriting its files',
      );
    }
    throw new Error(`could not keep the workspace's tree: ${(err as Error).message}`);
  }
  return 'copy';
}

/** Makes the workspace `ws` (which must not exist) from a tree: a writable snapshot, or a copy. */
export async function thawTree(tree: string, ws: string, opts: { cow: boolean; signal?: AbortSignal }): Promise<void> {
  if (isSubvolumeSync(tree)) return snapshotSubvolume(tree, ws, false);
  if (opts.cow) await createSubvolume(ws);
  else mkdirSync(ws);
  try {
    // The tree is berth's own and nothing writes it: links in it are copied as links.
    await run(['cp', '-a', '--reflink=auto', '--', `${tree}/.`, `${ws}/`], opts.signal);
  } catch (err) {
    if (noSpace((err as Error).message))
      throw new BerthError('no_space', 'the node ran out of disk space while making the fork', 'free space, or run `berth gc`');
    throw err;
  }
}

export async function removeTree(path: string): Promise<void> {
  if (!existsSync(path)) return;
  if (isSubvolumeSync(path)) await deleteSubvolume(path);
  else rmSync(path, { recursive: true, force: true });
}

/** Moves a whole-copy tree to another file system: copied beside its new place, then renamed. */
export async function migrateTree(from: string, to: string): Promise<void> {
  if (existsSync(to)) return rmSync(from, { recursive: true, force: true });
  mkdirSync(dirname(to), { recursive: true, mode: 0o700 });
  const tmp = `${to}.migrating`;
  rmSync(tmp, { recursive: true, force: true });
  await run(['cp', '-a', '--reflink=auto', '--', from, tmp]);
  renameSync(tmp, to);
  rmSync(from, { recursive: true, force: true });
}

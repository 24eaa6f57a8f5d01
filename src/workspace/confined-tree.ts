// Running a program that walks a tree the environment can rewrite while it runs (git reading a
// workspace during a snapshot). git never follows a link it has seen, but between its lstat of
// `dir` and its open of `dir/file` the environment can make `dir` a link to the host's /etc.
// So the program reads the tree through a view of it: the tree bind-mounted, with
// `nosymfollow`, on a directory of the node's own. Through the view no path resolution through
// any link in the tree succeeds (ELOOP), while readlink still works, so links are recorded as
// links.
//
// The view is one mount in the node's own mount namespace, not a private namespace per run:
// a new namespace copies every mount on the machine, and while it lives it pins the engines'
// mounts (a container's shm), so a container removed meanwhile fails with EBUSY.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError } from '../core/errors.js';

const VIEW_PREFIX = 'berth-view-';

export interface TreeRunFailure extends Error {
  stderr: string;
  exitCode: number | null;
}

function exec(argv: string[], opts: { env?: NodeJS.ProcessEnv; signal?: AbortSignal; maxBuffer?: number } = {}) {
  return new Promise<{ err: Error | null; stdout: Buffer; stderr: string }>((resolve) =>
    execFile(
      argv[0]!,
      argv.slice(1),
      { env: opts.env ?? process.env, encoding: 'buffer', maxBuffer: opts.maxBuffer ?? 256 << 20, signal: opts.signal },
      (err, stdout, stderr) => resolve({ err, stdout, stderr: stderr.toString('utf8') }),
    ),
  );
}

/**
 * Runs the program `argv(view)` makes, where `view` is `tree` seen through a mount on which no
 * link can be followed. `tree` is the node's own absolute path (the environment cannot replace
 * it: it is the bind mount's source). The view is unmounted when the program ends, however.
 */
export async function runConfinedToTree(
  tree: string,
  argv: (view: string) => string[],
  opts: { env: NodeJS.ProcessEnv; signal?: AbortSignal; maxBuffer?: number },
): Promise<Buffer> {
  if (!tree.startsWith('/')) throw new Error('a confined tree must be an absolute path');
  const view = mkdtempSync(join(tmpdir(), `${VIEW_PREFIX}${process.pid}-`));
  try {
    // One mount(8) call: it binds, then sets nosymfollow on the new mount.
    const bound = await exec(['mount', '--bind', '-o', 'nosymfollow', '--', tree, view]);
    if (bound.err) {
      throw new BerthError(
        'internal',
        `could not confine the snapshot to the workspace: ${lastLine(bound.stderr) || bound.err.message}`,
        'the node must run as root on Linux 5.10 or later (mount option nosymfollow), with util-linux mount',
      );
    }
    try {
      const r = await exec(argv(view), opts);
      if (!r.err) return r.stdout;
      const raw = (r.err as { code?: unknown }).code;
      const failure: TreeRunFailure = Object.assign(new Error(lastLine(r.stderr) || r.err.message), {
        stderr: r.stderr,
        exitCode: typeof raw === 'number' ? raw : null,
      });
      throw failure;
    } finally {
      // Detached at once even if something still has it open (a killed git's last reads).
      await exec(['umount', '-l', '--', view]);
    }
  } finally {
    try {
      rmdirSync(view);
    } catch {
      /* still a mount point if umount failed: the sweep at the next start takes it */
    }
  }
}

/**
 * Views left by a node that died mid-run (their process is gone): unmounted and removed. Run
 * at the daemon's start; views of live processes (another node on this machine) are kept.
 */
export function sweepViews(): number {
  const dir = tmpdir();
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.startsWith(VIEW_PREFIX));
  } catch {
    return 0;
  }
  let n = 0;
  for (const name of names) {
    const pid = Number(/^berth-view-(\d+)-/.exec(name)?.[1]);
    if (!pid || alive(pid)) continue;
    const path = join(dir, name);
    // Unmounted if it still is; a view that is only a directory makes umount fail, harmlessly.
    spawnSync('umount', ['-l', '--', path], { stdio: 'ignore', timeout: 10_000 });
    try {
      rmdirSync(path);
      n++;
    } catch {
      /* not empty or still mounted: left for a look by hand */
    }
  }
  return n;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function lastLine(text: string): string {
  return text.trim().split('\n').pop() ?? '';
}

// Copy-on-write workspaces: on btrfs, a workspace is a subvolume, a snapshot of it is
// another subvolume made in constant time, and a fork is a writable snapshot of that. The
// node sets up a btrfs file system on a loop file when asked (BERTH_STORAGE=btrfs).
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, statfsSync, statSync, openSync, closeSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError } from '../core/errors.js';

const BTRFS_MAGIC = 0x9123683e;

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args[0]}: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
  });
}

export function isBtrfs(path: string): boolean {
  try {
    return statfsSync(path).type === BTRFS_MAGIC;
  } catch {
    return false;
  }
}

export async function createSubvolume(path: string): Promise<void> {
  await run('btrfs', ['subvolume', 'create', path]);
}

/** Constant time, whatever the size of the tree. */
export async function snapshotSubvolume(src: string, dest: string, readOnly: boolean): Promise<void> {
  await run('btrfs', ['subvolume', 'snapshot', ...(readOnly ? ['-r'] : []), src, dest]);
}

export async function deleteSubvolume(path: string): Promise<void> {
  await run('btrfs', ['subvolume', 'delete', path]);
}

export async function isSubvolume(path: string): Promise<boolean> {
  if (!existsSync(path)) return false;
  try {
    await run('btrfs', ['subvolume', 'show', path]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes `mountpoint` a btrfs file system on a sparse loop file next to it, unless it is one
 * already. Needs root and btrfs-progs.
 */
export async function ensureBtrfsStorage(home: string, sizeGb: number, log: (l: string) => void): Promise<string> {
  const mountpoint = join(home, 'fs');
  mkdirSync(mountpoint, { recursive: true });
  if (isBtrfs(mountpoint)) return mountpoint;
  const image = join(home, 'storage.img');
  if (!existsSync(image)) {
    const fd = openSync(image, 'w', 0o600);
    ftruncateSync(fd, sizeGb * 1024 ** 3);
    closeSync(fd);
    try {
      await run('mkfs.btrfs', ['-q', '-f', image]);
    } catch (err) {
      throw new BerthError(
        'engine_unavailable',
        `could not make a btrfs file system: ${(err as Error).message}`,
        'install btrfs-progs (scripts/setup.sh does), or unset BERTH_STORAGE',
      );
    }
    log(`berth: made a ${sizeGb} GiB btrfs file system in ${image}`);
  }
  try {
    await run('mount', ['-o', 'loop', image, mountpoint]);
  } catch (err) {
    throw new BerthError(
      'engine_unavailable',
      `could not mount ${image}: ${(err as Error).message}`,
      'run the node as root, or unset BERTH_STORAGE',
    );
  }
  log(`berth: copy-on-write storage (btrfs) mounted at ${mountpoint}`);
  return mountpoint;
}

/** The root of a btrfs subvolume always has inode 256: a check that runs no program. */
export function isSubvolumeSync(path: string): boolean {
  try {
    return statSync(path).ino === 256 && isBtrfs(path);
  } catch {
    return false;
  }
}

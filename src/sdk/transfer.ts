// Moving an environment's work between nodes, through their clients only: a snapshot's blobs
// (only those missing on the other side), and package-manager caches as tar streams between
// two environments' commands, or staged in a file here while other work goes on.
import { createReadStream, createWriteStream, renameSync, rmSync, statSync } from 'node:fs';
import type { NodeClient } from '../client/client.js';
import type { SnapshotInfo } from '../core/api.js';
import { BerthError } from '../core/errors.js';
import { validateManifest } from '../core/manifest.js';

export type ProgressFn = (message: string, fraction?: number) => void;

/** Copies the blobs a snapshot needs from one node to another, only those missing there. */
export async function moveSnapshot(
  from: NodeClient,
  to: NodeClient,
  id: string,
  meta: { repo: string; toolchain: string; cacheKeys: Record<string, string>; env: string; reason: string },
  show: ProgressFn,
): Promise<SnapshotInfo & { transferred: { blobs: number; bytes: number }; head: { branch: string | null; commit: string | null } }> {
  const manifestBytes = await from.snapshotManifest(id);
  // The same check the receiving node makes, before anything moves: a manifest that names a
  // path outside a workspace (or an invalid commit to fetch) stops here.
  let parsed: unknown;
  try {
    parsed = JSON.parse(manifestBytes.toString('utf8'));
  } catch {
    throw new BerthError('corrupt', `snapshot ${id.slice(0, 19)} is not a valid manifest`);
  }
  const manifest = validateManifest(parsed, id.slice(0, 19));
  const hashes = [id.slice('sha256:'.length), ...new Set(manifest.entries.map((e) => e.blob).filter((b): b is string => !!b))];
  const missing = await to.missingBlobs(hashes);
  // A few blobs in flight at once: on a link with latency, one at a time is a round trip each.
  let moved = 0;
  let done = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < missing.length) {
      const h = missing[next++]!;
      const data = h === id.slice(7) ? manifestBytes : await from.getBlob(h);
      await to.putBlob(h, data);
      moved += data.length;
      done++;
      show(`snapshot ${done}/${missing.length} blobs, ${(moved / 1e6).toFixed(2)} MB`, done / missing.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(6, missing.length) }, worker));
  const info = await to.importSnapshot({
    id,
    repo: meta.repo,
    toolchain: meta.toolchain,
    cacheKeys: meta.cacheKeys,
    env: meta.env,
    reason: meta.reason,
  });
  return { ...info, transferred: { blobs: missing.length, bytes: moved }, head: manifest.head };
}

/** A cache directory of a remote environment, into a tar file here, read no faster than it is written. */
export async function cacheToFile(from: NodeClient, fromEnv: string, dir: string, path: string, signal: AbortSignal): Promise<void> {
  const file = createWriteStream(path + '.partial');
  const fileDone = new Promise<void>((resolve, reject) => {
    file.on('close', resolve);
    file.on('error', reject);
  });
  fileDone.catch(() => {});
  let paused = false;
  const holder: { reader?: ReturnType<NodeClient['execStream']> } = {};
  holder.reader = from.execStream(
    fromEnv,
    { argv: ['tar', '-C', dir, '-cf', '-', '.'] },
    {
      stdout: (c) => {
        if (file.write(c) || paused) return;
        paused = true;
        holder.reader?.pauseOutput();
        file.once('drain', () => {
          paused = false;
          holder.reader?.resumeOutput();
        });
      },
      stderr: () => {},
    },
  );
  // Stopped (the tar on the far side killed) when enter ends first.
  const stop = (): void => holder.reader?.kill('SIGKILL');
  signal.addEventListener('abort', stop, { once: true });
  try {
    const out = await holder.reader.wait();
    file.end();
    await fileDone;
    if (out.exitCode !== 0) throw new BerthError('internal', `reading the cache ${dir} failed (tar exited ${out.exitCode})`);
    renameSync(path + '.partial', path);
  } catch (err) {
    file.destroy();
    rmSync(path + '.partial', { force: true });
    throw err;
  } finally {
    signal.removeEventListener('abort', stop);
  }
}

/** A tar file into a directory of a local environment, unpacked by the engine (no exec, no extra hop). */
export async function fileToCache(path: string, to: NodeClient, toEnv: string, dir: string): Promise<void> {
  await to.putArchive(toEnv, dir, createReadStream(path, { highWaterMark: 1 << 20 }), statSync(path).size);
}

/** A cache directory from one environment into another, as a tar stream between two execs. */
export async function pipeCache(from: NodeClient, fromEnv: string, to: NodeClient, toEnv: string, dir: string): Promise<void> {
  const writer = to.execStream(
    toEnv,
    { argv: ['tar', '-C', dir, '-xf', '-'], interactiveStdin: true },
    { stdout: () => {}, stderr: () => {} },
  );
  const holder: { reader?: ReturnType<NodeClient['execStream']> } = {};
  holder.reader = from.execStream(
    fromEnv,
    { argv: ['tar', '-C', dir, '-cf', '-', '.'] },
    {
      // Read no faster than the other side writes.
      stdout: (c) => writer.feed(c, { pause: () => holder.reader?.pauseOutput(), resume: () => holder.reader?.resumeOutput() }),
      stderr: () => {},
    },
  );
  // Both ends are awaited together: a failure on either side is the error, never an orphan.
  const writing = writer.wait();
  writing.catch(() => {});
  const reading = holder.reader.wait().finally(() => writer.endStdin());
  const [out, into] = await Promise.all([reading, writing]);
  if (out.exitCode !== 0 || into.exitCode !== 0)
    throw new BerthError('internal', `copying the cache ${dir} failed (tar exited ${out.exitCode} and ${into.exitCode})`);
}

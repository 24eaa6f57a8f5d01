// Toolchains move between nodes by digest through an OCI registry (Debian's docker-registry
// serves the distribution API). berth speaks the API itself: layers go up only when the
// registry lacks them and come down only when the node lacks them, with progress either way.
// The image id (the config's digest) is the toolchain digest on every node.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, renameSync, rmSync } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BerthError } from '../core/errors.js';
import type { Engine } from '../engine/engine.js';
import { imageArchive, readTar, type ArchiveLayer } from '../toolchain/archive.js';
import { hasLayer, layerPath } from '../toolchain/layer-cache.js';

export const TOOLCHAIN_REPO = 'berth/toolchain';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

export interface TransferProgress {
  phase: string;
  bytes: number;
  total: number;
  /** Said instead of the byte count where there is none (the engine pulling by itself). */
  message?: string;
  /** 0..1 where known without byte counts. */
  fraction?: number;
}

/**
 * How a pull reaches the engine: `engine` has the engine pull from the registry itself (Podman:
 * its download, digest checks and layer writes overlap); `berth` streams the layers through berth
 * into the engine's image load (any engine; the layers are also kept in berth's layer cache);
 * `auto` is `engine` where the engine can, else `berth`.
 */
export type PullVia = 'auto' | 'engine' | 'berth';

export function tagFor(digest: string): string {
  return digest.replace(':', '-');
}

function base(registry: string): string {
  return (/^https?:\/\//.test(registry) ? registry : `http://${registry}`).replace(/\/+$/, '');
}

async function call(url: string, init: RequestInit & { duplex?: 'half' } = {}): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    throw new BerthError(
      'engine_unavailable',
      `the registry at ${new URL(url).host} is unreachable (${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message})`,
      'start it (scripts/start-registry.sh), or check BERTH_REGISTRY',
    );
  }
}

async function expect(res: Response, what: string, ok: number[]): Promise<void> {
  if (ok.includes(res.status)) return;
  const text = await res.text().catch(() => '');
  throw new BerthError('internal', `registry refused to ${what} (HTTP ${res.status}): ${text.slice(0, 200)}`);
}

async function hasBlob(registry: string, name: string, digest: string): Promise<boolean> {
  const res = await call(`${base(registry)}/v2/${name}/blobs/${digest}`, { method: 'HEAD' });
  return res.status === 200;
}

async function uploadBlob(registry: string, name: string, digest: string, size: number, body: Readable | Buffer): Promise<void> {
  const start = await call(`${base(registry)}/v2/${name}/blobs/uploads/`, { method: 'POST' });
  await expect(start, 'start an upload', [202]);
  const loc = start.headers.get('location');
  if (!loc) throw new BerthError('internal', 'registry gave no upload location');
  const url = new URL(loc, base(registry));
  url.searchParams.set('digest', digest);
  const put = await call(url.toString(), {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
    body: Buffer.isBuffer(body) ? body : (Readable.toWeb(body) as ReadableStream),
    duplex: 'half',
  });
  await expect(put, `store blob ${digest.slice(0, 19)}`, [201]);
}

/**
 * Pushes an image from the engine. Layers the registry has are not sent; when it lacks any,
 * the image is read once, each layer streamed to an upload session while it is hashed.
 */
export async function pushImage(
  engine: Engine,
  digest: string,
  registry: string,
  onProgress?: (p: TransferProgress) => void,
): Promise<{ uploaded: number; skipped: number }> {
  const img = await engine.inspectImage(digest);
  if (!img) throw new BerthError('image_missing', `toolchain ${digest} is not on this node`);
  const missing = new Set<string>();
  for (const l of img.layers) if (!(await hasBlob(registry, TOOLCHAIN_REPO, l))) missing.add(l);
  const sizes = new Map<string, number>();
  let config: Buffer | undefined;
  let uploaded = 0;
  const archive = await engine.exportImage(digest);
  for await (const entry of readTar(archive)) {
    if (entry.type !== '0' || entry.name === 'manifest.json' || entry.name === 'repositories') continue;
    if (entry.name.endsWith('.json') && !entry.name.includes('/')) {
      const chunks: Buffer[] = [];
      for await (const c of entry.body) chunks.push(c as Buffer);
      config = Buffer.concat(chunks);
      continue;
    }
    if (!entry.name.endsWith('.tar')) continue;
    if (missing.size === 0) continue; // read past it: nothing to send
    const start = await call(`${base(registry)}/v2/${TOOLCHAIN_REPO}/blobs/uploads/`, { method: 'POST' });
    await expect(start, 'start an upload', [202]);
    const loc = new URL(start.headers.get('location') ?? '', base(registry));
    const hash = createHash('sha256');
    const counted = new Readable({ read() {} });
    entry.body.on('data', (c: Buffer) => {
      hash.update(c);
      uploaded += c.length;
      counted.push(c);
      onProgress?.({ phase: 'upload', bytes: uploaded, total: img.size });
    });
    entry.body.on('end', () => counted.push(null));
    const patch = await call(loc.toString(), {
      method: 'PATCH',
      headers: { 'content-type': 'application/octet-stream' },
      body: Readable.toWeb(counted) as ReadableStream,
      duplex: 'half',
    });
    await expect(patch, 'take a layer', [202]);
    const d = `sha256:${hash.digest('hex')}`;
    sizes.set(d, entry.size);
    const next = new URL(patch.headers.get('location') ?? loc.toString(), base(registry));
    if (missing.has(d)) {
      next.searchParams.set('digest', d);
      await expect(
        await call(next.toString(), { method: 'PUT', headers: { 'content-length': '0' } }),
        `store layer ${d.slice(0, 19)}`,
        [201],
      );
    } else {
      await call(next.toString(), { method: 'DELETE' }).catch(() => undefined);
    }
  }
  if (!config) throw new BerthError('internal', `the engine's export of ${digest} had no config`);
  const cfgDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
  if (cfgDigest !== digest) throw new BerthError('corrupt', `the engine exported ${cfgDigest.slice(0, 19)} for ${digest.slice(0, 19)}`);
  if (!(await hasBlob(registry, TOOLCHAIN_REPO, digest))) await uploadBlob(registry, TOOLCHAIN_REPO, digest, config.length, config);
  const layers = [];
  for (const l of img.layers) {
    let size = sizes.get(l);
    if (size === undefined) {
      const head = await call(`${base(registry)}/v2/${TOOLCHAIN_REPO}/blobs/${l}`, { method: 'HEAD' });
      size = Number(head.headers.get('content-length') ?? 0);
    }
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l, size });
  }
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: config.length },
    layers,
  });
  const put = await call(`${base(registry)}/v2/${TOOLCHAIN_REPO}/manifests/${tagFor(digest)}`, {
    method: 'PUT',
    headers: { 'content-type': OCI_MANIFEST },
    body: manifest,
  });
  await expect(put, 'store the manifest', [201]);
  return { uploaded: missing.size ? uploaded : 0, skipped: img.layers.length - missing.size };
}

/** Pulls a toolchain by digest into the engine; layers the node keeps are not downloaded. */
export async function pullImage(
  engine: Engine,
  digest: string,
  registry: string,
  onProgress?: (p: TransferProgress) => void,
  via: PullVia = 'auto',
): Promise<{ downloaded: number; reused: number; via: 'engine' | 'berth' | null }> {
  if (await engine.inspectImage(digest)) return { downloaded: 0, reused: 0, via: null };
  const res = await call(`${base(registry)}/v2/${TOOLCHAIN_REPO}/manifests/${tagFor(digest)}`, { headers: { accept: OCI_MANIFEST } });
  if (res.status === 404)
    throw new BerthError(
      'image_missing',
      `the registry has no toolchain ${digest.slice(0, 19)}`,
      'push it from a node that has it: berth toolchain push',
    );
  await expect(res, 'send the manifest', [200]);
  const manifest = (await res.json()) as { config: { digest: string }; layers: Array<{ digest: string; size: number }> };
  if (manifest.config.digest !== digest)
    throw new BerthError('corrupt', `the registry's manifest is for ${manifest.config.digest.slice(0, 19)}, not ${digest.slice(0, 19)}`);
  const cfgRes = await call(`${base(registry)}/v2/${TOOLCHAIN_REPO}/blobs/${digest}`);
  await expect(cfgRes, 'send the config', [200]);
  const config = Buffer.from(await cfgRes.arrayBuffer());
  if (`sha256:${createHash('sha256').update(config).digest('hex')}` !== digest)
    throw new BerthError('corrupt', 'the config from the registry does not match its digest');
  const total = manifest.layers.filter((l) => !hasLayer(l.digest)).reduce((n, l) => n + l.size, 0);
  onProgress?.({ phase: 'manifest', bytes: 0, total });
  if (via !== 'berth') {
    // The manifest and config were checked above; the engine checks every layer's digest.
    const layerTotal = manifest.layers.reduce((n, l) => n + l.size, 0);
    let copying = 0;
    const pulled = await engine.pullFromRegistry(`${new URL(base(registry)).host}/${TOOLCHAIN_REPO}:${tagFor(digest)}`, {
      tlsVerify: base(registry).startsWith('https:'),
      onStatus: (line) => {
        if (/^Copying blob/.test(line)) copying++;
        onProgress?.({
          phase: 'pull',
          bytes: 0,
          total: layerTotal,
          message: `engine pulling ${(layerTotal / 1e6).toFixed(1)} MB: ${line.slice(0, 40)}`,
          fraction: Math.min(1, copying / Math.max(1, manifest.layers.length)) * 0.5,
        });
      },
    });
    if (pulled) {
      if (!(await engine.inspectImage(digest)))
        throw new BerthError('internal', `the engine pulled the toolchain but has no ${digest.slice(0, 19)}`);
      return { downloaded: layerTotal, reused: 0, via: 'engine' };
    }
    if (via === 'engine')
      throw new BerthError('usage', 'this engine cannot pull from a registry for berth', 'use --via berth (berth streams the layers in)');
  }
  let downloaded = 0;
  let reused = 0;
  // Missing layers stream from the registry straight into the engine's load, and into the layer
  // cache beside it; each is checked against its digest before the archive goes on, so a bad
  // layer ends the load with an error instead of an image.
  const opened: Array<Promise<void>> = [];
  const layers: ArchiveLayer[] = manifest.layers.map((l) => {
    if (hasLayer(l.digest)) {
      reused++;
      return { path: layerPath(l.digest), diffId: l.digest };
    }
    return {
      diffId: l.digest,
      size: l.size,
      open: async () => {
        const blob = await call(`${base(registry)}/v2/${TOOLCHAIN_REPO}/blobs/${l.digest}`);
        await expect(blob, `send layer ${l.digest.slice(0, 19)}`, [200]);
        const dest = layerPath(l.digest);
        const tmp = `${dest}.${randomBytes(4).toString('hex')}.partial`;
        const hash = createHash('sha256');
        const file = createWriteStream(tmp);
        const checked = new Transform({
          transform(c: Buffer, _enc, cb) {
            hash.update(c);
            downloaded += c.length;
            onProgress?.({ phase: 'download', bytes: downloaded, total });
            if (file.write(c)) cb(null, c);
            else file.once('drain', () => cb(null, c));
          },
          flush(cb) {
            file.end(() => {
              if (`sha256:${hash.digest('hex')}` !== l.digest) {
                rmSync(tmp, { force: true });
                cb(new BerthError('corrupt', `layer ${l.digest.slice(0, 19)} from the registry does not match its digest`));
                return;
              }
              renameSync(tmp, dest);
              cb();
            });
          },
        });
        const body = Readable.fromWeb(blob.body as import('node:stream/web').ReadableStream);
        const done = pipeline(body, checked).catch((err: unknown) => {
          file.destroy();
          rmSync(tmp, { force: true });
          throw err;
        });
        opened.push(done);
        done.catch(() => {});
        return checked;
      },
    };
  });
  // While layers stream in, the download's count is the progress; the load's only when all are here.
  const streaming = layers.some((l) => !('path' in l));
  const archive = imageArchive(config.toString('utf8'), digest, [`berth-toolchain:${digest.slice(7, 23)}`], layers, (sent, all) =>
    streaming ? undefined : onProgress?.({ phase: 'load', bytes: sent, total: all }),
  );
  let archiveError: unknown;
  archive.on('error', (err) => (archiveError = err));
  try {
    await engine.loadImage(archive);
  } catch (err) {
    // The cause (a short or corrupt download) says more than the engine's side of it.
    for (const o of opened) await o.catch((e: unknown) => (archiveError ??= e));
    throw archiveError ?? err;
  }
  await Promise.all(opened);
  if (archiveError) throw archiveError;
  if (!(await engine.inspectImage(digest)))
    throw new BerthError('internal', `the engine loaded the pulled toolchain but has no ${digest.slice(0, 19)}`);
  return { downloaded, reused, via: 'berth' };
}

export function registryFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.BERTH_REGISTRY || undefined;
}

// Image archives in the `docker save` layout, which Docker and Podman both load: written
// from layer files on disk, and read as a stream.
import { createReadStream, statSync } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import { TAR_END, tarHeader, tarPadding } from './tar.js';

const EPOCH = 1_700_000_000;

export type ArchiveLayer = {
  /** sha256:... of the uncompressed layer. */
  diffId: string;
} & (
  | { path: string }
  /** A layer still arriving (a registry download): its size is known, its bytes are opened when the archive reaches it. */
  | { size: number; open: () => Promise<Readable> }
);

const layerSize = (l: ArchiveLayer): number => ('path' in l ? statSync(l.path).size : l.size);

export function imageArchive(
  config: string,
  digest: string,
  tags: string[],
  layers: ArchiveLayer[],
  onLayerBytes?: (sent: number, total: number) => void,
): Readable {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  const hex = digest.replace(/^sha256:/, '');
  const sizes = layers.map(layerSize);
  const total = sizes.reduce((n, s) => n + s, 0);
  const names = layers.map((l) => `${l.diffId.replace(/^sha256:/, '')}/layer.tar`);
  const manifest = JSON.stringify([{ Config: `${hex}.json`, RepoTags: tags, Layers: names }]);
  const write = async (): Promise<void> => {
    const file = (name: string, body: string): void => {
      const b = Buffer.from(body);
      out.write(tarHeader(name, b.length, EPOCH));
      out.write(b);
      out.write(tarPadding(b.length));
    };
    file(`${hex}.json`, config);
    let sent = 0;
    let lastReport = 0;
    for (const [i, layer] of layers.entries()) {
      const size = sizes[i]!;
      const dir = names[i]!.slice(0, names[i]!.indexOf('/') + 1);
      out.write(tarHeader(dir, 0, EPOCH, 0o755, '5'));
      out.write(tarHeader(names[i]!, size, EPOCH));
      const body = 'path' in layer ? createReadStream(layer.path, { highWaterMark: 1 << 20 }) : await layer.open();
      let got = 0;
      for await (const chunk of body) {
        const c = chunk as Buffer;
        got += c.length;
        if (got > size) throw new Error(`layer ${layer.diffId.slice(0, 19)} is longer than its ${size} bytes`);
        sent += c.length;
        if (!out.write(c)) await new Promise((r) => out.once('drain', r));
        if (sent - lastReport > 8 << 20 || sent === total) {
          lastReport = sent;
          onLayerBytes?.(sent, total);
        }
      }
      if (got !== size) throw new Error(`layer ${layer.diffId.slice(0, 19)} ended after ${got} of its ${size} bytes`);
      out.write(tarPadding(size));
    }
    file('manifest.json', manifest);
    out.end(TAR_END);
  };
  write().catch((err: unknown) => out.destroy(err as Error));
  return out;
}

export interface TarEntry {
  name: string;
  size: number;
  type: string;
  /** The entry's content, to be read (or drained) before the next entry arrives. */
  body: Readable;
}

/** Reads a tar stream entry by entry without holding entries in memory. */
export async function* readTar(src: Readable): AsyncGenerator<TarEntry> {
  const it = src[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let buf: Buffer = Buffer.alloc(0);
  let done = false;
  const more = async (): Promise<boolean> => {
    if (done) return false;
    const r = await it.next();
    if (r.done) {
      done = true;
      return false;
    }
    buf = buf.length ? Buffer.concat([buf, r.value]) : r.value;
    return true;
  };
  let longName: string | undefined;
  for (;;) {
    while (buf.length < 512) if (!(await more())) return;
    const header = buf.subarray(0, 512);
    buf = buf.subarray(512);
    if (header.every((b) => b === 0)) return;
    const field = (off: number, len: number): string => header.toString('utf8', off, off + len).replace(/\0.*$/s, '');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const type = field(156, 1) || '0';
    const prefix = field(345, 155);
    let name = longName ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    longName = undefined;
    const padded = size + ((512 - (size % 512)) % 512);
    if (type === 'L') {
      while (buf.length < padded) if (!(await more())) return;
      longName = buf.toString('utf8', 0, size).replace(/\0.*$/s, '');
      buf = buf.subarray(padded);
      continue;
    }
    const body = new PassThrough({ highWaterMark: 1 << 20 });
    const entry: TarEntry = { name, size, type, body };
    // Feed the body while the consumer reads it.
    let remaining = size;
    const feed = (async (): Promise<void> => {
      while (remaining > 0) {
        if (buf.length === 0 && !(await more())) break;
        const take = buf.subarray(0, Math.min(remaining, buf.length));
        buf = buf.subarray(take.length);
        remaining -= take.length;
        if (!body.write(take)) await new Promise((r) => body.once('drain', r));
      }
      body.end();
      let pad = padded - size;
      while (pad > 0) {
        if (buf.length === 0 && !(await more())) break;
        const skip = Math.min(pad, buf.length);
        buf = buf.subarray(skip);
        pad -= skip;
      }
    })();
    yield entry;
    if (!body.readableFlowing && body.listenerCount('data') === 0) body.resume(); // drain what was not read
    await feed;
    name = '';
  }
}

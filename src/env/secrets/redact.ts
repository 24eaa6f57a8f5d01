// A secret's value never comes back to the environment: a host that reflects what it got (an
// echo endpoint, a debug page, TRACE) would otherwise hand the agent the value the node swapped
// in. Everything the secret's host answers on an intercepted connection, headers and body, has
// every value bound for that host masked with `*` of the same length, so framing
// (Content-Length, WebSocket frames) stays valid. A compressed body is decompressed first.
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';

const MASK = 0x2a; // '*'

/** Masks every occurrence of every needle in `buf`, in place. */
export function maskInPlace(buf: Buffer, needles: Buffer[]): void {
  for (const n of needles) {
    for (let at = buf.indexOf(n); at >= 0; at = buf.indexOf(n, at + n.length)) buf.fill(MASK, at, at + n.length);
  }
}

export function needlesOf(values: string[]): Buffer[] {
  return [...new Set(values)].filter((v) => v.length > 0).map((v) => Buffer.from(v, 'utf8'));
}

/** Masks header values. */
export function maskHeaders(raw: string[], needles: Buffer[]): string[] {
  return raw.map((v, i) => {
    if (i % 2 === 0) return v;
    const b = Buffer.from(v, 'latin1');
    maskInPlace(b, needles);
    return b.toString('latin1');
  });
}

/**
 * A stream that masks the needles even when one spans chunks: it holds back the last
 * (longest needle - 1) bytes until the next chunk or the end. Any occurrence that starts in
 * what is passed on ends inside the buffer it was found in, so none slips through.
 */
export class Redactor extends Transform {
  private carry = Buffer.alloc(0);
  private readonly keep: number;

  constructor(private readonly needles: Buffer[]) {
    super();
    this.keep = Math.max(0, ...needles.map((n) => n.length - 1));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const buf = Buffer.concat([this.carry, chunk]);
    maskInPlace(buf, this.needles);
    const cut = Math.max(0, buf.length - this.keep);
    this.carry = Buffer.from(buf.subarray(cut));
    cb(null, buf.subarray(0, cut));
  }

  override _flush(cb: TransformCallback): void {
    maskInPlace(this.carry, this.needles);
    cb(null, this.carry);
  }
}

/** A decoder for a Content-Encoding the node can read; null for identity; undefined when it cannot. */
export function decoderFor(encoding: string | undefined): Transform | null | undefined {
  const e = (encoding ?? '').trim().toLowerCase();
  if (e === '' || e === 'identity') return null;
  if (e === 'gzip' || e === 'x-gzip') return zlib.createGunzip();
  if (e === 'deflate') return zlib.createInflate();
  if (e === 'br') return zlib.createBrotliDecompress();
  return undefined;
}

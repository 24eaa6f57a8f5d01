// Reading requests and writing answers for the node API: bodies within their limits, and an
// answer for every request, even one whose body the route did not read.
import type http from 'node:http';
import type { Socket } from 'node:net';
import { Transform, type Readable } from 'node:stream';
import type { z } from 'zod';
import { asBerthError, BerthError } from '../core/errors.js';

export const MAX_BODY = 16 * 1024 * 1024;
export const MAX_BLOB = 512 * 1024 * 1024;
/** The largest tar unpacked into an environment in one request (a cache restored by enter). */
export const MAX_ARCHIVE = 8 * 1024 * 1024 * 1024;
/** What is read and dropped of a body the route left unread, before its answer is sent. */
const DRAIN_MAX = 64 * 1024 * 1024;
const DRAIN_MS = 5_000;
/** How long a connection answered before its body ended goes on reading (and dropping) it. */
const LINGER_MS = 2_000;

export type Reply = { status: number; body?: unknown };

export function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
  throw new BerthError('invalid_request', `invalid request: ${where}${issue?.message ?? 'malformed'}`);
}

export function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        // Answer 413 and drop the rest unread, so the client sees the status, not a reset.
        req.removeAllListeners('data');
        req.removeAllListeners('end');
        req.resume();
        reject(new BerthError('too_large', `request body is over ${MAX_BODY} bytes`, 'send less than 16 MiB'));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {});
      } catch {
        reject(new BerthError('invalid_request', 'request body is not valid JSON'));
      }
    });
    req.on('error', reject);
  });
}

/** The request body as a stream that fails with too_large past `max` bytes. */
export function capped(req: http.IncomingMessage, max: number): Readable {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > max) throw new BerthError('too_large', `upload of ${declared} bytes is over ${max} bytes`);
  let size = 0;
  const counter = new Transform({
    transform(c: Buffer, _enc, cb) {
      size += c.length;
      if (size > max) cb(new BerthError('too_large', `upload is over ${max} bytes`));
      else cb(null, c);
    },
  });
  req.on('error', () => counter.destroy(new BerthError('invalid_request', 'the upload was cut short')));
  // The engine upload that reads this stream hears its errors; a request refused before its
  // upload began has no reader, and an 'error' no one hears would end the daemon.
  counter.on('error', () => {});
  return req.pipe(counter);
}

export function readRaw(req: http.IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.resume();
        reject(new BerthError('too_large', `upload is over ${max} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * Answers a request. A route that answers before the request's body has all come (it did not
 * need it, refused it, or stopped reading at a limit) first reads and drops what is left, up to
 * a cap: a client still writing its body when the connection closes may get a reset instead of
 * the answer.
 */
export function reply(res: http.ServerResponse, r: Reply): void {
  const req = res.req as http.IncomingMessage | undefined;
  if (!req || req.complete) return send(res, r);
  void drain(req).then(() => send(res, r));
}

export function replyError(res: http.ServerResponse, err: unknown, log: (l: string) => void): void {
  const e = asBerthError(err);
  if (e.code === 'internal') log(`berth: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  if (res.headersSent) return void res.destroy();
  reply(res, { status: e.httpStatus, body: { error: e.toWire() } });
}

/** Reads and drops the rest of a request's body: until it ends, or past DRAIN_MAX bytes or DRAIN_MS. */
function drain(req: http.IncomingMessage): Promise<void> {
  if (Number(req.headers['content-length'] ?? NaN) > DRAIN_MAX) return Promise.resolve();
  return new Promise((resolve) => {
    let size = 0;
    const done = (): void => {
      clearTimeout(timer);
      req.off('data', onData).off('end', done).off('close', done).off('error', done);
      resolve();
    };
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > DRAIN_MAX) done();
    };
    const timer = setTimeout(done, DRAIN_MS);
    // A refused upload may still be piped into a stream no one reads: take the body back.
    req.unpipe();
    req.on('data', onData).on('end', done).on('close', done).on('error', done);
    req.resume();
  });
}

export function send(res: http.ServerResponse, r: Reply): void {
  if (res.writableEnded || res.destroyed) return;
  // Answered before the request's body was read (refused, or over its limit): the connection
  // closes after the answer, so a keep-alive client cannot send its next request into the
  // remains of this one's body.
  if (res.req && !res.req.complete) {
    res.setHeader('connection', 'close');
    lingerOnClose(res.socket);
  }
  if (Buffer.isBuffer(r.body)) {
    res.writeHead(r.status, { 'content-type': 'application/octet-stream', 'content-length': r.body.length });
    res.end(r.body);
    return;
  }
  const body = r.body === undefined ? '' : JSON.stringify(r.body);
  res.writeHead(r.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Node ends an answered `connection: close` exchange with socket.destroySoon(): the socket is
 * closed as soon as the answer is written, and bytes of the body still arriving then make the
 * kernel reset the connection, which can cost the client the answer it has not read yet. This
 * socket instead shuts its side and goes on reading (the parser drops the body) until the client
 * closes, or LINGER_MS.
 */
function lingerOnClose(socket: Socket | null): void {
  if (!socket) return;
  socket.destroySoon = () => {
    socket.end();
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    socket.once('end', () => socket.destroy());
  };
}

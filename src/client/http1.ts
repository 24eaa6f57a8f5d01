// A small HTTP/1.1 client for the node's JSON calls over a unix socket or plain TCP: one
// request, one whole answer, kept-alive connections. node:http costs more to load and to make
// its first request with than most berth commands take in all, and a command makes one or two
// calls. TLS, streamed answers (events, blobs) and WebSockets still go through node:http(s).
import net from 'node:net';

export interface Http1Target {
  socketPath?: string;
  host?: string;
  port?: number;
}

export interface Http1Answer {
  status: number;
  body: Buffer;
}

/** Why a request failed, for the caller to word: never reached the node, cut off after, or aborted. */
export class Http1Error extends Error {
  constructor(
    readonly stage: 'connect' | 'after-send' | 'abort',
    override readonly cause: Error,
  ) {
    super(cause.message);
  }
}

/** An idle connection older than this is not reused: the node closes idle ones after 5 s. */
const IDLE_REUSE_MS = 2000;
/** Headers larger than this are not an answer from a berth node. */
const MAX_HEAD = 64 * 1024;

interface Idle {
  socket: net.Socket;
  since: number;
  drop: () => void;
}

export class Http1Pool {
  private idle: Idle[] = [];
  private closed = false;

  constructor(private readonly target: Http1Target) {}

  request(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: Buffer | undefined,
    signal?: AbortSignal,
  ): Promise<Http1Answer> {
    if (signal?.aborted) return Promise.reject(new Http1Error('abort', abortError(signal)));
    const socket = this.take() ?? this.open();
    const host = this.target.socketPath ? 'localhost' : `${this.target.host}:${this.target.port}`;
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${host}\r\nconnection: keep-alive\r\n`;
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    if (body === undefined && method !== 'GET' && method !== 'HEAD') head += 'content-length: 0\r\n';
    head += '\r\n';
    return new Promise<Http1Answer>((resolve, reject) => {
      let connected = !socket.connecting;
      let done = false;
      const parser = new AnswerParser(method === 'HEAD');
      const finish = (err: Http1Error | undefined, answer?: Http1Answer, keep = false): void => {
        if (done) return;
        done = true;
        socket.off('data', onData);
        socket.off('error', onError);
        socket.off('close', onClose);
        socket.off('connect', onConnect);
        signal?.removeEventListener('abort', onAbort);
        if (keep && !this.closed) this.park(socket);
        else socket.destroy();
        if (err) reject(err);
        else resolve(answer!);
      };
      const onConnect = (): void => {
        connected = true;
      };
      const onData = (chunk: Buffer): void => {
        let answer: Http1Answer | undefined;
        try {
          answer = parser.push(chunk);
        } catch (err) {
          return finish(new Http1Error('after-send', err as Error));
        }
        if (answer) finish(undefined, answer, parser.reusable);
      };
      // An error (a node that answered and closed before taking the whole body: EPIPE) is
      // judged when the connection closes, which follows it: an answer read by then stands.
      let failure: Http1Error | undefined;
      const onError = (err: Error): void => {
        failure ??= new Http1Error(connected ? 'after-send' : 'connect', err);
      };
      const onClose = (): void => {
        const answer = parser.end();
        if (answer) return finish(undefined, answer);
        const hangUp = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
        finish(failure ?? new Http1Error(connected ? 'after-send' : 'connect', hangUp));
      };
      const onAbort = (): void => finish(new Http1Error('abort', abortError(signal!)));
      socket.on('connect', onConnect);
      socket.on('data', onData);
      socket.on('error', onError);
      socket.on('close', onClose);
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.ref();
      socket.write(body ? Buffer.concat([Buffer.from(head, 'latin1'), body]) : head);
    });
  }

  /** Ends every idle connection; requests on their way finish. */
  destroy(): void {
    this.closed = true;
    for (const i of this.idle.splice(0)) i.socket.destroy();
  }

  private open(): net.Socket {
    const s = this.target.socketPath ? net.connect(this.target.socketPath) : net.connect(this.target.port!, this.target.host);
    s.setNoDelay(true);
    return s;
  }

  private take(): net.Socket | undefined {
    const now = Date.now();
    for (let i = this.idle.pop(); i; i = this.idle.pop()) {
      i.socket.off('close', i.drop).off('error', i.drop).off('data', i.drop);
      if (now - i.since < IDLE_REUSE_MS && !i.socket.destroyed) return i.socket;
      i.socket.destroy();
    }
    return undefined;
  }

  private park(socket: net.Socket): void {
    const entry: Idle = {
      socket,
      since: Date.now(),
      drop: () => {
        this.idle = this.idle.filter((i) => i !== entry);
        socket.destroy();
      },
    };
    // Nothing is due on an idle connection: data, an error or its end retire it.
    socket.on('close', entry.drop).on('error', entry.drop).on('data', entry.drop);
    socket.unref();
    this.idle.push(entry);
  }
}

function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted'), { name: 'AbortError', code: 'ABORT_ERR', cause: signal.reason as unknown });
}

/** Reads one answer: the status line and headers, then a body framed by length, chunks or the end. */
class AnswerParser {
  private buf: Buffer = Buffer.alloc(0);
  private status = 0;
  private headers: Record<string, string> | undefined;
  private length: number | undefined;
  private chunked = false;
  reusable = false;

  constructor(private readonly noBody: boolean) {}

  push(chunk: Buffer): Http1Answer | undefined {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      if (!this.headers) {
        const end = this.buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (this.buf.length > MAX_HEAD) throw new Error('the answer has no end of headers');
          return undefined;
        }
        this.head(this.buf.subarray(0, end).toString('latin1'));
        this.buf = this.buf.subarray(end + 4);
        if (this.status >= 100 && this.status < 200) {
          this.headers = undefined; // an interim answer; the real one follows
          continue;
        }
      }
      return this.body();
    }
  }

  /** The connection closed: an answer whose body runs to the end is complete now. */
  end(): Http1Answer | undefined {
    if (!this.headers || this.length !== undefined || this.chunked) return undefined;
    return { status: this.status, body: this.buf };
  }

  private head(text: string): void {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) throw new Error('the answer is not HTTP/1.1');
    this.status = Number(m[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    this.headers = headers;
    const te = headers['transfer-encoding']?.toLowerCase();
    this.chunked = te !== undefined && te.includes('chunked');
    const cl = headers['content-length'];
    if (this.noBody || this.status === 204 || this.status === 304) this.length = 0;
    else if (!this.chunked && cl !== undefined) {
      if (!/^\d+$/.test(cl)) throw new Error('the answer has a bad content-length');
      this.length = Number(cl);
    }
    this.reusable = (headers.connection ?? '').toLowerCase() !== 'close' && (this.length !== undefined || this.chunked);
  }

  private body(): Http1Answer | undefined {
    if (this.length !== undefined) {
      if (this.buf.length < this.length) return undefined;
      if (this.buf.length > this.length) this.reusable = false; // bytes nobody asked for
      return { status: this.status, body: this.buf.subarray(0, this.length) };
    }
    if (!this.chunked) return undefined; // to the end of the connection
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const eol = this.buf.indexOf('\r\n', at);
      if (eol < 0) return undefined;
      const size = parseInt(this.buf.subarray(at, eol).toString('latin1').split(';')[0]!, 16);
      if (!Number.isFinite(size)) throw new Error('the answer has a bad chunk');
      if (size === 0) {
        // Trailers, if any, end with an empty line.
        const end = this.buf.indexOf('\r\n\r\n', eol);
        const bare = this.buf.length >= eol + 4 && this.buf.subarray(eol, eol + 4).toString('latin1') === '\r\n\r\n';
        if (!bare && end < 0) return undefined;
        return { status: this.status, body: Buffer.concat(parts) };
      }
      if (this.buf.length < eol + 2 + size + 2) return undefined;
      parts.push(this.buf.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
  }
}

// A small HTTP client for the Docker Engine API over a unix socket or TCP.
import http from 'node:http';
import type { Readable } from 'node:stream';
import { BerthError } from '../core/errors.js';

export interface HttpResponse {
  status: number;
  body: Buffer;
}

export class EngineHttp {
  private readonly agent: http.Agent;
  private readonly base: { socketPath?: string; host?: string; port?: number };

  constructor(readonly endpoint: string) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    if (endpoint.startsWith('unix://')) this.base = { socketPath: endpoint.slice('unix://'.length) };
    else if (endpoint.startsWith('tcp://') || endpoint.startsWith('http://')) {
      const u = new URL(endpoint.replace(/^tcp:/, 'http:'));
      this.base = { host: u.hostname, port: Number(u.port || 2375) };
    } else
      throw new BerthError('engine_unavailable', `unsupported engine endpoint ${endpoint}`, 'use unix:///path/to.sock or tcp://host:port');
  }

  request(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<HttpResponse> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return this.send(
      method,
      path,
      payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {},
      payload,
      signal,
    );
  }

  /** A response to read as a stream (large downloads). */
  stream(method: string, path: string, signal?: AbortSignal): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = http.request({ ...this.base, agent: this.agent, method, path, signal }, resolve);
      req.on('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.name === 'AbortError'
            ? err
            : new BerthError('engine_unavailable', `container engine at ${this.endpoint} is unreachable (${err.code ?? err.message})`),
        ),
      );
      req.end();
    });
  }

  /** Sends a stream, and answers with the response to read as a stream (a build's output). */
  uploadStreaming(path: string, stream: Readable, contentType: string, signal?: AbortSignal): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const headers = { 'content-type': contentType, 'transfer-encoding': 'chunked' };
      const req = http.request({ ...this.base, agent: this.agent, method: 'POST', path, headers, signal }, resolve);
      req.on('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.name === 'AbortError'
            ? err
            : new BerthError('engine_unavailable', `container engine at ${this.endpoint} is unreachable (${err.code ?? err.message})`),
        ),
      );
      stream.on('error', (err) => {
        reject(err);
        req.destroy();
      });
      stream.pipe(req);
    });
  }

  upload(path: string, stream: Readable, contentType: string, signal?: AbortSignal, method = 'POST'): Promise<HttpResponse> {
    return this.send(method, path, { 'content-type': contentType, 'transfer-encoding': 'chunked' }, stream, signal);
  }

  private send(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: Buffer | Readable | undefined,
    signal?: AbortSignal,
  ): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
      const req = http.request({ ...this.base, agent: this.agent, method, path, headers, signal }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.name === 'AbortError') return reject(err);
        reject(
          new BerthError(
            'engine_unavailable',
            `container engine at ${this.endpoint} is unreachable (${err.code ?? err.message})`,
            'start it (scripts/setup.sh does), or point BERTH_ENGINE at a running engine',
            { cause: err },
          ),
        );
      });
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        // A failing source (an upload cut short, or over its limit) is the error, not the engine.
        body.on('error', (err) => {
          reject(err);
          req.destroy();
        });
        body.pipe(req);
      }
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

export function engineMessage(res: HttpResponse): string {
  try {
    const j = JSON.parse(res.body.toString('utf8')) as { message?: string; cause?: string };
    return j.message ?? j.cause ?? `HTTP ${res.status}`;
  } catch {
    return res.body.toString('utf8').trim().slice(0, 300) || `HTTP ${res.status}`;
  }
}

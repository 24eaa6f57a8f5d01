// The wire side of secrets. The egress proxy hands over a connection an environment made to a
// secret's host (after its policy check, with the addresses the node resolved itself); this
// terminates TLS with a certificate from the node's CA, reads each HTTP/1.1 request on the
// connection, swaps the environment's placeholders for the values in the request headers
// (and only there), and sends the request on to the real host over TLS that is verified
// against the node's own trust store. Plain HTTP is handled the same way, without TLS. What the
// host answers has every value bound for it masked (redact.ts), and TRACE is refused: a host
// that reflects the request never hands the value back.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { substituteHeaders } from '../../core/secrets.js';
import type { InterceptHandler, Upstream } from '../egress/intercept.js';
import type { NodeCa } from './node-ca.js';
import { decoderFor, maskHeaders, needlesOf, Redactor } from './redact.js';
import type { SecretVault } from './vault.js';

interface Conn {
  envId: string;
  upstream: Upstream;
  secure: boolean;
}

const CONNECT_TIMEOUT_MS = 30_000;

export class SecretInterceptor {
  private readonly server = http.createServer({ keepAlive: true, requestTimeout: 0, headersTimeout: 60_000 });
  private readonly conns = new WeakMap<net.Socket, Conn>();
  private readonly agent = new http.Agent({ keepAlive: true, maxFreeSockets: 16 });
  private readonly tlsAgent: https.Agent;
  private readonly open = new Set<net.Socket>();

  /** @param ca the node's trust bundle (PEM) for the real hosts; undefined: Node's own roots */
  constructor(
    private readonly vault: SecretVault,
    private readonly nodeCa: NodeCa,
    ca: string | undefined,
    private readonly log: (line: string) => void,
  ) {
    this.tlsAgent = new https.Agent({ keepAlive: true, maxFreeSockets: 16, ...(ca ? { ca } : {}) });
    this.server.on('request', (req, res) => this.forward(req, res));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => this.upgrade(req, socket, head));
    this.server.on('clientError', (_err, socket: net.Socket) => socket.destroy());
  }

  /** The egress proxy's hook: a handler when one of the environment's secrets is for host:port. */
  intercept(envId: string, host: string, port: number): InterceptHandler | null {
    if (!this.vault.appliesTo(envId, host, port)) return null;
    return (client, head, upstream) => this.take(envId, client, head, upstream);
  }

  close(): void {
    for (const s of this.open) s.destroy();
    this.agent.destroy();
    this.tlsAgent.destroy();
  }

  private take(envId: string, client: net.Socket, head: Buffer, upstream: Upstream): void {
    client.setNoDelay(true);
    if (head.length === 0) {
      // After a CONNECT the client speaks first: TLS or plain is known from its first bytes.
      client.once('data', (first: Buffer) => {
        client.pause();
        this.take(envId, client, first, upstream);
      });
      client.once('error', () => client.destroy());
      client.resume();
      return;
    }
    client.pause();
    if (head.length) client.unshift(head);
    this.open.add(client);
    client.once('close', () => this.open.delete(client));
    client.on('error', () => client.destroy());
    if (head[0] !== 0x16) {
      // Plain HTTP to the TLS port would carry the value in clear: refused, not substituted.
      if (upstream.port === 443) {
        refuse(client, 400, `berth: secrets: plain HTTP to ${upstream.host}:443 refused: the secret goes over TLS only\n`);
        return;
      }
      this.serve(client, { envId, upstream, secure: false });
      return;
    }
    this.nodeCa.contextFor(upstream.host).then(
      (secureContext) => {
        if (client.destroyed) return;
        const t = new tls.TLSSocket(client, { isServer: true, secureContext, ALPNProtocols: ['http/1.1'] });
        t.on('error', () => client.destroy());
        this.serve(t, { envId, upstream, secure: true });
      },
      (err: unknown) => {
        this.log(`berth: secrets: no certificate for ${upstream.host}: ${err instanceof Error ? err.message : String(err)}`);
        client.destroy();
      },
    );
  }

  /** A TLS socket reads its (paused) transport itself; a plain one is resumed for the parser. */
  private serve(socket: net.Socket, conn: Conn): void {
    this.conns.set(socket, conn);
    this.server.emit('connection', socket);
    if (!conn.secure) socket.resume();
  }

  private outbound(req: http.IncomingMessage, conn: Conn, upgrade = false): { options: https.RequestOptions; needles: Buffer[] } {
    const before = req.rawHeaders;
    const bindings = this.vault.bindings(conn.envId, conn.upstream.host, conn.upstream.port);
    let raw = [...before];
    substituteHeaders(raw, bindings);
    // What to mask in the answer: each value, and each header as it was sent (a Basic token).
    const needles = bindings.map((b) => b.value);
    for (let i = 1; i < raw.length; i += 2) {
      if (raw[i] === before[i]) continue;
      needles.push(raw[i]!);
      const basic = /^basic[ \t]+(\S+)$/i.exec(raw[i]!);
      if (basic) needles.push(basic[1]!);
    }
    // The answer is read to be masked: plain bodies (a body the node cannot decode is refused),
    // and WebSocket frames without per-message compression.
    const drop = upgrade ? 'sec-websocket-extensions' : 'accept-encoding';
    raw = raw.filter((_v, i, a) => (i % 2 === 0 ? a[i]!.toLowerCase() !== drop : a[i - 1]!.toLowerCase() !== drop));
    if (!upgrade) raw.push('Accept-Encoding', 'identity');
    const { addresses } = conn.upstream;
    const options: https.RequestOptions = {
      host: conn.upstream.host,
      port: conn.upstream.port,
      method: req.method,
      path: req.url,
      headers: raw,
      setHost: false,
      agent: conn.secure ? this.tlsAgent : this.agent,
      servername: net.isIP(conn.upstream.host) ? undefined : conn.upstream.host,
      timeout: CONNECT_TIMEOUT_MS,
      // Never the environment's idea of the address: the ones the node resolved.
      lookup: ((_name: string, opts: { all?: boolean }, cb: (...a: unknown[]) => void) => {
        if (addresses.length === 0) return cb(Object.assign(new Error('no address'), { code: 'ENOTFOUND' }));
        if (opts.all)
          return cb(
            null,
            addresses.map((address) => ({ address, family: net.isIP(address) })),
          );
        return cb(null, addresses[0], net.isIP(addresses[0]!));
      }) as unknown as net.LookupFunction,
    };
    return { options, needles: needlesOf(needles) };
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    const conn = this.conns.get(req.socket);
    if (!conn) {
      res.writeHead(500).end();
      return;
    }
    // The value is for this host alone: a request on the connection naming another (a fronted
    // or virtual-hosted name) is refused, never sent on with the value in it.
    if (!sameHost(req, conn)) {
      const body = `berth: secrets: this connection is for ${conn.upstream.host}; Host names another\n`;
      res.writeHead(421, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
    if (req.method === 'TRACE' || req.method === 'TRACK') {
      const body = `berth: secrets: ${req.method} to ${conn.upstream.host} refused: it sends the request back\n`;
      res.writeHead(405, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
    const { options, needles } = this.outbound(req, conn);
    const up = (conn.secure ? https : http).request(options, (upRes) => {
      const decoder = decoderFor(upRes.headers['content-encoding']);
      if (decoder === undefined) {
        upRes.resume();
        const body = `berth: secrets: ${conn.upstream.host} answered with content-encoding ${upRes.headers['content-encoding']}, which the node cannot check for the secret's value\n`;
        res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body);
        return;
      }
      let headers = maskHeaders(upRes.rawHeaders, needles);
      if (decoder) {
        // Decoded to be read: sent on plain, with a length the server cannot know.
        headers = headers.filter((_v, i, a) => !/^(content-encoding|content-length)$/i.test(i % 2 === 0 ? a[i]! : a[i - 1]!));
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, headers as unknown as http.OutgoingHttpHeaders);
      const redactor = new Redactor(needles);
      redactor.on('error', () => res.destroy());
      if (decoder) {
        decoder.on('error', () => res.destroy());
        upRes.pipe(decoder).pipe(redactor).pipe(res);
      } else upRes.pipe(redactor).pipe(res);
      upRes.on('error', () => res.destroy());
    });
    up.on('timeout', () => up.destroy(new Error('the host did not answer in time')));
    up.on('error', (err) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const body = `berth: secrets: ${conn.upstream.host}:${conn.upstream.port} unreachable: ${err.message}\n`;
      res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body);
    });
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  }

  /** WebSocket and other upgrades: the request's headers substituted, then bytes both ways. */
  private upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    const conn = this.conns.get(socket);
    if (!conn || !sameHost(req, conn)) {
      socket.destroy();
      return;
    }
    const { options, needles } = this.outbound(req, conn, true);
    const up = (conn.secure ? https : http).request({ ...options, agent: false });
    up.on('upgrade', (upRes, upSocket, upHead) => {
      const lines = [`HTTP/1.1 ${upRes.statusCode ?? 101} ${upRes.statusMessage ?? 'Switching Protocols'}`];
      const raw = maskHeaders(upRes.rawHeaders, needles);
      for (let i = 0; i + 1 < raw.length; i += 2) lines.push(`${raw[i]!}: ${raw[i + 1]!}`);
      socket.write(lines.join('\r\n') + '\r\n\r\n');
      const down = new Redactor(needles);
      if (head.length) upSocket.write(head);
      down.pipe(socket);
      if (upHead.length) down.write(upHead);
      upSocket.pipe(down);
      socket.pipe(upSocket);
      upSocket.on('error', () => socket.destroy());
      socket.on('error', () => upSocket.destroy());
      socket.on('close', () => upSocket.destroy());
      upSocket.on('close', () => socket.destroy());
    });
    up.on('response', (upRes) => {
      // Refused the upgrade: pass the answer on, masked, then close.
      const lines = [`HTTP/1.1 ${upRes.statusCode ?? 502} ${upRes.statusMessage ?? ''}`];
      const raw = maskHeaders(upRes.rawHeaders, needles);
      for (let i = 0; i + 1 < raw.length; i += 2) lines.push(`${raw[i]!}: ${raw[i + 1]!}`);
      socket.write(lines.join('\r\n') + '\r\n\r\n');
      upRes.pipe(new Redactor(needles)).pipe(socket);
    });
    up.on('error', () => socket.destroy());
    up.end();
  }
}

/** Does the request's Host (less its port) name the host the connection was intercepted for? */
function sameHost(req: http.IncomingMessage, conn: Conn): boolean {
  const host = req.headers.host;
  if (host === undefined) return true;
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '');
  return name.toLowerCase().replace(/\.$/, '') === conn.upstream.host.toLowerCase().replace(/\.$/, '');
}

/** A one-line HTTP answer on a connection that is not served, then the end of it. */
function refuse(client: net.Socket, status: number, body: string): void {
  client.resume();
  client.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

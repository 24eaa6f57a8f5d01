// The transparent proxy: every TCP connection of an environment with a policy arrives here
// (nat PREROUTING, rules.ts). It peeks the first bytes for a name (TLS SNI, HTTP Host, a
// CONNECT target), checks the policy, resolves the name itself and connects to the address
// it resolved: never to the one the environment chose. Nothing is decrypted. Denied HTTP
// gets a 403 that names the policy; denied TLS an alert; anything else a reset.
import net, { type Socket } from 'node:net';
import { parseIPv4 } from '../../core/egress-policy.js';
import { interceptorFor } from './intercept.js';
import { MAX_PEEK, peek, type Peeked } from './peek.js';

/** How long a client that sends nothing first has before it is judged by address alone. */
const PEEK_MS = 2000;
const CONNECT_MS = 10_000;

export type ListenerKind = 'http' | 'tls' | 'any';

/** An environment as the proxy sees it. */
export interface ProxiedEnv {
  id: string;
  name: string;
  policyText: string;
  allows(host: string, port: number): boolean;
}

/** One connection, counted while it lives. */
export interface LiveConn {
  env: ProxiedEnv;
  host: string;
  port: number;
  client: Socket;
  counted: { in: number; out: number };
  /** Its opening has been recorded. */
  noted: boolean;
}

export interface ProxyParts {
  envFor(ip: string): ProxiedEnv | null;
  /** The addresses the node connects to for `host` (refused ones removed); empty when none. */
  resolve(host: string): Promise<string[]>;
  /** Where a redirected connection was headed (conntrack), for the listener that takes any port. */
  originalDst(client: Socket): Promise<{ ip: string; port: number } | null>;
  refused(ip: string): boolean;
  denied(env: ProxiedEnv, host: string, port: number, reason: string): void;
  opened(conn: LiveConn): void;
  closed(conn: LiveConn): void;
}

export function clientAddress(s: Socket): string {
  return (s.remoteAddress ?? '').replace(/^::ffff:/, '');
}

function readHead(client: Socket): Promise<{ buf: Buffer; peeked: Peeked }> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const done = (peeked: Peeked): void => {
      clearTimeout(timer);
      client.off('data', onData);
      client.off('end', onEnd);
      client.pause();
      resolve({ buf, peeked });
    };
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const p = peek(buf);
      if (p.kind !== 'more') done(p);
      else if (buf.length >= MAX_PEEK) done({ kind: 'other' });
    };
    const onEnd = (): void => done({ kind: 'other' });
    const timer = setTimeout(() => done({ kind: 'other' }), PEEK_MS);
    client.on('data', onData);
    client.once('end', onEnd);
  });
}

function refuse(client: Socket, peeked: Peeked, env: ProxiedEnv, host: string, port: number, reason: string): void {
  if (peeked.kind === 'http' || peeked.kind === 'connect') {
    const body = `berth: ${host}:${port} is not allowed by the egress policy of environment ${env.name} (${env.policyText}): ${reason}\n`;
    client.end(
      `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nx-berth-egress: denied\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  } else if (peeked.kind === 'tls') {
    // A fatal access_denied alert, then the end.
    client.end(Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31]));
  } else {
    client.resetAndDestroy();
  }
}

function badGateway(client: Socket, peeked: Peeked, host: string, port: number, why: string): void {
  if (peeked.kind === 'http' || peeked.kind === 'connect') {
    const body = `berth: could not reach ${host}:${port}: ${why}\n`;
    client.end(
      `HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  } else client.resetAndDestroy();
}

function dial(addresses: string[], port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let i = 0;
    const next = (last?: Error): void => {
      const addr = addresses[i++];
      if (!addr) return reject(last ?? new Error('no address'));
      const s = net.connect({ host: addr, port, noDelay: true });
      s.setTimeout(CONNECT_MS, () => s.destroy(new Error('timed out')));
      s.once('connect', () => {
        s.setTimeout(0);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (err) => next(err));
    };
    next();
  });
}

/** Handles one redirected connection from its first byte to its close. */
export async function handleConnection(parts: ProxyParts, kind: ListenerKind, client: Socket): Promise<void> {
  client.on('error', () => client.destroy());
  client.setNoDelay(true);
  const env = parts.envFor(clientAddress(client));
  if (!env) return void client.destroy();
  const orig = kind === 'any' ? parts.originalDst(client) : null;
  const { buf, peeked } = await readHead(client);
  // A client that gave up before sending a byte (a pre-opened pool socket, a race it lost)
  // asked for nothing: no verdict, no record.
  if (client.destroyed || (buf.length === 0 && client.readableEnded)) return void client.destroy();
  let host: string;
  let port: number;
  if (peeked.kind === 'connect') {
    host = peeked.host;
    port = peeked.port;
  } else {
    const o = kind === 'http' ? { port: 80 } : kind === 'tls' ? { port: 443 } : await orig;
    if (!o) return void client.resetAndDestroy();
    port = o.port;
    const name = peeked.kind === 'http' || peeked.kind === 'tls' ? peeked.host : null;
    if (name) host = name;
    else {
      // No name: judged by the address it connected to, and only a listed address passes.
      const d = orig ? await orig : await parts.originalDst(client);
      if (!d) return void client.resetAndDestroy();
      host = d.ip;
    }
  }
  if (!env.allows(host, port)) {
    parts.denied(env, host, port, 'not in the allow list');
    return refuse(client, peeked, env, host, port, 'not in the allow list');
  }
  let addresses: string[];
  if (parseIPv4(host) !== null) addresses = parts.refused(host) ? [] : [host];
  else addresses = await parts.resolve(host);
  if (addresses.length === 0) {
    parts.denied(env, host, port, 'it resolves to no address the node connects to');
    return refuse(client, peeked, env, host, port, 'it resolves to no address the node connects to');
  }
  const conn: LiveConn = { env, host, port, client, counted: { in: 0, out: 0 }, noted: false };
  parts.opened(conn);
  client.once('close', () => parts.closed(conn));
  const rest = peeked.kind === 'connect' ? buf.subarray(peeked.headEnd) : buf;
  const handler = interceptorFor(env.name, host, port);
  if (handler) {
    if (peeked.kind === 'connect') client.write('HTTP/1.1 200 Connection established\r\n\r\n');
    handler(client, rest, { host, port, addresses });
    return;
  }
  let upstream: Socket;
  try {
    upstream = await dial(addresses, port);
  } catch (err) {
    return badGateway(client, peeked, host, port, (err as Error).message);
  }
  if (client.destroyed) return void upstream.destroy();
  upstream.on('error', () => client.destroy());
  upstream.setNoDelay(true);
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
  if (peeked.kind === 'connect') client.write('HTTP/1.1 200 Connection established\r\n\r\n');
  if (rest.length) upstream.write(rest);
  client.pipe(upstream);
  upstream.pipe(client);
  client.resume();
}

// The one hook the egress proxy offers another module (secrets): after the proxy has peeked
// a connection's first bytes and the policy allows its destination, it asks the registered
// interceptor whether it wants the connection. A handler it returns gets the client socket
// and the bytes already read from it, instead of the proxy splicing it to the upstream.
import type { Socket } from 'node:net';

/** Where the proxy would have connected: the name the client asked for, resolved by the node. */
export interface Upstream {
  host: string;
  port: number;
  /** The addresses the node resolved for `host` (already checked against what it refuses). */
  addresses: string[];
}

/**
 * Takes over a client connection. `head` holds the bytes the proxy read while peeking (a TLS
 * ClientHello, or an HTTP request head). For a client that spoke to a forward proxy (an HTTP
 * `CONNECT`), the proxy has already answered `200` and `head` is what followed. The proxy
 * still counts the socket's bytes for the environment's record and budget.
 */
export type InterceptHandler = (client: Socket, head: Buffer, upstream: Upstream) => void;

/** Asked once per allowed connection; null lets the proxy splice it as usual. */
export type Interceptor = (env: string, host: string, port: number) => InterceptHandler | null;

let current: Interceptor | null = null;

/** Registers the interceptor (one at a time; null removes it). */
export function setInterceptor(i: Interceptor | null): void {
  current = i;
}

export function interceptorFor(env: string, host: string, port: number): InterceptHandler | null {
  return current ? current(env, host, port) : null;
}

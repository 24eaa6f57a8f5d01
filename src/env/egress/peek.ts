// What a connection's first bytes say about where it wants to go: a TLS ClientHello's SNI,
// an HTTP request's Host, or a forward proxy's CONNECT target. Nothing is decrypted.

export type Peeked =
  | { kind: 'tls'; host: string | null }
  | { kind: 'http'; host: string | null; headEnd: number }
  | { kind: 'connect'; host: string; port: number; headEnd: number }
  | { kind: 'other' }
  /** Not enough bytes yet to tell. */
  | { kind: 'more' };

/** The most a peek reads before it gives up on finding a name. */
export const MAX_PEEK = 16 * 1024 + 5;

const METHODS = /^(GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH|TRACE|CONNECT|PROPFIND|MKCOL|REPORT|LOCK|UNLOCK|MOVE|COPY) /;

export function peek(buf: Buffer): Peeked {
  if (buf.length === 0) return { kind: 'more' };
  if (buf[0] === 0x16) return peekTls(buf);
  const start = buf.subarray(0, 10).toString('latin1');
  const isMethod = METHODS.test(start);
  // A request line still arriving, one segment at a time.
  if (!isMethod && !(buf.length < 10 && /^[A-Z]+ ?$/.test(start))) return { kind: 'other' };
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return buf.length >= MAX_PEEK ? { kind: 'other' } : { kind: 'more' };
  if (!isMethod) return { kind: 'other' };
  const head = buf.subarray(0, end).toString('latin1');
  const [line, ...headers] = head.split('\r\n');
  const connect = /^CONNECT (\S+) HTTP\/1\.[01]$/.exec(line ?? '');
  if (connect) {
    const t = splitHostPort(connect[1]!);
    return t ? { kind: 'connect', host: t.host, port: t.port ?? 443, headEnd: end + 4 } : { kind: 'other' };
  }
  const hostLine = headers.find((h) => /^host:/i.test(h));
  const host = hostLine ? (splitHostPort(hostLine.slice(5).trim())?.host ?? null) : null;
  return { kind: 'http', host, headEnd: end + 4 };
}

function splitHostPort(s: string): { host: string; port: number | null } | null {
  const m = /^([^:\s/]+)(?::(\d{1,5}))?$/.exec(s);
  if (!m) return null;
  return { host: m[1]!.toLowerCase().replace(/\.$/, ''), port: m[2] ? Number(m[2]) : null };
}

function peekTls(buf: Buffer): Peeked {
  if (buf.length < 5) return { kind: 'more' };
  if (buf[1] !== 0x03) return { kind: 'other' };
  const recLen = buf.readUInt16BE(3);
  if (buf.length < 5 + recLen) return buf.length >= MAX_PEEK ? { kind: 'tls', host: null } : { kind: 'more' };
  return { kind: 'tls', host: sniOf(buf.subarray(5, 5 + recLen)) };
}

/** The server_name of a ClientHello handshake message, or null. */
function sniOf(h: Buffer): string | null {
  try {
    if (h[0] !== 0x01) return null;
    let p = 4 + 2 + 32; // type, length, version, random
    p += 1 + h[p]!; // session id
    p += 2 + h.readUInt16BE(p); // cipher suites
    p += 1 + h[p]!; // compression methods
    const extEnd = p + 2 + h.readUInt16BE(p);
    p += 2;
    while (p + 4 <= extEnd && p + 4 <= h.length) {
      const type = h.readUInt16BE(p);
      const len = h.readUInt16BE(p + 2);
      p += 4;
      if (type === 0) {
        // server_name_list: length, then entries of (type, length, name)
        let q = p + 2;
        while (q + 3 <= p + len) {
          const nameType = h[q]!;
          const nameLen = h.readUInt16BE(q + 1);
          if (nameType === 0)
            return h
              .subarray(q + 3, q + 3 + nameLen)
              .toString('latin1')
              .toLowerCase()
              .replace(/\.$/, '');
          q += 3 + nameLen;
        }
        return null;
      }
      p += len;
    }
  } catch {
    return null;
  }
  return null;
}

// Just enough of the DNS wire format (RFC 1035) for the egress responder: one question in,
// an answer of A records, an empty answer, NXDOMAIN or REFUSED out.

export interface DnsQuestion {
  id: number;
  /** Recursion desired, echoed back. */
  rd: boolean;
  name: string;
  type: number;
  cls: number;
  /** The question section as it came, to copy into the answer. */
  raw: Buffer;
}

export const TYPE_A = 1;
export const RCODE = { ok: 0, formErr: 1, servFail: 2, nxDomain: 3, refused: 5 } as const;

/** The query's one question, or null for anything else (responses, several questions). */
export function parseQuery(msg: Buffer): DnsQuestion | null {
  if (msg.length < 12) return null;
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000 || msg.readUInt16BE(4) !== 1) return null;
  const labels: string[] = [];
  let p = 12;
  for (;;) {
    if (p >= msg.length) return null;
    const len = msg[p]!;
    if (len === 0) break;
    if (len > 63 || p + 1 + len > msg.length) return null; // compression has no place in a question
    labels.push(msg.subarray(p + 1, p + 1 + len).toString('latin1'));
    p += 1 + len;
  }
  p += 1;
  if (p + 4 > msg.length) return null;
  return {
    id: msg.readUInt16BE(0),
    rd: (flags & 0x0100) !== 0,
    name: labels.join('.').toLowerCase(),
    type: msg.readUInt16BE(p),
    cls: msg.readUInt16BE(p + 2),
    raw: msg.subarray(12, p + 4),
  };
}

/** An answer to `q`: `rcode`, and for A questions the addresses given (TTL in seconds). */
export function answer(q: DnsQuestion, rcode: number, addresses: string[] = [], ttl = 30): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(q.id, 0);
  head.writeUInt16BE(0x8000 | (q.rd ? 0x0100 : 0) | 0x0080 | (rcode & 0xf), 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(addresses.length, 6);
  const records = addresses.map((a) => {
    const r = Buffer.alloc(16);
    r.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    r.writeUInt16BE(TYPE_A, 2);
    r.writeUInt16BE(1, 4);
    r.writeUInt32BE(ttl, 6);
    r.writeUInt16BE(4, 10);
    a.split('.').forEach((o, i) => r.writeUInt8(Number(o), 12 + i));
    return r;
  });
  return Buffer.concat([head, q.raw, ...records]);
}

/** Builds a query (for tests and the bench). */
export function query(id: number, name: string, type = TYPE_A): Buffer {
  const parts = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')]));
  const head = Buffer.alloc(12);
  head.writeUInt16BE(id, 0);
  head.writeUInt16BE(0x0100, 2);
  head.writeUInt16BE(1, 4);
  const tail = Buffer.alloc(5);
  tail.writeUInt16BE(type, 1);
  tail.writeUInt16BE(1, 3);
  return Buffer.concat([head, ...parts, tail]);
}

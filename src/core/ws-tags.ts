// The WebSocket codec's framing, shared by the node and its client: how each WebSocket route
// frames its messages, and the flow-control marks both ends use.
//
// exec (/v1/envs/{name}/exec/ws):
//   client -> node: first a text message, the JSON ExecStreamRequest; then binary messages
//                   tagged by their first byte: STDIN + bytes, STDIN_END, SIGNAL + signal name.
//   node -> client: binary STDOUT + bytes, STDERR + bytes; last, a text message
//                   {"exit": ExecExit} or {"error": WireError}.
// pty, logs, connect: binary messages are the raw bytes both ways; text messages are JSON
//   control ({"resize": [cols, rows]}, {"signal": "SIGINT"}) from the client, and
//   {"session"}, {"open"}, {"end"}, {"exit"} or {"error"} from the node.
// The messages' schemas are in ws-codec.ts, apart, so that a client framing messages does not
// load zod.

export const EXEC_TAG = {
  /** client -> node */
  stdin: 0,
  stdinEnd: 1,
  signal: 2,
  /** node -> client */
  stdout: 1,
  stderr: 2,
} as const;

/** Output held for a slow reader before its source is paused, and the mark to resume at. */
export const FLOW = { highWater: 8 * 1024 * 1024, lowWater: 1024 * 1024 } as const;

/** One tagged binary message. */
export function tagged(tag: number, payload?: Uint8Array | string): Buffer {
  if (payload === undefined) return Buffer.of(tag);
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const out = Buffer.allocUnsafe(1 + body.length);
  out[0] = tag;
  out.set(body, 1);
  return out;
}

/** The tag and the payload of a binary message. */
export function untag(msg: Buffer): { tag: number; payload: Buffer } | null {
  if (msg.length === 0) return null;
  return { tag: msg[0]!, payload: msg.subarray(1) };
}

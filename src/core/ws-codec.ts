// The WebSocket codec, shared by the node and its client: how each WebSocket route frames
// its messages, and the flow-control marks both ends use.
//
// exec (/v1/envs/{name}/exec/ws):
//   client -> node: first a text message, the JSON ExecStreamRequest; then binary messages
//                   tagged by their first byte: STDIN + bytes, STDIN_END, SIGNAL + signal name.
//   node -> client: binary STDOUT + bytes, STDERR + bytes; last, a text message
//                   {"exit": ExecExit} or {"error": WireError}.
// pty, logs, connect: binary messages are the raw bytes both ways; text messages are JSON
//   control ({"resize": [cols, rows]}, {"signal": "SIGINT"}) from the client, and
//   {"session"}, {"open"}, {"end"}, {"exit"} or {"error"} from the node.
import { z } from 'zod';
import { ExecExit } from './api.js';
import { WireErrorSchema } from './errors.js';

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

/** The last message of a stream: how it ended. */
export const ExecEnd = z.union([z.object({ exit: ExecExit }), z.object({ error: WireErrorSchema })]);
export type ExecEnd = z.infer<typeof ExecEnd>;

/** Control messages from the client on a terminal. */
export const PtyControl = z
  .object({
    resize: z.tuple([z.number().int().min(1).max(1000), z.number().int().min(1).max(1000)]).optional(),
    signal: z.string().max(16).optional(),
  })
  .strict();
export type PtyControl = z.infer<typeof PtyControl>;

/** Text messages from the node on pty, logs and connect streams. */
export const StreamNotice = z.object({
  session: z.string().optional(),
  readOnly: z.boolean().optional(),
  open: z.boolean().optional(),
  end: z.boolean().optional(),
  exit: z.object({ exitCode: z.number(), signal: z.string().nullable() }).optional(),
  error: WireErrorSchema.optional(),
});
export type StreamNotice = z.infer<typeof StreamNotice>;

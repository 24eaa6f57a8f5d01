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
import { WireErrorSchema } from './wire-error.js';

export { EXEC_TAG, FLOW, tagged, untag } from './ws-tags.js';

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

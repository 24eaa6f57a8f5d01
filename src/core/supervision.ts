// Supervision: what an agent says it is doing, a human's takeover lease on an environment, and
// the note the human leaves when handing it back. Schemas and pure helpers shared by the node,
// the client, the CLI, the SDK, MCP and the dashboard.
import { z } from 'zod';
import { AGENT_STATES } from './attention.js';

/** What an agent reports of itself: at work, waiting for a human, blocked, or done. */
export const AgentState = z.enum(AGENT_STATES);
export type AgentState = z.infer<typeof AgentState>;

/** The longest note a status, a takeover or a hand-back carries (characters). */
export const NOTE_MAX = 2000;
/** The longest holder name of a lease. */
export const HOLDER_MAX = 256;

const note = z.string().max(NOTE_MAX, `a note is at most ${NOTE_MAX} characters`);

export const AgentStatus = z.object({ state: AgentState, note: z.string().nullable(), at: z.string() });
export type AgentStatus = z.infer<typeof AgentStatus>;

/** A human's hold on an environment. With `exclusive`, the agent's own commands are refused until the hand-back. */
export const Lease = z.object({ holder: z.string(), since: z.string(), note: z.string().nullable(), exclusive: z.boolean() });
export type Lease = z.infer<typeof Lease>;

/** The last hand-back: its note is what the agent reads to carry on. Kept until the next takeover. */
export const Handback = z.object({ note: z.string().nullable(), by: z.string(), at: z.string() });
export type Handback = z.infer<typeof Handback>;

export const StatusRequest = z.object({ state: AgentState, note: note.optional() }).strict();
export type StatusRequest = z.infer<typeof StatusRequest>;

export const TakeoverRequest = z
  .object({
    exclusive: z.boolean().optional(),
    note: note.optional(),
    /** Who takes over; by default the caller (the CLI and the SDK send `$USER@hostname`). */
    holder: z
      .string()
      .min(1)
      .max(HOLDER_MAX)
      .regex(/^[^\0-\x1f\x7f]+$/, 'a holder is printable text, one line')
      .optional(),
  })
  .strict();
export type TakeoverRequest = z.infer<typeof TakeoverRequest>;

export const HandbackRequest = z.object({ note: note.optional() }).strict();
export type HandbackRequest = z.infer<typeof HandbackRequest>;

/** The supervision fields of an environment's info (null when none). */
export const SupervisionInfo = {
  agentStatus: AgentStatus.nullable().default(null),
  lease: Lease.nullable().default(null),
  handback: Handback.nullable().default(null),
};

export { AGENT_STATES, attentionRank, byAttention, leaseNotice, takenOverError } from './attention.js';

// Supervision: what an agent says it is doing, a human's takeover lease on an environment, and
// the note the human leaves when handing it back. Schemas and pure helpers shared by the node,
// the client, the CLI, the SDK, MCP and the dashboard.
import { z } from 'zod';
import { BerthError } from './errors.js';

/** What an agent reports of itself: at work, waiting for a human, blocked, or done. */
export const AgentState = z.enum(['working', 'waiting', 'blocked', 'done']);
export type AgentState = z.infer<typeof AgentState>;
export const AGENT_STATES = AgentState.options;

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

/** Where an agent's status puts its environment in a list: those waiting for a human first, then the blocked. */
export function attentionRank(status: AgentStatus | null | undefined): number {
  if (!status) return 2;
  return status.state === 'waiting' ? 0 : status.state === 'blocked' ? 1 : 2;
}

/** Environments in the order a supervisor reads them (stable: equal ranks keep their order). */
export function byAttention<T extends { agentStatus?: AgentStatus | null }>(envs: readonly T[]): T[] {
  return envs
    .map((e, i) => ({ e, i, r: attentionRank(e.agentStatus) }))
    .sort((a, b) => a.r - b.r || a.i - b.i)
    .map((x) => x.e);
}

/** The one line an agent is told while a human holds its environment. */
export function leaseNotice(lease: Lease): string {
  const how = lease.exclusive ? 'exclusive human takeover' : 'human takeover';
  return `${how} by ${lease.holder} since ${lease.since}${lease.note ? `: ${lease.note}` : ''}`;
}

/** The refusal an agent's command gets under an exclusive lease: who holds it, since when, and to wait. */
export function takenOverError(env: string, lease: Lease): BerthError {
  return new BerthError(
    'taken_over',
    `${env} is taken over by ${lease.holder} (exclusive, since ${lease.since})${lease.note ? `: ${lease.note}` : ''}`,
    'wait for the hand-back (watch for env.handback), then go on',
  );
}

// Events: typed records of what happened on a node, each with an id that only grows, so a
// client that reconnects with the last id it saw gets what it missed.
import { z } from 'zod';
import { EnvState, ServiceState } from './api.js';
import { AgentState } from './supervision.js';

const base = {
  /** Grows by one per event on a node; resume with `since` (or Last-Event-ID). */
  id: z.number().int().nonnegative(),
  at: z.string(),
  env: z.string().nullable(),
  /** The agent label of the environment, so a scoped subscriber sees only its own. */
  agent: z.string().nullable(),
};

export const BerthEvent = z.discriminatedUnion('type', [
  z.object({ ...base, type: z.literal('env.created'), state: EnvState, fromPool: z.boolean() }),
  z.object({ ...base, type: z.literal('env.state'), state: EnvState, previous: EnvState.nullable(), reason: z.string().nullable() }),
  z.object({ ...base, type: z.literal('env.removed'), snapshot: z.string().nullable() }),
  z.object({
    ...base,
    type: z.literal('command.started'),
    command: z.string(),
    argv: z.array(z.string()),
    via: z.enum(['exec', 'stream', 'batch']),
  }),
  z.object({
    ...base,
    type: z.literal('command.ended'),
    command: z.string(),
    exitCode: z.number(),
    timedOut: z.boolean(),
    durationMs: z.number(),
    /** The last KiB of what the command wrote (stdout and stderr as they came), as UTF-8. */
    outputTail: z.string().max(4096).optional(),
  }),
  z.object({ ...base, type: z.literal('service.health'), service: z.string(), state: ServiceState, detail: z.string().nullable() }),
  z.object({
    ...base,
    type: z.literal('snapshot.taken'),
    snapshot: z.string(),
    reason: z.string(),
    files: z.number(),
    bytes: z.number(),
  }),
  z.object({ ...base, type: z.literal('env.status'), state: AgentState, note: z.string().nullable(), previous: AgentState.nullable() }),
  z.object({ ...base, type: z.literal('env.takeover'), holder: z.string(), exclusive: z.boolean(), note: z.string().nullable() }),
  z.object({ ...base, type: z.literal('env.handback'), by: z.string(), note: z.string().nullable() }),
  z.object({ ...base, type: z.literal('pool.changed'), pool: z.string(), size: z.number(), warm: z.number() }),
  /** A destination the egress policy denied (at most one per destination every 10 s). */
  z.object({
    ...base,
    type: z.literal('egress.denied'),
    host: z.string(),
    port: z.number(),
    via: z.enum(['tcp', 'dns']),
    policy: z.string(),
  }),
  /** An environment went over a budget and was paused. */
  z.object({ ...base, type: z.literal('budget.exceeded'), kind: z.enum(['egress', 'cpu']), used: z.number(), limit: z.number() }),
]);
export type BerthEvent = z.infer<typeof BerthEvent>;
export type EventType = BerthEvent['type'];

/** An event before the node gives it an id and a time. */
export type EventInput = BerthEvent extends infer E ? (E extends BerthEvent ? Omit<E, 'id' | 'at'> : never) : never;

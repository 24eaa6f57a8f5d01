// Supervision on the node: an agent's reported state, a human's takeover lease and the
// hand-back that ends it. Kept on the environment's row in the state database (so they survive
// a restart), each change an event. Checks and writes happen with no await between them, so two
// takeovers can never both win.
import type { EnvInfo } from '../core/api.js';
import { BerthError } from '../core/errors.js';
import { AgentStatus, Handback, Lease, type HandbackRequest, type StatusRequest, type TakeoverRequest } from '../core/supervision.js';
import type { EnvRow } from '../state/state-db.js';
import type { EnvManager } from './manager.js';

function parsed<T>(
  schema: { safeParse(v: unknown): { success: true; data: T } | { success: false } },
  text: string | null | undefined,
): T | null {
  if (!text) return null;
  try {
    const r = schema.safeParse(JSON.parse(text));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

/** The supervision fields of an environment's info, from its row. */
export function supervisionOf(row: EnvRow): Pick<EnvInfo, 'agentStatus' | 'lease' | 'handback'> {
  return {
    agentStatus: parsed(AgentStatus, row.agent_status),
    lease: parsed(Lease, row.lease),
    handback: parsed(Handback, row.handback),
  };
}

/** The lease on a row, if a human holds it. */
export function leaseOf(row: EnvRow): Lease | null {
  return parsed(Lease, row.lease);
}

export function setStatus(m: EnvManager, name: string, req: StatusRequest): EnvInfo {
  const row = m.row(name);
  const previous = parsed(AgentStatus, row.agent_status);
  const status: AgentStatus = { state: req.state, note: req.note ?? null, at: new Date().toISOString() };
  m.db.updateEnv(row.id, { agent_status: JSON.stringify(status) });
  m.events.emit({
    type: 'env.status',
    env: row.name,
    agent: row.agent,
    state: status.state,
    note: status.note,
    previous: previous?.state ?? null,
  });
  return m.get(row.name);
}

/**
 * A human takes the environment over. A second takeover by someone else is a conflict; the
 * same holder may take it again (to change the note or make it exclusive), keeping `since`.
 */
export function takeover(m: EnvManager, name: string, req: TakeoverRequest, caller: string): EnvInfo {
  const row = m.row(name);
  const holder = req.holder ?? caller;
  const held = leaseOf(row);
  if (held && held.holder !== holder)
    throw new BerthError(
      'conflict',
      `${row.name} is already taken over by ${held.holder} (since ${held.since})`,
      `wait for \`berth handback ${row.name}\`, or take over as ${held.holder}`,
    );
  const lease: Lease = {
    holder,
    since: held?.since ?? new Date().toISOString(),
    note: req.note ?? null,
    exclusive: req.exclusive ?? false,
  };
  m.db.updateEnv(row.id, { lease: JSON.stringify(lease), handback: null });
  m.events.emit({ type: 'env.takeover', env: row.name, agent: row.agent, holder, exclusive: lease.exclusive, note: lease.note });
  return m.get(row.name);
}

/** Ends the lease and leaves the hand-back's note for the agent. */
export function handback(m: EnvManager, name: string, req: HandbackRequest): EnvInfo {
  const row = m.row(name);
  const held = leaseOf(row);
  if (!held) throw new BerthError('conflict', `${row.name} is not taken over: nothing to hand back`, `see \`berth describe ${row.name}\``);
  const back: Handback = { note: req.note ?? null, by: held.holder, at: new Date().toISOString() };
  m.db.updateEnv(row.id, { lease: null, handback: JSON.stringify(back) });
  m.events.emit({ type: 'env.handback', env: row.name, agent: row.agent, by: back.by, note: back.note });
  return m.get(row.name);
}

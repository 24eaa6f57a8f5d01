// Supervision's pure parts: the agent states, the order a supervisor reads environments in, and
// the words of a lease. Apart from the schemas (supervision.ts) so that `berth ls` does not load
// zod to sort its table.
import { BerthError } from './errors.js';
import type { AgentStatus, Lease } from './supervision.js';

export const AGENT_STATES = ['working', 'waiting', 'blocked', 'done'] as const;

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

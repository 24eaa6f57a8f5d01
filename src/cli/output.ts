import type { EnvInfo } from '../core/api.js';
import type { AgentStatus, Lease } from '../core/supervision.js';

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** The STATUS column: what the agent reported, and whether a human holds the environment. */
export function statusCell(e: { agentStatus: AgentStatus | null; lease: Lease | null }): string {
  const s = e.agentStatus?.state ?? '-';
  return e.lease ? `${s} [taken over${e.lease.exclusive ? ', exclusive' : ''}]` : s;
}

export function envTable(envs: EnvInfo[]): string {
  const rows = [['NAME', 'STATE', 'STATUS', 'COMMIT', 'AGENT', 'TASK', 'NETWORK', 'REPO']];
  for (const e of envs)
    rows.push([e.name, e.state, statusCell(e), e.commit.slice(0, 12), e.labels.agent ?? '-', e.labels.task ?? '-', e.network, e.repo]);
  return table(rows);
}

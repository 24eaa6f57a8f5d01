// `berth egress NAME [--json] [--suggest] [--set POLICY]`: what an environment reached, the
// least-privilege allow list for it, and a new policy for a running environment.
import type { EgressReport } from '../../core/api.js';
import { formatBytes } from '../../core/egress-policy.js';
import { BerthError } from '../../core/errors.js';
import { bool, flag, parseArgs } from '../args.js';
import { target } from '../../sdk/nodes.js';
import { printJson, table } from '../output.js';

const USAGE = 'usage: berth egress NAME [--json] [--suggest] [--set POLICY]';

export async function cmdEgress(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json', 'suggest'], value: ['set'] });
  const name = p.positionals[0];
  if (!name || p.positionals.length > 1) throw new BerthError('usage', USAGE);
  const set = flag(p, 'set');
  if (set !== undefined && bool(p, 'suggest')) throw new BerthError('usage', '--set and --suggest do not go together');
  const t = await target(name);
  const client = t.client;
  try {
    if (set !== undefined) {
      const s = await client.setEgress(t.env, set);
      if (bool(p, 'json')) printJson(s);
      else process.stdout.write(`${t.env} egress ${s.policy}\n`);
      return 0;
    }
    const r = await client.egress(t.env);
    if (bool(p, 'suggest')) {
      if (bool(p, 'json')) printJson({ env: r.env, suggested: r.suggested });
      else if (r.suggested) process.stdout.write(`${r.suggested}\n`);
      else process.stderr.write(`berth: ${r.env} has reached no destination yet\n`);
      return 0;
    }
    if (bool(p, 'json')) printJson(r);
    else process.stdout.write(render(r));
    return 0;
  } finally {
    client.close();
  }
}

function render(r: EgressReport): string {
  const lines = [`policy: ${r.policy}${r.proxied ? '' : ' (not proxied)'}`];
  const b = r.budget;
  if (b) {
    const parts: string[] = [];
    if (b.egressBytes !== null) parts.push(`egress ${formatBytes(b.usedBytes)} of ${formatBytes(b.egressBytes)}`);
    if (b.cpuSeconds !== null) parts.push(`cpu ${(b.usedCpuSeconds ?? 0).toFixed(1)} s of ${b.cpuSeconds} s`);
    lines.push(`budget: ${parts.join(', ')}`);
  }
  if (r.destinations.length) {
    const rows = [['DESTINATION', 'PORT', 'VERDICT', 'CONNS', 'IN', 'OUT', 'FIRST SEEN', 'LAST SEEN']];
    for (const d of r.destinations)
      rows.push([
        d.host,
        String(d.port),
        d.allowed ? 'allowed' : 'denied',
        String(d.connections),
        formatBytes(d.bytesIn),
        formatBytes(d.bytesOut),
        d.firstSeen,
        d.lastSeen,
      ]);
    lines.push(table(rows));
  } else lines.push('no destinations yet');
  if (r.recentDenials.length) {
    lines.push('recent denials:');
    for (const d of r.recentDenials.slice(-5)) lines.push(`  ${d.at} ${d.host}:${d.port} (${d.via}) ${d.reason}`);
  }
  if (r.suggested) lines.push(`suggested: ${r.suggested}`);
  return lines.join('\n') + '\n';
}

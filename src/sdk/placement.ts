// The placement policy: the operator decides where an environment runs, as the guide's
// decision framework says (a human works locally; an agent and CI run remotely).
// $BERTH_HOME/placement.json maps operators to `local`, a node name, or `pool:NODE`:
//   { "human": "local", "agent": "agents-1", "ci": "agents-2" }
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError } from '../core/errors.js';
import { berthHome } from '../core/home.js';
import { loadNodes } from './nodes.js';

const DEFAULTS: Record<string, string> = { human: 'local', agent: 'local', ci: 'local' };

export function policy(): { rules: Record<string, string>; source: string } {
  const path = join(berthHome(), 'placement.json');
  if (!existsSync(path)) return { rules: DEFAULTS, source: 'the default policy' };
  try {
    return { rules: { ...DEFAULTS, ...(JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>) }, source: path };
  } catch {
    throw new BerthError('invalid_request', `${path} is not valid JSON`, 'fix it, or remove it for the default policy');
  }
}

/** Where `name` goes for `operator`: a target (`ENV` or `NODE/ENV`, see `target`) and the reason. */
export function place(operator: string, name: string): { target: string; reason: string } {
  if (name.includes('/')) return { target: name, reason: `placed explicitly on ${name.split('/')[0]}` };
  const { rules, source } = policy();
  const where = rules[operator];
  if (!where)
    throw new BerthError(
      'usage',
      `no placement for operator ${JSON.stringify(operator)}`,
      `add it to ${source}, or use human, agent or ci`,
    );
  if (where === 'local') return { target: name, reason: `operator ${operator} -> local (${source})` };
  const node = where.replace(/^pool:/, '');
  if (!loadNodes()[node])
    throw new BerthError('not_found', `placement sends ${operator} to node ${node}, which is not added`, 'add it with `berth node add`');
  return { target: `${node}/${name}`, reason: `operator ${operator} -> ${node} (${source})` };
}

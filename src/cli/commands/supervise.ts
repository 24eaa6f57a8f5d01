// status, takeover, handback: what an agent reports of itself, and a human's lease on its
// environment (taken over, then handed back with a note the agent reads).
import type { EnvInfo } from '../../core/api.js';
import { BerthError } from '../../core/errors.js';
import { AGENT_STATES, leaseNotice } from '../../core/attention.js';
import type { AgentState } from '../../core/supervision.js';
import { bool, flag, parseArgs } from '../args.js';
import { target } from '../../sdk/nodes.js';
import { defaultHolder } from '../../sdk/holder.js';
import { printJson } from '../output.js';

const STATUS_USAGE = `usage: berth status ENV ${AGENT_STATES.join('|')} [--note TEXT] [--json]`;

async function onEnv(name: string, call: (client: Awaited<ReturnType<typeof target>>['client'], env: string) => Promise<EnvInfo>) {
  const t = await target(name);
  try {
    return await call(t.client, t.env);
  } finally {
    t.client.close();
  }
}

/** `berth status ENV STATE [--note TEXT]`: an agent reports its own state. */
export async function cmdStatus(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: ['note'] });
  const [name, state, ...more] = p.positionals;
  if (!name || !state || more.length || p.rest.length) throw new BerthError('usage', STATUS_USAGE);
  if (!(AGENT_STATES as readonly string[]).includes(state))
    throw new BerthError('invalid_request', `unknown status ${JSON.stringify(state)}`, `give one of ${AGENT_STATES.join(', ')}`);
  const env = await onEnv(name, (c, e) => c.setStatus(e, { state: state as AgentState, note: flag(p, 'note') }));
  if (bool(p, 'json')) printJson(env);
  else process.stdout.write(`${env.name} ${env.agentStatus?.state ?? state}${env.agentStatus?.note ? `: ${env.agentStatus.note}` : ''}\n`);
  return 0;
}

/** `berth takeover ENV [--exclusive] [--note TEXT]`: a human takes the environment; the agent is told. */
export async function cmdTakeover(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json', 'exclusive'], value: ['note'] });
  const [name, ...more] = p.positionals;
  if (!name || more.length || p.rest.length)
    throw new BerthError('usage', 'usage: berth takeover ENV [--exclusive] [--note TEXT] [--json]');
  const env = await onEnv(name, (c, e) =>
    c.takeover(e, { exclusive: bool(p, 'exclusive'), note: flag(p, 'note'), holder: defaultHolder() }),
  );
  if (bool(p, 'json')) printJson(env);
  else
    process.stdout.write(
      `${env.name}: ${env.lease ? leaseNotice(env.lease) : 'taken over'}\n` +
        (env.lease?.exclusive ? `the agent's commands are refused until \`berth handback ${name}\`\n` : ''),
    );
  return 0;
}

/** `berth handback ENV [--note TEXT]`: ends the lease; the note is for the agent. */
export async function cmdHandback(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: ['note'] });
  const [name, ...more] = p.positionals;
  if (!name || more.length || p.rest.length) throw new BerthError('usage', 'usage: berth handback ENV [--note TEXT] [--json]');
  const env = await onEnv(name, (c, e) => c.handback(e, { note: flag(p, 'note') }));
  if (bool(p, 'json')) printJson(env);
  else process.stdout.write(`${env.name} handed back${env.handback?.note ? `: ${env.handback.note}` : ''}\n`);
  return 0;
}

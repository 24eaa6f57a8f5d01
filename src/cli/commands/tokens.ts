// `berth token create|ls|rm` and `berth events`: scoped tokens for agents, and the node's
// event stream.
import { BerthError } from '../../core/errors.js';
import type { BerthEvent } from '../../core/events.js';
import { parseDuration } from '../../core/duration.js';
import { connectLocal } from '../../sdk/connect.js';
import { target } from '../../sdk/nodes.js';
import { bool, flag, parseArgs } from '../args.js';
import { printJson, table } from '../output.js';

const TOKEN_USAGE = 'usage: berth token create --agent NAME [--env ENV]... [--read-only] [--ttl 8h] | berth token ls | berth token rm ID';

export async function cmdToken(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const p = parseArgs(rest, { boolean: ['json', 'read-only'], value: ['agent', 'env', 'ttl'] });
  const client = await connectLocal({ autostart: true });
  try {
    if (sub === 'create') {
      const agent = flag(p, 'agent');
      if (!agent || p.positionals.length) throw new BerthError('usage', TOKEN_USAGE);
      const ttl = flag(p, 'ttl');
      const t = await client.createToken({
        agent,
        envs: p.flags.get('env'),
        readOnly: bool(p, 'read-only') || undefined,
        ttlSeconds: ttl ? parseDuration(ttl) : undefined,
      });
      if (bool(p, 'json')) printJson(t);
      else process.stdout.write(`${t.token}\n`);
      process.stderr.write(
        `berth: token ${t.id} for agent ${t.agent}${t.readOnly ? ', read-only' : ''}${t.expiresAt ? `, until ${t.expiresAt}` : ''}; it is shown only this once\n`,
      );
      return 0;
    }
    if (sub === 'ls') {
      const list = await client.tokens();
      if (bool(p, 'json')) printJson(list);
      else {
        const rows = [['ID', 'AGENT', 'ENVS', 'ACCESS', 'EXPIRES', 'LAST USED']];
        for (const t of list)
          rows.push([
            t.id,
            t.agent,
            t.envs?.join(',') ?? '*',
            t.readOnly ? 'read-only' : 'read-write',
            t.expiresAt ?? 'never',
            t.lastUsedAt ?? '-',
          ]);
        process.stdout.write(table(rows) + '\n');
      }
      return 0;
    }
    if (sub === 'rm') {
      const [id] = p.positionals;
      if (!id || p.positionals.length > 1) throw new BerthError('usage', TOKEN_USAGE);
      const r = await client.removeToken(id);
      if (bool(p, 'json')) printJson(r);
      else process.stdout.write(`removed token ${r.removed}\n`);
      return 0;
    }
    throw new BerthError('usage', TOKEN_USAGE);
  } finally {
    client.close();
  }
}

function line(e: BerthEvent): string {
  const where = e.env ?? '-';
  switch (e.type) {
    case 'command.started':
      return `${e.at} ${where} command.started ${e.command} ${e.argv.join(' ')}`;
    case 'command.ended':
      return `${e.at} ${where} command.ended ${e.command} exit ${e.exitCode}${e.timedOut ? ' (timed out)' : ''} ${e.durationMs} ms`;
    case 'env.state':
      return `${e.at} ${where} env.state ${e.previous ?? '?'} -> ${e.state}${e.reason ? ` (${e.reason})` : ''}`;
    case 'env.created':
      return `${e.at} ${where} env.created ${e.state}${e.fromPool ? ' (from a pool)' : ''}`;
    case 'env.removed':
      return `${e.at} ${where} env.removed${e.snapshot ? ` (work in ${e.snapshot})` : ''}`;
    case 'service.health':
      return `${e.at} ${where} service.health ${e.service} ${e.state}${e.detail ? `: ${e.detail}` : ''}`;
    case 'snapshot.taken':
      return `${e.at} ${where} snapshot.taken ${e.snapshot} (${e.reason}, ${e.files} files)`;
    case 'env.status':
      return `${e.at} ${where} env.status ${e.previous ?? '-'} -> ${e.state}${e.note ? `: ${e.note}` : ''}`;
    case 'env.takeover':
      return `${e.at} ${where} env.takeover by ${e.holder}${e.exclusive ? ' (exclusive)' : ''}${e.note ? `: ${e.note}` : ''}`;
    case 'env.handback':
      return `${e.at} ${where} env.handback by ${e.by}${e.note ? `: ${e.note}` : ''}`;
    case 'pool.changed':
      return `${e.at} - pool.changed ${e.pool} ${e.warm}/${e.size} warm`;
    case 'egress.denied':
      return `${e.at} ${where} egress.denied ${e.host}:${e.port} (${e.via}; policy ${e.policy})`;
    case 'budget.exceeded':
      return `${e.at} ${where} budget.exceeded ${e.kind} ${e.used} of ${e.limit}: paused`;
  }
}

/** `berth events [--env E] [--since ID] [--json]`: one line (or JSON object) per event, until Ctrl-C. */
export async function cmdEvents(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: ['env', 'since'] });
  if (p.positionals.length) throw new BerthError('usage', 'usage: berth events [--env ENV] [--since ID] [--json]');
  const since = flag(p, 'since');
  if (since !== undefined && !/^\d+$/.test(since)) throw new BerthError('usage', `--since takes an event id, not ${JSON.stringify(since)}`);
  const envArg = flag(p, 'env');
  const t = envArg ? await target(envArg) : { client: await connectLocal({ autostart: true }), env: undefined };
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  // A reader that goes away (`berth events | head`) ends the stream, quietly.
  const gone = (err: NodeJS.ErrnoException): void => {
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') stop.abort();
  };
  process.stdout.on('error', gone);
  try {
    for await (const e of t.client.events({ env: t.env, since: since === undefined ? undefined : Number(since), signal: stop.signal })) {
      if (stop.signal.aborted) break;
      process.stdout.write(bool(p, 'json') ? JSON.stringify(e) + '\n' : line(e) + '\n');
    }
  } finally {
    t.client.close();
  }
  return 0;
}

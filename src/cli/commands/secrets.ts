// `berth secret set|ls|rm`: values the node swaps in on the wire for one host. The value is
// read from a file or stdin, never from the command line (where ps and shell history see it).
import { readFileSync } from 'node:fs';
import { BerthError } from '../../core/errors.js';
import { MAX_SECRET_BYTES } from '../../core/secrets.js';
import { connectLocal } from '../../sdk/connect.js';
import { bool, flag, parseArgs } from '../args.js';
import { printJson, table } from '../output.js';

const USAGE =
  "usage: berth secret set NAME (--value-file F | --value-stdin) --host HOST[:PORT] [--header 'Authorization: Bearer {}'] [--env-var VAR] | berth secret ls | berth secret rm NAME";

export async function cmdSecret(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const p = parseArgs(rest, { boolean: ['json', 'value-stdin'], value: ['value-file', 'host', 'header', 'env-var'] });
  if (sub === 'set') {
    const [name] = p.positionals;
    if (!name || p.positionals.length > 1) throw new BerthError('usage', USAGE);
    // Checked before the value is read, so a mistake costs nothing.
    const host = flag(p, 'host');
    if (!host) {
      throw new BerthError(
        'secret_no_host',
        'a secret needs the host it is for',
        'give --host HOST[:PORT], the only destination that gets the value',
      );
    }
    const value = readValue(flag(p, 'value-file'), bool(p, 'value-stdin'));
    const client = await connectLocal({ autostart: true });
    try {
      const s = await client.setSecret(name, { value, host, header: flag(p, 'header'), envVar: flag(p, 'env-var') });
      if (bool(p, 'json')) printJson(s);
      else
        process.stdout.write(
          `secret ${s.name} for ${s.host}${s.port ? `:${s.port}` : ''}: environments made with --secret ${s.name} get ${s.envVar}\n`,
        );
      return 0;
    } finally {
      client.close();
    }
  }
  const client = await connectLocal({ autostart: true });
  try {
    if (sub === 'ls') {
      if (p.positionals.length) throw new BerthError('usage', USAGE);
      const list = await client.secrets();
      if (bool(p, 'json')) printJson(list);
      else {
        const rows = [['NAME', 'HOST', 'HEADER', 'VARIABLE', 'ENVS', 'UPDATED']];
        for (const s of list)
          rows.push([
            s.name,
            s.port ? `${s.host}:${s.port}` : s.host,
            s.header ?? '(in place)',
            s.envVar,
            s.envs.join(',') || '-',
            s.updatedAt,
          ]);
        process.stdout.write(table(rows) + '\n');
      }
      return 0;
    }
    if (sub === 'rm') {
      const [name] = p.positionals;
      if (!name || p.positionals.length > 1) throw new BerthError('usage', USAGE);
      const r = await client.removeSecret(name);
      if (bool(p, 'json')) printJson(r);
      else process.stdout.write(`removed secret ${r.removed}\n`);
      return 0;
    }
    throw new BerthError('usage', USAGE);
  } finally {
    client.close();
  }
}

function readValue(file: string | undefined, stdin: boolean): string {
  if (!!file === stdin)
    throw new BerthError('usage', 'give the value with one of --value-file F and --value-stdin', 'never on the command line');
  let raw: Buffer;
  try {
    raw = readFileSync(file ?? 0);
  } catch (err) {
    throw new BerthError('usage', `cannot read the value from ${file ?? 'stdin'}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (raw.length > MAX_SECRET_BYTES + 2) throw new BerthError('too_large', `a secret value is at most ${MAX_SECRET_BYTES} bytes`);
  // A file written by an editor or `echo` ends with a newline that is not part of the value.
  return raw.toString('utf8').replace(/\r?\n$/, '');
}

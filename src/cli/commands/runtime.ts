// service, logs, verify, shell, batch.
import { readFileSync } from 'node:fs';
import { parseReadiness } from '../../core/readiness.js';
import { BerthError, ERROR_TABLE } from '../../core/errors.js';
import type { ServiceInfo, VerifyResult } from '../../core/api.js';
import { bool, flag, numberFlag, parseArgs } from '../args.js';
import { target } from '../../sdk/nodes.js';
import { printJson, table } from '../output.js';

export async function cmdService(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const p = parseArgs(rest, { boolean: ['json', 'no-wait'], value: ['ready', 'ready-timeout', 'restart', 'cwd', 'env'] });
  const [envName, service] = p.positionals;
  const usage =
    'usage: berth service start|stop|ls ENV [SERVICE] [--ready tcp:PORT|http:PORT/PATH|cmd:CMD] [--restart no|on-failure|always] [-- CMD...]';
  if (!envName || !['start', 'stop', 'ls'].includes(sub ?? '')) throw new BerthError('usage', usage);
  const t = await target(envName);
  const client = t.client;
  try {
    if (sub === 'ls') {
      const list = await client.services(t.env);
      if (bool(p, 'json')) printJson(list);
      else process.stdout.write(serviceTable(list) + '\n');
      return 0;
    }
    if (!service) throw new BerthError('usage', usage);
    if (sub === 'stop') {
      const s = await client.stopService(t.env, service);
      if (bool(p, 'json')) printJson(s);
      else process.stdout.write(`${s.name} ${s.state}\n`);
      return 0;
    }
    const ready = flag(p, 'ready');
    const restart = flag(p, 'restart');
    if (restart !== undefined && !['no', 'on-failure', 'always'].includes(restart))
      throw new BerthError('usage', `--restart must be no, on-failure or always`);
    const env: Record<string, string> = {};
    for (const kv of p.flags.get('env') ?? []) {
      const i = kv.indexOf('=');
      if (i <= 0) throw new BerthError('usage', `--env takes KEY=VALUE, not ${JSON.stringify(kv)}`);
      env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    const timeout = numberFlag(p, 'ready-timeout');
    const s = await client.startService(t.env, {
      name: service,
      argv: p.rest.length ? p.rest : undefined,
      ready: ready ? parseReadiness(ready) : undefined,
      readyTimeoutMs: timeout ? Math.round(timeout * 1000) : undefined,
      restart: restart as 'no' | 'on-failure' | 'always' | undefined,
      cwd: flag(p, 'cwd'),
      env: Object.keys(env).length ? env : undefined,
      wait: !bool(p, 'no-wait'),
    });
    if (bool(p, 'json')) printJson(s);
    else if (s.state === 'ready') process.stdout.write(`${s.name} ready in ${s.readyMs} ms${s.check ? ` (${s.check.detail})` : ''}\n`);
    else if (s.state === 'starting') process.stdout.write(`${s.name} starting\n`);
    else {
      process.stderr.write(`berth: service ${s.name} ${s.state}: ${s.reason ?? ''}\n`);
      if (s.logTail) process.stderr.write(indent(s.logTail) + '\n');
    }
    return s.state === 'ready' || s.state === 'starting' ? 0 : ERROR_TABLE.service_failed.exit;
  } finally {
    client.close();
  }
}

function serviceTable(list: ServiceInfo[]): string {
  const rows = [['SERVICE', 'STATE', 'PID', 'PORTS', 'RESTARTS', 'READY', 'COMMAND']];
  for (const s of list) {
    rows.push([
      s.name,
      s.state,
      String(s.pid ?? '-'),
      s.ports.join(',') || '-',
      String(s.restarts),
      s.readyMs === null ? '-' : `${s.readyMs} ms`,
      s.argv.join(' '),
    ]);
  }
  return table(rows);
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  | ${l}`)
    .join('\n');
}

export async function cmdLogs(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['follow'], value: ['tail'] });
  const [envName, service] = p.positionals;
  if (!envName || !service) throw new BerthError('usage', 'usage: berth logs ENV SERVICE [-f] [--tail BYTES]');
  const t = await target(envName);
  const client = t.client;
  const tail = numberFlag(p, 'tail');
  const stream = client.logs(t.env, service, { follow: bool(p, 'follow'), tailBytes: tail }, (c) => process.stdout.write(c));
  process.on('SIGINT', () => stream.stop());
  process.stdout.on('error', () => stream.stop());
  try {
    await stream.done;
    return 0;
  } finally {
    client.close();
  }
}

export async function cmdVerify(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: ['http', 'screenshot', 'test', 'junit'] });
  const envName = p.positionals[0];
  if (!envName) throw new BerthError('usage', 'usage: berth verify ENV [--http URL]... [--screenshot URL]... [--test CMD [--junit PATH]]');
  const test = flag(p, 'test');
  const t = await target(envName);
  const client = t.client;
  try {
    const r = await client.verify(t.env, {
      http: p.flags.get('http'),
      screenshot: p.flags.get('screenshot'),
      test: test ? { argv: ['/bin/sh', '-c', test], junit: flag(p, 'junit') } : undefined,
    });
    if (bool(p, 'json')) printJson(r);
    else process.stdout.write(verifyText(r));
    return r.verified ? 0 : 17;
  } finally {
    client.close();
  }
}

function verifyText(r: VerifyResult): string {
  const mark = (ok: boolean): string => (ok ? 'ok  ' : 'FAIL');
  const lines: string[] = [];
  for (const s of r.services) lines.push(`${mark(s.ok)} service ${s.name}: ${s.check?.detail ?? s.state}`);
  for (const h of r.http)
    lines.push(`${mark(h.ok)} ${h.url}: ${h.detail}${h.bodyExcerpt ? ` -- ${JSON.stringify(h.bodyExcerpt.slice(0, 80))}` : ''}`);
  for (const s of r.screenshots) lines.push(`${mark(s.ok)} screenshot ${s.url}: ${s.detail}${s.path ? ` -> ${s.path}` : ''}`);
  if (r.tests) {
    const t = r.tests.summary;
    lines.push(
      `${mark(r.tests.ok)} tests \`${r.tests.argv.at(-1)}\`: exit ${r.tests.exitCode}${t ? `, ${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped` : ''}`,
    );
  }
  if (lines.length === 0) lines.push('ok   nothing to verify: no services, no probes');
  lines.push(r.verified ? 'verified' : `NOT verified: ${r.failures.length} failure(s)`);
  return lines.join('\n') + '\n';
}

export async function cmdShell(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['list', 'json'], value: ['watch'] });
  const envName = p.positionals[0];
  if (!envName) throw new BerthError('usage', 'usage: berth shell ENV [--watch SESSION | --list] [-- CMD...]');
  const t = await target(envName);
  const client = t.client;
  if (bool(p, 'list')) {
    const r = await client.request<{ sessions: Array<{ id: string; argv: string[]; startedAt: string; watchers: number }> }>(
      'GET',
      `/v1/envs/${encodeURIComponent(t.env)}/pty`,
    );
    client.close();
    if (bool(p, 'json')) printJson(r.sessions);
    else
      process.stdout.write(
        table([
          ['SESSION', 'STARTED', 'WATCHERS', 'COMMAND'],
          ...r.sessions.map((s) => [s.id, s.startedAt, String(s.watchers), s.argv.join(' ')]),
        ]) + '\n',
      );
    return 0;
  }
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  const watch = flag(p, 'watch');
  const term = client.pty(
    t.env,
    { cols: process.stdout.columns ?? 80, rows: process.stdout.rows ?? 24, argv: p.rest.length ? p.rest : undefined, watch },
    (c) => process.stdout.write(c),
  );
  try {
    const id = await term.session;
    if (tty)
      process.stderr.write(
        `berth: ${watch ? 'watching (read-only)' : 'terminal'} session ${id} in ${envName}${watch ? '' : '; others can watch with `berth shell ' + envName + ' --watch ' + id + '`'}\r\n`,
      );
  } catch (err) {
    client.close();
    throw err;
  }
  if (tty) stdin.setRawMode(true);
  if (!watch) {
    stdin.on('data', (c: Buffer) => term.write(c));
    process.stdout.on('resize', () => term.resize(process.stdout.columns, process.stdout.rows));
  } else {
    // Read-only: Ctrl-C or q leaves.
    stdin.on('data', (c: Buffer) => (c.includes(3) || c.includes(0x71) ? term.close() : undefined));
  }
  stdin.on('end', () => {
    if (!tty) return; // piped input: the shell ends itself at `exit`
    term.close();
  });
  try {
    const r = await term.exit;
    return r.exitCode;
  } finally {
    if (tty) stdin.setRawMode(false);
    stdin.pause();
    stdin.destroy();
    client.close();
  }
}

/** Each non-empty, non-comment line of the script is one command, run by /bin/sh. */
export async function cmdBatch(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json', 'keep-going'], value: ['file', 'timeout'] });
  const envName = p.positionals[0];
  if (!envName) throw new BerthError('usage', 'usage: berth batch ENV [--keep-going] < steps.sh');
  const file = flag(p, 'file');
  const text = file ? readFileSync(file, 'utf8') : readFileSync(0, 'utf8');
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  if (lines.length === 0) throw new BerthError('usage', 'the batch has no commands', 'put one command per line on standard input');
  const timeout = numberFlag(p, 'timeout');
  const t = await target(envName);
  const client = t.client;
  try {
    const r = await client.batch(t.env, {
      steps: lines.map((l) => ({ argv: ['/bin/sh', '-c', l], timeoutMs: timeout ? Math.round(timeout * 1000) : undefined })),
      stopOnError: !bool(p, 'keep-going'),
    });
    if (bool(p, 'json')) {
      printJson({
        ...r,
        steps: r.steps.map((s, i) => ({
          ...s,
          command: lines[i],
          stdout: Buffer.from(s.stdout, 'base64').toString('utf8'),
          stderr: Buffer.from(s.stderr, 'base64').toString('utf8'),
        })),
      });
    } else {
      r.steps.forEach((s, i) => {
        process.stderr.write(`$ ${lines[i]}\n`);
        process.stdout.write(Buffer.from(s.stdout, 'base64'));
        process.stderr.write(Buffer.from(s.stderr, 'base64'));
        if (s.exitCode !== 0) process.stderr.write(`berth: step ${i + 1} exited ${s.exitCode}\n`);
      });
      if (r.completed < lines.length) process.stderr.write(`berth: stopped after step ${r.completed} of ${lines.length}\n`);
    }
    return r.exitCode;
  } finally {
    client.close();
  }
}

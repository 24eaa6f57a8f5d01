// SSH into any environment with a stock OpenSSH client (and so VS Code Remote-SSH and
// JetBrains Gateway): `berth ssh-config` writes Host entries whose ProxyCommand is
// `berth ssh-proxy %h`, which speaks SSH over its own stdio and turns sessions into berth
// terminals, commands and port forwards. Access is berth's own: whoever can run the proxy
// holds the node's token already.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Duplex } from 'node:stream';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ssh2 from 'ssh2';
import { BerthError } from '../../core/errors.js';
import { berthHome } from '../../core/home.js';
import { bool, parseArgs } from '../args.js';
import { connectLocal } from '../../sdk/connect.js';
import { clientFor, loadNodes, target } from '../../sdk/nodes.js';

const { Server } = ssh2;
/** Where Debian's openssh-sftp-server (in the default toolchain) puts the SFTP server. */
const SFTP_SERVER = '/usr/lib/openssh/sftp-server';

function hostKey(): { privateKey: string; publicLine: string } {
  const dir = berthHome();
  mkdirSync(dir, { recursive: true });
  const keyPath = join(dir, 'ssh_host_ed25519_key');
  if (!existsSync(keyPath)) {
    // OpenSSH's own key generator: its keys parse everywhere (ssh2's generated ones do not always).
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'berth-proxy', '-f', keyPath], { encoding: 'utf8' });
    if (r.status !== 0)
      throw new BerthError(
        'internal',
        `could not make the SSH host key: ${(r.stderr || r.error?.message || '').trim()}`,
        'install openssh-client (scripts/setup.sh does)',
      );
  }
  const pub = readFileSync(keyPath + '.pub', 'utf8')
    .trim()
    .split(/\s+/)
    .slice(0, 2)
    .join(' ');
  return { privateKey: readFileSync(keyPath, 'utf8'), publicLine: pub };
}

export async function cmdSshConfig(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: ['json'], value: [] });
  const key = hostKey();
  const known = join(berthHome(), 'known_hosts');
  writeFileSync(known, `berth-proxy ${key.publicLine}\n`);
  const hosts: string[] = [];
  const local = await connectLocal({ autostart: true });
  try {
    for (const e of await local.listEnvs()) hosts.push(`${e.name}.berth`);
  } finally {
    local.close();
  }
  for (const node of Object.keys(loadNodes())) {
    const c = clientFor(node);
    try {
      for (const e of await c.listEnvs(AbortSignal.timeout(10_000))) hosts.push(`${e.name}.${node}.berth`);
    } catch (err) {
      process.stderr.write(`berth: node ${node} skipped: ${(err as Error).message}\n`);
    } finally {
      c.close();
    }
  }
  const cli = fileURLToPath(new URL('../main.js', import.meta.url));
  const block = [
    '# berth environments: `ssh NAME.berth` (local) or `ssh NAME.NODE.berth`',
    'Host *.berth',
    `  ProxyCommand env ${['BERTH_HOME', 'BERTH_ENGINE', 'BERTH_CACHE']
      .filter((k) => k === 'BERTH_HOME' || process.env[k])
      .map((k) => `${k}=${k === 'BERTH_HOME' ? berthHome() : process.env[k]}`)
      .join(' ')} ${process.execPath} ${cli} ssh-proxy %h`,
    '  User root',
    '  HostKeyAlias berth-proxy',
    `  UserKnownHostsFile ${known}`,
    '  StrictHostKeyChecking yes',
    '',
  ];
  if (bool(p, 'json')) process.stdout.write(JSON.stringify({ hosts, config: block.join('\n') }, null, 2) + '\n');
  else process.stdout.write(`${block.join('\n')}# known now: ${hosts.join(' ') || '(none)'}\n`);
  return 0;
}

/** NAME.berth -> NAME; NAME.NODE.berth -> NODE/NAME. */
export function hostToTarget(host: string): string {
  const m = /^([a-z0-9-]+)(?:\.([a-z0-9-]+))?\.berth$/.exec(host.toLowerCase());
  if (!m) throw new BerthError('usage', `not a berth host name: ${host}`, 'use NAME.berth or NAME.NODE.berth');
  return m[2] ? `${m[2]}/${m[1]}` : m[1]!;
}

export async function cmdSshProxy(argv: string[]): Promise<number> {
  const host = argv[0];
  if (!host) throw new BerthError('usage', 'usage: berth ssh-proxy HOST (as an ssh ProxyCommand)');
  const t = await target(hostToTarget(host));
  await t.client.getEnv(t.env); // an unknown environment fails before any SSH is spoken
  const key = hostKey();
  const io = Duplex.from({ readable: process.stdin, writable: process.stdout }) as Duplex & {
    setNoDelay?: () => void;
    setKeepAlive?: () => void;
  };
  io.setNoDelay = () => {};
  io.setKeepAlive = () => {};
  let finished: () => void = () => {};
  const done = new Promise<void>((resolve) => (finished = resolve));
  const server = new Server({ hostKeys: [key.privateKey] }, (conn) => {
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('close', () => finished());
    conn.on('error', () => finished());
    conn.on('ready', () => {
      conn.on('session', (acceptSession) => {
        const session = acceptSession();
        let pty: { cols: number; rows: number } | undefined;
        let resize: ((cols: number, rows: number) => void) | undefined;
        const env: Record<string, string> = {};
        session.on('pty', (accept, _reject, info) => {
          pty = { cols: info.cols || 80, rows: info.rows || 24 };
          accept?.();
        });
        session.on('window-change', (accept, _reject, info) => {
          resize?.(info.cols, info.rows);
          accept?.();
        });
        session.on('env', (accept, _reject, info) => {
          env[info.key] = info.val;
          accept?.();
        });
        const terminal = (channel: ssh2.ServerChannel, argv?: string[]): void => {
          const term = t.client.pty(t.env, { cols: pty?.cols ?? 80, rows: pty?.rows ?? 24, argv }, (c) => channel.write(c));
          resize = (c, r) => term.resize(c, r);
          channel.on('data', (c: Buffer) => term.write(c));
          channel.on('close', () => term.close());
          term.exit.then(
            (r) => {
              channel.exit(r.exitCode);
              channel.end();
            },
            (err: unknown) => {
              channel.stderr.write(`berth: ${(err as Error).message}\r\n`);
              channel.exit(255);
              channel.end();
            },
          );
        };
        session.on('shell', (accept) => terminal(accept()));
        // A command with its stdin, stdout, stderr and exit code carried both ways, each
        // direction read no faster than the other end takes it.
        const command = (channel: ssh2.ServerChannel, argv: string[]): void => {
          let waiting = false;
          const h = t.client.execStream(
            t.env,
            { argv, interactiveStdin: true, ...(Object.keys(env).length ? { env } : {}) },
            {
              stdout: (c) => {
                if (channel.write(c) || waiting) return;
                waiting = true;
                h.pauseOutput();
                channel.once('drain', () => {
                  waiting = false;
                  h.resumeOutput();
                });
              },
              stderr: (c) => channel.stderr.write(c),
            },
          );
          channel.on('data', (c: Buffer) => h.feed(c, channel));
          channel.on('end', () => h.endStdin());
          h.wait().then(
            (r) => {
              channel.exit(r.exitCode);
              channel.end();
            },
            (err: unknown) => {
              channel.stderr.write(`berth: ${(err as Error).message}\n`);
              channel.exit(255);
              channel.end();
            },
          );
        };
        session.on('exec', (accept, _reject, info) => {
          const channel = accept();
          if (pty) return terminal(channel, ['/bin/sh', '-c', info.command]);
          command(channel, ['/bin/sh', '-c', info.command]);
        });
        // SFTP (and scp, which speaks it): OpenSSH's own sftp-server, run inside the environment.
        session.on('subsystem', (accept, reject, info) => {
          if (info.name !== 'sftp') return reject?.();
          command(accept(), [SFTP_SERVER]);
        });
      });
      // `ssh -L` and editors' port forwards: a TCP stream to a port inside the environment.
      conn.on('tcpip', (accept, reject, info) => {
        if (!['localhost', '127.0.0.1', '::1'].includes(info.destIP)) return reject();
        const channel = accept();
        const ws = t.client.connect(t.env, info.destPort);
        ws.on('message', (d, bin) => {
          if (bin) channel.write(d);
        });
        ws.on('close', () => channel.end());
        ws.on('error', () => channel.destroy());
        const queue: Buffer[] = [];
        ws.on('open', () => queue.splice(0).forEach((q) => ws.send(q)));
        channel.on('data', (c: Buffer) => (ws.readyState === ws.OPEN ? ws.send(c) : queue.push(c)));
        channel.on('close', () => ws.close());
      });
    });
  });
  server.injectSocket(io as unknown as import('node:net').Socket);
  process.stdin.on('end', () => finished());
  await done;
  t.client.close();
  return 0;
}

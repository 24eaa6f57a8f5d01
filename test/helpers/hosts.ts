// Test hosts: each host is a network namespace on a bridge this harness makes, with its own
// addresses, its own Podman storage and service, and (for nodes) its own berth daemon. The
// addresses exist only inside the namespaces and the bridge; everything is removed at the end.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import http from 'node:http';
import { BERTH, run, type CliResult } from './fixture.js';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export class TestHost {
  readonly dir: string;
  readonly home: string;
  readonly cache: string;
  readonly procs: ChildProcess[] = [];
  podmanSock: string | undefined;
  daemon: ChildProcess | undefined;

  constructor(
    readonly net: TestNetwork,
    readonly name: string,
    readonly ns: string,
    readonly addr: string,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `berth-host-${name}-`));
    this.home = join(this.dir, 'home');
    this.cache = join(this.dir, 'cache');
    mkdirSync(this.home, { recursive: true });
  }

  /** The host's environment: its own berth home, cache and engine. */
  get env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      BERTH_HOME: this.home,
      BERTH_CACHE: this.cache,
      ...(this.podmanSock ? { BERTH_ENGINE: `unix://${this.podmanSock}` } : {}),
      BERTH_NO_AUTOSTART: '1',
    };
  }

  spawn(cmd: string, args: string[], env: NodeJS.ProcessEnv = this.env, logName = 'proc'): ChildProcess {
    const log = openSync(join(this.dir, `${logName}.log`), 'a');
    const child = spawn('nsenter', [`--net=/run/netns/${this.ns}`, cmd, ...args], { env, stdio: ['ignore', log, log] });
    this.procs.push(child);
    return child;
  }

  log(name: string): string {
    const p = join(this.dir, `${name}.log`);
    return existsSync(p) ? readFileSync(p, 'utf8') : '';
  }

  /**
   * A Podman service with storage of its own, inside the host's namespace. With `ownFilesystem`,
   * the storage is a fresh ext4 (with its journal) on a loop file, as a machine's own disk would
   * be, instead of a directory on this machine's root filesystem.
   */
  async startPodman(opts: { ownFilesystem?: boolean } = {}): Promise<void> {
    const sock = join(this.dir, 'podman.sock');
    if (opts.ownFilesystem) {
      const img = join(this.dir, 'storage.img');
      const mnt = join(this.dir, 'storage');
      mkdirSync(mnt, { recursive: true });
      for (const [cmd, args] of [
        ['truncate', ['-s', '16G', img]],
        ['mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', img]],
        ['mount', ['-o', 'loop', img, mnt]],
      ] as const) {
        const r = spawnSync(cmd, args, { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`${cmd} for ${this.name}'s storage failed: ${r.stderr || r.error?.message}`);
      }
    }
    this.spawn(
      'podman',
      ['--root', join(this.dir, 'storage'), '--runroot', join(this.dir, 'run'), 'system', 'service', '--time=0', `unix://${sock}`],
      process.env,
      'podman',
    );
    for (let i = 0; i < 200 && !(await pingUnix(sock, '/_ping')); i++) await sleep(50);
    if (!(await pingUnix(sock, '/_ping'))) throw new Error(`podman did not start on ${this.name}: ${this.log('podman')}`);
    this.podmanSock = sock;
  }

  async startNode(port = 7700): Promise<string> {
    this.daemon = this.spawn(process.execPath, [BERTH, 'daemon', '--listen', `${this.addr}:${port}`], this.env, 'daemon');
    const sock = join(this.home, 'berth.sock');
    for (let i = 0; i < 400 && !(await pingUnix(sock, '/v1/node')); i++) {
      if (this.daemon.exitCode !== null) break;
      await sleep(50);
    }
    if (!(await pingUnix(sock, '/v1/node'))) throw new Error(`node did not start on ${this.name}: ${this.log('daemon')}`);
    return `${this.addr}:${port}`;
  }

  async stopNode(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const d = this.daemon;
    if (!d || d.exitCode !== null || d.signalCode !== null) return;
    const gone = new Promise((r) => d.once('exit', r));
    d.kill(signal);
    await gone;
  }

  get token(): string {
    return readFileSync(join(this.home, 'token'), 'utf8').trim();
  }

  /** The berth CLI as a user on this host types it. */
  cli(args: string[], opts: { stdin?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
    return run('nsenter', [`--net=/run/netns/${this.ns}`, process.execPath, BERTH, ...args], {
      env: { ...this.env, ...opts.env },
      stdin: opts.stdin,
      timeoutMs: opts.timeoutMs,
    });
  }

  async json<T>(args: string[]): Promise<T> {
    const dd = args.indexOf('--');
    const withJson = dd < 0 ? [...args, '--json'] : [...args.slice(0, dd), '--json', ...args.slice(dd)];
    const r = await this.cli(withJson);
    if (r.code !== 0) throw new Error(`[${this.name}] berth ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  async cleanup(): Promise<void> {
    await this.stopNode('SIGTERM').catch(() => {});
    if (this.podmanSock) {
      spawnSync('podman', ['--root', join(this.dir, 'storage'), '--runroot', join(this.dir, 'run'), 'rm', '-fa'], { stdio: 'ignore' });
    }
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await sleep(200);
    // Podman's overlay mounts under the host's storage, then the files.
    const mounts = spawnSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter((m) => m.startsWith(this.dir))
      .sort()
      .reverse();
    for (const m of mounts) spawnSync('umount', ['-l', m]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class TestNetwork {
  readonly bridge: string;
  readonly prefix: string;
  readonly hosts: TestHost[] = [];
  private next = 2;

  private constructor(readonly id: string) {
    this.bridge = `bb${id}`;
    // A /24 in 10.200-249.x: only this bridge and its namespaces ever carry it.
    const n = parseInt(id, 16);
    this.prefix = `10.${200 + (n % 50)}.${(n >> 8) % 256}`;
  }

  static create(): TestNetwork {
    const net = new TestNetwork(
      Math.floor(Math.random() * 0xfffff)
        .toString(16)
        .padStart(5, '0'),
    );
    ip('link', 'add', net.bridge, 'type', 'bridge');
    ip('addr', 'add', `${net.gateway}/24`, 'dev', net.bridge);
    ip('link', 'set', net.bridge, 'up');
    // With br_netfilter, traffic between two hosts on this bridge meets the filter table's
    // FORWARD chain, whose policy dockerd sets to DROP: the test's own bridge is let through
    // (this bridge only, and the rule goes with it).
    spawnSync('iptables', ['-w', '5', '-I', 'FORWARD', '-i', net.bridge, '-o', net.bridge, '-j', 'ACCEPT'], { stdio: 'ignore' });
    return net;
  }

  /** The root namespace's address on the bridge (where the test's proxies listen). */
  get gateway(): string {
    return `${this.prefix}.1`;
  }

  addHost(name: string): TestHost {
    const ns = `b${this.id}-${name}`.slice(0, 15);
    const addr = `${this.prefix}.${this.next++}`;
    const veth = `v${this.id}${this.hosts.length}`;
    ip('netns', 'add', ns);
    ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}p`);
    ip('link', 'set', `${veth}p`, 'netns', ns);
    ip('link', 'set', veth, 'master', this.bridge, 'up');
    ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${addr}/24`, 'dev', `${veth}p`);
    ip('netns', 'exec', ns, 'ip', 'link', 'set', `${veth}p`, 'up');
    ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
    ip('netns', 'exec', ns, 'ip', 'route', 'add', 'default', 'via', this.gateway);
    const h = new TestHost(this, name, ns, addr);
    this.hosts.push(h);
    return h;
  }

  async destroy(): Promise<void> {
    for (const h of this.hosts) {
      await h.cleanup().catch(() => {});
      spawnSync('ip', ['netns', 'del', h.ns]);
    }
    spawnSync('ip', ['link', 'del', this.bridge]);
    spawnSync('iptables', ['-w', '5', '-D', 'FORWARD', '-i', this.bridge, '-o', this.bridge, '-j', 'ACCEPT'], { stdio: 'ignore' });
  }
}

/** Debian's docker-registry on a host. */
export async function startRegistry(host: TestHost, port = 5000): Promise<string> {
  const dir = join(host.dir, 'registry');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: ${host.addr}:${port}\n`,
  );
  host.spawn('docker-registry', ['serve', join(dir, 'config.yml')], process.env, 'registry');
  const url = `${host.addr}:${port}`;
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      http
        .get(`http://${url}/v2/`, (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        })
        .on('error', () => resolve(false));
    });
    if (ok) return url;
    await sleep(100);
  }
  throw new Error(`registry did not start: ${host.log('registry')}`);
}

function pingUnix(socketPath: string, path: string): Promise<boolean> {
  return new Promise((resolve) => {
    if (!existsSync(socketPath)) return resolve(false);
    const req = http.get({ socketPath, path, timeout: 1000 }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 0) < 300);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
  });
}

/**
 * Gives `host` one more address (the cloud metadata address 169.254.169.254, say) and routes
 * that one address from this machine to the host, over the test bridge. The route is a /32 on
 * the bridge the harness owns: should the namespace vanish, packets for the address die on the
 * bridge, and nothing leaves the machine. `remove` takes the address and the route away.
 */
export function routeAddressTo(host: TestHost, addr: string): { remove(): void } {
  const veth = execFileSync('ip', ['-n', host.ns, '-o', 'link', 'show', 'type', 'veth'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => /^\d+:\s+([^@:\s]+)/.exec(l)?.[1])
    .find(Boolean);
  if (!veth) throw new Error(`no veth in namespace ${host.ns}`);
  ip('-n', host.ns, 'addr', 'add', `${addr}/32`, 'dev', veth);
  ip('route', 'add', `${addr}/32`, 'via', host.addr, 'dev', host.net.bridge);
  const via = execFileSync('ip', ['-o', 'route', 'get', addr], { encoding: 'utf8' });
  if (!via.includes(`dev ${host.net.bridge} `)) {
    spawnSync('ip', ['route', 'del', `${addr}/32`, 'dev', host.net.bridge]);
    throw new Error(`${addr} is not routed to the test bridge: ${via}`);
  }
  return {
    remove: () => {
      spawnSync('ip', ['route', 'del', `${addr}/32`, 'dev', host.net.bridge]);
      spawnSync('ip', ['-n', host.ns, 'addr', 'del', `${addr}/32`, 'dev', veth]);
    },
  };
}

/** An HTTP server that records every request it gets: something that must hear nothing. */
export interface Canary {
  readonly port: number;
  /** The requests received so far, as `METHOD URL from ADDRESS`. */
  hits(): string[];
  close(): Promise<void>;
}

/** A canary on `addrs`:`port` inside a test host's namespace, answering 200 `canary`. */
export async function startCanary(host: TestHost, addrs: string[], port = 80): Promise<Canary> {
  const log = join(host.dir, `canary-${port}.hits`);
  const code = `
    const http = require('node:http');
    const fs = require('node:fs');
    const addrs = ${JSON.stringify(addrs)};
    let up = 0;
    for (const a of addrs) {
      http.createServer((req, res) => {
        fs.appendFileSync(${JSON.stringify(log)}, req.method + ' ' + req.url + ' from ' + req.socket.remoteAddress + '\\n');
        res.end('canary');
      }).listen(${port}, a, () => { if (++up === addrs.length) console.log('canary ready'); });
    }`;
  const child = host.spawn(process.execPath, ['-e', code], process.env, `canary-${port}`);
  for (let i = 0; i < 100 && !host.log(`canary-${port}`).includes('canary ready'); i++) {
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  if (!host.log(`canary-${port}`).includes('canary ready')) throw new Error(`canary did not start: ${host.log(`canary-${port}`)}`);
  return {
    port,
    hits: () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : []),
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    },
  };
}

/** A canary on this machine's own loopback, in the test process. */
export async function startLoopbackCanary(): Promise<Canary> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url} from ${req.socket.remoteAddress}`);
    res.setHeader('access-control-allow-origin', '*');
    res.end('canary');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    hits: () => [...seen],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// Enter: stepping into an agent's context from another machine, for real, on test hosts made by
// test/helpers/hosts.ts (network namespaces on a bridge, each with its own Podman storage and
// service and its own berth daemon, plus Debian's docker-registry on a host of its own). The
// laptop's links to the agents node go through a delaying proxy (50 ms round trip, listening on
// the bridge gateway): test/helpers/delay-proxy.ts, the tests' own. The
// workspace is a real Next.js repository whose npm dependencies come to well over 200 MB in
// node_modules. Measured, in one run on this machine:
//
//   1. time-to-enter on a cold laptop (no toolchain, no caches, fresh BERTH_HOME, BERTH_CACHE
//      and Podman storage): `berth enter agents-1/ENV --no-shell --json`, then `berth exec ENV
//      -- true` answering in the local environment; 1 to 3 runs, each on a fresh laptop host;
//   2. the same with warm local caches (the same laptop, `berth rm --discard` between runs);
//   3. "ready to run the tests": enter + `npm ci --offline` + `npm test` in the local
//      environment, cold and warm;
//   4. the naive way on the laptop: git clone, npm ci in a plain container of the toolchain
//      image, and a `podman build` of a Containerfile that copies the workspace;
//   5. `berth push ENV` of a fresh 1 MB change across the delayed link.
//
// Every loop is bounded in count and time. Everything made here (namespaces, bridge, daemons,
// Podman services, storage and mounts, the registry, temporary directories) is removed on
// exit, on error and on signals. One JSON document goes to stdout, progress to stderr.
//
//   node dist/bench/enter.js [--cold-runs 3] [--warm-runs 5] [--ready-warm-runs 2]
//        [--push-runs 5] [--naive-runs 2] [--rtt-ms 50] [--max-seconds 600]
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { homedir, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NodeClient } from '../src/client/client.js';
import type { EnvInfo } from '../src/core/api.js';
import { startRegistry, TestNetwork, type TestHost } from '../test/helpers/hosts.js';
import { startDelayProxy, type DelayProxy } from '../test/helpers/delay-proxy.js';
import {
  BERTH,
  RUN_ID,
  berthRevision,
  errorText,
  log,
  machine,
  mustRun,
  onCleanup,
  p50,
  parseOptions,
  remainingMs,
  run,
  runBench,
  setDeadline,
  stats,
  tempDir,
  timed,
  toolchainDigest,
  ulimitArgs,
  type RunResult,
  treeSize,
} from './lib.js';

const opts = parseOptions({
  'cold-runs': 3,
  'warm-runs': 5,
  'ready-warm-runs': 2,
  'push-runs': 5,
  'naive-runs': 2,
  'rtt-ms': 50,
  'max-seconds': 600,
});
if (opts['cold-runs'] < 1 || opts['cold-runs'] > 3) throw new Error('--cold-runs must be 1, 2 or 3');

/** The targets. */
const TARGETS = { cold_enter_ms: 10_000, warm_enter_p50_ms: 3_000, push_p50_ms: 1_000 };
const ENV = 'greeting';
const NODE = 'agents-1';
const NPM_FLAGS = ['--no-audit', '--no-fund', '--no-update-notifier'];
const HOST_CA = '/etc/ssl/certs/ca-certificates.crt';

const report: Record<string, unknown> = { benchmark: 'enter', run_id: RUN_ID, first_command: ['true'] };
const results: Record<string, unknown> = {};
const notes: string[] = [];

/** The test network, once made: checked at the very end of cleanup. */
const made: { net?: TestNetwork } = {};

const r1 = (x: number): number => Math.round(x * 10) / 10;
const mb = (bytes: number): number => Math.round((bytes / 1e6) * 10) / 10;
const mb3 = (bytes: number): number => Math.round(bytes / 1e3) / 1e3;

// ---- the repository --------------------------------------------------------------------------

/** A small Next.js app: real packages from the npm registry, pinned. */
const PACKAGE_JSON = {
  name: 'greeting-app',
  version: '1.0.0',
  private: true,
  type: 'module',
  scripts: {
    dev: 'next dev',
    build: 'next build',
    start: 'next start',
    lint: 'eslint .',
    test: 'node --test test/greeting.test.js',
  },
  dependencies: { next: '15.5.6', react: '19.2.0', 'react-dom': '19.2.0' },
  devDependencies: { typescript: '5.9.3', eslint: '9.39.1', prettier: '3.6.2', '@types/react': '19.2.2', '@types/node': '22.15.0' },
};

const APP_FILES: Record<string, string> = {
  '.gitignore': 'node_modules/\n.next/\n',
  'README.md': '# greeting-app\n\nA small Next.js app: `npm run dev`, `npm test`.\n',
  'next.config.mjs': 'export default { reactStrictMode: true };\n',
  'tsconfig.json':
    JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          lib: ['dom', 'ES2022'],
          jsx: 'preserve',
          module: 'esnext',
          moduleResolution: 'bundler',
          strict: true,
        },
        include: ['app/**/*.tsx'],
      },
      null,
      2,
    ) + '\n',
  'src/greeting.js':
    "import { createElement } from 'react';\n\nexport function Greeting({ name }) {\n  return createElement('h1', null, `Hello, ${name}!`);\n}\n",
  'app/layout.tsx':
    'export default function RootLayout({ children }: { children: React.ReactNode }) {\n  return (\n    <html lang="en">\n      <body>{children}</body>\n    </html>\n  );\n}\n',
  'app/page.tsx':
    'import { Greeting } from \'../src/greeting.js\';\n\nexport default function Page() {\n  return <Greeting name="world" />;\n}\n',
  'test/greeting.test.js': [
    "import { test } from 'node:test';",
    "import assert from 'node:assert/strict';",
    "import { readFileSync } from 'node:fs';",
    "import { createElement } from 'react';",
    "import { renderToString } from 'react-dom/server';",
    "import ts from 'typescript';",
    "import { Greeting } from '../src/greeting.js';",
    '',
    "test('renders the greeting on the server', () => {",
    "  assert.equal(renderToString(createElement(Greeting, { name: 'berth' })), '<h1>Hello, berth!</h1>');",
    '});',
    '',
    "test('the page compiles as TSX', () => {",
    "  const src = readFileSync(new URL('../app/page.tsx', import.meta.url), 'utf8');",
    '  const out = ts.transpileModule(src, { reportDiagnostics: true, compilerOptions: { jsx: ts.JsxEmit.ReactJSX } });',
    '  assert.deepEqual(out.diagnostics, []);',
    '  assert.match(out.outputText, /Greeting/);',
    '});',
    '',
  ].join('\n'),
};

const CACHE_ROOT = join(homedir(), '.cache', 'berth-bench');

interface NpmTree {
  dir: string;
  cached: boolean;
  installMs: number | null;
}

/**
 * package.json, package-lock.json, node_modules and an npm cache of this lockfile's packages
 * alone, made once with the host's npm under ~/.cache/berth-bench and reused by later runs.
 */
async function npmTree(): Promise<NpmTree> {
  const pkg = JSON.stringify(PACKAGE_JSON, null, 2) + '\n';
  const key = createHash('sha256').update(pkg).digest('hex').slice(0, 12);
  const dir = join(CACHE_ROOT, `enter-${key}`);
  if (existsSync(join(dir, '.complete'))) return { dir, cached: true, installMs: null };
  mkdirSync(CACHE_ROOT, { recursive: true });
  const tmp = `${dir}.tmp-${RUN_ID}`;
  const unregister = onCleanup(`rm ${tmp}`, () => rmSync(tmp, { recursive: true, force: true }));
  mkdirSync(tmp, { recursive: true });
  writeFileSync(join(tmp, 'package.json'), pkg);
  // Resolved URLs in the lockfile (this host's npmrc leaves them out by default), and no
  // install scripts on the host: only the lockfile and the packages' tarballs matter here.
  const args = ['install', '--ignore-scripts', '--omit-lockfile-registry-resolved=false', ...NPM_FLAGS, '--cache', join(tmp, 'npm-cache')];
  log(`npm ${args.join(' ')} in ${tmp} (first run only)`);
  const ms = await timed(() => mustRun('npm', args, { cwd: tmp, timeoutMs: 900_000 }));
  rmSync(join(tmp, 'npm-cache', '_logs'), { recursive: true, force: true });
  writeFileSync(join(tmp, '.complete'), new Date().toISOString() + '\n');
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  unregister();
  return { dir, cached: false, installMs: r1(ms) };
}

/** A git repository on `main`: the app, its package.json and package-lock.json; node_modules ignored. */
function makeAppRepo(tree: NpmTree): string {
  const path = tempDir('berth-bench-enter-repo-');
  for (const [rel, text] of Object.entries(APP_FILES)) {
    mkdirSync(dirname(join(path, rel)), { recursive: true });
    writeFileSync(join(path, rel), text);
  }
  writeFileSync(join(path, 'package.json'), readFileSync(join(tree.dir, 'package.json')));
  writeFileSync(join(path, 'package-lock.json'), readFileSync(join(tree.dir, 'package-lock.json')));
  const g = ['-C', path, '-c', 'user.name=bench', '-c', 'user.email=bench@example.invalid'];
  spawnSync('git', [...g, 'init', '-q', '-b', 'main'], { stdio: 'ignore' });
  spawnSync('git', [...g, 'add', '-A'], { stdio: 'ignore' });
  const c = spawnSync('git', [...g, 'commit', '-q', '-m', 'greeting app'], { encoding: 'utf8' });
  if (c.status !== 0) throw new Error(`git commit in ${path} exited ${c.status}: ${c.stderr}`);
  return path;
}

// ---- hosts and the CLI -----------------------------------------------------------------------

/** The berth CLI as a user on `h` types it (tracked by bench/lib, so cleanup can stop it). */
function cli(h: TestHost, args: string[], timeoutMs = 120_000, env: Record<string, string> = {}): Promise<RunResult> {
  return run('nsenter', [`--net=/run/netns/${h.ns}`, process.execPath, BERTH, ...args], { env: { ...h.env, ...env }, timeoutMs });
}

async function mustCli(h: TestHost, args: string[], timeoutMs = 120_000): Promise<string> {
  const r = await cli(h, args, timeoutMs);
  if (r.code !== 0) {
    throw new Error(
      `[${h.name}] berth ${args.join(' ')} exited ${r.code}: ${(r.stderr.trim() || r.stdout.trim()).split('\n').slice(-8).join('\n')}`,
    );
  }
  return r.stdout;
}

/** A shell command in an environment on `h`, which must succeed; its stdout. */
function sh(h: TestHost, env: string, script: string, timeoutMs = 120_000): Promise<string> {
  return mustCli(h, ['exec', env, '--', 'sh', '-c', script], timeoutMs);
}

function unixGet(socketPath: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path, timeout: 2000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer within 2 s`)));
  });
}

async function hasImage(h: TestHost, digest: string): Promise<boolean> {
  return (await unixGet(h.podmanSock!, `/images/${digest}/json`)).status === 200;
}

/** Bytes the bridge sent to `h` (the root side of its veth transmits what the host receives). */
function bytesInto(net: TestNetwork, h: TestHost): number {
  const veth = `v${net.id}${net.hosts.indexOf(h)}`;
  return Number(readFileSync(`/sys/class/net/${veth}/statistics/tx_bytes`, 'utf8').trim());
}

/**
 * Phase boundaries of an enter, seen from outside every 100 ms: when the toolchain image is
 * in the laptop's storage, and when the local environment is listed as creating and running.
 */
class PhasePoller {
  readonly marks: Record<string, number> = {};
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(
    private readonly t0: number,
    private readonly h: TestHost,
    private readonly digest: string,
    maxMs: number,
  ) {
    this.loop = this.poll(performance.now() + maxMs);
  }

  private async poll(until: number): Promise<void> {
    const sock = join(this.h.home, 'berth.sock');
    const layers = join(this.h.cache, 'layers');
    const staging = join(this.h.cache, 'staging');
    const m = this.marks;
    const mark = (key: string): void => {
      m[key] ??= performance.now() - this.t0;
    };
    while (!this.stopped && performance.now() < until) {
      try {
        // The toolchain's layers arrive in BERTH_CACHE/layers (a .partial while downloading);
        // the engine is asked about the image only after that, so the polling stays light.
        if (m.layers_downloaded === undefined) {
          const files = existsSync(layers) ? readdirSync(layers) : [];
          if (files.length) mark('layers_downloading');
          if (files.some((f) => f.endsWith('.tar')) && !files.some((f) => f.endsWith('.partial'))) mark('layers_downloaded');
        }
        // Podman pulls by itself (no layer file here), so the engine is asked each round.
        if (m.toolchain_present === undefined && (await hasImage(this.h, this.digest))) mark('toolchain_present');
        // Caches the laptop has no volume for are fetched into BERTH_CACHE/staging beside the rest.
        if (m.cache_fetched === undefined) {
          const files = existsSync(staging) ? readdirSync(staging) : [];
          if (files.length) mark('cache_fetching');
          if (files.some((f) => f.endsWith('.tar'))) mark('cache_fetched');
        }
        const r = await unixGet(sock, `/v1/envs/${ENV}`);
        if (r.status === 200) mark(`env_${(JSON.parse(r.body) as EnvInfo).state}`);
      } catch {
        // the next round tries again
      }
      await sleep(100);
    }
  }

  async stop(): Promise<Record<string, number>> {
    this.stopped = true;
    await this.loop;
    return Object.fromEntries(Object.entries(this.marks).map(([k, v]) => [k, r1(v)]));
  }
}

interface Entered extends EnvInfo {
  enterMs: number;
  transferred: { blobs: number; bytes: number };
  toolchainPulled: boolean;
}

interface World {
  net: TestNetwork;
  registry: string;
  agents: TestHost;
  proxy: DelayProxy;
  digest: string;
  repo: string;
}

/** A laptop node with nothing: its own namespace, Podman storage and service, berth home and cache. */
async function makeLaptop(w: World, name: string): Promise<{ host: TestHost; setupMs: number }> {
  const t0 = performance.now();
  const h = w.net.addHost(name);
  // The laptop's engine storage is a disk of its own (a fresh ext4 on a loop file). On this
  // machine's root filesystem (ext4 without a journal), creating a file skips every inode freed
  // in the last 305 s whose inode-table block is dirty, at a buffer lookup each: after the
  // bench's own setup and earlier runs had deleted tens of thousands of files, the same toolchain
  // load took 5 s in one run and 12 s in the next. A laptop's disk carries no such backlog.
  await h.startPodman({ ownFilesystem: true });
  await h.startNode();
  const tokenFile = join(h.dir, `${NODE}.token`);
  writeFileSync(tokenFile, w.agents.token);
  await mustCli(h, ['node', 'add', NODE, `tcp://${w.net.gateway}:${w.proxy.port}`, '--token-file', tokenFile, '--registry', w.registry]);
  return { host: h, setupMs: r1(performance.now() - t0) };
}

/** Removes a laptop host entirely (its daemon, Podman, storage, mounts, namespace). */
async function dropHost(h: TestHost): Promise<void> {
  await h.cleanup();
  spawnSync('ip', ['netns', 'del', h.ns]);
}

// ---- 1 and 2: enter ----------------------------------------------------------------------------

interface EnterSample {
  total_ms: number;
  enter_command_ms: number;
  enter_ms_reported: number;
  first_command_ms: number;
  toolchain_pulled: boolean;
  transferred: { blobs: number; bytes: number };
  bytes_into_laptop_mb: number;
  delayed_link_mb: { to_agents: number; from_agents: number };
  phases?: Record<string, number | null>;
  trace: string[];
}

/** `berth enter agents-1/ENV --no-shell --json`, then `berth exec ENV -- true`: both timed. */
async function enterOnce(w: World, lap: TestHost, watch: boolean): Promise<EnterSample> {
  const rx0 = bytesInto(w.net, lap);
  const link0 = { ...w.proxy.bytes };
  const t0 = performance.now();
  const poller = watch ? new PhasePoller(t0, lap, w.digest, 300_000) : undefined;
  let r: RunResult;
  try {
    r = await cli(lap, ['enter', `${NODE}/${ENV}`, '--no-shell', '--json'], 300_000, { BERTH_TRACE: '1' });
  } finally {
    await poller?.stop();
  }
  const t1 = performance.now();
  if (r.code !== 0) {
    const daemon = lap.log('daemon').trim().split('\n').slice(-12).join('\n');
    throw new Error(
      `berth enter ${NODE}/${ENV} exited ${r.code}: ${r.stderr.trim().split('\n').slice(0, 30).join('\n')}\n[${lap.name} daemon log]\n${daemon}`,
    );
  }
  const e = JSON.parse(r.stdout) as Entered;
  const tr = await cli(lap, ['exec', ENV, '--', 'true']);
  const t2 = performance.now();
  if (tr.code !== 0) throw new Error(`berth exec ${ENV} -- true exited ${tr.code}: ${tr.stderr.trim()}`);
  const sample: EnterSample = {
    total_ms: r1(t2 - t0),
    enter_command_ms: r1(t1 - t0),
    enter_ms_reported: e.enterMs,
    first_command_ms: r1(t2 - t1),
    toolchain_pulled: e.toolchainPulled,
    transferred: e.transferred,
    bytes_into_laptop_mb: mb(bytesInto(w.net, lap) - rx0),
    delayed_link_mb: { to_agents: mb3(w.proxy.bytes.up - link0.up), from_agents: mb3(w.proxy.bytes.down - link0.down) },
    // berth's own account of its steps (BERTH_TRACE), ms from the command's start.
    trace: r.stderr
      .split('\n')
      .map((l) => /^\[trace +(\d+) ms\] (.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => !!m)
      .map((m) => `${m[1]} ${m[2]}`),
  };
  if (poller) {
    const m = poller.marks;
    const at = (k: string): number | null => (m[k] === undefined ? null : m[k]);
    // The toolchain pull and the cache fetch run beside the snapshot and commits, so these are
    // points on one timeline (ms from the command's start), not consecutive spans.
    sample.phases = {
      toolchain_download_start: at('layers_downloading'),
      toolchain_download_end: at('layers_downloaded'),
      toolchain_in_engine: at('toolchain_present'),
      cache_fetch_start: at('cache_fetching'),
      cache_fetch_end: at('cache_fetched'),
      local_env_creating: at('env_creating'),
      local_env_running: at('env_running'),
      enter_returned: r1(t1 - t0),
      first_command_returned: r1(t2 - t0),
    };
  }
  return sample;
}

interface ReadySample {
  ready_ms: number;
  enter_command_ms: number;
  npm_ci_ms: number;
  npm_test_ms: number;
}

/** npm ci --offline and npm test in the local environment, each timed. */
async function readySteps(lap: TestHost): Promise<{ npm_ci_ms: number; npm_test_ms: number }> {
  const ciMs = await timed(() => sh(lap, ENV, `npm ci --offline ${NPM_FLAGS.join(' ')}`, 600_000));
  const testMs = await timed(() => sh(lap, ENV, `npm test --offline ${NPM_FLAGS.join(' ')}`, 300_000));
  return { npm_ci_ms: r1(ciMs), npm_test_ms: r1(testMs) };
}

/** What arrived: the agent's commit as a commit, its uncommitted edit as a change. */
async function checkEntered(lap: TestHost): Promise<Record<string, unknown>> {
  const subject = (await sh(lap, ENV, 'git log -1 --format=%s')).trim();
  const status = (await sh(lap, ENV, 'git status --short')).trim();
  const cache = (await sh(lap, ENV, 'du -sb /root/.npm | cut -f1')).trim();
  return {
    head_subject: subject,
    head_is_agents_commit: subject === 'agent: notes',
    git_status: status,
    agents_edit_present: status.split('\n').includes('M src/greeting.js'),
    npm_cache_mb_local: mb(Number(cache)),
  };
}

// ---- 4: the naive way --------------------------------------------------------------------------

async function naive(w: World, lap: TestHost, label: string, npmCache: string, ci: string[]): Promise<Record<string, unknown>> {
  const dir = join(lap.dir, `naive-${label}`);
  mkdirSync(dir, { recursive: true });
  const ws = join(dir, 'app');
  const inLaptop = [`--net=/run/netns/${lap.ns}`];
  const local = ['--root', join(lap.dir, 'storage'), '--runroot', join(lap.dir, 'run')];
  const remote = ['--remote', '--url', `unix://${lap.podmanSock}`];
  const image = w.digest.slice('sha256:'.length);
  const tag = `localhost/naive-${label}:${RUN_ID}`;
  const steps: Record<string, number> = {};
  steps.git_clone_ms = r1(await timed(() => mustRun('nsenter', [...inLaptop, 'git', 'clone', '-q', w.repo, ws], { timeoutMs: 120_000 })));
  steps.npm_ci_ms = r1(
    await timed(() =>
      mustRun(
        'podman',
        [
          ...local,
          'run',
          '--rm',
          '--network',
          'host',
          ...ulimitArgs(),
          '-v',
          `${ws}:/work`,
          '-w',
          '/work',
          '-v',
          `${npmCache}:/root/.npm`,
          '-v',
          `${HOST_CA}:/usr/local/share/host-ca.crt:ro`,
          '-e',
          'NODE_EXTRA_CA_CERTS=/usr/local/share/host-ca.crt',
          image,
          'npm',
          ...ci,
          ...NPM_FLAGS,
        ],
        { timeoutMs: 600_000 },
      ),
    ),
  );
  const contextMb = mb(Number((await mustRun('du', ['-sb', ws])).split('\t')[0]));
  const containerfile = join(dir, 'Containerfile');
  writeFileSync(containerfile, `FROM ${image}\nCOPY . /workspace\nWORKDIR /workspace\n`);
  steps.podman_build_ms = r1(
    await timed(() =>
      mustRun('nsenter', [...inLaptop, 'podman', ...remote, 'build', '--pull=never', '-q', '-t', tag, '-f', containerfile, ws], {
        timeoutMs: 600_000,
      }),
    ),
  );
  const total = steps.git_clone_ms + steps.npm_ci_ms + steps.podman_build_ms;
  const firstMs = r1(
    await timed(() =>
      mustRun('nsenter', [...inLaptop, 'podman', ...remote, 'run', '--rm', '--network', 'none', ...ulimitArgs(), tag, 'true'], {
        timeoutMs: 120_000,
      }),
    ),
  );
  return {
    label,
    build_context_mb: contextMb,
    steps,
    total_ms: r1(total),
    first_command_in_built_image_ms: firstMs,
    total_with_first_command_ms: r1(total + firstMs),
    how: {
      git_clone: `git clone of the repository's path on the shared file system, in the laptop's namespace`,
      npm_ci: `npm ${[...ci, ...NPM_FLAGS].join(' ')} in a plain Podman container of the toolchain image, on the laptop's own Podman storage (podman --root/--runroot), with the host's CA bundle mounted; the network is the ROOT namespace's (--network host from there), since the laptop namespace has no route to the npm registry`,
      podman_build: `podman --remote build --pull=never against the laptop's Podman service (the context is sent to it, as docker build does), Containerfile: FROM <toolchain> / COPY . /workspace`,
      first_command: 'podman --remote run --rm --network none <built image> true',
    },
  };
}

// ---- 5: push -------------------------------------------------------------------------------------

async function pushSeries(w: World, lap: TestHost): Promise<Record<string, unknown>> {
  await mustCli(lap, ['enter', `${NODE}/${ENV}`, '--no-shell', '--json'], 300_000);
  const wall: number[] = [];
  const reported: number[] = [];
  const samples: Array<Record<string, unknown>> = [];
  let error: string | undefined;
  let stopped: string | undefined;
  const until = performance.now() + Math.min(120_000, remainingMs());
  for (let i = 0; i < opts['push-runs']; i++) {
    if (performance.now() > until) {
      stopped = `time budget spent after ${i} of ${opts['push-runs']} pushes`;
      break;
    }
    try {
      // A fresh 1 MB change, untimed: 1,000,000 bytes of random base64 text, and a small edit.
      const sha = (
        await sh(
          lap,
          ENV,
          `mkdir -p data && head -c 750000 /dev/urandom | base64 -w0 > data/blob.txt && echo "// laptop edit ${i}" >> app/page.tsx && stat -c %s data/blob.txt && sha256sum data/blob.txt | cut -d' ' -f1`,
        )
      )
        .trim()
        .split('\n');
      const link0 = { ...w.proxy.bytes };
      const t0 = performance.now();
      const r = await cli(lap, ['push', ENV, '--json']);
      const ms = performance.now() - t0;
      const link = { to_agents: mb3(w.proxy.bytes.up - link0.up), from_agents: mb3(w.proxy.bytes.down - link0.down) };
      if (r.code !== 0) throw new Error(`berth push ${ENV} exited ${r.code}: ${r.stderr.trim().split('\n').slice(-8).join('\n')}`);
      const out = JSON.parse(r.stdout) as { pushMs: number; files: string[] };
      const there = (await sh(w.agents, ENV, 'sha256sum data/blob.txt | cut -d" " -f1; tail -n 1 app/page.tsx')).trim().split('\n');
      const arrived = there[0] === sha[1] && there[1] === `// laptop edit ${i}`;
      if (!arrived) throw new Error(`push ${i}: the agent's environment has ${JSON.stringify(there)}, not the pushed change`);
      wall.push(ms);
      reported.push(out.pushMs);
      samples.push({
        wall_ms: r1(ms),
        push_ms_reported: out.pushMs,
        change_bytes: Number(sha[0]) + `// laptop edit ${i}\n`.length,
        files_applied: out.files.length,
        delayed_link_mb: link,
      });
      log(`push ${i}: ${r1(ms)} ms (berth says ${out.pushMs} ms)`);
    } catch (err) {
      error = errorText(err);
      log(`push: failed: ${error}`);
      break;
    }
  }
  return {
    how: 'a fresh data/blob.txt of 1,000,000 random base64 bytes plus a one-line edit of app/page.tsx (untimed), then `berth push ENV --json` on the laptop (timed, wall clock of the command); arrival checked by sha256 in the agent environment',
    n: wall.length,
    p50_ms: p50(wall),
    wall: stats(wall),
    reported_push_ms: stats(reported),
    samples,
    ...(stopped ? { stopped_early: stopped } : {}),
    ...(error ? { error } : {}),
  };
}

// ---- setup ---------------------------------------------------------------------------------------

/** The host's npm cache of this lockfile into the agent environment's cache volume, as a tar stream. */
async function seedNpmCache(agents: TestHost, tree: NpmTree): Promise<Record<string, unknown>> {
  const client = new NodeClient({ socketPath: join(agents.home, 'berth.sock') });
  const t0 = performance.now();
  const stderr: Buffer[] = [];
  const h = client.execStream(
    ENV,
    { argv: ['tar', '-x', '-C', '/root/.npm'], interactiveStdin: true, timeoutMs: 600_000 },
    { stdout: () => {}, stderr: (c) => stderr.push(c) },
  );
  const tar = spawn('tar', ['-c', '-C', join(tree.dir, 'npm-cache'), '--exclude=./_logs', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const unregister = onCleanup(`kill tar ${tar.pid}`, () => void tar.kill('SIGKILL'));
  const tarErr: Buffer[] = [];
  tar.stderr.on('data', (c: Buffer) => tarErr.push(c));
  let sent = 0;
  // Flow control: hold the tar while the node has not taken what was sent.
  const drain = async (): Promise<void> => {
    for (let i = 0; i < 6000 && h.buffered() > 16 << 20; i++) await sleep(10);
    tar.stdout.resume();
  };
  tar.stdout.on('data', (c: Buffer) => {
    sent += c.length;
    h.writeStdin(c);
    if (h.buffered() > 16 << 20) {
      tar.stdout.pause();
      void drain();
    }
  });
  tar.stdout.on('end', () => h.endStdin());
  const tarExit = new Promise<number>((resolve) => tar.on('close', (code) => resolve(code ?? 1)));
  try {
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('seeding the npm cache: no end within 600 s')), 600_000);
    });
    const [r, code] = await Promise.race([Promise.all([h.wait(), tarExit]), limit]).finally(() => clearTimeout(timer));
    if (code !== 0) throw new Error(`host tar exited ${code}: ${Buffer.concat(tarErr).toString('utf8').trim()}`);
    if (r.exitCode !== 0) throw new Error(`tar -x in ${ENV} exited ${r.exitCode}: ${Buffer.concat(stderr).toString('utf8').trim()}`);
  } finally {
    tar.kill('SIGKILL');
    unregister();
    client.close();
  }
  return { tar_mb: mb(sent), ms: r1(performance.now() - t0) };
}

async function setupWorld(tree: NpmTree): Promise<World> {
  const setup: Record<string, unknown> = {};
  report.setup = setup;
  const digest = await toolchainDigest();
  const repo = makeAppRepo(tree);

  const net = TestNetwork.create();
  made.net = net;
  onCleanup(`destroy test network ${net.bridge}`, () => net.destroy());
  const reg = net.addHost('registry');
  const agents = net.addHost('agents1');
  const registry = await startRegistry(reg);
  log(`network ${net.bridge} ${net.prefix}.0/24, registry on ${registry}`);

  // The toolchain this machine built goes to the registry; the agents node takes it from there.
  const pushMs = await timed(async () => {
    const out = await mustRun(process.execPath, [BERTH, 'toolchain', 'push', digest, '--registry', registry, '--json'], {
      timeoutMs: 300_000,
    });
    setup.toolchain_push = JSON.parse(out) as unknown;
  });
  await agents.startPodman();
  const pullMs = await timed(async () => {
    const out = await mustCli(agents, ['toolchain', 'pull', digest, '--registry', registry, '--json'], 300_000);
    setup.toolchain_pull_agents = JSON.parse(out) as unknown;
  });
  const img = JSON.parse((await unixGet(agents.podmanSock!, `/images/${digest}/json`)).body) as { Size?: number };
  await agents.startNode();
  const proxy = await startDelayProxy({ host: agents.addr, port: 7700 }, opts['rtt-ms'], net.gateway);
  onCleanup('close the delay proxy', () => proxy.close());
  log(`agents node on ${agents.addr}:7700, delayed (${opts['rtt-ms']} ms round trip) on ${net.gateway}:${proxy.port}`);

  // The agent's environment: the repository, npm ci inside it, an edit and a commit.
  const createMs = await timed(() =>
    mustCli(agents, ['new', ENV, '--repo', repo, '--agent', 'claude-1', '--task', 'fix the greeting', '--network', 'none', '--json']),
  );
  const seed = await seedNpmCache(agents, tree);
  const ciMs = await timed(() => sh(agents, ENV, `npm ci --offline ${NPM_FLAGS.join(' ')}`, 600_000));
  const sizes = (
    await sh(
      agents,
      ENV,
      'du -sb node_modules | cut -f1; find node_modules -type f | wc -l; du -sb /root/.npm | cut -f1; git ls-files | wc -l; git ls-files -z | xargs -0 cat | wc -c; node --version; npm --version',
      120_000,
    )
  )
    .trim()
    .split('\n');
  await sh(
    agents,
    ENV,
    'echo "- agent: the greeting takes a name" >> README.md && git commit -qam "agent: notes" && echo "// agent: wip" >> src/greeting.js',
  );
  const hostTree = treeSize(join(tree.dir, 'node_modules'));
  const lock = JSON.parse(readFileSync(join(tree.dir, 'package-lock.json'), 'utf8')) as { packages?: Record<string, unknown> };

  Object.assign(setup, {
    network: {
      bridge: net.bridge,
      subnet: `${net.prefix}.0/24`,
      gateway: net.gateway,
      hosts: { registry: reg.addr, agents: agents.addr },
      delay: `a delaying TCP proxy (test/helpers/delay-proxy.ts: in order, ends passed on behind their data) on ${net.gateway}:${proxy.port}, ${opts['rtt-ms']} ms round trip, in front of ${NODE} (${agents.addr}:7700): every link from the laptop to the agents node (API, git fetch, blobs, caches) goes through it; the registry is reached directly on the bridge`,
    },
    toolchain: { digest, size_mb: img.Size ? mb(img.Size) : null, push_to_registry_ms: r1(pushMs), pull_into_agents_ms: r1(pullMs) },
    repo: {
      what: 'a small Next.js app (app router page, a React component, node:test tests); package.json and package-lock.json committed, node_modules in .gitignore',
      path: repo,
      dependencies: PACKAGE_JSON.dependencies,
      dev_dependencies: PACKAGE_JSON.devDependencies,
      lockfile_packages: Object.keys(lock.packages ?? {}).length - 1,
      tracked_files: Number(sizes[3]),
      tracked_mb: mb(Number(sizes[4])),
      node_modules_mb: mb(Number(sizes[0])),
      node_modules_files: Number(sizes[1]),
      npm_cache_mb: mb(Number(sizes[2])),
      host_node_modules: { mb: mb(hostTree.bytes), files: hostTree.files, dir: join(tree.dir, 'node_modules') },
      host_install: tree.cached ? `reused from ${tree.dir}` : `npm install --ignore-scripts on the host: ${tree.installMs} ms`,
    },
    agent_env: {
      name: `${NODE}/${ENV}`,
      network: 'none',
      create_ms: r1(createMs),
      npm_cache_seed: {
        ...seed,
        how: "the host's npm cache of this lockfile, tar-piped through the node API into the environment's npm cache volume (keyed by the lockfile): the agents namespace has no route to the npm registry",
      },
      npm_ci_offline_ms: r1(ciMs),
      toolchain_node: sizes[5],
      toolchain_npm: sizes[6],
      work: 'a commit (README.md, "agent: notes") and an uncommitted edit of src/greeting.js',
    },
  });
  log(`agent environment ready: node_modules ${mb(Number(sizes[0]))} MB in ${sizes[1]} files, npm cache ${mb(Number(sizes[2]))} MB`);
  return { net, registry, agents, proxy, digest, repo };
}

// ---- the run -------------------------------------------------------------------------------------

function target(name: string, targetMs: number, valueMs: number | null, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, target_ms: targetMs, value_ms: valueMs, pass: valueMs === null ? null : valueMs <= targetMs, ...extra };
}

async function coldRun(w: World, i: number): Promise<{ host: TestHost; sample: Record<string, unknown>; ms: number }> {
  const t0 = performance.now();
  const { host: lap, setupMs } = await makeLaptop(w, `laptop${i}`);
  const cold = {
    toolchain_in_storage: await hasImage(lap, w.digest),
    berth_cache_entries: existsSync(lap.cache) ? readdirSync(lap.cache).length : 0,
    fresh_dirs: lap.dir,
  };
  log(`cold ${i}: laptop ${lap.addr} ready in ${setupMs} ms; entering`);
  const e = await enterOnce(w, lap, true);
  log(`cold ${i}: enter + true ${e.total_ms} ms (enter ${e.enter_command_ms} ms, berth says ${e.enter_ms_reported} ms)`);
  const check = await checkEntered(lap);
  const ready = await readySteps(lap);
  const readyMs = r1(e.enter_command_ms + ready.npm_ci_ms + ready.npm_test_ms);
  log(`cold ${i}: ready to run the tests in ${readyMs} ms (npm ci ${ready.npm_ci_ms} ms, npm test ${ready.npm_test_ms} ms)`);
  const sample = {
    laptop: lap.name,
    laptop_setup_ms_untimed: setupMs,
    cold_before: cold,
    ...e,
    check,
    ready: { ready_ms: readyMs, ...ready },
  };
  return { host: lap, sample, ms: performance.now() - t0 };
}

runBench(report, (opts['max-seconds'] + 120) * 1000, async () => {
  setDeadline(opts['max-seconds'] * 1000);
  report.machine = {
    ...(await machine([])),
    podman: (await mustRun('podman', ['version', '--format', '{{.Client.Version}}'])).trim(),
    git: (await mustRun('git', ['--version'])).trim(),
    host_npm: (await mustRun('npm', ['--version'])).trim(),
  };
  report.options = opts;
  report.berth = berthRevision();
  report.percentiles = 'linear interpolation between closest ranks';
  report.results = results;
  report.notes = notes;
  // Verified after everything else is cleaned up (registered first, so it runs last).
  onCleanup('check that nothing is left', () => {
    const net = made.net;
    if (!net) return;
    const netns = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    const mounts = spawnSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' }).stdout.split('\n');
    report.cleanup_check = {
      namespaces_left: net.hosts.filter((h) => netns.includes(h.ns)).map((h) => h.ns),
      bridge_left: existsSync(`/sys/class/net/${net.bridge}`),
      host_dirs_left: net.hosts.filter((h) => existsSync(h.dir)).map((h) => h.dir),
      mounts_left: mounts.filter((m) => net.hosts.some((h) => m.startsWith(h.dir))),
      processes_left: net.hosts.flatMap((h) =>
        h.procs
          .filter((p) => {
            try {
              return p.pid !== undefined && process.kill(p.pid, 0);
            } catch {
              return false;
            }
          })
          .map((p) => `${h.name}:${p.pid}`),
      ),
    };
  });

  log('workspace: npm tree (cached in ~/.cache/berth-bench)');
  const tree = await npmTree();
  const w = await setupWorld(tree);

  // 1 + 3 (cold): the first cold run's laptop stays for the warm runs, the naive way and push.
  const colds: Array<Record<string, unknown>> = [];
  const coldErrors: string[] = [];
  let lap: TestHost | undefined;
  let coldMs = 0;
  try {
    const c = await coldRun(w, 1);
    lap = c.host;
    coldMs = c.ms;
    colds.push(c.sample);
  } catch (err) {
    coldErrors.push(errorText(err));
    log(`cold 1 failed: ${errorText(err)}`);
  }
  if (!lap) throw new Error(`the first cold enter failed: ${coldErrors.join('; ')}`);

  // 2: warm, on the same laptop.
  const warm: EnterSample[] = [];
  let warmError: string | undefined;
  const warmUntil = performance.now() + Math.min(120_000, remainingMs());
  for (let i = 0; i < opts['warm-runs'] && performance.now() < warmUntil; i++) {
    try {
      await mustCli(lap, ['rm', '--discard', ENV]);
      const e = await enterOnce(w, lap, false);
      warm.push(e);
      log(`warm ${i + 1}: enter + true ${e.total_ms} ms (enter ${e.enter_command_ms} ms, berth says ${e.enter_ms_reported} ms)`);
    } catch (err) {
      warmError = errorText(err);
      log(`warm: failed: ${warmError}`);
      break;
    }
  }

  // 3 (warm): enter + npm ci --offline + npm test.
  const readyWarm: ReadySample[] = [];
  let readyWarmError: string | undefined;
  const readyUntil = performance.now() + Math.min(150_000, remainingMs() - 240_000);
  for (let i = 0; i < opts['ready-warm-runs'] && performance.now() < readyUntil; i++) {
    try {
      await mustCli(lap, ['rm', '--discard', ENV]);
      const e = await enterOnce(w, lap, false);
      const r = await readySteps(lap);
      readyWarm.push({ ready_ms: r1(e.enter_command_ms + r.npm_ci_ms + r.npm_test_ms), enter_command_ms: e.enter_command_ms, ...r });
      log(`warm ready ${i + 1}: ${readyWarm[readyWarm.length - 1]!.ready_ms} ms`);
    } catch (err) {
      readyWarmError = errorText(err);
      log(`warm ready: failed: ${readyWarmError}`);
      break;
    }
  }
  await mustCli(lap, ['rm', '--discard', ENV]).catch((err: unknown) => notes.push(`rm ${ENV} before the naive way: ${errorText(err)}`));

  // 4: the naive way, on the same laptop: a cold npm cache, then a warm one.
  const naiveRows: Array<Record<string, unknown>> = [];
  const npmCache = join(lap.dir, 'naive-npm-cache');
  mkdirSync(npmCache, { recursive: true });
  for (let i = 0; i < opts['naive-runs']; i++) {
    const label = i === 0 ? 'cold-npm-cache' : `warm-npm-cache-${i}`;
    if (i > 0 && remainingMs() < 240_000) {
      notes.push(`naive ${label}: skipped, ${Math.round(remainingMs() / 1000)} s of the run's budget left`);
      break;
    }
    try {
      log(`naive ${label}: clone, npm ci, podman build`);
      const row = await naive(w, lap, label, npmCache, i === 0 ? ['ci'] : ['ci', '--prefer-offline']);
      naiveRows.push(row);
      log(`naive ${label}: ${JSON.stringify(row.steps)} total ${String(row.total_ms)} ms`);
    } catch (err) {
      naiveRows.push({ label, error: errorText(err) });
      log(`naive ${label}: failed: ${errorText(err)}`);
      break;
    }
  }

  // 1 + 3 (cold), again, on fresh laptops, while the budget allows (push still to come).
  const pushReserveMs = 120_000;
  // Dropped after the last cold run, so no cold run follows a big delete of this bench's own.
  const extraLaptops: TestHost[] = [];
  for (let i = 2; i <= opts['cold-runs']; i++) {
    const need = coldMs * 1.25 + pushReserveMs;
    if (remainingMs() < need) {
      notes.push(
        `cold run ${i}: not started, ${Math.round(remainingMs() / 1000)} s of the run's budget left and one takes about ${Math.round(coldMs / 1000)} s (plus ${pushReserveMs / 1000} s kept for push)`,
      );
      break;
    }
    try {
      const c = await coldRun(w, i);
      colds.push(c.sample);
      extraLaptops.push(c.host);
    } catch (err) {
      coldErrors.push(errorText(err));
      log(`cold ${i} failed: ${errorText(err)}`);
      break;
    }
  }

  for (const h of extraLaptops) await dropHost(h);

  // 5: push, from the first laptop.
  let push: Record<string, unknown>;
  try {
    push = await pushSeries(w, lap);
  } catch (err) {
    push = { error: errorText(err) };
  }

  const coldTotals = colds.map((c) => c.total_ms as number);
  const coldReady = colds.map((c) => (c.ready as { ready_ms: number }).ready_ms);
  const warmTotals = warm.map((s) => s.total_ms);
  results.cold_enter = {
    how: 'fresh laptop host each run (namespace, Podman storage and service, BERTH_HOME, BERTH_CACHE); wall clock from starting `berth enter agents-1/ENV --no-shell --json` (through nsenter) until `berth exec ENV -- true` has returned; phases observed by polling the laptop every 100 ms (±100 ms)',
    n: colds.length,
    p50_ms: p50(coldTotals),
    stats: stats(coldTotals),
    runs: colds,
    ...(coldErrors.length ? { errors: coldErrors } : {}),
  };
  results.warm_enter = {
    how: 'the first cold laptop, `berth rm --discard ENV` (untimed) before each run; same clock as cold',
    n: warm.length,
    p50_ms: p50(warmTotals),
    stats: stats(warmTotals),
    enter_command: stats(warm.map((s) => s.enter_command_ms)),
    enter_ms_reported: stats(warm.map((s) => s.enter_ms_reported)),
    first_command: stats(warm.map((s) => s.first_command_ms)),
    runs: warm,
    ...(warmError ? { error: warmError } : {}),
  };
  results.ready_to_run_tests = {
    how: `enter command + \`npm ci --offline ${NPM_FLAGS.join(' ')}\` + \`npm test\` in the local environment (each through \`berth exec\`); the npm cache is the one enter restored (cold: from the agents node; warm: the laptop's own cache volume)`,
    cold: { n: coldReady.length, p50_ms: p50(coldReady), runs: colds.map((c) => c.ready) },
    warm: {
      n: readyWarm.length,
      p50_ms: p50(readyWarm.map((r) => r.ready_ms)),
      runs: readyWarm,
      ...(readyWarmError ? { error: readyWarmError } : {}),
    },
  };
  results.naive = naiveRows;
  results.push = push;

  const coldP50 = p50(coldTotals);
  const worst = coldTotals.length ? Math.max(...coldTotals) : null;
  report.targets = [
    target('cold enter (enter + first command), p50 of cold runs', TARGETS.cold_enter_ms, coldP50, {
      runs: coldTotals.length,
      worst_ms: worst,
      worst_pass: worst === null ? null : worst <= TARGETS.cold_enter_ms,
    }),
    target('warm enter (enter + first command), p50', TARGETS.warm_enter_p50_ms, p50(warmTotals), { runs: warmTotals.length }),
    target('push of a 1 MB change, p50 (command wall clock)', TARGETS.push_p50_ms, (push.p50_ms as number | null | undefined) ?? null, {
      runs: push.n ?? 0,
    }),
  ];
  const cold0 = naiveRows[0];
  report.comparison = {
    naive_total_ms_cold_npm_cache: cold0?.total_ms ?? null,
    naive_total_ms_warm_npm_cache: naiveRows[1]?.total_ms ?? null,
    berth_ready_to_run_tests_cold_p50_ms: p50(coldReady),
    berth_ready_to_run_tests_warm_p50_ms: p50(readyWarm.map((r) => r.ready_ms)),
    berth_enter_cold_p50_ms: coldP50,
    berth_enter_warm_p50_ms: p50(warmTotals),
    note: 'the naive way ends with an image and no tests run; the naive laptop already had the toolchain image (pulled by the first cold enter), so no base-image pull is in its figures',
  };
  for (const h of w.net.hosts) {
    const d = h.log('daemon');
    if (/internal error/i.test(d))
      notes.push(
        `${h.name} daemon log mentions an internal error: ${d
          .split('\n')
          .filter((l) => /internal error/i.test(l))
          .slice(0, 3)
          .join(' | ')}`,
      );
  }
  report.loadavg_at_end = loadavg().map((x) => Math.round(x * 100) / 100);
  log('done');
});

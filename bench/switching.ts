// Switching: how fast an agent moves between environments, side by side with the engines'
// own tools, on one realistic workspace (a git repository whose node_modules is built here
// from the npm registry), in one run on this machine:
//
//   1. snapshot p50 after a small edit: berth's copy path (the git diff) and its btrfs path
//      (copy-on-write subvolumes), against `podman commit` / `docker commit` of a container
//      holding the same workspace;
//   2. fork to first command: createEnv from that snapshot + exec true, both paths, against
//      `podman run` / `docker run` of the committed image + a first command;
//   3. pause + resume round trip, against `podman pause`/`unpause` and `docker pause`/`unpause`
//      (CLI and engine API);
//   4. pool claim to first command, against a cold createEnv with noPool;
//   5. cache reuse: bytes on the environment's network interface during `npm ci` in a first
//      environment and `npm ci --prefer-offline` in a second one with the same lockfile;
//   6. 100 idle environments: the node's memory before and after, and each container's.
//
// Every loop is bounded in count and time. Everything made here (environments, daemons,
// containers, images, cache volumes, btrfs mounts, temporary directories) is removed on exit,
// on error and on signals. One JSON document goes to stdout, progress to stderr.
//
//   node dist/bench/switching.js [--engines podman,docker] [--snaps 10] [--forks 5]
//        [--pauses 20] [--claims 10] [--idle 100] [--skip btrfs,copy,pause,pool,cache,idle,commit]
//        [--max-seconds 480]
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EnvInfo, ExecResult } from '../src/core/api.js';
import { cacheVolumeName } from '../src/workspace/cache-keys.js';
import {
  BerthNode,
  ENGINE_CLI,
  EngineApi,
  RUN_ID,
  Sampler,
  berthRevision,
  engineList,
  errorText,
  failedRow,
  isMountPoint,
  labelArgs,
  log,
  machine,
  makeRepo,
  mustRun,
  onCleanup,
  p50,
  parseOptions,
  ratio,
  remainingMs,
  run,
  runBench,
  series,
  setDeadline,
  startIdleContainer,
  tempDir,
  timed,
  toolchainDigest,
  ulimitArgs,
  unmount,
  type EngineName,
  type Row,
  treeSize,
} from './lib.js';

const opts = parseOptions({
  /** berth daemons for pause/resume and pool claims; the first one also runs everything else. */
  engines: 'podman,docker',
  snaps: 10,
  forks: 5,
  pauses: 20,
  claims: 10,
  'pool-size': 3,
  idle: 100,
  'idle-concurrency': 4,
  'idle-seconds': 150,
  /** Also `docker commit` / `docker run` on the same workspace (0 to leave it out). */
  'docker-commit': 1,
  skip: '',
  'max-seconds': 480,
});
const skip = new Set(opts.skip.split(',').filter(Boolean));

const TARGETS = {
  snapshot_p50_ms: 300,
  fork_to_first_command_p50_ms: 500,
  pause_resume_p50_ms: 100,
  pool_claim_to_first_command_p50_ms: 50,
  cache_reuse_registry_bytes: 0,
  idle_overhead_mb_per_env: 15,
};

/**
 * The big workspace's dependencies: real packages from the npm registry, pinned at the top
 * level, chosen so that node_modules comes to roughly 500 MB in about 20,000 files. The
 * bench measures and reports what it actually got.
 */
const BIG_DEPS: Record<string, string> = {
  '@babel/core': '7.28.5',
  '@babel/preset-env': '7.28.5',
  '@swc/core': '1.13.5',
  '@types/node': '22.15.0',
  esbuild: '0.25.11',
  eslint: '9.39.1',
  jest: '30.2.0',
  lodash: '4.17.21',
  next: '15.5.6',
  prettier: '3.6.2',
  react: '19.2.0',
  'react-dom': '19.2.0',
  rxjs: '7.8.2',
  three: '0.180.0',
  typescript: '5.9.3',
  webpack: '5.102.1',
  'webpack-cli': '6.0.1',
};
/** A small real lockfile for the cache test: a few packages, no install scripts. */
const SMALL_DEPS: Record<string, string> = { chalk: '4.1.2', ms: '2.1.3', 'is-number': '7.0.0' };
/** A file that is in node_modules and not in git: whether a fork carries it. */
const NODE_MODULES_PROBE = 'node_modules/typescript/package.json';
const NPM_FLAGS = ['--no-audit', '--no-fund', '--no-update-notifier'];

const report: Record<string, unknown> = { benchmark: 'switching', first_command: ['true'], run_id: RUN_ID };
const results: Record<string, unknown> = {};
const notes: string[] = [];
/** Cache volume names berth made for this run's lockfiles (unique to the run: see npmRepo). */
const cacheVolumes = new Set<string>();

function trackCaches(info: EnvInfo): EnvInfo {
  for (const [kind, key] of Object.entries(info.cacheKeys)) cacheVolumes.add(cacheVolumeName(kind, key));
  return info;
}

// ---- small helpers -----------------------------------------------------------------------

const r1 = (x: number): number => Math.round(x * 10) / 10;
const mb = (bytes: number): number => Math.round((bytes / 1e6) * 10) / 10;

function text(b64: string): string {
  return Buffer.from(b64, 'base64').toString('utf8');
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A command in an environment that must succeed; returns its stdout. */
async function sh(node: BerthNode, env: string, script: string, timeoutMs = 120_000): Promise<string> {
  const r: ExecResult = await withTimeout(node.client.exec(env, { argv: ['sh', '-c', script], timeoutMs }), timeoutMs + 10_000, script);
  if (r.exitCode !== 0) throw new Error(`\`sh -c ${script}\` in ${env} exited ${r.exitCode}: ${text(r.stderr).trim().slice(-600)}`);
  return text(r.stdout);
}

async function firstCommand(node: BerthNode, env: string): Promise<void> {
  const r = await node.client.exec(env, { argv: ['true'] });
  if (r.exitCode !== 0) throw new Error(`exec true in ${env} exited ${r.exitCode}`);
}

/** Stops a daemon; a problem stopping it is reported, and does not end the run. */
async function stopNode(node: BerthNode): Promise<void> {
  await node.stop().catch((err: unknown) => {
    log(`stopping the daemon on ${node.engine}: ${errorText(err)}`);
    notes.push(`stopping the daemon on ${node.engine} (${node.home}): ${errorText(err)}`);
  });
}

async function removeQuietly(node: BerthNode, env: string): Promise<void> {
  await node.client.removeEnv(env, { discard: true }).catch((err: unknown) => log(`rm ${env}: ${errorText(err)}`));
}

function budgetLeft(section: string, needMs: number): boolean {
  if (remainingMs() >= needMs) return true;
  const why = `skipped: ${Math.round(remainingMs() / 1000)} s of the run's budget left, ${needMs / 1000} s needed`;
  log(`${section}: ${why}`);
  notes.push(`${section} ${why}`);
  return false;
}

// ---- the workspace -----------------------------------------------------------------------

const CACHE_ROOT = join(homedir(), '.cache', 'berth-bench');

interface NpmTree {
  dir: string;
  /** True when it was already in the cache from an earlier run. */
  cached: boolean;
  installMs: number | null;
}

/**
 * package.json and package-lock.json for `deps` (and node_modules unless `lockOnly`), built
 * with the host's npm into ~/.cache/berth-bench, so later runs reuse them.
 */
async function npmTree(label: string, deps: Record<string, string>, lockOnly: boolean): Promise<NpmTree> {
  const key = createHash('sha256').update(JSON.stringify({ deps, lockOnly })).digest('hex').slice(0, 12);
  const dir = join(CACHE_ROOT, `switching-${label}-${key}`);
  if (existsSync(join(dir, '.complete'))) return { dir, cached: true, installMs: null };
  mkdirSync(CACHE_ROOT, { recursive: true });
  const tmp = `${dir}.tmp-${RUN_ID}`;
  const unregister = onCleanup(`rm ${tmp}`, () => rmSync(tmp, { recursive: true, force: true }));
  mkdirSync(tmp, { recursive: true });
  writeFileSync(
    join(tmp, 'package.json'),
    JSON.stringify({ name: `berth-bench-${label}`, version: '1.0.0', private: true, dependencies: deps }, null, 2) + '\n',
  );
  const args = [
    'install',
    '--ignore-scripts',
    ...NPM_FLAGS,
    '--cache',
    join(CACHE_ROOT, 'npm-cache'),
    ...(lockOnly ? ['--package-lock-only'] : []),
  ];
  log(`npm ${args.join(' ')} in ${tmp} (first run only)`);
  const ms = await timed(() => mustRun('npm', args, { cwd: tmp, timeoutMs: 900_000 }));
  writeFileSync(join(tmp, '.complete'), new Date().toISOString() + '\n');
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  unregister();
  return { dir, cached: false, installMs: r1(ms) };
}

/**
 * A real git repository on `main` with the tree's package.json and package-lock.json
 * committed and node_modules ignored. The package's name carries this run's id, so its
 * lockfile, and the cache volume berth keys on it, are this run's alone.
 */
function npmRepo(tree: NpmTree, label: string): string {
  const path = tempDir(`berth-bench-${label}-repo-`);
  const name = `berth-bench-${label}-${RUN_ID}`;
  const pkg = JSON.parse(readFileSync(join(tree.dir, 'package.json'), 'utf8')) as Record<string, unknown>;
  const lock = JSON.parse(readFileSync(join(tree.dir, 'package-lock.json'), 'utf8')) as {
    name?: string;
    packages?: Record<string, { name?: string }>;
  };
  pkg.name = name;
  lock.name = name;
  if (lock.packages?.['']) lock.packages[''].name = name;
  writeFileSync(join(path, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
  writeFileSync(join(path, 'package-lock.json'), JSON.stringify(lock, null, 2) + '\n');
  writeFileSync(join(path, '.gitignore'), 'node_modules/\n');
  mkdirSync(join(path, 'src'));
  writeFileSync(join(path, 'src', 'index.js'), "module.exports = require('lodash').identity;\n");
  const g = (...args: string[]): void => {
    execFileSync('git', ['-C', path, '-c', 'user.name=bench', '-c', 'user.email=bench@example.invalid', ...args], { stdio: 'ignore' });
  };
  g('init', '-q', '-b', 'main');
  g('add', '-A');
  g('commit', '-q', '-m', 'initial');
  return path;
}

/**
 * Copies the host's node_modules into an environment's /workspace: `tar -c` on the host,
 * piped through NodeClient.execStream into `tar -x` inside.
 */
async function seedNodeModules(node: BerthNode, env: string, tree: NpmTree): Promise<Record<string, unknown>> {
  const daemonBefore = procStatusBytes(node.proc.pid!, 'VmRSS');
  const t0 = performance.now();
  const stderr: Buffer[] = [];
  const h = node.client.execStream(
    env,
    { argv: ['tar', '-x', '-C', '/workspace'], interactiveStdin: true, timeoutMs: 600_000 },
    { stdout: () => {}, stderr: (c) => stderr.push(c) },
  );
  const tar = spawn('tar', ['-c', '-C', tree.dir, 'node_modules'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const unregister = onCleanup(`kill tar ${tar.pid}`, () => void tar.kill('SIGKILL'));
  const tarErr: Buffer[] = [];
  tar.stderr.on('data', (c: Buffer) => tarErr.push(c));
  let sent = 0;
  tar.stdout.on('data', (c: Buffer) => {
    sent += c.length;
    h.writeStdin(c);
  });
  tar.stdout.on('end', () => h.endStdin());
  const tarExit = new Promise<number>((resolve) => tar.on('close', (code) => resolve(code ?? 1)));
  try {
    const [r, code] = await withTimeout(Promise.all([h.wait(), tarExit]), 600_000, 'tar pipe into the environment');
    if (code !== 0) throw new Error(`host tar exited ${code}: ${Buffer.concat(tarErr).toString('utf8').trim()}`);
    if (r.exitCode !== 0) throw new Error(`tar -x in ${env} exited ${r.exitCode}: ${Buffer.concat(stderr).toString('utf8').trim()}`);
  } finally {
    tar.kill('SIGKILL');
    unregister();
  }
  const ms = performance.now() - t0;
  // The daemon relays stdin as it comes: its resident memory shows how much it held.
  const daemonRss = procStatusBytes(node.proc.pid!, 'VmRSS');
  const counted = (await sh(node, env, 'find node_modules -type f | wc -l; du -sb node_modules | cut -f1')).trim().split('\n');
  return {
    daemon_rss_before_mb: mb(daemonBefore),
    daemon_rss_after_mb: mb(daemonRss),
    how: 'host `tar -c node_modules` piped through NodeClient.execStream into `tar -x -C /workspace`',
    ms: r1(ms),
    tar_stream_mb: mb(sent),
    mb_per_s: r1(mb(sent) / (ms / 1000)),
    files_in_env: Number(counted[0]),
    mb_in_env: mb(Number(counted[1])),
  };
}

// ---- 2 and 3: snapshots and forks, through berth ----------------------------------------

interface StoragePath {
  label: 'copy' | 'btrfs';
  env?: Record<string, string>;
}

/** Snapshots after a small edit, then forks of the last one; the source environment stays. */
async function snapshotsAndForks(node: BerthNode, path: StoragePath, repo: string, tree: NpmTree): Promise<void> {
  const engine = node.engine;
  const tag = `berth-${path.label}-on-${engine}`;
  const section: Record<string, unknown> = { engine, storage: path.label };
  (results.storage as Record<string, unknown>)[path.label] = section;
  if (path.label === 'btrfs') {
    section.btrfs_mounted = isMountPoint(join(node.home, 'fs'));
    section.storage_gb = Number(path.env?.BERTH_STORAGE_GB);
  }
  const src = `ws-${path.label}`;
  log(`${tag}: creating ${src} from the workspace repository`);
  const createMs = await timed(async () => trackCaches(await node.client.createEnv({ name: src, repo, ref: 'main' })));
  section.source_create_ms = r1(createMs);
  log(`${tag}: copying node_modules in`);
  section.node_modules_seed = await seedNodeModules(node, src, tree);
  log(`${tag}: node_modules in ${src}: ${JSON.stringify(section.node_modules_seed)}`);

  // Snapshots: a small edit (untimed), then NodeClient.snap (timed).
  let edit = 0;
  const serverMs: number[] = [];
  const sizes: Array<{ files: number; bytes: number; newBlobs: number | undefined }> = [];
  let last: string | undefined;
  const snaps = await series(`${tag}-snap`, { n: opts.snaps, warmup: 1, budgetMs: 90_000 }, async (measured) => {
    edit++;
    await sh(node, src, `echo "// edit ${edit}" >> src/index.js`);
    const t0 = performance.now();
    const s = await node.client.snap(src);
    const ms = performance.now() - t0;
    last = s.id;
    if (measured) {
      if (s.ms !== undefined) serverMs.push(s.ms);
      sizes.push({ files: s.files, bytes: s.bytes, newBlobs: s.newBlobs });
    }
    return ms;
  });
  (results.snapshot as Row[]).push(
    snaps.row({
      engine,
      storage: path.label,
      how: 'append a line to src/index.js (untimed), then NodeClient.snap round trip',
      server_ms_p50: p50(serverMs),
      snapshot_files: sizes.at(-1)?.files ?? null,
      snapshot_bytes: sizes.at(-1)?.bytes ?? null,
      new_blobs_p50: p50(sizes.map((s) => s.newBlobs ?? 0)),
    }),
  );

  // Forks of the last snapshot: createEnv({snapshot}) + exec true (timed); checks untimed.
  if (last) {
    const snapshot = last;
    let k = 0;
    let checked: Record<string, unknown> | undefined;
    const createMs: number[] = [];
    const execMs: number[] = [];
    const forks = await series(`${tag}-fork`, { n: opts.forks, warmup: 1, budgetMs: 90_000 }, async (measured) => {
      const name = `fork-${path.label}-${k++}`;
      const t0 = performance.now();
      try {
        const info = trackCaches(await node.client.createEnv({ name, snapshot }));
        const t1 = performance.now();
        await firstCommand(node, name);
        const ms = performance.now() - t0;
        if (measured) {
          createMs.push(t1 - t0);
          execMs.push(ms - (t1 - t0));
        }
        if (!checked) {
          const probe = await node.client.exec(name, { argv: ['test', '-f', NODE_MODULES_PROBE] });
          const edits = (await sh(node, name, 'grep -c "^// edit" src/index.js || true')).trim();
          const files =
            probe.exitCode === 0 ? Number((await sh(node, name, 'find node_modules -type f | wc -l')).trim()) : (null as number | null);
          checked = {
            probe: NODE_MODULES_PROBE,
            node_modules_in_fork: probe.exitCode === 0,
            node_modules_files_in_fork: files,
            edits_in_fork: Number(edits),
            edits_made: edit,
            origin_snapshot: info.origin.snapshot,
          };
          log(`${tag}: fork check ${JSON.stringify(checked)}`);
        }
        return ms;
      } finally {
        await removeQuietly(node, name);
      }
    });
    (results.fork as Row[]).push(
      forks.row({
        engine,
        storage: path.label,
        how: 'NodeClient.createEnv({snapshot}) then exec(["true"]); removeEnv untimed',
        create_p50_ms: p50(createMs),
        first_exec_p50_ms: p50(execMs),
        ...checked,
      }),
    );
  }
}

// ---- 4: pause and resume -----------------------------------------------------------------

async function berthPauseResume(node: BerthNode, env: string): Promise<void> {
  const tag = `berth-pause-resume-on-${node.engine}`;
  const pauses: number[] = [];
  const resumes: number[] = [];
  const s = await series(tag, { n: opts.pauses, warmup: 2, budgetMs: 60_000 }, async (measured) => {
    const t0 = performance.now();
    const paused = await node.client.pause(env);
    const t1 = performance.now();
    const resumed = await node.client.resume(env);
    const t2 = performance.now();
    if (paused.state !== 'paused' || resumed.state !== 'running')
      throw new Error(`pause/resume gave states ${paused.state}/${resumed.state}`);
    if (measured) {
      pauses.push(t1 - t0);
      resumes.push(t2 - t1);
    }
    return t2 - t0;
  });
  // The environment still answers afterwards.
  const after = await timed(() => firstCommand(node, env)).catch((err: unknown) => `failed: ${errorText(err)}`);
  (results.pause_resume as Row[]).push(
    s.row({
      engine: node.engine,
      how: 'NodeClient.pause then NodeClient.resume',
      pause_p50_ms: p50(pauses),
      resume_p50_ms: p50(resumes),
      exec_true_after_ms: typeof after === 'number' ? r1(after) : after,
    }),
  );
}

async function enginePauseResume(engine: EngineName, image: string): Promise<void> {
  const ctr = await startIdleContainer(engine, image);
  const cli = ENGINE_CLI[engine];
  const api = new EngineApi(engine);
  try {
    const c = await series(`${engine}-pause-unpause-cli`, { n: opts.pauses, warmup: 2, budgetMs: 60_000 }, () =>
      timed(async () => {
        await mustRun(cli, ['pause', ctr.id]);
        await mustRun(cli, ['unpause', ctr.id]);
      }),
    );
    (results.pause_resume as Row[]).push(c.row({ engine, how: `${cli} pause <ctr> && ${cli} unpause <ctr>` }));
    const a = await series(`${engine}-pause-unpause-api`, { n: opts.pauses, warmup: 2, budgetMs: 60_000 }, () =>
      timed(async () => {
        await api.json('POST', `/containers/${ctr.id}/pause`);
        await api.json('POST', `/containers/${ctr.id}/unpause`);
      }),
    );
    (results.pause_resume as Row[]).push(
      a.row({ engine, how: `engine API POST /containers/<id>/pause then /unpause over ${engine}'s unix socket` }),
    );
  } finally {
    api.close();
    await ctr.remove();
  }
}

// ---- 5: pool claims ----------------------------------------------------------------------

async function waitWarm(node: BerthNode, pool: string, size: number, ms: number): Promise<number> {
  const t0 = performance.now();
  let warm = -1;
  while (performance.now() - t0 < ms) {
    warm = (await node.client.pools()).find((p) => p.id === pool)?.warm ?? 0;
    if (warm >= size) return performance.now() - t0;
    await sleep(50);
  }
  throw new Error(`pool ${pool} had ${warm} of ${size} warm after ${ms / 1000} s`);
}

async function poolClaims(node: BerthNode, repo: string): Promise<void> {
  const tag = `berth-pool-claim-on-${node.engine}`;
  const size = opts['pool-size'];
  log(`${tag}: setPool size ${size}`);
  const pool = await node.client.setPool({ repo, ref: 'main', size });
  const extra: Record<string, unknown> = { engine: node.engine, pool_size: size };
  try {
    extra.first_fill_ms = r1(await waitWarm(node, pool.id, size, 120_000));
    const claims = new Sampler(tag, opts.claims, 1, 150_000);
    const cold = new Sampler(`berth-cold-create-no-pool-on-${node.engine}`, opts.claims, 1, 150_000);
    const refills: number[] = [];
    const claimCreate: number[] = [];
    const claimExec: number[] = [];
    let fromPool = 0;
    let notFromPool = 0;
    let k = 0;
    log(`${tag}: 1 warm-up + up to ${opts.claims} claims, each followed by a cold create, interleaved`);
    for (let i = 0; i <= opts.claims && (claims.more() || cold.more()); i++) {
      const measured = i > 0;
      if (claims.more()) {
        const name = `claim-${k++}`;
        try {
          const t0 = performance.now();
          const info = trackCaches(await node.client.createEnv({ name, repo, ref: 'main' }));
          const t1 = performance.now();
          await firstCommand(node, name);
          const ms = performance.now() - t0;
          if (info.origin.pool) fromPool++;
          else notFromPool++;
          if (measured && info.origin.pool) {
            claims.add(ms);
            claimCreate.push(t1 - t0);
            claimExec.push(ms - (t1 - t0));
          }
          await node.client.removeEnv(name, { discard: true });
          refills.push(await waitWarm(node, pool.id, size, 60_000));
        } catch (err) {
          claims.fail(err);
          await removeQuietly(node, name);
        }
      }
      if (cold.more()) {
        const name = `cold-${k++}`;
        try {
          const t0 = performance.now();
          trackCaches(await node.client.createEnv({ name, repo, ref: 'main', noPool: true }));
          await firstCommand(node, name);
          if (measured) cold.add(performance.now() - t0);
        } catch (err) {
          cold.fail(err);
        } finally {
          await removeQuietly(node, name);
        }
      }
    }
    log(`${tag}: p50 ${p50(claims.samples)} ms (${fromPool} from the pool, ${notFromPool} not); cold p50 ${p50(cold.samples)} ms`);
    (results.pool_claim as Row[]).push(
      claims.row({
        ...extra,
        how: 'createEnv({repo, ref}) claimed from a warm pool, then exec(["true"]); removal and refill untimed',
        create_p50_ms: p50(claimCreate),
        first_exec_p50_ms: p50(claimExec),
        claims_from_pool: fromPool,
        claims_not_from_pool: notFromPool,
        refill_to_warm_p50_ms: p50(refills),
      }),
      cold.row({ engine: node.engine, how: 'createEnv({repo, ref, noPool: true}) then exec(["true"]); removal untimed' }),
    );
  } finally {
    // Drain the pool: size 0, then wait (bounded) until the daemon has removed its members
    // (none warm, none listed as being removed), so none is mid-removal when the daemon stops.
    await node.client.setPool({ repo, ref: 'main', size: 0 }).catch((err: unknown) => log(`${tag}: drain: ${errorText(err)}`));
    const until = performance.now() + 30_000;
    const prefix = `pool-${pool.id.slice(0, 6)}-`;
    for (;;) {
      const pools = await node.client.pools().catch(() => []);
      const members = (await node.client.listEnvs().catch(() => [])).filter((e) => e.name.startsWith(prefix));
      if (!pools.some((p) => p.id === pool.id && p.warm > 0) && members.length === 0) break;
      if (performance.now() > until) {
        notes.push(`${tag}: pool not drained within 30 s (${members.length} members left: ${members.map((m) => m.state).join(',')})`);
        break;
      }
      await sleep(100);
    }
  }
}

// ---- 6: cache reuse ----------------------------------------------------------------------

/** rx and tx bytes per interface, except loopback, from /proc/net/dev inside the environment. */
async function netDev(node: BerthNode, env: string): Promise<Record<string, { rx: number; tx: number }>> {
  const out: Record<string, { rx: number; tx: number }> = {};
  for (const line of (await sh(node, env, 'cat /proc/net/dev')).split('\n').slice(2)) {
    const m = /^\s*([^:]+):\s*(.*)$/.exec(line);
    if (!m || m[1] === 'lo') continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    out[m[1]!] = { rx: f[0]!, tx: f[8]! };
  }
  return out;
}

function netDelta(
  a: Record<string, { rx: number; tx: number }>,
  b: Record<string, { rx: number; tx: number }>,
): { rx: number; tx: number } {
  let rx = 0;
  let tx = 0;
  for (const [k, v] of Object.entries(b)) {
    rx += v.rx - (a[k]?.rx ?? 0);
    tx += v.tx - (a[k]?.tx ?? 0);
  }
  return { rx, tx };
}

/** npm's own account of its HTTP requests (at --loglevel http): which went to the network. */
function npmHttp(stderr: string): { requests: number; network: number; lines: string[] } {
  const lines = stderr.split('\n').filter((l) => /http fetch/.test(l));
  const network = lines.filter((l) => !/\(cache (hit|stale)\)/.test(l));
  return { requests: lines.length, network: network.length, lines: lines.slice(0, 12) };
}

async function cacheReuse(node: BerthNode, repo: string): Promise<void> {
  const out: Record<string, unknown> = { engine: node.engine, lockfile_packages: Object.keys(SMALL_DEPS) };
  results.cache_reuse = out;
  const one = async (name: string, args: string[]): Promise<Record<string, unknown>> => {
    const info = trackCaches(await node.client.createEnv({ name, repo, ref: 'main' }));
    try {
      const before = await netDev(node, name);
      const t0 = performance.now();
      const r = await node.client.exec(name, { argv: ['npm', ...args, '--loglevel', 'http'], timeoutMs: 300_000 });
      const ms = performance.now() - t0;
      const after = await netDev(node, name);
      if (r.exitCode !== 0) throw new Error(`npm ${args.join(' ')} in ${name} exited ${r.exitCode}: ${text(r.stderr).trim().slice(-800)}`);
      const installed = Number((await sh(node, name, 'ls node_modules | wc -l')).trim());
      // The same interface, idle for as long, with nothing running: background traffic.
      const idle0 = await netDev(node, name);
      await sleep(Math.min(ms, 10_000));
      const idle1 = await netDev(node, name);
      const d = netDelta(before, after);
      const http = npmHttp(text(r.stderr));
      return {
        env: name,
        command: `npm ${args.join(' ')}`,
        cache_keys: info.cacheKeys,
        ms: r1(ms),
        packages_in_node_modules: installed,
        interfaces: Object.keys(after),
        rx_bytes: d.rx,
        tx_bytes: d.tx,
        npm_http_requests: http.requests,
        npm_network_requests: http.network,
        npm_http_log: http.lines,
        idle_baseline: { seconds: r1(Math.min(ms, 10_000) / 1000), ...netDelta(idle0, idle1) },
      };
    } finally {
      await removeQuietly(node, name);
    }
  };
  log('cache-reuse: env A runs npm ci');
  out.a = await one('cache-a', ['ci', ...NPM_FLAGS]);
  log(`cache-reuse: A ${JSON.stringify(out.a)}`);
  log('cache-reuse: env B runs npm ci --prefer-offline');
  out.b = await one('cache-b', ['ci', '--prefer-offline', ...NPM_FLAGS]);
  log(`cache-reuse: B ${JSON.stringify(out.b)}`);
  const a = out.a as { cache_keys: Record<string, string>; rx_bytes: number };
  const b = out.b as { cache_keys: Record<string, string>; rx_bytes: number; tx_bytes: number; npm_network_requests: number };
  out.same_cache_key = JSON.stringify(a.cache_keys) === JSON.stringify(b.cache_keys) && Object.keys(a.cache_keys).length > 0;
  // Registry bytes for B: npm made no request that left the cache, so none of its bytes came
  // from the registry; otherwise count everything the interface received.
  out.registry_bytes_b = b.npm_network_requests === 0 ? 0 : b.rx_bytes;
  out.interface_bytes_b = b.rx_bytes + b.tx_bytes;
  const base = (out.b as { idle_baseline: { seconds: number; rx: number; tx: number } }).idle_baseline;
  out.explanation =
    b.npm_network_requests > 0
      ? `npm made ${b.npm_network_requests} requests that were not served from the cache`
      : b.rx_bytes + b.tx_bytes === 0
        ? 'npm served every fetch from the shared cache volume and nothing crossed the interface'
        : `npm served every fetch from the shared cache volume (no request left the environment); the ${b.rx_bytes} bytes received and ${b.tx_bytes} sent on the interface meanwhile are background traffic: with nothing running, the same interface received ${base.rx} and sent ${base.tx} bytes in ${base.seconds} s`;
}

// ---- 7: idle environments ----------------------------------------------------------------

function meminfo(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of readFileSync('/proc/meminfo', 'utf8').split('\n')) {
    const m = /^(\w+):\s+(\d+) kB/.exec(l);
    if (m) out[m[1]!] = Number(m[2]) * 1024;
  }
  return out;
}

function procStatusBytes(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function pssBytes(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** The memory cgroup of a process, v1 or v2, as a directory under /sys/fs/cgroup. */
function memoryCgroup(pid: number): { dir: string; v2: boolean } | undefined {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
  const v1 = lines.find((l) => l.split(':')[1]?.split(',').includes('memory'));
  if (v1) return { dir: join('/sys/fs/cgroup/memory', v1.split(':')[2]!), v2: false };
  const v2 = lines.find((l) => l.startsWith('0::'));
  return v2 ? { dir: join('/sys/fs/cgroup', v2.slice(3)), v2: true } : undefined;
}

interface ContainerMemory {
  usage: number;
  anon: number;
  cache: number;
  rss: number;
  pss: number;
  procs: number;
}

function containerMemory(pid: number): ContainerMemory | undefined {
  const cg = memoryCgroup(pid);
  if (!cg) return undefined;
  const stat: Record<string, number> = {};
  for (const l of readFileSync(join(cg.dir, 'memory.stat'), 'utf8').split('\n')) {
    const [k, v] = l.split(' ');
    if (k && v) stat[k] = Number(v);
  }
  const usage = Number(readFileSync(join(cg.dir, cg.v2 ? 'memory.current' : 'memory.usage_in_bytes'), 'utf8').trim());
  const procs = readFileSync(join(cg.dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  return {
    usage,
    anon: cg.v2 ? (stat.anon ?? 0) : (stat.total_rss ?? stat.rss ?? 0),
    cache: cg.v2 ? (stat.file ?? 0) : (stat.total_cache ?? stat.cache ?? 0),
    rss: procs.reduce((a, p) => a + procStatusBytes(p, 'VmRSS'), 0),
    pss: procs.reduce((a, p) => a + pssBytes(p), 0),
    procs: procs.length,
  };
}

/** The engine's per-container helper processes on the host (conmon, containerd-shim). */
function shimRss(ids: string[]): { processes: number; rss: number; pss: number } {
  const want = new Set(ids);
  let processes = 0;
  let rss = 0;
  let pss = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const comm = readFileSync(`/proc/${d}/comm`, 'utf8').trim();
      if (comm !== 'conmon' && !comm.startsWith('containerd-shim')) continue;
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (!argv.some((a) => want.has(a))) continue;
      processes++;
      rss += procStatusBytes(Number(d), 'VmRSS');
      pss += pssBytes(Number(d));
    } catch {
      /* gone */
    }
  }
  return { processes, rss, pss };
}

async function idleEnvironments(node: BerthNode, repo: string): Promise<void> {
  const out: Record<string, unknown> = { engine: node.engine, network: 'none', wanted: opts.idle, concurrency: opts['idle-concurrency'] };
  results.idle = out;
  const settle = async (): Promise<void> => {
    await sleep(3000);
  };
  await settle();
  const before = meminfo();
  const daemonBefore = procStatusBytes(node.proc.pid!, 'VmRSS');
  const made: EnvInfo[] = [];
  const createMs: number[] = [];
  let next = 0;
  let stopped: string | undefined;
  const until = performance.now() + Math.min(opts['idle-seconds'] * 1000, Math.max(0, remainingMs() - 90_000));
  const t0 = performance.now();
  const worker = async (upTo: number): Promise<void> => {
    while (next < upTo && stopped === undefined) {
      if (performance.now() > until) {
        stopped ??= `time bound reached after ${made.length} environments`;
        return;
      }
      const name = `idle-${String(next++).padStart(3, '0')}`;
      try {
        const t = performance.now();
        const info = await node.client.createEnv({ name, repo, network: 'none' });
        createMs.push(performance.now() - t);
        made.push(info);
      } catch (err) {
        stopped ??= `creating ${name} failed: ${errorText(err)}`;
      }
    }
  };
  log(`idle: creating up to ${opts.idle} environments, ${opts['idle-concurrency']} at a time`);
  try {
    // The first one alone: it makes the daemon's mirror of the repository. Concurrent first
    // creates of a repository the daemon has not mirrored yet can race in `git init` of the
    // mirror ("cannot copy .../info/exclude: File exists"), which is not what this measures.
    await worker(Math.min(1, opts.idle));
    await Promise.all(Array.from({ length: Math.max(1, opts['idle-concurrency']) }, () => worker(opts.idle)));
    out.made = made.length;
    out.create_seconds = r1((performance.now() - t0) / 1000);
    out.create_p50_ms = p50(createMs);
    if (stopped) out.stopped_early = stopped;
    log(`idle: ${made.length} made in ${out.create_seconds as number} s${stopped ? ` (${stopped})` : ''}; letting them settle`);
    await settle();
    const after = meminfo();
    const daemonAfter = procStatusBytes(node.proc.pid!, 'VmRSS');
    const ids = made.map((e) => e.containerId).filter((x): x is string => !!x);
    const per: ContainerMemory[] = [];
    if (ids.length) {
      const inspected = await mustRun(ENGINE_CLI[node.engine], ['inspect', '--format', '{{.State.Pid}}', ...ids], { timeoutMs: 60_000 });
      for (const pid of inspected.split('\n').filter(Boolean).map(Number)) {
        const m = pid > 0 ? containerMemory(pid) : undefined;
        if (m) per.push(m);
      }
    }
    const shims = shimRss(ids);
    const n = made.length;
    const sum = (f: (m: ContainerMemory) => number): number => per.reduce((a, m) => a + f(m), 0);
    const perEnv = (bytes: number): number | null => (n ? mb(bytes / n) : null);
    out.node = {
      mem_total_mb: mb(before.MemTotal ?? 0),
      mem_free_before_mb: mb(before.MemFree ?? 0),
      mem_free_after_mb: mb(after.MemFree ?? 0),
      mem_available_before_mb: mb(before.MemAvailable ?? 0),
      mem_available_after_mb: mb(after.MemAvailable ?? 0),
      mem_free_drop_per_env_mb: perEnv((before.MemFree ?? 0) - (after.MemFree ?? 0)),
      mem_available_drop_per_env_mb: perEnv((before.MemAvailable ?? 0) - (after.MemAvailable ?? 0)),
      page_cache_growth_per_env_mb: perEnv((after.Cached ?? 0) - (before.Cached ?? 0)),
    };
    out.containers = {
      measured: per.length,
      processes_per_container: per.length ? r1(sum((m) => m.procs) / per.length) : null,
      cgroup_usage_per_env_mb: per.length ? mb(sum((m) => m.usage) / per.length) : null,
      cgroup_anon_rss_per_env_mb: per.length ? mb(sum((m) => m.anon) / per.length) : null,
      cgroup_page_cache_per_env_mb: per.length ? mb(sum((m) => m.cache) / per.length) : null,
      process_rss_sum_per_env_mb: per.length ? mb(sum((m) => m.rss) / per.length) : null,
      process_pss_sum_per_env_mb: per.length ? mb(sum((m) => m.pss) / per.length) : null,
    };
    out.host_side = {
      engine_shims: shims.processes,
      shim_rss_per_env_mb: perEnv(shims.rss),
      shim_pss_per_env_mb: perEnv(shims.pss),
      daemon_rss_before_mb: mb(daemonBefore),
      daemon_rss_after_mb: mb(daemonAfter),
      daemon_rss_growth_per_env_mb: perEnv(daemonAfter - daemonBefore),
    };
    // Overhead per environment, two ways. The node's: how much less memory it has available
    // (kernel memory, mounts and namespaces included, and anything else running on this
    // machine meanwhile). The processes': its container's processes (PSS, so pages shared
    // between containers count once), the engine's helper process, and the daemon's growth.
    out.overhead_per_env_mb = {
      node_mem_available_drop: perEnv((before.MemAvailable ?? 0) - (after.MemAvailable ?? 0)),
      processes: per.length && n ? mb(sum((m) => m.pss) / per.length + shims.pss / n + Math.max(0, daemonAfter - daemonBefore) / n) : null,
    };
    out.overhead_definition = {
      node_mem_available_drop: '(MemAvailable before - after) / n, from /proc/meminfo',
      processes:
        'PSS of the container processes (its cgroup.procs) + PSS of the engine shim (conmon/containerd-shim) + daemon RSS growth / n',
    };
    log(`idle: ${JSON.stringify({ node: out.node, containers: out.containers, host_side: out.host_side })}`);
  } finally {
    const t1 = performance.now();
    let removed = 0;
    const failures: string[] = [];
    const queue = [...made];
    const rmUntil = performance.now() + 150_000;
    await Promise.all(
      Array.from({ length: Math.max(1, opts['idle-concurrency']) }, async () => {
        for (let e = queue.shift(); e && performance.now() < rmUntil; e = queue.shift()) {
          await node.client.removeEnv(e.name, { discard: true }).then(
            () => removed++,
            (err: unknown) => failures.push(`${e.name}: ${errorText(err)}`),
          );
        }
      }),
    );
    out.removed = removed;
    out.remove_seconds = r1((performance.now() - t1) / 1000);
    if (failures.length) out.remove_failures = failures.slice(0, 5);
    log(`idle: removed ${removed} in ${out.remove_seconds as number} s`);
  }
}

// ---- the engines' own tools: commit and run ----------------------------------------------

/**
 * A plain container holding the same workspace (the repository with .git, and node_modules)
 * in its own file system; `commit` of it once (the whole workspace), then a container of that
 * image, a small edit and `commit` (timed) n times; then `run` of the last image + `true`.
 */
async function engineCommitAndRun(engine: EngineName, image: string, repo: string, tree: NpmTree): Promise<void> {
  const cli = ENGINE_CLI[engine];
  const repoName = `berth-bench-switching:${RUN_ID}`;
  const images: string[] = [];
  // Registered before any container: cleanups run last-in first-out, so containers go first.
  const unregister = onCleanup(`${engine} rmi ${repoName}-*`, async () => {
    if (images.length) await run(cli, ['rmi', '-f', ...images], { cleanup: true, timeoutMs: 120_000 });
  });
  const extra: Record<string, unknown> = { engine };
  try {
    const base = await startIdleContainer(engine, image);
    let seedMs: number;
    let baseMs: number;
    const baseImage = `${repoName}-base`;
    try {
      log(`${engine}-commit: copying the workspace into a plain container`);
      seedMs = await timed(() =>
        mustRun(
          'bash',
          [
            '-c',
            'set -o pipefail; tar -c -C "$1" . -C "$2" node_modules | "$3" exec -i "$4" sh -c "mkdir -p /workspace && tar -x -C /workspace"',
            'seed',
            repo,
            tree.dir,
            cli,
            base.id,
          ],
          { timeoutMs: 600_000 },
        ),
      );
      log(`${engine}-commit: committing the whole workspace once`);
      images.push(baseImage);
      baseMs = await timed(() => mustRun(cli, ['commit', base.id, baseImage], { timeoutMs: 600_000 }));
    } finally {
      await base.remove();
    }
    extra.workspace_copy_in_ms = r1(seedMs);
    extra.first_commit_whole_workspace_ms = r1(baseMs);
    log(`${engine}-commit: copy in ${r1(seedMs)} ms, first commit ${r1(baseMs)} ms`);

    const work = await startIdleContainer(engine, baseImage);
    let lastImage = baseImage;
    try {
      let i = 0;
      const s = await series(`${engine}-commit`, { n: opts.snaps, warmup: 1, budgetMs: 120_000 }, async () => {
        i++;
        await mustRun(cli, ['exec', work.id, 'sh', '-c', `echo "// edit ${i}" >> /workspace/src/index.js`]);
        const tag = `${repoName}-${i}`;
        images.push(tag);
        const ms = await timed(() => mustRun(cli, ['commit', work.id, tag], { timeoutMs: 120_000 }));
        lastImage = tag;
        return ms;
      });
      (results.snapshot as Row[]).push(
        s.row({
          ...extra,
          how: `${cli} exec <ctr> (small edit, untimed), then ${cli} commit <ctr> <tag> on a container of the image holding the workspace${engine === 'docker' ? ' (docker pauses the container while committing, by default)' : ''}`,
        }),
      );
    } finally {
      await work.remove();
    }

    const probe = await run(cli, [
      'run',
      '--rm',
      ...labelArgs(engine),
      ...ulimitArgs(),
      lastImage,
      'test',
      '-f',
      `/workspace/${NODE_MODULES_PROBE}`,
    ]);
    const r = await series(`${engine}-run-committed`, { n: opts.forks, warmup: 1, budgetMs: 90_000 }, () =>
      timed(() => mustRun(cli, ['run', '--rm', ...labelArgs(engine), ...ulimitArgs(), lastImage, 'true'], { timeoutMs: 120_000 })),
    );
    (results.fork as Row[]).push(
      r.row({
        engine,
        how: `${cli} run --rm ${ulimitArgs().join(' ')} <committed image> true`,
        probe: NODE_MODULES_PROBE,
        node_modules_in_fork: probe.code === 0,
      }),
    );
  } finally {
    unregister();
    if (images.length) await run(cli, ['rmi', '-f', ...images], { cleanup: true, timeoutMs: 120_000 });
  }
}

// ---- targets -----------------------------------------------------------------------------

interface Target {
  name: string;
  target: number;
  unit: string;
  measured: number | null;
  pass: boolean | null;
  from: string;
}

function target(name: string, limit: number, unit: string, measured: number | null | undefined, from: string): Target {
  const m = measured ?? null;
  return { name, target: limit, unit, measured: m, pass: m === null ? null : m <= limit, from };
}

function targets(): Target[] {
  const out: Target[] = [];
  const rows = (k: string): Row[] => (results[k] as Row[] | undefined) ?? [];
  for (const r of rows('snapshot').filter((r) => r.storage))
    out.push(target(`snapshot_p50_${String(r.storage)}`, TARGETS.snapshot_p50_ms, 'ms', r.p50_ms, r.name));
  for (const r of rows('fork').filter((r) => r.storage))
    out.push(target(`fork_to_first_command_p50_${String(r.storage)}`, TARGETS.fork_to_first_command_p50_ms, 'ms', r.p50_ms, r.name));
  for (const r of rows('pause_resume').filter((r) => r.name.startsWith('berth-')))
    out.push(target(`pause_resume_p50_${String(r.engine)}`, TARGETS.pause_resume_p50_ms, 'ms', r.p50_ms, r.name));
  for (const r of rows('pool_claim').filter((r) => r.name.startsWith('berth-pool-claim')))
    out.push(
      target(`pool_claim_to_first_command_p50_${String(r.engine)}`, TARGETS.pool_claim_to_first_command_p50_ms, 'ms', r.p50_ms, r.name),
    );
  const cache = results.cache_reuse as { registry_bytes_b?: number } | undefined;
  if (cache)
    out.push(target('cache_reuse_registry_bytes', TARGETS.cache_reuse_registry_bytes, 'bytes', cache.registry_bytes_b, 'cache_reuse.b'));
  const idle = results.idle as { overhead_per_env_mb?: { node_mem_available_drop: number | null; processes: number | null } } | undefined;
  if (idle?.overhead_per_env_mb) {
    const o = idle.overhead_per_env_mb;
    out.push(target('idle_overhead_per_env_node_memavailable', TARGETS.idle_overhead_mb_per_env, 'MB', o.node_mem_available_drop, 'idle'));
    out.push(target('idle_overhead_per_env_processes_pss', TARGETS.idle_overhead_mb_per_env, 'MB', o.processes, 'idle'));
  }
  return out;
}

/** Side by side: each peer's p50 over berth's, per section (above 1: berth is faster). */
function comparison(): Record<string, unknown> {
  const rows = (k: string): Row[] => ((results[k] as Row[] | undefined) ?? []).filter((r) => r.p50_ms !== null);
  const find = (k: string, name: string): Row | undefined => rows(k).find((r) => r.name === name);
  const side = (k: string, berth: string[], peers: string[]): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const b of berth) {
      const br = find(k, b);
      if (!br) continue;
      for (const p of peers) {
        const pr = find(k, p);
        if (pr) out[`${p}_p50_over_${b}_p50`] = ratio(pr.p50_ms, br.p50_ms);
      }
    }
    return out;
  };
  const snapBerth = ['berth-copy-on-podman-snap', 'berth-btrfs-on-podman-snap'];
  const forkBerth = ['berth-copy-on-podman-fork', 'berth-btrfs-on-podman-fork'];
  const whole = (engine: string): number | null =>
    (rows('snapshot').find((r) => r.name === `${engine}-commit`)?.first_commit_whole_workspace_ms as number | undefined) ?? null;
  return {
    snapshot: {
      ...side('snapshot', snapBerth, ['podman-commit', 'docker-commit']),
      podman_first_commit_of_whole_workspace_ms: whole('podman'),
      docker_first_commit_of_whole_workspace_ms: whole('docker'),
    },
    fork: side('fork', forkBerth, ['podman-run-committed', 'docker-run-committed']),
    pause_resume: {
      ...side('pause_resume', ['berth-pause-resume-on-podman'], ['podman-pause-unpause-cli', 'podman-pause-unpause-api']),
      ...side('pause_resume', ['berth-pause-resume-on-docker'], ['docker-pause-unpause-cli', 'docker-pause-unpause-api']),
    },
    pool_claim: {
      ...side('pool_claim', ['berth-pool-claim-on-podman'], ['berth-cold-create-no-pool-on-podman']),
      ...side('pool_claim', ['berth-pool-claim-on-docker'], ['berth-cold-create-no-pool-on-docker']),
    },
  };
}

// ---- the run -----------------------------------------------------------------------------

runBench(report, (opts['max-seconds'] + 120) * 1000, async () => {
  setDeadline(opts['max-seconds'] * 1000);
  const engines = engineList(opts.engines);
  const main = engines[0] ?? 'podman';
  report.machine = await machine(engines.includes('docker') || opts['docker-commit'] ? ['podman', 'docker'] : ['podman']);
  report.options = opts;
  report.berth = berthRevision();
  report.percentiles = 'linear interpolation between closest ranks';
  report.targets = [];
  report.results = results;
  report.notes = notes;
  results.snapshot = [];
  results.fork = [];
  results.pause_resume = [];
  results.pool_claim = [];
  results.storage = {};

  // Cleanups run last-in first-out: these two, registered first, run after every daemon has
  // stopped. Cache volumes made for this run's lockfiles go (never one that existed before
  // the run), then what is left is checked.
  const preexisting = new Map<EngineName, Set<string>>();
  const volumeList = async (e: EngineName): Promise<Set<string>> => {
    const r = await run(ENGINE_CLI[e], ['volume', 'ls', '-q'], { timeoutMs: 30_000, cleanup: true });
    return new Set(r.stdout.split('\n').filter(Boolean));
  };
  for (const e of ['podman', 'docker'] as const) preexisting.set(e, await volumeList(e).catch(() => new Set<string>()));
  const homes: string[] = [];
  const dirs: string[] = [];
  onCleanup('check what is left', async () => {
    const mounts = homes.map((h) => join(h, 'fs')).filter((m) => isMountPoint(m));
    const loops = (await run('losetup', ['-a'], { cleanup: true }).catch(() => ({ stdout: '' }))).stdout
      .split('\n')
      .filter((l) => homes.some((h) => l.includes(h)));
    const volumesLeft: string[] = [];
    for (const e of ['podman', 'docker'] as const) {
      const now = await volumeList(e).catch(() => new Set<string>());
      for (const v of cacheVolumes) if (now.has(v) && !preexisting.get(e)?.has(v)) volumesLeft.push(`${e}:${v}`);
    }
    const images: string[] = [];
    for (const e of ['podman', 'docker'] as const) {
      const r = await run(ENGINE_CLI[e], ['images', '-q', '--filter', `reference=*berth-bench-switching:${RUN_ID}-*`], { cleanup: true });
      if (r.stdout.trim()) images.push(`${e}: ${r.stdout.trim().split('\n').length}`);
    }
    report.targets = targets();
    report.comparison = comparison();
    report.cleanup_checks = {
      btrfs_mounts_left: mounts,
      loop_devices_left: loops,
      cache_volumes_made: [...cacheVolumes],
      cache_volumes_left: volumesLeft,
      images_left: images,
      temp_dirs_left: [...homes, ...dirs].filter((d) => existsSync(d)),
    };
  });
  onCleanup('cache volumes made for this run', async () => {
    const failed: string[] = [];
    for (const e of ['podman', 'docker'] as const) {
      const now = await volumeList(e).catch(() => new Set<string>());
      for (const v of cacheVolumes) {
        if (!now.has(v) || preexisting.get(e)?.has(v)) continue;
        const r = await run(ENGINE_CLI[e], ['volume', 'rm', '-f', v], { cleanup: true, timeoutMs: 60_000 });
        if (r.code !== 0) failed.push(`${e} volume rm ${v}: ${r.stderr.trim()}`);
      }
    }
    if (failed.length) throw new Error(failed.join('; '));
  });
  const digest = await toolchainDigest();
  const startNode = async (engine: EngineName, env?: Record<string, string>): Promise<BerthNode> => {
    const node = await BerthNode.start(engine, digest, { env });
    homes.push(node.home);
    return node;
  };
  const tags: Record<string, string> = {};
  for (const e of ['podman', 'docker'] as const) {
    const api = new EngineApi(e);
    try {
      tags[e] = await api.imageTag(digest);
    } catch (err) {
      notes.push(`${e}: no tag for ${digest}: ${errorText(err)}`);
    } finally {
      api.close();
    }
  }
  report.image = { digest, tags };

  // 1. The workspace.
  log('workspace: npm trees (cached in ~/.cache/berth-bench)');
  const big = await npmTree('big', BIG_DEPS, false);
  const small = await npmTree('small', SMALL_DEPS, true);
  const size = treeSize(join(big.dir, 'node_modules'));
  const bigRepo = npmRepo(big, 'switching');
  const smallRepo = npmRepo(small, 'cache');
  const plainRepo = makeRepo();
  dirs.push(bigRepo, smallRepo, plainRepo);
  const lock = JSON.parse(readFileSync(join(bigRepo, 'package-lock.json'), 'utf8')) as { packages?: Record<string, unknown> };
  results.workspace = {
    repo: 'a git repository on main: package.json, package-lock.json, .gitignore (node_modules/), src/index.js',
    dependencies: BIG_DEPS,
    packages_in_lockfile: Object.keys(lock.packages ?? {}).length - 1,
    node_modules_mb: mb(size.bytes),
    node_modules_disk_mb: mb(size.diskBytes),
    node_modules_files: size.files,
    host_npm: (await mustRun('npm', ['--version'])).trim(),
    host_install: big.cached ? 'reused from ~/.cache/berth-bench' : `npm install --ignore-scripts: ${big.installMs} ms`,
    cache_dir: big.dir,
    into_environments:
      'the host node_modules, tar-piped through NodeClient.execStream; `npm ci --prefer-offline` of this lockfile inside each environment was too slow for this run (not measured here)',
  };
  log(`workspace: node_modules ${mb(size.bytes)} MB in ${size.files} files (${big.cached ? 'cached' : 'built now'})`);

  // 2 and 3 on btrfs, then on the copy path; the copy-path daemon then does 4 to 7.
  if (!skip.has('btrfs') && budgetLeft('btrfs', 120_000)) {
    const node = await startNode('podman', { BERTH_STORAGE: 'btrfs', BERTH_STORAGE_GB: '20' });
    try {
      await snapshotsAndForks(node, { label: 'btrfs', env: { BERTH_STORAGE: 'btrfs', BERTH_STORAGE_GB: '20' } }, bigRepo, big);
    } catch (err) {
      (results.storage as Record<string, unknown>).btrfs_error = errorText(err);
      log(`btrfs: ${errorText(err)}`);
    } finally {
      await stopNode(node);
      await unmount(join(node.home, 'fs')).catch((err: unknown) => notes.push(`btrfs: ${errorText(err)}`));
    }
  }
  if (main === 'podman') {
    if (!skip.has('copy') && budgetLeft('copy', 90_000)) {
      const node = await startNode('podman');
      try {
        await snapshotsAndForks(node, { label: 'copy' }, bigRepo, big);
        if (!skip.has('pause')) await berthPauseResume(node, 'ws-copy');
      } catch (err) {
        (results.storage as Record<string, unknown>).copy_error = errorText(err);
        log(`copy: ${errorText(err)}`);
      } finally {
        await stopNode(node);
      }
    }
    // The sections above wrote a few GB (node_modules, twice, and forks): the next ones get
    // a fresh daemon on a node whose dirty pages have been written back, so that writeback
    // is not what they measure.
    notes.push(
      `sync before the pool, cache and idle sections took ${r1(await timed(() => mustRun('sync', [], { timeoutMs: 120_000 })))} ms`,
    );
    const node = await startNode('podman');
    try {
      if (!skip.has('pool') && budgetLeft('pool', 60_000))
        await poolClaims(node, bigRepo).catch((err: unknown) => {
          (results.pool_claim as Row[]).push(failedRow('berth-pool-claim-on-podman', 0, err, { engine: 'podman' }));
        });
      if (!skip.has('cache') && budgetLeft('cache', 60_000))
        await cacheReuse(node, smallRepo).catch((err: unknown) => {
          results.cache_reuse = { ...(results.cache_reuse as object), error: errorText(err) };
        });
      if (!skip.has('idle') && budgetLeft('idle', 120_000))
        await idleEnvironments(node, plainRepo).catch((err: unknown) => {
          results.idle = { ...(results.idle as object), error: errorText(err) };
        });
    } finally {
      await stopNode(node);
    }
  }
  if (tags.podman && !skip.has('pause'))
    await enginePauseResume('podman', tags.podman).catch((err: unknown) => {
      (results.pause_resume as Row[]).push(failedRow('podman-pause-unpause', 0, err, { engine: 'podman' }));
    });
  if (tags.podman && !skip.has('commit') && budgetLeft('podman-commit', 120_000))
    await engineCommitAndRun('podman', tags.podman, bigRepo, big).catch((err: unknown) => {
      (results.snapshot as Row[]).push(failedRow('podman-commit', 0, err, { engine: 'podman' }));
    });

  // Docker, where cheap: berth's pause/resume and pool claims on a berth daemon over Docker,
  // the CLI's and the API's pause/unpause, and commit/run when the budget allows.
  if (engines.includes('docker') && tags.docker) {
    if ((!skip.has('pause') || !skip.has('pool')) && budgetLeft('berth-on-docker', 60_000)) {
      const node = await startNode('docker');
      try {
        if (!skip.has('pause')) {
          await node.client.createEnv({ name: 'pr', repo: plainRepo });
          await berthPauseResume(node, 'pr');
          await removeQuietly(node, 'pr');
        }
        if (!skip.has('pool') && budgetLeft('pool-docker', 60_000))
          await poolClaims(node, bigRepo).catch((err: unknown) => {
            (results.pool_claim as Row[]).push(failedRow('berth-pool-claim-on-docker', 0, err, { engine: 'docker' }));
          });
      } catch (err) {
        (results.pause_resume as Row[]).push(failedRow('berth-pause-resume-on-docker', 0, err, { engine: 'docker' }));
      } finally {
        await stopNode(node);
      }
    }
    if (!skip.has('pause'))
      await enginePauseResume('docker', tags.docker).catch((err: unknown) => {
        (results.pause_resume as Row[]).push(failedRow('docker-pause-unpause', 0, err, { engine: 'docker' }));
      });
  }
  if (opts['docker-commit'] && tags.docker && !skip.has('commit') && budgetLeft('docker-commit', 150_000))
    await engineCommitAndRun('docker', tags.docker, bigRepo, big).catch((err: unknown) => {
      (results.snapshot as Row[]).push(failedRow('docker-commit', 0, err, { engine: 'docker' }));
    });

  log('done');
});

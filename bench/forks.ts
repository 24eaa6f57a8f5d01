// Forks of a workspace with a large node_modules, side by side with the engine's own way:
//   1. ten forks at once, each ready for a first command, on the copy-on-write storage the node
//      sets up itself, against ten `podman run` (or `docker run`) of an image committed from a
//      container holding the same tree;
//   2. the whole-copy path (BERTH_STORAGE=copy): snapshot and one fork of the same tree, timed.
// Every file the workspace holds is written on a file system of its own: the node's btrfs
// loop file, an ext4 loop file for the copy path, and the engine's storage.
//
//   node dist/bench/forks.js [--engines podman] [--mb 400] [--forks 10] [--copy 1]
//
// The tree is made inside the environment by the node binary berth mounts there: `--mb`
// packages of 100 files of 10 KiB, each with a package.json, ignored by git.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import {
  BerthNode,
  ENGINE_CLI,
  engineList,
  labelArgs,
  log,
  mustRun,
  onCleanup,
  parseOptions,
  prepareEngineBench,
  removeContainer,
  runBench,
  tempDir,
  timed,
  ulimitArgs,
  unmount,
  type EngineName,
} from './lib.js';

const opts = parseOptions({ engines: 'podman', mb: 400, forks: 10, copy: 1 });
const report: Record<string, unknown> = { bench: 'forks' };
const results: Array<Record<string, unknown>> = [];
const r1 = (n: number): number => Math.round(n * 10) / 10;
const load = (): number[] => loadavg().map((x) => Math.round(x * 100) / 100);

/** Writes the tree where it runs: `/.berth/bin/node` in an environment, the same binary in a container. */
function generator(mb: number): string {
  return [
    "const fs=require('fs');const b=Buffer.alloc(10240);",
    "fs.writeFileSync('.gitignore','node_modules\\n');",
    `for(let p=0;p<${mb};p++){const d='node_modules/pkg'+p;fs.mkdirSync(d+'/lib',{recursive:true});`,
    "fs.writeFileSync(d+'/package.json',JSON.stringify({name:'pkg'+p}));",
    "for(let f=0;f<100;f++){b.writeUInt32LE(p*1000+f,0);fs.writeFileSync(d+'/lib/f'+f+'.js',b);}}",
  ].join('');
}

async function cli(node: BerthNode, args: string[], timeoutMs = 600_000): Promise<string> {
  const r = await node.cli(args, timeoutMs);
  if (r.code !== 0) throw new Error(`berth ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

async function forkSide(engine: EngineName, digest: string, repo: string): Promise<void> {
  const node = await BerthNode.start(engine, digest, { env: { BERTH_STORAGE: 'btrfs', BERTH_STORAGE_GB: '16' } });
  const storage = (await node.client.node()).storage;
  await cli(node, ['new', 'src', '--repo', repo]);
  const genMs = await timed(() => cli(node, ['exec', 'src', '--', '/.berth/bin/node', '-e', generator(opts.mb)]));
  const du = (await cli(node, ['exec', 'src', '--', 'du', '-sm', 'node_modules'])).split(/\s/)[0];
  log(`${engine}: node_modules of ${du} MB made in ${r1(genMs)} ms`);
  let id = '';
  const snapMs = await timed(async () => {
    id = (JSON.parse(await cli(node, ['snap', 'src', '--json'])) as { id: string }).id;
  });
  const names = Array.from({ length: opts.forks }, (_, i) => `f${i + 1}`);
  const loadBefore = load();
  const forkMs = await timed(() => cli(node, ['fork', id, ...names]));
  const firstMs = await timed(() =>
    Promise.all(names.map((n) => cli(node, ['exec', n, '--', 'test', '-f', 'node_modules/pkg0/lib/f0.js']))),
  );
  results.push({
    name: `berth-${storage?.kind ?? '?'}-on-${engine}-forks`,
    forks: opts.forks,
    node_modules_mb: Number(du),
    snapshot_ms: r1(snapMs),
    forks_ms: r1(forkMs),
    first_command_in_each_ms: r1(firstMs),
    total_ms: r1(forkMs + firstMs),
    loadavg_before: loadBefore,
    how: `berth snap src; berth fork SNAP f1..f${opts.forks} (one command, all at once); then berth exec fN -- test -f node_modules/... in each, concurrently`,
  });
  await node.stop();

  // The peer: a container holding the same tree, committed, and ten runs of that image.
  const engineCli = ENGINE_CLI[engine];
  const tag = (await mustRun(engineCli, ['image', 'inspect', '--format', '{{index .RepoTags 0}}', digest])).trim() || digest;
  const image = `localhost/berth-bench-forks:${process.pid}`;
  const seed = (
    await mustRun(engineCli, [
      'run',
      '-d',
      ...labelArgs(engine),
      ...ulimitArgs(),
      '-v',
      `${process.execPath}:/usr/local/bin/gen-node:ro`,
      '-w',
      '/workspace',
      tag,
      'sh',
      '-c',
      'mkdir -p /workspace && sleep infinity',
    ])
  ).trim();
  onCleanup(`${engine} rm seed`, () => removeContainer(engine, seed));
  await mustRun(engineCli, ['exec', '-w', '/workspace', seed, 'sh', '-c', 'mkdir -p /workspace'], { timeoutMs: 60_000 });
  await mustRun(engineCli, ['exec', '-w', '/workspace', seed, '/usr/local/bin/gen-node', '-e', generator(opts.mb)], { timeoutMs: 900_000 });
  const commitMs = await timed(() => mustRun(engineCli, ['commit', seed, image], { timeoutMs: 900_000 }));
  onCleanup(`${engine} rmi ${image}`, async () => {
    await mustRun(engineCli, ['rmi', '-f', image]);
  });
  await removeContainer(engine, seed);
  const peerLoad = load();
  const runMs = await timed(() =>
    Promise.all(
      names.map(() =>
        mustRun(
          engineCli,
          ['run', '--rm', ...labelArgs(engine), ...ulimitArgs(), '-w', '/workspace', image, 'test', '-f', 'node_modules/pkg0/lib/f0.js'],
          {
            timeoutMs: 300_000,
          },
        ),
      ),
    ),
  );
  results.push({
    name: `${engine}-run-committed`,
    forks: opts.forks,
    commit_ms: r1(commitMs),
    total_ms: r1(runMs),
    loadavg_before: peerLoad,
    how: `${engineCli} commit <container holding the tree> (once, timed apart); then ${opts.forks} x ${engineCli} run --rm <image> test -f node_modules/..., concurrently`,
  });
}

/** The whole-copy path, in a home on an ext4 loop file of its own. */
async function copySide(engine: EngineName, digest: string, repo: string): Promise<void> {
  const dir = tempDir('berth-bench-forks-copy-');
  const img = join(dir, 'fs.img');
  const home = join(dir, 'home');
  mkdirSync(home);
  writeFileSync(img, '');
  execFileSync('truncate', ['-s', `${Math.max(4, Math.ceil((opts.mb * 4) / 1024) + 2)}G`, img]);
  execFileSync('mkfs.ext4', ['-q', '-F', img]);
  execFileSync('mount', ['-o', 'loop', img, home]);
  onCleanup(`umount ${home}`, () => unmount(home));
  const node = await BerthNode.start(engine, digest, { home, env: { BERTH_STORAGE: 'copy' } });
  await cli(node, ['new', 'src', '--repo', repo]);
  await cli(node, ['exec', 'src', '--', '/.berth/bin/node', '-e', generator(opts.mb)]);
  let id = '';
  const loadBefore = load();
  const snapMs = await timed(async () => {
    id = (JSON.parse(await cli(node, ['snap', 'src', '--json'])) as { id: string }).id;
  });
  const forkMs = await timed(() => cli(node, ['fork', id, 'c1']));
  const firstMs = await timed(() => cli(node, ['exec', 'c1', '--', 'test', '-f', 'node_modules/pkg0/lib/f0.js']));
  results.push({
    name: `berth-copy-on-${engine}-fork`,
    node_modules_mb: opts.mb,
    snapshot_ms: r1(snapMs),
    fork_ms: r1(forkMs),
    first_command_ms: r1(firstMs),
    loadavg_before: loadBefore,
    how: 'BERTH_STORAGE=copy, home on an ext4 loop file: berth snap src (keeps a whole copy); berth fork SNAP c1 (copies it out); berth exec c1 -- test -f ...',
  });
  await node.stop();
}

runBench(report, 40 * 60_000, async () => {
  const engines = engineList(opts.engines);
  const { digest, repo } = await prepareEngineBench(report, opts, engines, results);
  for (const engine of engines) {
    await forkSide(engine, digest, repo);
    if (opts.copy) await copySide(engine, digest, repo);
  }
  const row = (n: string): Record<string, unknown> | undefined => results.find((r) => r.name === n);
  const ratios: Record<string, number | null> = {};
  for (const engine of engines) {
    const cow = row(`berth-btrfs-on-${engine}-forks`)?.total_ms as number | undefined;
    const peer = row(`${engine}-run-committed`)?.total_ms as number | undefined;
    ratios[`berth_forks_vs_${engine}_run_committed`] = cow && peer ? Math.round((cow / peer) * 100) / 100 : null;
  }
  report.ratios = ratios;
  report.loadavg_at_end = load();
  report.not_measured = ['checkpoint overhead per command and rewind: checkpoints are not built yet'];
});

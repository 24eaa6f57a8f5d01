// The round trip of one command (`true`) in an environment that is already running: berth
// through its API on each engine, against the engines' own exec (CLI and Engine API) and
// `devcontainer exec`, all on the same image, on this machine, in this run.
//
//   node dist/bench/exec-latency.js [--n 200] [--warmup 20] [--cli-n 30] [--api-n 100]
//        [--dc-n 10] [--engines podman,docker] [--skip devcontainer,cli,api] [--max-seconds 270]
import type { ExecTiming } from '../src/core/api.js';
import {
  BerthNode,
  devcontainerExec,
  devcontainerUp,
  devcontainerWorkspace,
  ENGINE_CLI,
  EngineApi,
  engineList,
  type EngineName,
  failedRow,
  guarded,
  peerRatios,
  log,
  mustRun,
  p50,
  parseOptions,
  prepareEngineBench,
  removeContainer,
  type Row,
  runBench,
  series,
  setDeadline,
  startIdleContainer,
  timed,
} from './lib.js';

const opts = parseOptions({
  n: 200,
  warmup: 20,
  'cli-n': 30,
  'api-n': 100,
  'dc-n': 10,
  engines: 'podman,docker',
  skip: '',
  'max-seconds': 270,
});
const skip = new Set(opts.skip.split(',').filter(Boolean));
const results: Row[] = [];
const report: Record<string, unknown> = { benchmark: 'exec-latency', command: ['true'] };

async function berthSeries(engine: EngineName, digest: string, repo: string): Promise<void> {
  const node = await BerthNode.start(engine, digest);
  try {
    const created = await node.cli(['new', 'bench', '--repo', repo, '--json']);
    if (created.code !== 0) throw new Error(`berth new bench exited ${created.code}: ${created.stderr.trim() || created.stdout.trim()}`);
    const timings: ExecTiming[] = [];
    const s = await series(`berth-on-${engine}`, { n: opts.n, warmup: opts.warmup, budgetMs: 90_000 }, async (measured) => {
      const t0 = performance.now();
      const r = await node.client.exec('bench', { argv: ['true'] });
      const ms = performance.now() - t0;
      if (r.exitCode !== 0) throw new Error(`berth exec true exited ${r.exitCode}`);
      if (measured) timings.push(r.timing);
      return ms;
    });
    const field = (k: keyof ExecTiming): number | null => p50(timings.map((t) => t[k]));
    results.push(
      s.row({
        engine,
        how: 'NodeClient.exec over the unix socket, keep-alive, sequential',
        berth_timing_p50_ms: {
          queueMs: field('queueMs'),
          spawnMs: field('spawnMs'),
          runMs: field('runMs'),
          transportMs: field('transportMs'),
        },
      }),
    );
  } finally {
    await node.stop();
  }
}

async function engineSeries(engine: EngineName, image: string): Promise<void> {
  if (skip.has('cli') && skip.has('api')) return;
  const ctr = await startIdleContainer(engine, image);
  try {
    if (!skip.has('cli')) {
      const cli = ENGINE_CLI[engine];
      const s = await series(`${engine}-exec-cli`, { n: opts['cli-n'], warmup: 3, budgetMs: 45_000 }, () =>
        timed(() => mustRun(cli, ['exec', ctr.id, 'true'])),
      );
      results.push(s.row({ engine, how: `${cli} exec <container> true` }));
    }
    if (!skip.has('api')) {
      const api = new EngineApi(engine);
      const s = await series(`${engine}-exec-api`, { n: opts['api-n'], warmup: 5, budgetMs: 45_000 }, async () => {
        const t0 = performance.now();
        const code = await api.exec(ctr.id, ['true']);
        const ms = performance.now() - t0;
        if (code !== 0) throw new Error(`${engine} API exec true exited ${code}`);
        return ms;
      }).finally(() => api.close());
      results.push(
        s.row({
          engine,
          how: `Engine API over ${api.socketPath}: POST /containers/{id}/exec, POST /exec/{id}/start (attached), GET /exec/{id}/json`,
        }),
      );
    }
  } finally {
    await ctr.remove();
  }
}

async function devcontainerSeries(engine: EngineName, image: string): Promise<void> {
  const name = `devcontainer-exec-${engine}`;
  const dir = devcontainerWorkspace(engine, image);
  let id: string | undefined;
  try {
    id = await devcontainerUp(engine, dir);
  } catch (err) {
    results.push(failedRow(name, 1, err, { engine, how: `devcontainer up --docker-path ${ENGINE_CLI[engine]}` }));
    return;
  }
  try {
    const s = await series(name, { n: opts['dc-n'], warmup: 1, budgetMs: 45_000 }, () =>
      timed(() => devcontainerExec(engine, dir, ['true'])),
    );
    results.push(s.row({ engine, how: `devcontainer exec --workspace-folder <dir> --docker-path ${ENGINE_CLI[engine]} true`, image }));
  } finally {
    await removeContainer(engine, id);
  }
}

runBench(report, (opts['max-seconds'] + 60) * 1000, async () => {
  setDeadline(opts['max-seconds'] * 1000);
  const engines = engineList(opts.engines);
  const { digest, repo, tags } = await prepareEngineBench(report, opts, engines, results);
  for (const engine of engines) {
    const guard = (name: string, fn: () => Promise<void>): Promise<void> => guarded(results, name, { engine }, fn);
    if (!skip.has('berth')) await guard(`berth-on-${engine}`, () => berthSeries(engine, digest, repo));
    await guard(`${engine}-exec`, () => engineSeries(engine, tags[engine]!));
    if (!skip.has('devcontainer')) await guard(`devcontainer-exec-${engine}`, () => devcontainerSeries(engine, tags[engine]!));
  }
  report.ratios = peerRatios(results, { extra: (b) => ({ berth: b.name }) });
  log('done');
});

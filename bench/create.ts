// Create-to-first-command: from the request for a new environment until a first command
// (`true`) has returned in it. berth through its API on each engine, with the default egress
// network and with network 'none' (interleaved, so drift hits both alike), against
// `podman run --rm`, `docker run --rm` and `devcontainer up` + `devcontainer exec`, all on the
// same image, on this machine, in this run. Removal is outside the timed region.
//
//   node dist/bench/create.js [--n 10] [--engines podman,docker] [--dc-engines podman,docker]
//        [--skip devcontainer,run] [--max-seconds 270]
import type { NetworkMode } from '../src/core/api.js';
import {
  BerthNode,
  devcontainerExec,
  devcontainerUp,
  devcontainerWorkspace,
  ENGINE_CLI,
  engineList,
  type EngineName,
  guarded,
  peerRatios,
  labelArgs,
  log,
  mustRun,
  p50,
  parseOptions,
  prepareEngineBench,
  ratio,
  removeContainer,
  type Row,
  runBench,
  Sampler,
  series,
  setDeadline,
  timed,
  ulimitArgs,
} from './lib.js';

const opts = parseOptions({
  n: 10,
  engines: 'podman,docker',
  'dc-engines': 'podman,docker',
  skip: '',
  'max-seconds': 270,
});
const skip = new Set(opts.skip.split(',').filter(Boolean));
const results: Row[] = [];
const report: Record<string, unknown> = { benchmark: 'create', first_command: ['true'] };

const MODES: NetworkMode[] = ['egress', 'none'];

async function berthSeries(engine: EngineName, digest: string, repo: string): Promise<void> {
  const node = await BerthNode.start(engine, digest);
  try {
    const samplers = new Map(
      MODES.map((m) => [m, new Sampler(m === 'egress' ? `berth-on-${engine}` : `berth-on-${engine}-network-none`, opts.n, 1, 120_000)]),
    );
    const removals = new Map<NetworkMode, number[]>(MODES.map((m) => [m, []]));
    let seq = 0;
    const once = async (mode: NetworkMode, measured: boolean): Promise<void> => {
      const name = `c${seq++}-${mode}`;
      const t0 = performance.now();
      try {
        await node.client.createEnv({ name, repo, network: mode });
        const r = await node.client.exec(name, { argv: ['true'] });
        const ms = performance.now() - t0;
        if (r.exitCode !== 0) throw new Error(`berth exec true exited ${r.exitCode} in a new environment`);
        if (measured) samplers.get(mode)!.add(ms);
      } finally {
        const t1 = performance.now();
        await node.client.removeEnv(name, { discard: true }).catch(() => {});
        if (measured) removals.get(mode)!.push(performance.now() - t1);
      }
    };
    // One unmeasured round per mode first: the daemon's first egress environment also makes
    // sure of the network and its firewall rules, once per daemon.
    log(`berth-on-${engine}: 1 warm-up + up to ${opts.n} runs per network mode, interleaved`);
    for (const mode of MODES) {
      try {
        await once(mode, false);
      } catch (err) {
        samplers.get(mode)!.fail(err);
      }
    }
    for (let i = 0; i < opts.n; i++) {
      for (const mode of MODES) {
        const s = samplers.get(mode)!;
        if (!s.more()) continue;
        try {
          await once(mode, true);
        } catch (err) {
          s.fail(err);
        }
      }
    }
    for (const mode of MODES) {
      const s = samplers.get(mode)!;
      log(`${s.name}: n=${s.samples.length} p50=${p50(s.samples)} ms${s.error ? ` error: ${s.error}` : ''}`);
      results.push(
        s.row({
          engine,
          network: mode,
          how: `NodeClient.createEnv({network:'${mode}'}) then exec(['true']); removeEnv untimed`,
          remove_p50_ms: p50(removals.get(mode)!),
        }),
      );
    }
  } finally {
    await node.stop();
  }
}

async function runSeries(engine: EngineName, image: string): Promise<void> {
  const cli = ENGINE_CLI[engine];
  const args = ['run', '--rm', ...labelArgs(engine), ...ulimitArgs(), image, 'true'];
  const s = await series(`${engine}-run-cli`, { n: opts.n, warmup: 1, budgetMs: 60_000 }, () => timed(() => mustRun(cli, args)));
  results.push(s.row({ engine, how: `${cli} run --rm ${ulimitArgs().join(' ')} <image> true` }));
}

async function devcontainerSeries(engine: EngineName, image: string): Promise<void> {
  const dir = devcontainerWorkspace(engine, image);
  const s = await series(`devcontainer-up-exec-${engine}`, { n: opts.n, warmup: 1, budgetMs: 90_000 }, async () => {
    const t0 = performance.now();
    let id: string | undefined;
    try {
      id = await devcontainerUp(engine, dir);
      await devcontainerExec(engine, dir, ['true']);
      return performance.now() - t0;
    } finally {
      // The next `up` would reuse this container: remove it, untimed.
      if (id) await removeContainer(engine, id);
    }
  });
  results.push(
    s.row({
      engine,
      how: `devcontainer up + devcontainer exec true, --docker-path ${ENGINE_CLI[engine]}; container removed untimed`,
      image,
    }),
  );
}

runBench(report, (opts['max-seconds'] + 60) * 1000, async () => {
  setDeadline(opts['max-seconds'] * 1000);
  const engines = engineList(opts.engines);
  const dcEngines = engineList(opts['dc-engines']);
  const { digest, repo, tags } = await prepareEngineBench(report, opts, engines, results);
  for (const engine of engines) {
    const guard = (name: string, fn: () => Promise<void>): Promise<void> => guarded(results, name, { engine }, fn);
    if (!skip.has('berth')) await guard(`berth-on-${engine}`, () => berthSeries(engine, digest, repo));
    if (!skip.has('run')) await guard(`${engine}-run-cli`, () => runSeries(engine, tags[engine]!));
    if (!skip.has('devcontainer') && dcEngines.includes(engine))
      await guard(`devcontainer-up-exec-${engine}`, () => devcontainerSeries(engine, tags[engine]!));
  }
  report.ratios = peerRatios(results, {
    berth: (r) => r.network === 'egress',
    extra: (b, ok) => {
      const none = ok.find((r) => r.name.startsWith('berth-') && r.engine === b.engine && r.network === 'none');
      return {
        network_none_p50_over_egress_p50: ratio(none?.p50_ms, b.p50_ms),
        network_none_minus_egress_p50_ms: none ? Math.round((none.p50_ms! - b.p50_ms!) * 1000) / 1000 : null,
      };
    },
  });
  log('done');
});

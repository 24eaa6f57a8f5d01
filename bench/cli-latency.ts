// What an agent's shell pays for one command: `berth exec ENV -- true` as a whole process
// (bin/berth, which runs the native client), against the Node CLI doing the same
// (BERTH_NATIVE=0), the daemon's own round trip from inside this process (the floor under any
// client), the engines' own CLIs (`docker exec CTR true`, `podman exec CTR true`) on the
// same image, and every other command an agent runs often (`berth ls`, `ls --json`,
// `describe`, `token ls`, and `berth events` up to its first event), with `/bin/true` and
// Node's own start-up for reference. All on this machine, in this run; each sample is one process, from spawn to
// exit, as a Node parent sees it (stdin /dev/null, stdout and stderr pipes).
//
//   node dist/bench/cli-latency.js [--n 200] [--warmup 20] [--node-n 30] [--peer-n 30]
//        [--engines podman,docker] [--max-seconds 270]
import { spawn } from 'node:child_process';
import {
  BERTH,
  BerthNode,
  ENGINE_CLI,
  engineList,
  type EngineName,
  guarded,
  labelArgs,
  log,
  onCleanup,
  mustRun,
  parseOptions,
  peerRatios,
  prepareEngineBench,
  ratio,
  type Row,
  run,
  runBench,
  series,
  setDeadline,
  timed,
  ulimitArgs,
} from './lib.js';

const opts = parseOptions({ n: 200, warmup: 20, 'node-n': 30, 'peer-n': 30, engines: 'podman,docker', 'max-seconds': 270 });
const results: Row[] = [];
const report: Record<string, unknown> = { benchmark: 'cli-latency', command: ['true'] };

/** The targets of issue 11: exec through the native client, and every other command. */
const EXEC_TARGET_MS = 10;
const OTHER_TARGET_MS = 150;

async function processSeries(
  name: string,
  n: number,
  warmup: number,
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  extra: Record<string, unknown>,
): Promise<void> {
  const s = await series(name, { n, warmup, budgetMs: 60_000 }, () => timed(() => mustRun(cmd, args, { env })));
  results.push(s.row(extra));
}

async function berthSeries(engine: EngineName, digest: string, repo: string): Promise<void> {
  const node = await BerthNode.start(engine, digest);
  try {
    const created = await node.cli(['new', 'bench', '--repo', repo, '--json']);
    if (created.code !== 0) throw new Error(`berth new bench exited ${created.code}: ${created.stderr.trim() || created.stdout.trim()}`);
    // The fast path must really be the native client: its trace says so, before anything is timed.
    const exec = ['exec', 'bench', '--', 'true'];
    const probe = await run(BERTH, exec, { env: { ...node.env, BERTH_TRACE: '1' } });
    if (probe.code !== 0 || !/native exec client/.test(probe.stderr))
      throw new Error(`bin/berth exec did not run through the native client (exit ${probe.code}): ${probe.stderr.trim()}`);
    // The daemon's own round trip, from inside this process: the floor under any client.
    // Each hop of it, as the node reports them: queueMs (daemon, before the agent is asked),
    // spawnMs (the agent starting the command), runMs, transportMs (daemon <-> agent).
    const hops: Record<string, number[]> = { queueMs: [], spawnMs: [], runMs: [], transportMs: [] };
    const api = await series(`berth-api-exec-on-${engine}`, { n: opts.n, warmup: opts.warmup, budgetMs: 60_000 }, async () => {
      const t0 = performance.now();
      const r = await node.client.exec('bench', { argv: ['true'] });
      const ms = performance.now() - t0;
      if (r.exitCode !== 0) throw new Error(`exec true exited ${r.exitCode}`);
      for (const k of Object.keys(hops)) hops[k]!.push(r.timing[k as keyof typeof r.timing]);
      return ms;
    });
    const median = (xs: number[]): number | null => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length ? Math.round(s[s.length >> 1]! * 1000) / 1000 : null;
    };
    results.push(
      api.row({
        engine,
        how: 'NodeClient.exec in this process over the unix socket, keep-alive (no client process)',
        hops_p50_ms: Object.fromEntries(Object.entries(hops).map(([k, xs]) => [k, median(xs)])),
      }),
    );
    await processSeries(`berth-exec-native-on-${engine}`, opts.n, opts.warmup, BERTH, exec, node.env, {
      engine,
      how: 'bin/berth exec bench -- true (sh, then the native client)',
    });
    await processSeries(
      `berth-exec-node-cli-on-${engine}`,
      opts['node-n'],
      3,
      BERTH,
      exec,
      { ...node.env, BERTH_NATIVE: '0' },
      {
        engine,
        how: 'BERTH_NATIVE=0 bin/berth exec bench -- true (sh, then the Node CLI)',
      },
    );
    for (const [name, args] of OTHER_COMMANDS) {
      await processSeries(`berth-${name}-on-${engine}`, opts['node-n'], 3, BERTH, args, node.env, {
        engine,
        how: `bin/berth ${args.join(' ')}`,
      });
    }
    // `berth events` runs until stopped: timed from its spawn to its first event on stdout (the
    // last one the node has, replayed from --since), then stopped.
    const last = await lastEventId(node);
    const events = await series(`berth-events-on-${engine}`, { n: opts['node-n'], warmup: 3, budgetMs: 60_000 }, () =>
      firstLine(BERTH, ['events', '--json', '--since', String(last - 1)], node.env),
    );
    results.push(events.row({ engine, how: `bin/berth events --json --since ID: from spawn to its first event printed` }));
  } finally {
    await node.stop();
  }
}

/** The Node CLI's commands, timed whole; each must be within OTHER_TARGET_MS. */
const OTHER_COMMANDS: Array<[string, string[]]> = [
  ['ls', ['ls']],
  ['ls-json', ['ls', '--json']],
  ['describe', ['describe', 'bench']],
  ['token-ls', ['token', 'ls']],
];

/** The id of the node's latest event (exec made some). */
async function lastEventId(node: BerthNode): Promise<number> {
  const stop = new AbortController();
  let last = 0;
  // The replay comes at once; the stream is left when nothing more came for a moment.
  let timer = setTimeout(() => stop.abort(), 2000);
  try {
    for await (const e of node.client.events({ since: 0, signal: stop.signal })) {
      last = e.id;
      clearTimeout(timer);
      timer = setTimeout(() => stop.abort(), 200);
    }
  } finally {
    clearTimeout(timer);
  }
  if (last < 1) throw new Error('the node has no events to replay');
  return last;
}

/** Milliseconds from spawning a long-running command to the first line on its stdout; then it is stopped. */
function firstLine(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    let done = false;
    const timer = setTimeout(() => finish(new Error(`no event from berth events in 10 s: ${err.trim()}`)), 10_000);
    const finish = (e?: Error, ms?: number): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGTERM');
      child.once('close', () => (e ? reject(e) : resolve(ms!)));
    };
    child.stdout.on('data', (c: Buffer) => {
      if (c.includes(10)) finish(undefined, performance.now() - t0);
    });
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    child.once('error', (e) => finish(e));
    child.once('exit', (code) => finish(new Error(`berth events exited ${code} before an event: ${err.trim()}`)));
  });
}

/**
 * A plain idle container of the image for the engines' exec CLIs. It has no network (exec does
 * not use one), so the figure does not depend on the engine's bridge being there.
 */
async function startPeer(engine: EngineName, image: string): Promise<{ id: string; remove: () => Promise<void> }> {
  const cli = ENGINE_CLI[engine];
  const args = ['run', '-d', '--network', 'none', ...labelArgs(engine), ...ulimitArgs(), image, 'sleep', 'infinity'];
  const id = (await mustRun(cli, args)).trim();
  const rm = (): Promise<void> => mustRun(cli, ['rm', '-f', id], { cleanup: true }).then(() => undefined);
  const unregister = onCleanup(`${engine} rm -f ${id.slice(0, 12)}`, rm);
  return { id, remove: () => (unregister(), rm()) };
}

async function engineSeries(engine: EngineName, image: string): Promise<void> {
  const peer = await startPeer(engine, image);
  try {
    const cli = ENGINE_CLI[engine];
    await processSeries(`${engine}-exec-cli`, opts['peer-n'], 3, cli, ['exec', peer.id, 'true'], process.env, {
      engine,
      how: `${cli} exec <container> true (the container has no network)`,
    });
  } finally {
    await peer.remove();
  }
}

function p50Of(name: string): number | null {
  const r = results.find((x) => x.name === name && x.error === undefined);
  return r?.p50_ms ?? null;
}

/** Per engine: how the native client compares with each other way, and whether the targets are met. */
function summary(engines: EngineName[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const engine of engines) {
    const native = p50Of(`berth-exec-native-on-${engine}`);
    const api = p50Of(`berth-api-exec-on-${engine}`);
    const start = p50Of('process-start');
    const otherNames = [...OTHER_COMMANDS.map(([c]) => c), 'events'];
    const others = otherNames.map((c) => p50Of(`berth-${c}-on-${engine}`));
    out[engine] = {
      native_exec_p50_ms: native,
      native_minus_in_process_api_p50_ms: native === null || api === null ? null : Math.round((native - api) * 1000) / 1000,
      node_cli_exec_p50_over_native_p50: ratio(p50Of(`berth-exec-node-cli-on-${engine}`), native),
      docker_exec_cli_p50_over_native_p50: ratio(p50Of('docker-exec-cli'), native),
      podman_exec_cli_p50_over_native_p50: ratio(p50Of('podman-exec-cli'), native),
      node_startup_p50_over_native_p50: ratio(p50Of('node-startup'), native),
      native_minus_process_start_p50_ms: native === null || start === null ? null : Math.round((native - start) * 1000) / 1000,
      [`native_exec_p50_le_${EXEC_TARGET_MS}_ms`]: native === null ? null : native <= EXEC_TARGET_MS,
      other_commands_p50_ms: Object.fromEntries(otherNames.map((c, i) => [c, others[i]])),
      other_commands_p50_over_node_startup_p50: Object.fromEntries(otherNames.map((c, i) => [c, ratio(others[i], p50Of('node-startup'))])),
      [`other_commands_p50_le_${OTHER_TARGET_MS}_ms`]: others.some((x) => x === null) ? null : others.every((x) => x! <= OTHER_TARGET_MS),
    };
  }
  return out;
}

runBench(report, (opts['max-seconds'] + 60) * 1000, async () => {
  setDeadline(opts['max-seconds'] * 1000);
  const engines = engineList(opts.engines);
  const { digest, repo, tags } = await prepareEngineBench(report, opts, engines, results);
  // References, not peers: what starting any process costs here, and what starting Node costs.
  await guarded(results, 'process-start', {}, () =>
    processSeries('process-start', opts.n, opts.warmup, '/bin/true', [], process.env, { how: '/bin/true (for reference)' }),
  );
  await guarded(results, 'node-startup', {}, () =>
    processSeries('node-startup', opts['node-n'], 3, process.execPath, ['-e', '0'], process.env, { how: 'node -e 0 (for reference)' }),
  );
  for (const engine of engines) {
    await guarded(results, `berth-on-${engine}`, { engine }, () => berthSeries(engine, digest, repo));
    await guarded(results, `${engine}-exec-cli`, { engine }, () => engineSeries(engine, tags[engine]!));
  }
  // The peers are the engines' exec CLIs; berth's row is the native exec (ls, describe and the
  // Node CLI are berth's too, but not what is compared), and Node's start-up is only a reference.
  report.ratios = peerRatios(
    results.filter((r) => r.name !== 'node-startup' && r.name !== 'process-start'),
    { berth: (r) => r.name.startsWith('berth-exec-native-'), extra: (b) => ({ berth: b.name }) },
  );
  report.summary = summary(engines);
  log('done');
});

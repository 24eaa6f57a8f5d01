// The cost of an egress policy, against plain egress, in the same run on the same node:
//  - a real `npm ci` of a mid-sized lockfile (express and friends, from the npm registry,
//    through this machine's network), each round with an empty npm cache: `allow:npm` against
//    plain egress, interleaved;
//  - connection setup: a new TCP connection and one HTTP request to a server in a network
//    namespace this bench makes, from inside the environment, p50 over many.
//
//   node dist/bench/egress.js [--engines podman] [--rounds 3] [--conns 200] [--max-seconds 400]
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BerthNode,
  engineList,
  type EngineName,
  guarded,
  log,
  onCleanup,
  p50,
  parseOptions,
  prepareEngineBench,
  ratio,
  type Row,
  runBench,
  Sampler,
  setDeadline,
  stats,
  tempDir,
} from './lib.js';

const opts = parseOptions({ engines: 'podman', rounds: 3, conns: 200, 'max-seconds': 400 });
const results: Row[] = [];
const report: Record<string, unknown> = { benchmark: 'egress' };

const PACKAGE = {
  name: 'bench-app',
  version: '1.0.0',
  private: true,
  dependencies: { express: '4.21.2', commander: '12.1.0', chalk: '4.1.2', lodash: '4.17.21', yargs: '17.7.2', debug: '4.3.7' },
};

// Inside the environment: N sequential new connections, one GET each, durations in ms.
const CONNS = `
const http = require('node:http');
const [ip, n] = [process.argv[2], Number(process.argv[3])];
const out = [];
const one = () => new Promise((resolve, reject) => {
  const t = process.hrtime.bigint();
  const req = http.get({ host: ip, port: 80, path: '/', headers: { host: 'bench.test' }, agent: false }, (res) => {
    res.resume();
    res.on('end', () => resolve(Number(process.hrtime.bigint() - t) / 1e6));
  });
  req.on('error', reject);
});
(async () => { for (let i = 0; i < n; i++) out.push(await one()); console.log(JSON.stringify(out)); })().catch((e) => { console.error(e.message); process.exit(1); });
`;

/** A network namespace holding an HTTP server, reached over a bridge of this bench's own. */
async function startUpstream(): Promise<string> {
  const id = (process.pid % 200).toString(16);
  const ns = `bbench${id}`;
  const br = `bbr${id}`;
  const prefix = `10.251.${process.pid % 250}`;
  const ip = (...a: string[]): void => void execFileSync('ip', a, { stdio: 'ignore' });
  ip('netns', 'add', ns);
  onCleanup(`netns ${ns}`, () => {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    execFileSync('ip', ['link', 'del', br], { stdio: 'ignore' });
  });
  ip('link', 'add', br, 'type', 'bridge');
  ip('addr', 'add', `${prefix}.1/24`, 'dev', br);
  ip('link', 'set', br, 'up');
  ip('link', 'add', `${br}v`, 'type', 'veth', 'peer', 'name', `${br}p`);
  ip('link', 'set', `${br}p`, 'netns', ns);
  ip('link', 'set', `${br}v`, 'master', br, 'up');
  ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${prefix}.2/24`, 'dev', `${br}p`);
  ip('netns', 'exec', ns, 'ip', 'link', 'set', `${br}p`, 'up');
  ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
  ip('netns', 'exec', ns, 'ip', 'route', 'add', 'default', 'via', `${prefix}.1`);
  const server = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, '-e', `require('node:http').createServer((q, s) => s.end('ok')).listen(80, '${prefix}.2')`],
    { stdio: 'ignore' },
  );
  onCleanup('upstream server', () => void server.kill('SIGKILL'));
  await sleep(500);
  return `${prefix}.2`;
}

async function sh(node: BerthNode, env: string, script: string, timeoutMs: number): Promise<string> {
  const r = await node.client.exec(env, { argv: ['sh', '-c', script], timeoutMs });
  const text = (b64: string): string => Buffer.from(b64, 'base64').toString('utf8');
  if (r.exitCode !== 0) throw new Error(`${env}: exit ${r.exitCode}: ${text(r.stderr).slice(-400)}`);
  return text(r.stdout);
}

async function engineSeries(engine: EngineName, digest: string, repo: string, upstream: string): Promise<void> {
  const node = await BerthNode.start(engine, digest);
  try {
    writeFileSync(join(node.home, 'egress-hosts'), `${upstream} bench.test\n`);
    const modes = [
      { name: 'plain', egress: undefined },
      { name: 'policy', egress: 'allow:npm,bench.test' },
    ] as const;
    for (const m of modes) await node.client.createEnv({ name: m.name, repo, ...(m.egress ? { egress: m.egress } : {}) });
    const dir = tempDir('berth-bench-egress-');
    writeFileSync(join(dir, 'conns.js'), CONNS);
    for (const m of modes) {
      await sh(node, m.name, `mkdir -p /tmp/app && cat > /tmp/app/package.json <<'EOF'\n${JSON.stringify(PACKAGE)}\nEOF`, 10_000);
      await sh(node, m.name, `cat > /tmp/conns.js <<'EOF'\n${CONNS}\nEOF`, 10_000);
    }
    // One lockfile for both, made once (untimed).
    const lock = await sh(
      node,
      'plain',
      'cd /tmp/app && npm install --package-lock-only --no-audit --no-fund >/dev/null 2>&1 && cat package-lock.json',
      180_000,
    );
    const packages = Object.keys((JSON.parse(lock) as { packages: Record<string, unknown> }).packages).length - 1;
    for (const m of modes) await sh(node, m.name, `cat > /tmp/app/package-lock.json <<'EOF'\n${lock}\nEOF`, 10_000);

    // Connection setup first (quick), then the installs, interleaved.
    const conn: Record<string, number[]> = {};
    for (const m of modes) {
      await sh(node, m.name, `node /tmp/conns.js ${upstream} 20`, 60_000); // warm-up
      conn[m.name] = JSON.parse(await sh(node, m.name, `node /tmp/conns.js ${upstream} ${opts.conns}`, 120_000)) as number[];
    }
    const npm = new Map(modes.map((m) => [m.name, new Sampler(`npm-ci-${m.name}-${engine}`, opts.rounds, 0, 300_000)]));
    for (let i = 0; i < opts.rounds; i++) {
      for (const m of modes) {
        const s = npm.get(m.name)!;
        if (!s.more()) continue;
        try {
          const t0 = performance.now();
          await sh(
            node,
            m.name,
            `cd /tmp/app && rm -rf node_modules /tmp/npm-cache && npm ci --no-audit --no-fund --cache /tmp/npm-cache >/dev/null 2>&1`,
            240_000,
          );
          s.add(performance.now() - t0);
        } catch (err) {
          s.fail(err);
        }
      }
    }
    const egress = await node.client.egress('policy');
    for (const m of modes) {
      results.push({
        name: `connect-${m.name}-${engine}`,
        ...stats(conn[m.name]!),
        warmup: 20,
        engine,
        how: 'new TCP connection + one HTTP GET, sequential, inside the environment',
      });
      results.push(
        npm.get(m.name)!.row({ engine, how: `npm ci of ${packages} packages, empty cache, through ${m.egress ?? 'plain egress'}` }),
      );
    }
    const cPlain = p50(conn.plain!);
    const cPolicy = p50(conn.policy!);
    const nPlain = p50(npm.get('plain')!.samples);
    const nPolicy = p50(npm.get('policy')!.samples);
    report[`summary_${engine}`] = {
      lockfile_packages: packages,
      npm_ci_policy_over_plain_p50: ratio(nPolicy, nPlain),
      npm_ci_target: '<= 1.05',
      connect_p50_plain_ms: cPlain,
      connect_p50_policy_ms: cPolicy,
      connect_p50_overhead_ms: cPlain !== null && cPolicy !== null ? Math.round((cPolicy - cPlain) * 1000) / 1000 : null,
      connect_target: '<= 2 ms over plain',
      policy_destinations: egress.destinations.map((d) => `${d.host}:${d.port} ${d.allowed ? 'allowed' : 'denied'} ${d.connections}`),
    };
    log(`egress on ${engine}: ${JSON.stringify(report[`summary_${engine}`])}`);
  } finally {
    await node.stop();
  }
}

runBench(report, (opts['max-seconds'] + 60) * 1000, async () => {
  setDeadline(opts['max-seconds'] * 1000);
  const engines = engineList(opts.engines);
  const { digest, repo } = await prepareEngineBench(report, opts, engines, results);
  const upstream = await startUpstream();
  for (const engine of engines) await guarded(results, `egress-${engine}`, { engine }, () => engineSeries(engine, digest, repo, upstream));
  log('done');
});

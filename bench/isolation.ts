// What gVisor costs, side by side with runc on the same Docker engine, in this run: the round
// trip of one command (`true`) through berth's agent, create to first command, and `npm test`
// of a repository (the test app makeRepo writes, with a node:test file, since no other
// repository is reachable offline here). runc runs with its user namespace (userns-remap).
//
//   node dist/bench/isolation.js [--n 200] [--warmup 20] [--creates 5] [--tests 5] [--max-seconds 240]
//
// The Docker daemon must name runsc among its runtimes (scripts/private-engines.sh does):
// source that script's env.sh first.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import {
  BerthNode,
  berthRevision,
  guarded,
  log,
  makeRepo,
  parseOptions,
  ratio,
  type Row,
  runBench,
  series,
  setDeadline,
  toolchainDigest,
} from './lib.js';

const opts = parseOptions({ n: 200, warmup: 20, creates: 5, tests: 5, 'max-seconds': 240 });
const results: Row[] = [];
const report: Record<string, unknown> = { benchmark: 'isolation', engine: 'docker', results };

function repoWithTests(): string {
  const repo = makeRepo();
  writeFileSync(
    join(repo, 'package.json'),
    JSON.stringify({ name: 'app', version: '1.0.0', scripts: { test: 'node --test' } }, null, 2) + '\n',
  );
  const tests = Array.from(
    { length: 20 },
    (_, i) => `test('case ${i}', () => { assert.equal(require('./src/index.js') + ${i}, ${42 + i}); });`,
  ).join('\n');
  writeFileSync(join(repo, 'app.test.js'), `const test = require('node:test');\nconst assert = require('node:assert');\n${tests}\n`);
  const g = (...a: string[]): void =>
    void execFileSync('git', ['-C', repo, '-c', 'user.name=b', '-c', 'user.email=b@example.invalid', ...a]);
  g('add', '-A');
  g('commit', '-q', '-m', 'tests');
  return repo;
}

async function tier(node: BerthNode, repo: string, isolation: 'runc' | 'gvisor'): Promise<void> {
  const name = `iso-${isolation}`;
  const created = await node.cli(['new', name, '--repo', repo, '--isolation', isolation, '--no-pool', '--json']);
  if (created.code !== 0) throw new Error(`berth new ${name} exited ${created.code}: ${created.stderr.trim()}`);
  const exec = await series(`exec-${isolation}`, { n: opts.n, warmup: opts.warmup, budgetMs: 60_000 }, async () => {
    const t0 = performance.now();
    const r = await node.client.exec(name, { argv: ['true'] });
    const ms = performance.now() - t0;
    if (r.exitCode !== 0) throw new Error(`true exited ${r.exitCode}`);
    return ms;
  });
  results.push(exec.row({ isolation, what: 'exec round trip of `true`', how: 'NodeClient.exec over the unix socket, sequential' }));
  const npmTest = await series(`npm-test-${isolation}`, { n: opts.tests, warmup: 1, budgetMs: 60_000 }, async () => {
    const t0 = performance.now();
    const r = await node.client.exec(name, { argv: ['npm', 'test', '--silent'] });
    const ms = performance.now() - t0;
    if (r.exitCode !== 0) throw new Error(`npm test exited ${r.exitCode}`);
    return ms;
  });
  results.push(npmTest.row({ isolation, what: 'npm test (20 node:test cases)' }));
  await node.cli(['rm', name]);
  let i = 0;
  const create = await series(`create-${isolation}`, { n: opts.creates, warmup: 1, budgetMs: 90_000 }, async () => {
    const n = `${name}-${i++}`;
    const t0 = performance.now();
    const c = await node.client.createEnv({ name: n, repo, isolation, noPool: true });
    const r = await node.client.exec(c.name, { argv: ['true'] });
    const ms = performance.now() - t0;
    if (r.exitCode !== 0) throw new Error(`first command exited ${r.exitCode}`);
    await node.cli(['rm', n]);
    return ms;
  });
  results.push(create.row({ isolation, what: 'create to first command (no pool)' }));
}

runBench(report, (opts['max-seconds'] + 60) * 1000, async () => {
  setDeadline(opts['max-seconds'] * 1000);
  report.options = opts;
  report.berth = berthRevision();
  report.loadavg_before = loadavg();
  const digest = await toolchainDigest();
  const repo = repoWithTests();
  const node = await BerthNode.start('docker', digest);
  try {
    for (const t of ['runc', 'gvisor'] as const) await guarded(results, `tier-${t}`, { isolation: t }, () => tier(node, repo, t));
  } finally {
    await node.stop();
  }
  report.loadavg_after = loadavg();
  const p = (n: string): number | null => (results.find((r) => r.name === n)?.p50_ms as number | undefined) ?? null;
  report.ratios_gvisor_over_runc_p50 = {
    exec: ratio(p('exec-gvisor'), p('exec-runc')),
    create: ratio(p('create-gvisor'), p('create-runc')),
    npm_test: ratio(p('npm-test-gvisor'), p('npm-test-runc')),
  };
  log('done');
});

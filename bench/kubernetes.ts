// The Kubernetes backend on the test cluster (scripts/kubernetes up), side by side with the
// cluster's own tools in the same run:
// - exec round trip (`true`): berth through its agent (one exec stream, opened once) against
//   `kubectl exec` and against one API exec stream per command (what client libraries do);
// - create to first command: berth's new + exec against `kubectl run` + wait + `kubectl exec`;
// - pool claim to first command (p50, p99): claimed by the node that warmed the pool (its agent
//   connection is open) and by another berth node (it opens one).
//
//   node dist/bench/kubernetes.js [--n 200] [--kubectl-n 20] [--create-n 5] [--pool 8] [--rounds 3]
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { Exec } from '@kubernetes/client-node';
import { KubernetesEnvironments } from '../src/env/kubernetes-envs.js';
import { log, mustRun, onCleanup, parseOptions, ratio, run, runBench, stats, type Stats } from './lib.js';

const opts = parseOptions({ n: 200, 'kubectl-n': 20, 'create-n': 5, pool: 8, rounds: 3, 'max-seconds': 540 });
const STATE = process.env.BERTH_K8S_STATE ?? '/var/lib/berth-kubernetes';
const report: Record<string, unknown> = { bench: 'kubernetes', options: opts, loadavg_start: loadavg() };

async function sample(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await fn();
    out.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return out;
}

runBench(report, opts['max-seconds'] * 1000, async () => {
  const kubeconfig = (await mustRun('bash', [join(import.meta.dirname, '..', '..', 'scripts', 'kubernetes'), 'status'])).trim();
  const image = readFileSync(join(STATE, 'toolchain-image'), 'utf8').trim();
  const agentImage = readFileSync(join(STATE, 'agent-image'), 'utf8').trim();
  const ns = `berth-bench-${randomBytes(3).toString('hex')}`;
  const kubectl = (args: string[]): Promise<string> =>
    mustRun('kubectl', ['--kubeconfig', kubeconfig, '-n', ns, ...args], { timeoutMs: 120_000 });
  await mustRun('kubectl', ['--kubeconfig', kubeconfig, 'create', 'namespace', ns]);
  onCleanup(`namespace ${ns}`, async () => {
    await run('kubectl', ['--kubeconfig', kubeconfig, 'delete', 'namespace', ns, '--wait=false'], { cleanup: true });
  });
  const nodeA = `kb${randomBytes(2).toString('hex')}`;
  const open = (id: string): Promise<KubernetesEnvironments> =>
    KubernetesEnvironments.open({ kubeconfig, namespace: ns, nodeId: id, agentImage, caBundle: null });
  const a = await open(nodeA);
  const b = await open(`${nodeA}b`);
  onCleanup('berth Pods', async () => {
    await a.close({ removeAll: true });
    await b.close({ removeAll: true });
  });
  const rows: Record<string, Stats & { path?: string }> = {};

  // ---- exec round trip ----
  log('exec round trip');
  const env = await a.create({ name: 'bench', image, memoryMb: 512, cpus: 1 });
  await sample(20, () => a.exec('bench', ['true']));
  rows.berth_exec = { ...stats(await sample(opts.n, () => a.exec('bench', ['true']))), path: 'agent over one API exec stream' };
  const exec = new Exec(a.cluster.kc);
  const apiExec = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const sink = new Writable({ write: (_c, _e, cb) => cb() });
      exec
        .exec(ns, env.pod, 'env', ['true'], sink, sink, null, false, (s) =>
          s.status === 'Success' ? resolve() : reject(new Error(s.message)),
        )
        .catch(reject);
    });
  await sample(5, apiExec);
  rows.api_exec_per_command = {
    ...stats(await sample(Math.min(opts.n, 100), apiExec)),
    path: 'one API exec stream per command (client-node)',
  };
  rows.kubectl_exec = {
    ...stats(await sample(opts['kubectl-n'], () => kubectl(['exec', env.pod, '-c', 'env', '--', 'true']))),
    path: 'kubectl exec CLI',
  };

  // ---- create to first command ----
  log('create to first command');
  const berthCreate: number[] = [];
  const kubectlCreate: number[] = [];
  for (let i = 0; i < opts['create-n']; i++) {
    berthCreate.push(
      ...(await sample(1, async () => {
        await a.create({ name: `c${i}`, image, memoryMb: 256, cpus: 0.5 });
        await a.exec(`c${i}`, ['true']);
      })),
    );
    await a.remove(`c${i}`);
    const pod = `kubectl-run-${i}`;
    kubectlCreate.push(
      ...(await sample(1, async () => {
        await kubectl([
          'run',
          pod,
          `--image=${image}`,
          '--image-pull-policy=Never',
          '--restart=Never',
          '--command',
          '--',
          'sleep',
          'infinity',
        ]);
        await kubectl(['wait', '--for=condition=Ready', `pod/${pod}`, '--timeout=120s']);
        await kubectl(['exec', pod, '--', 'true']);
      })),
    );
    await kubectl(['delete', 'pod', pod, '--grace-period=0', '--force', '--wait=false']).catch(() => '');
  }
  rows.berth_create_to_first_command = stats(berthCreate);
  rows.kubectl_run_to_first_command = stats(kubectlCreate);

  // ---- pool claim to first command ----
  log('pool claim to first command');
  const same: number[] = [];
  const cross: number[] = [];
  for (let r = 0; r < opts.rounds; r++) {
    await a.fill(`p${r}`, opts.pool, { image, memoryMb: 256, cpus: 0.5 });
    for (let i = 0; i < opts.pool; i++) {
      const who = i % 2 === 0 ? a : b;
      const t = process.hrtime.bigint();
      const e = await who.claim(`p${r}`, `claim-${r}-${i}`);
      if (!e) throw new Error('the pool ran dry');
      await who.exec(e.name, ['true']);
      (who === a ? same : cross).push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    for (const who of [a, b]) for (const e of who.list()) if (e.name.startsWith(`claim-${r}-`)) await who.remove(e.name);
  }
  rows.pool_claim_same_node = { ...stats(same), path: 'claimed by the node that warmed it (agent connection open)' };
  rows.pool_claim_other_node = { ...stats(cross), path: 'claimed by another berth node (opens its agent stream)' };
  rows.pool_claim_all = stats([...same, ...cross]);

  report.rows = rows;
  report.ratios = {
    kubectl_exec_over_berth_exec_p50: ratio(rows.kubectl_exec?.p50_ms, rows.berth_exec?.p50_ms),
    api_exec_over_berth_exec_p50: ratio(rows.api_exec_per_command?.p50_ms, rows.berth_exec?.p50_ms),
    kubectl_run_over_berth_create_p50: ratio(rows.kubectl_run_to_first_command?.p50_ms, rows.berth_create_to_first_command?.p50_ms),
    agent_sandbox_claim_p50_ms: 92,
    agent_sandbox_claim_p99_ms: 376,
  };
  report.loadavg_end = loadavg();
});

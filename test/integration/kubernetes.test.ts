// The Kubernetes backend on a real cluster (scripts/kubernetes up): environments are Pods,
// the agent answers through the API server, pool claims are atomic across two claimers, a Pod
// deleted under berth shows with its reason, and every bad input is one line naming its cause.
// Skipped, with a message, only when the cluster is not up.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BerthError } from '../../src/core/errors.js';
import { KubernetesEnvironments } from '../../src/env/kubernetes-envs.js';
import { connectCluster } from '../../src/engine/kubernetes/cluster.js';
import { ROOT } from '../helpers/fixture.js';

const STATE = process.env.BERTH_K8S_STATE ?? '/var/lib/berth-kubernetes';
const up = spawnSync('bash', [join(ROOT, 'scripts', 'kubernetes'), 'status'], { encoding: 'utf8' });
const KUBECONFIG = up.status === 0 ? up.stdout.trim() : '';
const skip = up.status === 0 ? false : 'the test cluster is not up: run `scripts/kubernetes up` first';
const read = (f: string): string => readFileSync(join(STATE, f), 'utf8').trim();

function kubectl(args: string[], input?: string): string {
  return execFileSync('kubectl', ['--kubeconfig', KUBECONFIG, ...args], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

async function rejects(p: Promise<unknown>, code: string, pattern: RegExp): Promise<BerthError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof BerthError, `not a BerthError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.oneLine(), pattern);
    assert.ok(!err.oneLine().includes('\n'), 'one line');
    return err;
  }
  assert.fail(`expected ${code}`);
}

describe('the Kubernetes backend', { skip, timeout: 600_000 }, () => {
  const ns = `berth-test-${randomBytes(3).toString('hex')}`;
  const nodeId = `kt${randomBytes(2).toString('hex')}`;
  let image = '';
  let agentImage = '';
  let envs: KubernetesEnvironments;
  const tmp = mkdtempSync(join(tmpdir(), 'berth-k8s-'));
  const open = (id = nodeId): Promise<KubernetesEnvironments> =>
    KubernetesEnvironments.open({ kubeconfig: KUBECONFIG, namespace: ns, nodeId: id, agentImage, caBundle: null });

  before(async () => {
    image = read('toolchain-image');
    agentImage = read('agent-image');
    kubectl(['create', 'namespace', ns]);
    envs = await open();
  });

  after(async () => {
    await envs?.close({ removeAll: true }).catch(() => {});
    spawnSync('kubectl', ['--kubeconfig', KUBECONFIG, 'delete', 'namespace', ns, '--wait=false'], { stdio: 'ignore' });
    rmSync(tmp, { recursive: true, force: true });
  });

  it('new, exec through the agent, and rm: the environment is a restricted Pod', async () => {
    const env = await envs.create({ name: 'fix-login', image, memoryMb: 512, cpus: 1 });
    const r = await envs.exec('fix-login', ['sh', '-c', 'echo hello; id -u; echo oops >&2; exit 3']);
    assert.ok(r.ok);
    assert.equal(r.exec?.exitCode, 3);
    assert.equal(r.stdout, 'hello\n1000\n');
    assert.equal(r.stderr, 'oops\n');
    const pod = JSON.parse(kubectl(['-n', ns, 'get', 'pod', env.pod, '-o', 'json'])) as {
      spec: {
        automountServiceAccountToken: boolean;
        containers: Array<{ resources: { limits: Record<string, string> } }>;
        volumes: Array<Record<string, unknown>>;
      };
    };
    assert.equal(pod.spec.automountServiceAccountToken, false);
    assert.deepEqual(pod.spec.containers[0]!.resources.limits, { cpu: '1', memory: '512Mi' });
    assert.ok(!pod.spec.volumes.some((v) => 'hostPath' in v));
    // No service-account token is in the environment.
    const token = await envs.exec('fix-login', ['sh', '-c', 'ls /var/run/secrets/kubernetes.io 2>&1 || true']);
    assert.match(token.stdout, /No such file/);
    // Its NetworkPolicy is made with it (the test cluster's CNI does not enforce it).
    const np = JSON.parse(kubectl(['-n', ns, 'get', 'networkpolicy', env.pod, '-o', 'json'])) as {
      spec: { policyTypes: string[]; ingress?: unknown[] };
    };
    assert.deepEqual(np.spec.policyTypes, ['Ingress', 'Egress']);
    await envs.remove('fix-login');
    assert.match(
      spawnSync('kubectl', ['--kubeconfig', KUBECONFIG, '-n', ns, 'get', 'pod', env.pod], { encoding: 'utf8' }).stderr,
      /NotFound/,
    );
    assert.match(
      spawnSync('kubectl', ['--kubeconfig', KUBECONFIG, '-n', ns, 'get', 'networkpolicy', env.pod], { encoding: 'utf8' }).stderr,
      /NotFound/,
    );
  });

  it('gives two concurrent claimers on two berth nodes never the same warm Pod', async () => {
    await envs.fill('pool-a', 3, { image, memoryMb: 256, cpus: 0.5 });
    const other = await open(`${nodeId}b`);
    try {
      const claims = await Promise.all([
        ...[0, 1, 2].map((i) => envs.claim('pool-a', `a-${i}`)),
        ...[0, 1, 2].map((i) => other.claim('pool-a', `b-${i}`)),
      ]);
      const won = claims.filter((c) => c !== null);
      assert.equal(won.length, 3, 'every warm Pod is claimed once');
      assert.equal(new Set(won.map((c) => c.pod)).size, 3, 'no Pod is claimed twice');
      // The winner's first command goes through its own agent connection.
      const first = won[0]!;
      const owner = envs.list().some((e) => e.name === first.name) ? envs : other;
      const r = await owner.exec(first.name, ['true']);
      assert.equal(r.exec?.exitCode, 0);
      assert.equal(await envs.claim('pool-a', 'late'), null, 'an empty pool claims nothing');
    } finally {
      await other.close();
    }
  });

  it('shows a Pod deleted under berth, with the reason, and refuses its commands', async () => {
    const env = await envs.create({ name: 'doomed', image, memoryMb: 256, cpus: 0.5 });
    const seen = new Promise<string>((resolve) => {
      const t = setInterval(() => {
        const hit = envs.troubles.find((x) => x.pod === env.pod);
        if (hit) {
          clearInterval(t);
          resolve(hit.reason);
        }
      }, 50);
    });
    kubectl(['-n', ns, 'delete', 'pod', env.pod, '--grace-period=0', '--force', '--wait=false']);
    assert.match(await seen, /deleted outside berth/);
    assert.equal(envs.get('doomed').state, 'vanished');
    await rejects(envs.exec('doomed', ['true']), 'not_running', /doomed is gone: its Pod was deleted outside berth/);
    await envs.remove('doomed');
  });

  describe('bad input and faults, each one line naming the cause', () => {
    it('a kubeconfig that is missing, not a kubeconfig, or pointing at no server', async () => {
      await rejects(connectCluster(join(tmp, 'nope'), ns), 'usage', /kubeconfig .*nope does not exist/);
      writeFileSync(join(tmp, 'garbage'), '{{{ not yaml');
      await rejects(connectCluster(join(tmp, 'garbage'), ns), 'usage', /is not a valid kubeconfig/);
      writeFileSync(join(tmp, 'closed'), readFileSync(KUBECONFIG, 'utf8').replace(/server: .*/, 'server: https://127.0.0.1:1'));
      await rejects(connectCluster(join(tmp, 'closed'), ns), 'engine_unavailable', /API server is unreachable/);
      writeFileSync(join(tmp, 'badtoken'), readFileSync(KUBECONFIG, 'utf8').replace(/token: .*/, 'token: wrong'));
      await rejects(connectCluster(join(tmp, 'badtoken'), ns), 'unauthorized', /refused the kubeconfig's credentials/);
    });

    it('a namespace that does not exist, or is not a name', async () => {
      await rejects(connectCluster(KUBECONFIG, 'no-such-ns-x'), 'not_found', /namespace no-such-ns-x does not exist/);
      await rejects(connectCluster(KUBECONFIG, 'Bad_NS'), 'invalid_name', /not a valid Kubernetes namespace/);
    });

    it('a role without the verbs berth needs: they are named', async () => {
      kubectl(['-n', ns, 'create', 'serviceaccount', 'limited']);
      kubectl(['-n', ns, 'create', 'role', 'pods-read', '--verb=get,list', '--resource=pods']);
      kubectl(['-n', ns, 'create', 'rolebinding', 'limited', '--role=pods-read', `--serviceaccount=${ns}:limited`]);
      let token = '';
      for (let i = 0; i < 100 && !token; i++) {
        const secret = kubectl(['-n', ns, 'get', 'serviceaccount', 'limited', '-o', 'jsonpath={.secrets[0].name}']).trim();
        if (secret)
          token = Buffer.from(kubectl(['-n', ns, 'get', 'secret', secret, '-o', 'jsonpath={.data.token}']), 'base64').toString('utf8');
        else await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(token, 'the service account got a token');
      writeFileSync(join(tmp, 'limited'), readFileSync(KUBECONFIG, 'utf8').replace(/token: .*/, `token: ${token}`));
      const err = await rejects(
        connectCluster(join(tmp, 'limited'), ns),
        'forbidden',
        /may not create pods, watch pods, update pods, patch pods, delete pods, create pods\/exec/,
      );
      assert.match(err.message, /create networkpolicies/);
    });

    it("an image that is not on the cluster's node", async () => {
      await rejects(
        envs.create({ name: 'no-image', image: 'localhost/berth-no-such-image:1', memoryMb: 256, cpus: 0.5 }),
        'image_missing',
        /image localhost\/berth-no-such-image:1 is not on the cluster's node/,
      );
      assert.equal(
        (JSON.parse(kubectl(['-n', ns, 'get', 'pods', '-l', 'org.berth.name=no-image', '-o', 'json'])) as { items: unknown[] }).items
          .length,
        0,
        'nothing is left',
      );
    });

    it('a quota that is exceeded', async () => {
      kubectl(['-n', ns, 'create', 'quota', 'two-pods', '--hard=pods=0']);
      try {
        await rejects(
          envs.create({ name: 'over', image, memoryMb: 256, cpus: 0.5 }),
          'quota_exceeded',
          /exceeded quota: two-pods.*raise the ResourceQuota in namespace/,
        );
      } finally {
        kubectl(['-n', ns, 'delete', 'quota', 'two-pods']);
      }
    });
  });
});

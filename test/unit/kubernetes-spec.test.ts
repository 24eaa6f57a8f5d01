// The Kubernetes objects berth makes, checked as data: the Pod's security context, limits and
// labels, and the NetworkPolicy of each network mode (the test cluster has no CNI that
// enforces NetworkPolicy, so the objects themselves are what can be checked there).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { labelValue, podNameFor, podSpec, KLABEL } from '../../src/engine/kubernetes/pod-spec.js';
import { networkPolicy } from '../../src/engine/kubernetes/network-policy.js';
import { stuckReason } from '../../src/engine/kubernetes/pods.js';
import { kubeError } from '../../src/engine/kubernetes/errors.js';

const base = {
  podName: 'berth-n1-abc',
  nodeId: 'n1',
  envId: 'abc',
  envName: 'fix-login',
  image: 'localhost/berth-toolchain:1',
  agentImage: 'localhost/berth-agent:1',
  env: { A: '1' },
  memoryMb: 1024,
  cpus: 1.5,
};

describe('the Pod of an environment', () => {
  it('runs restricted: non-root, no escalation, no capabilities, default seccomp, no token', () => {
    const pod = podSpec(base);
    const spec = pod.spec!;
    assert.equal(spec.automountServiceAccountToken, false);
    assert.equal(spec.enableServiceLinks, false);
    for (const c of [...spec.initContainers!, ...spec.containers]) {
      const sc = c.securityContext!;
      assert.equal(sc.runAsNonRoot, true, c.name);
      assert.notEqual(sc.runAsUser, 0, c.name);
      assert.equal(sc.allowPrivilegeEscalation, false, c.name);
      assert.deepEqual(sc.capabilities?.drop, ['ALL'], c.name);
      assert.equal(sc.seccompProfile?.type, 'RuntimeDefault', c.name);
    }
    assert.ok(!spec.volumes!.some((v) => v.hostPath), 'no host path');
    assert.equal(spec.runtimeClassName, undefined);
    assert.equal(podSpec({ ...base, runtimeClassName: 'gvisor' }).spec!.runtimeClassName, 'gvisor');
  });

  it('carries limits, requests, labels and the CA bundle', () => {
    const pod = podSpec({
      ...base,
      caBundle: { configMap: 'berth-ca', key: 'ca.crt', path: '/.berth/ca/ca-certificates.crt' },
      pool: { id: 'p1' },
    });
    const c = pod.spec!.containers[0]!;
    assert.deepEqual(c.resources!.limits, { cpu: '1500m', memory: '1024Mi' });
    assert.ok(c.resources!.requests!.cpu && c.resources!.requests!.memory);
    assert.equal(pod.metadata!.labels![KLABEL.env], 'abc');
    assert.equal(pod.metadata!.labels![KLABEL.pool], 'p1');
    assert.equal(pod.metadata!.labels![KLABEL.poolState], 'warm');
    const ca = pod.spec!.volumes!.find((v) => v.name === 'ca')!;
    assert.equal(ca.configMap!.name, 'berth-ca');
    assert.ok(c.volumeMounts!.some((m) => m.name === 'ca' && m.mountPath === '/.berth/ca'));
  });

  it('makes valid label values and Pod names from any input', () => {
    assert.equal(labelValue('a b/c'), 'a-b-c');
    assert.equal(labelValue('-x-'), 'x');
    assert.ok(labelValue('y'.repeat(100)).length <= 63);
    assert.match(podNameFor('Node_One', 'ABC123'), /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  });
});

describe('the NetworkPolicy of an environment', () => {
  const cidrs = ['10.244.0.0/16', '10.96.0.0/12'];
  it('closes ingress in every mode and selects the environment by label', () => {
    for (const mode of ['none', 'egress', 'allow'] as const) {
      const np = networkPolicy({ name: 'p', envId: 'abc', mode, clusterCidrs: cidrs });
      assert.deepEqual(np.spec!.policyTypes, ['Ingress', 'Egress']);
      assert.deepEqual(np.spec!.ingress, []);
      assert.deepEqual(np.spec!.podSelector?.matchLabels, { [KLABEL.env]: 'abc' });
    }
  });
  it('none allows no egress; egress excludes the cluster and link-local; allow lists only its blocks', () => {
    assert.deepEqual(networkPolicy({ name: 'p', envId: 'a', mode: 'none', clusterCidrs: cidrs }).spec!.egress, []);
    const open = networkPolicy({ name: 'p', envId: 'a', mode: 'egress', clusterCidrs: cidrs }).spec!.egress!;
    const v4 = open[0]!.to![0]!.ipBlock!;
    assert.equal(v4.cidr, '0.0.0.0/0');
    assert.deepEqual(v4.except, ['10.244.0.0/16', '10.96.0.0/12', '169.254.0.0/16']);
    const allow = networkPolicy({
      name: 'p',
      envId: 'a',
      mode: 'allow',
      clusterCidrs: cidrs,
      allow: [{ cidr: '192.0.2.7/32', ports: [443] }],
    }).spec!.egress!;
    assert.deepEqual(allow, [{ to: [{ ipBlock: { cidr: '192.0.2.7/32' } }], ports: [{ protocol: 'TCP', port: 443 }] }]);
  });
});

describe('what the API server says, as one line', () => {
  const ctx = { namespace: 'agents' };
  it('names a quota, a forbidden verb, a missing namespace and refused credentials', () => {
    const quota = kubeError(
      {
        code: 403,
        body: JSON.stringify({ message: 'pods "x" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1' }),
      },
      'creating Pod x',
      ctx,
    );
    assert.equal(quota.code, 'quota_exceeded');
    assert.match(quota.message, /exceeded quota: q/);
    assert.equal(kubeError({ code: 403, body: { message: 'cannot create pods' } }, 'x', ctx).code, 'forbidden');
    const ns = kubeError({ code: 404, body: { details: { kind: 'namespaces' } } }, 'x', ctx);
    assert.equal(ns.code, 'not_found');
    assert.match(ns.message, /namespace agents does not exist/);
    assert.equal(kubeError({ code: 401 }, 'x', ctx).code, 'unauthorized');
    assert.equal(kubeError(new Error('connect ECONNREFUSED 127.0.0.1:6443'), 'x', ctx).code, 'engine_unavailable');
  });
  it('says why a Pod cannot run', () => {
    const never = {
      status: {
        phase: 'Pending',
        containerStatuses: [
          { name: 'env', image: 'img:1', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ErrImageNeverPull' } } },
        ],
      },
    };
    assert.match(stuckReason(never) ?? '', /image img:1 is not on the cluster's node/);
    assert.match(stuckReason({ status: { phase: 'Failed', reason: 'Evicted', message: 'low on memory' } }) ?? '', /evicted: low on memory/);
    assert.equal(stuckReason({ status: { phase: 'Pending' } }), null);
  });
});

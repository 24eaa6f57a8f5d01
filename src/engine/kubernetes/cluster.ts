// Connecting to a cluster: the kubeconfig, the namespace, and the verbs berth needs, each
// checked before anything is made so a missing one is named at `berth node add`, not halfway
// through an environment. API versions used: core/v1 (pods, pods/exec, pods/portforward,
// configmaps, namespaces, events), networking.k8s.io/v1 (networkpolicies),
// authorization.k8s.io/v1 (selfsubjectaccessreviews), node.k8s.io/v1 (runtimeclasses, read
// when present; v1 since Kubernetes 1.20). Nothing newer than 1.20 is needed.
import { existsSync, readFileSync } from 'node:fs';
import { AuthorizationV1Api, CoreV1Api, KubeConfig, NetworkingV1Api, NodeV1Api } from '@kubernetes/client-node';
import { BerthError } from '../../core/errors.js';
import { apiFailure, kubeError } from './errors.js';

/** The verbs berth needs in its namespace, by resource ("group/resource" or a core resource). */
export const REQUIRED_VERBS: ReadonlyArray<{ resource: string; group: string; subresource?: string; verbs: string[] }> = [
  { group: '', resource: 'pods', verbs: ['create', 'get', 'list', 'watch', 'update', 'patch', 'delete'] },
  { group: '', resource: 'pods', subresource: 'exec', verbs: ['create'] },
  { group: '', resource: 'configmaps', verbs: ['create', 'get', 'update'] },
  { group: 'networking.k8s.io', resource: 'networkpolicies', verbs: ['create', 'get', 'delete'] },
];

export interface Cluster {
  kc: KubeConfig;
  core: CoreV1Api;
  net: NetworkingV1Api;
  namespace: string;
  server: string;
  /** A RuntimeClass whose handler is gVisor's runsc, when the cluster has one. */
  gvisor: string | null;
}

export function loadKubeconfig(path: string): KubeConfig {
  if (!existsSync(path))
    throw new BerthError('usage', `kubeconfig ${path} does not exist`, 'give --kubeconfig PATH (scripts/kubernetes up prints one)');
  const kc = new KubeConfig();
  try {
    kc.loadFromString(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new BerthError(
      'usage',
      `kubeconfig ${path} is not a valid kubeconfig (${(err as Error).message.split('\n')[0]})`,
      'give the file kubectl uses',
    );
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server)
    throw new BerthError('usage', `kubeconfig ${path} names no cluster server in its current context`, 'set current-context');
  return kc;
}

/** Connects, checks the namespace and every verb, and looks for gVisor. */
export async function connectCluster(path: string, namespace: string, signal?: AbortSignal): Promise<Cluster> {
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(namespace))
    throw new BerthError(
      'invalid_name',
      `namespace ${JSON.stringify(namespace)} is not a valid Kubernetes namespace name`,
      'use lowercase letters, digits and -',
    );
  const kc = loadKubeconfig(path);
  const core = kc.makeApiClient(CoreV1Api);
  const server = kc.getCurrentCluster()!.server;
  const ctx = { namespace };
  signal?.throwIfAborted();
  try {
    await core.readNamespace({ name: namespace });
  } catch (err) {
    const f = apiFailure(err);
    if (f?.code === 404) throw kubeError({ code: 404, body: { details: { kind: 'namespaces' } } }, 'reading the namespace', ctx);
    // A user who may not read namespaces may still work in one: the access review says.
    if (f?.code !== 403) throw kubeError(err, `connecting to ${server}`, ctx);
  }
  const missing = await missingVerbs(kc, namespace);
  if (missing.length)
    throw new BerthError(
      'forbidden',
      `the kubeconfig's user may not ${missing.join(', ')} in namespace ${namespace}`,
      'grant them with a Role and RoleBinding (docs/kubernetes.md has one)',
    );
  return { kc, core, net: kc.makeApiClient(NetworkingV1Api), namespace, server, gvisor: await gvisorClass(kc) };
}

/** Every verb berth needs that the user lacks, as "verb resource[/subresource]". */
export async function missingVerbs(kc: KubeConfig, namespace: string): Promise<string[]> {
  const authz = kc.makeApiClient(AuthorizationV1Api);
  const checks = REQUIRED_VERBS.flatMap((r) => r.verbs.map((verb) => ({ ...r, verb })));
  const results = await Promise.all(
    checks.map(async (c) => {
      try {
        const review = await authz.createSelfSubjectAccessReview({
          body: {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SelfSubjectAccessReview',
            spec: {
              resourceAttributes: {
                namespace,
                verb: c.verb,
                group: c.group,
                resource: c.resource,
                ...(c.subresource ? { subresource: c.subresource } : {}),
              },
            },
          },
        });
        return review.status?.allowed ? null : `${c.verb} ${c.resource}${c.subresource ? `/${c.subresource}` : ''}`;
      } catch (err) {
        throw kubeError(err, "checking the kubeconfig user's permissions", { namespace });
      }
    }),
  );
  return results.filter((r): r is string => r !== null);
}

async function gvisorClass(kc: KubeConfig): Promise<string | null> {
  try {
    const list = await kc.makeApiClient(NodeV1Api).listRuntimeClass();
    return list.items.find((r) => r.handler === 'runsc')?.metadata?.name ?? null;
  } catch {
    return null; // no permission to read cluster-scoped RuntimeClasses: run without
  }
}

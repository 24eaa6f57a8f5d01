// An environment as a Pod (core/v1), built as plain data so it can be checked without a
// cluster. What every berth Pod carries:
// - labels that say whose it is (node, environment, name, pool and pool state), so watches and
//   claims select by label;
// - requests and limits from the environment's limits (memory, CPU; pids are the node's);
// - the restricted security context: non-root, no privilege escalation, every capability
//   dropped, the runtime's default seccomp profile; no service-account token, no service links;
// - the agent, copied by an init container from berth's agent image into an emptyDir, so no
//   host path is mounted; the toolchain image stays as it was pinned;
// - the node's CA bundle from a ConfigMap, and the variables that point at it;
// - `runtimeClassName` when the cluster has gVisor (or another sandboxed runtime).
import type { V1Pod } from '@kubernetes/client-node';

export const KLABEL = {
  managed: 'org.berth.managed',
  node: 'org.berth.node',
  env: 'org.berth.env',
  name: 'org.berth.name',
  pool: 'org.berth.pool',
  /** 'warm' while a pool Pod waits, 'claimed' once an environment holds it. */
  poolState: 'org.berth.pool-state',
  claimant: 'org.berth.claimant',
} as const;

/** Where the agent lives in every environment, whatever the backend. */
export const AGENT_DIR = '/.berth';
export const AGENT_SOCKET = '/.berth/run/agent.sock';
/** Where berth's agent image keeps the agent (node binary and agent.js) to copy from. */
export const AGENT_IMAGE_DIR = '/opt/berth';
/** The uid environments run as on Kubernetes (restricted Pods are not root). */
export const ENV_UID = 1000;

export interface PodParams {
  /** The Pod's name (a DNS label). */
  podName: string;
  nodeId: string;
  envId: string;
  envName: string;
  image: string;
  agentImage: string;
  env: Record<string, string>;
  memoryMb: number;
  cpus: number;
  /** The node's CA bundle, as a ConfigMap in the namespace, and where it goes. */
  caBundle?: { configMap: string; key: string; path: string };
  runtimeClassName?: string;
  pool?: { id: string };
  /** Annotations (agent, task): label values cannot hold every name. */
  annotations?: Record<string, string>;
}

/** A label value: at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric. */
export function labelValue(v: string): string {
  const s = v
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .slice(0, 63)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  return s || 'x';
}

export function podSpec(p: PodParams): V1Pod {
  const labels: Record<string, string> = {
    [KLABEL.managed]: 'true',
    [KLABEL.node]: labelValue(p.nodeId),
    [KLABEL.env]: labelValue(p.envId),
    [KLABEL.name]: labelValue(p.envName),
  };
  if (p.pool) {
    labels[KLABEL.pool] = labelValue(p.pool.id);
    labels[KLABEL.poolState] = 'warm';
  }
  const mounts = [
    { name: 'berth', mountPath: AGENT_DIR },
    { name: 'workspace', mountPath: '/workspace' },
  ];
  const volumes: NonNullable<NonNullable<V1Pod['spec']>['volumes']> = [
    { name: 'berth', emptyDir: {} },
    { name: 'workspace', emptyDir: {} },
  ];
  if (p.caBundle) {
    const dir = p.caBundle.path.slice(0, p.caBundle.path.lastIndexOf('/'));
    const file = p.caBundle.path.slice(dir.length + 1);
    volumes.push({ name: 'ca', configMap: { name: p.caBundle.configMap, items: [{ key: p.caBundle.key, path: file }] } });
    mounts.push({ name: 'ca', mountPath: dir });
  }
  const restricted = {
    runAsNonRoot: true,
    runAsUser: ENV_UID,
    runAsGroup: ENV_UID,
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
  const env = { HOME: `${AGENT_DIR}/home`, ...p.env };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: p.podName, labels, ...(p.annotations ? { annotations: p.annotations } : {}) },
    spec: {
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 2,
      ...(p.runtimeClassName ? { runtimeClassName: p.runtimeClassName } : {}),
      securityContext: { runAsNonRoot: true, runAsUser: ENV_UID, runAsGroup: ENV_UID, fsGroup: ENV_UID },
      volumes,
      initContainers: [
        {
          name: 'berth-agent',
          image: p.agentImage,
          imagePullPolicy: 'IfNotPresent',
          command: ['/bin/cp', '-R', `${AGENT_IMAGE_DIR}/.`, `${AGENT_DIR}/`],
          volumeMounts: [{ name: 'berth', mountPath: AGENT_DIR }],
          securityContext: restricted,
          resources: { limits: { cpu: '500m', memory: '128Mi' }, requests: { cpu: '10m', memory: '16Mi' } },
        },
      ],
      containers: [
        {
          name: 'env',
          image: p.image,
          imagePullPolicy: 'IfNotPresent',
          command: [`${AGENT_DIR}/bin/node`, `${AGENT_DIR}/agent/agent.js`, '--socket', AGENT_SOCKET],
          workingDir: '/workspace',
          env: Object.entries(env).map(([name, value]) => ({ name, value })),
          volumeMounts: mounts,
          securityContext: restricted,
          resources: {
            // Requests are a tenth of the limits: environments idle most of the time (docs/scaling.md).
            requests: { cpu: `${Math.max(10, Math.round(p.cpus * 100))}m`, memory: `${Math.max(16, Math.round(p.memoryMb / 10))}Mi` },
            limits: { cpu: `${Math.round(p.cpus * 1000)}m`, memory: `${p.memoryMb}Mi` },
          },
        },
      ],
    },
  };
}

/** A Pod name for an environment: a DNS label, unique per node and environment id. */
export function podNameFor(nodeId: string, envId: string): string {
  const node = nodeId
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 30)
    .replace(/^-+|-+$/g, '');
  return `berth-${node || 'node'}-${envId.toLowerCase()}`.slice(0, 63);
}

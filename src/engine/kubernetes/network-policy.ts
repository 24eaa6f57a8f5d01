// Isolation on Kubernetes: one NetworkPolicy (networking.k8s.io/v1) per environment, selecting
// its Pod by label. Like the local iptables rules (src/env/firewall.ts), an environment never
// reaches another environment, the cluster's own Pods or a link-local address (the cloud
// metadata service); what else it reaches follows its network mode:
// - 'none': no egress and no ingress at all;
// - 'egress': anywhere outside the cluster's Pod and Service ranges, plus cluster DNS;
// - 'allow': only the given address blocks and ports (the node resolves the policy's names).
// Ingress is closed in every mode: berth reaches the agent through the API server (exec or
// port-forward), which does not pass through the Pod network.
// The policy is enforced only by a CNI plugin that implements NetworkPolicy; docs/kubernetes.md
// says which ones, and what the test cluster lacks.
import type { V1NetworkPolicy, V1NetworkPolicyEgressRule } from '@kubernetes/client-node';
import { KLABEL, labelValue } from './pod-spec.js';

export const LINK_LOCAL = ['169.254.0.0/16', 'fe80::/10'];

export interface PolicyParams {
  name: string;
  envId: string;
  mode: 'none' | 'egress' | 'allow';
  /** The cluster's Pod and Service ranges, which no environment reaches directly. */
  clusterCidrs: string[];
  /** For 'allow': destinations, each an address block and optional ports. */
  allow?: Array<{ cidr: string; ports?: number[] }>;
}

export function networkPolicy(p: PolicyParams): V1NetworkPolicy {
  const egress: V1NetworkPolicyEgressRule[] = [];
  if (p.mode === 'egress') {
    const v4 = p.clusterCidrs.filter((c) => !c.includes(':'));
    const v6 = p.clusterCidrs.filter((c) => c.includes(':'));
    egress.push({
      to: [
        { ipBlock: { cidr: '0.0.0.0/0', except: [...v4, LINK_LOCAL[0]!] } },
        { ipBlock: { cidr: '::/0', except: [...v6, LINK_LOCAL[1]!] } },
      ],
    });
    // Cluster DNS, wherever it runs: UDP and TCP 53 to kube-system's Pods.
    egress.push({
      to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } } }],
      ports: [
        { protocol: 'UDP', port: 53 },
        { protocol: 'TCP', port: 53 },
      ],
    });
  } else if (p.mode === 'allow') {
    for (const a of p.allow ?? []) {
      egress.push({
        to: [{ ipBlock: { cidr: a.cidr } }],
        ...(a.ports?.length ? { ports: a.ports.map((port) => ({ protocol: 'TCP', port })) } : {}),
      });
    }
  }
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: p.name, labels: { [KLABEL.managed]: 'true', [KLABEL.env]: labelValue(p.envId) } },
    spec: {
      podSelector: { matchLabels: { [KLABEL.env]: labelValue(p.envId) } },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [],
      egress,
    },
  };
}

// Keeps environments apart: on the berth network, an environment may reach the outside
// world (egress) and the network's DNS, but not another environment and not the node's own
// services. Rules match the network's subnet, so they hold before the bridge exists, and
// live in berth's own chains of the mangle table, which the engines' own firewall code
// (netavark, dockerd) does not reorder, so they are idempotent, always come first, and are
// easy to inspect (`iptables -t mangle -S BERTH-INPUT`).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';

function iptables(args: string[]): Promise<{ ok: boolean; stderr: string }> {
  return new Promise((resolve) => {
    execFile('iptables', ['-w', '5', '-t', 'mangle', ...args], (err, _out, stderr) => resolve({ ok: !err, stderr: String(stderr) }));
  });
}

async function ensureChain(chain: string, parent: string): Promise<void> {
  await iptables(['-N', chain]); // fails harmlessly when it exists
  if (!(await iptables(['-C', parent, '-j', chain])).ok) await iptables(['-I', parent, '1', '-j', chain]);
}

async function ensureRule(chain: string, rule: string[]): Promise<boolean> {
  if ((await iptables(['-C', chain, ...rule])).ok) return true;
  return (await iptables(['-A', chain, ...rule])).ok;
}

function bridgeFiltering(): boolean {
  try {
    return readFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', 'utf8').trim() === '1';
  } catch {
    return false;
  }
}

export interface FirewallResult {
  applied: boolean;
  detail: string;
}

export async function isolateSubnets(subnets: string[]): Promise<FirewallResult> {
  const v4 = subnets.filter((s) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(s));
  if (v4.length === 0) return { applied: false, detail: 'the network has no IPv4 subnet' };
  if (!(await iptables(['-S', 'INPUT'])).ok) return { applied: false, detail: 'iptables is not usable here' };
  await ensureChain('BERTH-INPUT', 'INPUT');
  await ensureChain('BERTH-FORWARD', 'FORWARD');
  const rules: Array<[string, string[]]> = v4.flatMap((net): Array<[string, string[]]> => [
    ['BERTH-FORWARD', ['-s', net, '-d', net, '-j', 'DROP']],
    ['BERTH-INPUT', ['-s', net, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']],
    ['BERTH-INPUT', ['-s', net, '-p', 'udp', '--dport', '53', '-j', 'ACCEPT']],
    ['BERTH-INPUT', ['-s', net, '-p', 'tcp', '--dport', '53', '-j', 'ACCEPT']],
    ['BERTH-INPUT', ['-s', net, '-j', 'DROP']],
  ]);
  // Every rule is tried, so one failure cannot skip the DROP rules after it.
  const results = [];
  for (const [chain, rule] of rules) results.push(await ensureRule(chain, rule));
  const failed = results.filter((r) => !r).length;
  // Traffic between two environments on one bridge only meets iptables with br_netfilter.
  const bridged = bridgeFiltering();
  if (!bridged)
    return { applied: false, detail: 'br_netfilter is not active (modprobe br_netfilter; sysctl net.bridge.bridge-nf-call-iptables=1)' };
  return { applied: failed === 0, detail: failed === 0 ? `isolated ${v4.join(', ')}` : `${failed} iptables rule(s) could not be added` };
}

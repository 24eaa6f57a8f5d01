// Keeps environments apart: on the berth network, an environment may reach the outside
// world (egress) and the network's DNS, but not another environment and not the node's own
// services. Rules match the network's subnet, so they hold before the bridge exists, and
// live in berth's own chains of the mangle table, which the engines' own firewall code
// (netavark, dockerd) does not reorder, so they are idempotent, always come first, and are
// easy to inspect (`iptables -t mangle -S BERTH-INPUT`).
import { execFile } from 'node:child_process';

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
  let ok = true;
  for (const net of v4) {
    ok &&= await ensureRule('BERTH-FORWARD', ['-s', net, '-d', net, '-j', 'DROP']);
    ok &&= await ensureRule('BERTH-INPUT', ['-s', net, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']);
    ok &&= await ensureRule('BERTH-INPUT', ['-s', net, '-p', 'udp', '--dport', '53', '-j', 'ACCEPT']);
    ok &&= await ensureRule('BERTH-INPUT', ['-s', net, '-p', 'tcp', '--dport', '53', '-j', 'ACCEPT']);
    ok &&= await ensureRule('BERTH-INPUT', ['-s', net, '-j', 'DROP']);
  }
  return { applied: ok, detail: ok ? `isolated ${v4.join(', ')}` : 'some iptables rules could not be added' };
}

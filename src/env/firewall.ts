// Keeps environments apart: on the berth network, an environment may reach the outside
// world (egress) and the network's DNS, but not another environment, not the node's own
// services, and never a link-local address (on a cloud VM, 169.254.169.254 is the instance
// metadata service, with the VM's credentials). Rules match the network's subnets, so they
// hold before the bridge exists (and, once it does, the bridge itself, which IPv6 link-local
// traffic comes from), and live in berth's own chains of the mangle table, which
// the engines' own firewall code (netavark, dockerd) does not reorder, so they are
// idempotent, always come first, and are easy to inspect (`iptables -t mangle -S BERTH-INPUT`,
// the same with ip6tables).
//
// The mangle table cannot REJECT, so a denied destination is DROPped there, and a routing
// rule (`ip rule … prohibit`) makes the same connect fail at once, with "no route to host",
// instead of hanging: the DROP is the guarantee, the routing rule the clear failure.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { BlockList } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { NetworkInfo } from '../engine/engine.js';

type Family = 4 | 6;

/**
 * Destinations no environment reaches, whatever its network mode: every mode's traffic meets
 * this list first (the chain BERTH-DENY, jumped to from the top of BERTH-FORWARD and
 * BERTH-INPUT for each of the network's subnets and its bridge).
 */
export const DENIED_DESTINATIONS: Readonly<Record<Family, readonly string[]>> = {
  4: ['169.254.0.0/16'],
  6: ['fe80::/10'],
};

const DENY = 'BERTH-DENY';
const CHAINS = [DENY, 'BERTH-INPUT', 'BERTH-FORWARD'];
/** The routing rules' priority: after `local` (0), before any table a cloud image adds. */
const RULE_PRIORITY = '100';

function run(cmd: string, args: string[]): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, (err, stdout, stderr) => resolve({ ok: !err, stdout: String(stdout), stderr: String(stderr) }));
  });
}

function tables(f: Family, args: string[]): Promise<{ ok: boolean; stderr: string }> {
  return run(f === 4 ? 'iptables' : 'ip6tables', ['-w', '5', '-t', 'mangle', ...args]);
}

interface Rule {
  f: Family;
  chain: string;
  rule: string[];
  /** Inserted at the top of its chain, ahead of any rule already there. */
  first?: boolean;
}

/**
 * Makes every rule present, in order. All are checked at once (on a node that has them
 * already, that is all there is to do); the missing ones are then added one by one, each
 * tried, so one failure cannot skip the DROP rules after it. Resolves to how many failed.
 */
async function ensureRules(rules: Rule[]): Promise<number> {
  const present = await Promise.all(rules.map((r) => tables(r.f, ['-C', r.chain, ...r.rule]).then((x) => x.ok)));
  if (present.every(Boolean)) return 0;
  for (const f of new Set(rules.map((r) => r.f))) for (const c of CHAINS) await tables(f, ['-N', c]); // fails harmlessly when it exists
  let failed = 0;
  for (const [i, r] of rules.entries()) {
    if (present[i]) continue;
    if (!(await tables(r.f, r.first ? ['-I', r.chain, '1', ...r.rule] : ['-A', r.chain, ...r.rule])).ok) failed++;
  }
  return failed;
}

async function ensureProhibit(f: Family, from: string, to: string): Promise<boolean> {
  const sel = [`-${f}`, 'rule', 'show', 'from', from, 'to', to, 'pref', RULE_PRIORITY];
  if ((await run('ip', sel)).stdout.includes('prohibit')) return true;
  return (await run('ip', [`-${f}`, 'rule', 'add', 'from', from, 'to', to, 'prohibit', 'pref', RULE_PRIORITY])).ok;
}

function bridgeFiltering(f: Family): boolean {
  try {
    return readFileSync(`/proc/sys/net/bridge/bridge-nf-call-ip${f === 4 ? '' : '6'}tables`, 'utf8').trim() === '1';
  } catch {
    return false;
  }
}

/**
 * The host side of the network: the engine's word for it, or the interface that holds the
 * gateway's address. Podman makes its bridge when the first environment starts, so before
 * that it may not exist yet.
 */
function findBridge(net: NetworkInfo, v4: string[]): string | null {
  if (net.bridge) return net.bridge;
  const ours = new BlockList();
  for (const s of v4) ours.addSubnet(s.split('/')[0]!, Number(s.split('/')[1]), 'ipv4');
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (addrs?.some((a) => a.family === 'IPv4' && ours.check(a.address, 'ipv4'))) return name;
  }
  return null;
}

/** Neighbour discovery (solicitation, advertisement): IPv6 does not work without it. */
const NEIGHBOUR_DISCOVERY = ['neighbour-solicitation', 'neighbour-advertisement'].map((t) => ['-p', 'ipv6-icmp', '--icmpv6-type', t]);

/** The rules that keep one family's subnets apart (DNS to the gateway stays open). */
function isolationRules(f: Family, subnets: string[]): Array<[string, string[]]> {
  return subnets.flatMap((net): Array<[string, string[]]> => [
    ['BERTH-FORWARD', ['-s', net, '-d', net, '-j', 'DROP']],
    ['BERTH-INPUT', ['-s', net, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']],
    ['BERTH-INPUT', ['-s', net, '-p', 'udp', '--dport', '53', '-j', 'ACCEPT']],
    ['BERTH-INPUT', ['-s', net, '-p', 'tcp', '--dport', '53', '-j', 'ACCEPT']],
    ...(f === 6 ? NEIGHBOUR_DISCOVERY.map((nd): [string, string[]] => ['BERTH-INPUT', ['-s', net, ...nd, '-j', 'ACCEPT']]) : []),
    ['BERTH-INPUT', ['-s', net, '-j', 'DROP']],
  ]);
}

/** BERTH-DENY's own rules: neighbour discovery stays, so IPv6 subnets keep working. */
function denyRules(f: Family): string[][] {
  const keep = f === 6 ? NEIGHBOUR_DISCOVERY.map((nd) => [...nd, '-j', 'RETURN']) : [];
  return [...keep, ...DENIED_DESTINATIONS[f].map((d) => ['-d', d, '-j', 'DROP'])];
}

export interface FirewallResult {
  /** Every rule that keeps environments in is in place. */
  applied: boolean;
  /**
   * Nothing is left to add once an environment has started: false while the bridge does not
   * exist yet (Podman), so the IPv6 link-local rules, which match the bridge, wait for it.
   */
  complete: boolean;
  detail: string;
}

export async function isolateNetwork(net: NetworkInfo): Promise<FirewallResult> {
  const v4 = net.subnets.filter((s) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(s));
  const v6 = net.subnets.filter((s) => s.includes(':'));
  if (v4.length === 0) return { applied: false, complete: false, detail: 'the network has no IPv4 subnet' };
  // Even with no IPv6 subnet, an environment has a link-local IPv6 address when the node has IPv6.
  const families: Family[] = existsSync('/proc/net/if_inet6') ? [4, 6] : [4];
  const bridge = findBridge(net, v4);
  for (const f of families) {
    if (!(await tables(f, ['-S', 'INPUT'])).ok)
      return { applied: false, complete: false, detail: `ip${f === 4 ? '' : '6'}tables is not usable here` };
  }
  const rules = families.flatMap((f): Rule[] => {
    const subnets = f === 4 ? v4 : v6;
    const from = [...subnets.map((s) => ['-s', s]), ...(bridge ? [['-i', bridge]] : [])];
    return [
      ...denyRules(f).map((rule) => ({ f, chain: DENY, rule })),
      // The denied destinations come first, whatever else a chain holds or will hold.
      ...['BERTH-FORWARD', 'BERTH-INPUT'].flatMap((chain) => from.map((m) => ({ f, chain, rule: [...m, '-j', DENY], first: true }))),
      ...isolationRules(f, subnets).map(([chain, rule]) => ({ f, chain, rule })),
      // Connections the egress policy redirects to the node's proxy and DNS responder (nat
      // PREROUTING, src/env/egress/rules.ts) are the only ones let in to the node.
      ...(f === 4
        ? subnets.map((s) => ({
            f,
            chain: 'BERTH-INPUT',
            rule: ['-s', s, '-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'ACCEPT'],
            first: true,
          }))
        : []),
      // Last, so a chain is in force only once it is whole.
      { f, chain: 'INPUT', rule: ['-j', 'BERTH-INPUT'], first: true },
      { f, chain: 'FORWARD', rule: ['-j', 'BERTH-FORWARD'], first: true },
    ];
  });
  const prohibits = families.flatMap((f) => (f === 4 ? v4 : v6).flatMap((s) => DENIED_DESTINATIONS[f].map((d) => ensureProhibit(f, s, d))));
  const [failed, routed] = await Promise.all([ensureRules(rules), Promise.all(prohibits)]);
  const unrouted = routed.filter((ok) => !ok).length;
  // Traffic between two environments on one bridge only meets iptables with br_netfilter.
  const unbridged = families.filter((f) => !bridgeFiltering(f));
  if (unbridged.length) {
    const knob = unbridged.map((f) => `net.bridge.bridge-nf-call-ip${f === 4 ? '' : '6'}tables=1`).join(' ');
    return { applied: false, complete: false, detail: `br_netfilter is not active (modprobe br_netfilter; sysctl ${knob})` };
  }
  if (failed) return { applied: false, complete: false, detail: `${failed} firewall rule(s) could not be added` };
  const complete = families.length === 1 || bridge !== null;
  const denied = families.flatMap((f) => DENIED_DESTINATIONS[f]).join(', ');
  return {
    applied: true,
    complete,
    detail:
      `isolated ${[...v4, ...v6].join(', ')}${bridge ? ` on ${bridge}` : ''}; denied ${denied}` +
      (complete ? '' : ' (IPv6 link-local once the bridge exists)') +
      (unrouted ? `; ${unrouted} routing rule(s) could not be added, so denied connects time out instead of failing at once` : ''),
  };
}

// The kernel's side of an egress policy. For each environment with a policy, by its address:
//  - nat PREROUTING (this node's own chain): UDP/53 goes to the node's DNS responder, TCP to
//    the node's proxy (ports 80 and 443 to listeners of their own, so the common case needs
//    no conntrack lookup; every other port to one listener that asks conntrack);
//  - a routing rule `from ADDRESS prohibit`: whatever was not redirected to the node (other
//    UDP, ICMP, any other protocol) is refused at once with "prohibited", never forwarded.
// Redirected connections are let in by BERTH-INPUT's `--ctstate DNAT` rule (firewall.ts).
// Sync adds what is missing and removes what is stale, in this node's chain and routing
// preference only: other nodes on the machine keep theirs, and there is no gap while the
// rules change.
import { execFile } from 'node:child_process';

export interface Listeners {
  dns: number;
  http: number;
  tls: number;
  any: number;
}

export interface Redirected {
  ip: string;
  gateway: string;
}

function run(cmd: string, args: string[]): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, (err, stdout, stderr) => resolve({ ok: !err, stdout: String(stdout), stderr: String(stderr) }));
  });
}

const nat = (args: string[]): ReturnType<typeof run> => run('iptables', ['-w', '5', '-t', 'nat', ...args]);

export function chainName(nodeId: string): string {
  return `BERTH-EG-${nodeId.slice(0, 12)}`;
}

/** This node's routing-rule preference: after the deny list's (100), before `main`. */
export function rulePref(nodeId: string): number {
  return 1000 + (parseInt(nodeId.slice(0, 6), 16) % 30000);
}

/** The rules for one environment, as `iptables -S` prints them. */
function envRules(chain: string, r: Redirected, l: Listeners): string[] {
  const to = (p: number): string => `-j DNAT --to-destination ${r.gateway}:${p}`;
  const src = `-A ${chain} -s ${r.ip}/32`;
  return [
    `${src} -p udp -m udp --dport 53 ${to(l.dns)}`,
    `${src} -p tcp -m tcp --dport 80 ${to(l.http)}`,
    `${src} -p tcp -m tcp --dport 443 ${to(l.tls)}`,
    `${src} -p tcp ${to(l.any)}`,
  ];
}

export class EgressRules {
  private readonly chain: string;
  private readonly pref: number;
  private chainReady = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(nodeId: string) {
    this.chain = chainName(nodeId);
    this.pref = rulePref(nodeId);
  }

  /** Makes the kernel hold exactly the rules for `envs` (one sync at a time). */
  sync(envs: Redirected[], l: Listeners): Promise<void> {
    const next = this.queue.then(() => this.syncNow(envs, l));
    this.queue = next.catch(() => {});
    return next;
  }

  /**
   * After a daemon restart with no environment to redirect: the rules an earlier daemon left
   * (DNAT to listeners that are gone, `prohibit` rules for addresses the engine may hand out
   * again) go. A chain never made is not made now.
   */
  clear(): Promise<void> {
    const next = this.queue.then(async () => {
      if (!(await nat(['-S', this.chain])).ok) return;
      await this.syncNow([], { dns: 0, http: 0, tls: 0, any: 0 });
    });
    this.queue = next.catch(() => {});
    return next;
  }

  private async syncNow(envs: Redirected[], l: Listeners): Promise<void> {
    if (!this.chainReady) {
      await nat(['-N', this.chain]); // fails harmlessly when it exists
      if (!(await nat(['-C', 'PREROUTING', '-j', this.chain])).ok) {
        const r = await nat(['-I', 'PREROUTING', '1', '-j', this.chain]);
        if (!r.ok) throw new Error(`iptables: ${r.stderr.trim()}`);
      }
      this.chainReady = true;
    }
    const want = envs.flatMap((e) => envRules(this.chain, e, l));
    const listed = await nat(['-S', this.chain]);
    if (!listed.ok) throw new Error(`iptables: ${listed.stderr.trim()}`);
    const have = listed.stdout.split('\n').filter((x) => x.startsWith(`-A ${this.chain} `));
    // The prohibit rules first: an address is never without both.
    const ips = new Set(envs.map((e) => e.ip));
    const shown = await run('ip', ['-4', 'rule', 'show', 'pref', String(this.pref)]);
    const ruled = new Set([...shown.stdout.matchAll(/from (\d+\.\d+\.\d+\.\d+) prohibit/g)].map((m) => m[1]!));
    for (const ip of ips) {
      if (ruled.has(ip)) continue;
      const r = await run('ip', ['-4', 'rule', 'add', 'from', `${ip}/32`, 'prohibit', 'pref', String(this.pref)]);
      if (!r.ok) throw new Error(`ip rule: ${r.stderr.trim()}`);
    }
    for (const rule of want) {
      if (have.includes(rule)) continue;
      const r = await nat(rule.split(' '));
      if (!r.ok) throw new Error(`iptables: ${r.stderr.trim()}`);
    }
    for (const rule of have) if (!want.includes(rule)) await nat(['-D', ...rule.split(' ').slice(1)]);
    for (const ip of ruled)
      if (!ips.has(ip)) await run('ip', ['-4', 'rule', 'del', 'from', `${ip}/32`, 'prohibit', 'pref', String(this.pref)]);
  }
}

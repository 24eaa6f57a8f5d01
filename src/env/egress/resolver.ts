// How the node resolves an allowed name, and which addresses it never connects to for an
// environment. Names come from `$BERTH_HOME/egress-hosts` (the hosts-file format; for
// internal names the node's resolver does not know) and then the node's own resolver.
//
// The proxy dials from the node's own network namespace, where every container network on
// the host is one hop away: the subnet of every bridge (any engine's, any berth node's, this
// node's environments') is refused, so an allowed name or address cannot lead into another
// environment or container. Only an address the operator declared in egress-hosts passes there.
import { lookup } from 'node:dns/promises';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { BlockList } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { parseIPv4 } from '../../core/egress-policy.js';

/** Never a destination: this host, link-local (cloud metadata), multicast, reserved. */
const ALWAYS_REFUSED = ['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/4', '240.0.0.0/4'];

function prefixOf(netmask: string): number {
  return netmask.split('.').reduce((n, o) => n + (Number(o).toString(2).match(/1/g)?.length ?? 0), 0);
}

export class EgressResolver {
  private hosts: { mtimeMs: number; map: Map<string, string[]> } | null = null;
  private blocked: { at: number; always: BlockList; bridged: BlockList } | null = null;

  constructor(
    private readonly home: string,
    /** The gateways of the environments' networks: their whole subnets are refused. */
    private readonly gateways: () => string[],
  ) {}

  private hostsFile(): Map<string, string[]> {
    const path = join(this.home, 'egress-hosts');
    let mtimeMs: number;
    try {
      mtimeMs = statSync(path).mtimeMs;
    } catch {
      return new Map();
    }
    if (this.hosts?.mtimeMs === mtimeMs) return this.hosts.map;
    const map = new Map<string, string[]>();
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      const [addr, ...names] = line.replace(/#.*/, '').trim().split(/\s+/);
      if (!addr || parseIPv4(addr) === null) continue;
      for (const n of names) map.set(n.toLowerCase(), [...(map.get(n.toLowerCase()) ?? []), addr]);
    }
    this.hosts = { mtimeMs, map };
    return map;
  }

  /** Addresses the operator declared in egress-hosts. */
  private declared(ip: string): boolean {
    for (const addrs of this.hostsFile().values()) if (addrs.includes(ip)) return true;
    return false;
  }

  /**
   * Addresses the node refuses: see ALWAYS_REFUSED, its own addresses, and the subnets of the
   * environments' networks; and the subnets of every other bridge on the host, but for an
   * address the operator declared in egress-hosts.
   */
  refused(ip: string): boolean {
    if (!this.blocked || Date.now() - this.blocked.at > 5000) {
      const always = new BlockList();
      const bridged = new BlockList();
      for (const c of ALWAYS_REFUSED) always.addSubnet(c.split('/')[0]!, Number(c.split('/')[1]), 'ipv4');
      const gws = new Set(this.gateways());
      for (const [name, addrs] of Object.entries(networkInterfaces())) {
        const bridge = existsSync(`/sys/class/net/${name}/bridge`);
        for (const a of addrs ?? []) {
          if (a.family !== 'IPv4') continue;
          always.addAddress(a.address, 'ipv4');
          if (gws.has(a.address)) always.addSubnet(a.address, prefixOf(a.netmask), 'ipv4');
          else if (bridge) bridged.addSubnet(a.address, prefixOf(a.netmask), 'ipv4');
        }
      }
      this.blocked = { at: Date.now(), always, bridged };
    }
    if (this.blocked.always.check(ip, 'ipv4')) return true;
    return this.blocked.bridged.check(ip, 'ipv4') && !this.declared(ip);
  }

  /** The name's IPv4 addresses the node may connect to; empty when there are none. */
  async resolve(name: string): Promise<string[]> {
    const listed = this.hostsFile().get(name);
    let addrs: string[];
    if (listed) addrs = listed;
    else {
      try {
        addrs = (await lookup(name, { all: true, family: 4 })).map((a) => a.address);
      } catch {
        return [];
      }
    }
    return addrs.filter((a) => !this.refused(a));
  }
}

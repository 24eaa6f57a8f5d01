// How the node resolves an allowed name, and which addresses it never connects to for an
// environment. Names come from `$BERTH_HOME/egress-hosts` (the hosts-file format; for
// internal names the node's resolver does not know) and then the node's own resolver.
import { lookup } from 'node:dns/promises';
import { readFileSync, statSync } from 'node:fs';
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
  private blocked: { at: number; list: BlockList } | null = null;

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

  /** Addresses the node refuses: see ALWAYS_REFUSED, its own addresses, the environments' subnets. */
  refused(ip: string): boolean {
    if (!this.blocked || Date.now() - this.blocked.at > 5000) {
      const list = new BlockList();
      for (const c of ALWAYS_REFUSED) list.addSubnet(c.split('/')[0]!, Number(c.split('/')[1]), 'ipv4');
      const gws = new Set(this.gateways());
      for (const addrs of Object.values(networkInterfaces())) {
        for (const a of addrs ?? []) {
          if (a.family !== 'IPv4') continue;
          list.addAddress(a.address, 'ipv4');
          if (gws.has(a.address)) list.addSubnet(a.address, prefixOf(a.netmask), 'ipv4');
        }
      }
      this.blocked = { at: Date.now(), list };
    }
    return this.blocked.list.check(ip, 'ipv4');
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

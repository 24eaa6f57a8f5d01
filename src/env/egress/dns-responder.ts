// The DNS responder environments with a policy get instead of the network's: it answers
// only names the policy allows, with the addresses the node itself resolved, and NXDOMAIN
// for everything else at once, so DNS carries nothing out.
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { answer, parseQuery, RCODE, TYPE_A } from './dns-wire.js';

export interface DnsParts {
  /** The policy's word on a name for the environment at this address; null: not ours. */
  decide(ip: string, name: string): { allowed: boolean; env: string } | null;
  resolve(name: string): Promise<string[]>;
  denied(ip: string, name: string): void;
}

export class DnsResponder {
  private sock: UdpSocket | undefined;

  constructor(private readonly parts: DnsParts) {}

  async listen(): Promise<number> {
    const s = createSocket('udp4');
    s.on('message', (msg, from) => void this.onMessage(s, msg, from.address, from.port));
    s.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(0, '0.0.0.0', () => {
        s.off('error', reject);
        resolve();
      });
    });
    this.sock = s;
    return s.address().port;
  }

  private async onMessage(s: UdpSocket, msg: Buffer, ip: string, port: number): Promise<void> {
    const q = parseQuery(msg);
    if (!q) return;
    const d = this.parts.decide(ip, q.name);
    if (!d) return;
    let reply: Buffer;
    if (q.cls !== 1) reply = answer(q, RCODE.refused);
    else if (!d.allowed) {
      this.parts.denied(ip, q.name);
      reply = answer(q, RCODE.nxDomain);
    } else if (q.type !== TYPE_A) {
      // Allowed, but environments reach the world over IPv4 only: an empty answer.
      reply = answer(q, RCODE.ok);
    } else {
      const addrs = await this.parts.resolve(q.name);
      reply = addrs.length ? answer(q, RCODE.ok, addrs) : answer(q, RCODE.nxDomain);
    }
    s.send(reply, port, ip);
  }

  close(): void {
    this.sock?.close();
    this.sock = undefined;
  }
}

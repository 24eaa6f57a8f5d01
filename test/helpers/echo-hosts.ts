// Upstream servers for secrets and egress tests: a test CA made with openssl, and in a test
// host's namespace an HTTPS server (its certificate from that CA, or from a CA nobody trusts)
// and a plain HTTP server that answer every request with what they received, and record it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestHost } from './hosts.js';

export class TestCa {
  readonly dir: string;
  readonly cert: string;
  private readonly key: string;

  constructor(name: string) {
    this.dir = mkdtempSync(join(tmpdir(), `berth-test-ca-${name}-`));
    this.cert = join(this.dir, 'ca.crt');
    this.key = join(this.dir, 'ca.key');
    openssl(['req', '-x509', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-keyout', this.key, '-out', this.cert,
      '-days', '2', '-subj', `/CN=berth test CA ${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']); // prettier-ignore
  }

  /** A server certificate and key (one PEM file) for `names`. */
  issue(names: string[]): string {
    const base = join(this.dir, names[0]!.replace(/[^a-z0-9.-]/gi, '_'));
    const san = names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
    openssl(['req', '-x509', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-keyout', `${base}.key`, '-out', `${base}.crt`,
      '-CA', this.cert, '-CAkey', this.key, '-days', '2', '-subj', `/CN=${names[0]!}`, '-addext', `subjectAltName=${san}`]); // prettier-ignore
    const pem = `${base}.pem`;
    writeFileSync(pem, readFileSync(`${base}.crt`, 'utf8') + readFileSync(`${base}.key`, 'utf8'));
    return pem;
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** What an echo server saw of one request. */
export interface Seen {
  scheme: 'http' | 'https';
  method: string;
  url: string;
  /** Raw header pairs, in order. */
  headers: string[];
  body: string;
  /** Requests before this one on the same connection. */
  onConnection: number;
}

export interface EchoHost {
  readonly host: TestHost;
  /** Every request received so far. */
  seen(): Seen[];
  /** The one request received for `url`. */
  request(url: string): Seen;
  /** Every byte received so far (headers and bodies), as text. */
  text(): string;
}

/** HTTPS on 443 (with `pem`) and HTTP on 80 at the host's address, recording what they get. */
export async function startEcho(host: TestHost, pem: string): Promise<EchoHost> {
  const log = join(host.dir, 'echo.jsonl');
  const code = `
    const fs = require('node:fs'), http = require('node:http'), https = require('node:https');
    const pem = fs.readFileSync(${JSON.stringify(pem)});
    const counts = new WeakMap();
    const handle = (scheme) => (req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const n = counts.get(req.socket) ?? 0;
        counts.set(req.socket, n + 1);
        const seen = { scheme, method: req.method, url: req.url, headers: req.rawHeaders, body: Buffer.concat(chunks).toString(), onConnection: n };
        fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify(seen) + '\\n');
        // /reflect*: a hostile (or merely verbose) host that sends back what it got, in a header
        // and in the body, split across writes, gzip'd for a path naming gzip.
        if (req.url.startsWith('/reflect')) {
          const all = req.rawHeaders.join('\\n');
          const body = Buffer.from('you sent: ' + all + '\\n' + 'again: ' + all + '\\n');
          const headers = { 'content-type': 'text/plain', 'x-you-sent': req.rawHeaders.join(' ').replace(/[^\\x20-\\x7e]/g, '') };
          if (req.url.includes('gzip')) {
            const z = require('node:zlib').gzipSync(body);
            res.writeHead(200, { ...headers, 'content-encoding': 'gzip', 'content-length': z.length });
            return res.end(z);
          }
          res.writeHead(200, { ...headers, 'content-length': body.length });
          for (let i = 0; i < body.length; i += 7) res.write(body.subarray(i, i + 7));
          return res.end();
        }
        // What it got stays in the log: the answer names the request only, so a value the node
        // swapped in never comes back to the client.
        const out = JSON.stringify({ url: req.url, onConnection: n });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
        res.end(out);
      });
    };
    let up = 0;
    const ready = () => { if (++up === 2) console.log('echo ready'); };
    https.createServer({ cert: pem, key: pem, keepAlive: true }, handle('https')).listen(443, ${JSON.stringify(host.addr)}, ready);
    http.createServer({ keepAlive: true }, handle('http')).listen(80, ${JSON.stringify(host.addr)}, ready);`;
  const child = host.spawn(process.execPath, ['-e', code], process.env, 'echo');
  for (let i = 0; i < 100 && !host.log('echo').includes('echo ready'); i++) {
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  if (!host.log('echo').includes('echo ready')) throw new Error(`echo server did not start on ${host.name}: ${host.log('echo')}`);
  const seen = (): Seen[] =>
    existsSync(log)
      ? readFileSync(log, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Seen)
      : [];
  return {
    host,
    seen,
    request: (url) => {
      const all = seen().filter((s) => s.url === url);
      if (all.length !== 1) throw new Error(`${host.name} got ${all.length} requests for ${url}`);
      return all[0]!;
    },
    text: () => (existsSync(log) ? readFileSync(log, 'utf8') : ''),
  };
}

/** One header's values in a request as received. */
export function headerOf(s: Seen, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < s.headers.length; i += 2) if (s.headers[i]!.toLowerCase() === name.toLowerCase()) out.push(s.headers[i + 1]!);
  return out;
}

// The node's own CA for secrets: made once (an ECDSA P-256 key, 0600, in the node's home) and
// trusted by the environments that hold a secret, alongside the node's bundle. Certificates
// for a secret's host are minted on demand by openssl(1) (node:crypto reads X.509 but cannot
// issue it), cached in memory and on disk, and minted again before they expire.
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { BerthError } from '../../core/errors.js';

const run = promisify(execFile);
const DAY = 86_400_000;

export class NodeCa {
  readonly dir: string;
  readonly certPath: string;
  private readonly keyPath: string;
  private readonly contexts = new Map<string, Promise<{ ctx: tls.SecureContext; notAfter: number }>>();

  private constructor(dir: string) {
    this.dir = dir;
    this.certPath = join(dir, 'ca.crt');
    this.keyPath = join(dir, 'ca.key');
  }

  /** The CA under `home/secrets-ca`, made on first use. */
  static async load(home: string, nodeId: string): Promise<NodeCa> {
    const ca = new NodeCa(join(home, 'secrets-ca'));
    mkdirSync(join(ca.dir, 'hosts'), { recursive: true, mode: 0o700 });
    if (!existsSync(ca.keyPath) || !existsSync(ca.certPath)) await ca.make(nodeId);
    return ca;
  }

  get pem(): string {
    return readFileSync(this.certPath, 'utf8');
  }

  /** A TLS server context for `host`, its certificate signed by this CA. */
  async contextFor(host: string): Promise<tls.SecureContext> {
    const hit = this.contexts.get(host);
    if (hit) {
      const c = await hit.catch(() => undefined);
      if (c && c.notAfter - Date.now() > DAY) return c.ctx;
      this.contexts.delete(host);
    }
    const p = this.leaf(host);
    this.contexts.set(host, p);
    p.catch(() => this.contexts.delete(host));
    return (await p).ctx;
  }

  private async make(nodeId: string): Promise<void> {
    const tmpKey = this.keyPath + '.tmp';
    const tmpCert = this.certPath + '.tmp';
    await openssl([
      'req', '-x509', '-new', '-nodes',
      '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
      '-keyout', tmpKey, '-out', tmpCert,
      '-days', '3650', '-subj', `/O=berth/CN=berth node ${nodeId} secrets CA`,
      '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]); // prettier-ignore
    renameSync(tmpKey, this.keyPath);
    renameSync(tmpCert, this.certPath);
  }

  private async leaf(host: string): Promise<{ ctx: tls.SecureContext; notAfter: number }> {
    const file = join(this.dir, 'hosts', `${host.replace(/[^a-z0-9.-]/gi, '_')}.pem`);
    if (existsSync(file)) {
      const pem = readFileSync(file, 'utf8');
      const notAfter = Date.parse(new X509Certificate(pem).validTo);
      if (notAfter - Date.now() > DAY) return { ctx: tls.createSecureContext({ cert: pem, key: pem }), notAfter };
      rmSync(file, { force: true });
    }
    const key = file + '.key.tmp';
    const crt = file + '.crt.tmp';
    const san = isIP(host) ? `IP:${host}` : `DNS:${host}`;
    try {
      await openssl([
        'req', '-x509', '-new', '-nodes',
        '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
        '-keyout', key, '-out', crt,
        '-CA', this.certPath, '-CAkey', this.keyPath,
        '-days', '90', '-subj', `/CN=${host}`,
        '-addext', `subjectAltName=${san}`,
        '-addext', 'basicConstraints=critical,CA:FALSE',
        '-addext', 'keyUsage=critical,digitalSignature',
        '-addext', 'extendedKeyUsage=serverAuth',
      ]); // prettier-ignore
      const pem = readFileSync(crt, 'utf8') + readFileSync(key, 'utf8');
      writeFileSync(file + '.tmp', pem, { mode: 0o600 });
      renameSync(file + '.tmp', file);
      const notAfter = Date.parse(new X509Certificate(pem).validTo);
      return { ctx: tls.createSecureContext({ cert: pem, key: pem }), notAfter };
    } finally {
      rmSync(key, { force: true });
      rmSync(crt, { force: true });
    }
  }
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 30_000 });
  } catch (err) {
    const e = err as { code?: string; stderr?: string };
    if (e.code === 'ENOENT')
      throw new BerthError('internal', 'openssl is not installed on this node', 'install openssl: secrets need it to mint certificates');
    throw new BerthError('internal', `openssl failed: ${(e.stderr ?? String(err)).trim().split('\n')[0]}`);
  }
}

// What a secret costs per request: an HTTPS request with the placeholder in its Authorization
// header, on a keep-alive connection, three ways in one run against the same upstream (an
// HTTPS server with a certificate from a CA made for this run, in a process of its own, on
// loopback):
//   direct       the client to the upstream;
//   spliced      through a stand-in for the egress proxy that peeks and splices (what every
//                other host gets);
//   substituted  through the same stand-in, handed to the node's secrets interceptor: TLS ends
//                with the node's CA, the placeholder becomes the value, TLS again to the upstream.
// Each sample is one request's round trip, as the client sees it. The target: the
// substitution costs ≤ 1 ms p50 over direct.
//
//   node dist/bench/secrets.js [--n 2000] [--warmup 200] [--max-seconds 120]
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { interceptorFor, type Upstream } from '../src/env/egress/intercept.js';
import { NodeSecrets } from '../src/env/secrets/node-secrets.js';
import { StateDb } from '../src/state/state-db.js';
import { log, onCleanup, parseOptions, ratio, remainingMs, type Row, runBench, setDeadline, stats, tempDir } from './lib.js';

const opts = parseOptions({ n: 2000, warmup: 200, 'max-seconds': 120 });
const TARGET_MS = 1;
const ENV = 'bench-env';
const report: Record<string, unknown> = { benchmark: 'secrets', target: `substitution p50 ≤ ${TARGET_MS} ms over direct` };

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The upstream: HTTPS on loopback in a child process; answers 200 with a few bytes. */
async function startUpstream(pem: string): Promise<number> {
  const code = `
    const https = require('node:https'), fs = require('node:fs');
    const pem = fs.readFileSync(${JSON.stringify(pem)});
    const s = https.createServer({ cert: pem, key: pem, keepAlive: true, keepAliveTimeout: 60000 }, (req, res) => {
      const ok = req.headers.authorization === 'Bearer bench-value' ? 'sub' : 'ph';
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': ok.length });
      res.end(ok);
    });
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  onCleanup('upstream', () => void child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', (c) => reject(new Error(`upstream exited ${c}`)));
  });
}

/** The egress proxy's part, as in the tests: peek, ask the hook, hand over or splice. */
async function standIn(up: Upstream, intercept: boolean): Promise<number> {
  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    sock.on('error', () => sock.destroy());
    sock.once('data', (head: Buffer) => {
      sock.pause();
      const handler = intercept ? interceptorFor(ENV, up.host, up.port) : null;
      if (handler) return handler(sock, head, up);
      const u = net.connect(up.port, up.addresses[0]);
      u.setNoDelay(true);
      u.on('error', () => sock.destroy());
      u.write(head);
      sock.pipe(u).pipe(sock);
      sock.resume();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onCleanup('stand-in', () => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

function get(agent: https.Agent, port: number, ca: string, auth: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: '/',
        servername: 'api.bench.test',
        ca,
        agent,
        headers: { host: 'api.bench.test', authorization: auth },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

runBench(report, (opts['max-seconds'] + 60) * 1000, async () => {
  setDeadline(opts['max-seconds'] * 1000);
  const dir = tempDir('berth-bench-secrets-');
  const caKey = join(dir, 'ca.key');
  const caCrt = join(dir, 'ca.crt');
  openssl(['req', '-x509', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-keyout', caKey, '-out', caCrt,
    '-days', '1', '-subj', '/CN=berth bench CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']); // prettier-ignore
  openssl(['req', '-x509', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-keyout', join(dir, 'h.key'), '-out', join(dir, 'h.crt'),
    '-CA', caCrt, '-CAkey', caKey, '-days', '1', '-subj', '/CN=api.bench.test', '-addext', 'subjectAltName=DNS:api.bench.test']); // prettier-ignore
  const pem = join(dir, 'h.pem');
  writeFileSync(pem, readFileSync(join(dir, 'h.crt'), 'utf8') + readFileSync(join(dir, 'h.key'), 'utf8'));
  const upstreamPort = await startUpstream(pem);
  const nodeBundle = join(dir, 'node-bundle.crt');
  writeFileSync(nodeBundle, readFileSync(caCrt, 'utf8'));

  const db = new StateDb(join(dir, 'state.db'));
  onCleanup('state', () => db.close());
  const secrets = await NodeSecrets.start({ db, home: dir, nodeId: 'bench', caBundle: nodeBundle, resolveEnv: (e) => e, log });
  onCleanup('secrets', () => secrets.close());
  // The upstream listens on a port of its own: the secret is for that host and port.
  secrets.vault.set('bench-token', { value: 'bench-value', host: `api.bench.test:${upstreamPort}` });
  const bound = secrets.vault.prepare(['bench-token']);
  bound.commit(ENV);
  const placeholder = bound.vars.BENCH_TOKEN!;
  const up: Upstream = { host: 'api.bench.test', port: upstreamPort, addresses: ['127.0.0.1'] };
  const viaSplice = await standIn(up, false);
  const viaSecrets = await standIn(up, true);
  const bundle = readFileSync(secrets.bundle!, 'utf8');

  const ways: Array<{ name: string; port: number; expect: string; agent: https.Agent; samples: number[] }> = [
    { name: 'direct', port: upstreamPort, expect: 'ph' },
    { name: 'spliced', port: viaSplice, expect: 'ph' },
    { name: 'substituted', port: viaSecrets, expect: 'sub' },
  ].map((w) => ({ ...w, agent: new https.Agent({ keepAlive: true, maxSockets: 1 }), samples: [] }));
  for (const w of ways) onCleanup(`agent ${w.name}`, () => w.agent.destroy());
  // Interleaved, one request of each way in turn, so the machine's other load falls on all three alike.
  let error: string | undefined;
  let stoppedEarly: string | undefined;
  log(`secrets: ${opts.warmup} warm-up + ${opts.n} rounds of direct, spliced, substituted`);
  try {
    for (let i = 0; i < opts.warmup + opts.n; i++) {
      if (remainingMs() <= 0) {
        stoppedEarly = `time budget reached after ${Math.max(0, i - opts.warmup)} rounds`;
        break;
      }
      for (const w of ways) {
        const t0 = performance.now();
        const body = await get(w.agent, w.port, bundle, `Bearer ${placeholder}`);
        const ms = performance.now() - t0;
        if (body !== w.expect) throw new Error(`${w.name}: the upstream answered ${body}, not ${w.expect}`);
        if (i >= opts.warmup) w.samples.push(ms);
      }
    }
  } catch (err) {
    error = err instanceof Error ? err.message : String(err);
  }
  const rows: Row[] = ways.map((w) => ({
    name: w.name,
    warmup: opts.warmup,
    ...stats(w.samples),
    ...(error ? { error } : {}),
    ...(stoppedEarly ? { stopped_early: stoppedEarly } : {}),
  }));
  const p = (n: string): number | null => rows.find((r) => r.name === n)?.p50_ms ?? null;
  const over = p('substituted') !== null && p('direct') !== null ? Math.round((p('substituted')! - p('direct')!) * 1000) / 1000 : null;
  report.results = rows;
  report.substitution_overhead_p50_ms = over;
  report.substituted_vs_direct = ratio(p('substituted'), p('direct'));
  report.spliced_vs_direct = ratio(p('spliced'), p('direct'));
  report.meets_target = over !== null && over <= TARGET_MS;
});

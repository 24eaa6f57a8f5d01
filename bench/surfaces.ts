// One command (`true`) in a running environment through each of berth's surfaces, side by side
// in one run against one node: the raw API (POST /v1/envs/NAME/exec over the unix socket), the
// SDK (`env.exec`), MCP over stdio (`berth mcp`, the official client) and MCP over streamable
// HTTP (/mcp on the daemon's TCP listener). Then the event latency: from just before an exec is
// sent until its command.started event reaches a subscriber (`berth.events()`). The peers, in
// the same run: the engines' own exec round trip through their Engine API (create, start
// attached, inspect) on an idle container of the same image; the report gives each peer's p50
// over each berth surface's.
//
//   node dist/bench/surfaces.js [--n 200] [--warmup 20] [--engine podman] [--peers podman,docker] [--peer-n 60]
//        [--skip raw,sdk,mcp-stdio,mcp-http,events,peers]
//        [--max-seconds 240]
import http from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { ExecResult } from '../src/core/api.js';
import { Berth, type BerthEvent, type Environment } from '../src/sdk/index.js';
import {
  BERTH,
  BerthNode,
  EngineApi,
  engineList,
  type EngineName,
  guarded,
  log,
  onCleanup,
  parseOptions,
  prepareEngineBench,
  ratio,
  type Row,
  runBench,
  series,
  setDeadline,
  startIdleContainer,
} from './lib.js';

const opts = parseOptions({ n: 200, warmup: 20, 'peer-n': 60, engine: 'podman', peers: 'podman,docker', skip: '', 'max-seconds': 240 });
const skip = new Set(opts.skip.split(',').filter(Boolean));
const results: Row[] = [];
const report: Record<string, unknown> = {
  benchmark: 'surfaces',
  command: ['true'],
  targets: { 'mcp-stdio_p50_ms': 5, 'event-latency_p50_ms': 20 },
};
const ENV = 'bench';
const budget = (): { n: number; warmup: number; budgetMs: number } => ({ n: opts.n, warmup: opts.warmup, budgetMs: 45_000 });

/** POST /v1/envs/NAME/exec with node's http, keep-alive, nothing of berth's client. */
function rawExec(agent: http.Agent, socketPath: string, body: string): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        socketPath,
        method: 'POST',
        path: `/v1/envs/${ENV}/exec`,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200) return reject(new Error(`POST /v1/envs/${ENV}/exec answered ${res.statusCode}: ${text}`));
          resolve(JSON.parse(text) as ExecResult);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function rawSeries(node: BerthNode): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const body = JSON.stringify({ argv: ['true'] });
  try {
    const s = await series('berth-raw-api', budget(), async () => {
      const t0 = performance.now();
      const r = await rawExec(agent, node.socketPath, body);
      const ms = performance.now() - t0;
      if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode}`);
      return ms;
    });
    results.push(s.row({ engine: node.engine, how: 'POST /v1/envs/NAME/exec over the unix socket, node:http keep-alive' }));
  } finally {
    agent.destroy();
  }
}

async function sdkSeries(node: BerthNode, env: Environment): Promise<void> {
  const s = await series('berth-sdk', budget(), async () => {
    const t0 = performance.now();
    const r = await env.exec(['true']);
    const ms = performance.now() - t0;
    if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode}`);
    return ms;
  });
  results.push(s.row({ engine: node.engine, how: "env.exec(['true']) with the SDK over the unix socket" }));
}

async function mcpSeries(node: BerthNode, name: string, how: string, connect: (c: Client) => Promise<void>): Promise<void> {
  const client = new Client({ name: 'berth-bench', version: '0.0.0' });
  const closeIt = onCleanup(`close the MCP client ${name}`, () => client.close());
  try {
    await connect(client);
    const s = await series(name, budget(), async () => {
      const t0 = performance.now();
      const r = (await client.callTool({ name: 'exec', arguments: { env: ENV, argv: ['true'] } })) as {
        isError?: boolean;
        structuredContent?: { exitCode?: number };
      };
      const ms = performance.now() - t0;
      if (r.isError || r.structuredContent?.exitCode !== 0) throw new Error(`exec over MCP: ${JSON.stringify(r)}`);
      return ms;
    });
    results.push(s.row({ engine: node.engine, how }));
  } finally {
    closeIt();
    await client.close();
  }
}

/** The engine's own exec round trip through its API, on an idle container of the same image. */
async function peerSeries(engine: EngineName, image: string): Promise<void> {
  const ctr = await startIdleContainer(engine, image);
  const api = new EngineApi(engine);
  try {
    const s = await series(`${engine}-exec-api`, { n: opts['peer-n'], warmup: 5, budgetMs: 45_000 }, async () => {
      const t0 = performance.now();
      const code = await api.exec(ctr.id, ['true']);
      const ms = performance.now() - t0;
      if (code !== 0) throw new Error(`${engine} API exec true exited ${code}`);
      return ms;
    });
    results.push(
      s.row({ engine, how: `Engine API over ${api.socketPath}: POST /containers/{id}/exec, POST /exec/{id}/start, GET /exec/{id}/json` }),
    );
  } finally {
    api.close();
    await ctr.remove();
  }
}

/** A subscriber that hands each command.started event to whoever waits for its argv. */
class StartedWaiter {
  private readonly waiting = new Map<string, (at: number) => void>();
  private readonly stop = new AbortController();
  private first: (() => void) | undefined;
  readonly done: Promise<void>;

  constructor(berth: Berth) {
    this.done = (async () => {
      for await (const e of berth.events({ env: ENV, signal: this.stop.signal })) this.seen(e, performance.now());
    })();
    this.done.catch(() => undefined);
  }

  private seen(e: BerthEvent, at: number): void {
    this.first?.();
    this.first = undefined;
    if (e.type !== 'command.started') return;
    const key = e.argv[1];
    const w = key === undefined ? undefined : this.waiting.get(key);
    if (w) {
      this.waiting.delete(key!);
      w(at);
    }
  }

  /** Resolves with the time the started event of the command tagged `key` arrived. */
  arm(key: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no command.started event for ${key} within 10 s`)), 10_000);
      this.waiting.set(key, (at) => {
        clearTimeout(t);
        resolve(at);
      });
    });
  }

  /** Live for certain: commands run until the first event arrives. */
  async live(env: Environment): Promise<void> {
    let up = false;
    const arrived = new Promise<void>((r) => (this.first = r)).then(() => (up = true));
    while (!up) await Promise.race([env.exec(['true']), arrived]);
  }

  close(): void {
    this.stop.abort();
  }
}

async function eventSeries(node: BerthNode, berth: Berth, env: Environment): Promise<void> {
  const sub = new StartedWaiter(berth);
  try {
    await sub.live(env);
    let i = 0;
    const s = await series('berth-event-latency', budget(), async () => {
      const key = `e${i++}`;
      const arrived = sub.arm(key);
      const t0 = performance.now();
      const ran = env.exec(['true', key]);
      const at = await arrived;
      await ran;
      return at - t0;
    });
    results.push(
      s.row({
        engine: node.engine,
        how: 'from just before env.exec is sent to the command.started event reaching berth.events() in the same process',
      }),
    );
  } finally {
    sub.close();
    await sub.done.catch(() => undefined);
  }
}

runBench(report, (opts['max-seconds'] + 60) * 1000, async () => {
  setDeadline(opts['max-seconds'] * 1000);
  const engine: EngineName = engineList(opts.engine)[0]!;
  const peers = engineList(opts.peers);
  const { digest, repo, tags } = await prepareEngineBench(report, opts, [...new Set([engine, ...peers])], results);
  const node = await BerthNode.start(engine, digest, { listen: '127.0.0.1:0' });
  const created = await node.cli(['new', ENV, '--repo', repo, '--json']);
  if (created.code !== 0) throw new Error(`berth new ${ENV} exited ${created.code}: ${created.stderr.trim()}`);
  const berth = await Berth.connect({ socketPath: node.socketPath, autostart: false });
  onCleanup('close the SDK', () => berth.close());
  const env = await berth.get(ENV);
  const g = (name: string, fn: () => Promise<void>): Promise<void> => guarded(results, name, { engine }, fn);
  if (!skip.has('raw')) await g('berth-raw-api', () => rawSeries(node));
  if (!skip.has('sdk')) await g('berth-sdk', () => sdkSeries(node, env));
  if (!skip.has('mcp-stdio'))
    await g('berth-mcp-stdio', () =>
      mcpSeries(node, 'berth-mcp-stdio', 'tools/call exec over stdio to `berth mcp` (the official MCP client)', (c) =>
        c.connect(new StdioClientTransport({ command: process.execPath, args: [BERTH, 'mcp'], env: node.env as Record<string, string> })),
      ),
    );
  if (!skip.has('mcp-http')) {
    const { host, port, token } = await node.tcpEndpoint();
    await g('berth-mcp-http', () =>
      mcpSeries(node, 'berth-mcp-http', 'tools/call exec over streamable HTTP to /mcp on the TCP listener, bearer token', (c) =>
        c.connect(
          new StreamableHTTPClientTransport(new URL(`http://${host}:${port}/mcp`), {
            requestInit: { headers: { authorization: `Bearer ${token}` } },
          }),
        ),
      ),
    );
  }
  if (!skip.has('events')) await g('berth-event-latency', () => eventSeries(node, berth, env));
  if (!skip.has('peers')) for (const p of peers) await guarded(results, `${p}-exec-api`, { engine: p }, () => peerSeries(p, tags[p]!));
  const p50Of = (name: string): number | null => results.find((r) => r.name === name)?.p50_ms ?? null;
  const raw = p50Of('berth-raw-api');
  const over = (name: string): number | null => {
    const v = p50Of(name);
    return v !== null && raw !== null ? Math.round((v - raw) * 1000) / 1000 : null;
  };
  report.overhead_over_raw_api_p50_ms = {
    sdk: over('berth-sdk'),
    'mcp-stdio': over('berth-mcp-stdio'),
    'mcp-http': over('berth-mcp-http'),
  };
  // Each peer's round trip over each of berth's: how many times faster berth's surface is.
  const surfaces = ['berth-raw-api', 'berth-sdk', 'berth-mcp-stdio', 'berth-mcp-http'];
  report.peer_p50_over_berth_p50 = Object.fromEntries(
    peers.map((p) => [`${p}-exec-api`, Object.fromEntries(surfaces.map((b) => [b, ratio(p50Of(`${p}-exec-api`), p50Of(b))]))]),
  );
  report.meets_targets = {
    'mcp-stdio_p50_le_5_ms': (p50Of('berth-mcp-stdio') ?? Infinity) <= 5,
    'event-latency_p50_le_20_ms': (p50Of('berth-event-latency') ?? Infinity) <= 20,
  };
  log('done');
});

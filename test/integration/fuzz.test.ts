// A generative fuzzer over the whole wire contract: for every route, request bodies, query
// strings and path parameters made from the route's own schema, then broken (a wrong type, an
// unknown key, a huge or deep value, invalid UTF-8, NUL) or filled with hostile strings that
// the schema accepts (path traversal, absolute host paths, links planted in the workspace that
// point out of it, shell metacharacters). At least 10,000 requests (BERTH_FUZZ_N), seeded
// (BERTH_FUZZ_SEED replays a run); then every MCP tool, through the official SDK's client,
// with arguments made from its own input schema the same way. Every answer must be a status below 500, the daemon must
// live through all of them, no answer may carry a host file's content, and nothing may be
// written on the host outside the node's own directories.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { CallToolResultSchema, ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { BERTH, failureTracker, makeRepo, NodeFixture, testEngines } from '../helpers/fixture.js';
import { ROUTES, type RouteSpec } from '../../src/core/contract.js';
import { shapeOf } from '../../src/core/shape-of-zod.js';
import type { Shape } from '../../src/core/shape.js';

/**
 * The run's seed: the same one each CI run, so a run is reproducible; BERTH_FUZZ_SEED gives
 * another, `random` a fresh one (printed, to replay a failure).
 */
function fuzzSeed(): number {
  const v = process.env.BERTH_FUZZ_SEED;
  if (v === 'random') return randomBytes(4).readUInt32BE(0);
  return v ? Number(v) : 2238803063;
}

/** The run's seed, its generator, and a pick from a list by it. */
function seeded(): { seed: number; rand: () => number; pick: <T>(xs: readonly T[]) => T } {
  const seed = fuzzSeed();
  const rand = rng(seed);
  return { seed, rand, pick: <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]! };
}

/** A small seeded generator (mulberry32): the same seed makes the same run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Routes whose well-formed requests would start long work (a toolchain build, a pool of
 * environments, a new environment per request) get only malformed bodies here; their
 * handlers' own inputs are covered by bad-input and the hostile suites. */
const BODY_ONLY_BROKEN = new Set(['createEnv', 'buildToolchain', 'buildDevcontainer', 'pullToolchain', 'pushToolchain', 'setPool']);
/** The fuzzer's own environment is never removed under it. */
const KEEP = 'target';

describe('fuzzing every route of the contract', { concurrency: false }, () => {
  const engine = testEngines()[0];
  if (!engine) return;
  let node: NodeFixture;
  let repo: ReturnType<typeof makeRepo>;
  const tracker = failureTracker();
  // A host directory that stands for everything outside the node: a secret to read, a place to
  // write to. Links in the environment's workspace point at it.
  const host = mkdtempSync(join(tmpdir(), 'berth-fuzz-host-'));
  const SECRET = `host-secret-${randomBytes(8).toString('hex')}`;

  before(async () => {
    mkdirSync(join(host, 'dir'));
    writeFileSync(join(host, 'secret.txt'), SECRET + '\n');
    repo = makeRepo();
    node = await NodeFixture.start(engine);
    await node.json(['new', KEEP, '--repo', repo.path, '--network', 'none']);
    // Links planted by the environment, pointing out of the workspace to the host's paths.
    const planted = await node.cli([
      'exec',
      KEEP,
      '--',
      'sh',
      '-c',
      `ln -s ${host} out && ln -s ${host}/secret.txt secret && ln -s / root && ln -s ../../.. up && mkdir -p d && ln -s ${host}/dir d/x`,
    ]);
    assert.equal(planted.code, 0, planted.stderr);
  });

  after(async () => {
    await node?.stop(tracker.failed);
    repo?.cleanup();
    rmSync(host, { recursive: true, force: true });
  });

  it('answers 10,000 generated requests below 500, and reads and writes nothing outside', () =>
    tracker.track(
      (async () => {
        const { seed, rand, pick } = seeded();
        const total = Number(process.env.BERTH_FUZZ_N ?? 10_000);
        const sock = join(node.home, 'berth.sock');
        const token = readFileSync(join(node.home, 'token'), 'utf8').trim();

        const hostile: string[] = [
          '../../../etc/passwd',
          '/etc/passwd',
          `${host}/secret.txt`,
          `${host}/dir/written`,
          'out/secret.txt',
          'secret',
          'root/etc/shadow',
          'up/etc/hostname',
          'd/x/written',
          'out/dir/written',
          '/workspace/../../etc',
          '/.berth/run/agent.sock',
          '/proc/self/environ',
          '..',
          '.',
          '',
          ' ',
          `$(touch ${host}/dir/pwned)`,
          `\`touch ${host}/dir/pwned\``,
          `; touch ${host}/dir/pwned`,
          `| touch ${host}/dir/pwned`,
          `&& touch ${host}/dir/pwned #`,
          "' OR 1=1 --",
          '${HOME}',
          '%2e%2e%2f%2e%2e%2fetc',
          'a\u0000b',
          '\u0000',
          '\ud800',
          '\uffff',
          'é'.repeat(300),
          'x'.repeat(70_000),
          '-rf',
          '--help',
          'sha256:' + '0'.repeat(64),
          '0'.repeat(64),
          'target',
          'all',
          'learn',
          'file:///etc',
          '/',
          '\n',
          'a\nb: c',
          '{}',
        ];
        const hostileNumbers = [-1, 0, 1, 2 ** 31, 2 ** 53, -(2 ** 53), 1e308, 0.5, -0.0];

        const gen = (s: Shape, depth: number): unknown => {
          switch (s.t) {
            case 'string':
              return rand() < 0.7 ? pick(hostile) : 'x'.repeat(s.min ?? 1);
            case 'number':
              return pick(hostileNumbers);
            case 'boolean':
              return rand() < 0.5;
            case 'null':
              return null;
            case 'undefined':
              return undefined;
            case 'any':
              return pick([null, 1, 'x', [], {}]);
            case 'never':
              return undefined;
            case 'literal':
              return s.v;
            case 'enum':
              return pick(s.v);
            case 'array': {
              const n = depth > 3 ? 0 : Math.floor(rand() * 4);
              return Array.from({ length: Math.max(n, s.min ?? 0, s.len ?? 0) }, () => gen(s.of, depth + 1));
            }
            case 'tuple':
              return s.of.map((x) => gen(x, depth + 1));
            case 'object': {
              const o: Record<string, unknown> = {};
              for (const [k, v] of Object.entries(s.p)) {
                const optional = v.t === 'optional' || v.t === 'default';
                if (optional && rand() < 0.5) continue;
                o[k] = gen(v, depth + 1);
              }
              return o;
            }
            case 'record':
              return depth > 3 ? {} : { [pick(hostile.filter((h) => h.length < 100))]: gen(s.v, depth + 1) };
            case 'union':
              return gen(pick(s.of), depth);
            case 'optional':
            case 'nullable':
            case 'default':
              return rand() < 0.2 ? (s.t === 'nullable' ? null : undefined) : gen(s.of, depth);
          }
        };

        /** One thing wrong with a value: the ways a client gets a request wrong. */
        const breakValue = (v: unknown): unknown => {
          const r = rand();
          if (v && typeof v === 'object' && !Array.isArray(v) && r < 0.5) {
            const o = { ...(v as Record<string, unknown>) };
            const keys = Object.keys(o);
            if (keys.length && r < 0.35) o[pick(keys)] = pick<unknown>([1, 'x', [], {}, null, true, -1, [[[[]]]], 'x'.repeat(100_000)]);
            // An own `__proto__` key, as JSON.parse makes one on the node (prototype pollution).
            else
              Object.defineProperty(o, pick(['__proto__', 'constructor', 'unknownKey', 'x'.repeat(1000)]), {
                value: pick<unknown>([1, { polluted: true }, 'x']),
                enumerable: true,
                writable: true,
                configurable: true,
              });
            return o;
          }
          return pick<unknown>([null, 0, 'x', [], true, [v], { v }]);
        };

        /** The raw bytes of a body: JSON, or something that is not JSON at all. */
        const encode = (v: unknown, broken: boolean): Buffer | undefined => {
          const r = rand();
          if (broken && r < 0.08) return Buffer.from('{"a":' + '['.repeat(50_000));
          if (broken && r < 0.14) return Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0xff, 0x22, 0x7d]); // invalid UTF-8
          if (broken && r < 0.18) return Buffer.from('{oops');
          if (broken && r < 0.2) return Buffer.alloc(6 * 1024 * 1024, 0x20);
          if (v === undefined) return undefined;
          return Buffer.from(JSON.stringify(v));
        };

        const encodeSegment = (s: string): string => {
          const r = rand();
          if (r < 0.1) return pick(['%ZZ', '%C3%28', 'a%00b', '%2e%2e', '..%2f..%2fetc', '%ff']);
          try {
            return encodeURIComponent(s).slice(0, 2000);
          } catch {
            return '%ED%A0%80'; // a lone surrogate, as UTF-8 would have it
          }
        };

        const pathFor = (id: string, spec: RouteSpec): string =>
          spec.path.replace(/\{(\w+)\}/g, (_m, name: string) => {
            if (name === 'name') {
              // Never the fuzzer's own environment for a removal; otherwise mostly it.
              if (id === 'removeEnv') return encodeSegment(pick(hostile.filter((h) => h !== KEEP)));
              return rand() < 0.7 ? KEEP : encodeSegment(pick(hostile));
            }
            if (name === 'hash') return rand() < 0.5 ? '0'.repeat(64) : encodeSegment(pick(hostile));
            if (name === 'port') return pick(['1', '22', '65535', '0', '99999', 'x']);
            return encodeSegment(pick(hostile));
          });

        const queryFor = (spec: RouteSpec): string => {
          if (!spec.query || rand() < 0.2) return '';
          const parts: string[] = [];
          for (const k of Object.keys(spec.query.shape as Record<string, unknown>)) {
            if (rand() < 0.3) continue;
            const v = rand() < 0.8 ? pick(hostile) : String(pick(hostileNumbers));
            parts.push(`${k}=${encodeSegment(v)}`);
          }
          if (rand() < 0.1) parts.push(`${encodeSegment(pick(hostile))}=1`);
          return parts.length ? `?${parts.join('&')}` : '';
        };

        const send = (method: string, path: string, body: Buffer | undefined, contentType: string) =>
          new Promise<{ status: number | string; text: string }>((resolve) => {
            const req = http.request(
              {
                socketPath: sock,
                method,
                path,
                agent: false,
                headers: {
                  authorization: `Bearer ${token}`,
                  'content-type': contentType,
                  ...(body ? { 'content-length': String(body.length) } : {}),
                },
              },
              (res) => {
                if (String(res.headers['content-type']).startsWith('text/event-stream')) {
                  res.destroy();
                  return resolve({ status: res.statusCode ?? 0, text: '' });
                }
                const chunks: Buffer[] = [];
                let size = 0;
                res.on('data', (c: Buffer) => {
                  size += c.length;
                  if (size < 4 << 20) chunks.push(c);
                });
                res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
                res.on('error', (err: NodeJS.ErrnoException) => resolve({ status: `response ${err.code ?? err.message}`, text: '' }));
              },
            );
            req.setTimeout(60_000, () => req.destroy(new Error('no answer in 60 s')));
            req.on('error', (err: NodeJS.ErrnoException) => resolve({ status: `no status (${err.code ?? err.message})`, text: '' }));
            req.end(body);
          });

        const routes = (Object.entries(ROUTES) as Array<[string, RouteSpec]>).filter(([, r]) => r.kind !== 'websocket');
        const shapes = new Map(routes.map(([id, r]) => [id, r.request ? shapeOf(r.request) : undefined]));
        const failures: string[] = [];
        const byStatus = new Map<string, number>();
        const timeByRoute = new Map<string, number>();
        for (let i = 0; i < total; i++) {
          const [id, spec] = routes[i % routes.length]!;
          const shape = shapes.get(id);
          const broken = BODY_ONLY_BROKEN.has(id) || rand() < 0.5;
          let body: Buffer | undefined;
          let contentType = 'application/json';
          if (spec.kind === 'upload') {
            contentType = 'application/octet-stream';
            body = rand() < 0.5 ? randomBytes(Math.floor(rand() * 4096)) : Buffer.from(pick(hostile));
          } else if (BODY_ONLY_BROKEN.has(id)) {
            // Never a body these routes would act on: not JSON, or JSON that is not an object.
            body = Buffer.from(pick(['{oops', '[]', '1', '"x"', 'true', '{"a":' + '['.repeat(50_000), '\u00ff\u00fe']), 'latin1');
          } else if (shape) {
            let v = gen(shape, 0);
            if (broken) v = breakValue(v);
            body = encode(v, broken);
          } else if (rand() < 0.3) {
            body = encode(breakValue({}), true);
          }
          const path = pathFor(id, spec) + queryFor(spec);
          const t0 = performance.now();
          const res = await send(spec.method, path, body, contentType);
          timeByRoute.set(id, (timeByRoute.get(id) ?? 0) + performance.now() - t0);
          const key = String(res.status);
          byStatus.set(key, (byStatus.get(key) ?? 0) + 1);
          const pauseFault = res.status === 500 && /engine could not (pause|resume) container/.test(res.text);
          // A registry the request names that cannot be reached is an upstream that is down (503),
          // said as such; nothing here serves one.
          const upstreamDown = res.status === 503 && /"code":"engine_unavailable".*registry at .* is unreachable/.test(res.text);
          if (!pauseFault && !upstreamDown && (typeof res.status !== 'number' || res.status >= 500))
            failures.push(`#${i} ${id} ${spec.method} ${path.slice(0, 200)}: ${res.status} ${res.text.slice(0, 300)}`);
          if (res.text.includes(SECRET))
            failures.push(`#${i} ${id} ${spec.method} ${path.slice(0, 200)}: the answer carries the host's secret`);
          if (node.daemon?.exitCode !== null || node.daemon?.signalCode !== null) {
            assert.fail(`seed ${seed}: the daemon died at request #${i} (${id} ${spec.method} ${path.slice(0, 200)}):\n${node.log()}`);
          }
          if (failures.length >= 20) break;
        }
        const slowest = [...timeByRoute]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 6)
          .map(([r, ms]) => `${r} ${(ms / 1000).toFixed(1)} s`);
        process.stderr.write(
          `fuzz: seed ${seed}, ${total} requests, answers by status ${JSON.stringify(Object.fromEntries(byStatus))}; most time: ${slowest.join(', ')}\n`,
        );
        assert.deepEqual(failures, [], `seed ${seed} (BERTH_FUZZ_SEED replays it)`);
        assert.deepEqual(readdirSync(join(host, 'dir')), [], `seed ${seed}: something was written on the host`);
        assert.equal(readFileSync(join(host, 'secret.txt'), 'utf8'), SECRET + '\n');
        // The node still serves, and its own environment still runs commands.
        const alive = await node.cli(['exec', KEEP, '--', 'true']);
        assert.ok(alive.code === 0 || /paused/.test(alive.stderr), alive.stderr);
      })(),
    ));

  it('answers 2,000 generated MCP tool calls with a result or an error, never a crash or a host file', () =>
    tracker.track(
      (async () => {
        const { seed, rand, pick } = seeded();
        const total = Number(process.env.BERTH_FUZZ_MCP_N ?? 2000);
        const strings = [
          '../../../etc/passwd',
          `${host}/secret.txt`,
          'out/secret.txt',
          'secret',
          'root/etc/shadow',
          `$(touch ${host}/dir/pwned)`,
          `; touch ${host}/dir/pwned`,
          'a\u0000b',
          '\ud800',
          'x'.repeat(70_000),
          '',
          '/',
          KEEP,
          'sha256:' + '0'.repeat(64),
        ];
        interface JsonSchema {
          type?: string | string[];
          enum?: unknown[];
          properties?: Record<string, JsonSchema>;
          required?: string[];
          items?: JsonSchema;
          anyOf?: JsonSchema[];
        }
        const gen = (s: JsonSchema, depth: number): unknown => {
          if (s.enum) return pick(s.enum);
          if (s.anyOf) return gen(pick(s.anyOf), depth);
          const type = Array.isArray(s.type) ? pick(s.type) : s.type;
          switch (type) {
            case 'object': {
              const o: Record<string, unknown> = {};
              for (const [k, v] of Object.entries(s.properties ?? {}))
                if (s.required?.includes(k) || rand() < 0.5) o[k] = gen(v, depth + 1);
              return o;
            }
            case 'array':
              return depth > 3 ? [] : Array.from({ length: Math.floor(rand() * 3) }, () => gen(s.items ?? {}, depth + 1));
            case 'string':
              return pick(strings);
            case 'integer':
            case 'number':
              return pick([-1, 0, 1, 2 ** 53, 1e308, 0.5]);
            case 'boolean':
              return rand() < 0.5;
            default:
              return pick<unknown>([null, 1, 'x', [], {}]);
          }
        };
        const client = new Client({ name: 'berth-fuzz', version: '1.0.0' });
        const transport = new StdioClientTransport({
          command: process.execPath,
          args: [BERTH, 'mcp'],
          env: node.env as Record<string, string>,
          stderr: 'pipe',
        });
        let stderr = '';
        transport.stderr?.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
        await client.connect(transport);
        try {
          const tools = (await client.listTools()).tools;
          assert.ok(tools.length > 10, 'the server lists its tools');
          const failures: string[] = [];
          for (let i = 0; i < total && failures.length < 20; i++) {
            const tool = tools[i % tools.length]!;
            let args = gen(tool.inputSchema, 0) as Record<string, unknown>;
            // The fuzzer's own environment is never removed under it.
            if (tool.name === 'remove' && args && typeof args === 'object') args = { ...args, env: 'not-target' };
            if (rand() < 0.3 && args && typeof args === 'object') {
              const keys = Object.keys(args);
              if (keys.length) args = { ...args, [pick(keys)]: pick<unknown>([1, 'x', [], {}, null, [[[[]]]]]) };
              else args = { ...args, unknownKey: 1 };
            }
            let text = '';
            try {
              const r = await client.callTool({ name: tool.name, arguments: args }, CallToolResultSchema, { timeout: 60_000 });
              text = JSON.stringify(r);
              const code = (r.structuredContent as { error?: { code?: string } } | undefined)?.error?.code;
              if (r.isError && code === 'internal')
                failures.push(`#${i} ${tool.name} ${JSON.stringify(args).slice(0, 200)}: ${text.slice(0, 300)}`);
            } catch (err) {
              // A protocol error (invalid arguments) is an answer; a closed transport or a call
              // that never answers is not.
              if (!(err instanceof McpError) || err.code === Number(ErrorCode.RequestTimeout) || /Connection closed/i.test(err.message)) {
                failures.push(`#${i} ${tool.name} ${JSON.stringify(args).slice(0, 200)}: ${String(err)}`);
                break;
              }
              text = err.message;
            }
            if (text.includes(SECRET)) failures.push(`#${i} ${tool.name}: the answer carries the host's secret`);
          }
          assert.deepEqual(failures, [], `seed ${seed} (BERTH_FUZZ_SEED replays it); the server said: ${stderr.slice(-2000)}`);
          assert.deepEqual(readdirSync(join(host, 'dir')), [], `seed ${seed}: something was written on the host`);
          assert.ok(node.daemon?.exitCode === null && node.daemon.signalCode === null, 'the daemon lives');
        } finally {
          await client.close().catch(() => undefined);
        }
      })(),
    ));
});

// Tokens that reach only an agent's own environments: every route of the contract, HTTP and
// WebSocket, called with every kind of token against a real node on TCP, each answer checked
// against the table in docs/security.md (which this test reads, so the document cannot drift).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fillPath, ROUTES, type RouteSpec } from '../../src/core/contract.js';
import { NodeClient } from '../../src/client/client.js';
import { failureTracker, makeRepo, NodeFixture, ROOT, testEngines } from '../helpers/fixture.js';

type Column = 'none' | 'wrong' | 'expired' | 'read-only' | 'other agent' | 'own agent' | 'node';
const COLUMNS: Column[] = ['none', 'wrong', 'expired', 'read-only', 'other agent', 'own agent', 'node'];

/** The expected answers, as docs/security.md states them. */
function docTable(): Map<string, Record<Column, string>> {
  const text = readFileSync(join(ROOT, 'docs', 'security.md'), 'utf8');
  const out = new Map<string, Record<Column, string>>();
  for (const line of text.split('\n')) {
    const m = /^\| `(\w+)` \|[^|]+\|[^|]+\|(.+)\|$/.exec(line);
    if (!m) continue;
    const cells = m[2]!.split('|').map((c) => c.trim());
    out.set(m[1]!, Object.fromEntries(COLUMNS.map((c, i) => [c, cells[i] ?? '?'])) as Record<Column, string>);
  }
  return out;
}

interface Answer {
  status: number;
  code?: string;
  message?: string;
}

function call(port: number, method: string, path: string, token: string | undefined, upgrade: boolean): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    if (upgrade)
      Object.assign(headers, {
        connection: 'upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      });
    const body = method === 'GET' || method === 'DELETE' || upgrade ? undefined : '{}';
    if (body) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(body.length) });
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false });
    const timer = setTimeout(() => req.destroy(new Error(`no answer to ${method} ${path}`)), 30_000);
    req.on('upgrade', (_res, socket) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ status: 101 });
    });
    req.on('response', (res) => {
      clearTimeout(timer);
      // An event stream never ends: its status is the answer.
      if (String(res.headers['content-type']).startsWith('text/event-stream')) {
        res.destroy();
        return resolve({ status: res.statusCode ?? 0 });
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let err: { code?: string; message?: string } | undefined;
        try {
          err = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: { code?: string; message?: string } }).error;
        } catch {
          /* bytes */
        }
        resolve({ status: res.statusCode ?? 0, code: err?.code, message: err?.message });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Whether an answer is what the table says. */
function matches(expected: string, a: Answer): boolean {
  const scopedAway = a.status === 404 && a.code === 'not_found' && /no environment named/.test(a.message ?? '');
  if (expected === '401') return a.status === 401 && a.code === 'unauthorized';
  if (expected === '403') return a.status === 403 && a.code === 'forbidden';
  if (expected === '404') return scopedAway;
  if (expected === 'ok') return a.status !== 401 && a.status !== 403 && !scopedAway;
  return false;
}

const engine = testEngines()[0];
if (engine) {
  describe(`tokens on ${engine}`, () => {
    const { track, failed } = failureTracker();
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let port = 0;
    const tokens: Partial<Record<Column, string>> = {};
    before(async () => {
      repo = makeRepo();
      node = await NodeFixture.start(engine, {});
      await node.killDaemon('SIGTERM');
      await node.startDaemonWith(['--listen', '127.0.0.1:0']);
      port = Number(/also listening on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(node.log())?.[1]);
      tokens.node = readFileSync(join(node.home, 'token'), 'utf8').trim();
      tokens.wrong = 'berth_0123456789abcdef_' + 'x'.repeat(32);
      const make = async (args: string[]): Promise<string> => (await node.json<{ token: string }>(['token', 'create', ...args])).token;
      tokens['own agent'] = await make(['--agent', 'a1']);
      tokens['read-only'] = await make(['--agent', 'a1', '--read-only']);
      tokens['other agent'] = await make(['--agent', 'a2']);
      tokens.expired = await make(['--agent', 'a1', '--ttl', '1']);
      await node.json(['new', 'mine', '--repo', repo.path, '--agent', 'a1']);
      await sleep(1100); // the expiring token's second runs out
    });
    after(async () => {
      await node?.stop(failed);
      repo?.cleanup();
    });

    it('answers every route, for every kind of token, as docs/security.md says', () =>
      track(
        (async () => {
          const table = docTable();
          const mismatches: string[] = [];
          for (const [id, spec] of Object.entries(ROUTES) as Array<[string, RouteSpec]>) {
            const want = table.get(id);
            assert.ok(want, `docs/security.md has no row for route ${id}`);
            for (const column of COLUMNS) {
              // A removal really removes: those that may, remove an environment made for it.
              let name = 'mine';
              if (id === 'removeEnv' && matches(want[column], { status: 200 }) && column !== 'none') {
                name = `gone-${column.replace(' ', '-')}`;
                await node.json(['new', name, '--repo', repo.path, '--agent', 'a1']);
              }
              const params = {
                name,
                service: 'svc',
                hash: 'a'.repeat(64),
                snapshot: 'sha256:' + 'b'.repeat(64),
                port: 80,
                session: 'abc',
                token: '0'.repeat(16),
                secret: 'no-such-secret',
              };
              const path = fillPath(spec.path, params);
              const a = await call(port, spec.method, path, tokens[column], spec.kind === 'websocket');
              if (!matches(want[column], a))
                mismatches.push(`${id} with ${column}: expected ${want[column]}, got ${a.status} ${a.code ?? ''} ${a.message ?? ''}`);
              if (id === 'pause' && a.status === 200) await node.cli(['resume', 'mine']);
            }
          }
          assert.deepEqual(mismatches, []);
        })(),
      ));

    it("an agent's token lists, creates and streams only its own", () =>
      track(
        (async () => {
          const other = new NodeClient({ url: `http://127.0.0.1:${port}`, token: tokens['other agent'] });
          const own = new NodeClient({ url: `http://127.0.0.1:${port}`, token: tokens['own agent'] });
          try {
            assert.deepEqual(
              (await other.listEnvs()).map((e) => e.name),
              [],
            );
            assert.ok((await own.listEnvs()).some((e) => e.name === 'mine'));
            // A path on the node is refused (the operator allows no roots here); a URL would be
            // fetched. The environment it makes carries its agent, whatever the request said.
            await assert.rejects(
              other.createEnv({ name: 'theirs', repo: repo.path }),
              (e: Error & { code?: string }) => e.code === 'forbidden',
            );
            await assert.rejects(
              other.createEnv({ name: 'theirs', repo: 'https://example.invalid/x.git', agent: 'a1' }),
              (e: Error & { code?: string }) => e.code === 'forbidden',
            );
            // Events: the other agent's stream never shows a1's commands.
            const seen: string[] = [];
            const stop = new AbortController();
            const reading = (async () => {
              for await (const e of other.events({ signal: stop.signal })) seen.push(`${e.type}:${e.env}`);
            })();
            const mineSeen: string[] = [];
            const stop2 = new AbortController();
            const reading2 = (async () => {
              for await (const e of own.events({ env: 'mine', signal: stop2.signal })) {
                mineSeen.push(e.type);
                if (e.type === 'command.ended') stop2.abort();
              }
            })();
            await sleep(200);
            const r = await own.exec('mine', { argv: ['true'] });
            assert.equal(r.exitCode, 0);
            await Promise.race([reading2, sleep(10_000)]);
            stop.abort();
            stop2.abort();
            await reading.catch(() => {});
            assert.deepEqual(mineSeen.slice(-2), ['command.started', 'command.ended']);
            assert.ok(!seen.some((s) => s.endsWith(':mine')), `the other agent saw ${seen.join(', ')}`);
            // The secret is kept only as a hash: the state holds no token.
            const db = readFileSync(join(node.home, 'state.db'));
            assert.ok(!db.includes(Buffer.from(tokens['own agent']!.split('_')[2]!)), 'a token secret is in the state database');
          } finally {
            other.close();
            own.close();
          }
        })(),
      ));
  });
}

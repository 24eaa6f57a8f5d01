// The MCP server as an agent's MCP client meets it: the official SDK's client over stdio
// (`berth mcp`) and over streamable HTTP (/mcp on the daemon, with a bearer token), against a
// real node; and the MCP Inspector's command line, when it is installed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { BERTH, failureTracker, makeRepo, NodeFixture, ROOT, run, testEngines } from '../helpers/fixture.js';

const TOOLS = [
  'batch',
  'create',
  'describe',
  'egress',
  'exec',
  'fork',
  'list_files',
  'pause',
  'read_file',
  'read_human_note',
  'remove',
  'report_status',
  'resume',
  'service_logs',
  'service_start',
  'service_stop',
  'snapshot',
  'verify',
  'write_file',
];

interface ToolResult {
  isError?: boolean;
  content: Array<{ type: string; text?: string }>;
  structuredContent?: Record<string, unknown>;
}

/** A tool's answer, with its text joined. */
async function call(client: Client, name: string, args: Record<string, unknown>): Promise<ToolResult & { text: string }> {
  const r = (await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as ToolResult;
  return { ...r, text: r.content.map((c) => c.text ?? '').join('') };
}

function structured<T>(r: ToolResult): T {
  assert.ok(r.structuredContent, `no structured content in ${JSON.stringify(r)}`);
  return r.structuredContent as T;
}

/** The MCP Inspector's launcher, from the repository's dependencies (or BERTH_MCP_INSPECTOR). */
function inspectorBin(): string | undefined {
  const candidates = [
    process.env.BERTH_MCP_INSPECTOR,
    join(ROOT, 'node_modules', '@modelcontextprotocol', 'inspector', 'clients', 'launcher', 'build', 'index.js'),
  ];
  return candidates.find((c): c is string => !!c && existsSync(c));
}

const engine = testEngines()[0];
if (engine) {
  describe(`MCP on ${engine}`, () => {
    const tracker = failureTracker();
    const track = tracker.track;
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let port = 0;
    let client: Client;
    const clients: Client[] = [];
    const http = async (token: string | undefined): Promise<Client> => {
      const c = new Client({ name: 'berth-test-http', version: '0.0.0' });
      const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
      await c.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`), { requestInit: { headers } }));
      clients.push(c);
      return c;
    };
    before(async () => {
      repo = makeRepo();
      // Agents' tokens may name this repository by its path (an agent creates from it over HTTP).
      node = await NodeFixture.start(engine, { BERTH_AGENT_REPO_ROOTS: repo.path });
      await node.killDaemon('SIGTERM');
      await node.startDaemonWith(['--listen', '127.0.0.1:0']);
      port = Number(/also listening on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(node.log())?.[1]);
      client = new Client({ name: 'berth-test', version: '0.0.0' });
      await client.connect(
        new StdioClientTransport({
          command: process.execPath,
          args: [BERTH, 'mcp'],
          env: node.env as Record<string, string>,
          stderr: 'pipe',
        }),
      );
      clients.push(client);
    });
    after(async () => {
      for (const c of clients) await c.close().catch(() => undefined);
      await node?.stop(tracker.failed);
      repo?.cleanup();
    });

    it('over stdio: every tool listed; create, exec, a failing command, files', () =>
      track(
        (async () => {
          const { tools } = await client.listTools();
          assert.deepEqual(tools.map((t) => t.name).sort(), TOOLS);
          for (const t of tools) {
            assert.ok(t.description && t.description.length > 10, `${t.name} has a description`);
            assert.equal(t.inputSchema.type, 'object');
          }
          assert.match(client.getInstructions() ?? '', /environment/);

          const created = await call(client, 'create', { name: 'm1', repo: repo.path, agent: 'a1' });
          assert.ok(!created.isError, created.text);
          assert.equal(structured<{ env: { name: string; state: string } }>(created).env.state, 'running');

          const ok = await call(client, 'exec', { env: 'm1', argv: ['sh', '-c', 'echo hello; echo warn >&2'] });
          assert.ok(!ok.isError, ok.text);
          const s = structured<{ exitCode: number; stdout: string; stderr: string; truncated: boolean }>(ok);
          assert.equal(s.exitCode, 0);
          assert.equal(s.stdout, 'hello\n');
          assert.equal(s.stderr, 'warn\n');
          assert.equal(s.truncated, false);
          assert.match(ok.text, /^exit 0\nhello\n/);

          // A command that fails is a tool call that worked: its exit code and output say how it failed.
          const bad = await call(client, 'exec', { env: 'm1', argv: ['sh', '-c', 'echo broken >&2; exit 3'] });
          assert.ok(!bad.isError, bad.text);
          assert.equal(structured<{ exitCode: number }>(bad).exitCode, 3);
          assert.equal(structured<{ stderr: string }>(bad).stderr, 'broken\n');
          assert.match(bad.text, /^exit 3\n[\s\S]*\[stderr\]\nbroken/);
          const timed = await call(client, 'exec', { env: 'm1', argv: ['sleep', '30'], timeoutMs: 300 });
          assert.equal(structured<{ exitCode: number; timedOut: boolean }>(timed).exitCode, 124);
          assert.match(timed.text, /timed out/);
          const stdin = await call(client, 'exec', { env: 'm1', argv: ['cat'], stdin: 'piped' });
          assert.equal(structured<{ stdout: string }>(stdin).stdout, 'piped');

          const w = await call(client, 'write_file', { env: 'm1', path: 'notes/n.txt', content: 'noted\n' });
          assert.ok(!w.isError, w.text);
          const r = await call(client, 'read_file', { env: 'm1', path: 'notes/n.txt' });
          assert.equal(structured<{ content: string; size: number }>(r).content, 'noted\n');
          const ls = await call(client, 'list_files', { env: 'm1', path: 'notes' });
          assert.deepEqual(
            structured<{ entries: Array<{ name: string }> }>(ls).entries.map((e) => e.name),
            ['n.txt'],
          );
          const steps = await call(client, 'batch', { env: 'm1', steps: [{ argv: ['true'] }, { argv: ['sh', '-c', 'echo two'] }] });
          assert.equal(structured<{ completed: number; steps: Array<{ stdout: string }> }>(steps).steps[1]?.stdout, 'two\n');
        })(),
      ));

    it('NODE/ENV: every tool reaches an environment on a node added with `berth node add`', () =>
      track(
        (async () => {
          // This same node, added by name over TCP: a name with a node in it goes that way.
          const added = await node.cli(['node', 'add', 'self', `tcp://127.0.0.1:${port}`, '--token-file', join(node.home, 'token')]);
          assert.equal(added.code, 0, added.stderr);
          const one = await call(client, 'exec', { env: 'self/m1', argv: ['cat', 'notes/n.txt'] });
          assert.equal(structured<{ stdout: string }>(one).stdout, 'noted\n', one.text);
          const many = await call(client, 'batch', { env: 'self/m1', steps: [{ argv: ['echo', 'a'] }, { argv: ['echo', 'b'] }] });
          assert.ok(!many.isError, many.text);
          assert.deepEqual(
            structured<{ steps: Array<{ stdout: string }> }>(many).steps.map((x) => x.stdout),
            ['a\n', 'b\n'],
          );
          const d = await call(client, 'describe', { env: 'self/m1' });
          assert.equal(structured<{ name: string }>(d).name, 'm1');
        })(),
      ));

    it('a long output is cut to its end, and the whole of it is paged with read_file', () =>
      track(
        (async () => {
          const expected = Array.from({ length: 20_000 }, (_, i) => `${i + 1}\n`).join('');
          const big = await call(client, 'exec', { env: 'm1', argv: ['seq', '1', '20000'] });
          assert.ok(!big.isError, big.text);
          const s = structured<{
            stdout: string;
            truncated: boolean;
            fullOutput?: { stdout?: string };
            bytes?: { stdout: number };
          }>(big);
          assert.equal(s.truncated, true);
          assert.ok(Buffer.byteLength(s.stdout) <= 16 * 1024);
          assert.ok(expected.endsWith(s.stdout), 'the end of the output is kept');
          assert.ok(s.stdout.endsWith('20000\n'));
          assert.equal(s.bytes?.stdout, expected.length);
          const file = s.fullOutput?.stdout;
          assert.ok(file, JSON.stringify(s));
          assert.ok(big.text.includes(file), 'the text says where the whole output is');

          let whole = '';
          let offset = 0;
          for (let page = 0; page < 10; page++) {
            const r = await call(client, 'read_file', { env: 'm1', path: file, offset });
            const p = structured<{ content: string; size: number; more: boolean; offset: number }>(r);
            assert.equal(p.size, expected.length);
            assert.equal(p.offset, offset);
            whole += p.content;
            offset += Buffer.byteLength(p.content);
            if (!p.more) break;
            assert.match(r.text, new RegExp(`read again with offset ${offset}`));
          }
          assert.equal(whole, expected);
          assert.ok(offset > 64 * 1024, 'it took more than one page');

          // Pages and cut output end on whole characters, however the bytes fall.
          const text = 'aé€'.repeat(30_000); // 6 bytes a unit: 64 KiB does not fall between two
          await call(client, 'write_file', { env: 'm1', path: 'utf8.txt', content: text });
          let read = '';
          for (let at = 0, page = 0; page < 10; page++) {
            const p = structured<{ content: string; more: boolean }>(
              await call(client, 'read_file', { env: 'm1', path: 'utf8.txt', offset: at }),
            );
            assert.ok(!p.content.includes('\uFFFD'), `page ${page} has a broken character`);
            read += p.content;
            at += Buffer.byteLength(p.content);
            if (!p.more) break;
          }
          assert.equal(read, text);
          const tail = structured<{ stdout: string }>(await call(client, 'exec', { env: 'm1', argv: ['cat', 'utf8.txt'] }));
          assert.ok(!tail.stdout.includes('\uFFFD'), 'the cut output starts on a whole character');
          assert.ok(text.endsWith(tail.stdout));
        })(),
      ));

    it('a tool that fails says what to do; a malformed call is refused and the session goes on', () =>
      track(
        (async () => {
          const missing = await call(client, 'exec', { env: 'nope', argv: ['true'] });
          assert.equal(missing.isError, true);
          assert.match(missing.text, /^not_found: no environment named nope/);
          assert.match(missing.text, /create/, 'it says how to get one');
          assert.equal(structured<{ error: { code: string } }>(missing).error.code, 'not_found');
          const outside = await call(client, 'read_file', { env: 'm1', path: '/no/such/file' });
          assert.equal(outside.isError, true);
          assert.match(outside.text, /^not_found: /);

          // Arguments that do not fit the tool's schema: a tool error that names the argument,
          // so the model can correct itself (MCP 2025-11-25, tools: error handling).
          const wrongType = await call(client, 'exec', { env: 'm1', argv: 'ls -l' });
          assert.equal(wrongType.isError, true);
          assert.match(wrongType.text, /argv/);
          const unknownTool = await call(client, 'no_such_tool', {});
          assert.equal(unknownTool.isError, true);
          assert.match(unknownTool.text, /no_such_tool/);
          // A request that is not a tool call at all: a protocol error (the SDK's parse of the
          // request answers it; its code is -32603 in SDK 1.32, where -32602 would be more exact).
          await assert.rejects(
            client.request({ method: 'tools/call', params: { name: 'exec', arguments: 'ls' } }, CallToolResultSchema),
            (e: unknown) =>
              e instanceof McpError &&
              [Number(ErrorCode.InvalidParams), Number(ErrorCode.InternalError)].includes(e.code) &&
              /arguments/.test(e.message),
          );
          await assert.rejects(
            client.request({ method: 'no/such/method', params: {} }, CallToolResultSchema),
            (e: unknown) => e instanceof McpError && e.code === Number(ErrorCode.MethodNotFound),
          );
          // The session is still good.
          const after = await call(client, 'exec', { env: 'm1', argv: ['echo', 'still here'] });
          assert.equal(structured<{ stdout: string }>(after).stdout, 'still here\n');
        })(),
      ));

    it('services, verify, describe, snapshot, fork, pause, resume and remove', () =>
      track(
        (async () => {
          const started = await call(client, 'service_start', {
            env: 'm1',
            service: 'web',
            cmd: ['python3', '-m', 'http.server', '8000'],
            ready: 'http:8000/',
          });
          assert.ok(!started.isError, started.text);
          assert.equal(structured<{ service: { state: string } }>(started).service.state, 'ready');
          const v = await call(client, 'verify', { env: 'm1', http: ['http://localhost:8000/'] });
          assert.equal(structured<{ verified: boolean }>(v).verified, true, v.text);
          assert.equal(v.text, 'verified');
          const logs = await call(client, 'service_logs', { env: 'm1', service: 'web' });
          assert.match(structured<{ log: string }>(logs).log, /GET \/ HTTP/);
          assert.equal(
            structured<{ service: { state: string } }>(await call(client, 'service_stop', { env: 'm1', service: 'web' })).service.state,
            'stopped',
          );
          const notUp = await call(client, 'verify', { env: 'm1', http: ['http://localhost:8000/'] });
          assert.equal(structured<{ verified: boolean }>(notUp).verified, false);
          assert.match(notUp.text, /^not verified:\n/);

          const d = await call(client, 'describe', { env: 'm1' });
          assert.equal(structured<{ name: string; commit: string }>(d).commit, repo.main);
          const snap = await call(client, 'snapshot', { env: 'm1' });
          const id = structured<{ snapshot: { id: string } }>(snap).snapshot.id;
          assert.match(id, /^sha256:/);
          const forked = await call(client, 'fork', { snapshot: id, name: 'm1-fork' });
          assert.ok(!forked.isError, forked.text);
          const inFork = await call(client, 'read_file', { env: 'm1-fork', path: 'notes/n.txt' });
          assert.equal(structured<{ content: string }>(inFork).content, 'noted\n');
          assert.match((await call(client, 'pause', { env: 'm1-fork' })).text, /m1-fork paused/);
          assert.match((await call(client, 'resume', { env: 'm1-fork' })).text, /m1-fork running/);
          const rm = await call(client, 'remove', { env: 'm1-fork', discard: true });
          assert.ok(!rm.isError, rm.text);
          assert.deepEqual(
            (await node.json<Array<{ name: string }>>(['ls'])).map((e) => e.name),
            ['m1'],
          );
        })(),
      ));

    it('over streamable HTTP: a token is required, and an agent token reaches its own environments only', () =>
      track(
        (async () => {
          await assert.rejects(http(undefined), 'no token, no session');
          await assert.rejects(http('berth_0123456789abcdef_' + 'x'.repeat(32)));
          const nodeToken = readFileSync(join(node.home, 'token'), 'utf8').trim();
          const asNode = await http(nodeToken);
          assert.deepEqual((await asNode.listTools()).tools.map((t) => t.name).sort(), TOOLS);
          const viaHttp = await call(asNode, 'exec', { env: 'm1', argv: ['echo', 'over http'] });
          assert.equal(structured<{ stdout: string }>(viaHttp).stdout, 'over http\n');

          const a1 = await node.json<{ token: string }>(['token', 'create', '--agent', 'a1']);
          const a2 = await node.json<{ token: string }>(['token', 'create', '--agent', 'a2']);
          const asA1 = await http(a1.token);
          assert.equal(structured<{ name: string }>(await call(asA1, 'describe', { env: 'm1' })).name, 'm1');
          const asA2 = await http(a2.token);
          for (const [tool, args] of [
            ['describe', { env: 'm1' }],
            ['exec', { env: 'm1', argv: ['true'] }],
            ['read_file', { env: 'm1', path: 'notes/n.txt' }],
            ['remove', { env: 'm1' }],
          ] as const) {
            const r = await call(asA2, tool, args);
            assert.equal(r.isError, true, `${tool} as another agent: ${r.text}`);
            assert.equal(structured<{ error: { code: string } }>(r).error.code, 'not_found', r.text);
          }
          // What a2 makes is its own.
          const mine = await call(asA2, 'create', { name: 'm2', repo: repo.path, agent: 'a2' });
          assert.ok(!mine.isError, mine.text);
          assert.equal((await call(asA1, 'describe', { env: 'm2' })).isError, true);
          assert.ok(!(await call(asA2, 'remove', { env: 'm2', discard: true })).isError);

          const ro = await node.json<{ token: string }>(['token', 'create', '--agent', 'a1', '--read-only']);
          const asReader = await http(ro.token);
          assert.equal(structured<{ name: string }>(await call(asReader, 'describe', { env: 'm1' })).name, 'm1');
          const denied = await call(asReader, 'exec', { env: 'm1', argv: ['true'] });
          assert.equal(denied.isError, true);
          assert.equal(structured<{ error: { code: string } }>(denied).error.code, 'forbidden');
        })(),
      ));

    const inspector = inspectorBin();
    it(
      "the MCP Inspector's command line lists the tools and calls one",
      { skip: inspector ? false : 'the MCP Inspector is not installed (devDependency @modelcontextprotocol/inspector)' },
      () =>
        track(
          (async () => {
            // Its catalog and storage go in a home of its own, not the user's.
            const home = mkdtempSync(join(tmpdir(), 'berth-inspector-'));
            try {
              const env = { ...process.env, HOME: home, MCP_CATALOG_PATH: join(home, 'mcp.json') };
              const server = ['-e', `BERTH_HOME=${node.home}`, '-e', 'BERTH_NO_AUTOSTART=1', process.execPath, BERTH, 'mcp'];
              const list = await run(process.execPath, [inspector!, '--cli', ...server, '--method', 'tools/list'], {
                env,
                timeoutMs: 120_000,
              });
              assert.equal(list.code, 0, list.stderr);
              const listed = JSON.parse(list.stdout) as { tools: Array<{ name: string }> };
              assert.deepEqual(listed.tools.map((t) => t.name).sort(), TOOLS);
              const exec = await run(
                process.execPath,
                [
                  inspector!,
                  '--cli',
                  ...server,
                  '--method',
                  'tools/call',
                  '--tool-name',
                  'exec',
                  '--tool-arg',
                  'env=m1',
                  '--tool-arg',
                  'argv=["sh","-c","echo from the inspector"]',
                ],
                { env, timeoutMs: 120_000 },
              );
              assert.equal(exec.code, 0, exec.stderr);
              const r = JSON.parse(exec.stdout) as ToolResult;
              assert.equal(structured<{ stdout: string }>(r).stdout, 'from the inspector\n');
              // And over HTTP, with the node's token in a header.
              const token = readFileSync(join(node.home, 'token'), 'utf8').trim();
              const viaHttp = await run(
                process.execPath,
                [
                  inspector!,
                  '--cli',
                  `http://127.0.0.1:${port}/mcp`,
                  '--header',
                  `Authorization: Bearer ${token}`,
                  '--method',
                  'tools/call',
                  '--tool-name',
                  'describe',
                  '--tool-arg',
                  'env=m1',
                ],
                { env, timeoutMs: 120_000 },
              );
              assert.equal(viaHttp.code, 0, viaHttp.stderr);
              assert.equal(structured<{ name: string }>(JSON.parse(viaHttp.stdout) as ToolResult).name, 'm1');
            } finally {
              rmSync(home, { recursive: true, force: true });
            }
          })(),
        ),
    );
  });
}

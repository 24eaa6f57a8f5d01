// Supervision against a real node: an agent reports its own state (CLI, SDK, MCP), a human
// takes its environment over (exclusive: the agent's commands are refused, with their own code;
// otherwise the agent is told) and hands it back with a note the agent reads. Agent calls use an
// agent's token over TCP; human calls use the node's socket.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  Berth,
  ConflictError,
  ERROR_TABLE,
  ForbiddenError,
  TakenOverError,
  type BerthEvent,
  type DescribeResult,
  type EnvInfo,
} from '../../src/sdk/index.js';
import { failureTracker, makeRepo, NodeFixture, testEngines, type CliResult } from '../helpers/fixture.js';

interface ToolResult {
  isError?: boolean;
  content: Array<{ type: string; text?: string }>;
  structuredContent?: Record<string, unknown>;
}

/** A failed command: its exit code is the error's, and what it says is one line. */
function refused(r: CliResult, code: keyof typeof ERROR_TABLE, pattern: RegExp): void {
  assert.equal(r.code, ERROR_TABLE[code].exit, `exit ${r.code}: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, pattern);
  assert.equal(r.stdout, '');
}

/** The processes named cat in an environment, one pid a line (only shell builtins: no cat of its own). */
const CATS = ['sh', '-c', 'for p in /proc/[0-9]*; do read -r c < $p/comm 2>/dev/null && [ "$c" = cat ] && echo $p; done; true'];

for (const engine of testEngines()) {
  describe(`takeover and hand-back on ${engine}`, () => {
    const tracker = failureTracker();
    const track = tracker.track;
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    let port = 0;
    let human: Berth;
    let agent: Berth;
    let mcp: Client;
    let agentToken = '';

    const mcpCall = async (name: string, args: Record<string, unknown>): Promise<ToolResult & { text: string }> => {
      const r = (await mcp.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as ToolResult;
      return { ...r, text: r.content.map((c) => c.text ?? '').join('\n') };
    };
    /** A raw call with the agent's token: the HTTP status and error code the node answers. */
    const agentHttp = async (
      method: string,
      path: string,
      body?: unknown,
    ): Promise<{ status: number; code?: string; message?: string }> => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, {
        method,
        headers: { authorization: `Bearer ${agentToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        signal: AbortSignal.timeout(30_000),
      });
      const json = (await res.json()) as { error?: { code: string; message: string } };
      return { status: res.status, code: json.error?.code, message: json.error?.message };
    };
    const describeEnv = (name: string): Promise<DescribeResult> => node.json<DescribeResult>(['describe', name]);
    const connectAgents = async (): Promise<void> => {
      agent = await Berth.connect({ url: `http://127.0.0.1:${port}`, token: agentToken });
      mcp = new Client({ name: 'berth-takeover-test', version: '0.0.0' });
      await mcp.connect(
        new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`), {
          requestInit: { headers: { authorization: `Bearer ${agentToken}` } },
        }),
      );
    };

    before(async () => {
      repo = makeRepo();
      node = await NodeFixture.start(engine);
      await node.killDaemon('SIGTERM');
      await node.startDaemonWith(['--listen', '127.0.0.1:0']);
      port = Number(/also listening on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(node.log())?.[1]);
      human = await Berth.connect({ socketPath: join(node.home, 'berth.sock') });
      for (const name of ['t1', 't2']) await node.json(['new', name, '--repo', repo.path, '--agent', 'a1', '--task', `task ${name}`]);
      agentToken = (await node.json<{ token: string }>(['token', 'create', '--agent', 'a1'])).token;
      // The agent's own view of this node, for the CLI: names `ag/ENV` go there with the agent's token.
      const tokenFile = join(node.home, 'agent.token');
      writeFileSync(tokenFile, agentToken + '\n', { mode: 0o600 });
      const added = await node.cli(['node', 'add', 'ag', `tcp://127.0.0.1:${port}`, '--token-file', tokenFile]);
      assert.equal(added.code, 0, added.stderr);
      await connectAgents();
      const ls = await node.json<EnvInfo[]>(['ls']);
      assert.deepEqual(
        ls.map((e) => [e.name, e.agentStatus, e.lease, e.handback]),
        [
          ['t1', null, null, null],
          ['t2', null, null, null],
        ],
      );
    });
    after(async () => {
      await mcp?.close().catch(() => undefined);
      agent?.close();
      human?.close();
      await node?.stop(tracker.failed);
      repo?.cleanup();
    });

    it('an agent reports its status with the CLI, the SDK and MCP; describe shows it and ls puts waiting first', () =>
      track(
        (async () => {
          const viaCli = await node.cli(['status', 'ag/t1', 'working', '--note', 'reading the login code', '--json']);
          assert.equal(viaCli.code, 0, viaCli.stderr);
          const s1 = (JSON.parse(viaCli.stdout) as EnvInfo).agentStatus;
          assert.equal(s1?.state, 'working');
          assert.equal(s1?.note, 'reading the login code');
          assert.ok(!Number.isNaN(Date.parse(s1?.at ?? '')));

          const t2 = await agent.get('t2');
          const blocked = await t2.setStatus('blocked', { note: 'npm registry down' });
          assert.equal(blocked.agentStatus?.state, 'blocked');
          assert.deepEqual(t2.info.agentStatus, blocked.agentStatus);

          const viaMcp = await mcpCall('report_status', { env: 't2', state: 'waiting', note: 'need a decision: keep the old API?' });
          assert.ok(!viaMcp.isError, viaMcp.text);
          assert.equal((viaMcp.structuredContent?.agentStatus as { state: string }).state, 'waiting');

          const d2 = await describeEnv('t2');
          assert.equal(d2.agentStatus?.state, 'waiting');
          assert.equal(d2.agentStatus?.note, 'need a decision: keep the old API?');
          assert.equal((await describeEnv('t1')).agentStatus?.state, 'working');

          // Waiting for a human sorts first, in the JSON and in the table (its STATUS column).
          assert.deepEqual(
            (await node.json<EnvInfo[]>(['ls'])).map((e) => e.name),
            ['t2', 't1'],
          );
          const table = (await node.cli(['ls'])).stdout.trim().split('\n');
          assert.match(table[0]!, /^NAME\s+STATE\s+STATUS\s+COMMIT/);
          assert.match(table[1]!, /^t2\s+running\s+waiting\s/);
          assert.match(table[2]!, /^t1\s+running\s+working\s/);
        })(),
      ));

    it('an exclusive takeover refuses the agent: CLI exit code, HTTP 423, an MCP tool error, a typed SDK error; the human goes on', () =>
      track(
        (async () => {
          // A stream the agent has open when the human takes over ends, with the same refusal.
          const live = (await agent.get('t1')).spawn(['sh', '-c', 'echo ready; exec cat']);
          for await (const c of live.stdout) if (c.toString().includes('ready')) break;
          assert.notEqual((await node.cli(['exec', 't1', '--', ...CATS])).stdout, '', 'the agent runs cat');
          // So does a buffered command (one HTTP request): ended, everything it started killed.
          const buffered = agentHttp('POST', '/v1/envs/t1/exec', { argv: ['sh', '-c', 'echo x > /tmp/sleeper; exec sleep 77'] });
          for (let i = 0; i < 100; i++) {
            if ((await node.cli(['exec', 't1', '--', 'cat', '/tmp/sleeper'])).stdout.includes('x')) break;
            await sleep(50);
          }
          const took = await node.cli(['takeover', 't1', '--exclusive', '--note', 'fixing the import', '--json']);
          await assert.rejects(live.wait(), (e: unknown) => e instanceof TakenOverError && /fixing the import/.test(e.message));
          const ended = await buffered;
          assert.deepEqual([ended.status, ended.code], [423, 'taken_over']);
          const procs = await node.cli(['exec', 't1', '--', 'sh', '-c', 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " "']);
          assert.doesNotMatch(procs.stdout, /sleep 77/, 'the buffered command still runs');
          assert.equal(took.code, 0, took.stderr);
          const lease = (JSON.parse(took.stdout) as EnvInfo).lease;
          assert.ok(lease, took.stdout);
          assert.equal(lease.exclusive, true);
          assert.equal(lease.note, 'fixing the import');
          assert.match(lease.holder, /^[^@\s]+@[^@\s]+$/, 'the holder is the OS user at this host');

          const cli = await node.cli(['exec', 'ag/t1', '--', 'echo', 'agent']);
          refused(cli, 'taken_over', new RegExp(`^berth: t1 is taken over by ${lease.holder} .*fixing the import.*hand-back`));
          assert.notEqual(ERROR_TABLE.taken_over.exit, ERROR_TABLE.conflict.exit);

          const raw = await agentHttp('POST', '/v1/envs/t1/exec', { argv: ['true'] });
          assert.deepEqual([raw.status, raw.code], [423, 'taken_over']);
          for (const [method, path, body] of [
            ['POST', '/v1/envs/t1/batch', { steps: [{ argv: ['true'] }] }],
            ['PUT', '/v1/envs/t1/files?path=x.txt', undefined],
            ['POST', '/v1/envs/t1/pause', undefined],
            ['POST', '/v1/envs/t1/snapshots', {}],
          ] as const) {
            const r = await agentHttp(method, path, body);
            assert.equal(r.status, 423, `${method} ${path}: ${JSON.stringify(r)}`);
          }
          // Reading is not refused, and neither is reporting its own state.
          assert.equal((await agentHttp('GET', '/v1/envs/t1/describe')).status, 200);
          const waiting = await node.cli(['status', 'ag/t1', 'waiting', '--note', 'waiting for the human']);
          assert.equal(waiting.code, 0, waiting.stderr);

          const tool = await mcpCall('exec', { env: 't1', argv: ['true'] });
          assert.equal(tool.isError, true);
          assert.match(tool.text, /^taken_over: t1 is taken over by /);
          assert.match(tool.text, new RegExp(`exclusive human takeover by ${lease.holder} since ${lease.since}: fixing the import`));

          const t1 = await agent.get('t1');
          await assert.rejects(t1.exec(['true']), (e: unknown) => e instanceof TakenOverError && e.code === 'taken_over');
          assert.deepEqual(await t1.lease(), lease);

          // The node's token (the human) is not refused; the agent's cut stream left no process behind.
          const mine = await node.cli(['exec', 't1', '--', 'echo', 'human']);
          assert.deepEqual([mine.code, mine.stdout], [0, 'human\n'], mine.stderr);
          let left = '';
          for (let i = 0; i < 50; i++) {
            left = (await node.cli(['exec', 't1', '--', ...CATS])).stdout;
            if (!left) break;
            await new Promise((r) => setTimeout(r, 100));
          }
          assert.equal(left, '', "the agent's cat ended with its stream");
          assert.equal((await (await human.get('t1')).exec(['true'])).exitCode, 0);
        })(),
      ));

    it('hand-back ends the lease; its note is read through describe, the SDK and MCP, and the agent goes on', () =>
      track(
        (async () => {
          const back = await node.cli(['handback', 't1', '--note', 'fixed the import; carry on from here']);
          assert.equal(back.code, 0, back.stderr);
          assert.match(back.stdout, /^t1 handed back: fixed the import; carry on from here\n$/);

          const d = await describeEnv('t1');
          assert.equal(d.lease, null);
          assert.equal(d.handback?.note, 'fixed the import; carry on from here');
          assert.match(d.handback?.by ?? '', /@/);
          const text = await node.cli(['describe', 't1']);
          assert.match(text.stdout, /^handback {3}by \S+ at \S+: fixed the import; carry on from here$/m);
          assert.match(text.stdout, /^lease {6}-$/m);

          const t1 = await agent.get('t1');
          assert.equal((await t1.lastHandback())?.note, 'fixed the import; carry on from here');
          assert.equal(await t1.lease(), null);
          assert.equal((await t1.exec(['echo', 'again'])).stdout, 'again\n');

          const note = await mcpCall('read_human_note', { env: 't1' });
          assert.ok(!note.isError, note.text);
          assert.match(note.text, /^handed back by \S+ at \S+: fixed the import; carry on from here$/);
          assert.equal((note.structuredContent?.handback as { note: string }).note, 'fixed the import; carry on from here');
          assert.equal(note.structuredContent?.lease, null);
          const ran = await mcpCall('exec', { env: 't1', argv: ['echo', 'going on'] });
          assert.ok(!ran.isError, ran.text);
          assert.doesNotMatch(ran.text, /human takeover/);
        })(),
      ));

    it('without --exclusive the agent is told (describe, SDK, every MCP result) but not stopped', () =>
      track(
        (async () => {
          const t2h = await human.get('t2');
          const info = await t2h.takeover({ note: 'looking at the failing test' });
          assert.equal(info.lease?.exclusive, false);
          assert.match(info.lease?.holder ?? '', /@/);

          const ran = await mcpCall('exec', { env: 't2', argv: ['echo', 'still working'] });
          assert.ok(!ran.isError, ran.text);
          assert.equal((ran.structuredContent as { stdout: string }).stdout, 'still working\n');
          const last = ran.content.at(-1)?.text ?? '';
          assert.equal(last, `human takeover by ${info.lease.holder} since ${info.lease.since}: looking at the failing test`);
          const described = await mcpCall('describe', { env: 't2' });
          assert.match(described.content.at(-1)?.text ?? '', /^human takeover by /);

          const t2 = await agent.get('t2');
          assert.deepEqual(t2.info.lease, info.lease);
          assert.equal((await t2.exec(['true'])).exitCode, 0);
          assert.equal((await node.cli(['exec', 'ag/t2', '--', 'true'])).code, 0);
          assert.match((await node.cli(['ls'])).stdout, /^t2\s+running\s+waiting \[taken over\]\s/m);
          assert.deepEqual((await describeEnv('t2')).lease, info.lease);

          const back = await t2h.handback({ note: 'not the test; go on' });
          assert.equal(back.lease, null);
          assert.equal(back.handback?.note, 'not the test; go on');
        })(),
      ));

    it('events: status, takeover and hand-back, in order, seen by the agent too', () =>
      track(
        (async () => {
          const collect = async (b: Berth, env: string): Promise<BerthEvent[]> => {
            const seen: BerthEvent[] = [];
            for await (const e of b.events({ env, since: 0, signal: AbortSignal.timeout(20_000) })) {
              if (e.type === 'env.status' || e.type === 'env.takeover' || e.type === 'env.handback') seen.push(e);
              if (e.type === 'env.handback') break;
            }
            return seen;
          };
          const summary = (l: BerthEvent[]): string[] =>
            l.map((e) =>
              e.type === 'env.status'
                ? `status ${e.previous ?? '-'}>${e.state}`
                : e.type === 'env.takeover'
                  ? `takeover${e.exclusive ? ' exclusive' : ''}: ${e.note ?? ''}`
                  : e.type === 'env.handback'
                    ? `handback: ${e.note ?? ''}`
                    : e.type,
            );
          const expected = [
            'status ->working',
            'takeover exclusive: fixing the import',
            'status working>waiting',
            'handback: fixed the import; carry on from here',
          ];
          assert.deepEqual(summary(await collect(human, 't1')), expected);
          assert.deepEqual(summary(await collect(agent, 't1')), expected);
          const t2 = await collect(agent, 't2');
          assert.deepEqual(summary(t2), [
            'status ->blocked',
            'status blocked>waiting',
            'takeover: looking at the failing test',
            'handback: not the test; go on',
          ]);
          assert.ok(t2.every((e, i) => i === 0 || e.id > t2[i - 1]!.id));
        })(),
      ));

    it('a lease, a status and a hand-back survive a daemon restart; the refusal too', () =>
      track(
        (async () => {
          await (await human.get('t2')).takeover({ exclusive: true, note: 'across a restart' });
          const before = await describeEnv('t2');
          await mcp.close();
          agent.close();
          human.close();
          await node.killDaemon('SIGTERM');
          await node.startDaemonWith(['--listen', `127.0.0.1:${port}`]);
          human = await Berth.connect({ socketPath: join(node.home, 'berth.sock') });
          await connectAgents();
          const after = await describeEnv('t2');
          assert.deepEqual([after.agentStatus, after.lease, after.handback], [before.agentStatus, before.lease, null]);
          assert.equal((await describeEnv('t1')).handback?.note, 'fixed the import; carry on from here');
          const r = await agentHttp('POST', '/v1/envs/t2/exec', { argv: ['true'] });
          assert.deepEqual([r.status, r.code], [423, 'taken_over']);
          assert.equal((await node.cli(['handback', 't2'])).code, 0);
          assert.equal((await agentHttp('POST', '/v1/envs/t2/exec', { argv: ['true'] })).status, 200);
        })(),
      ));

    it('bad input: each a one-line error with its own exit code, changing nothing', () =>
      track(
        (async () => {
          const before = await describeEnv('t1');
          const unchanged = async (): Promise<void> => {
            const now = await describeEnv('t1');
            assert.deepEqual([now.agentStatus, now.lease, now.handback], [before.agentStatus, before.lease, before.handback]);
          };

          refused(
            await node.cli(['status', 't1', 'sleeping']),
            'invalid_request',
            /^berth: unknown status "sleeping": give one of working, waiting, blocked, done$/,
          );
          await assert.rejects((await agent.get('t1')).setStatus('sleeping' as 'done'), /unknown status/);
          const badTool = await mcpCall('report_status', { env: 't1', state: 'sleeping' });
          assert.equal(badTool.isError, true);
          refused(await node.cli(['status', 't1', 'done', '--note', 'x'.repeat(2001)]), 'invalid_request', /^berth: .*note.*2000/);
          refused(await node.cli(['takeover', 't1', '--note', 'x'.repeat(2001)]), 'invalid_request', /note.*2000/);
          refused(await node.cli(['status', 't1']), 'usage', /^berth: usage: berth status ENV/);
          await unchanged();

          refused(await node.cli(['takeover', 'nosuch']), 'not_found', /^berth: no environment named nosuch/);
          const raw404 = await fetch(`http://127.0.0.1:${port}/v1/envs/nosuch/takeover`, {
            method: 'POST',
            headers: {
              authorization: `Bearer ${readFileSync(join(node.home, 'token'), 'utf8').trim()}`,
              'content-type': 'application/json',
            },
            body: '{}',
          });
          assert.equal(raw404.status, 404);

          refused(await node.cli(['handback', 't1']), 'conflict', /^berth: t1 is not taken over: nothing to hand back/);
          await unchanged();

          // The agent's token cannot take over (nor hand back): 403, and the CLI's exit code for it.
          refused(await node.cli(['takeover', 'ag/t1']), 'forbidden', /^berth: an agent's token cannot use this part of the node API/);
          assert.equal((await agentHttp('POST', '/v1/envs/t1/takeover', {})).status, 403);
          await assert.rejects((await agent.get('t1')).takeover(), ForbiddenError);
          await unchanged();

          // A second takeover of a held environment is a conflict, unless by the same holder.
          const took = await node.json<EnvInfo>(['takeover', 't1']);
          refused(
            await node.cli(['takeover', 't1'], { env: { USER: 'someone-else' } }),
            'conflict',
            /^berth: t1 is already taken over by /,
          );
          await assert.rejects((await human.get('t1')).takeover({ holder: 'another@host' }), ConflictError);
          const again = await node.json<EnvInfo>(['takeover', 't1', '--exclusive']);
          assert.equal(again.lease?.since, took.lease?.since, 'the same holder keeps the lease');
          assert.equal(again.lease?.exclusive, true);
          assert.deepEqual((await describeEnv('t1')).lease, again.lease);
          assert.equal((await node.cli(['handback', 't1'])).code, 0);
        })(),
      ));
  });
}

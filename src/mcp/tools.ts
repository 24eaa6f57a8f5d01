// The MCP server's tools: the SDK's verbs, each with a schema for its arguments and a
// structured result. A failed call is a tool error that says what to do; so are arguments that
// do not fit the schema (the SDK's check, naming the argument, as MCP 2025-11-25 asks, so the
// model can correct itself). A request that is not a tool call at all is a protocol error.
// Either way the session goes on.
import { randomBytes } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { BerthError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import type { Berth } from '../sdk/berth.js';
import type { Environment } from '../sdk/environment.js';
import { AgentState, leaseNotice, NOTE_MAX, type Lease } from '../core/supervision.js';

/** Output longer than this comes back cut, with where the rest is. */
export const OUTPUT_LIMIT = 16 * 1024;
/** Where the whole output of a long command is kept, inside its environment. */
const SPILL_DIR = '/tmp/berth-mcp';

const name = z.string().min(1).max(253).describe('the environment: ENV, or NODE/ENV');
const argv = z.array(z.string()).min(1).describe('the command and its arguments, e.g. ["npm", "test"]');

function ok(summary: string, structured: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text: summary }], structuredContent: structured };
}

/** What an agent on MCP can do about an error, where the node's hint names a command of the CLI. */
function forMcp(e: BerthError): BerthError {
  if (e.code === 'not_found' && /^no environment named /.test(e.message))
    return new BerthError(e.code, e.message, 'make it with the create tool (or check the name create gave back)');
  return e;
}

function failed(err: unknown): CallToolResult {
  const e = forMcp(err instanceof BerthError ? err : new BerthError('internal', err instanceof Error ? err.message : String(err)));
  return {
    isError: true,
    content: [{ type: 'text', text: `${e.code}: ${e.oneLine()}` }],
    structuredContent: { error: e.toWire() },
  };
}

/**
 * The environments a session has named, by name: a command costs one round trip, not two (an
 * Environment is its name and its node's client, nothing that goes stale). Kept per token.
 */
export type EnvCache = Map<string, Environment>;
const ENV_CACHE_MAX = 256;

/** The first byte at or after `i` that starts a UTF-8 character (continuation bytes are 10xxxxxx). */
function charStart(data: Buffer, i: number): number {
  while (i < data.length && (data[i]! & 0xc0) === 0x80) i++;
  return i;
}

/** Cuts a long output, keeping its end (where errors usually are), from a whole character on. */
function cut(text: string): { text: string; truncated: boolean; bytes: number } {
  const bytes = Buffer.byteLength(text);
  if (bytes <= OUTPUT_LIMIT) return { text, truncated: false, bytes };
  const data = Buffer.from(text);
  return { text: data.subarray(charStart(data, bytes - OUTPUT_LIMIT)).toString('utf8'), truncated: true, bytes };
}

/** A tool's result and the lease its own call learned (undefined: it did not). */
class WithLease {
  constructor(
    readonly result: CallToolResult,
    readonly lease: Lease | null | undefined,
  ) {}
}

export function createMcpServer(berth: Berth, envs: EnvCache = new Map()): McpServer {
  const envOf = async (name: string): Promise<Environment> => {
    const known = envs.get(name);
    if (known) return known;
    const env = await berth.get(name);
    if (envs.size >= ENV_CACHE_MAX) envs.delete(envs.keys().next().value!);
    envs.set(name, env);
    return env;
  };
  /** A human's lease on the environment now (asked alongside the tool's own call, so it costs no wait). */
  const leaseOn = async (name: string): Promise<Lease | null> => {
    const known = envs.get(name);
    return known ? (await known.refresh()).lease : (await envOf(name)).info.lease;
  };
  /**
   * A tool's body, its errors made tool errors; an environment that is gone is forgotten. A
   * result for an environment a human has taken over carries a notice saying so. A body that
   * learns the lease itself (exec: the node's answer carries it) saves the call that asks.
   */
  type Body<A> = (args: A) => Promise<CallToolResult | WithLease>;
  const guard =
    <A>(fn: Body<A>, o: { ownLease?: boolean } = {}): ((args: A) => Promise<CallToolResult>) =>
    async (args) => {
      const env = (args as { env?: unknown }).env;
      const ask = (): Promise<Lease | null> => (typeof env === 'string' ? leaseOn(env).catch(() => null) : Promise.resolve(null));
      let lease = o.ownLease ? undefined : ask();
      let result: CallToolResult;
      try {
        const r = await fn(args);
        if (r instanceof WithLease) {
          result = r.result;
          if (r.lease !== undefined) lease = Promise.resolve(r.lease);
        } else result = r;
      } catch (err) {
        if (err instanceof BerthError && err.code === 'not_found' && typeof env === 'string') envs.delete(env);
        result = failed(err);
      }
      const held = await (lease ?? ask());
      return held ? { ...result, content: [...result.content, { type: 'text', text: leaseNotice(held) }] } : result;
    };

  const server = new McpServer(
    { name: 'berth', version: VERSION },
    {
      instructions:
        'berth gives you isolated environments (a git checkout at /workspace, a pinned toolchain, limits on). Create one, run commands in it with exec, check your work with verify, and snapshot or fork it to try things.',
    },
  );

  server.registerTool(
    'create',
    {
      description: 'Create an environment from a repository and ref (claimed at once from a warm pool when one matches).',
      inputSchema: {
        name: z.string().min(1).max(63).describe('a name: lowercase letters, digits and dashes'),
        repo: z.string().min(1).max(4096).describe('a git URL, or a path on the node'),
        ref: z.string().max(256).optional().describe('branch, tag or commit (default HEAD)'),
        agent: z.string().max(256).optional(),
        task: z.string().max(256).optional(),
        network: z.enum(['egress', 'none']).optional(),
        egress: z.string().max(8192).optional().describe('egress policy: allow:npm,github,api.example.com:443 | learn | all'),
        budget: z.string().max(256).optional().describe('budgets, e.g. egress=500MB,cpu=2h: over one, the environment is paused'),
        secrets: z
          .array(z.string().min(1).max(63))
          .max(32)
          .optional()
          .describe(
            "secrets the node's operator set, by name: the environment gets a placeholder the node swaps for the value on the wire",
          ),
      },
    },
    guard(async (a) => {
      const env = await berth.create(a);
      return ok(`created ${env.name} at ${env.info.commit.slice(0, 12)}${env.info.origin.pool ? ' (from a warm pool)' : ''}`, {
        env: env.info,
      });
    }),
  );

  server.registerTool(
    'exec',
    {
      description: `Run a command in an environment and wait for it. Output over ${OUTPUT_LIMIT / 1024} KiB is cut to its end; the whole of it is kept in a file inside the environment (read it with read_file).`,
      inputSchema: {
        env: name,
        argv,
        cwd: z.string().max(4096).optional(),
        timeoutMs: z.number().int().positive().max(86_400_000).optional().describe('end the command after this long (exit code 124)'),
        stdin: z.string().optional(),
      },
    },
    guard(
      async (a) => {
        const env = await envOf(a.env);
        const r = await env.exec(a.argv, { cwd: a.cwd, timeoutMs: a.timeoutMs, stdin: a.stdin });
        const out = cut(r.stdout);
        const err = cut(r.stderr);
        const spilled: Record<string, string> = {};
        if (out.truncated || err.truncated) {
          const id = randomBytes(4).toString('hex');
          if (out.truncated) await env.files.write((spilled.stdout = `${SPILL_DIR}/${id}.stdout`), r.stdout);
          if (err.truncated) await env.files.write((spilled.stderr = `${SPILL_DIR}/${id}.stderr`), r.stderr);
        }
        const structured = {
          exitCode: r.exitCode,
          timedOut: r.timedOut,
          stdout: out.text,
          stderr: err.text,
          truncated: out.truncated || err.truncated,
          ...(Object.keys(spilled).length ? { fullOutput: spilled, bytes: { stdout: out.bytes, stderr: err.bytes } } : {}),
          timing: r.timing,
        };
        const note = Object.keys(spilled).length ? `\n[output cut; the whole of it: ${Object.values(spilled).join(', ')}]` : '';
        const result = ok(
          `exit ${r.exitCode}${r.timedOut ? ' (timed out)' : ''}\n${out.text}${err.text ? `\n[stderr]\n${err.text}` : ''}${note}`,
          structured,
        );
        return new WithLease(result, r.lease ?? null); // the node says so only while one is held
      },
      { ownLease: true },
    ),
  );

  server.registerTool(
    'batch',
    {
      description: 'Run many commands in one round trip, in order; stops at the first failure unless stopOnError is false.',
      inputSchema: {
        env: name,
        steps: z
          .array(z.object({ argv, cwd: z.string().optional(), timeoutMs: z.number().int().positive().optional() }))
          .min(1)
          .max(1000),
        stopOnError: z.boolean().optional(),
      },
    },
    guard(async (a) => {
      const r = await (await envOf(a.env)).batch(a.steps, { stopOnError: a.stopOnError });
      const steps = r.steps.map((s) => ({ argv: s.argv, exitCode: s.exitCode, stdout: cut(s.stdout).text, stderr: cut(s.stderr).text }));
      return ok(`${r.completed} of ${a.steps.length} steps ran; exit ${r.exitCode}`, {
        exitCode: r.exitCode,
        completed: r.completed,
        steps,
      });
    }),
  );

  server.registerTool(
    'read_file',
    {
      description:
        'Read a file inside an environment (paths are relative to /workspace unless absolute). offset and length page through a long one.',
      inputSchema: {
        env: name,
        path: z.string().min(1).max(4096),
        offset: z.number().int().nonnegative().optional(),
        length: z
          .number()
          .int()
          .positive()
          .max(1 << 20)
          .optional(),
      },
    },
    guard(async (a) => {
      const env = await envOf(a.env);
      const data = await env.files.readBytes(a.path);
      const start = a.offset ?? 0;
      // A page ends before a character that does not fit whole (unless that leaves it empty).
      const want = Math.min(data.length, start + (a.length ?? OUTPUT_LIMIT * 4));
      let end = want;
      while (end > start && end < data.length && (data[end]! & 0xc0) === 0x80) end--;
      const slice = data.subarray(start, end > start ? end : want);
      const more = start + slice.length < data.length;
      return ok(
        slice.toString('utf8') +
          (more ? `\n[${data.length - start - slice.length} more bytes: read again with offset ${start + slice.length}]` : ''),
        {
          path: a.path,
          size: data.length,
          offset: start,
          content: slice.toString('utf8'),
          more,
        },
      );
    }),
  );

  server.registerTool(
    'write_file',
    {
      description: 'Write a file inside an environment (its directories are made).',
      inputSchema: { env: name, path: z.string().min(1).max(4096), content: z.string() },
    },
    guard(async (a) => {
      const env = await envOf(a.env);
      const r = await env.files.write(a.path, a.content);
      return ok(`wrote ${r.bytes} bytes to ${r.path}`, r);
    }),
  );

  server.registerTool(
    'list_files',
    { description: 'List a directory inside an environment.', inputSchema: { env: name, path: z.string().min(1).max(4096).optional() } },
    guard(async (a) => {
      const env = await envOf(a.env);
      const entries = await env.files.list(a.path ?? '/workspace');
      return ok(entries.map((e) => `${e.type === 'dir' ? 'd' : e.type === 'symlink' ? 'l' : '-'} ${e.size}\t${e.name}`).join('\n'), {
        entries,
      });
    }),
  );

  server.registerTool(
    'service_start',
    {
      description: 'Start a long-running service (declared in berth.json, or given by cmd) and wait until its readiness check passes.',
      inputSchema: {
        env: name,
        service: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/),
        cmd: argv.optional(),
        ready: z.string().max(4096).optional().describe('tcp:PORT, http:PORT/PATH or cmd:COMMAND'),
      },
    },
    guard(async (a) => {
      const env = await envOf(a.env);
      const s = await env.services.start(a.service, { cmd: a.cmd, ready: a.ready });
      return ok(`${s.name} ${s.state}${s.readyMs !== null ? ` in ${s.readyMs} ms` : ''}${s.reason ? `: ${s.reason}` : ''}`, { service: s });
    }),
  );

  server.registerTool(
    'service_stop',
    { description: 'Stop a service.', inputSchema: { env: name, service: z.string().min(1).max(63) } },
    guard(async (a) => {
      const s = await (await envOf(a.env)).services.stop(a.service);
      return ok(`${s.name} ${s.state}`, { service: s });
    }),
  );

  server.registerTool(
    'service_logs',
    {
      description: "The end of a service's log.",
      inputSchema: {
        env: name,
        service: z.string().min(1).max(63),
        tailBytes: z
          .number()
          .int()
          .positive()
          .max(1 << 20)
          .optional(),
      },
    },
    guard(async (a) => {
      const text = await (await envOf(a.env)).services.logs(a.service, { tailBytes: a.tailBytes ?? OUTPUT_LIMIT });
      const c = cut(text);
      return ok(c.text, { service: a.service, log: c.text, truncated: c.truncated });
    }),
  );

  server.registerTool(
    'verify',
    {
      description:
        'Evidence that things work: every service re-checked, HTTP probes (status and body), screenshots, a test command with parsed results.',
      inputSchema: {
        env: name,
        http: z.array(z.string().max(4096)).max(20).optional().describe('URLs inside the environment, e.g. http://localhost:3000/'),
        screenshot: z.array(z.string().max(4096)).max(5).optional(),
        test: argv.optional(),
      },
    },
    guard(async (a) => {
      const r = await (await envOf(a.env)).verify({ http: a.http, screenshot: a.screenshot, test: a.test });
      return ok(r.verified ? 'verified' : `not verified:\n${r.failures.join('\n')}`, r);
    }),
  );

  server.registerTool(
    'describe',
    {
      description: 'Everything an environment is: OS, tools and versions, processes, ports, services, git state, identity, limits.',
      inputSchema: { env: name },
    },
    guard(async (a) => {
      const d = await (await envOf(a.env)).describe();
      return ok(`${d.name}: ${d.state}, ${d.os?.name ?? ''}, commit ${d.commit.slice(0, 12)}`, d);
    }),
  );

  server.registerTool(
    'egress',
    {
      description:
        "An environment's egress: its policy, budget left, recent denials, every destination it reached (bytes, first and last seen) and the least-privilege allow list. With `set`, a new policy (the node's token only).",
      inputSchema: { env: name, set: z.string().max(8192).optional().describe('a new policy, e.g. allow:npm') },
    },
    guard(async (a) => {
      const env = await envOf(a.env);
      if (a.set !== undefined) await env.setEgress(a.set);
      const r = await env.egress();
      const denied = r.recentDenials.length ? `, ${r.recentDenials.length} recent denial(s)` : '';
      return ok(
        `${r.env}: egress ${r.policy}, ${r.destinations.length} destination(s)${denied}; suggested ${r.suggested ?? '(nothing reached yet)'}`,
        r,
      );
    }),
  );

  server.registerTool(
    'report_status',
    {
      description:
        'Tell the human supervising you what you are doing: working, waiting (for a human: a decision, a review), blocked, or done, with a short note. Those waiting are shown first.',
      inputSchema: { env: name, state: AgentState, note: z.string().max(NOTE_MAX).optional() },
    },
    guard(async (a) => {
      const info = await (await envOf(a.env)).setStatus(a.state, { note: a.note });
      return ok(`${info.name}: status ${a.state}${a.note ? `: ${a.note}` : ''}`, { env: info.name, agentStatus: info.agentStatus });
    }),
  );

  server.registerTool(
    'read_human_note',
    {
      description:
        'The note the human left when handing an environment back (after a takeover), and whether a human holds it now. Read it before carrying on after a takeover.',
      inputSchema: { env: name },
    },
    guard(async (a) => {
      const info = await (await envOf(a.env)).refresh();
      const h = info.handback;
      const text = h ? `handed back by ${h.by} at ${h.at}: ${h.note ?? '(no note)'}` : 'no hand-back note';
      return ok(text, { env: info.name, handback: h, lease: info.lease, agentStatus: info.agentStatus });
    }),
  );

  server.registerTool(
    'snapshot',
    {
      description: "Snapshot an environment's work (its changes from the commit, untracked files, named artifacts).",
      inputSchema: { env: name, artifacts: z.array(z.string()).max(100).optional() },
    },
    guard(async (a) => {
      const s = await (await envOf(a.env)).snapshot({ artifacts: a.artifacts });
      return ok(`snapshot ${s.id} (${s.files} files)`, { snapshot: s });
    }),
  );

  server.registerTool(
    'fork',
    {
      description:
        'New environments from a snapshot, each with the whole workspace (node_modules and build output too). Give `name`, or `names` for several at once (all are made, or none).',
      inputSchema: {
        snapshot: z.string().min(4).max(80),
        name: z.string().min(1).max(63).optional(),
        names: z.array(z.string().min(1).max(63)).min(1).max(20).optional(),
      },
    },
    guard(async (a) => {
      const names = [...(a.name ? [a.name] : []), ...(a.names ?? [])];
      if (names.length === 0) throw new BerthError('usage', 'give name or names');
      const envs = await berth.forkMany(a.snapshot, names);
      if (envs.length === 1) return ok(`forked ${envs[0]!.name} from ${a.snapshot}`, { env: envs[0]!.info });
      return ok(`forked ${envs.map((e) => e.name).join(', ')} from ${a.snapshot}`, { envs: envs.map((e) => e.info) });
    }),
  );

  for (const [tool, verb, description] of [
    ['pause', 'pause', 'Freeze an environment (memory kept; resume is instant).'],
    ['resume', 'resume', 'Thaw a paused environment.'],
  ] as const) {
    server.registerTool(
      tool,
      { description, inputSchema: { env: name } },
      guard(async (a) => {
        const env = await envOf(a.env);
        const info = verb === 'pause' ? await env.pause() : await env.resume();
        return ok(`${info.name} ${info.state}`, { env: info });
      }),
    );
  }

  server.registerTool(
    'remove',
    {
      description: 'Remove an environment (its work is snapshotted first unless discard is true).',
      inputSchema: { env: name, discard: z.boolean().optional() },
    },
    guard(async (a) => {
      const r = await (await envOf(a.env)).remove({ discard: a.discard });
      envs.delete(a.env);
      return ok(`removed ${a.env}${r.snapshot ? `; its work is in ${r.snapshot}` : ''}`, { removed: a.env, snapshot: r.snapshot });
    }),
  );

  return server;
}

#!/usr/bin/env node
// berth's command line. Every command takes --json; errors are one line with a stable exit code.
import { asBerthError, BerthError } from '../core/errors.js';
import { VERSION } from '../core/version.js';

const HELP = `berth ${VERSION}: isolated, reproducible environments for coding agents

  berth up [--listen HOST:PORT]        start a node in the foreground with a demo environment
  berth daemon [--listen HOST:PORT]    run a node in the foreground
  berth toolchain build [--force]      build the default toolchain image -> digest
  berth new NAME --repo PATH|URL [--ref REF] [--toolchain DIGEST] [--agent A] [--task T]
                 [--network egress|none] [--memory MB] [--cpus N] [--pids N]
  berth ls                             environments on this node
  berth exec NAME [--timeout S] [--cwd DIR] [--env K=V] -- CMD...
  berth describe NAME                  what the environment is, and its identity
  berth rm NAME...                     remove environments
  berth service start ENV SVC [--ready tcp:PORT|http:PORT/PATH|cmd:CMD] [--restart POLICY] [-- CMD...]
  berth service stop|ls ENV [SVC]      services and their health
  berth logs ENV SVC [-f] [--tail BYTES]
  berth verify ENV [--http URL] [--screenshot URL] [--test CMD [--junit PATH]]
  berth shell ENV [--watch SESSION | --list] [-- CMD...]   an interactive terminal
  berth batch ENV [--keep-going] < steps.sh                 many commands, one round trip
  berth pause NAME | berth resume NAME  freeze and thaw (memory kept, no cold start)
  berth id NAME [--snap]               identity: repo, commit, toolchain digest, snapshot, cache keys
  berth snap NAME [--artifact PATH]... snapshot: the workspace diff plus artifacts -> id
  berth fork SNAPSHOT NAME [NAME...]   new environments from a snapshot, each with the whole workspace
  berth restore NAME SNAPSHOT          put an environment's workspace back to a snapshot
  berth snapshots | berth gc           list snapshots; drop blobs nothing references
  berth pool set [TOOLCHAIN] --repo PATH --ref REF --size N | berth pool ls
  berth new ... [--identity ID|FILE] [--snapshot ID] [--ttl 2h] [--idle-ttl 30m] [--no-pool]
  berth rm NAME [--discard]            snapshots first unless --discard
  berth new ... --egress allow:npm,github,api.example.com:443|learn|all [--budget egress=500MB,cpu=2h]
  berth egress NAME [--json] [--suggest] [--set POLICY]   destinations, the least-privilege list, a new policy
  berth resume NAME --budget egress=1GB  raise a budget and resume
  berth node add NAME tcp://HOST:PORT --token-file F [--ca F] [--registry R] | node ls | node info | node rm NAME
  berth ls --all                       every environment on every node (names are ENV or NODE/ENV)
  berth enter NODE/ENV [--attach] [--no-shell]   pull an agent's context here, or a terminal there
  berth push NAME                      send an entered environment's changes back
  berth forward [NODE/]ENV PORT [--local PORT]
  berth ssh-config                     Host entries for "ssh NAME.NODE.berth"
  berth toolchain push|pull [DIGEST] --registry HOST:PORT [--via engine|berth]
  berth token create --agent A [--env E]... [--read-only] [--ttl 8h] | token ls | token rm ID
  berth secret set NAME --value-file F|--value-stdin --host HOST[:PORT] [--header 'Authorization: Bearer {}'] [--env-var VAR]
  berth secret ls | berth secret rm NAME   the environment holds a placeholder; the node swaps in the value on the wire
  berth new ... --secret NAME          (repeatable) the environment gets NAME's variable, holding a placeholder
  berth events [--env E] [--since ID] [--json]   the event stream (resumes from an id)
  berth status ENV working|waiting|blocked|done [--note TEXT]   an agent reports its own state
  berth takeover ENV [--exclusive] [--note TEXT]   a human takes the environment (exclusive: the agent waits)
  berth handback ENV [--note TEXT]     end the takeover, leaving a note the agent reads
  berth mcp                            an MCP server on stdio (the daemon serves it at /mcp too)
  berth dashboard [--open] [--json]    a one-time login link to the node's web dashboard
  berth daemon|up [--dashboard 127.0.0.1:PORT|off]   where the dashboard listens (default 127.0.0.1:7781)

Commands that return data take --json (one JSON document on stdout). BERTH_HOME (default ~/.berth) holds the node's state;
BERTH_ENGINE (podman, docker, or unix:///path) picks the engine.
`;

type Command = (argv: string[]) => Promise<number>;

// Each command's module is loaded when that command runs, so `berth ls` does not load the SSH
// server, the engine client or the image builder that other commands need.
const env = (): Promise<typeof import('./commands/env.js')> => import('./commands/env.js');
const runtime = (): Promise<typeof import('./commands/runtime.js')> => import('./commands/runtime.js');
const remote = (): Promise<typeof import('./commands/remote.js')> => import('./commands/remote.js');
const ssh = (): Promise<typeof import('./commands/ssh.js')> => import('./commands/ssh.js');
const switching = (): Promise<typeof import('./commands/switching.js')> => import('./commands/switching.js');
const up = (): Promise<typeof import('./commands/up.js')> => import('./commands/up.js');
const toolchain = (): Promise<typeof import('./commands/toolchain.js')> => import('./commands/toolchain.js');
const supervise = (): Promise<typeof import('./commands/supervise.js')> => import('./commands/supervise.js');
const tokens = (): Promise<typeof import('./commands/tokens.js')> => import('./commands/tokens.js');

const COMMANDS: Record<string, () => Promise<Command>> = {
  up: async () => (await up()).cmdUp,
  daemon: async () => (await up()).cmdDaemon,
  toolchain: async () => (await toolchain()).cmdToolchain,
  new: async () => (await env()).cmdNew,
  ls: async () => (await env()).cmdLs,
  rm: async () => (await env()).cmdRm,
  exec: async () => (await env()).cmdExec,
  describe: async () => (await env()).cmdDescribe,
  service: async () => (await runtime()).cmdService,
  logs: async () => (await runtime()).cmdLogs,
  verify: async () => (await runtime()).cmdVerify,
  shell: async () => (await runtime()).cmdShell,
  batch: async () => (await runtime()).cmdBatch,
  pause: async () => (await switching()).cmdPause,
  resume: async () => (await switching()).cmdResume,
  id: async () => (await switching()).cmdId,
  snap: async () => (await switching()).cmdSnap,
  fork: async () => (await switching()).cmdFork,
  restore: async () => (await switching()).cmdRestore,
  snapshots: async () => (await switching()).cmdSnapshots,
  gc: async () => (await switching()).cmdGc,
  pool: async () => (await switching()).cmdPool,
  node: async () => (await remote()).cmdNode,
  enter: async () => (await remote()).cmdEnter,
  push: async () => (await remote()).cmdPush,
  forward: async () => (await remote()).cmdForward,
  'git-upload-pack': async () => (await remote()).cmdGitUploadPack,
  'ssh-config': async () => (await ssh()).cmdSshConfig,
  'ssh-proxy': async () => (await ssh()).cmdSshProxy,
  token: async () => (await tokens()).cmdToken,
  events: async () => (await tokens()).cmdEvents,
  egress: async () => (await import('./commands/egress.js')).cmdEgress,
  secret: async () => (await import('./commands/secrets.js')).cmdSecret,
  mcp: async () => (await import('./commands/mcp.js')).cmdMcp,
  status: async () => (await supervise()).cmdStatus,
  takeover: async () => (await supervise()).cmdTakeover,
  handback: async () => (await supervise()).cmdHandback,
  dashboard: async () => (await import('./commands/dashboard.js')).cmdDashboard,
};

const LATER = new Set(['drift', 'ci']);

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(HELP);
    return cmd ? 0 : 2;
  }
  if (cmd === 'version' || cmd === '--version') {
    process.stdout.write(VERSION + '\n');
    return 0;
  }
  const load = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!load) {
    if (LATER.has(cmd)) throw new BerthError('usage', `\`berth ${cmd}\` is not available in this version yet`);
    throw new BerthError('usage', `unknown command ${JSON.stringify(cmd)}`, 'see `berth help`');
  }
  const run = await load();
  return run(rest);
}

// BERTH_TRACE=1: where a command's time went (the native exec client traces the same way).
if (process.env.BERTH_TRACE === '1') {
  const started = performance.now();
  process.once('exit', () => {
    const done = performance.now();
    process.stderr.write(
      `berth: trace: node CLI, pid ${process.pid}: node started and loaded main in ${started.toFixed(1)} ms, the command took ${(done - started).toFixed(1)} ms\n`,
    );
  });
}

// A reader that went away (`berth logs -f | head -1`) ends the command quietly, as it would
// any Unix tool: there is no one left to tell.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = asBerthError(err);
    process.stderr.write(`berth: ${e.oneLine()}\n`);
    if (e.code === 'internal' && process.env.BERTH_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = e.exitCode;
  },
);

#!/usr/bin/env node
// berth's command line. Every command takes --json; errors are one line with a stable exit code.
import { asBerthError, BerthError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import { cmdDescribe, cmdExec, cmdLs, cmdNew, cmdRm } from './commands/env.js';
import { cmdToolchain } from './commands/toolchain.js';
import { cmdBatch, cmdLogs, cmdService, cmdShell, cmdVerify } from './commands/runtime.js';
import { cmdEnter, cmdForward, cmdGitUploadPack, cmdNode, cmdPush } from './commands/remote.js';
import { cmdSshConfig, cmdSshProxy } from './commands/ssh.js';
import { cmdFork, cmdGc, cmdId, cmdPause, cmdPool, cmdRestore, cmdResume, cmdSnap, cmdSnapshots } from './commands/switching.js';
import { cmdDaemon, cmdUp } from './commands/up.js';

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
  berth fork SNAPSHOT NAME             a new environment from a snapshot
  berth restore NAME SNAPSHOT          put an environment's workspace back to a snapshot
  berth snapshots | berth gc           list snapshots; drop blobs nothing references
  berth pool set [TOOLCHAIN] --repo PATH --ref REF --size N | berth pool ls
  berth new ... [--identity ID|FILE] [--snapshot ID] [--ttl 2h] [--idle-ttl 30m] [--no-pool]
  berth rm NAME [--discard]            snapshots first unless --discard
  berth node add NAME tcp://HOST:PORT --token-file F [--ca F] [--registry R] | node ls | node rm NAME
  berth ls --all                       every environment on every node (names are ENV or NODE/ENV)
  berth enter NODE/ENV [--attach] [--no-shell]   pull an agent's context here, or a terminal there
  berth push NAME                      send an entered environment's changes back
  berth forward [NODE/]ENV PORT [--local PORT]
  berth ssh-config                     Host entries for "ssh NAME.NODE.berth"
  berth toolchain push|pull [DIGEST] --registry HOST:PORT [--via engine|berth]

Commands that return data take --json (one JSON document on stdout). BERTH_HOME (default ~/.berth) holds the node's state;
BERTH_ENGINE (podman, docker, or unix:///path) picks the engine.
`;

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  up: cmdUp,
  daemon: cmdDaemon,
  toolchain: cmdToolchain,
  new: cmdNew,
  ls: cmdLs,
  rm: cmdRm,
  exec: cmdExec,
  describe: cmdDescribe,
  service: cmdService,
  logs: cmdLogs,
  verify: cmdVerify,
  shell: cmdShell,
  batch: cmdBatch,
  pause: cmdPause,
  resume: cmdResume,
  id: cmdId,
  snap: cmdSnap,
  fork: cmdFork,
  restore: cmdRestore,
  snapshots: cmdSnapshots,
  gc: cmdGc,
  pool: cmdPool,
  node: cmdNode,
  enter: cmdEnter,
  push: cmdPush,
  forward: cmdForward,
  'git-upload-pack': cmdGitUploadPack,
  'ssh-config': cmdSshConfig,
  'ssh-proxy': cmdSshProxy,
};

const LATER = new Set(['drift', 'ci', 'mcp']);

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
  const run = COMMANDS[cmd];
  if (!run) {
    if (LATER.has(cmd)) throw new BerthError('usage', `\`berth ${cmd}\` is not available in this version yet`);
    throw new BerthError('usage', `unknown command ${JSON.stringify(cmd)}`, 'see `berth help`');
  }
  return run(rest);
}

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

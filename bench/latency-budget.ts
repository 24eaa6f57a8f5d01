// The latency budget of issue 3, measured side by side in one run on this machine:
//
//  1. A 50-command agent task through the delaying TCP proxy (100 ms round trip by default),
//     three ways: one OpenSSH connection per command to a real sshd in a berth environment
//     (the death spiral), berth sequentially over one keep-alive connection, and berth batched
//     (one request). The same commands, in the environment's /workspace, every way.
//  2. `describe` on a running environment with one service: the first (cold) call, then p50/p90.
//  3. A trivial HTTP service: from asking berth to start it to its first verified HTTP 200.
//
//   node dist/bench/latency-budget.js [--runs 3] [--rtt-ms 100] [--describe-n 30] [--service-n 10]
//        [--engine podman] [--install-timeout-s 180] [--max-seconds 270]
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { NodeClient } from '../src/client/client.js';
import type { ExecResult, ExecTiming, ServiceInfo } from '../src/core/api.js';
import { startDelayProxy } from '../test/helpers/delay-proxy.js';
import {
  BerthNode,
  berthRevision,
  engineList,
  errorText,
  failedRow,
  log,
  machine,
  makeRepo,
  mustRun,
  onCleanup,
  p50,
  parseOptions,
  ratio,
  remainingMs,
  run,
  runBench,
  series,
  setDeadline,
  stats,
  tempDir,
  toolchainDigest,
  type Row,
} from './lib.js';

const opts = parseOptions({
  runs: 3,
  'rtt-ms': 100,
  'describe-n': 30,
  'service-n': 10,
  engine: 'podman',
  'install-timeout-s': 180,
  'max-seconds': 270,
});
const ENV = 'bench';
const SSH_PORT = 2222;
const SSH_USER = 'bench';
const WORKSPACE = '/workspace';
const PER_COMMAND_TIMEOUT_MS = 30_000;

const TARGETS = {
  berth_sequential_s: 5.5,
  berth_batched_s: 0.5,
  describe_p50_ms: 200,
  service_ready_to_verified_200_ms: 1500,
};

/**
 * A realistic agent task: look around, read, search, edit, run, check, and clean up after
 * itself, so every run starts from the same workspace. Some commands fail on purpose (a file
 * that is not there), as an agent's probes do; every way must give the same exit codes.
 */
const TASK: string[] = [
  'git status --porcelain',
  'git log --oneline -5',
  'git branch --show-current',
  'ls -la',
  'cat package.json',
  'ls src',
  'cat src/index.js',
  'wc -l src/index.js package.json',
  'grep -rn "module.exports" src',
  'test -f package.json',
  'test -f tsconfig.json',
  'node --version',
  'node -e "console.log(require(\'./package.json\').name)"',
  'git diff --stat',
  'mkdir -p .agent',
  'echo "plan: add an add() helper and a test" > .agent/plan.md',
  'cat .agent/plan.md',
  "printf 'module.exports = (a, b) => a + b;\\n' > src/add.js",
  'cat src/add.js',
  'node -e "console.log(require(\'./src/add.js\')(2, 3))"',
  'git status --porcelain',
  'grep -rn "add" src',
  'find . -path ./.git -prune -o -type f -print',
  'wc -l src/*.js',
  'head -n 5 README.md',
  'sed -n 1,3p package.json',
  'echo "// TODO: edge cases" >> src/add.js',
  'tail -n 1 src/add.js',
  'git diff --stat',
  'node -e "const add = require(\'./src/add.js\'); if (add(1, 1) !== 2) process.exit(1)"',
  'ls test',
  'cat test/index.test.js',
  'node test/index.test.js',
  'grep -c "" src/index.js',
  'test -d node_modules',
  'uname -m',
  'date +%s > .agent/stamp',
  'cat .agent/stamp',
  'git diff --name-only',
  'git ls-files',
  'du -sh src',
  'pwd',
  'command -v git node',
  'sort package.json | head -n 3',
  'diff package.json package.json',
  'git rev-parse HEAD',
  'git stash list',
  'rm -f src/add.js',
  'rm -rf .agent',
  'git status --porcelain',
];

const results: Row[] = [];
const report: Record<string, unknown> = {
  benchmark: 'latency-budget',
  task: { commands: TASK.length, list: TASK, cwd: WORKSPACE },
};

// ---- helpers -----------------------------------------------------------------------------

const text = (b64: string): string => Buffer.from(b64, 'base64').toString('utf8');
const tail = (s: string, lines = 8): string => s.trim().split('\n').slice(-lines).join('\n');
const seconds = (ms: number | null): number | null => (ms === null ? null : Math.round(ms) / 1000);

/** An exec that must succeed; the error quotes the command's own output. */
async function mustExec(client: NodeClient, argv: string[], timeoutMs = 60_000): Promise<string> {
  const r = await client.exec(ENV, { argv, timeoutMs }, AbortSignal.timeout(timeoutMs + 10_000));
  if (r.exitCode !== 0) {
    throw new Error(
      `\`${argv.join(' ')}\` exited ${r.exitCode}${r.timedOut ? ' (timed out)' : ''}: ${tail(text(r.stderr) || text(r.stdout))}`,
    );
  }
  return text(r.stdout);
}

/** The task's repository: makeRepo's package.json and src/index.js, plus a README and a test. */
function taskRepo(): string {
  const repo = makeRepo();
  writeFileSync(join(repo, 'README.md'), '# app\n\nA small app for the latency benchmark.\n\nRun `node test/index.test.js`.\n');
  mkdirSync(join(repo, 'test'));
  writeFileSync(
    join(repo, 'test', 'index.test.js'),
    "const assert = require('node:assert');\nassert.strictEqual(require('../src/index.js'), 42);\nconsole.log('ok');\n",
  );
  const g = (...args: string[]): void => {
    execFileSync('git', ['-C', repo, '-c', 'user.name=bench', '-c', 'user.email=bench@example.invalid', ...args], { stdio: 'ignore' });
  };
  g('add', '-A');
  g('commit', '-q', '-m', 'readme and a test');
  return repo;
}

/** A plain TCP relay that counts the connections made through it (no delay of its own). */
async function countingRelay(target: { host: string; port: number }): Promise<{ port: number; connections: () => number }> {
  let count = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    count++;
    client.setNoDelay(true);
    const upstream = connect(target.port, target.host);
    upstream.setNoDelay(true);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  onCleanup(`counting relay to ${target.host}:${target.port}`, () => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const addr = server.address();
  return { port: typeof addr === 'object' && addr ? addr.port : 0, connections: () => count };
}

/** target <- counting relay <- delay proxy (rtt) <- the client. Returns the port to dial. */
async function delayedLink(target: { host: string; port: number }, rttMs: number): Promise<{ port: number; connections: () => number }> {
  const relay = await countingRelay(target);
  const proxy = await startDelayProxy({ host: '127.0.0.1', port: relay.port }, rttMs);
  onCleanup(`delay proxy :${proxy.port} -> ${target.host}:${target.port}`, () => proxy.close());
  return { port: proxy.port, connections: relay.connections };
}

// ---- the SSH side ------------------------------------------------------------------------

interface SshSetup {
  keyPath: string;
  envIp: string;
  sshdVersion: string;
  installMs: number;
}

/**
 * Installs OpenSSH in the environment and runs sshd as a berth service. berth drops
 * CAP_SYS_CHROOT, and a root sshd must chroot its pre-auth child to /run/sshd (fatal:
 * `chroot("/run/sshd"): Operation not permitted [preauth]`), so sshd runs as an unprivileged
 * user, which OpenSSH supports without the chroot; that user owns the workspace.
 */
async function setUpSsh(client: NodeClient): Promise<SshSetup> {
  const dir = tempDir('berth-bench-ssh-');
  const keyPath = join(dir, 'id_ed25519');
  await mustRun('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'berth-bench', '-f', keyPath], { timeoutMs: 30_000 });
  const pub = readFileSync(`${keyPath}.pub`, 'utf8').trim();

  log(`installing openssh-server in the environment (apt-get, up to ${opts['install-timeout-s']} s)`);
  const installTimeout = opts['install-timeout-s'] * 1000;
  const t0 = performance.now();
  // The output goes to a file, and only its tail comes back (on failure).
  const install = await client.exec(
    ENV,
    {
      argv: [
        'sh',
        '-c',
        '(apt-get update && apt-get install -y --no-install-recommends openssh-server) >/tmp/berth-bench-apt.log 2>&1; ' +
          'rc=$?; [ $rc -eq 0 ] || tail -n 20 /tmp/berth-bench-apt.log; exit $rc',
      ],
      env: { DEBIAN_FRONTEND: 'noninteractive' },
      timeoutMs: installTimeout,
    },
    AbortSignal.timeout(installTimeout + 15_000),
  );
  const installMs = performance.now() - t0;
  if (install.exitCode !== 0) {
    throw new Error(
      `installing openssh-server exited ${install.exitCode}${install.timedOut ? ' (timed out)' : ''}: ${tail(text(install.stdout) + text(install.stderr), 20)}`,
    );
  }
  log(`openssh-server installed in ${Math.round(installMs)} ms`);

  const setup = [
    'set -e',
    `id -u ${SSH_USER} >/dev/null 2>&1 || useradd -m -s /bin/sh ${SSH_USER}`,
    `install -d -m 700 -o ${SSH_USER} -g ${SSH_USER} /home/${SSH_USER}/.ssh`,
    `printf '%s\\n' "$1" > /home/${SSH_USER}/.ssh/authorized_keys`,
    `chown ${SSH_USER}:${SSH_USER} /home/${SSH_USER}/.ssh/authorized_keys`,
    `chmod 600 /home/${SSH_USER}/.ssh/authorized_keys`,
    // The root account's key too, as the issue describes it (root cannot log in: see above).
    'install -d -m 700 /root/.ssh',
    `printf '%s\\n' "$1" > /root/.ssh/authorized_keys`,
    'chmod 600 /root/.ssh/authorized_keys',
    'mkdir -p /run/sshd',
    `rm -f /home/${SSH_USER}/hostkey /home/${SSH_USER}/hostkey.pub`,
    `ssh-keygen -q -t ed25519 -N '' -f /home/${SSH_USER}/hostkey`,
    `chown ${SSH_USER}:${SSH_USER} /home/${SSH_USER}/hostkey /home/${SSH_USER}/hostkey.pub`,
    `chown -R ${SSH_USER}:${SSH_USER} ${WORKSPACE}`,
    // berth runs commands as root: git must accept a workspace that another user owns.
    `git config --system --add safe.directory ${WORKSPACE}`,
    `echo "uid=$(id -u ${SSH_USER})"`,
    `echo "gid=$(id -g ${SSH_USER})"`,
    'echo "ip=$(hostname -I)"',
    `echo "sshd=$(dpkg-query -W -f '\${Version}' openssh-server)"`,
  ].join('\n');
  const out = await mustExec(client, ['sh', '-c', setup, 'setup', pub]);
  const field = (k: string): string => {
    const m = new RegExp(`^${k}=(.*)$`, 'm').exec(out);
    if (!m?.[1]?.trim()) throw new Error(`environment setup printed no ${k}: ${out.trim()}`);
    return m[1].trim();
  };
  const envIp = field('ip').split(/\s+/)[0]!;
  const svc = await client.startService(
    ENV,
    {
      name: 'sshd',
      argv: [
        'setpriv',
        `--reuid=${field('uid')}`,
        `--regid=${field('gid')}`,
        '--init-groups',
        '/usr/sbin/sshd',
        '-D',
        '-e',
        '-p',
        String(SSH_PORT),
        '-h',
        `/home/${SSH_USER}/hostkey`,
        '-o',
        'PidFile=none',
        '-o',
        'UsePAM=no',
      ],
      ready: { kind: 'tcp', port: SSH_PORT },
      readyTimeoutMs: 20_000,
    },
    AbortSignal.timeout(40_000),
  );
  if (svc.state !== 'ready') throw new Error(`sshd service is ${svc.state}: ${svc.reason ?? ''} ${svc.logTail ?? ''}`.trim());
  log(`sshd ready at ${envIp}:${SSH_PORT} (readyMs ${svc.readyMs})`);
  return { keyPath, envIp, sshdVersion: field('sshd'), installMs };
}

function sshArgs(keyPath: string, port: number, remote: string): string[] {
  return [
    '-F',
    '/dev/null',
    '-T',
    '-i',
    keyPath,
    '-p',
    String(port),
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    '-o',
    'ControlMaster=no',
    '-o',
    'ControlPath=none',
    '-o',
    'ConnectTimeout=20',
    `${SSH_USER}@127.0.0.1`,
    remote,
  ];
}

// ---- the three ways ----------------------------------------------------------------------

type WayName = 'ssh-per-command' | 'berth-sequential' | 'berth-batched';

interface Way {
  name: WayName;
  how: string;
  connections: () => number;
  /** One unmeasured command, to warm up the path. */
  warm: () => Promise<void>;
  /** Runs the task; returns each command's exit code, and the sum of their run times if known. */
  task: (deadline: number) => Promise<{ codes: number[]; runMs: number | null }>;
}

interface WayState {
  totals: number[];
  connectionsPerRun: number[];
  exitCodes: number[][];
  runMsSums: number[];
  error?: string;
  stoppedEarly?: string;
}

function checkDeadline(deadline: number, done: number): void {
  if (performance.now() > deadline) throw new Error(`time budget spent after ${done} of ${TASK.length} commands`);
}

/** The delay proxy's own round trip, as measured: one byte to a local echo server and back. */
async function calibrateLink(rttMs: number): Promise<number | null> {
  const echo = createServer((s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((resolve, reject) => {
    echo.once('error', reject);
    echo.listen(0, '127.0.0.1', () => resolve());
  });
  onCleanup('echo server', () => new Promise<void>((resolve) => echo.close(() => resolve())));
  const addr = echo.address();
  const proxy = await startDelayProxy({ host: '127.0.0.1', port: typeof addr === 'object' && addr ? addr.port : 0 }, rttMs);
  onCleanup(`delay proxy :${proxy.port} (calibration)`, () => proxy.close());
  const sock = connect(proxy.port, '127.0.0.1');
  sock.setNoDelay(true);
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const s = await series('delay-proxy-round-trip', { n: 20, warmup: 2, budgetMs: 10_000 }, async () => {
      const t0 = performance.now();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no echo within 5 s')), 5000);
        sock.once('data', () => {
          clearTimeout(timer);
          resolve();
        });
        sock.write('x');
      });
      return performance.now() - t0;
    });
    report.link = {
      rtt_ms_configured: rttMs,
      how: 'one byte through the delay proxy to a local echo server and back, on one connection',
      measured_round_trip: s.row().error === undefined ? stats(s.samples) : { error: s.error },
    };
    return p50(s.samples);
  } finally {
    sock.destroy();
  }
}

async function latencySection(node: BerthNode, ssh: SshSetup | null, sshError: string | null): Promise<void> {
  const rtt = opts['rtt-ms'];
  const measuredRtt = await calibrateLink(rtt);
  const tcp = await node.tcpEndpoint();
  const berthLink = await delayedLink({ host: tcp.host, port: tcp.port }, rtt);
  const remote = new NodeClient({ url: `http://127.0.0.1:${berthLink.port}`, token: tcp.token });
  onCleanup('close the remote client', () => remote.close());
  const seqTimings: ExecTiming[] = [];
  // Each command's run time (the process itself, as the agent measured it), per way.
  const runMsByCommand = new Map<WayName, number[][]>([
    ['berth-sequential', TASK.map(() => [])],
    ['berth-batched', TASK.map(() => [])],
  ]);
  const batchTimings: Array<{ transportMs: number; queueMs: number }> = [];

  const ways: Way[] = [];
  if (ssh) {
    const sshLink = await delayedLink({ host: ssh.envIp, port: SSH_PORT }, rtt);
    const once = async (cmd: string): Promise<number> => {
      const r = await run('/usr/bin/ssh', sshArgs(ssh.keyPath, sshLink.port, `cd ${WORKSPACE} || exit 97\n${cmd}`), {
        timeoutMs: PER_COMMAND_TIMEOUT_MS,
      });
      if (r.code === 255) throw new Error(`ssh failed (exit 255) on \`${cmd}\`: ${tail(r.stderr)}`);
      return r.code;
    };
    ways.push({
      name: 'ssh-per-command',
      how: `/usr/bin/ssh per command (new TCP connection, key exchange and public-key auth each time) -> delay proxy -> sshd ${ssh.sshdVersion} in the environment at ${ssh.envIp}:${SSH_PORT}, as user ${SSH_USER}; remote \`cd ${WORKSPACE} || exit 97; CMD\` via the user's /bin/sh`,
      connections: sshLink.connections,
      warm: async () => {
        const code = await once('true');
        if (code !== 0) throw new Error(`ssh warm-up \`true\` exited ${code}`);
      },
      task: async (deadline) => {
        const codes: number[] = [];
        for (const cmd of TASK) {
          checkDeadline(deadline, codes.length);
          codes.push(await once(cmd));
        }
        return { codes, runMs: null };
      },
    });
  } else {
    results.push(failedRow('ssh-per-command', 1, sshError ?? 'ssh setup failed', { rtt_ms: rtt }));
  }
  const exec = (cmd: string): Promise<ExecResult> =>
    remote.exec(
      ENV,
      { argv: ['sh', '-c', cmd], cwd: WORKSPACE, timeoutMs: PER_COMMAND_TIMEOUT_MS },
      AbortSignal.timeout(PER_COMMAND_TIMEOUT_MS + 10_000),
    );
  let measuring = false;
  ways.push({
    name: 'berth-sequential',
    how: `NodeClient({url}) -> delay proxy -> daemon TCP ${tcp.host}:${tcp.port}; ${TASK.length} sequential exec calls (sh -c CMD, cwd ${WORKSPACE}) over one keep-alive connection`,
    connections: berthLink.connections,
    warm: async () => {
      const r = await exec('true');
      if (r.exitCode !== 0) throw new Error(`berth warm-up \`true\` exited ${r.exitCode}`);
    },
    task: async (deadline) => {
      const codes: number[] = [];
      let runMs = 0;
      for (const [k, cmd] of TASK.entries()) {
        checkDeadline(deadline, codes.length);
        const r = await exec(cmd);
        if (measuring) {
          seqTimings.push(r.timing);
          runMsByCommand.get('berth-sequential')![k]!.push(r.timing.runMs);
        }
        runMs += r.timing.runMs;
        codes.push(r.exitCode);
      }
      return { codes, runMs };
    },
  });
  ways.push({
    name: 'berth-batched',
    how: `NodeClient({url}) -> delay proxy -> daemon TCP; one batch call with the ${TASK.length} commands (sh -c CMD, cwd ${WORKSPACE}), stopOnError false`,
    connections: berthLink.connections,
    warm: async () => {
      const r = await remote.batch(ENV, { steps: [{ argv: ['true'], cwd: WORKSPACE }] }, AbortSignal.timeout(30_000));
      if (r.exitCode !== 0) throw new Error(`berth warm-up batch exited ${r.exitCode}`);
    },
    task: async (deadline) => {
      checkDeadline(deadline, 0);
      const r = await remote.batch(
        ENV,
        { steps: TASK.map((cmd) => ({ argv: ['sh', '-c', cmd], cwd: WORKSPACE, timeoutMs: PER_COMMAND_TIMEOUT_MS })), stopOnError: false },
        AbortSignal.timeout(Math.max(1000, Math.round(deadline - performance.now()))),
      );
      if (measuring) batchTimings.push(r.timing);
      if (r.steps.length !== TASK.length)
        throw new Error(`batch returned ${r.steps.length} of ${TASK.length} steps (completed ${r.completed})`);
      const broken = r.steps.find((s) => s.error);
      if (broken) throw new Error(`batch step \`${broken.argv.join(' ')}\` failed: ${broken.error!.code}: ${broken.error!.message}`);
      if (measuring) r.steps.forEach((st, k) => runMsByCommand.get('berth-batched')![k]!.push(st.timing.runMs));
      return { codes: r.steps.map((s) => s.exitCode), runMs: r.steps.reduce((a, s) => a + s.timing.runMs, 0) };
    },
  });

  const state = new Map<WayName, WayState>(ways.map((w) => [w.name, { totals: [], connectionsPerRun: [], exitCodes: [], runMsSums: [] }]));
  // Leave a share of what remains for the sections after this one.
  const endAt = performance.now() + Math.max(0, remainingMs() - 20_000);
  log(`latency: warm-up, one command per way, through ${rtt} ms round trip`);
  for (const w of ways) {
    try {
      await w.warm();
    } catch (err) {
      state.get(w.name)!.error = `warm-up: ${errorText(err)}`;
      log(`${w.name}: warm-up failed: ${errorText(err)}`);
    }
  }
  measuring = true;
  // Interleaved: run i of every way, then run i+1, so drift hits all ways alike.
  for (let i = 0; i < opts.runs; i++) {
    for (const w of ways) {
      const s = state.get(w.name)!;
      if (s.error !== undefined || s.stoppedEarly !== undefined) continue;
      if (performance.now() > endAt) {
        s.stoppedEarly = `time budget spent after ${s.totals.length} of ${opts.runs} runs`;
        continue;
      }
      const c0 = w.connections();
      const t0 = performance.now();
      try {
        const { codes, runMs } = await w.task(endAt);
        const ms = performance.now() - t0;
        s.totals.push(ms);
        s.connectionsPerRun.push(w.connections() - c0);
        s.exitCodes.push(codes);
        if (runMs !== null) s.runMsSums.push(runMs);
        log(`${w.name} run ${i + 1}/${opts.runs}: ${(ms / 1000).toFixed(3)} s, ${w.connections() - c0} TCP connection(s)`);
      } catch (err) {
        if (/time budget spent/.test(errorText(err))) s.stoppedEarly = `${errorText(err)} in run ${i + 1}`;
        else s.error = `run ${i + 1}: ${errorText(err)}`;
        log(`${w.name} run ${i + 1}: ${errorText(err)}`);
      }
    }
  }

  // The reference exit codes: berth sequential's first run (or whichever way has one).
  const reference =
    state.get('berth-sequential')?.exitCodes[0] ?? [...state.values()].find((s) => s.exitCodes.length > 0)?.exitCodes[0] ?? null;
  report.task = { ...(report.task as object), reference_exit_codes: reference };
  for (const w of ways) {
    const s = state.get(w.name)!;
    const st = stats(s.totals);
    const mismatches: Array<{ run: number; command: string; exit_code: number; reference: number }> = [];
    if (reference) {
      s.exitCodes.forEach((codes, run) =>
        codes.forEach((c, k) => {
          if (c !== reference[k]) mismatches.push({ run: run + 1, command: TASK[k]!, exit_code: c, reference: reference[k]! });
        }),
      );
    }
    const extra: Record<string, unknown> = {
      how: w.how,
      rtt_ms: rtt,
      commands: TASK.length,
      p50_s: seconds(st.p50_ms),
      min_s: seconds(st.min_ms),
      max_s: seconds(st.max_ms),
      runs_s: s.totals.map((ms) => seconds(ms)),
      round_trips_at_p50: measuredRtt && st.p50_ms !== null ? Math.round((st.p50_ms / measuredRtt) * 10) / 10 : null,
      commands_run_ms_sum_p50: p50(s.runMsSums),
      ms_per_command_at_p50: st.p50_ms === null ? null : Math.round((st.p50_ms / TASK.length) * 1000) / 1000,
      new_tcp_connections_per_run: s.connectionsPerRun,
      exit_codes_match_reference: reference ? mismatches.length === 0 : null,
      ...(mismatches.length ? { exit_code_mismatches: mismatches.slice(0, 20) } : {}),
    };
    // Where the time went, at the p50: the link's round trips the way needs at least, the
    // commands' own run time, and what is left (spawning, the API, the client).
    const floorTrips = w.name === 'berth-sequential' ? TASK.length : w.name === 'berth-batched' ? 1 : null;
    const runSum = p50(s.runMsSums);
    if (floorTrips !== null && measuredRtt !== null && st.p50_ms !== null && runSum !== null) {
      const floor = floorTrips * measuredRtt;
      extra.decomposition_at_p50_ms = {
        round_trip_floor: Math.round(floor),
        round_trips: floorTrips,
        commands_run: Math.round(runSum),
        residual: Math.round(st.p50_ms - floor - runSum),
        residual_per_command: Math.round(((st.p50_ms - floor - runSum) / TASK.length) * 100) / 100,
      };
    }
    const perCommand = runMsByCommand.get(w.name);
    if (perCommand) {
      extra.slowest_commands_run_ms_p50 = perCommand
        .map((samples, k) => ({ command: TASK[k]!, run_ms: p50(samples) }))
        .filter((c) => c.run_ms !== null)
        .sort((a, b) => b.run_ms! - a.run_ms!)
        .slice(0, 6);
    }
    extra.tcp_connections_on_link_since_warmup =
      w.name === 'ssh-per-command' ? w.connections() : `${w.connections()} (shared by berth-sequential and berth-batched)`;
    if (w.name === 'berth-sequential') {
      const f = (k: keyof ExecTiming): number | null => p50(seqTimings.map((t) => t[k]));
      extra.berth_timing_p50_ms = { queueMs: f('queueMs'), spawnMs: f('spawnMs'), runMs: f('runMs'), transportMs: f('transportMs') };
    }
    if (w.name === 'berth-batched') {
      extra.berth_timing_p50_ms = {
        queueMs: p50(batchTimings.map((t) => t.queueMs)),
        transportMs: p50(batchTimings.map((t) => t.transportMs)),
      };
    }
    const row: Row = { name: w.name, ...st, warmup: 1, ...extra };
    if (s.stoppedEarly) row.stopped_early = s.stoppedEarly;
    if (s.error !== undefined) row.error = s.error;
    results.push(row);
  }
}

// ---- describe and the service ------------------------------------------------------------

async function describeSection(client: NodeClient): Promise<void> {
  const services = await client.services(ENV, AbortSignal.timeout(10_000));
  const t0 = performance.now();
  const first = await client.describe(ENV, AbortSignal.timeout(30_000));
  const coldMs = performance.now() - t0;
  log(`describe: cold ${coldMs.toFixed(1)} ms`);
  let bytes = 0;
  const s = await series('describe', { n: opts['describe-n'], warmup: 0, budgetMs: 30_000 }, async () => {
    const t = performance.now();
    const d = await client.describe(ENV, AbortSignal.timeout(10_000));
    const ms = performance.now() - t;
    bytes = JSON.stringify(d).length;
    return ms;
  });
  results.push(
    s.row({
      how: 'NodeClient.describe over the unix socket, sequential, after one cold call',
      cold_ms: Math.round(coldMs * 1000) / 1000,
      services_running: services.filter((x) => x.state === 'ready').map((x) => x.name),
      document_keys: Object.keys(first),
      document_bytes: bytes,
    }),
  );
}

async function serviceSection(client: NodeClient): Promise<void> {
  const name = 'web';
  const port = 3000;
  const url = `http://localhost:${port}/`;
  const readyMs: number[] = [];
  const startMs: number[] = [];
  const verifyMs: number[] = [];
  const stop = async (): Promise<void> => {
    await client.stopService(ENV, name, AbortSignal.timeout(20_000)).catch((err: unknown) => {
      if (!/not found|no service|unknown service/i.test(errorText(err))) throw err;
    });
  };
  const s = await series('service-ready-to-verified-200', { n: opts['service-n'], warmup: 0, budgetMs: 60_000 }, async () => {
    const t0 = performance.now();
    let ok = false;
    try {
      const svc: ServiceInfo = await client.startService(
        ENV,
        {
          name,
          argv: ['node', '-e', "require('http').createServer((q,s)=>s.end('ok')).listen(3000)"],
          ready: { kind: 'http', port, path: '/' },
          readyTimeoutMs: 15_000,
        },
        AbortSignal.timeout(30_000),
      );
      const t1 = performance.now();
      if (svc.state !== 'ready') throw new Error(`service ${name} is ${svc.state}: ${svc.reason ?? ''} ${svc.logTail ?? ''}`.trim());
      const v = await client.verify(ENV, { http: [url] }, AbortSignal.timeout(30_000));
      const t2 = performance.now();
      const h = v.http[0];
      if (!h?.ok || h.status !== 200) throw new Error(`verify ${url}: ${h ? `${h.status ?? 'no status'}: ${h.detail}` : 'no result'}`);
      if (!v.verified) throw new Error(`verify: not verified: ${v.failures.join('; ')}`);
      if (svc.readyMs !== null) readyMs.push(svc.readyMs);
      startMs.push(t1 - t0);
      verifyMs.push(t2 - t1);
      ok = true;
      return t2 - t0;
    } finally {
      // After a failure, the failure is what the row reports.
      await stop().catch((err: unknown) => {
        if (ok) throw err;
      });
    }
  });
  results.push(
    s.row({
      how: `NodeClient.startService (ready http:${port}/, waits for ready) then NodeClient.verify({http:['${url}']}) returning HTTP 200, over the unix socket; the service is stopped between repetitions (outside the timed region)`,
      argv: ['node', '-e', "require('http').createServer((q,s)=>s.end('ok')).listen(3000)"],
      service_ready_ms: stats(readyMs),
      start_call_p50_ms: p50(startMs),
      verify_call_p50_ms: p50(verifyMs),
    }),
  );
}

// ---- the run -----------------------------------------------------------------------------

function target(
  name: string,
  value: number | null,
  limit: number,
  unit: string,
  source: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { name, measured: value, unit, target: `<= ${limit}`, pass: value !== null && value <= limit, source, ...extra };
}

/** For information beside a task target: the p50 less the commands' own run time (seconds). */
function lessRunTime(r: Row | undefined): Record<string, unknown> {
  const p = r?.p50_s as number | null | undefined;
  const runMs = r?.commands_run_ms_sum_p50 as number | null | undefined;
  if (p == null || runMs == null) return {};
  return {
    commands_run_s_p50: Math.round(runMs) / 1000,
    measured_less_commands_run_s: Math.round(p * 1000 - runMs) / 1000,
    note: "the measured time includes the commands' own run time in the environment; the second figure leaves it out, for information only",
  };
}

runBench(report, (opts['max-seconds'] + 60) * 1000, async () => {
  setDeadline(opts['max-seconds'] * 1000);
  const [engine] = engineList(opts.engine);
  if (!engine || opts.runs < 1) throw new Error('need one engine and --runs >= 1');
  report.machine = await machine([engine]);
  report.options = opts;
  report.berth = berthRevision();
  report.percentiles = 'linear interpolation between closest ranks';
  report.ssh_client = (await run('/usr/bin/ssh', ['-V'])).stderr.trim();
  report.results = results;
  const digest = await toolchainDigest();
  report.image = { digest };
  const repo = taskRepo();
  const node = await BerthNode.start(engine, digest, { listen: '127.0.0.1:0' });
  try {
    log('creating the environment');
    const t0 = performance.now();
    await node.client.createEnv({ name: ENV, repo }, AbortSignal.timeout(120_000));
    report.environment = { name: ENV, engine, create_ms: Math.round(performance.now() - t0) };

    let ssh: SshSetup | null = null;
    let sshError: string | null = null;
    try {
      ssh = await setUpSsh(node.client);
      report.ssh_server = {
        package: `openssh-server ${ssh.sshdVersion}`,
        install_ms: Math.round(ssh.installMs),
        address: `${ssh.envIp}:${SSH_PORT}`,
        user: SSH_USER,
        note: 'berth drops CAP_SYS_CHROOT and a root sshd must chroot its pre-auth child (chroot("/run/sshd"): Operation not permitted), so sshd runs unprivileged as this user, who owns the workspace',
      };
    } catch (err) {
      sshError = errorText(err);
      log(`ssh setup failed: ${sshError}`);
    }

    // With one service (sshd) running, when ssh came up.
    await describeSection(node.client).catch((err: unknown) => void results.push(failedRow('describe', 0, err)));
    await serviceSection(node.client).catch((err: unknown) => void results.push(failedRow('service-ready-to-verified-200', 0, err)));
    await latencySection(node, ssh, sshError);
  } finally {
    await node.stop();
  }

  const row = (n: string): Row | undefined => results.find((r) => r.name === n && r.error === undefined);
  const sec = (n: string): number | null => (row(n)?.p50_s as number | null | undefined) ?? null;
  const targets = [
    target(
      'berth sequential, 50 commands',
      sec('berth-sequential'),
      TARGETS.berth_sequential_s,
      's (p50 of runs)',
      'berth-sequential',
      lessRunTime(row('berth-sequential')),
    ),
    target(
      'berth batched, 50 commands',
      sec('berth-batched'),
      TARGETS.berth_batched_s,
      's (p50 of runs)',
      'berth-batched',
      lessRunTime(row('berth-batched')),
    ),
    target('describe p50', row('describe')?.p50_ms ?? null, TARGETS.describe_p50_ms, 'ms', 'describe'),
    target(
      'service ready to first verified HTTP 200',
      row('service-ready-to-verified-200')?.p50_ms ?? null,
      TARGETS.service_ready_to_verified_200_ms,
      'ms (p50)',
      'service-ready-to-verified-200',
    ),
  ];
  report.targets = targets;
  report.all_targets_pass = targets.every((t) => t.pass === true);
  report.comparison = {
    ssh_over_berth_sequential: ratio(sec('ssh-per-command'), sec('berth-sequential')),
    ssh_over_berth_batched: ratio(sec('ssh-per-command'), sec('berth-batched')),
    berth_sequential_over_batched: ratio(sec('berth-sequential'), sec('berth-batched')),
  };
  log('done');
});

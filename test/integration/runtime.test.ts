// No invisible state: services with readiness, logs, describe, verify with evidence, PTYs,
// batches, and bad input around all of them. Real engines, real Chromium, real tmux.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BERTH, makeRepo, NodeFixture, run, testEngines, failureTracker } from '../helpers/fixture.js';
import { pngStats } from '../../src/core/png.js';
import type { ServiceInfo, VerifyResult } from '../../src/core/api.js';

function commit(repo: string, file: string, body: string): void {
  writeFileSync(join(repo, file), body);
  execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', 'add', '-A']);
  execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', 'commit', '-q', '-m', file]);
}

const SERVER = `const http = require('node:http');
const port = Number(process.argv[2] || 3000);
http.createServer((req, res) => {
  if (req.url === '/health') { res.writeHead(200); res.end('healthy'); return; }
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<body style="background:#1e3a8a;color:white"><h1>berth screenshot test</h1></body>');
}).listen(port, () => console.log('listening on ' + port));
setInterval(() => console.log('tick ' + Date.now()), 200);
`;

/** The parts of `describe` these tests read. */
interface Description {
  os: { id: string; arch: string };
  tools: Record<string, { version: string }>;
  path: string[];
  env: Record<string, string>;
  ports: Array<{ port: number; service: string | null }>;
  processes: Array<{ cmd: string; service: string | null }>;
  services: Array<{ state: string }>;
  git: { branch: string; clean: boolean; dirty: Array<{ path: string }>; ahead: number };
  resources: { pids: { limit: number }; memory: { usedBytes: number } };
  identity: { ref: string };
  commit: string;
  latency: { commands: number; overheadMs: { p50: number } };
}

for (const engine of testEngines()) {
  describe(`runtime on ${engine}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    const tracker = failureTracker();
    const track = tracker.track;
    before(async () => {
      repo = makeRepo();
      commit(repo.path, 'server.js', SERVER);
      commit(
        repo.path,
        'berth.json',
        JSON.stringify({ services: { web: { command: 'node server.js 3000', ready: 'http:3000/health', restart: 'on-failure' } } }),
      );
      commit(
        repo.path,
        'junit.xml',
        '<testsuites><testsuite name="s"><testcase classname="a" name="one"/><testcase classname="a" name="two"><failure message="x"/></testcase><testcase name="three"><skipped/></testcase></testsuite></testsuites>',
      );
      node = await NodeFixture.start(engine);
      await node.json(['new', 'app', '--repo', repo.path]);
    });
    after(async () => {
      await node?.stop(tracker.failed);
      repo?.cleanup();
    });

    it('starts a declared service, reports it ready only after its check, and shows its logs', () =>
      track(
        (async () => {
          const s = await node.json<ServiceInfo>(['service', 'start', 'app', 'web']);
          assert.equal(s.state, 'ready');
          assert.equal(s.check?.status, 200);
          assert.deepEqual(s.ports, [3000]);
          assert.ok(typeof s.readyMs === 'number');
          const logs = await node.cli(['logs', 'app', 'web']);
          assert.equal(logs.code, 0);
          assert.match(logs.stdout, /listening on 3000/);

          // -f follows new lines as they come, without restarting anything.
          const follow = node.cli(['logs', 'app', 'web', '-f'], {});
          await sleep(800);
          const pidBefore = (await node.json<ServiceInfo[]>(['service', 'ls', 'app']))[0]!.pid;
          const ls = await node.json<ServiceInfo[]>(['service', 'ls', 'app']);
          assert.equal(ls[0]!.pid, pidBefore);
          // Stop the follower by killing the CLI: it must have streamed several ticks.
          execFileSync('pkill', ['-f', `${BERTH} logs app web -f`]);
          const followed = await follow;
          assert.ok((followed.stdout.match(/tick/g) ?? []).length >= 2, followed.stdout.slice(-300));

          // A reader that goes away (`| head -1`) ends the follower quietly: no stack trace, exit 0.
          const piped = await run(
            'bash',
            [
              '-c',
              `"$0" "$1" logs app web -f 2>"$2" | head -1; echo "exit=\${PIPESTATUS[0]}"; cat "$2"`,
              process.execPath,
              BERTH,
              join(node.home, 'piped.err'),
            ],
            { env: node.env, timeoutMs: 60_000 },
          );
          assert.match(piped.stdout, /^.*\nexit=0\n$/, piped.stdout);
        })(),
      ));

    it('verifies with evidence: service checks, HTTP, a Chromium screenshot, parsed test results', () =>
      track(
        (async () => {
          const r = await node.cli([
            'verify',
            'app',
            '--json',
            '--http',
            'http://localhost:3000/health',
            '--screenshot',
            'http://localhost:3000/',
            '--test',
            'npm test',
          ]);
          const v = JSON.parse(r.stdout) as VerifyResult;
          assert.equal(r.code, 0, JSON.stringify(v.failures));
          assert.equal(v.verified, true);
          assert.equal(v.services[0]?.ok, true);
          assert.equal(v.http[0]?.status, 200);
          assert.equal(v.http[0]?.bodyExcerpt, 'healthy');
          const shot = v.screenshots[0]!;
          assert.ok(shot.path);
          assert.ok(statSync(shot.path).size > 1000, 'screenshot is too small');
          const stats = pngStats(readFileSync(shot.path));
          assert.equal(stats.width, 1280);
          assert.equal(stats.blank, false);
          assert.deepEqual({ passed: v.tests?.summary?.passed, failed: v.tests?.summary?.failed }, { passed: 1, failed: 0 });

          const junit = await node.cli(['verify', 'app', '--json', '--test', 'true', '--junit', 'junit.xml']);
          assert.equal(junit.code, 17);
          const jv = JSON.parse(junit.stdout) as VerifyResult;
          assert.deepEqual(jv.tests?.summary, { format: 'junit', passed: 1, failed: 1, skipped: 1, total: 3, failures: ['a two'] });

          const bad = await node.cli(['verify', 'app', '--http', 'http://localhost:3999/']);
          assert.equal(bad.code, 17);
          assert.match(bad.stdout, /NOT verified/);
          const outside = await node.cli(['verify', 'app', '--http', 'http://192.0.2.10:80/']);
          assert.equal(outside.code, 15);
          assert.match(outside.stderr, /outside the environment/);
        })(),
      ));

    it('describes everything an agent would otherwise guess', () =>
      track(
        (async () => {
          await node.cli(['exec', 'app', '--', 'sh', '-c', 'echo change >> server.js; echo new > untracked.txt']);
          const d = await node.json<Description>(['describe', 'app']);
          assert.equal(d.os.id, 'debian');
          assert.ok(d.os.arch);
          assert.match(d.tools.node!.version, /^\d+\.\d+/);
          assert.match(d.tools.git!.version, /^\d+\.\d+/);
          assert.ok(d.path.includes('/usr/bin'));
          assert.equal(d.env.BERTH_ENV, 'app');
          const port = d.ports.find((p) => p.port === 3000);
          assert.equal(port?.service, 'web');
          assert.ok(d.processes.some((p) => p.cmd.includes('server.js') && p.service === 'web'));
          assert.equal(d.services[0]!.state, 'ready');
          assert.equal(d.git.branch, 'berth/app');
          assert.equal(d.git.clean, false);
          assert.deepEqual(d.git.dirty.map((f) => f.path).sort(), ['server.js', 'untracked.txt']);
          assert.equal(d.git.ahead, 0);
          assert.equal(d.resources.pids.limit, 1024);
          assert.ok(d.resources.memory.usedBytes > 0);
          assert.equal(d.identity.ref, d.commit);
          assert.ok(d.latency.commands >= 1);
          assert.equal(typeof d.latency.overheadMs.p50, 'number');
          await node.cli(['exec', 'app', '--', 'git', 'checkout', '--', 'server.js']);
          await node.cli(['exec', 'app', '--', 'rm', 'untracked.txt']);
        })(),
      ));

    it('handles services that never get ready, crash, or find their port taken, leaving no stray process', () =>
      track(
        (async () => {
          const never = await node.cli([
            'service',
            'start',
            'app',
            'sleepy',
            '--ready',
            'tcp:4000',
            '--ready-timeout',
            '1',
            '--',
            'sh',
            '-c',
            'echo about to nap; sleep 1000',
          ]);
          assert.equal(never.code, 18, never.stderr);
          assert.match(never.stderr, /not ready after 1 s/);
          assert.match(never.stderr, /about to nap/);
          const crashed = await node.cli([
            'service',
            'start',
            'app',
            'crash',
            '--json',
            '--ready',
            'tcp:4001',
            '--',
            'sh',
            '-c',
            'echo boom >&2; exit 3',
          ]);
          assert.equal(crashed.code, 18);
          const crash = JSON.parse(crashed.stdout) as ServiceInfo;
          assert.equal(crash.state, 'failed');
          assert.match(crash.reason ?? '', /exited with code 3 before it was ready/);
          assert.match(crash.logTail ?? '', /boom/);
          const taken = await node.cli(['service', 'start', 'app', 'dup', '--ready', 'http:3000/', '--', 'node', 'server.js', '3000']);
          assert.equal(taken.code, 16);
          assert.match(taken.stderr, /port 3000 is already in use by pid \d+/);
          await sleep(300);
          const procs = await node.cli(['exec', 'app', '--', 'ps', '-eo', 'args']);
          assert.doesNotMatch(procs.stdout, /sleep 1000/, 'a service that never became ready left a process behind');

          const flappy = await node.json<ServiceInfo>([
            'service',
            'start',
            'app',
            'flappy',
            '--restart',
            'always',
            '--',
            'sh',
            '-c',
            'sleep 0.2; exit 1',
          ]);
          assert.equal(flappy.state, 'ready');
          for (let i = 0; i < 60; i++) {
            const l = await node.json<ServiceInfo[]>(['service', 'ls', 'app']);
            if ((l.find((s) => s.name === 'flappy')?.restarts ?? 0) >= 2) break;
            await sleep(250);
          }
          const restarted = (await node.json<ServiceInfo[]>(['service', 'ls', 'app'])).find((s) => s.name === 'flappy')!;
          assert.ok(restarted.restarts >= 2, `restarts: ${restarted.restarts}`);
          const stopped = await node.json<ServiceInfo>(['service', 'stop', 'app', 'flappy']);
          assert.equal(stopped.state, 'stopped');
          const unknown = await node.cli(['service', 'stop', 'app', 'nope']);
          assert.equal(unknown.code, 4);
          const bad = await node.cli(['service', 'start', 'app', 'x', '--ready', 'udp:1', '--', 'true']);
          assert.equal(bad.code, 2);
        })(),
      ));

    it('stops a service with its whole process group', () =>
      track(
        (async () => {
          const s = await node.json<ServiceInfo>([
            'service',
            'start',
            'app',
            'tree',
            '--ready',
            'cmd:test -f /tmp/tree-up',
            '--',
            'sh',
            '-c',
            'sleep 2001 & sleep 2002 & touch /tmp/tree-up; wait',
          ]);
          assert.equal(s.state, 'ready');
          await node.json(['service', 'stop', 'app', 'tree']);
          const procs = await node.cli(['exec', 'app', '--', 'ps', '-eo', 'args']);
          assert.doesNotMatch(procs.stdout, /sleep 200[12]/);
        })(),
      ));

    it('runs a batch in one round trip with per-command results', () =>
      track(
        (async () => {
          const r = await node.cli(['batch', 'app', '--json'], { stdin: '# a comment\necho one\nsh -c "exit 4"\necho never\n' });
          assert.equal(r.code, 4);
          const b = JSON.parse(r.stdout) as { steps: Array<{ exitCode: number; stdout: string }>; completed: number };
          assert.equal(b.completed, 2);
          assert.deepEqual(
            b.steps.map((s) => [s.exitCode, s.stdout]),
            [
              [0, 'one\n'],
              [4, ''],
            ],
          );
          const keep = await node.cli(['batch', 'app', '--keep-going', '--json'], { stdin: 'false\necho two\n' });
          assert.equal((JSON.parse(keep.stdout) as { completed: number }).completed, 2);
          const empty = await node.cli(['batch', 'app'], { stdin: '\n# nothing\n' });
          assert.equal(empty.code, 2);
        })(),
      ));

    it('passes non-UTF-8 bytes through untouched and bounds a 100 MB burst', () =>
      track(
        (async () => {
          const bytes = await run('sh', ['-c', `node ${BERTH} exec app -- printf '\\377\\376\\000abc' | od -An -tx1`], { env: node.env });
          assert.equal(bytes.stdout.trim().replace(/\s+/g, ' '), 'ff fe 00 61 62 63');
          const burst = await run('sh', ['-c', `node ${BERTH} exec app -- head -c 100000000 /dev/zero | wc -c`], { env: node.env });
          assert.equal(burst.stdout.trim(), '100000000');
          // And 200 MB of stdin into a reader that starts late: bounded all the way.
          const up = await run('sh', ['-c', `head -c 200000000 /dev/zero | node ${BERTH} exec app -- sh -c 'sleep 1; wc -c'`], {
            env: node.env,
          });
          assert.equal(up.stdout.trim(), '200000000', up.stderr);
          const rss = Number(execFileSync('ps', ['-o', 'rss=', '-p', String(node.daemon!.pid)], { encoding: 'utf8' }).trim());
          assert.ok(rss < 400_000, `daemon RSS ${rss} KiB after 100 MB out and 200 MB in`);
          // The buffered API form keeps at most 16 MiB and says it cut the rest.
          const sock = join(node.home, 'berth.sock');
          const res = await run('curl', [
            '-s',
            '--unix-socket',
            sock,
            '-X',
            'POST',
            '-H',
            'content-type: application/json',
            '-d',
            '{"argv":["head","-c","20000000","/dev/zero"]}',
            'http://berth/v1/envs/app/exec',
          ]);
          const j = JSON.parse(res.stdout) as { truncated: boolean; stdout: string; exitCode: number };
          assert.equal(j.truncated, true);
          assert.equal(Buffer.from(j.stdout, 'base64').length, 16 * 1024 * 1024);
        })(),
      ));

    it('gives an interactive terminal with job control, resize and Ctrl-C, and read-only watchers', () =>
      track(
        (async () => {
          const session = `berth-test-${process.pid}-${engine}`;
          const out = join(node.home, 'tmux-exit');
          const tmux = (...args: string[]): string => execFileSync('tmux', args, { encoding: 'utf8' });
          const pane = (): string => tmux('capture-pane', '-p', '-t', session);
          const until = async (re: RegExp, what: string): Promise<void> => {
            for (let i = 0; i < 100; i++) {
              if (re.test(pane())) return;
              await sleep(100);
            }
            assert.fail(`terminal never showed ${what}:\n${pane()}`);
          };
          const envs = Object.entries({ BERTH_HOME: node.home, BERTH_ENGINE: engine, BERTH_NO_AUTOSTART: '1' })
            .map(([k, v]) => `${k}=${v}`)
            .join(' ');
          tmux(
            'new-session',
            '-d',
            '-s',
            session,
            '-x',
            '120',
            '-y',
            '40',
            `env ${envs} node ${BERTH} shell app; echo $? > ${out}; sleep 60`,
          );
          try {
            await until(/workspace#/, 'a prompt');
            tmux('send-keys', '-t', session, 'stty size', 'Enter');
            await until(/^40 120$/m, 'the terminal size');
            tmux('send-keys', '-t', session, 'sleep 300', 'Enter');
            await sleep(300);
            tmux('send-keys', '-t', session, 'C-c');
            tmux('send-keys', '-t', session, 'echo after-interrupt', 'Enter');
            await until(/^after-interrupt$/m, 'a command after Ctrl-C');
            tmux('send-keys', '-t', session, 'sleep 77 &', 'Enter', 'jobs', 'Enter');
            await until(/Running\s+sleep 77 &/, 'a background job');

            const list = await node.json<Array<{ id: string }>>(['shell', 'app', '--list']);
            assert.equal(list.length, 1);
            const watcher = run(process.execPath, [BERTH, 'shell', 'app', '--watch', list[0]!.id], { env: node.env, timeoutMs: 20_000 });
            await sleep(500);
            tmux('resize-window', '-t', session, '-x', '100', '-y', '30');
            tmux('send-keys', '-t', session, 'stty size; echo watched-line', 'Enter');
            await until(/^30 100$/m, 'the new size');
            tmux('send-keys', '-t', session, 'exit 5', 'Enter');
            const w = await watcher;
            assert.match(w.stdout, /watched-line/);
            for (let i = 0; i < 50; i++) {
              try {
                if (readFileSync(out, 'utf8').trim()) break;
              } catch {
                /* not yet */
              }
              await sleep(100);
            }
            assert.equal(readFileSync(out, 'utf8').trim(), '5');
          } finally {
            try {
              tmux('kill-session', '-t', session);
            } catch {
              /* gone */
            }
          }
        })(),
      ));
  });
}

// `berth exec` as an agent's shell runs it: bin/berth as a process, which runs the native client
// (src/cli/native). Each case checks what the user sees, that the native client really ran it
// (BERTH_TRACE=1, and the process is not node), and that the Node CLI shows the very same.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { BERTH, failureTracker, makeRepo, NodeFixture, testEngines } from '../helpers/fixture.js';

interface Seen {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  /** Standard error without the trace lines. */
  stderr: string;
  /** Which client ran the command, from BERTH_TRACE. */
  path: 'native' | 'node';
  trace: string[];
}

const TRACE = /^berth: trace: .*\n/gm;

/** Runs a CLI process to its end; `onStart` gets the process (to signal it). */
function runCli(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  o: { stdin?: Buffer | string; onStart?: (child: ChildProcess, stdout: () => string) => void } = {},
): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...env, BERTH_TRACE: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const all = Buffer.concat(err).toString('utf8');
      const trace = all.match(TRACE) ?? [];
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out),
        stderr: all.replace(TRACE, ''),
        path: trace.some((l) => l.includes('native exec client')) ? 'native' : 'node',
        trace,
      });
    });
    child.stdin.on('error', () => {});
    if (o.onStart) o.onStart(child, () => Buffer.concat(out).toString('utf8'));
    else child.stdin.end(o.stdin ?? '');
  });
}

/** What a user sees, to compare the two clients. */
function shown(s: Seen): { code: number | null; stdout: string; stderr: string } {
  return { code: s.code, stdout: s.stdout.toString('utf8'), stderr: s.stderr };
}

for (const engine of testEngines()) {
  describe(`the fast exec path on ${engine}`, () => {
    let node: NodeFixture;
    let repo: ReturnType<typeof makeRepo>;
    const tracker = failureTracker();
    const track = tracker.track;

    /** `berth ARGS` as a shell runs it: bin/berth itself, so sh and then the native client. */
    const berth = (args: string[], o: Parameters<typeof runCli>[3] & { env?: Record<string, string> } = {}): Promise<Seen> =>
      runCli(BERTH, args, { ...node.env, ...o.env }, o);
    /** The Node CLI, as the other tests run it (`node bin/berth`). */
    const nodeCli = (args: string[], o: Parameters<typeof runCli>[3] & { env?: Record<string, string> } = {}): Promise<Seen> =>
      runCli(process.execPath, [BERTH, ...args], { ...node.env, ...o.env }, o);
    /** Both clients on the same case: the native one ran it, and the user sees the same from both. */
    const both = async (args: string[], o: { stdin?: Buffer | string } = {}): Promise<Seen> => {
      const fast = await berth(args, o);
      const slow = await nodeCli(args, o);
      assert.equal(fast.path, 'native', `the native client ran \`berth ${args.join(' ')}\` (${fast.trace.join('') || 'no trace'})`);
      assert.equal(slow.path, 'node');
      assert.deepEqual(shown(fast), shown(slow), `berth ${args.join(' ')}: native and Node CLI differ`);
      return fast;
    };

    before(async () => {
      repo = makeRepo();
      node = await NodeFixture.start(engine);
      const made = await node.cli(['new', 'fast', '--repo', repo.path]);
      assert.equal(made.code, 0, made.stderr);
    });
    after(async () => {
      await node?.stop(tracker.failed);
      repo?.cleanup();
    });

    it('keeps stdout and stderr apart, with binary output and more than 1 MiB of it', () =>
      track(
        (async () => {
          const small = await both(['exec', 'fast', '--', 'sh', '-c', 'echo out; echo err >&2; echo more out']);
          assert.deepEqual(shown(small), { code: 0, stdout: 'out\nmore out\n', stderr: 'err\n' });

          // 3 MiB of random bytes (every byte value) on stdout, their hash and 1.5 MB on stderr.
          const big = await berth([
            'exec',
            'fast',
            '--',
            'sh',
            '-c',
            'head -c 3145728 /dev/urandom > /tmp/blob; cat /tmp/blob; sha256sum /tmp/blob >&2; head -c 1500000 /dev/zero | tr "\\0" e >&2',
          ]);
          assert.equal(big.path, 'native');
          assert.equal(big.code, 0, big.stderr.slice(0, 500));
          assert.equal(big.stdout.length, 3145728);
          const hash = createHash('sha256').update(big.stdout).digest('hex');
          assert.equal(big.stderr.slice(0, 64), hash, 'stdout arrived byte for byte');
          assert.equal(big.stderr, `${hash}  /tmp/blob\n${'e'.repeat(1500000)}`);
        })(),
      ));

    it('pipes stdin through: 5 MB into sha256sum', () =>
      track(
        (async () => {
          const data = randomBytes(5_000_000);
          const r = await berth(['exec', 'fast', '--', 'sha256sum'], { stdin: data });
          assert.equal(r.path, 'native');
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout.toString(), `${createHash('sha256').update(data).digest('hex')}  -\n`);
          await both(['exec', 'fast', '--', 'sh', '-c', 'wc -c; cat'], { stdin: 'two\nlines\n' });
        })(),
      ));

    it('reads stdin no faster than the command takes it', () =>
      track(
        (async () => {
          // The command reads nothing for 3 s, then all of it. A client that read its stdin
          // regardless would take the whole 64 MiB offered at once; this one stops while the
          // node is backed up. (The command reads to the end: see the report about the agent.)
          const offered = 64 << 20;
          let fed = 0;
          let fedWhileAsleep = -1;
          const chunk = Buffer.alloc(1 << 16, 0x7a);
          const r = await berth(['exec', 'fast', '--', 'sh', '-c', 'sleep 3; wc -c; echo done'], {
            onStart: (child) => {
              const stdin = child.stdin!;
              setTimeout(() => (fedWhileAsleep = fed), 2000);
              const pump = (): void => {
                while (fed < offered) {
                  fed += chunk.length;
                  if (!stdin.write(chunk)) return void stdin.once('drain', pump);
                }
                stdin.end();
              };
              pump();
            },
          });
          assert.equal(r.path, 'native');
          assert.deepEqual([r.code, r.stdout.toString(), r.stderr], [0, `${offered}\ndone\n`, '']);
          assert.ok(
            fedWhileAsleep >= 0 && fedWhileAsleep < 32 << 20,
            `the client took ${fedWhileAsleep} bytes while the command read none`,
          );
        })(),
      ));

    it("gives the command's exit code and berth's one-line errors with their codes", () =>
      track(
        (async () => {
          assert.equal((await both(['exec', 'fast', '--', 'true'])).code, 0);
          assert.equal((await both(['exec', 'fast', '--', 'sh', '-c', 'exit 3'])).code, 3);
          assert.equal((await both(['exec', 'fast', '--', 'sh', '-c', 'echo bye; exit 42'])).code, 42);
          assert.equal((await both(['exec', 'fast', '--', 'sh', '-c', 'kill -TERM $$'])).code, 143);
          const missing = await both(['exec', 'fast', '--', 'no-such-command']);
          assert.deepEqual(shown(missing), { code: 127, stdout: '', stderr: 'berth: command not found: no-such-command\n' });
          const late = await both(['exec', 'fast', '--timeout', '1', '--', 'sleep', '10']);
          assert.deepEqual(shown(late), { code: 124, stdout: '', stderr: 'berth: command timed out after 1s and was killed\n' });
          const unknown = await both(['exec', 'nope', '--', 'true']);
          assert.equal(unknown.code, 4);
          assert.match(unknown.stderr, /^berth: no environment named nope: see `berth ls`.*\n$/);
          for (const bad of ['Bad_Name', '-x', 'a'.repeat(64), 'é']) {
            const r = await both(['exec', bad, '--', 'true']);
            assert.equal(r.code, 3, bad);
            assert.equal(
              r.stderr,
              `berth: invalid environment name ${JSON.stringify(bad)}: use 1-63 lowercase letters, digits and dashes, starting and ending with a letter or digit\n`,
            );
          }
          const paused = await node.cli(['pause', 'fast']);
          assert.equal(paused.code, 0, paused.stderr);
          try {
            const r = await both(['exec', 'fast', '--', 'true']);
            assert.equal(r.code, 12);
            assert.match(r.stderr, /^berth: environment fast is paused: .*--resume\n$/);
            const resumed = await berth(['exec', 'fast', '--resume', '--', 'echo', 'awake']);
            assert.deepEqual([resumed.path, resumed.code, resumed.stdout.toString()], ['native', 0, 'awake\n']);
          } finally {
            await node.cli(['resume', 'fast']);
          }
        })(),
      ));

    it('passes --env, --cwd and --timeout on', () =>
      track(
        (async () => {
          const r = await both([
            'exec',
            'fast',
            '--env',
            'GREETING=hello there',
            '--env=QUOTE="\\',
            '--env',
            'GREETING=hi',
            '--cwd',
            'src',
            '--timeout',
            '30',
            '--',
            'sh',
            '-c',
            'echo "$GREETING|$QUOTE|$BERTH_ENV"; pwd; ls',
          ]);
          assert.deepEqual(shown(r), { code: 0, stdout: 'hi|"\\|fast\n/workspace/src\nindex.js\n', stderr: '' });
          const quick = await both(['exec', 'fast', '--timeout', '0.5', '--', 'sleep', '5']);
          assert.deepEqual(shown(quick), { code: 124, stdout: '', stderr: 'berth: command timed out after 0.5s and was killed\n' });
        })(),
      ));

    for (const sig of ['SIGINT', 'SIGHUP'] as const) {
      it(`passes ${sig} from the client on to the command, which decides how it ends`, () =>
        track(
          (async () => {
            const trap = sig.slice(3);
            const args = ['exec', 'fast', '--', 'sh', '-c', `trap "echo got; exit 7" ${trap}; echo ready; sleep 30 & wait`];
            const signalled = (exe: (pid: number) => void) => (child: ChildProcess, stdout: () => string) => {
              child.stdin?.end();
              const poll = setInterval(() => {
                if (!stdout().includes('ready')) return;
                clearInterval(poll);
                exe(child.pid!);
                child.kill(sig);
              }, 20);
              child.once('close', () => clearInterval(poll));
            };
            let exe = '';
            const fast = await berth(args, { onStart: signalled((pid) => (exe = readlinkSync(`/proc/${pid}/exe`))) });
            assert.match(exe, /\/dist\/src\/cli\/native\/berth-exec$/, 'the client process is the native one, not node');
            assert.equal(fast.path, 'native');
            assert.deepEqual(shown(fast), { code: 7, stdout: 'ready\ngot\n', stderr: '' });
            const slow = await nodeCli(args, { onStart: signalled(() => {}) });
            assert.deepEqual(shown(slow), shown(fast), 'the Node CLI ends the same way');
          })(),
        ));
    }

    it('runs many commands at once through the one launcher, each with its own output, input and exit code', () =>
      track(
        (async () => {
          const runs = await Promise.all(
            Array.from({ length: 24 }, (_, i) =>
              berth(['exec', 'fast', '--', 'sh', '-c', `read x; echo "out ${i} $x"; echo "err ${i}" >&2; exit ${i % 7}`], {
                stdin: `in${i}\n`,
              }),
            ),
          );
          runs.forEach((r, i) => {
            assert.equal(r.path, 'native');
            assert.deepEqual(shown(r), { code: i % 7, stdout: `out ${i} in${i}\n`, stderr: `err ${i}\n` });
          });
        })(),
      ));

    it('a launcher killed under its commands ends them all, and the next command gets a new one', () =>
      track(
        (async () => {
          // The launcher is `berth-run --serve` whose parent is the agent, a node process (the
          // supervisors it forks keep its command line; orphaned, their parent is the init).
          const launchers =
            'for p in /proc/[0-9]*; do case "$(tr "\\0" " " < $p/cmdline 2>/dev/null)" in *berth-run\\ --serve*) ' +
            'read -r _ _ _ pp _ < $p/stat; read -r c < /proc/$pp/comm; [ "$c" = node ] && echo ${p#/proc/};; esac; done';
          const before = await berth(['exec', 'fast', '--', 'sh', '-c', launchers]);
          const first = before.stdout.toString().trim();
          assert.match(first, /^\d+$/, `one launcher: ${before.stdout.toString()}`);
          // A command that leaves a process behind, running when the launcher goes.
          let sawStart!: () => void;
          const started = new Promise<void>((r) => (sawStart = r));
          const long = berth(['exec', 'fast', '--', 'sh', '-c', 'sleep 300 & echo started; sleep 300'], {
            onStart: (child, stdout) => {
              child.stdin?.end();
              const poll = setInterval(() => stdout().includes('started') && (clearInterval(poll), sawStart()), 20);
              child.once('close', () => clearInterval(poll));
            },
          });
          await started;
          const killer = await berth(['exec', 'fast', '--', 'sh', '-c', `sleep 0.5; kill -9 ${first}; sleep 5`]);
          assert.equal(killer.code, 137, `the command that killed it ends too: ${killer.stderr}`);
          assert.deepEqual(shown(await long), { code: 137, stdout: 'started\n', stderr: '' });
          // Nothing either command started is left, and a new launcher runs the next one.
          const sleeping =
            'n=0; for p in /proc/[0-9]*; do case "$(tr "\\0" " " < $p/cmdline 2>/dev/null)" in "sleep 300 ") n=$((n+1));; esac; done; echo $n';
          const left = await berth(['exec', 'fast', '--', 'sh', '-c', `${launchers}; ${sleeping}`]);
          const lines = left.stdout.toString().trim().split('\n');
          const [again, asleep] = [lines[0], lines.at(-1)];
          assert.equal(lines.length, 2, `one launcher, then the count: ${left.stdout.toString()}`);
          assert.match(again ?? '', /^\d+$/);
          assert.notEqual(again, first);
          assert.equal(asleep, '0', 'no sleep 300 is left');
        })(),
      ));

    it('--json still goes through the Node CLI and prints the same JSON', () =>
      track(
        (async () => {
          const args = ['exec', 'fast', '--json', '--', 'sh', '-c', 'echo out; echo err >&2; exit 5'];
          const fast = await berth(args);
          assert.equal(fast.path, 'node');
          assert.match(fast.trace.join(''), /the Node CLI runs this \(--json\)/);
          const slow = await nodeCli(args);
          const strip = (s: Seen): unknown => ({ ...(JSON.parse(s.stdout.toString()) as object), timing: undefined });
          assert.deepEqual(strip(fast), {
            exitCode: 5,
            signal: null,
            timedOut: false,
            stdout: 'out\n',
            stderr: 'err\n',
            timing: undefined,
          });
          assert.deepEqual(strip(fast), strip(slow));
          assert.deepEqual([fast.code, fast.stderr], [5, '']);
        })(),
      ));
  });
}

describe('the fast exec path hands over to the Node CLI', () => {
  const home = mkdtempSync(join(tmpdir(), 'berth-fast-cli-'));
  after(() => rmSync(home, { recursive: true, force: true }));
  const env = { ...process.env, BERTH_HOME: home, BERTH_NO_AUTOSTART: '1' };

  it('with no daemon, for NODE/ENV names, usage errors and unknown options, saying what the Node CLI says', async () => {
    for (const args of [
      ['exec', 'fast', '--', 'true'],
      ['exec', 'elsewhere/fast', '--', 'true'],
      ['exec', 'fast'],
      ['exec', 'fast', '--env', 'novalue', '--', 'true'],
      ['exec', 'fast', '--timeout', 'soon', '--', 'true'],
      ['exec', 'fast', '--bogus', '--', 'true'],
    ]) {
      const fast = await runCli(BERTH, args, env);
      const slow = await runCli(process.execPath, [BERTH, ...args], env);
      assert.match(fast.trace.join(''), /the Node CLI runs this/, args.join(' '));
      assert.equal(fast.path, 'node');
      assert.deepEqual(shown(fast), shown(slow), args.join(' '));
      assert.notEqual(fast.code, 0, args.join(' '));
      assert.match(fast.stderr, /^berth: .+\n$/);
    }
  });
});

// The framing a real daemon seldom uses, from a WebSocket server of the test's own on a unix
// socket: fragmented binary and text messages, a frame over 64 KiB, and a ping.
describe('the native exec client speaks WebSocket', () => {
  const home = mkdtempSync(join(tmpdir(), 'berth-fast-ws-'));
  const wss = new WebSocketServer({ noServer: true });
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  const seen: { path?: string; request?: string; pong?: string } = {};
  const big = Buffer.alloc(200_000, 0x61);

  before(async () => {
    server.on('upgrade', (req, socket, head) => {
      seen.path = req.url;
      wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
        ws.once('message', (first) => {
          seen.request = String(first);
          ws.once('pong', (data) => {
            seen.pong = String(data);
            ws.send(Buffer.from('\x01hel'), { binary: true, fin: false });
            ws.send(Buffer.from('lo '), { binary: true, fin: false });
            ws.send(Buffer.from('world\n'), { binary: true, fin: true });
            ws.send(Buffer.concat([Buffer.of(1), big]));
            ws.send(Buffer.from('\x02err\n'));
            ws.send('{"exit":{"exitCode":', { fin: false });
            ws.send('9,"signal":null,"timedOut":false}}', { fin: true });
            ws.close();
          });
          ws.ping('are you there');
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(join(home, 'berth.sock'), resolve));
  });
  after(async () => {
    for (const c of wss.clients) c.terminate();
    await new Promise((resolve) => server.close(resolve));
    rmSync(home, { recursive: true, force: true });
  });

  it('takes fragments, long frames and pings, and sends the request the Node CLI sends', async () => {
    const args = [
      'exec',
      'fake',
      '--env',
      'B=2',
      '--env',
      'A=1',
      '--env',
      '7=x',
      '--env',
      'B=3',
      '--cwd',
      'src',
      '--timeout',
      '2.5',
      '--',
      'sh',
      '-c',
      'a "b"\n',
    ];
    const r = await runCli(BERTH, args, { ...process.env, BERTH_HOME: home, BERTH_NO_AUTOSTART: '1' });
    assert.equal(r.path, 'native', r.trace.join(''));
    assert.deepEqual({ code: r.code, stderr: r.stderr }, { code: 9, stderr: 'err\n' });
    assert.equal(r.stdout.toString(), 'hello world\n' + big.toString());
    assert.equal(seen.path, '/v1/envs/fake/exec/ws');
    assert.equal(seen.pong, 'are you there');
    // What cmdExec writes for the same arguments: JSON.stringify's order and escaping.
    const env: Record<string, string> = {};
    for (const kv of ['B=2', 'A=1', '7=x', 'B=3']) env[kv.split('=')[0]!] = kv.split('=')[1]!;
    const expected = JSON.stringify({ argv: ['sh', '-c', 'a "b"\n'], cwd: 'src', env, timeoutMs: 2500, interactiveStdin: true });
    assert.equal(seen.request, expected);
  });
});

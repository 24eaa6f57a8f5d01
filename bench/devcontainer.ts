// Devcontainer toolchain builds: a rebuild after changing one late Dockerfile line, berth
// (`berth toolchain build --devcontainer`) against `devcontainer build` on the same file and the
// same engine (Docker: the devcontainers CLI drives a docker CLI), interleaved in one run; and a
// no-change rebuild through berth. Prints JSON.
//
//   node dist/bench/devcontainer.js [--n 5] [--max-seconds 240]
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { BerthNode, DEVCONTAINER, log, mustRun, p50, parseOptions, ratio, runBench, setDeadline, tempDir, timed } from './lib.js';

const opts = parseOptions({ n: 5, 'max-seconds': 240 });
setDeadline(opts['max-seconds'] * 1000);
const report: Record<string, unknown> = { bench: 'devcontainer', engine: 'docker', n: opts.n, loadavg_before: loadavg() };

runBench(report, (opts['max-seconds'] + 60) * 1000, async () => {
  const images = await mustRun('docker', ['images', '--format', '{{.Repository}}:{{.Tag}}', 'berth-toolchain']);
  const image = images.split('\n').find((l) => /^berth-toolchain:[0-9a-f]{16}$/.test(l.trim()));
  if (!image) throw new Error('no berth-toolchain image on the docker engine: run scripts/toolchain-into.sh docker');
  const id = (await mustRun('docker', ['image', 'inspect', '--format', '{{.Id}}', image])).trim();
  const node = await BerthNode.start('docker', id);
  const dir = tempDir('berth-bench-dcbuild-');
  mkdirSync(join(dir, '.devcontainer'));
  writeFileSync(join(dir, '.devcontainer', 'devcontainer.json'), JSON.stringify({ build: { dockerfile: 'Dockerfile' } }) + '\n');
  const dockerfile = (late: string): void =>
    writeFileSync(
      join(dir, '.devcontainer', 'Dockerfile'),
      `FROM ${image}\nRUN head -c 50000000 /dev/urandom | sha256sum > /early1\nRUN head -c 50000000 /dev/urandom | sha256sum > /early2\nRUN echo ${late} > /late\n`,
    );
  const berth = async (): Promise<void> => {
    const r = await node.cli(['toolchain', 'build', '--devcontainer', dir, '--json']);
    if (r.code !== 0) throw new Error(`berth toolchain build exited ${r.code}: ${r.stderr.trim()}`);
  };
  const theirs = async (): Promise<void> => {
    await mustRun(DEVCONTAINER, ['build', '--workspace-folder', dir, '--docker-path', 'docker', '--image-name', 'berth-bench-dc:latest'], {
      cwd: dir,
      timeoutMs: 300_000,
    });
  };
  log('warm-up: a first build on each side');
  dockerfile('warm');
  await berth();
  await theirs();
  const late: { berth: number[]; devcontainer: number[] } = { berth: [], devcontainer: [] };
  for (let i = 0; i < opts.n; i++) {
    dockerfile(`b-${i}-${Date.now()}`);
    late.berth.push(await timed(berth));
    dockerfile(`d-${i}-${Date.now()}`);
    late.devcontainer.push(await timed(theirs));
  }
  const nochange: number[] = [];
  for (let i = 0; i < opts.n; i++) nochange.push(await timed(berth));
  report.late_line_rebuild_ms = { berth_p50: p50(late.berth), devcontainer_build_p50: p50(late.devcontainer), samples: late };
  report.late_line_speedup = ratio(p50(late.devcontainer), p50(late.berth));
  report.no_change_rebuild_ms = { berth_p50: p50(nochange), samples: nochange, target_ms: 300 };
  report.drift = 'not measured: berth drift is not built yet';
  report.loadavg_after = loadavg();
  await mustRun('docker', ['rmi', '-f', 'berth-bench-dc:latest']).catch(() => '');
});

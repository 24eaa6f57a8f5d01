// Builds the default toolchain image from the Debian mirror the machine already uses
// (mmdebstrap), packs it as an image archive with a fixed timestamp, and loads it into the
// engine. The image id is the sha256 of its config, so the same build has the same digest in
// Podman and in Docker. Results are cached by a key over the recipe.
import { spawn } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { canonicalJson, sha256Hex } from '../core/canonical-json.js';
import { mirrorFor, parseDeb822, parseOneLine, type AptSource } from '../core/apt-sources.js';
import { BerthError } from '../core/errors.js';
import { berthCache } from '../core/home.js';
import type { Engine } from '../engine/engine.js';
import { imageArchive } from './archive.js';
import { linkLayer } from './layer-cache.js';

export const DEFAULT_TAG = 'berth-toolchain:default';
const RECIPE_VERSION = 3;
/**
 * npm comes from the npm registry, pinned by version and integrity, not from Debian: Debian's
 * `npm` package pulls in some 870 separately packaged modules (about 150 MB and 25,000 files), which
 * made every toolchain transfer and load three times slower. This one tarball is self-contained.
 */
export const NPM_RELEASE = {
  version: '10.9.2',
  integrity: 'sha512-iriPEPIkoMYUy3F6f3wwSZAU93E0Eg6cHwIR6jzzOXWSy+SD/rOODEs74cVONHKSx2obXtuUoyidVEhISrisgQ==',
};
const SUITE = 'bookworm';
const EPOCH = 1_700_000_000; // fixed timestamps make the archive reproducible

export const DEFAULT_PACKAGES = [
  'bash',
  'coreutils',
  'git',
  'curl',
  'ca-certificates',
  'python3',
  'nodejs',
  'procps',
  'iproute2',
  'less',
  'openssh-client',
  // For `sftp` and `scp` through berth's SSH endpoint (and editors that copy files over SFTP).
  'openssh-sftp-server',
];

export interface BuildProgress {
  phase: 'resolve' | 'bootstrap' | 'pack' | 'load' | 'done';
  message: string;
  /** 0..1 where known. */
  fraction?: number;
}

export interface BuildResult {
  digest: string;
  tag: string;
  cached: 'image' | 'archive' | 'none';
  key: string;
  seconds: number;
}

export function readAptSources(root = '/etc/apt'): AptSource[] {
  const out: AptSource[] = [];
  const list = join(root, 'sources.list');
  if (existsSync(list)) out.push(...parseOneLine(readFileSync(list, 'utf8')));
  const dir = join(root, 'sources.list.d');
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).sort()) {
      const text = readFileSync(join(dir, f), 'utf8');
      if (f.endsWith('.sources')) out.push(...parseDeb822(text));
      else if (f.endsWith('.list')) out.push(...parseOneLine(text));
    }
  }
  return out;
}

export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return berthCache(env);
}

export async function buildBaseImage(
  engine: Engine,
  opts: { packages?: string[]; onProgress?: (p: BuildProgress) => void; signal?: AbortSignal; force?: boolean } = {},
): Promise<BuildResult> {
  const started = Date.now();
  const progress = opts.onProgress ?? (() => {});
  const packages = [...(opts.packages ?? DEFAULT_PACKAGES)].sort();
  const sources = readAptSources();
  const main = mirrorFor(sources, SUITE);
  if (!main) {
    throw new BerthError(
      'invalid_request',
      `no apt source for Debian ${SUITE} found in /etc/apt`,
      'configure a Debian mirror in /etc/apt/sources.list.d',
    );
  }
  const security = sources.find((s) => s.suites.includes(`${SUITE}-security`));
  const updates = sources.find((s) => s.suites.includes(`${SUITE}-updates`));
  const recipe = { v: RECIPE_VERSION, suite: SUITE, packages, npm: NPM_RELEASE, main, security, updates, arch: process.arch };
  const key = sha256Hex(canonicalJson(recipe)).slice(0, 16);
  const tag = `berth-toolchain:${key}`;
  const dir = join(cacheDir(), 'toolchains', key);
  const metaPath = join(dir, 'image.json');
  progress({ phase: 'resolve', message: `recipe ${key} from mirror ${main.uri}` });

  if (!opts.force && existsSync(metaPath)) {
    const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as { digest: string; diffId?: string };
    const have = await engine.inspectImage(meta.digest, opts.signal);
    if (have) {
      if (meta.diffId && existsSync(join(dir, 'rootfs.tar'))) linkLayer(join(dir, 'rootfs.tar'), meta.diffId);
      await tagDefault(engine, meta.digest, dir, opts.signal);
      progress({ phase: 'done', message: `cached image ${meta.digest}`, fraction: 1 });
      return { digest: meta.digest, tag, cached: 'image', key, seconds: (Date.now() - started) / 1000 };
    }
  }

  mkdirSync(dir, { recursive: true });
  const rootfs = join(dir, 'rootfs.tar');
  let cached: BuildResult['cached'] = 'archive';
  if (opts.force || !existsSync(rootfs)) {
    cached = 'none';
    const npmTarball = await fetchNpm(progress, opts.signal);
    await mmdebstrap(
      recipe.packages,
      npmTarball,
      [...new Set([main, updates, security])].filter((s): s is AptSource => !!s),
      rootfs,
      progress,
      opts.signal,
    );
  }

  progress({ phase: 'pack', message: 'hashing the root filesystem' });
  const diffId = 'sha256:' + (await hashFile(rootfs));
  const config = canonicalJson({
    architecture: process.arch === 'x64' ? 'amd64' : process.arch,
    os: 'linux',
    created: new Date(EPOCH * 1000).toISOString(),
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG=C.UTF-8'],
      Cmd: ['/bin/bash'],
      WorkingDir: '/workspace',
      Labels: { 'org.berth.toolchain': key, 'org.berth.packages': packages.join(',') },
    },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created: new Date(EPOCH * 1000).toISOString(), created_by: `berth toolchain build (mmdebstrap ${SUITE})` }],
  });
  const digest = 'sha256:' + sha256Hex(config);
  const archive = imageArchive(config, digest, [tag], [{ path: rootfs, diffId }], (sent, total) =>
    progress({ phase: 'load', message: 'loading into the engine', fraction: sent / total }),
  );
  // Keep the layer where registry pulls look for it, so it is never transferred here again.
  linkLayer(rootfs, diffId);
  await engine.loadImage(archive, opts.signal);
  const loaded = await engine.inspectImage(digest, opts.signal);
  if (!loaded) throw new BerthError('internal', `the engine loaded the archive but has no image ${digest}`);
  writeFileSync(metaPath + '.tmp', JSON.stringify({ digest, diffId, tag, key, packages, builtAt: new Date().toISOString() }, null, 2));
  renameSync(metaPath + '.tmp', metaPath);
  await tagDefault(engine, digest, dir, opts.signal);
  progress({ phase: 'done', message: `image ${digest}`, fraction: 1 });
  return { digest, tag, cached, key, seconds: (Date.now() - started) / 1000 };
}

/** Records which digest is the node's default toolchain. */
async function tagDefault(_engine: Engine, digest: string, _dir: string, _signal?: AbortSignal): Promise<void> {
  setDefaultToolchain(digest);
}

export function setDefaultToolchain(digest: string): void {
  const dir = join(cacheDir(), 'toolchains');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'default.json');
  writeFileSync(path + '.tmp', JSON.stringify({ digest }));
  renameSync(path + '.tmp', path);
}

export function defaultToolchainDigest(env: NodeJS.ProcessEnv = process.env): string | null {
  const path = join(cacheDir(env), 'toolchains', 'default.json');
  if (!existsSync(path)) return null;
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { digest?: string }).digest ?? null;
  } catch {
    return null;
  }
}

/**
 * The pinned npm release as a tarball in the cache, fetched with the machine's own npm (so its
 * registry, proxy and CA settings apply) and checked against the pinned integrity.
 */
async function fetchNpm(progress: (p: BuildProgress) => void, signal?: AbortSignal): Promise<string> {
  const dir = join(cacheDir(), 'downloads');
  const path = join(dir, `npm-${NPM_RELEASE.version}.tgz`);
  if (existsSync(path) && integrityOf(readFileSync(path)) === NPM_RELEASE.integrity) return path;
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.pack-${process.pid}-${Date.now()}`);
  mkdirSync(tmp, { recursive: true });
  progress({ phase: 'resolve', message: `fetching npm ${NPM_RELEASE.version} from the npm registry` });
  try {
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('npm', ['pack', `npm@${NPM_RELEASE.version}`, '--pack-destination', tmp, '--json', '--ignore-scripts'], {
        cwd: tmp,
        stdio: ['ignore', 'pipe', 'pipe'],
        signal,
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.on('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.code === 'ENOENT'
            ? new BerthError('invalid_request', 'npm is not installed on this machine', 'install Node.js 20 with npm')
            : err,
        ),
      );
      child.on('close', (code) =>
        code === 0
          ? resolve(stdout)
          : reject(
              new BerthError(
                'invalid_request',
                `could not fetch npm ${NPM_RELEASE.version} from the npm registry: ${stderr.trim().split('\n').slice(-1)[0] ?? `exit ${code}`}`,
              ),
            ),
      );
    });
    const file = (JSON.parse(out) as Array<{ filename: string }>)[0]?.filename;
    const got = file ? join(tmp, file) : null;
    if (!got || !existsSync(got)) throw new BerthError('internal', `npm pack gave no tarball for npm@${NPM_RELEASE.version}`);
    const integrity = integrityOf(readFileSync(got));
    if (integrity !== NPM_RELEASE.integrity)
      throw new BerthError(
        'corrupt',
        `npm ${NPM_RELEASE.version} from the registry has integrity ${integrity.slice(0, 20)}…, not the pinned one`,
      );
    renameSync(got, path);
    return path;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function integrityOf(data: Buffer): string {
  return 'sha512-' + createHash('sha512').update(data).digest('base64');
}

const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

function mmdebstrap(
  packages: string[],
  npmTarball: string,
  sources: AptSource[],
  out: string,
  progress: (p: BuildProgress) => void,
  signal?: AbortSignal,
): Promise<void> {
  const tmp = out + '.partial';
  rmSync(tmp, { force: true });
  const args = [
    '--variant=minbase',
    `--include=${packages.join(',')}`,
    '--format=tar',
    '--aptopt=APT::Install-Recommends "false"',
    '--dpkgopt=path-exclude=/usr/share/man/*',
    '--dpkgopt=path-exclude=/usr/share/doc/*',
    '--dpkgopt=path-include=/usr/share/doc/*/copyright',
    '--dpkgopt=path-exclude=/usr/share/locale/*',
    '--dpkgopt=path-exclude=/usr/share/info/*',
    '--customize-hook=mkdir -p "$1/workspace" "$1/.berth"',
    // npm, unpacked where Node looks for global packages, with its two commands on PATH.
    `--customize-hook=mkdir -p "$1/usr/local/lib/node_modules/npm" && tar -xzf ${shq(npmTarball)} -C "$1/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner && ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm" && ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"`,
    '--customize-hook=rm -rf "$1/var/cache/apt/"*.bin "$1/var/lib/apt/lists/"* "$1/var/log/"*',
    SUITE,
    tmp,
    // One mirror line per suite of each source the machine has configured.
    ...sources.flatMap((s) => s.suites.map((suite) => `deb ${s.uri} ${suite} ${s.components.join(' ') || 'main'}`)),
  ];
  const stages: Array<[RegExp, string, number]> = [
    [/chroot architecture/, 'setting up', 0.05],
    [/downloading packages/, 'downloading packages', 0.15],
    [/extracting archives/, 'extracting', 0.35],
    [/installing essential packages/, 'installing essential packages', 0.5],
    [/installing remaining packages/, 'installing packages', 0.7],
    [/running customize-hook|cleaning package lists/, 'cleaning up', 0.9],
    [/creating tarball/, 'writing the tarball', 0.95],
  ];
  return new Promise((resolve, reject) => {
    progress({ phase: 'bootstrap', message: `mmdebstrap ${SUITE} (${packages.length} packages)`, fraction: 0 });
    const child = spawn('mmdebstrap', args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SOURCE_DATE_EPOCH: String(EPOCH), LC_ALL: 'C.UTF-8' },
      signal,
    });
    const tail: string[] = [];
    const onLine = (line: string): void => {
      tail.push(line);
      if (tail.length > 30) tail.shift();
      for (const [re, label, fraction] of stages) if (re.test(line)) progress({ phase: 'bootstrap', message: label, fraction });
    };
    let buf = '';
    const feed = (c: Buffer): void => {
      buf += c.toString('utf8');
      const lines = buf.split(/[\n\r]/);
      buf = lines.pop() ?? '';
      lines.forEach(onLine);
    };
    child.stdout.on('data', feed);
    child.stderr.on('data', feed);
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT'
          ? new BerthError('invalid_request', 'mmdebstrap is not installed', 'run scripts/setup.sh, or apt-get install mmdebstrap')
          : err,
      ),
    );
    child.on('close', (code) => {
      if (code === 0) {
        renameSync(tmp, out);
        resolve();
      } else {
        rmSync(tmp, { force: true });
        reject(new BerthError('internal', `mmdebstrap failed (exit ${code}): ${tail.slice(-3).join(' | ')}`));
      }
    });
  });
}

function hashFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (c) => h.update(c))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject);
  });
}

// Commits move between nodes with git's own transport, carried by berth: the fetching node
// runs `git fetch ext::…`, whose helper (`berth git-upload-pack`) runs `git upload-pack` in
// the remote environment through the node API. No shared git server is needed.
//
// The route exists for one thing: fetching commits from an environment on another berth
// node. So before git runs, the daemon checks that the URL is a berth node's (http or https,
// not a link-local or cloud-metadata address) and that the node answers `GET /v1/node` with
// the token given, within a few seconds; git then talks to the address that was checked. Git
// and its helper run in their own process group, which is killed whole when the fetch stalls,
// runs too long or its caller goes away.
import { spawn } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError } from '../core/errors.js';
import { validateEnvName } from '../core/names.js';
import { ensureMirror, hasCommit, isRemoteRepo, mirrorPath } from '../workspace/git.js';

import type { FetchRequest } from '../core/contract.js';

export type { FetchRequest };

const CLI = resolve(fileURLToPath(import.meta.url), '..', '..', 'cli', 'main.js');
/** The node must answer `GET /v1/node` within this (connecting included). */
const PROBE_TIMEOUT_MS = 5000;
/** A fetch that shows no progress for this long has stalled. */
const STALL_MS = 30_000;
/** And none runs longer than this. */
const FETCH_TIMEOUT_MS = 10 * 60_000;

export async function fetchFromEnv(
  cacheRoot: string,
  req: FetchRequest,
  signal?: AbortSignal,
): Promise<{ fetched: string[]; present: string[] }> {
  validateRepoKey(req.repo);
  validateEnvName(req.remote.env);
  const target = parseNodeUrl(req.remote.url);
  const mirror = mirrorPath(cacheRoot, req.repo);
  const present: string[] = [];
  const want: string[] = [];
  for (const c of req.commits) {
    if (existsSync(join(mirror, 'HEAD')) && (await hasCommit(mirror, c))) present.push(c);
    else want.push(c);
  }
  if (!want.length) return { fetched: want, present };
  const pinned = await checkBerthNode(target, req.remote, signal);
  const fresh = !existsSync(join(mirror, 'HEAD'));
  await ensureMirror(cacheRoot, req.repo, signal);
  try {
    await runFetch(mirror, want, { ...req.remote, url: pinned }, signal);
  } catch (err) {
    // Nothing half-made: a mirror made for this fetch goes if the fetch brought nothing.
    if (fresh && isEmptyMirror(mirror)) rmSync(mirror, { recursive: true, force: true });
    throw err;
  }
  return { fetched: want, present };
}

function isEmptyMirror(mirror: string): boolean {
  try {
    return readdirSync(join(mirror, 'objects', 'pack')).length === 0 && !existsSync(join(mirror, 'refs', 'berth'));
  } catch {
    return true;
  }
}

/** The mirror key is a repository as berth records it: an absolute path or a git URL. */
function validateRepoKey(repo: string): void {
  const printable = !/[\u0000-\u001f\u007f]/.test(repo);
  const ok = printable && (isRemoteRepo(repo) ? !/\s/.test(repo) : repo.startsWith('/') && resolve(repo) === repo);
  if (!ok) {
    throw new BerthError(
      'invalid_request',
      `invalid repository ${JSON.stringify(repo.slice(0, 200))}`,
      'give an absolute path or a git URL',
    );
  }
}

interface NodeTarget {
  url: URL;
  tls: boolean;
  host: string;
  port: number;
}

function parseNodeUrl(raw: string): NodeTarget {
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    /* reported below */
  }
  const bad = (why: string): BerthError =>
    new BerthError(
      'invalid_request',
      `remote url ${JSON.stringify(raw.slice(0, 200))} ${why}`,
      'give a berth node as http://HOST:PORT or https://HOST:PORT',
    );
  if (!url) throw bad('is not a URL');
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad('is not http or https');
  if (url.username || url.password || url.search || url.hash || (url.pathname !== '/' && url.pathname !== '')) {
    throw bad('must name only a host and port');
  }
  const tls = url.protocol === 'https:';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return { url, tls, host, port: url.port ? Number(url.port) : tls ? 443 : 80 };
}

/** Addresses no berth node has: link-local (cloud metadata lives there), multicast, unspecified. */
const FORBIDDEN = new BlockList();
FORBIDDEN.addSubnet('0.0.0.0', 8, 'ipv4');
FORBIDDEN.addSubnet('169.254.0.0', 16, 'ipv4');
FORBIDDEN.addSubnet('224.0.0.0', 3, 'ipv4'); // multicast and reserved, broadcast included
FORBIDDEN.addAddress('100.100.100.200', 'ipv4'); // a cloud's metadata service outside link-local
FORBIDDEN.addAddress('::', 'ipv6');
FORBIDDEN.addSubnet('fe80::', 10, 'ipv6');
FORBIDDEN.addSubnet('ff00::', 8, 'ipv6');
FORBIDDEN.addAddress('fd00:ec2::254', 'ipv6');

function forbidden(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (mapped) return FORBIDDEN.check(mapped, 'ipv4');
  return FORBIDDEN.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');
}

async function resolveHost(t: NodeTarget, signal: AbortSignal): Promise<string> {
  if (isIP(t.host)) return t.host;
  const found = await Promise.race([
    lookup(t.host, { all: true }),
    new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
  ]).catch((err: unknown) => {
    throw unreachable(t, err);
  });
  if (!found.length) throw unreachable(t, new Error('no address'));
  return (found.find((a) => a.family === 4) ?? found[0]!).address;
}

/**
 * Checks that a berth node answers at `t` with this token; returns the URL git is to use,
 * pinned to the address that was checked (https is pinned by its certificate instead).
 */
async function checkBerthNode(t: NodeTarget, remote: FetchRequest['remote'], outer?: AbortSignal): Promise<string> {
  const timeout = AbortSignal.timeout(PROBE_TIMEOUT_MS);
  const signal = outer ? AbortSignal.any([outer, timeout]) : timeout;
  const address = await resolveHost(t, signal);
  if (forbidden(address)) {
    throw new BerthError(
      'invalid_request',
      `remote url ${t.url.origin} is at ${address}, a link-local, multicast or metadata address: no berth node is there`,
      'give the address of a berth node',
    );
  }
  const res = await new Promise<{ status: number; body: string }>((resolvePromise, reject) => {
    const headers: Record<string, string> = { host: t.url.host, accept: 'application/json' };
    if (remote.token) headers.authorization = `Bearer ${remote.token}`;
    const options = { host: address, port: t.port, path: '/v1/node', headers, signal, agent: false as const };
    const onRes = (r: http.IncomingMessage): void => {
      const chunks: Buffer[] = [];
      let size = 0;
      r.on('data', (c: Buffer) => {
        size += c.length;
        if (size > 64 * 1024) r.destroy(new Error('the answer is too large'));
        else chunks.push(c);
      });
      r.on('end', () => resolvePromise({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      r.on('error', reject);
    };
    const q = t.tls
      ? https.get({ ...options, servername: isIP(t.host) ? undefined : t.host, ca: remote.ca || undefined }, onRes)
      : http.get(options, onRes);
    q.on('error', reject);
  }).catch((err: unknown) => {
    if (outer?.aborted) throw new BerthError('interrupted', 'the request was cancelled');
    throw unreachable(t, timeout.aborted ? new Error(`no answer within ${PROBE_TIMEOUT_MS / 1000} s`) : err);
  });
  if (res.status === 401) {
    throw new BerthError('unauthorized', `the node at ${t.url.origin} refused the token`, 'check the token given for that node');
  }
  if (res.status !== 200 || !isNodeInfo(res.body)) {
    throw new BerthError(
      'invalid_request',
      `${t.url.origin} is not a berth node (GET /v1/node answered HTTP ${res.status}${res.status === 200 ? ' without node information' : ''})`,
      'give the URL of a berth node (`berth node ls`)',
    );
  }
  if (t.tls || isIP(t.host)) return t.url.origin;
  return `http://${isIP(address) === 6 ? `[${address}]` : address}:${t.port}`;
}

function isNodeInfo(body: string): boolean {
  try {
    const v = JSON.parse(body) as { node?: unknown; version?: unknown; engine?: { name?: unknown } };
    return typeof v.node === 'string' && typeof v.version === 'string' && typeof v.engine?.name === 'string';
  } catch {
    return false;
  }
}

function unreachable(t: NodeTarget, err: unknown): BerthError {
  const e = err as NodeJS.ErrnoException;
  const why = e?.code ?? e?.message ?? String(err);
  return new BerthError(
    'daemon_unreachable',
    `no berth node answers at ${t.url.origin}: ${why}`,
    'check that the node is up and reachable from here',
  );
}

/** `git fetch` through the helper, in a process group of its own that is killed whole. */
function runFetch(mirror: string, want: string[], remote: FetchRequest['remote'], outer?: AbortSignal): Promise<void> {
  const helper = `ext::${process.execPath} ${CLI} git-upload-pack %S`;
  const child = spawn(
    'git',
    [
      '-c',
      'protocol.ext.allow=always',
      '-C',
      mirror,
      'fetch',
      '--progress', // the progress it reports is how a stall is told from a slow fetch
      '--no-tags',
      helper,
      ...want.map((c) => `+${c}:refs/berth/pins/${c}`),
    ],
    {
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        ...process.env,
        GIT_TERMINAL_PROMPT: '0',
        BERTH_UPLOAD_URL: remote.url,
        BERTH_UPLOAD_TOKEN: remote.token ?? '',
        BERTH_UPLOAD_CA: remote.ca ?? '',
        BERTH_UPLOAD_ENV: remote.env,
      },
    },
  );
  const killGroup = (): void => {
    try {
      process.kill(-child.pid!, 'SIGKILL'); // git, its helper and anything they started
    } catch {
      /* gone already */
    }
  };
  return new Promise<void>((resolvePromise, reject) => {
    let stderr = '';
    let stopped: BerthError | undefined;
    const stop = (why: BerthError): void => {
      stopped ??= why;
      killGroup();
    };
    const stalled = (): void =>
      stop(
        new BerthError(
          'timeout',
          `fetching commits from ${remote.env} made no progress for ${STALL_MS / 1000} s; stopped`,
          'check the remote node, then retry',
        ),
      );
    let stall = setTimeout(stalled, STALL_MS);
    const overall = setTimeout(
      () => stop(new BerthError('timeout', `fetching commits from ${remote.env} took over ${FETCH_TIMEOUT_MS / 60_000} minutes; stopped`)),
      FETCH_TIMEOUT_MS,
    );
    const onAbort = (): void => stop(new BerthError('interrupted', 'the request was cancelled'));
    outer?.addEventListener('abort', onAbort, { once: true });
    child.stderr.on('data', (c: Buffer) => {
      clearTimeout(stall);
      stall = setTimeout(stalled, STALL_MS);
      stderr = (stderr + c.toString('utf8')).slice(-64 * 1024);
    });
    child.once('error', (err) => stop(new BerthError('internal', `could not run git: ${err.message}`)));
    child.once('close', (code) => {
      clearTimeout(stall);
      clearTimeout(overall);
      outer?.removeEventListener('abort', onAbort);
      killGroup(); // whatever git left running in its group goes too
      if (stopped) return reject(stopped);
      if (code === 0) return resolvePromise();
      reject(fetchError(remote.env, stderr, code));
    });
  });
}

/** What went wrong, in the helper's words (one berth line) or else git's, without progress. */
function fetchError(env: string, stderr: string, code: number | null): BerthError {
  const lines = stderr
    .split(/[\r\n]+/)
    .filter((l) => !/^(remote: )?(Enumerating|Counting|Compressing|Total|Receiving|Resolving) /.test(l))
    .map((l) => l.trim())
    .filter(Boolean);
  const berth = lines
    .filter((l) => l.startsWith('berth: '))
    .pop()
    ?.slice('berth: '.length);
  const msg =
    berth ??
    (lines
      .map((l) => l.replace(/^(fatal|error): /, ''))
      .slice(-3)
      .join('; ') ||
      `git exited ${code}`);
  return new BerthError(
    /unreachable|ECONNREFUSED|no berth daemon/.test(msg) ? 'daemon_unreachable' : 'repo_not_found',
    `could not fetch from ${env}: ${msg}`,
  );
}

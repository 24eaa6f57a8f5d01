// Handlers of the toolchain and cache routes (src/core/toolchain-api.ts).
import type http from 'node:http';
import { BerthError } from '../core/errors.js';
import { Digest } from '../core/toolchain-api.js';
import { LABEL } from '../env/manager.js';
import type { Handlers } from './handlers.js';
import { toolchainOps } from './toolchain-ops.js';

/** Aborts when the caller's connection closes before the answer is complete. */
function callerGone(res: http.ServerResponse): AbortSignal {
  const abort = new AbortController();
  res.once('close', () => {
    if (!res.writableEnded) abort.abort();
  });
  return abort.signal;
}

export const TOOLCHAIN_HANDLERS: Handlers = {
  buildToolchain: ({ parts, body, progress, res }) => toolchainOps(parts.manager).build(body.force ?? false, progress, callerGone(res)),
  buildDevcontainer: ({ parts, body, progress, res }) => toolchainOps(parts.manager).buildDevcontainer(body, progress, callerGone(res)),
  pullToolchain: ({ parts, body, progress, res }) => toolchainOps(parts.manager).pull(body, progress, callerGone(res)),
  pushToolchain: ({ parts, body, progress, res }) => toolchainOps(parts.manager).push(body, progress, callerGone(res)),
  toolchainStatus: async ({ parts, query }) => {
    const digest = Digest.safeParse(query.get('digest'));
    if (!digest.success) throw new BerthError('invalid_request', 'digest= must be a toolchain digest, sha256:<64 hex digits>');
    return toolchainOps(parts.manager).status(digest.data);
  },
  listCaches: async ({ parts }) => {
    const names = await parts.manager.engine.listVolumes({ [LABEL.managed]: 'true' });
    const caches = names.flatMap((n) => {
      const m = /^berth-cache-([a-z0-9]+)-([0-9a-f]+)$/.exec(n);
      return m ? [{ kind: m[1]!, key: m[2]! }] : [];
    });
    return { caches };
  },
};

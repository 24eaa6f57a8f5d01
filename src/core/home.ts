// Where a node keeps its state: $BERTH_HOME, else ~/.berth. Read when asked, never at import.
import { join, resolve } from 'node:path';

export function berthHome(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.BERTH_HOME ?? join(env.HOME ?? '/root', '.berth'));
}

export function localSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(berthHome(env), 'berth.sock');
}

/** Where berth keeps what can be made again (toolchain layers, staged caches): $BERTH_CACHE, else ~/.cache/berth. */
export function berthCache(env: NodeJS.ProcessEnv = process.env): string {
  return env.BERTH_CACHE ?? join(env.HOME ?? '/root', '.cache', 'berth');
}

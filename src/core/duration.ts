// Durations as people write them (token lifetimes), apart from the token schemas: the CLI
// parses one without loading zod.
import { BerthError } from './errors.js';

/** `8h`, `30m`, `2d`, `45s` or plain seconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!m) throw new BerthError('usage', `invalid duration ${JSON.stringify(text)}`, 'use forms like 45s, 30m, 8h or 2d');
  const n = Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86400 } as const)[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  if (n <= 0 || n > 31_536_000) throw new BerthError('usage', `duration ${text} is out of range`, 'give between 1 s and 365 days');
  return n;
}

// A small argument parser: flags anywhere before `--`, repeated flags collect.
import { BerthError } from '../core/errors.js';

export interface Parsed {
  positionals: string[];
  flags: Map<string, string[]>;
  rest: string[]; // after --
}

export function parseArgs(argv: string[], spec: { boolean: string[]; value: string[] }): Parsed {
  const out: Parsed = { positionals: [], flags: new Map(), rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.rest = argv.slice(i + 1);
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const key = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (spec.boolean.includes(key)) {
        if (eq > 0) throw new BerthError('usage', `--${key} takes no value`);
        out.flags.set(key, ['true']);
      } else if (spec.value.includes(key)) {
        const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
        if (v === undefined) throw new BerthError('usage', `--${key} needs a value`);
        out.flags.set(key, [...(out.flags.get(key) ?? []), v]);
      } else throw new BerthError('usage', `unknown option --${key}`, 'see `berth help`');
    } else if (a === '-f' && spec.boolean.includes('follow')) out.flags.set('follow', ['true']);
    else out.positionals.push(a);
  }
  return out;
}

export function flag(p: Parsed, key: string): string | undefined {
  return p.flags.get(key)?.at(-1);
}

export function bool(p: Parsed, key: string): boolean {
  return p.flags.has(key);
}

export function numberFlag(p: Parsed, key: string): number | undefined {
  const v = flag(p, key);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new BerthError('usage', `--${key} must be a positive number, not ${JSON.stringify(v)}`);
  return n;
}

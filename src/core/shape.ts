// Shapes: the contract's zod schemas written out as plain JSON data, and a checker for them.
// The build writes every route's response shape (and the streamed messages') to
// dist/src/core/contract-shapes.json (shape-of-zod.ts derives them from the zod schemas), so a
// client checks each answer against the contract without loading zod or building a schema:
// that costs more than most commands take to run. The checker answers as zod's parse does:
// the same values pass, unknown keys of a stripping object are dropped, and the first issue
// names its path. Refinements (functions) do not survive as data; their inner shape is checked.

export type Shape =
  | { t: 'string'; min?: number; max?: number; len?: number; re?: [string, string]; starts?: string; ends?: string; has?: string }
  | { t: 'number'; int?: boolean; finite?: boolean; min?: [number, boolean]; max?: [number, boolean]; step?: number }
  | { t: 'boolean' }
  | { t: 'null' }
  | { t: 'undefined' }
  | { t: 'any' }
  | { t: 'never' }
  | { t: 'literal'; v: string | number | boolean | null }
  | { t: 'enum'; v: Array<string | number> }
  | { t: 'array'; of: Shape; min?: number; max?: number; len?: number }
  | { t: 'tuple'; of: Shape[]; rest?: Shape }
  | { t: 'object'; p: Record<string, Shape>; extra: 'strip' | 'strict' | 'passthrough'; rest?: Shape }
  | { t: 'record'; k?: Shape; v: Shape }
  | { t: 'union'; of: Shape[] }
  | { t: 'optional'; of: Shape }
  | { t: 'nullable'; of: Shape }
  | { t: 'default'; of: Shape; v: unknown };

/** What the build writes: each route's method, path, kind and response shape; the named message shapes. */
export interface ShapeTable {
  routes: Record<string, { method: string; path: string; kind: string; response: Shape }>;
  messages: Record<string, Shape>;
}

export type Checked = { ok: true; value: unknown } | { ok: false; path: Array<string | number>; message: string };

class Issue {
  constructor(
    readonly path: Array<string | number>,
    readonly message: string,
  ) {}
}

/** Checks `value` against `shape`: the value as zod would give it back, or the first issue. */
export function checkShape(shape: Shape, value: unknown): Checked {
  try {
    return { ok: true, value: check(shape, value, []) };
  } catch (err) {
    if (err instanceof Issue) return { ok: false, path: err.path, message: err.message };
    throw err;
  }
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function fail(path: Array<string | number>, message: string): never {
  throw new Issue(path, message);
}

function expect(path: Array<string | number>, want: string, v: unknown): never {
  return fail(path, `Expected ${want}, received ${kindOf(v)}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function check(s: Shape, v: unknown, path: Array<string | number>): unknown {
  switch (s.t) {
    case 'string': {
      if (typeof v !== 'string') return expect(path, 'string', v);
      if (s.min !== undefined && v.length < s.min) fail(path, `String must contain at least ${s.min} character(s)`);
      if (s.max !== undefined && v.length > s.max) fail(path, `String must contain at most ${s.max} character(s)`);
      if (s.len !== undefined && v.length !== s.len) fail(path, `String must contain exactly ${s.len} character(s)`);
      if (s.re && !new RegExp(s.re[0], s.re[1]).test(v)) fail(path, 'Invalid');
      if (s.starts !== undefined && !v.startsWith(s.starts)) fail(path, `Invalid input: must start with "${s.starts}"`);
      if (s.ends !== undefined && !v.endsWith(s.ends)) fail(path, `Invalid input: must end with "${s.ends}"`);
      if (s.has !== undefined && !v.includes(s.has)) fail(path, `Invalid input: must include "${s.has}"`);
      return v;
    }
    case 'number': {
      if (typeof v !== 'number' || Number.isNaN(v)) return expect(path, 'number', v);
      if (s.int && !Number.isInteger(v)) fail(path, 'Expected integer, received float');
      if (s.finite && !Number.isFinite(v)) fail(path, 'Number must be finite');
      if (s.min && (s.min[1] ? v < s.min[0] : v <= s.min[0]))
        fail(path, `Number must be greater than ${s.min[1] ? 'or equal to ' : ''}${s.min[0]}`);
      if (s.max && (s.max[1] ? v > s.max[0] : v >= s.max[0]))
        fail(path, `Number must be less than ${s.max[1] ? 'or equal to ' : ''}${s.max[0]}`);
      if (s.step !== undefined && !isMultiple(v, s.step)) fail(path, `Number must be a multiple of ${s.step}`);
      return v;
    }
    case 'boolean':
      return typeof v === 'boolean' ? v : expect(path, 'boolean', v);
    case 'null':
      return v === null ? v : expect(path, 'null', v);
    case 'undefined':
      return v === undefined ? v : expect(path, 'undefined', v);
    case 'any':
      return v;
    case 'never':
      return fail(path, 'Expected never');
    case 'literal':
      return v === s.v ? v : fail(path, `Invalid literal value, expected ${JSON.stringify(s.v)}`);
    case 'enum':
      return s.v.includes(v as string | number) ? v : fail(path, `Invalid enum value. Expected ${s.v.map((x) => `'${x}'`).join(' | ')}`);
    case 'array': {
      if (!Array.isArray(v)) return expect(path, 'array', v);
      if (s.min !== undefined && v.length < s.min) fail(path, `Array must contain at least ${s.min} element(s)`);
      if (s.max !== undefined && v.length > s.max) fail(path, `Array must contain at most ${s.max} element(s)`);
      if (s.len !== undefined && v.length !== s.len) fail(path, `Array must contain exactly ${s.len} element(s)`);
      return v.map((x, i) => check(s.of, x, [...path, i]));
    }
    case 'tuple': {
      if (!Array.isArray(v)) return expect(path, 'array', v);
      if (v.length < s.of.length || (!s.rest && v.length > s.of.length)) fail(path, `Expected ${s.of.length} element(s)`);
      return v.map((x, i) => check(s.of[i] ?? s.rest!, x, [...path, i]));
    }
    case 'object': {
      if (!isPlainObject(v)) return expect(path, 'object', v);
      const out: Record<string, unknown> = {};
      for (const [k, ks] of Object.entries(s.p)) {
        const r = check(ks, v[k], [...path, k]);
        if (r !== undefined || k in v) out[k] = r;
      }
      for (const k of Object.keys(v)) {
        if (Object.hasOwn(s.p, k)) continue;
        if (s.rest) out[k] = check(s.rest, v[k], [...path, k]);
        else if (s.extra === 'strict') fail(path, `Unrecognized key(s) in object: '${k}'`);
        else if (s.extra === 'passthrough') out[k] = v[k];
      }
      return out;
    }
    case 'record': {
      if (!isPlainObject(v)) return expect(path, 'object', v);
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        if (s.k) check(s.k, k, [...path, k]);
        out[k] = check(s.v, x, [...path, k]);
      }
      return out;
    }
    case 'union': {
      for (const o of s.of) {
        try {
          return check(o, v, path);
        } catch (err) {
          if (!(err instanceof Issue)) throw err;
        }
      }
      return fail(path, 'Invalid input');
    }
    case 'optional':
      return v === undefined ? v : check(s.of, v, path);
    case 'nullable':
      return v === null ? v : check(s.of, v, path);
    case 'default':
      return check(s.of, v === undefined ? structuredClone(s.v) : v, path);
  }
}

function isMultiple(v: number, step: number): boolean {
  const q = v / step;
  return Math.abs(q - Math.round(q)) < 1e-9;
}

// A zod schema written out as a shape (shape.ts): plain JSON data a client checks answers with,
// without zod. Used by the build (scripts/gen-shapes.mjs) and by the test that keeps the two equal.
import type { z } from 'zod';
import type { Shape, ShapeTable } from './shape.js';
import { ROUTES, type RouteSpec } from './contract.js';
import { BerthEvent } from './events.js';
import { ExecEnd } from './ws-codec.js';

interface Check {
  kind: string;
  value?: unknown;
  inclusive?: boolean;
  regex?: RegExp;
}

/** The zod internals this reads: each schema's `_def` (zod 3). */
interface Def {
  typeName: string;
  checks?: Check[];
  [k: string]: unknown;
}

function defOf(s: z.ZodTypeAny): Def {
  return (s as unknown as { _def: Def })._def;
}

export function shapeOf(s: z.ZodTypeAny): Shape {
  const d = defOf(s);
  switch (d.typeName) {
    case 'ZodString': {
      const out: Extract<Shape, { t: 'string' }> = { t: 'string' };
      for (const c of d.checks ?? []) {
        if (c.kind === 'min') out.min = c.value as number;
        else if (c.kind === 'max') out.max = c.value as number;
        else if (c.kind === 'length') out.len = c.value as number;
        else if (c.kind === 'regex') out.re = [c.regex!.source, c.regex!.flags.replace('g', '')];
        else if (c.kind === 'startsWith') out.starts = c.value as string;
        else if (c.kind === 'endsWith') out.ends = c.value as string;
        else if (c.kind === 'includes') out.has = c.value as string;
        else throw new Error(`shapeOf: string check ${c.kind} has no shape`);
      }
      return out;
    }
    case 'ZodNumber': {
      const out: Extract<Shape, { t: 'number' }> = { t: 'number' };
      for (const c of d.checks ?? []) {
        if (c.kind === 'int') out.int = true;
        else if (c.kind === 'finite') out.finite = true;
        else if (c.kind === 'min') out.min = [c.value as number, c.inclusive === true];
        else if (c.kind === 'max') out.max = [c.value as number, c.inclusive === true];
        else if (c.kind === 'multipleOf') out.step = c.value as number;
        else throw new Error(`shapeOf: number check ${c.kind} has no shape`);
      }
      return out;
    }
    case 'ZodBoolean':
      return { t: 'boolean' };
    case 'ZodNull':
      return { t: 'null' };
    case 'ZodUndefined':
    case 'ZodVoid':
      return { t: 'undefined' };
    case 'ZodAny':
    case 'ZodUnknown':
      return { t: 'any' };
    case 'ZodNever':
      return { t: 'never' };
    case 'ZodLiteral':
      return { t: 'literal', v: d.value as string | number | boolean | null };
    case 'ZodEnum':
      return { t: 'enum', v: d.values as string[] };
    case 'ZodNativeEnum':
      return { t: 'enum', v: Object.values(d.values as Record<string, string | number>) };
    case 'ZodArray': {
      const out: Extract<Shape, { t: 'array' }> = { t: 'array', of: shapeOf(d.type as z.ZodTypeAny) };
      const len = (k: string): number | undefined => (d[k] as { value: number } | null)?.value;
      if (len('minLength') !== undefined) out.min = len('minLength');
      if (len('maxLength') !== undefined) out.max = len('maxLength');
      if (len('exactLength') !== undefined) out.len = len('exactLength');
      return out;
    }
    case 'ZodTuple':
      return {
        t: 'tuple',
        of: (d.items as z.ZodTypeAny[]).map(shapeOf),
        ...(d.rest ? { rest: shapeOf(d.rest as z.ZodTypeAny) } : {}),
      };
    case 'ZodObject': {
      const shape = (d.shape as () => Record<string, z.ZodTypeAny>)();
      const p: Record<string, Shape> = {};
      for (const [k, v] of Object.entries(shape)) p[k] = shapeOf(v);
      const catchall = d.catchall as z.ZodTypeAny;
      const rest = defOf(catchall).typeName === 'ZodNever' ? undefined : shapeOf(catchall);
      return { t: 'object', p, extra: d.unknownKeys as 'strip' | 'strict' | 'passthrough', ...(rest ? { rest } : {}) };
    }
    case 'ZodRecord':
      return { t: 'record', k: shapeOf(d.keyType as z.ZodTypeAny), v: shapeOf(d.valueType as z.ZodTypeAny) };
    case 'ZodUnion':
    case 'ZodDiscriminatedUnion':
      return { t: 'union', of: (d.options as z.ZodTypeAny[]).map(shapeOf) };
    case 'ZodOptional':
      return { t: 'optional', of: shapeOf(d.innerType as z.ZodTypeAny) };
    case 'ZodNullable':
      return { t: 'nullable', of: shapeOf(d.innerType as z.ZodTypeAny) };
    case 'ZodDefault':
      return { t: 'default', of: shapeOf(d.innerType as z.ZodTypeAny), v: (d.defaultValue as () => unknown)() };
    case 'ZodEffects': {
      // A refinement (a function) checks the inner shape only; a transform would change the
      // value, which a shape cannot do: the contract's answers have none.
      const effect = d.effect as { type: string };
      if (effect.type !== 'refinement') throw new Error(`shapeOf: a ${effect.type} has no shape`);
      return shapeOf(d.schema as z.ZodTypeAny);
    }
    case 'ZodBranded':
      return shapeOf(d.type as z.ZodTypeAny);
    case 'ZodReadonly':
      return shapeOf(d.innerType as z.ZodTypeAny);
    case 'ZodLazy':
      return shapeOf((d.getter as () => z.ZodTypeAny)());
    default:
      throw new Error(`shapeOf: ${d.typeName} has no shape`);
  }
}

/** Every route's response shape, and the streamed messages a client checks. */
export function shapeTable(): ShapeTable {
  const routes: ShapeTable['routes'] = {};
  for (const [id, r] of Object.entries(ROUTES) as Array<[string, RouteSpec]>) {
    routes[id] = { method: r.method, path: r.path, kind: r.kind, response: shapeOf(r.response) };
  }
  return { routes, messages: { BerthEvent: shapeOf(BerthEvent), ExecEnd: shapeOf(ExecEnd) } };
}

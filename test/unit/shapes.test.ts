// The shapes the client checks answers with (core/shape.ts) are the contract's zod schemas as
// data: the built file is what the schemas give, and the checker agrees with zod's parse on
// valid answers, on broken ones and on what it gives back.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { z } from 'zod';
import { ROUTES, type RouteSpec } from '../../src/core/contract.js';
import { BerthEvent } from '../../src/core/events.js';
import { checkShape, type Shape } from '../../src/core/shape.js';
import { shapeOf, shapeTable } from '../../src/core/shape-of-zod.js';
import { ExecEnd } from '../../src/core/ws-codec.js';
import { ROOT } from '../helpers/fixture.js';

/** A small deterministic generator, so a failure names a case that comes back. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const STRINGS = ['', 'a', 'web', '0'.repeat(64), 'sha256:' + 'a'.repeat(64), '2026-01-01T00:00:00.000Z', 'x'.repeat(300), '12345'];

/** A value that mostly fits `s`: sometimes not, so both answers of the checker are exercised. */
function sample(s: Shape, r: () => number, depth = 0): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  switch (s.t) {
    case 'string':
      return pick(STRINGS).slice(0, s.max ?? 1000);
    case 'number':
      return pick([0, 1, 7, -1, 2.5, 65535, 65536]);
    case 'boolean':
      return r() < 0.5;
    case 'null':
      return null;
    case 'undefined':
      return undefined;
    case 'any':
      return pick([null, 1, 'x', { a: 1 }]);
    case 'never':
      return 1;
    case 'literal':
      return s.v;
    case 'enum':
      return pick(s.v);
    case 'array':
      return depth > 4 ? [] : Array.from({ length: Math.floor(r() * 3) }, () => sample(s.of, r, depth + 1));
    case 'tuple':
      return s.of.map((x) => sample(x, r, depth + 1));
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(s.p)) {
        const optional = v.t === 'optional' || v.t === 'default';
        if (optional && r() < 0.4) continue;
        out[k] = sample(v, r, depth + 1);
      }
      return out;
    }
    case 'record':
      return { k1: sample(s.v, r, depth + 1) };
    case 'union':
      return sample(pick(s.of), r, depth);
    case 'optional':
    case 'nullable':
      return r() < 0.2 ? (s.t === 'optional' ? undefined : null) : sample(s.of, r, depth);
    case 'default':
      return r() < 0.3 ? undefined : sample(s.of, r, depth);
  }
}

/** The same value broken somewhere: a key dropped, a value of another type, or a key added. */
function mutate(v: unknown, r: () => number): unknown {
  if (Array.isArray(v)) return v.length && r() < 0.7 ? (v as unknown[]).map((x, i) => (i === 0 ? mutate(x, r) : x)) : 'not an array';
  if (v && typeof v === 'object') {
    const o = { ...(v as Record<string, unknown>) };
    const keys = Object.keys(o);
    const roll = r();
    if (keys.length && roll < 0.3) delete o[keys[Math.floor(r() * keys.length)]!];
    else if (keys.length && roll < 0.7) {
      const k = keys[Math.floor(r() * keys.length)]!;
      o[k] = mutate(o[k], r);
    } else o.unexpectedKey = 1;
    return o;
  }
  return typeof v === 'number' ? 'a string now' : 42;
}

const seen = { valid: 0, invalid: 0 };

function agree(name: string, schema: z.ZodTypeAny, shape: Shape, value: unknown): void {
  const z = schema.safeParse(value);
  seen[z.success ? 'valid' : 'invalid']++;
  const s = checkShape(shape, value);
  const what = `${name} on ${JSON.stringify(value)?.slice(0, 400)}`;
  if (z.success) {
    assert.ok(s.ok, `${what}: zod accepts, the shape does not (${s.ok ? '' : `${s.path.join('.')}: ${s.message}`})`);
    assert.deepEqual(s.value, z.data, `${what}: a different value back`);
  } else if (s.ok) {
    // A refinement is a function: the shape checks what it refines, and nothing more.
    assert.ok(
      z.error.issues.every((i) => i.code === 'custom'),
      `${what}: the shape accepts what zod rejects (${JSON.stringify(z.error.issues[0])})`,
    );
  }
}

describe('contract shapes', () => {
  it('are built from the contract as it is (dist/src/core/contract-shapes.json)', () => {
    const built: unknown = JSON.parse(readFileSync(join(ROOT, 'dist', 'src', 'core', 'contract-shapes.json'), 'utf8'));
    assert.deepEqual(built, JSON.parse(JSON.stringify(shapeTable())), 'rebuild: `npm run build` writes the shapes');
  });

  it("agree with zod's parse on every route's answers, valid and broken", () => {
    const cases: Array<[string, z.ZodTypeAny]> = (Object.entries(ROUTES) as Array<[string, RouteSpec]>).map(([id, r]) => [id, r.response]);
    cases.push(['BerthEvent', BerthEvent], ['ExecEnd', ExecEnd]);
    for (const [name, schema] of cases) {
      const shape = shapeOf(schema);
      const r = rng(name.length * 7919 + name.charCodeAt(0));
      for (let i = 0; i < 60; i++) {
        const v = sample(shape, r);
        agree(name, schema, shape, v);
        agree(name, schema, shape, mutate(v, r));
        agree(name, schema, shape, mutate(mutate(v, r), r));
      }
    }
    // Both answers were put to the test, many times each.
    assert.ok(seen.valid > 1000 && seen.invalid > 1000, `valid ${seen.valid}, invalid ${seen.invalid}`);
  });

  it('drops the keys a stripping object does not know, and names the first mismatch', () => {
    const shape = shapeTable().routes.nodeInfo!.response;
    const info = {
      node: 'n',
      version: '1',
      engine: { name: 'podman', endpoint: 'unix:///x', version: '4' },
      defaultToolchain: null,
      extra: 1,
    };
    const zod = ROUTES.nodeInfo.response.safeParse(info);
    const got = checkShape(shape, info);
    assert.equal(got.ok, zod.success);
    if (got.ok && zod.success) assert.deepEqual(got.value, zod.data);
    const bad = checkShape(shape, { ...info, engine: { ...info.engine, version: 4 } });
    assert.equal(bad.ok, false);
    if (!bad.ok) assert.deepEqual(bad.path, ['engine', 'version']);
  });
});

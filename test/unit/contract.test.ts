// The wire contract: every route is described whole, and the checked-in OpenAPI document is
// what the contract generates (CI fails when they drift).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { compileRoutes, fillPath, ROUTES, type RouteSpec } from '../../src/core/contract.js';
import { openApiDocument } from '../../src/core/openapi.js';
import { ROOT } from '../helpers/fixture.js';

describe('the wire contract', () => {
  it('gives every route a response schema, and every route that takes a body a request schema', () => {
    for (const [id, r] of Object.entries(ROUTES) as Array<[string, RouteSpec]>) {
      assert.ok(r.response instanceof z.ZodType, `${id} has no response schema`);
      if ((r.method === 'POST' || r.method === 'PUT' || r.method === 'PATCH') && r.kind === 'json') {
        // A POST without a body (pause, resume, gc) says so with an empty strict object or none.
        if (!['pause', 'resume', 'gc'].includes(id))
          assert.ok(r.request instanceof z.ZodType, `${id} takes a body but has no request schema`);
      }
      if (r.kind === 'websocket') assert.equal(r.method, 'GET', `${id}: WebSocket upgrades are GETs`);
      assert.match(r.path, /^\/v1\//, `${id}: paths are versioned`);
    }
  });

  it('matches each path to exactly one route per method and kind', () => {
    const compiled = compileRoutes();
    for (const c of compiled) {
      const path = fillPath(
        c.spec.path,
        Object.fromEntries(c.params.map((p) => [p, p === 'hash' ? 'a'.repeat(64) : p === 'port' ? '80' : 'x'])),
      );
      const same = compiled.filter(
        (o) => o.spec.method === c.spec.method && (o.spec.kind === 'websocket') === (c.spec.kind === 'websocket') && o.pattern.test(path),
      );
      // A literal segment wins over a parameter (`/v1/snapshots/import` is not a snapshot id).
      assert.ok(same[0]?.id === c.id || same.some((o) => o.id === c.id), `${c.id} does not match its own path ${path}`);
    }
  });

  it('the checked-in OpenAPI document is the one the contract generates', () => {
    const checkedIn = JSON.parse(readFileSync(join(ROOT, 'docs', 'api', 'openapi.json'), 'utf8')) as unknown;
    assert.deepEqual(checkedIn, JSON.parse(JSON.stringify(openApiDocument())), 'docs/api/openapi.json is stale: run `npm run openapi`');
  });
});

describe('the daemon', () => {
  it('has a handler for every HTTP route of the contract', async () => {
    const { HANDLERS } = await import('../../src/node/handlers.js');
    for (const [id, r] of Object.entries(ROUTES) as Array<[string, RouteSpec]>) {
      if (r.kind === 'websocket' || r.kind === 'events') continue;
      assert.ok(id in HANDLERS, `route ${id} has no handler`);
    }
  });
});

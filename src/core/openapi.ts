// The OpenAPI document, generated from the contract (docs/api/openapi.json is its output;
// a test fails when the checked-in file drifts from the contract).
import { zodToJsonSchema } from 'zod-to-json-schema';
import type { z } from 'zod';
import { ErrorAnswer, PARAMS, ROUTES, type RouteSpec } from './contract.js';
import { VERSION } from './version.js';

function schema(s: z.ZodTypeAny): unknown {
  const out = zodToJsonSchema(s as z.ZodType, { target: 'openApi3', $refStrategy: 'none' }) as Record<string, unknown>;
  delete out.$schema;
  return out;
}

export function openApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [id, r] of Object.entries(ROUTES) as Array<[string, RouteSpec]>) {
    const params = [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: schema(PARAMS[m[1] as keyof typeof PARAMS]),
    }));
    const query = r.query
      ? Object.entries(r.query.shape as Record<string, z.ZodTypeAny>).map(([name, s]) => ({
          name,
          in: 'query',
          required: !s.isOptional(),
          schema: schema(s),
        }))
      : [];
    const okType =
      r.kind === 'bytes'
        ? 'application/octet-stream'
        : r.kind === 'events'
          ? 'text/event-stream'
          : r.kind === 'progress'
            ? 'application/x-ndjson'
            : 'application/json';
    const op: Record<string, unknown> = {
      operationId: id,
      summary: r.summary,
      'x-berth-kind': r.kind,
      'x-berth-access': r.access,
      parameters: [...params, ...query],
      responses: {
        [String(r.status ?? (r.kind === 'websocket' ? 101 : 200))]: {
          description: r.kind === 'websocket' ? 'switching to WebSocket; the first message from the node' : 'success',
          content: { [okType]: { schema: r.kind === 'bytes' ? { type: 'string', format: 'binary' } : schema(r.response) } },
        },
        default: { description: 'an error, with its stable code', content: { 'application/json': { schema: schema(ErrorAnswer) } } },
      },
    };
    if (r.request) {
      op.requestBody = {
        required: r.kind !== 'websocket',
        description: r.kind === 'websocket' ? 'the first WebSocket message' : undefined,
        content: { 'application/json': { schema: schema(r.request) } },
      };
    } else if (r.kind === 'upload') {
      op.requestBody = { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } };
    }
    (paths[r.path] ??= {})[r.kind === 'websocket' && paths[r.path]?.[r.method.toLowerCase()] ? 'x-websocket' : r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.0.3',
    info: { title: 'berth node API', version: VERSION, description: 'Generated from src/core/contract.ts. Do not edit.' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: "the node's token or an agent's (TCP only)" } },
    },
    security: [{ bearer: [] }],
    paths,
  };
}

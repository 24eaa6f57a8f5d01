// Tokens for the node's TCP API: the node's own (everything), or an agent's (its own
// environments only), optionally read-only and expiring. A token reads
// `berth_<id>_<secret>`: the id finds its record, the secret is kept only as a hash.
import { z } from 'zod';
import { BerthError } from './errors.js';
import { validateEnvName, validateLabel } from './names.js';

export const TokenCreateRequest = z
  .object({
    agent: z.string().min(1).max(63),
    /** Only these environments of the agent (it may still create new ones unless read-only). */
    envs: z.array(z.string().min(1).max(63)).max(100).optional(),
    readOnly: z.boolean().optional(),
    ttlSeconds: z.number().int().positive().max(31_536_000).optional(),
  })
  .strict();
export type TokenCreateRequest = z.infer<typeof TokenCreateRequest>;

export const TokenInfo = z.object({
  id: z.string(),
  agent: z.string(),
  envs: z.array(z.string()).nullable(),
  readOnly: z.boolean(),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
});
export type TokenInfo = z.infer<typeof TokenInfo>;

export const TokenCreated = TokenInfo.extend({ token: z.string() });
export type TokenCreated = z.infer<typeof TokenCreated>;

/** What a caller may do, once its token is known. */
export type Principal = { kind: 'node' } | { kind: 'agent'; tokenId: string; agent: string; envs: string[] | null; readOnly: boolean };

export const NODE_PRINCIPAL: Principal = { kind: 'node' };

const TOKEN_FORM = /^berth_([0-9a-f]{16})_([A-Za-z0-9_-]{32,})$/;

/** The id and secret of an agent token, or null when the text is not one. */
export function splitToken(text: string): { id: string; secret: string } | null {
  const m = TOKEN_FORM.exec(text);
  return m ? { id: m[1]!, secret: m[2]! } : null;
}

/** Checks a create request's names; the agent becomes the environments' label. */
export function validateTokenRequest(req: TokenCreateRequest): TokenCreateRequest {
  const agent = validateLabel('agent', req.agent);
  if (!agent) throw new BerthError('usage', 'a token needs --agent NAME');
  for (const e of req.envs ?? []) validateEnvName(e);
  return { ...req, agent };
}

export { parseDuration } from './duration.js';

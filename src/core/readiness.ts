// Readiness checks as users write them: `tcp:5432`, `http:3000/health`, `cmd:pg_isready`.
import { BerthError } from './errors.js';

export type ReadinessSpec =
  { kind: 'tcp'; port: number } | { kind: 'http'; port: number; path: string; status?: number } | { kind: 'cmd'; command: string };

export function parseReadiness(text: string): ReadinessSpec {
  const bad = (): never => {
    throw new BerthError('usage', `invalid readiness check ${JSON.stringify(text)}`, 'use tcp:PORT, http:PORT/PATH or cmd:COMMAND');
  };
  const i = text.indexOf(':');
  if (i < 0) return bad();
  const kind = text.slice(0, i);
  const rest = text.slice(i + 1);
  if (kind === 'cmd') return rest.trim() ? { kind: 'cmd', command: rest } : bad();
  const m = /^(\d{1,5})(\/.*)?$/.exec(rest);
  if (!m) return bad();
  const port = Number(m[1]);
  if (port < 1 || port > 65535) return bad();
  if (kind === 'tcp') return m[2] ? bad() : { kind: 'tcp', port };
  if (kind === 'http') return { kind: 'http', port, path: m[2] ?? '/' };
  return bad();
}

/**
 * A URL a probe may reach: only the environment itself (localhost), given as
 * `http://localhost:3000/x`, `localhost:3000/x`, `3000/x` or `:3000`.
 */
export function parseLocalUrl(text: string): { port: number; path: string } {
  const outside = (): never => {
    throw new BerthError(
      'invalid_request',
      `URL ${text} is outside the environment`,
      'probe the environment itself: http://localhost:PORT/PATH',
    );
  };
  let rest = text.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(rest);
  if (scheme) {
    if (scheme[1]!.toLowerCase() !== 'http') outside();
    rest = rest.slice(scheme[0].length);
    const host = /^(\[[^\]]+\]|[^:/]+)/.exec(rest)?.[0] ?? '';
    if (!['localhost', '127.0.0.1', '[::1]'].includes(host.toLowerCase())) outside();
    rest = rest.slice(host.length);
    if (!rest.startsWith(':')) outside();
    rest = rest.slice(1);
  } else if (/^(localhost|127\.0\.0\.1):/i.test(rest)) rest = rest.slice(rest.indexOf(':') + 1);
  else if (rest.startsWith(':')) rest = rest.slice(1);
  else if (!/^\d/.test(rest)) outside();
  const m = /^(\d{1,5})(\/.*)?$/.exec(rest);
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535)
    throw new BerthError('invalid_request', `invalid URL ${text}`, 'use http://localhost:PORT/PATH');
  return { port: Number(m[1]), path: m[2] ?? '/' };
}

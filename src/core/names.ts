import { BerthError } from './errors.js';

const NAME_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Environment names are the user's: DNS labels, so they also work as SSH host names. */
export function validateEnvName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new BerthError(
      'invalid_name',
      `invalid environment name ${JSON.stringify(name)}`,
      'use 1-63 lowercase letters, digits and dashes, starting and ending with a letter or digit',
    );
  }
  return name;
}

/** Labels (agent, task) are free text but bounded and printable. */
export function validateLabel(kind: string, value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' || value.length > 256 || /[\u0000-\u001f]/.test(value)) {
    throw new BerthError('invalid_request', `invalid ${kind} label`, 'use at most 256 printable characters');
  }
  return value;
}

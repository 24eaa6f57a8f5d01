// The pure part of secrets: names, hosts, header templates, and the substitution itself.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BerthError } from '../../src/core/errors.js';
import {
  envVarFor,
  parseHeaderTemplate,
  parseSecretHost,
  secretApplies,
  substituteHeaders,
  validateSecretName,
  validateSecretValue,
  type Binding,
} from '../../src/core/secrets.js';

const code = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    return (e as BerthError).code;
  }
  return 'none';
};

describe('secrets core', () => {
  it('derives variables from names', () => {
    assert.equal(envVarFor('gh-token'), 'GH_TOKEN');
    assert.equal(envVarFor('npm.auth'), 'NPM_AUTH');
    assert.equal(envVarFor('1password'), '_1PASSWORD');
  });

  it('checks names, hosts, templates and values', () => {
    assert.equal(validateSecretName('gh-token'), 'gh-token');
    assert.equal(
      code(() => validateSecretName('GH')),
      'invalid_name',
    );
    assert.equal(
      code(() => parseSecretHost(undefined)),
      'secret_no_host',
    );
    assert.equal(
      code(() => parseSecretHost('  ')),
      'secret_no_host',
    );
    assert.deepEqual(parseSecretHost('API.GitHub.com'), { host: 'api.github.com', port: null });
    assert.deepEqual(parseSecretHost('api.github.com:8443'), { host: 'api.github.com', port: 8443 });
    assert.deepEqual(parseSecretHost('[::1]:443'), { host: '::1', port: 443 });
    for (const bad of ['*.github.com', 'a b', 'h:0', 'h:70000', 'https://h', 'h/x'])
      assert.equal(
        code(() => parseSecretHost(bad)),
        'usage',
        bad,
      );
    assert.deepEqual(parseHeaderTemplate('Authorization: Bearer {}'), { name: 'Authorization', template: 'Bearer {}' });
    for (const bad of ['Authorization Bearer {}', 'X: no-slot', 'X: {} {}', 'Bad Name: {}'])
      assert.equal(
        code(() => parseHeaderTemplate(bad)),
        'usage',
        bad,
      );
    assert.equal(
      code(() => validateSecretValue('')),
      'usage',
    );
    assert.equal(
      code(() => validateSecretValue('a\nb')),
      'usage',
    );
    assert.equal(
      code(() => validateSecretValue('x'.repeat(20_000))),
      'too_large',
    );
  });

  it('applies a secret to its host, on its port or the usual ones', () => {
    const s = { host: 'api.github.com', port: null };
    assert.ok(secretApplies(s, 'API.github.com.', 443));
    // No port named: HTTPS only; plain HTTP would carry the value in clear.
    assert.ok(!secretApplies(s, 'api.github.com', 80));
    assert.ok(secretApplies({ host: 'h', port: 80 }, 'h', 80));
    assert.ok(!secretApplies(s, 'api.github.com', 8443));
    assert.ok(!secretApplies(s, 'evil.api.github.com', 443));
    assert.ok(secretApplies({ host: 'h', port: 8443 }, 'h', 8443));
    assert.ok(!secretApplies({ host: 'h', port: 8443 }, 'h', 443));
  });

  it('swaps placeholders in header values only, as templates say, in Basic credentials too', () => {
    const any: Binding = { placeholder: 'PH1', value: 'v1', header: null };
    const tpl: Binding = { placeholder: 'PH2', value: 'v2', header: { name: 'Authorization', template: 'token {}' } };
    const raw = ['Host', 'h', 'X-A', 'a PH1 b PH1', 'authorization', 'Bearer PH2', 'X-B', 'PH2', 'X-PH1', 'plain'];
    assert.equal(substituteHeaders(raw, [any, tpl]), 2);
    assert.deepEqual(raw, ['Host', 'h', 'X-A', 'a v1 b v1', 'authorization', 'token v2', 'X-B', 'PH2', 'X-PH1', 'plain']);
    const basic = ['Authorization', `Basic ${Buffer.from('user:PH1').toString('base64')}`];
    substituteHeaders(basic, [any]);
    assert.equal(basic[1], `Basic ${Buffer.from('user:v1').toString('base64')}`);
    // A value is written as it is: `$&` and `$$` in it are not replacement patterns.
    const dollars: Binding = { placeholder: 'PH3', value: 'a$&b$$c$`d', header: { name: 'X-K', template: 'key={}' } };
    const withDollars = ['X-K', 'PH3'];
    substituteHeaders(withDollars, [dollars]);
    assert.equal(withDollars[1], 'key=a$&b$$c$`d');
    const untouched = ['Authorization', 'Bearer other'];
    assert.equal(substituteHeaders(untouched, [any, tpl]), 0);
  });
});

// The egress policy language: parsing, presets, matching, the suggestion and budgets (pure).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { allows, allowsName, debianMirrorEntries, parseBudget, parseEgressPolicy, suggestPolicy } from '../../src/core/egress-policy.js';
import { BerthError } from '../../src/core/errors.js';
import { peek } from '../../src/env/egress/peek.js';

const sources = { debianMirrors: debianMirrorEntries(['http://deb.example.org/debian', 'https://sec.example.org:8443/x']) };

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return e instanceof BerthError ? e.code : 'other';
  }
  return 'none';
}

describe('egress policies', () => {
  it('matches names, ports, suffixes, addresses and blocks', () => {
    const p = parseEgressPolicy('allow:api.example.com,db.example.com:5432,*.internal.example:443,10.0.0.0/8:22,192.0.2.7:*', sources);
    assert.ok(allows(p, 'api.example.com', 443) && allows(p, 'api.example.com', 80));
    assert.ok(!allows(p, 'api.example.com', 8080));
    assert.ok(allows(p, 'db.example.com', 5432) && !allows(p, 'db.example.com', 443));
    assert.ok(allows(p, 'a.b.internal.example', 443) && !allows(p, 'internal.example', 443));
    assert.ok(allows(p, '10.9.8.7', 22) && !allows(p, '11.0.0.1', 22));
    // Names are judged as host names: case and a final dot do not matter; bytes that make no
    // host name pass nothing, whatever they end with.
    assert.ok(allows(p, 'API.Example.COM.', 443));
    for (const forged of [
      'evil.com\0.b.internal.example',
      'evil.com%2e.b.internal.example',
      'evil com.b.internal.example',
      'a..b.internal.example',
    ]) {
      assert.ok(!allows(p, forged, 443), JSON.stringify(forged));
      assert.ok(!allowsName(p, forged), JSON.stringify(forged));
    }
    assert.ok(allows(p, '192.0.2.7', 1234));
    assert.ok(!allows(p, 'evil.example.com', 443));
    assert.ok(allowsName(p, 'db.example.com') && allowsName(p, 'x.internal.example') && !allowsName(p, 'example.com'));
  });

  it('expands presets, debian from the apt sources given', () => {
    const p = parseEgressPolicy('allow:npm,debian', sources);
    assert.ok(allows(p, 'registry.npmjs.org', 443));
    assert.ok(allows(p, 'deb.example.org', 80) && allows(p, 'sec.example.org', 8443));
    assert.equal(
      code(() => parseEgressPolicy('allow:debian', { debianMirrors: [] })),
      'unknown_preset',
    );
  });

  it('refuses what it cannot mean, with its own codes', () => {
    for (const bad of [
      '',
      'allow:',
      'allow:,',
      'deny:x.com',
      'allow:x.com:0',
      'allow:x.com:70000',
      'allow:10.0.0.1/8',
      'allow:*.com',
      'allow:[::1]:443',
      'allow:a_b.com',
    ])
      assert.equal(
        code(() => parseEgressPolicy(bad, sources)),
        'invalid_policy',
        bad,
      );
    assert.equal(
      code(() => parseEgressPolicy('allow:nope', sources)),
      'unknown_preset',
    );
    assert.equal(
      code(() => parseBudget('egress=5XB')),
      'invalid_budget',
    );
    assert.equal(
      code(() => parseBudget('memory=1GB')),
      'invalid_budget',
    );
  });

  it('suggests one entry per destination, and presets for their own', () => {
    const s = suggestPolicy(
      [
        { host: 'registry.npmjs.org', port: 443 },
        { host: 'b.example.com', port: 80 },
        { host: 'a.example.com', port: 443 },
      ],
      sources,
    );
    assert.equal(s, 'allow:npm,a.example.com:443,b.example.com:80');
    assert.equal(suggestPolicy([], sources), null);
  });

  it('parses budgets', () => {
    assert.deepEqual(parseBudget('egress=500MB,cpu=2h'), { egressBytes: 500_000_000, cpuSeconds: 7200 });
    assert.deepEqual(parseBudget('egress=1GiB'), { egressBytes: 1024 ** 3 });
  });

  it('peeks a name from HTTP, CONNECT and nothing from other bytes', () => {
    assert.deepEqual(peek(Buffer.from('GET / HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n')), {
      kind: 'http',
      host: 'example.com',
      headEnd: 42,
    });
    assert.deepEqual(peek(Buffer.from('CONNECT a.example:443 HTTP/1.1\r\n\r\n')), {
      kind: 'connect',
      host: 'a.example',
      port: 443,
      headEnd: 34,
    });
    assert.deepEqual(peek(Buffer.from('GET / HT')), { kind: 'more' });
    assert.deepEqual(peek(Buffer.from('SSH-2.0-x\r\n')), { kind: 'other' });
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { parseLocalUrl, parseReadiness } from '../../src/core/readiness.js';
import { parseJUnit, parseTap } from '../../src/core/test-results.js';
import { pngStats } from '../../src/core/png.js';
import { redactedEnv } from '../../src/agent/describe-op.js';
import { BerthError } from '../../src/core/errors.js';

describe('readiness checks', () => {
  it('parses the three kinds and refuses the rest', () => {
    assert.deepEqual(parseReadiness('tcp:5432'), { kind: 'tcp', port: 5432 });
    assert.deepEqual(parseReadiness('http:3000/health'), { kind: 'http', port: 3000, path: '/health' });
    assert.deepEqual(parseReadiness('http:8080'), { kind: 'http', port: 8080, path: '/' });
    assert.deepEqual(parseReadiness('cmd:pg_isready -q'), { kind: 'cmd', command: 'pg_isready -q' });
    for (const bad of ['tcp:0', 'tcp:70000', 'udp:53', 'http:x', 'cmd:', 'tcp:80/x', '3000']) {
      assert.throws(
        () => parseReadiness(bad),
        (e: BerthError) => e.code === 'usage',
        bad,
      );
    }
  });
  it('accepts only URLs inside the environment', () => {
    assert.deepEqual(parseLocalUrl('http://localhost:3000/x?y=1'), { port: 3000, path: '/x?y=1' });
    assert.deepEqual(parseLocalUrl('127.0.0.1:80'), { port: 80, path: '/' });
    assert.deepEqual(parseLocalUrl(':9000/a'), { port: 9000, path: '/a' });
    assert.deepEqual(parseLocalUrl('3000/health'), { port: 3000, path: '/health' });
    for (const out of [
      'http://example.com:80/',
      'https://localhost:3000/',
      'http://10.0.0.1:80/',
      'file:///etc/passwd',
      'http://localhost.evil.com:80/',
      'evil.com:80',
    ]) {
      assert.throws(
        () => parseLocalUrl(out),
        (e: BerthError) => e.code === 'invalid_request' && /outside/.test(e.message),
        out,
      );
    }
  });
});

describe('test results', () => {
  it('reads TAP from node --test', () => {
    const tap =
      'TAP version 13\n# Subtest: a\nok 1 - a\n  ---\n  ...\n# Subtest: b\nnot ok 2 - b\n  ---\n  ...\nok 3 - c # SKIP no db\n1..3\n';
    assert.deepEqual(parseTap(tap), { format: 'tap', passed: 1, failed: 1, skipped: 1, total: 3, failures: ['b'] });
    assert.equal(parseTap('no tests here'), null);
  });
  it('reads JUnit XML', () => {
    const xml = '<testsuite><testcase name="ok"/><testcase classname="k" name="bad &amp; worse"><error/></testcase></testsuite>';
    assert.deepEqual(parseJUnit(xml), { format: 'junit', passed: 1, failed: 1, skipped: 0, total: 2, failures: ['k bad & worse'] });
    assert.equal(parseJUnit('<html/>'), null);
  });
});

function png(width: number, height: number, pixel: (x: number, y: number) => [number, number, number]): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    return Buffer.concat([len, Buffer.from(type, 'latin1'), data, Buffer.alloc(4)]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const rows: Buffer[] = [];
  for (let y = 0; y < height; y++) {
    rows.push(Buffer.of(0));
    for (let x = 0; x < width; x++) rows.push(Buffer.from(pixel(x, y)));
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('png', () => {
  it('tells a blank page from one with content', () => {
    assert.deepEqual(pngStats(png(20, 10, () => [255, 255, 255])), { width: 20, height: 10, colours: 1, blank: true });
    const drawn = pngStats(png(20, 10, (x) => (x < 10 ? [255, 255, 255] : [0, 0, 0])));
    assert.equal(drawn.blank, false);
    assert.throws(() => pngStats(Buffer.from('not a png at all, clearly not one')));
  });
});

describe('describe redaction', () => {
  it('hides secrets by name and by shape', () => {
    const env = redactedEnv({ PATH: '/bin', GITHUB_TOKEN: 'x', DB_PASSWORD: 'y', NOTE: 'ghp_' + 'a'.repeat(36), HOME: '/root' });
    assert.deepEqual(env, { DB_PASSWORD: '[redacted]', GITHUB_TOKEN: '[redacted]', HOME: '/root', NOTE: '[redacted]', PATH: '/bin' });
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BerthError, ERROR_TABLE } from '../../src/core/errors.js';
import { validateEnvName } from '../../src/core/names.js';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { encodeIdentity, identityHash } from '../../src/core/identity.js';
import { mirrorFor, parseDeb822, parseOneLine } from '../../src/core/apt-sources.js';
import { encodeFrame, FrameDecoder, Kind } from '../../src/agent/protocol.js';
import { tarHeader } from '../../src/toolchain/tar.js';
import { parseArgs } from '../../src/cli/args.js';
import { z } from 'zod';
import { byAttention, leaseNotice, NOTE_MAX, StatusRequest, SupervisionInfo, TakeoverRequest } from '../../src/core/supervision.js';

describe('errors', () => {
  it('every code has a distinct exit code', () => {
    const exits = Object.values(ERROR_TABLE).map((e) => e.exit);
    assert.equal(new Set(exits).size, exits.length);
  });
  it('round-trips over the wire', () => {
    const e = BerthError.fromWire(new BerthError('not_found', 'no environment named x', 'see berth ls').toWire());
    assert.equal(e.code, 'not_found');
    assert.equal(e.oneLine(), 'no environment named x: see berth ls');
    assert.equal(BerthError.fromWire({ code: 'made-up', message: 'x' }, 502).code, 'internal');
  });
});

describe('names', () => {
  it('accepts DNS labels and refuses the rest', () => {
    for (const ok of ['a', 'fix-login', 'a1', 'x'.repeat(63)]) assert.equal(validateEnvName(ok), ok);
    for (const bad of ['', 'A', '-a', 'a-', 'a_b', 'a.b', 'x'.repeat(64), '../x', 'a b']) {
      assert.throws(
        () => validateEnvName(bad),
        (e: BerthError) => e.code === 'invalid_name',
      );
    }
  });
});

describe('identity', () => {
  it('is canonical: key order does not change the hash', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: 2, c: [3, { f: 1, e: 2 }] } }), '{"a":{"c":[3,{"e":2,"f":1}],"d":2},"b":1}');
    const a = identityHash({ repo: 'r', ref: 'abc', toolchain: 'sha256:1' });
    const b = identityHash({ toolchain: 'sha256:1', ref: 'abc', repo: 'r' });
    assert.equal(a, b);
    assert.notEqual(a, identityHash({ repo: 'r', ref: 'abd', toolchain: 'sha256:1' }));
    const short = encodeIdentity({ repo: 'r', ref: 'abc', toolchain: 'sha256:1' });
    assert.deepEqual(JSON.parse(Buffer.from(short.slice('berth1.'.length), 'base64url').toString()), {
      ref: 'abc',
      repo: 'r',
      toolchain: 'sha256:1',
    });
  });
});

describe('apt sources', () => {
  it('reads deb822 and one-line formats and finds the suite mirror', () => {
    const deb822 =
      'Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\nComponents: main\n';
    const s = parseDeb822(deb822);
    assert.equal(s.length, 2);
    assert.equal(mirrorFor(s, 'bookworm')?.uri, 'http://mirror.example/debian');
    const one = parseOneLine(
      '# comment\ndeb [arch=amd64 signed-by=/x] http://m.example/debian bookworm main contrib\ndeb-src http://m.example/debian bookworm main\n',
    );
    assert.deepEqual(one, [{ uri: 'http://m.example/debian', suites: ['bookworm'], components: ['main', 'contrib'] }]);
  });
});

describe('agent frames', () => {
  it('decodes frames split at any byte', () => {
    const frames = Buffer.concat([
      encodeFrame(Kind.Request, 1, '{"op":"ping"}'),
      encodeFrame(Kind.Stdout, 7, Buffer.from('hello')),
      encodeFrame(Kind.StdinEnd, 7),
    ]);
    for (let cut = 0; cut <= frames.length; cut++) {
      const d = new FrameDecoder();
      const got = [...d.push(frames.subarray(0, cut)), ...d.push(frames.subarray(cut))];
      assert.deepEqual(
        got.map((f) => [f.kind, f.id, f.payload.toString()]),
        [
          [Kind.Request, 1, '{"op":"ping"}'],
          [Kind.Stdout, 7, 'hello'],
          [Kind.StdinEnd, 7, ''],
        ],
      );
    }
  });
  it('refuses a corrupt length', () => {
    const bad = Buffer.alloc(9);
    bad.writeUInt32BE(0xffffffff, 0);
    assert.throws(() => new FrameDecoder().push(bad));
  });
});

describe('tar', () => {
  it('writes a header with a valid checksum', () => {
    const h = tarHeader('a/b.json', 1234, 1_700_000_000);
    const stored = parseInt(h.subarray(148, 154).toString(), 8);
    const copy = Buffer.from(h);
    copy.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of copy) sum += b;
    assert.equal(stored, sum);
    assert.equal(parseInt(h.subarray(124, 135).toString(), 8), 1234);
  });
});

describe('cli arguments', () => {
  it('parses flags, values and the command after --', () => {
    const p = parseArgs(['env', '--json', '--timeout', '5', '--env', 'A=1', '--env=B=2', '--', 'ls', '--json'], {
      boolean: ['json'],
      value: ['timeout', 'env'],
    });
    assert.deepEqual(p.positionals, ['env']);
    assert.deepEqual(p.rest, ['ls', '--json']);
    assert.deepEqual(p.flags.get('env'), ['A=1', 'B=2']);
    assert.throws(() => parseArgs(['--nope'], { boolean: [], value: [] }), /unknown option --nope/);
  });
});

describe('supervision', () => {
  const at = '2026-01-01T00:00:00.000Z';
  it('lists those waiting for a human first, then the blocked, otherwise in the order given', () => {
    const envs = [
      { name: 'a', agentStatus: null },
      { name: 'b', agentStatus: { state: 'blocked' as const, note: null, at } },
      { name: 'c', agentStatus: { state: 'working' as const, note: null, at } },
      { name: 'd', agentStatus: { state: 'waiting' as const, note: 'a decision', at } },
      { name: 'e', agentStatus: { state: 'waiting' as const, note: null, at } },
      { name: 'f' },
    ];
    assert.deepEqual(
      byAttention(envs).map((e) => e.name),
      ['d', 'e', 'b', 'a', 'c', 'f'],
    );
  });
  it('words a lease as the agent is told it, and an EnvInfo without the fields has them null', () => {
    assert.equal(
      leaseNotice({ holder: 'ana@host', since: at, note: 'fixing the import', exclusive: false }),
      `human takeover by ana@host since ${at}: fixing the import`,
    );
    assert.equal(
      leaseNotice({ holder: 'ana@host', since: at, note: null, exclusive: true }),
      `exclusive human takeover by ana@host since ${at}`,
    );
    const older = z.object(SupervisionInfo).parse({});
    assert.deepEqual(older, { agentStatus: null, lease: null, handback: null });
    assert.equal(TakeoverRequest.safeParse({ holder: 'two\nlines' }).success, false);
    assert.equal(StatusRequest.safeParse({ state: 'working', note: 'x'.repeat(NOTE_MAX + 1) }).success, false);
  });
});

// The dashboard's pure parts: login tokens, signed cookies, preview host names, its address.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { plain } from '../../src/dashboard/feed.js';
import { dashboardAddress } from '../../src/dashboard/index.js';
import { diffArgv, isOwnCommand } from '../../src/dashboard/own-commands.js';
import { previewHost, previewTarget } from '../../src/dashboard/preview.js';
import { cookies, Sessions } from '../../src/dashboard/session.js';

describe('dashboard sessions', () => {
  const home = mkdtempSync(join(tmpdir(), 'berth-dash-unit-'));
  const s = new Sessions(home);

  it('a login token works once, and the key is kept 0600', () => {
    const { token } = s.mintLogin();
    const cookie = s.exchange(token);
    assert.ok(cookie && s.validSession(cookie));
    assert.equal(s.exchange(token), null);
    assert.equal(s.exchange('made-up'), null);
    assert.equal(s.exchange(undefined), null);
    assert.equal(statSync(join(home, 'dashboard.key')).mode & 0o777, 0o600);
  });

  it('a login link not used yet works once after a restart; the file keeps no token', () => {
    const { token } = s.mintLogin();
    const file = join(home, 'dashboard-logins.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.doesNotMatch(readFileSync(file, 'utf8'), new RegExp(token));
    const after = new Sessions(home);
    assert.ok(after.validSession(after.exchange(token) ?? undefined));
    assert.equal(new Sessions(home).exchange(token), null);
    assert.equal(after.exchange(token), null);
  });

  it('a session survives a restart (same key), not a tampered or foreign cookie', () => {
    const cookie = s.exchange(s.mintLogin().token)!;
    assert.ok(new Sessions(home).validSession(cookie));
    const [exp, nonce, mac] = cookie.split('.');
    assert.equal(s.validSession(`${Number(exp) + 1}.${nonce}.${mac}`), false);
    assert.equal(s.validSession(undefined), false);
    const other = mkdtempSync(join(tmpdir(), 'berth-dash-unit-'));
    assert.equal(new Sessions(other).validSession(cookie), false);
    rmSync(other, { recursive: true, force: true });
  });

  it('a preview cookie is bound to its one host', () => {
    const host = '3000--fix-login.localhost';
    const c = s.previewCookie(s.handoff(host), host)!;
    assert.ok(s.validPreview(c, host));
    assert.equal(s.validPreview(c, '3001--fix-login.localhost'), false);
    assert.equal(s.previewCookie(s.handoff(host), '8080--other.localhost'), null);
    // A session cookie is no preview cookie, nor the other way round.
    assert.equal(s.validSession(c), false);
    rmSync(home, { recursive: true, force: true });
  });

  it('reads cookie headers', () => {
    assert.deepEqual(cookies('a=1; berth_session=x.y.z'), { a: '1', berth_session: 'x.y.z' });
    assert.deepEqual(cookies(undefined), {});
  });
});

describe('preview hosts', () => {
  it('names an environment and a port, here or on another node', () => {
    assert.deepEqual(previewTarget('3000--fix-login.localhost:7781'), { host: '3000--fix-login.localhost', key: 'fix-login', port: 3000 });
    assert.deepEqual(previewTarget('8080--a--b.agents-1.localhost:7781'), {
      host: '8080--a--b.agents-1.localhost',
      key: 'agents-1/a--b',
      port: 8080,
    });
    assert.equal(previewHost('agents-1/web', 5173), '5173--web.agents-1.localhost');
    assert.equal(previewHost('web', 5173), '5173--web.localhost');
    for (const bad of ['localhost:7781', '127.0.0.1:7781', '99999--x.localhost', 'x--3000.localhost', '3000--x.example.com', undefined]) {
      assert.equal(previewTarget(bad), null, String(bad));
    }
    // The preview redirect is built only for a real environment name and port: never elsewhere.
    for (const [key, port] of [
      ['evil.com#', 3000],
      ['a/b/c', 3000],
      ['web', Number.NaN],
      ['web', 0],
      ['web', 70000],
      ['Web', 3000],
    ] as const) {
      assert.throws(() => previewHost(key, port), /no preview/, `${key} ${port}`);
    }
  });

  it("knows the dashboard's own commands by their whole command line, not by a marker an agent could copy", () => {
    const sha = 'a'.repeat(40);
    assert.equal(isOwnCommand(diffArgv(sha)), true);
    const [sh, c, script, name] = diffArgv(sha);
    assert.equal(isOwnCommand([sh!, c!, 'rm -rf /workspace', name!, sha]), false);
    assert.equal(isOwnCommand([sh!, c!, script!, name!, '--output=/tmp/x']), false);
    assert.equal(isOwnCommand(['npm', 'test', name!]), false);
    assert.equal(isOwnCommand(['sh', '-c', 'sleep 1000', 'berth.dashboard=1']), false);
  });
});

describe('the dashboard address', () => {
  it('is loopback only, off when asked', () => {
    assert.deepEqual(dashboardAddress('127.0.0.1:0'), { listen: '127.0.0.1:0', explicit: true });
    assert.equal(dashboardAddress('off'), null);
    assert.throws(
      () => dashboardAddress('0.0.0.0:7781'),
      (e: { code?: string; hint?: string }) => e.code === 'usage' && /loopback only/.test(e.hint ?? ''),
    );
    assert.throws(() => dashboardAddress('127.0.0.1:99999'), /invalid dashboard address/);
  });
});

describe("a command's output on a card", () => {
  it('is plain text: colours, cursor moves, titles and control characters go; tabs and newlines stay', () => {
    assert.equal(plain('\x1b[31mred\x1b[0m\tok\r\nnext\x1b]0;title\x07 line\x1b[2K\x00\x7f'), 'red\tok\nnext line');
    assert.equal(plain('plain'), 'plain');
  });
});

// The side panel (live logs, a terminal, the diff), the confirmation dialog, and notices.
import { api, envPath } from './app.js';
import { h } from './cards.js';
// xterm.js is loaded when a terminal is first opened, so the cards do not wait for it.
const xterm = () => {
  if (!document.querySelector('link[href="/vendor/xterm.css"]')) {
    document.head.append(h('link', { rel: 'stylesheet', href: '/vendor/xterm.css' }));
  }
  return Promise.all([import('/vendor/xterm.mjs'), import('/vendor/addon-fit.mjs')]);
};

const panel = document.getElementById('panel');
const title = document.getElementById('panel-title');
const tools = document.getElementById('panel-tools');
const body = document.getElementById('panel-body');
const notice = document.getElementById('panel-notice');
let current = null; // { key, what, close() }

export function toast(text, bad = false) {
  const t = document.getElementById('toast');
  t.textContent = text;
  t.className = bad ? 'bad' : '';
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 4000);
}

function closePanel() {
  current?.close();
  current = null;
  panel.hidden = true;
  body.replaceChildren();
  tools.replaceChildren();
  notice.hidden = true;
}
document.getElementById('panel-close').addEventListener('click', closePanel);
document.addEventListener('keydown', (e) => e.key === 'Escape' && !document.querySelector('dialog[open]') && closePanel());

export function openPanel(card, what) {
  closePanel();
  panel.hidden = false;
  panel.dataset.env = card.key;
  panel.dataset.what = what;
  title.textContent = `${card.key} · ${what}`;
  current = { key: card.key, what, close: () => {} };
  if (what === 'logs') logsPanel(card);
  else if (what === 'terminal') terminalPanel(card);
  else diffPanel(card);
}

/** The environment shown in the panel went away: say so, plainly, in place of its content. */
export function panelGone(key, reason) {
  if (!current || current.key !== key) return;
  current.close();
  current.close = () => {};
  tools.replaceChildren();
  body.replaceChildren(h('p', { class: 'gone', text: `${key} is gone: ${reason}. Nothing more will show here.` }));
  notice.hidden = true;
}

export function panelUpdate(card) {
  if (!current || current.key !== card.key) return;
  if (card.info.state === 'vanished') return panelGone(card.key, 'its container vanished (removed outside berth)');
  current.update?.(card);
}

function say(text, bad = false) {
  notice.textContent = text;
  notice.className = bad ? 'bad' : '';
  notice.hidden = !text;
}

function logsPanel(card) {
  const pick = h(
    'select',
    { 'aria-label': 'service' },
    card.services.map((s) => h('option', { value: s.name, text: s.name })),
  );
  const out = h('pre', { class: 'log' });
  tools.replaceChildren(pick);
  body.replaceChildren(out);
  let es;
  const follow = () => {
    es?.close();
    out.textContent = '';
    es = new EventSource(`${envPath(card.key)}/logs/${encodeURIComponent(pick.value)}`);
    es.addEventListener('data', (ev) => {
      const stick = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      out.append(JSON.parse(ev.data));
      if (out.textContent.length > 400_000) out.textContent = out.textContent.slice(-200_000);
      if (stick) out.scrollTop = out.scrollHeight;
    });
    es.addEventListener('failed', (ev) => (say(JSON.parse(ev.data).message, true), es.close()));
    es.addEventListener('end', () => es.close());
  };
  pick.addEventListener('change', follow);
  follow();
  current.close = () => es?.close();
}

async function terminalPanel(card) {
  const host = h('div', { class: 'term' });
  body.replaceChildren(host);
  const mine = current;
  const [{ Terminal }, { FitAddon }] = await xterm();
  if (current !== mine) return;
  // A steady cursor: a blinking one redraws on a timer, and the page's echo measured twice as slow with it.
  const term = new Terminal({ convertEol: false, fontSize: 13, cursorBlink: false, scrollback: 5000 });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(host);
  fit.fit();
  let ws = null;
  let mode = 'watch';
  const enc = new TextEncoder();
  const modeLabel = h('span', { class: 'mode' });
  const toolFor = (c) => {
    const b = c.info.lease
      ? h('button', { type: 'button', class: 'handback', onclick: () => confirmAction(c, 'handback'), text: 'Hand back' })
      : h('button', { type: 'button', class: 'takeover', onclick: () => confirmAction(c, 'takeover'), text: 'Take over' });
    tools.replaceChildren(modeLabel, b);
  };
  const connect = (m) => {
    ws?.close();
    mode = m;
    modeLabel.textContent = m === 'shell' ? 'interactive' : 'watching (read-only)';
    modeLabel.className = `mode ${m}`;
    term.reset();
    const q = new URLSearchParams({ env: card.key, mode: m, cols: String(term.cols), rows: String(term.rows) });
    ws = new WebSocket(`ws://${location.host}/ws/terminal?${q}`);
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return term.write(new Uint8Array(ev.data));
      const msg = JSON.parse(ev.data);
      if (msg.idle) say(msg.message);
      else if (msg.session) say(m === 'shell' ? '' : `watching terminal ${msg.session} (${(msg.argv ?? []).join(' ')})`);
      else if (msg.exit) say(`the terminal ended (exit ${msg.exit.exitCode})`);
      else if (msg.error) say(msg.error.message, true);
    };
    ws.onclose = () => modeLabel.classList.add('closed');
  };
  term.onData((d) => {
    if (mode === 'shell' && ws?.readyState === WebSocket.OPEN) ws.send(enc.encode(d));
  });
  term.onResize(({ cols, rows }) => {
    if (mode === 'shell' && ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ resize: [cols, rows] }));
  });
  const ro = new ResizeObserver(() => fit.fit());
  ro.observe(host);
  toolFor(card);
  connect(card.info.lease ? 'shell' : 'watch');
  current.update = (c) => {
    toolFor(c);
    if (c.info.lease && mode !== 'shell') connect('shell');
    if (!c.info.lease && mode === 'shell') connect('watch');
  };
  current.close = () => {
    ro.disconnect();
    ws?.close();
    term.dispose();
  };
  term.focus();
}

async function diffPanel(card) {
  const files = h(
    'ul',
    { class: 'files' },
    (card.changed ?? []).map((f) => h('li', { text: `${f.status} ${f.path}` })),
  );
  const out = h('pre', { class: 'diff', text: 'reading the diff…' });
  body.replaceChildren(files, out);
  try {
    const r = await api('GET', `${envPath(card.key)}/diff`);
    out.replaceChildren(
      ...r.diff.split('\n').map((l) =>
        h('span', {
          class:
            l.startsWith('+++') || l.startsWith('---') || l.startsWith('diff ')
              ? 'meta'
              : l[0] === '+'
                ? 'add'
                : l[0] === '-'
                  ? 'del'
                  : l.startsWith('@@')
                    ? 'hunk'
                    : '',
          text: l + '\n',
        }),
      ),
    );
    if (!r.diff) out.textContent = `no changes since ${card.info.commit.slice(0, 12)}`;
    if (r.truncated) say('the diff is cut at 512 KiB', true);
  } catch (err) {
    out.textContent = '';
    say(err.message, true);
  }
}

const WORDS = {
  pause: (k) => `Pause ${k}? Its processes freeze (memory kept) until resumed.`,
  resume: (k) => `Resume ${k}?`,
  snapshot: (k) => `Snapshot ${k}'s workspace now?`,
  remove: (k) => `Remove ${k}? Its work is snapshotted first; the container goes.`,
  takeover: (k) => `Take over ${k}? Its agent is told (in describe, MCP and the events) until you hand back.`,
  handback: (k) => `Hand ${k} back to its agent? Leave a note it will read.`,
};

/** A verb behind a confirmation; the page changes when the node's event says it happened. */
export function confirmAction(card, verb) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = WORDS[verb](card.key);
  const note = document.getElementById('confirm-note');
  const excl = document.getElementById('confirm-exclusive');
  note.value = '';
  excl.checked = false;
  document.getElementById('confirm-note-label').hidden = verb !== 'takeover' && verb !== 'handback';
  document.getElementById('confirm-exclusive-label').hidden = verb !== 'takeover';
  dlg.dataset.verb = verb;
  dlg.returnValue = '';
  dlg.showModal();
  dlg.onclose = async () => {
    if (dlg.returnValue !== 'ok') return;
    const payload = verb === 'takeover' ? { note: note.value, exclusive: excl.checked } : verb === 'handback' ? { note: note.value } : {};
    try {
      const r = await api('POST', `${envPath(card.key)}/${verb}`, payload);
      toast(verb === 'snapshot' ? `snapshot ${r.id.slice(0, 19)} taken` : `${verb}: done`);
    } catch (err) {
      toast(`${verb} ${card.key}: ${err.message}`, true);
    }
  };
}

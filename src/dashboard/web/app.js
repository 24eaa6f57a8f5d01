// The dashboard page: one card per environment, kept live by the server's event feed (SSE).
// Nothing here polls; the only timer redraws the running commands' elapsed time.
import { renderCard, attention } from './cards.js';
import { openPanel, panelGone, panelUpdate, confirmAction, toast } from './panels.js';

const cards = new Map();
const els = new Map();
const root = document.getElementById('cards');
const filter = document.getElementById('filter');
let nodes = [];

export async function api(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (r.status === 401) {
    location.replace('/login');
    throw new Error('signed out');
  }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error?.message ?? `HTTP ${r.status}`);
  return data;
}

export const envPath = (key) => `/api/envs/${encodeURIComponent(key)}`;

function order(a, b) {
  return attention(a) - attention(b) || (b.activity ?? '').localeCompare(a.activity ?? '') || a.key.localeCompare(b.key);
}

function matches(c, q) {
  if (!q) return true;
  const hay = [c.key, c.info.labels.agent, c.info.labels.task, c.info.state, c.info.agentStatus?.state].join(' ').toLowerCase();
  return q
    .toLowerCase()
    .split(/\s+/)
    .every((w) => hay.includes(w));
}

let scheduled = false;
function redraw() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    const q = filter.value.trim();
    const list = [...cards.values()].sort(order);
    const want = [];
    for (const c of list) {
      let el = els.get(c.key);
      if (!el || el.dataset.rev !== String(c.rev)) {
        const fresh = renderCard(c, handlers);
        if (el) el.replaceWith(fresh);
        el = fresh;
        el.dataset.rev = String(c.rev);
        els.set(c.key, el);
      }
      el.hidden = !matches(c, q);
      want.push(el);
    }
    // Reorder only what moved, so a card being read does not jump needlessly.
    want.forEach((el, i) => {
      if (root.children[i] !== el) root.insertBefore(el, root.children[i] ?? null);
    });
    for (const [key, el] of els) if (!cards.has(key)) (el.remove(), els.delete(key));
    document.getElementById('empty').hidden = cards.size > 0;
    summary();
  });
}

function summary() {
  const all = [...cards.values()];
  const waiting = all.filter((c) => c.info.agentStatus?.state === 'waiting').length;
  const running = all.filter((c) => c.running).length;
  const down = nodes.filter((n) => n.error);
  document.getElementById('summary').textContent =
    `${all.length} environment${all.length === 1 ? '' : 's'} on ${nodes.length || 1} node${nodes.length > 1 ? 's' : ''}` +
    (waiting ? ` · ${waiting} waiting for you` : '') +
    (running ? ` · ${running} running a command` : '');
  const n = document.getElementById('nodes');
  n.replaceChildren(
    ...down.map((d) => {
      const p = document.createElement('p');
      p.className = 'node-down';
      p.textContent = `node ${d.node ?? '(this node)'} is unreachable: ${d.error}`;
      return p;
    }),
  );
}

let rev = 0;
function put(card) {
  card.rev = ++rev;
  card.nodeError = card.node === null ? null : (nodes.find((n) => n.node === card.node)?.error ?? null);
  cards.set(card.key, card);
  panelUpdate(card);
  redraw();
}

const handlers = {
  open: (card, what) => openPanel(cards.get(card.key) ?? card, what),
  act: (card, verb) => confirmAction(cards.get(card.key) ?? card, verb),
  copy: async (card) => {
    const cmd = `berth enter ${card.key}`;
    try {
      await navigator.clipboard.writeText(cmd);
      toast(`copied: ${cmd}`);
    } catch {
      toast(`copy this: ${cmd}`);
    }
  },
};

function connect() {
  const conn = document.getElementById('conn');
  const es = new EventSource('/api/feed');
  es.onopen = () => {
    conn.textContent = 'live';
    conn.className = 'conn live';
  };
  es.onerror = () => {
    conn.textContent = 'reconnecting…';
    conn.className = 'conn down';
    // A session that ended: the feed answers 401, and EventSource gives up; say so.
    if (es.readyState === EventSource.CLOSED) {
      fetch('/api/feed', { method: 'HEAD' }).then(
        (r) => r.status === 401 && location.replace('/login'),
        () => {},
      );
      setTimeout(connect, 2000);
    }
  };
  es.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === 'nodes') {
      nodes = m.nodes;
      // The cards of a node that went out of reach, or came back, say so.
      for (const c of cards.values()) if (c.node !== null && c.nodeError !== (nodes.find((n) => n.node === c.node)?.error ?? null)) put(c);
      redraw();
    } else if (m.type === 'hello') {
      nodes = m.nodes;
      const keys = new Set(m.cards.map((c) => c.key));
      for (const k of [...cards.keys()]) if (!keys.has(k)) (cards.delete(k), panelGone(k, 'removed'));
      for (const c of m.cards) put(c);
      document.body.dataset.ready = '1';
      redraw();
    } else if (m.type === 'card') put(m.card);
    else if (m.type === 'gone') {
      cards.delete(m.key);
      panelGone(m.key, m.reason);
      redraw();
    }
  };
}

filter.addEventListener('input', redraw);
document.getElementById('logout').addEventListener('click', async () => {
  await api('POST', '/api/logout').catch(() => {});
  location.replace('/login');
});
// Elapsed times and ages: text only, no request.
setInterval(() => {
  for (const el of document.querySelectorAll('[data-since]')) {
    el.textContent = el.dataset.prefix + ago(el.dataset.since) + (el.dataset.suffix ?? '');
  }
}, 1000);

export function ago(iso) {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d`;
}

connect();

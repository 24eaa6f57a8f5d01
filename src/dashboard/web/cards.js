// One environment's card, built with DOM calls only (text is never parsed as HTML).
import { ago, envPath } from './app.js';

const RANK = { waiting: 0, blocked: 1 };
/** Waiting for a human first, then blocked, then the rest. */
export function attention(c) {
  return RANK[c.info.agentStatus?.state] ?? 2;
}

export function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k.startsWith('data-')) el.dataset[k.slice(5).replace(/-(\w)/g, (_, x) => x.toUpperCase())] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined && k !== false) el.append(k);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
function sparkline(values, max, label, fmt) {
  const w = 96;
  const hgt = 28;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
  svg.setAttribute('class', 'spark');
  svg.setAttribute('role', 'img');
  const pts = values.map((v, i) => [i, v]).filter(([, v]) => v !== null && v !== undefined);
  const last = pts.length ? pts[pts.length - 1][1] : null;
  svg.setAttribute('aria-label', `${label} ${last === null ? 'unknown' : fmt(last)}`);
  const top = Math.max(max ?? 0, ...pts.map(([, v]) => v), 1e-9);
  if (pts.length > 1) {
    const n = Math.max(values.length - 1, 1);
    const d = pts
      .map(([i, v], j) => `${j ? 'L' : 'M'}${((i / n) * w).toFixed(1)},${(hgt - 2 - (v / top) * (hgt - 4)).toFixed(1)}`)
      .join(' ');
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return h('figure', { class: 'metric' }, svg, h('figcaption', { text: `${label} ${last === null ? '—' : fmt(last)}` }));
}

const mb = (b) => (b >= 1 << 30 ? `${(b / (1 << 30)).toFixed(1)} GiB` : `${Math.round(b / (1 << 20))} MiB`);
const pct = (x) => `${Math.round(x * 100)}%`;
const argvText = (argv) => argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');

function since(prefix, iso, suffix = '') {
  return h('span', { 'data-since': iso, 'data-prefix': prefix, 'data-suffix': suffix, text: prefix + ago(iso) + suffix });
}

export function renderCard(c, on) {
  const i = c.info;
  const st = i.agentStatus;
  const paused = i.state === 'paused';
  const running = i.state === 'running';
  const gone = i.state === 'vanished' || i.state === 'removing';
  const btn = (label, fn, attrs = {}) => h('button', { type: 'button', onclick: fn, ...attrs, text: label });
  const svc = c.services.map((s) => h('li', { class: `svc ${s.state}`, title: s.detail ?? '', text: `${s.name}: ${s.state}` }));
  const ports = c.ports.map((p) =>
    h('a', { class: 'port', href: `/preview${envPath(c.key).slice(4)}/${p}`, target: '_blank', rel: 'noopener', text: `:${p} ↗` }),
  );
  const changed = c.changed;
  const lastLines = (text) => text.replace(/\n+$/, '').split('\n').slice(-6).join('\n');
  // Recent output: the last command's, or else its services' logs.
  const own = c.running ? null : c.last?.output;
  const tail = lastLines(
    own ||
      c.services
        .map((s) => s.logTail)
        .filter(Boolean)
        .join('\n'),
  );
  return h(
    'article',
    { class: `card state-${i.state} ${st ? `agent-${st.state}` : ''} ${i.lease ? 'leased' : ''}`, 'data-env': c.key },
    h('header', {}, h('h3', { class: 'name', text: c.key }), h('span', { class: `state ${i.state}`, text: i.state })),
    c.nodeError ? h('p', { class: 'node-out', text: `its node ${c.node} is out of reach; shown as last seen (${c.nodeError})` }) : null,
    h('p', { class: 'who' }, h('b', { text: i.labels.agent ?? 'no agent' }), ' · ', h('span', { text: i.labels.task ?? 'no task' })),
    h(
      'p',
      { class: `status ${st?.state ?? 'none'}` },
      h('b', { class: 'status-state', text: st ? st.state : 'no status reported' }),
      st?.note ? h('span', { class: 'status-note', text: ` — ${st.note}` }) : null,
      st ? since(' · ', st.at, ' ago') : null,
    ),
    i.lease
      ? h('p', {
          class: 'lease',
          text: `taken over by ${i.lease.holder}${i.lease.exclusive ? ' (exclusive)' : ''}${i.lease.note ? ` — ${i.lease.note}` : ''}`,
        })
      : i.handback?.note
        ? h('p', { class: 'handback', text: `handed back by ${i.handback.by}: ${i.handback.note}` })
        : null,
    c.running
      ? h(
          'p',
          { class: 'running' },
          h('span', { class: 'dot' }),
          h('code', { text: argvText(c.running.argv) }),
          since(' running for ', c.running.since),
        )
      : c.last
        ? h(
            'p',
            { class: `last ${c.last.exitCode === 0 ? 'ok' : 'bad'}` },
            h('code', { text: argvText(c.last.argv) }),
            h('span', { class: 'exit', text: ` exited ${c.last.exitCode}${c.last.timedOut ? ' (timed out)' : ''}` }),
            h('span', {
              text: ` in ${c.last.durationMs < 1000 ? `${Math.round(c.last.durationMs)} ms` : `${(c.last.durationMs / 1000).toFixed(1)} s`}`,
            }),
          )
        : h('p', { class: 'idle', text: 'no command run since the dashboard started' }),
    svc.length ? h('ul', { class: 'services' }, svc) : null,
    ports.length ? h('p', { class: 'ports' }, 'open: ', ports) : null,
    h(
      'div',
      { class: 'metrics' },
      sparkline(
        c.stats.map((s) => s.cpu),
        i.limits.cpus,
        'CPU',
        pct,
      ),
      sparkline(
        c.stats.map((s) => s.mem),
        c.memLimit,
        'mem',
        mb,
      ),
    ),
    h(
      'p',
      { class: 'facts' },
      h('span', { class: 'snaps', text: `${c.snapshots.count} snapshot${c.snapshots.count === 1 ? '' : 's'}` }),
      c.snapshots.lastAt ? since(' (last ', c.snapshots.lastAt, ' ago)') : null,
      ' · ',
      changed === null
        ? h('span', { text: 'changes unknown' })
        : h('a', {
            href: '#',
            class: 'changed',
            onclick: (e) => (e.preventDefault(), on.open(c, 'diff')),
            text: `${changed.length} changed file${changed.length === 1 ? '' : 's'}`,
          }),
      ' · ',
      since('active ', c.activity, ' ago'),
    ),
    tail
      ? h('pre', {
          class: `tail ${own ? 'command' : 'services'}`,
          title: own ? 'the last command’s output' : 'its services’ logs',
          text: tail,
        })
      : null,
    h(
      'nav',
      { class: 'actions' },
      btn('Logs', () => on.open(c, 'logs'), { disabled: !c.services.length || !running }),
      btn('Terminal', () => on.open(c, 'terminal'), { disabled: !running }),
      btn('Diff', () => on.open(c, 'diff'), { disabled: !running }),
      btn('Copy enter', () => on.copy(c)),
      paused ? btn('Resume', () => on.act(c, 'resume')) : btn('Pause', () => on.act(c, 'pause'), { disabled: !running }),
      btn('Snapshot', () => on.act(c, 'snapshot'), { disabled: !running }),
      i.lease ? btn('Hand back', () => on.act(c, 'handback')) : btn('Take over', () => on.act(c, 'takeover'), { disabled: gone }),
      btn('Remove', () => on.act(c, 'remove'), { class: 'danger' }),
    ),
  );
}

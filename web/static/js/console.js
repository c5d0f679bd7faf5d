// The operators' console: the running system (topology, live), its traffic,
// an order's saga beside its trace, the events backlog and dead letters, and
// the catalog and stock. Admins only: every call goes through the gateway
// with the admin's token, to /api/admin/… (which the gateway serves itself)
// or to the public admin API. The address's #fragment says which page shows.
import { api, stream, session, money, h, when, announce, forgetAnnouncement, field, showErrors, ApiError } from './api.js';

const main = document.getElementById('main');
const account = document.getElementById('account');
const sections = document.getElementById('sections');

// view is what the page shows now; leaving it aborts its streams and
// timers through its signal.
let view = new AbortController();

function page(title, ...nodes) {
  document.title = `${title} · Souk console`;
  const h1 = h('h1', { tabindex: '-1' }, title);
  main.replaceChildren(h1, ...nodes.filter(Boolean));
  h1.focus();
}

const words = (err) => (err instanceof ApiError ? err.words : err?.words || String(err?.message || err));
const errorBox = (err) => h('p', { class: 'error', role: 'alert' }, words(err));
const form = (onsubmit, ...children) => h('form', { onsubmit, novalidate: true }, h('p', { class: 'form-error', role: 'alert', tabindex: '-1' }), ...children);
const scroll = (table) => h('div', { class: 'scroll', tabindex: '0', role: 'region', 'aria-label': table.caption?.textContent || 'Table' }, table);
const table = (caption, heads, rows) => h('table', {}, h('caption', { class: 'visually-hidden' }, caption),
  h('thead', {}, h('tr', {}, heads.map((x) => h('th', { scope: 'col' }, x)))), h('tbody', {}, rows));
const shortID = (id) => id.slice(0, 8) + '…';
const every = (ms, fn) => { const t = setInterval(fn, ms); view.signal.addEventListener('abort', () => clearInterval(t)); };
const number = (v, digits = 0) => (v == null ? 'none' : v.toLocaleString(undefined, { maximumFractionDigits: digits }));
const ms = (v) => (v === 0 ? '0 ms' : v < 1 ? `${v.toFixed(2)} ms` : v < 1000 ? `${Math.round(v)} ms` : `${(v / 1000).toFixed(2)} s`);
const age = (s) => (s < 60 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min` : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} days`);

// The session: the console needs an admin's, kept fresh with the refresh
// token while the page is open.
function renderAccount() {
  const s = session.get();
  account.replaceChildren(...(s
    ? [h('span', { class: 'muted' }, s.name || 'Admin'), h('button', { type: 'button', class: 'link', onclick: logout }, 'Log out')]
    : [h('a', { href: '/' }, 'Shop')]));
  sections.hidden = !(s && s.role === 'admin');
}

async function logout() {
  const s = session.get();
  session.end();
  try {
    if (s?.login?.refresh_token) await api('POST', '/api/auth/logout', { body: { refresh_token: s.login.refresh_token } });
  } catch { /* the session ends here either way */ }
  renderAccount();
  announce('You are logged out.');
  route();
}

async function refresh() {
  let s;
  try { s = JSON.parse(sessionStorage.getItem('souk.session')); } catch { return; }
  if (!s?.login?.refresh_token || s.exp * 1000 - Date.now() > 90_000 || s.exp * 1000 < Date.now()) return;
  try {
    const login = await api('POST', '/api/auth/refresh', { body: { refresh_token: s.login.refresh_token } });
    session.start(login, s.name);
  } catch { /* it ends; the next call asks to log in */ }
}
setInterval(refresh, 30_000);

function login(reason) {
  const f = form(async (e) => {
    e.preventDefault();
    const btn = f.querySelector('button');
    btn.disabled = true;
    try {
      const s = session.start(await api('POST', '/api/auth/login', { body: { email: f.email.value.trim(), password: f.password.value } }));
      if (s.role !== 'admin') {
        session.end();
        throw Object.assign(new Error(), { words: 'That account is not an admin’s: the console is for admins only.' });
      }
      let name = '';
      try { name = (await api('GET', `/api/users/${s.id}`)).name; } catch { /* greet without a name */ }
      session.start(s.login, name);
      renderAccount();
      announce(`Welcome, ${name || 'admin'}.`);
      route();
    } catch (err) {
      btn.disabled = false;
      showErrors(f, err);
    }
  },
  field('Email', 'email', { type: 'email', autocomplete: 'username', required: true }),
  field('Password', 'password', { type: 'password', autocomplete: 'current-password', required: true }),
  h('button', {}, 'Log in'));
  page('Log in to the console', reason ? h('p', { class: 'error', role: 'alert' }, reason) : null, f,
    h('p', { class: 'muted' }, 'Use an admin account. ', h('a', { href: '/' }, 'Back to the shop')));
}

// ---- Topology -----------------------------------------------------------

const healthWords = { ready: 'Ready', not_ready: 'Not ready', unreachable: 'Unreachable' };
const breakerWords = { closed: 'Closed', half_open: 'Half-open', open: 'Open', none: 'Not called yet' };

function topology() {
  const live = h('p', { class: 'muted', id: 'live' }, 'Connecting…');
  const grid = h('div', { class: 'services', id: 'topology', 'aria-live': 'off' });
  const problem = h('div');
  page('Topology', h('p', {}, 'Every service, its live instances from the registry, what each one’s readiness check says, and the state of the gateway’s circuit breaker to it.'), live, problem, grid);
  stream('/api/admin/topology/stream', (type, top) => {
    if (type !== 'topology') return false;
    problem.replaceChildren();
    live.textContent = `Live: updated ${new Date(top.at).toLocaleTimeString()}`;
    grid.replaceChildren(...top.services.map((s) => {
      const n = s.instances.length;
      return h('section', { class: 'card service', 'data-service': s.name, 'aria-labelledby': `svc-${s.name}` },
        h('h2', { id: `svc-${s.name}` }, s.name, ' ', h('span', { class: n ? 'muted' : 'bad' }, n === 1 ? '1 instance' : `${n} instances`)),
        n ? scroll(table(`Instances of ${s.name}`, ['Instance', 'Up for', 'Health', 'Breaker'],
          s.instances.map((i) => h('tr', { 'data-instance': i.id },
            h('td', { title: i.id }, shortID(i.id), h('br'), h('span', { class: 'muted' }, i.url.replace(/^https?:\/\//, ''))),
            h('td', { title: when(i.started) }, age(Math.max(0, (new Date(top.at) - new Date(i.started)) / 1000))),
            h('td', {}, h('span', { class: `badge ${i.health}` }, healthWords[i.health] || i.health)),
            h('td', {}, s.name === 'gateway' ? h('span', { class: 'muted', title: 'The breakers are the gateway’s own' }, '—')
              : h('span', { class: `badge breaker-${i.breaker}` }, breakerWords[i.breaker] || i.breaker))))))
          : h('p', { class: 'bad' }, 'No instance is running.'));
    }));
    return false;
  }, { signal: view.signal, onError: (err) => {
    if (err.status === 401) return login('Your session has ended: please log in again.');
    live.textContent = 'Not live: reconnecting…';
    problem.replaceChildren(errorBox(err));
  } });
}

// ---- Traffic ------------------------------------------------------------

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

// chart draws values (oldest first; null where there was nothing to
// measure) as a small line, with its latest and highest value in words.
function chart(label, values, fmt) {
  const W = 200, H = 48;
  const known = values.filter((v) => v != null);
  const max = Math.max(...known, 0);
  const top = max || 1;
  const x = (i) => (values.length < 2 ? W : (i * W) / (values.length - 1));
  const y = (v) => H - 3 - (v / top) * (H - 6);
  const lines = [];
  let run = [];
  values.forEach((v, i) => {
    if (v == null) { if (run.length) lines.push(run); run = []; return; }
    run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  });
  if (run.length) lines.push(run);
  const latest = [...values].reverse().find((v) => v != null);
  const said = known.length ? `latest ${fmt(latest)}, highest ${fmt(max)}` : 'nothing measured yet';
  return h('figure', { class: 'chart' },
    svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${label}: ${said}`, preserveAspectRatio: 'none' },
      svg('line', { x1: 0, y1: H - 3, x2: W, y2: H - 3, class: 'axis' }),
      ...lines.map((pts) => (pts.length === 1
        ? svg('circle', { cx: pts[0].split(',')[0], cy: pts[0].split(',')[1], r: 2 })
        : svg('polyline', { points: pts.join(' ') })))),
    h('figcaption', {}, h('span', {}, label), h('strong', {}, known.length ? fmt(latest) : '–')));
}

async function traffic() {
  const body = h('div', { class: 'services', id: 'traffic' });
  const note = h('p', { class: 'muted' });
  page('Traffic', h('p', {}, 'Per service, from its own metrics: requests a second, the share of answers that were server errors, and the 99th percentile of the time to answer, over the last minutes.'), note, body);
  const load = async () => {
    try {
      const t = await api('GET', '/api/admin/traffic', { signal: view.signal });
      const from = t.source === 'prometheus' ? `From Prometheus at ${t.prometheus}`
        : t.source_error ? `Sampled by the gateway, as Prometheus did not answer (${t.source_error})` : 'Sampled by the gateway';
      note.textContent = `${from}: a point every ${t.every_seconds} s; updated ${new Date().toLocaleTimeString()}.`;
      body.replaceChildren(...t.services.map((s) => h('section', { class: 'card', 'data-service': s.name },
        h('h2', {}, s.name),
        h('div', { class: 'charts' },
          chart('Requests/s', s.points.map((p) => p.rps), (v) => number(v, 1)),
          chart('Errors', s.points.map((p) => p.error_rate), (v) => `${number(v * 100, 1)} %`),
          chart('p99', s.points.map((p) => p.p99_ms ?? null), ms)))));
    } catch (err) {
      if (err.name === 'AbortError') return;
      if (err.status === 401) return login('Your session has ended: please log in again.');
      body.replaceChildren(errorBox(err));
    }
  };
  await load();
  every(5000, load);
}

// ---- Orders -------------------------------------------------------------

// An event's type is souk.<service>.v<N>.<Name>: who emitted it, and what.
const emitter = (type) => type.split('.')[1] || 'unknown';
const eventName = (type) => type.split('.').pop();

async function orders(id) {
  const search = h('form', { role: 'search', class: 'search', onsubmit: (e) => {
    e.preventDefault();
    const v = e.target.order.value.trim().toLowerCase();
    if (v) location.hash = `#/orders/${encodeURIComponent(v)}`;
  } },
  h('label', { for: 'order-id' }, 'Order id'),
  h('input', { id: 'order-id', name: 'order', value: id || '', autocomplete: 'off', spellcheck: 'false', placeholder: '0190b3c4-…' }),
  h('button', {}, 'Find'));
  const detail = h('div', { id: 'order' });
  const recent = h('div', { id: 'recent-orders' });
  page(id ? `Order ${shortID(id)}` : 'Orders', search, detail, h('h2', {}, 'Recent orders'), recent);
  listOrders(recent);
  if (id) showOrder(id, detail);
}

async function listOrders(box) {
  try {
    const res = await api('GET', '/api/orders?scope=all&limit=20', { signal: view.signal });
    if (!res.items.length) { box.replaceChildren(h('p', {}, 'No order has been placed yet.')); return; }
    box.replaceChildren(scroll(table('Recent orders, newest first', ['Order', 'Status', 'Total', 'Placed'],
      res.items.map((o) => h('tr', {},
        h('td', {}, h('a', { href: `#/orders/${o.id}`, title: o.id }, shortID(o.id))),
        h('td', {}, h('span', { class: `badge ${o.status}` }, o.status.replace(/_/g, ' '))),
        h('td', {}, money(o.total)),
        h('td', {}, when(o.created_at)))))));
  } catch (err) {
    if (err.name !== 'AbortError') box.replaceChildren(errorBox(err));
  }
}

async function showOrder(id, box) {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) {
    box.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'An order id looks like 0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d.'));
    return;
  }
  box.replaceChildren(h('p', { class: 'muted' }, 'Loading the order…'));
  let o, log;
  try {
    [o, log] = await Promise.all([api('GET', `/api/orders/${id}`, { signal: view.signal }), api('GET', `/api/orders/${id}/events`, { signal: view.signal })]);
  } catch (err) {
    if (err.name === 'AbortError') return;
    box.replaceChildren(err.status === 404 ? h('p', { class: 'error', role: 'alert' }, `No order ${id}.`) : errorBox(err));
    return;
  }
  const trace = h('div', { id: 'trace' }, h('p', { class: 'muted' }, 'Loading the trace…'));
  box.replaceChildren(
    h('p', { class: 'order-summary' },
      h('span', { class: `badge ${o.status}`, id: 'order-status' }, o.status.replace(/_/g, ' ')), ' ',
      `${money(o.total)}, ${o.items.reduce((n, l) => n + l.quantity, 0)} items, placed ${when(o.created_at)}`,
      o.reason ? h('span', {}, ` — cancelled: ${o.reason.replace(/_/g, ' ')}`) : null),
    h('div', { class: 'side-by-side' },
      h('section', { 'aria-labelledby': 'saga-h' }, h('h2', { id: 'saga-h' }, 'Saga'), timeline(log.items)),
      h('section', { 'aria-labelledby': 'trace-h' }, h('h2', { id: 'trace-h' }, 'Trace'), trace)));
  try {
    const t = await api('GET', `/api/admin/orders/${id}/trace`, { signal: view.signal });
    trace.replaceChildren(waterfall(t));
  } catch (err) {
    if (err.name !== 'AbortError') trace.replaceChildren(h('p', { class: 'muted' }, words(err)));
  }
}

// timeline lists an order's log: each event, who emitted it, when after
// the first, and how long the step since the previous one took.
function timeline(events) {
  if (!events.length) return h('p', {}, 'The order’s log is empty.');
  const t0 = new Date(events[0].at);
  let prev = t0;
  return h('ol', { class: 'timeline' }, events.map((e) => {
    const at = new Date(e.at);
    const step = at - prev;
    prev = at;
    const reason = e.data && typeof e.data === 'object' && e.data.reason ? `: ${String(e.data.reason).replace(/_/g, ' ')}` : '';
    return h('li', { class: `by-${emitter(e.type)}` },
      h('span', { class: 'when' }, `+${ms(at - t0)}`),
      h('span', { class: 'what' }, h('strong', {}, eventName(e.type)), reason),
      h('span', { class: 'who muted' }, `by ${emitter(e.type)}`, e.seq > 1 ? `, step took ${ms(step)}` : ''));
  }));
}

// waterfall draws a trace's spans on one time axis, children under their
// parents.
function waterfall(t) {
  const spans = [...t.spans].sort((a, b) => new Date(a.start) - new Date(b.start));
  const t0 = Math.min(...spans.map((s) => new Date(s.start).getTime()));
  const end = Math.max(...spans.map((s) => new Date(s.start).getTime() + s.duration_ms));
  const total = Math.max(end - t0, 0.001);
  const depth = {};
  for (const s of spans) depth[s.span_id] = s.parent_id && depth[s.parent_id] !== undefined ? depth[s.parent_id] + 1 : 0;
  return h('div', {},
    h('p', { class: 'muted' }, `${spans.length} spans over ${ms(total)}, trace ${t.trace_id}`),
    h('ol', { class: 'waterfall' }, spans.map((s) => {
      const bar = h('span', { class: `bar${s.error ? ' failed' : ''}` });
      bar.style.marginLeft = `${((new Date(s.start) - t0) / total) * 100}%`;
      bar.style.width = `${Math.max((s.duration_ms / total) * 100, 0.5)}%`;
      const label = h('span', { class: 'label', title: `${s.service} ${s.name}` }, h('strong', {}, s.service), ` ${s.name}`, s.error ? ' (failed)' : '');
      label.style.paddingLeft = `${Math.min(depth[s.span_id], 8) * 0.6}rem`;
      return h('li', {}, label, h('span', { class: 'track' }, bar), h('span', { class: 'dur' }, ms(s.duration_ms)));
    })));
}

// ---- Events -------------------------------------------------------------

async function eventsPage() {
  const backlog = h('div', { id: 'backlog' }, h('p', { class: 'muted' }, 'Loading…'));
  const letters = h('div', { id: 'dead-letters' }, h('p', { class: 'muted' }, 'Loading…'));
  page('Events',
    h('h2', {}, 'Backlog'),
    h('p', {}, 'Per service: events written to its outbox and not yet published, and per consumer the events in its stream not yet delivered (its lag) and those it gave up on.'),
    backlog,
    h('h2', {}, 'Dead letters'),
    h('p', {}, 'Events a consumer gave up on, with why. Replaying one publishes it again for every consumer of its subject, through the service whose event it is.'),
    h('button', { type: 'button', class: 'secondary', onclick: () => loadLetters(letters) }, 'Refresh the dead letters'),
    letters);
  loadBacklog(backlog);
  loadLetters(letters);
  every(5000, () => loadBacklog(backlog));
}

async function loadBacklog(box) {
  try {
    const t = await api('GET', '/api/admin/traffic', { signal: view.signal });
    const rows = [];
    for (const s of t.services) {
      const b = s.backlog;
      const outbox = b.outbox_pending ? `${number(b.outbox_pending)} waiting, oldest ${age(b.outbox_oldest_seconds)}` : 'empty';
      if (!b.consumers.length) rows.push(h('tr', {}, h('th', { scope: 'row' }, s.name), h('td', {}, outbox), h('td', {}, 'no consumer'), h('td', {}), h('td', {})));
      b.consumers.forEach((c, i) => rows.push(h('tr', {},
        h('th', { scope: 'row' }, i ? '' : s.name), h('td', {}, i ? '' : outbox), h('td', {}, c.name),
        h('td', {}, number(c.pending)), h('td', { class: c.dead_lettered ? 'bad' : '' }, number(c.dead_lettered)))));
    }
    box.replaceChildren(scroll(table('Events backlog per service', ['Service', 'Outbox', 'Consumer', 'Lag', 'Dead letters'], rows)));
  } catch (err) {
    if (err.name !== 'AbortError') box.replaceChildren(errorBox(err));
  }
}

async function loadLetters(box) {
  try {
    const res = await api('GET', '/api/admin/dead-letters', { signal: view.signal });
    if (!res.items.length) { box.replaceChildren(h('p', {}, 'No dead letters: every event was handled.')); return; }
    box.replaceChildren(h('ul', { class: 'letters' }, res.items.map((d) => h('li', { class: 'card', 'data-seq': String(d.seq) },
      h('h3', {}, `${eventName(d.subject)} `, h('span', { class: 'muted' }, `#${d.seq}`)),
      h('dl', {},
        h('dt', {}, 'Consumer'), h('dd', {}, d.consumer),
        h('dt', {}, 'Subject'), h('dd', {}, d.subject),
        h('dt', {}, 'Why'), h('dd', { class: 'bad' }, d.reason),
        h('dt', {}, 'Tried'), h('dd', {}, `${d.deliveries === 1 ? 'once' : `${d.deliveries} times`}, last ${when(d.time)}`)),
      h('button', { type: 'button', 'aria-label': `Replay dead letter ${d.seq}`, onclick: (e) => replay(d, e.target, box) }, 'Replay')))));
  } catch (err) {
    if (err.name !== 'AbortError') box.replaceChildren(errorBox(err));
  }
}

async function replay(d, btn, box) {
  btn.disabled = true;
  try {
    await api('POST', `/api/admin/dead-letters/${d.seq}/replay`);
    announce(`Dead letter ${d.seq} replayed: ${eventName(d.subject)} is published again.`);
    await loadLetters(box);
  } catch (err) {
    btn.disabled = false;
    btn.after(errorBox(err));
  }
}

// ---- Catalog and stock --------------------------------------------------

const digits = (currency) => new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
const major = (m) => (m.amount / 10 ** digits(m.currency)).toFixed(digits(m.currency));

async function catalog(params) {
  const q = params.get('q') || '';
  const cursor = params.get('cursor') || '';
  const search = h('form', { role: 'search', class: 'search', onsubmit: (e) => {
    e.preventDefault();
    const v = e.target.q.value.trim();
    location.hash = v ? `#/catalog?q=${encodeURIComponent(v)}` : '#/catalog';
  } },
  h('label', { for: 'q' }, 'Search products'),
  h('input', { id: 'q', name: 'q', type: 'search', value: q, maxlength: '200' }),
  h('button', {}, 'Search'));
  const list = h('div', { id: 'products' }, h('p', { class: 'muted' }, 'Loading…'));
  page('Catalog and stock', h('p', {}, h('a', { class: 'button', href: '#/catalog/new' }, 'New product')), search, list);
  try {
    const qs = new URLSearchParams({ limit: '20' });
    if (q) qs.set('q', q);
    if (cursor) qs.set('cursor', cursor);
    const res = await api('GET', `/api/products?${qs}`, { signal: view.signal });
    if (!res.items.length) { list.replaceChildren(h('p', {}, q ? 'No product matches your search.' : 'The shop has no products yet.')); return; }
    const stock = await Promise.all(res.items.map((p) => api('GET', `/api/inventory/${p.id}`, { signal: view.signal }).catch(() => null)));
    list.replaceChildren(scroll(table('Products', ['Product', 'Price', 'Available', 'Reserved', 'Sold'],
      res.items.map((p, i) => h('tr', { 'data-product': p.id },
        h('td', {}, h('a', { href: `#/catalog/${p.id}` }, p.name)),
        h('td', {}, money(p.price)),
        h('td', {}, stock[i] ? number(stock[i].available) : 'unknown'),
        h('td', {}, stock[i] ? number(stock[i].reserved) : 'unknown'),
        h('td', {}, stock[i] ? number(stock[i].sold) : 'unknown'))))),
    ...(res.next_cursor ? [h('p', {}, h('a', { href: `#/catalog?${new URLSearchParams({ ...(q ? { q } : {}), cursor: res.next_cursor })}` }, 'Next page'))] : []));
  } catch (err) {
    if (err.name !== 'AbortError') list.replaceChildren(errorBox(err));
  }
}

// price reads a price field into minor units, or throws with the field's
// error in words.
function price(f) {
  const currency = f.currency.value.trim().toUpperCase();
  let d;
  try { d = digits(currency); } catch {
    throw Object.assign(new Error(), { fields: { currency: 'a currency code like EUR' }, words: 'Please correct the currency.' });
  }
  const v = f.price.value.trim().replace(',', '.');
  if (!/^\d+(\.\d+)?$/.test(v) || (v.split('.')[1] || '').length > d) {
    throw Object.assign(new Error(), { fields: { price: `a price like ${(12.5).toFixed(d)}, with at most ${d} decimals` }, words: 'Please correct the price.' });
  }
  return { amount: Math.round(Number(v) * 10 ** d), currency };
}

async function product(id) {
  const isNew = id === 'new';
  let p = { name: '', description: '', price: { amount: 0, currency: 'EUR' } };
  let st = { available: 0, reserved: 0, sold: 0 };
  if (!isNew) {
    try {
      [p, st] = await Promise.all([api('GET', `/api/products/${id}`, { signal: view.signal }), api('GET', `/api/inventory/${id}`, { signal: view.signal })]);
    } catch (err) {
      if (err.name !== 'AbortError') page('Product', errorBox(err), h('p', {}, h('a', { href: '#/catalog' }, 'Back to the catalog')));
      return;
    }
  }
  const f = form(async (e) => {
    e.preventDefault();
    const btn = f.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      const body = { name: f.name.value.trim(), description: f.description.value.trim(), price: price(f) };
      const available = f.available.value.trim() || '0';
      if (!/^\d+$/.test(available)) {
        throw Object.assign(new Error(), { fields: { available: 'a whole number, 0 or more' }, words: 'Please correct the stock.' });
      }
      const saved = isNew ? await api('POST', '/api/products', { body }) : await api('PATCH', `/api/products/${id}`, { body });
      if (isNew || Number(available) !== st.available) {
        try {
          await api('PUT', `/api/inventory/${saved.id}`, { body: { available: Number(available) } });
        } catch (err) {
          location.hash = `#/catalog/${saved.id}`;
          announce(`${saved.name} is saved, but its stock is not: ${words(err)}`);
          return;
        }
      }
      announce(`${saved.name} is saved, ${available} available.`);
      location.hash = `#/catalog?q=${encodeURIComponent(saved.name)}`;
    } catch (err) {
      btn.disabled = false;
      showErrors(f, err);
    }
  },
  field('Name', 'name', { required: true, maxlength: '200', value: p.name }),
  h('div', { class: 'field' },
    h('label', { for: 'f-description' }, 'Description'),
    h('textarea', { id: 'f-description', name: 'description', rows: '3', maxlength: '2000', 'aria-describedby': 'f-description-err' }, p.description || ''),
    h('p', { class: 'field-error', id: 'f-description-err' })),
  h('div', { class: 'row' },
    field('Price', 'price', { inputmode: 'decimal', required: true, value: isNew ? '' : major(p.price), autocomplete: 'off' }),
    field('Currency', 'currency', { required: true, maxlength: '3', value: p.price.currency, autocomplete: 'off', class: 'short' })),
  field('Available', 'available', { inputmode: 'numeric', value: isNew ? '' : String(st.available), placeholder: '0', autocomplete: 'off' }),
  isNew ? null : h('p', { class: 'muted' }, `${number(st.reserved)} reserved for orders in progress, ${number(st.sold)} sold.`),
  h('p', { class: 'actions' }, h('button', { type: 'submit' }, isNew ? 'Create the product' : 'Save'), ' ', h('a', { href: '#/catalog' }, 'Cancel')));
  page(isNew ? 'New product' : `Edit ${p.name}`, f);
}

// ---- Routing ------------------------------------------------------------

function route() {
  view.abort();
  view = new AbortController();
  forgetAnnouncement();
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query || '');
  const parts = (path || '/').split('/').filter(Boolean).map(decodeURIComponent);
  renderAccount();
  const s = session.get();
  if (!s) return login();
  if (s.role !== 'admin') return login('You are logged in as a customer: the console is for admins. Log in with an admin account.');
  for (const a of sections.querySelectorAll('a')) {
    if (a.getAttribute('href') === `#/${parts[0] || 'topology'}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  switch (parts[0]) {
    case undefined: case 'topology': return topology();
    case 'traffic': return traffic();
    case 'orders': return orders(parts[1]);
    case 'events': return eventsPage();
    case 'catalog': return parts[1] ? product(parts[1]) : catalog(params);
    default: page('Page not found', h('p', {}, h('a', { href: '#/topology' }, 'Back to the topology')));
  }
}

window.addEventListener('hashchange', route);
route();

// What the storefront and the console share: calls to the API through the
// gateway (JSON in and out, problems put in words), the session, Server-Sent
// Events read over fetch (EventSource cannot send a bearer token), money,
// and a tiny way to build DOM nodes that never parses data as HTML.

const KEY = 'souk.session';

// The session: the access token login gave, and what it says of its holder.
export const session = {
  get() {
    try {
      const s = JSON.parse(sessionStorage.getItem(KEY));
      if (s && s.exp * 1000 > Date.now() + 5000) return s;
    } catch { /* nothing kept, or not ours */ }
    return null;
  },
  start(login, name) {
    const claims = JSON.parse(atob(login.access_token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    const s = { token: login.access_token, login, id: claims.sub, role: claims.role, exp: claims.exp, name };
    sessionStorage.setItem(KEY, JSON.stringify(s));
    return s;
  },
  end() { sessionStorage.removeItem(KEY); },
};

// An answer other than 2xx, or no answer, with what to tell a person.
export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem?.detail || problem?.title || 'request failed');
    this.status = status;
    this.problem = problem || {};
    this.retryAfter = retryAfter;
    this.fields = Object.fromEntries((this.problem.errors || []).map((e) => [e.field, e.detail]));
  }

  // words is the sentence to show for the error.
  get words() {
    const p = this.problem;
    switch (true) {
      case this.status === 0:
        return 'The shop cannot be reached right now. Check your connection and try again.';
      case this.status === 401 && p.code !== 'invalid_credentials' && !/password|email/i.test(p.detail || ''):
        return 'Please log in: your session has ended or you are not logged in.';
      case this.status === 403:
        return 'You are not allowed to do that.';
      case this.status === 429:
        return p.detail ? sentence(p.detail) : `Too many requests just now. Please wait ${this.retryAfter || 'a few'} seconds and try again.`;
      case this.status === 503 || this.status === 502 || this.status === 504:
        return 'That part of the shop is not answering right now. Please try again in a moment.';
      case this.status >= 500:
        return `Something went wrong on our side. Please try again${p.request_id ? ` (reference ${p.request_id})` : ''}.`;
    }
    const detail = p.errors?.length ? p.errors.map((e) => `${e.field}: ${e.detail}`).join('; ') : p.detail || p.title;
    return sentence(detail || `The request failed (${this.status}).`);
  }
}

const sentence = (s) => {
  s = s.charAt(0).toUpperCase() + s.slice(1);
  return /[.!?]$/.test(s) ? s : s + '.';
};

// api calls the gateway and returns the answer's JSON (null without a
// body), or throws an ApiError.
export async function api(method, path, { body, headers = {}, signal } = {}) {
  const s = session.get();
  const h = { Accept: 'application/json', ...headers };
  if (s) h.Authorization = `Bearer ${s.token}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: a proxy's page */ }
  if (!resp.ok) throw new ApiError(resp.status, data, resp.headers.get('Retry-After'));
  return data;
}

// stream follows a Server-Sent Events resource: onEvent(type, data, id)
// gets each event, and returning true from it ends the stream. When the
// server closes the stream, it connects again after the retry interval,
// sending the last id it saw, until onEvent says it is done or signal
// aborts. onError gets an ApiError when connecting fails; it keeps trying.
export async function stream(path, onEvent, { signal, onError = () => {} } = {}) {
  let lastId = '';
  let retry = 1000;
  while (!signal?.aborted) {
    const s = session.get();
    const headers = { Accept: 'text/event-stream' };
    if (s) headers.Authorization = `Bearer ${s.token}`;
    if (lastId) headers['Last-Event-ID'] = lastId;
    try {
      const resp = await fetch(path, { headers, signal });
      if (!resp.ok) {
        let p = null;
        try { p = await resp.json(); } catch { /* no body */ }
        const err = new ApiError(resp.status, p, resp.headers.get('Retry-After'));
        onError(err);
        if (resp.status === 401 || resp.status === 403 || resp.status === 404) return;
      } else {
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let type = 'message', data = '', id = null;
            for (const line of block.split('\n')) {
              const [field, ...rest] = line.split(':');
              const v = rest.join(':').replace(/^ /, '');
              if (field === 'event') type = v;
              else if (field === 'data') data += (data ? '\n' : '') + v;
              else if (field === 'id') id = v;
              else if (field === 'retry' && +v > 0) retry = +v;
            }
            if (id !== null) lastId = id;
            if (data && onEvent(type, JSON.parse(data), id)) {
              reader.cancel();
              return;
            }
          }
        }
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      onError(new ApiError(0));
    }
    await new Promise((r) => setTimeout(r, retry));
  }
}

// money formats an amount in minor units: {amount: 4999, currency: 'EUR'}.
export function money(m) {
  const f = new Intl.NumberFormat(undefined, { style: 'currency', currency: m.currency });
  return f.format(m.amount / 10 ** f.resolvedOptions().maximumFractionDigits);
}

// h builds an element: attributes (on… are listeners; null is left out)
// and children (strings become text, never HTML).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

// when formats a time for people.
export const when = (t) => new Date(t).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

// announce says msg to screen readers (and shows it) in the page's status
// region.
let hideAnnouncement;
let announcedAt = 0;
export function announce(msg) {
  const el = document.getElementById('status');
  if (!el) return;
  el.textContent = '';
  clearTimeout(hideAnnouncement);
  announcedAt = Date.now();
  setTimeout(() => { el.textContent = msg; }, 50);
  hideAnnouncement = setTimeout(() => { el.textContent = ''; }, 6000);
}

// forgetAnnouncement hides what was announced more than a moment ago: on
// a new view, the outcome of the action that led to it (announced as the
// code moved on) stays, and an older message from another page goes.
export function forgetAnnouncement() {
  const el = document.getElementById('status');
  if (el && Date.now() - announcedAt > 250) el.textContent = '';
}

// field returns a labelled input with room for its error message.
export function field(label, name, attrs = {}) {
  const id = `f-${name}`;
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('input', { id, name, ...attrs, 'aria-describedby': `${id}-err` }),
    h('p', { class: 'field-error', id: `${id}-err` }));
}

// showErrors puts an ApiError's words at the top of form, and each field's
// own detail beside its input; the first bad input gets the focus.
export function showErrors(form, err) {
  const box = form.querySelector('.form-error');
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  if (!err) { box.textContent = ''; return; }
  let first = null;
  for (const [name, detail] of Object.entries(err.fields || {})) {
    const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (!input) continue;
    input.setAttribute('aria-invalid', 'true');
    document.getElementById(`${input.id}-err`).textContent = sentence(detail);
    first ||= input;
  }
  box.textContent = err.words || String(err);
  (first || box).focus();
}

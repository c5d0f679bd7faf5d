// The storefront: products, a cart, checkout with a card, orders followed
// live, and the customer's history. Every page is a view of the public API
// through the gateway; the address's #fragment says which page is shown.
import { api, stream, session, money, h, when, announce, forgetAnnouncement, field, showErrors, ApiError } from './api.js';

const main = document.getElementById('main');
const nav = document.getElementById('account');
const cartLink = document.getElementById('cart-link');

// The cart lives in this browser: product id → {name, price, quantity}.
const cart = {
  get() { try { return JSON.parse(localStorage.getItem('souk.cart')) || {}; } catch { return {}; } },
  set(c) { localStorage.setItem('souk.cart', JSON.stringify(c)); renderCartLink(); },
  count() { return Object.values(this.get()).reduce((n, l) => n + l.quantity, 0); },
};

function renderCartLink() {
  const n = cart.count();
  cartLink.textContent = n ? `Cart (${n})` : 'Cart';
}

function renderAccount() {
  const s = session.get();
  nav.replaceChildren(...[...(s
    ? [h('a', { href: '#/orders' }, 'Your orders'),
       s.role === 'admin' ? h('a', { href: '/console/' }, 'Console') : null,
       h('button', { type: 'button', class: 'link', onclick: logout }, `Log out${s.name ? ` (${s.name})` : ''}`)]
    : [h('a', { href: '#/login' }, 'Log in'), h('a', { href: '#/register' }, 'Sign up')])].filter(Boolean));
}

function logout() {
  session.end();
  renderAccount();
  announce('You are logged out.');
  location.hash = '#/';
}

// page replaces the main content with a heading and nodes, and moves the
// focus to the heading, so that keyboard and screen reader users start
// at the new page.
function page(title, ...nodes) {
  document.title = `${title} · Souk`;
  const h1 = h('h1', { tabindex: '-1' }, title);
  main.replaceChildren(h1, ...nodes.filter(Boolean));
  h1.focus();
}

const errorBox = (err) => h('p', { class: 'error', role: 'alert' }, err instanceof ApiError ? err.words : String(err));
const form = (onsubmit, ...children) => h('form', { onsubmit, novalidate: true }, h('p', { class: 'form-error', role: 'alert', tabindex: '-1' }), ...children);

// Home: search and a page of products.
async function home(params) {
  const q = params.get('q') || '';
  const cursor = params.get('cursor') || '';
  const search = h('form', { role: 'search', class: 'search', onsubmit: (e) => {
    e.preventDefault();
    const v = e.target.q.value.trim();
    location.hash = v ? `#/?q=${encodeURIComponent(v)}` : '#/';
  } },
  h('label', { for: 'q' }, 'Search products'),
  h('input', { id: 'q', name: 'q', type: 'search', value: q, maxlength: '200' }),
  h('button', {}, 'Search'));
  const list = h('ul', { class: 'products', 'aria-busy': 'true' });
  page(q ? `Products matching “${q}”` : 'Products', search, list);
  try {
    const qs = new URLSearchParams({ limit: '12' });
    if (q) qs.set('q', q);
    if (cursor) qs.set('cursor', cursor);
    const res = await api('GET', `/api/products?${qs}`);
    list.removeAttribute('aria-busy');
    if (!res.items.length) {
      list.replaceWith(h('p', {}, q ? 'No product matches your search.' : 'The shop has no products yet.'));
      return;
    }
    list.append(...res.items.map((p) => h('li', { class: 'card' },
      h('h2', {}, h('a', { href: `#/product/${p.id}` }, p.name)),
      h('p', { class: 'price' }, money(p.price)),
      p.description ? h('p', { class: 'muted' }, p.description) : null)));
    if (res.next_cursor) {
      const next = new URLSearchParams(params);
      next.set('cursor', res.next_cursor);
      list.after(h('p', {}, h('a', { href: `#/?${next}`, class: 'button' }, 'More products')));
    }
  } catch (err) {
    list.replaceWith(errorBox(err));
  }
}

// A product: price, stock, and how many to put in the cart.
async function product(id) {
  page('Product', h('p', { 'aria-busy': 'true' }, 'Loading…'));
  let p, stock;
  try {
    [p, stock] = await Promise.all([
      api('GET', `/api/products/${id}`),
      api('GET', `/api/inventory/${id}`).catch((e) => (e.status === 404 ? { available: 0 } : null)),
    ]);
  } catch (err) {
    page('Product not found', errorBox(err), h('p', {}, h('a', { href: '#/' }, 'Back to the products')));
    return;
  }
  const available = stock ? stock.available : null;
  const f = form((e) => {
    e.preventDefault();
    const n = parseInt(e.target.quantity.value, 10);
    if (!(n >= 1 && n <= 1000)) {
      showErrors(f, new ApiError(400, { detail: 'Choose a quantity from 1 to 1000.', errors: [{ field: 'quantity', detail: 'must be from 1 to 1000' }] }));
      return;
    }
    const c = cart.get();
    const line = c[id] || { name: p.name, price: p.price, quantity: 0 };
    line.quantity = Math.min(1000, line.quantity + n);
    c[id] = line;
    cart.set(c);
    showErrors(f, null);
    announce(`Added ${n} × ${p.name} to your cart.`);
  },
  field('Quantity', 'quantity', { type: 'number', min: '1', max: '1000', value: '1', inputmode: 'numeric', required: true }),
  h('button', { disabled: available === 0 }, 'Add to cart'));
  page(p.name,
    h('p', { class: 'price' }, money(p.price)),
    p.description ? h('p', {}, p.description) : null,
    h('p', { class: available ? 'ok' : 'muted', id: 'stock' },
      available === null ? 'Stock unknown right now.' : available ? `${available} in stock` : 'Out of stock'),
    f,
    h('p', {}, h('a', { href: '#/cart' }, 'Go to your cart')));
}

// The cart: change quantities, remove lines, go to checkout.
function cartPage() {
  const c = cart.get();
  const ids = Object.keys(c);
  if (!ids.length) {
    page('Your cart', h('p', {}, 'Your cart is empty. ', h('a', { href: '#/' }, 'Find something you like.')));
    return;
  }
  const rows = ids.map((id) => {
    const l = c[id];
    return h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: `#/product/${id}` }, l.name)),
      h('td', {}, money(l.price)),
      h('td', {}, h('label', { class: 'visually-hidden', for: `qty-${id}` }, `Quantity of ${l.name}`),
        h('input', { id: `qty-${id}`, type: 'number', min: '1', max: '1000', value: String(l.quantity), class: 'qty', onchange: (e) => {
          const n = parseInt(e.target.value, 10);
          const cc = cart.get();
          if (n >= 1 && n <= 1000) { cc[id].quantity = n; cart.set(cc); cartPage(); }
        } })),
      h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => {
        const cc = cart.get();
        delete cc[id];
        cart.set(cc);
        announce(`Removed ${l.name} from your cart.`);
        cartPage();
      } }, `Remove`, h('span', { class: 'visually-hidden' }, ` ${l.name}`))));
  });
  const totals = {};
  for (const l of Object.values(c)) totals[l.price.currency] = (totals[l.price.currency] || 0) + l.price.amount * l.quantity;
  page('Your cart',
    h('table', {}, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Product'), h('th', { scope: 'col' }, 'Price'), h('th', { scope: 'col' }, 'Quantity'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
      h('tbody', {}, rows)),
    h('p', { class: 'total' }, 'Total: ', Object.entries(totals).map(([cur, amount]) => money({ amount, currency: cur })).join(' + ')),
    h('p', { class: 'muted' }, 'Prices are confirmed when you order.'),
    h('p', {}, h('a', { href: '#/checkout', class: 'button' }, 'Check out')));
}

// Checkout: a card (or one given before) pays for the cart as one order.
async function checkout() {
  if (!session.get()) { location.hash = '#/login?next=checkout'; return; }
  const c = cart.get();
  const items = Object.entries(c).map(([product_id, l]) => ({ product_id, quantity: l.quantity }));
  if (!items.length) { location.hash = '#/cart'; return; }
  let saved = [];
  try { saved = (await api('GET', '/api/payment-methods')).items || []; } catch { /* a new card still works */ }
  const choices = saved.length ? h('fieldset', {}, h('legend', {}, 'Pay with'),
    ...saved.map((m, i) => h('label', { class: 'choice' }, h('input', { type: 'radio', name: 'method', value: m.token, checked: i === 0 }), ` ${m.brand} ending in ${m.last4}`)),
    h('label', { class: 'choice' }, h('input', { type: 'radio', name: 'method', value: '' }), ' A new card')) : null;
  let minted = null;
  const f = form(async (e) => {
    e.preventDefault();
    const btn = f.querySelector('button');
    btn.disabled = true;
    showErrors(f, null);
    try {
      let token = f.method?.value;
      if (!token) {
        // The same number typed once is one token, so that pressing the
        // button again after a lost answer sends the same order.
        const card = f.card.value.replace(/[\s-]/g, '');
        if (minted?.card !== card) minted = { card, token: (await api('POST', '/api/payment-methods', { body: { card } })).token };
        token = minted.token;
      }
      // One key per cart and card: a retry after a lost answer places
      // the same order, not a second one.
      const body = { items, payment_method: token };
      const sig = JSON.stringify(body);
      let pending = null;
      try { pending = JSON.parse(sessionStorage.getItem('souk.checkout')); } catch { /* none */ }
      if (pending?.sig !== sig) pending = { sig, key: crypto.randomUUID() };
      sessionStorage.setItem('souk.checkout', JSON.stringify(pending));
      const order = await api('POST', '/api/orders', { body, headers: { 'Idempotency-Key': pending.key } });
      sessionStorage.removeItem('souk.checkout');
      cart.set({});
      location.hash = `#/order/${order.id}`;
    } catch (err) {
      btn.disabled = false;
      showErrors(f, err);
    }
  },
  choices,
  field('Card number', 'card', { autocomplete: 'cc-number', inputmode: 'numeric', placeholder: '4242 4242 4242 4242' }),
  h('p', { class: 'muted' }, 'Test cards: 4242 4242 4242 4242 pays; 4000 0000 0000 0002 is declined.'),
  h('button', {}, 'Place order'));
  page('Checkout', h('p', {}, `${cart.count()} item(s).`), f);
}

// Statuses and reasons in words.
const statusWords = {
  placed: 'Placed: checking stock…',
  awaiting_payment: 'Stock reserved: authorizing your card…',
  confirming: 'Paid: confirming…',
  confirmed: 'Confirmed',
  cancelled: 'Cancelled',
};
const reasonWords = {
  out_of_stock: 'Some items were out of stock. You were not charged.',
  declined: 'Your card was declined. You were not charged.',
  payment_method_unknown: 'That card could not be used. You were not charged.',
  payment_failed: 'The payment could not be processed. You were not charged.',
  deadline: 'The order took too long to settle and was cancelled. You were not charged.',
  cancelled_by_customer: 'You cancelled this order.',
  stock_lost: 'The stock could not be committed; your payment was refunded.',
};
const stepWords = (type) => ({
  OrderPlaced: 'Order placed', StockReserved: 'Stock reserved', ReservationFailed: 'Not enough stock',
  PaymentRequested: 'Payment requested', PaymentAuthorized: 'Card authorized', PaymentDeclined: 'Card declined',
  StockCommitRequested: 'Stock requested', PaymentCaptureRequested: 'Capture requested', StockCommitted: 'Stock committed',
  PaymentCaptured: 'Payment captured', OrderConfirmed: 'Order confirmed', OrderCancelled: 'Order cancelled',
  StockReleaseRequested: 'Stock release requested', PaymentCancelRequested: 'Payment cancel requested',
  StockReleased: 'Stock given back', PaymentCancelled: 'Payment cancelled', StockCommitFailed: 'Stock could not be committed',
  PaymentCaptureFailed: 'Capture failed',
}[type.split('.').pop()] || type.split('.').pop());

// An order, followed live until it is confirmed or cancelled.
function order(id) {
  const status = h('p', { class: 'status', id: 'order-status', role: 'status', 'aria-live': 'polite' }, 'Loading…');
  const reason = h('p', { id: 'order-reason' });
  const summary = h('div');
  const steps = h('ol', { class: 'steps' });
  const problemBox = h('p', { class: 'error', role: 'alert' });
  page('Your order', status, reason, summary, h('h2', {}, 'Steps'), steps, problemBox);
  const ctl = new AbortController();
  window.addEventListener('hashchange', () => ctl.abort(), { once: true });
  stream(`/api/orders/${id}/stream`, (type, data) => {
    const o = data.order;
    problemBox.textContent = '';
    status.textContent = statusWords[o.status] || o.status;
    status.className = `status ${o.status}`;
    reason.textContent = o.reason ? reasonWords[o.reason] || o.reason : '';
    if (!summary.childElementCount) {
      summary.replaceChildren(
        h('p', {}, `Total ${money(o.total)}, placed ${when(o.created_at)}.`),
        h('ul', {}, o.items.map((l) => {
          const link = h('a', { href: `#/product/${l.product_id}` }, 'a product');
          api('GET', `/api/products/${l.product_id}`).then((p) => { link.textContent = p.name; }, () => {});
          return h('li', {}, `${l.quantity} × `, link, ` at ${money(l.unit_price)}`);
        })));
    }
    steps.append(...data.events.map((e) => h('li', {}, stepWords(e.type), h('span', { class: 'muted' }, ` ${when(e.at)}`))));
    if (o.status === 'confirmed' || o.status === 'cancelled') {
      announce(`Your order is ${o.status}.`);
      return true;
    }
    return false;
  }, { signal: ctl.signal, onError: (err) => { problemBox.textContent = err.words; } });
}

// The customer's orders, newest first.
async function orders(params) {
  if (!session.get()) { location.hash = '#/login?next=orders'; return; }
  page('Your orders', h('p', { 'aria-busy': 'true' }, 'Loading…'));
  try {
    const qs = new URLSearchParams({ limit: '10' });
    if (params.get('cursor')) qs.set('cursor', params.get('cursor'));
    const res = await api('GET', `/api/orders?${qs}`);
    if (!res.items.length) {
      page('Your orders', h('p', {}, 'You have not ordered anything yet.'));
      return;
    }
    page('Your orders',
      h('table', {}, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Placed'), h('th', { scope: 'col' }, 'Total'), h('th', { scope: 'col' }, 'Status'))),
        h('tbody', {}, res.items.map((o) => h('tr', {},
          h('td', {}, h('a', { href: `#/order/${o.id}` }, when(o.created_at))),
          h('td', {}, money(o.total)),
          h('td', {}, o.status === 'cancelled' ? `Cancelled: ${reasonWords[o.reason] || o.reason}` : statusWords[o.status]))))),
      res.next_cursor ? h('p', {}, h('a', { class: 'button', href: `#/orders?cursor=${res.next_cursor}` }, 'Older orders')) : null);
  } catch (err) {
    page('Your orders', errorBox(err));
  }
}

// Log in, or sign up and log in.
function account(kind, params) {
  const signup = kind === 'register';
  const next = params.get('next');
  const f = form(async (e) => {
    e.preventDefault();
    const btn = f.querySelector('button');
    btn.disabled = true;
    const body = { email: f.email.value.trim(), password: f.password.value };
    try {
      let name = '';
      if (signup) {
        name = f.name.value.trim();
        await api('POST', '/api/auth/register', { body: { name, ...body } });
      }
      const s = session.start(await api('POST', '/api/auth/login', { body }));
      if (!name) {
        try { name = (await api('GET', `/api/users/${s.id}`)).name; } catch { /* greet without a name */ }
        session.start(s.login, name);
      } else session.start(s.login, name);
      renderAccount();
      announce(`Welcome, ${name || 'back'}.`);
      location.hash = next ? `#/${next}` : '#/';
    } catch (err) {
      btn.disabled = false;
      showErrors(f, err);
    }
  },
  signup ? field('Name', 'name', { autocomplete: 'name', required: true, maxlength: '100' }) : null,
  field('Email', 'email', { type: 'email', autocomplete: 'email', required: true }),
  field('Password', 'password', { type: 'password', autocomplete: signup ? 'new-password' : 'current-password', required: true, minlength: signup ? '10' : null }),
  signup ? h('p', { class: 'muted' }, 'At least 10 characters.') : null,
  h('button', {}, signup ? 'Sign up' : 'Log in'));
  page(signup ? 'Sign up' : 'Log in', f,
    h('p', {}, signup ? 'Already have an account? ' : 'New here? ',
      h('a', { href: signup ? '#/login' : '#/register' }, signup ? 'Log in' : 'Sign up')));
}

// route shows the page the address names.
function route() {
  forgetAnnouncement();
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query || '');
  const parts = (path || '/').split('/').filter(Boolean);
  switch (parts[0]) {
    case undefined: return home(params);
    case 'product': return product(parts[1]);
    case 'cart': return cartPage();
    case 'checkout': return checkout();
    case 'order': return order(parts[1]);
    case 'orders': return orders(params);
    case 'login': case 'register': return account(parts[0], params);
    default: page('Page not found', h('p', {}, h('a', { href: '#/' }, 'Back to the products')));
  }
}

window.addEventListener('hashchange', route);
window.addEventListener('storage', renderCartLink);
renderAccount();
renderCartLink();
route();

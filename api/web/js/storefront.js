// The storefront: sign in as a customer, fill a cart that follows `cartChanged` live,
// place the order and watch it (`orderChanged`) and its notifications, and read the
// cart's history beside the cart as it was at any version or time (`cartAt`).
import { createApi, devToken, explain, loadDocument, money, time } from './api.js';
import { $, connectionBanner, fill, h, say } from './dom.js';

const document_ = await loadDocument('storefront');
const state = { api: null, customer: null, cart: null, cartId: null, events: new Map(), unsubscribeCart: null, unsubscribeOrder: null, orderId: null, poll: null };
const message = $('#cart-message');

function connect(token) {
  if (state.api) state.api.dispose();
  state.api = createApi({ document: document_, token, onStatus: connectionBanner($('#connection'), refresh) });
}

// ------------------------------------------------------------------ customer

const known = () => JSON.parse(localStorage.getItem('cartsource.customers') || '[]');

async function signIn(customer, token) {
  state.customer = customer;
  localStorage.setItem('cartsource.session', JSON.stringify({ customer, token }));
  localStorage.setItem('cartsource.customers', JSON.stringify([customer, ...known().filter((c) => c !== customer)].slice(0, 8)));
  connect(token);
  try {
    const { me } = await state.api.request('Me');
    state.customer = me.id;
    fill($('#who'), 'Signed in as ', h('strong', {}, me.id), ' ', h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'));
    $('#carts').hidden = false;
    renderCarts(me.carts.nodes);
    const wanted = new URLSearchParams(location.hash.slice(1)).get('cart') || localStorage.getItem(`cartsource.cart.${me.id}`);
    const open = wanted || (me.carts.nodes[0] && me.carts.nodes[0].id);
    if (open) openCart(open);
  } catch (e) {
    say($('#who'), explain(e), 'error');
    if (e.code === 'UNAUTHENTICATED') localStorage.removeItem('cartsource.session');
  }
  renderProducts();
}

function signOut() {
  localStorage.removeItem('cartsource.session');
  location.hash = '';
  location.reload();
}

/** The open carts again: one was created or checked out. */
async function refreshCarts() {
  try {
    renderCarts((await state.api.request('Me')).me.carts.nodes);
  } catch (e) {
    // The banner says when the server is away.
  }
}

function renderCarts(carts) {
  fill($('#cart-list'), carts.map((c) => h('li', {}, h('button', { type: 'button', class: 'link', onclick: () => openCart(c.id) }, `Cart ${c.id.slice(0, 8)}: ${c.itemCount} items (v${c.version})`))));
}

$('#signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const customer = $('#customer').value.trim();
  try {
    const token = await devToken(customer, 'customer');
    if (token === null) {
      $('#token-form').hidden = false;
      $('#signin-form').hidden = true;
      return;
    }
    signIn(customer, token);
  } catch (e) {
    say($('#who'), explain(e), 'error');
  }
});

$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  signIn(null, $('#token').value.trim());
});

$('#new-cart').addEventListener('click', newCart);
$('#next-cart').addEventListener('click', newCart);

async function newCart() {
  try {
    const { createCart } = await state.api.request('CreateCart');
    openCart(createCart.cart.id);
    refreshCarts();
  } catch (e) {
    say(message, explain(e), 'error');
  }
}

// ------------------------------------------------------------------ catalog

async function renderProducts() {
  const api = state.api || createApi({ document: document_, onStatus: connectionBanner($('#connection'), refresh) });
  state.api = api;
  let products;
  try {
    products = (await api.request('Products')).products.nodes;
  } catch (e) {
    return say(message, explain(e), 'error');
  }
  fill($('#products tbody'), products.map((p) => {
    const quantity = h('input', { type: 'number', min: 1, max: 999, value: 1, id: `qty-${p.sku}`, class: 'qty' });
    return h('tr', { 'data-sku': p.sku },
      h('th', { scope: 'row' }, p.name, h('span', { class: 'sku' }, ` ${p.sku}`)),
      h('td', { class: 'num' }, money(p.price)),
      h('td', { class: 'num available' }, p.available),
      h('td', { class: 'row' },
        h('label', { for: `qty-${p.sku}`, class: 'visually-hidden' }, `Quantity of ${p.name}`), quantity,
        h('button', { type: 'button', class: 'add', disabled: !state.cartId, onclick: () => change('AddItem', { sku: p.sku, quantity: Number(quantity.value) }) }, 'Add')));
  }));
}

// ------------------------------------------------------------------ cart

function openCart(id) {
  if (state.unsubscribeCart) state.unsubscribeCart();
  if (state.unsubscribeOrder) state.unsubscribeOrder();
  Object.assign(state, { cartId: id, cart: null, events: new Map(), orderId: null });
  localStorage.setItem(`cartsource.cart.${state.customer}`, id);
  history.replaceState(null, '', `#cart=${id}`);
  $('#share-link').href = `/#cart=${id}`;
  $('#order-panel').hidden = true;
  say(message, '');
  subscribeCart(0);
  document.querySelectorAll('#products button.add').forEach((b) => { b.disabled = false; });
}

/** Follows the cart from `afterVersion`: its history replays first, then live changes. */
function subscribeCart(afterVersion) {
  const id = state.cartId;
  state.unsubscribeCart = state.api.subscribe('CartChanged', { cartId: id, afterVersion }, {
    next: ({ cartChanged }) => {
      if (id !== state.cartId) return;
      // After a reconnect graphql-ws subscribes again with the same arguments: a
      // version already seen is not news.
      state.events.set(cartChanged.event.version, cartChanged.event);
      showCart(cartChanged.cart);
      renderHistory();
    },
    error: (e) => {
      if (e.code === 'SUBSCRIPTION_LAGGED') return subscribeCart(e.extensions.afterVersion);
      say(message, explain(e), 'error');
    },
  });
}

function showCart(cart) {
  if (state.cart && cart.version <= state.cart.version) return;
  state.cart = cart;
  renderCart();
  if (cart.orderId && cart.orderId !== state.orderId) watchOrder(cart.orderId);
}

function renderCart() {
  const cart = state.cart;
  const open = cart.status === 'OPEN';
  fill($('#cart-meta'), `Cart ${cart.id.slice(0, 8)} · `, h('span', { id: 'cart-status' }, cart.status), ' · version ', h('strong', { id: 'cart-version' }, cart.version), ` · ${cart.itemCount} items · updated ${time(cart.updatedAt)}`);
  $('#cart-lines').hidden = false;
  $('#cart-actions').hidden = !open;
  fill($('#cart-lines tbody'), cart.lines.map((line) => {
    const quantity = h('input', { type: 'number', min: 1, max: 999, value: line.quantity, id: `line-${line.sku}`, class: 'qty', disabled: !open });
    return h('tr', { 'data-sku': line.sku },
      h('th', { scope: 'row' }, line.name, h('span', { class: 'sku' }, ` ${money(line.unitPrice)} each`)),
      h('td', { class: 'row' },
        h('label', { for: `line-${line.sku}`, class: 'visually-hidden' }, `Quantity of ${line.name}`), quantity,
        h('button', { type: 'button', disabled: !open, onclick: () => change('ChangeQuantity', { sku: line.sku, quantity: Number(quantity.value) }) }, 'Update')),
      h('td', { class: 'num line-total' }, money(line.lineTotal)),
      h('td', {}, h('button', { type: 'button', class: 'remove', disabled: !open, 'aria-label': `Remove ${line.name}`, onclick: () => change('RemoveItem', { sku: line.sku }) }, 'Remove')));
  }));
  $('#cart-subtotal').textContent = money(cart.subtotal);
  $('#history-panel').hidden = false;
}

/** Runs a cart mutation; the subscription brings the event, the answer the cart at once. */
async function change(operation, variables, expectedVersion) {
  if (!state.cartId) return;
  const expected = expectedVersion ?? ($('#use-version').checked && state.cart ? state.cart.version : null);
  try {
    const data = await state.api.request(operation, { cartId: state.cartId, ...variables, expectedVersion: expected });
    say(message, '');
    showCart(Object.values(data)[0].cart);
  } catch (e) {
    say(message, explain(e), 'error');
  }
}

$('#stale-write').addEventListener('click', () => {
  const sku = state.cart.lines[0] ? state.cart.lines[0].sku : $('#products tbody tr').dataset.sku;
  change('AddItem', { sku, quantity: 1 }, Math.max(state.cart.version - 1, 0));
});

$('#place-order').addEventListener('click', async () => {
  try {
    const key = `storefront-${crypto.randomUUID()}`;
    const { placeOrder } = await state.api.request('PlaceOrder', { cartId: state.cartId, idempotencyKey: key, expectedVersion: $('#use-version').checked ? state.cart.version : null });
    say(message, '');
    watchOrder(placeOrder.order.id);
  } catch (e) {
    say(message, explain(e), 'error');
  }
});

// ------------------------------------------------------------------ order

function watchOrder(orderId) {
  if (state.orderId === orderId) return;
  if (state.unsubscribeOrder) state.unsubscribeOrder();
  state.orderId = orderId;
  $('#order-panel').hidden = false;
  refreshCarts();
  state.unsubscribeOrder = state.api.subscribe('OrderChanged', { orderId }, {
    next: ({ orderChanged: order }) => {
      $('#order-status').textContent = order.status;
      $('#order-total').textContent = `· total ${money(order.total)} · order ${order.id.slice(0, 8)}`;
      fill($('#order-lines'), order.lines.map((l) => h('li', {}, `${l.quantity} × ${l.name}: ${money(l.lineTotal)}`)));
      renderNotifications();
      // Stock moved (reserved, shipped or released).
      renderProducts();
    },
    error: (e) => say(message, explain(e), 'error'),
  });
  // The contract has no subscription for notifications: they are read again on each
  // order change and every 3 s while an order is shown.
  clearInterval(state.poll);
  state.poll = setInterval(renderNotifications, 3000);
}

async function renderNotifications() {
  try {
    const { me } = await state.api.request('Notifications');
    fill($('#notifications'), me.notifications.nodes.map((n) => h('li', { 'data-kind': n.kind }, h('strong', {}, n.kind), ` ${n.message} `, h('time', { datetime: n.createdAt }, time(n.createdAt)))));
  } catch (e) {
    // The connection banner says when the server is away.
  }
}

// ------------------------------------------------------------------ history and time travel

const describe = (e) => {
  switch (e.__typename) {
    case 'ItemAddedToCart': return `added ${e.quantity} × ${e.sku} at ${money(e.unitPrice)}`;
    case 'ItemQuantityChanged': return `${e.sku} set to ${e.quantity}`;
    case 'ItemRemovedFromCart': return `removed ${e.sku}`;
    case 'CartCheckedOut': return `checked out as order ${e.orderId.slice(0, 8)}`;
    default: return '';
  }
};

function renderHistory() {
  const events = [...state.events.values()].sort((a, b) => a.version - b.version);
  fill($('#history tbody'), events.map((e) => h('tr', {},
    h('td', { class: 'num' }, e.version),
    h('td', {}, h('strong', {}, e.__typename), ' ', describe(e), h('span', { class: 'sku' }, ` by ${e.actor}`)),
    h('td', {}, h('time', { datetime: e.occurredAt }, time(e.occurredAt))),
    h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => asOf({ version: e.version }) }, `v${e.version}`)))));
  $('#as-of-version').max = events.length;
}

async function asOf(point) {
  if (point.version) $('#as-of-version').value = point.version;
  try {
    const { cartAt } = await state.api.request('CartAt', { id: state.cartId, ...point });
    if (!cartAt) return fill($('#as-of'), h('p', {}, 'The cart did not exist yet.'));
    fill($('#as-of'),
      h('p', {}, `Version ${cartAt.version} · ${cartAt.status} · ${cartAt.itemCount} items · subtotal ${money(cartAt.subtotal)}`),
      h('ul', { class: 'plain' }, cartAt.lines.map((l) => h('li', {}, `${l.quantity} × ${l.name}: ${money(l.lineTotal)}`))));
  } catch (e) {
    fill($('#as-of'), h('p', { class: 'message', 'data-kind': 'error' }, explain(e)));
  }
}

$('#as-of-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const moment = $('#as-of-time').value;
  if (moment) asOf({ at: new Date(moment).toISOString() });
  else if ($('#as-of-version').value) asOf({ version: Number($('#as-of-version').value) });
});

/** After the server came back: read what may have changed while it was away. */
function refresh() {
  renderProducts();
  if (state.orderId) renderNotifications();
}

// ------------------------------------------------------------------ start

fill($('#known-customers'), known().map((c) => h('option', { value: c })));
const saved = JSON.parse(localStorage.getItem('cartsource.session') || 'null');
if (saved && saved.token) signIn(saved.customer, saved.token);
else renderProducts();

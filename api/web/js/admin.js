// The admin console: the global event feed live (`events`) by category, any stream's
// history, the projections with their lag, state and error (and a rebuild), and the
// catalog: register products, receive stock, change prices. Admin token required.
import { createApi, devToken, explain, loadDocument, money, time } from './api.js';
import { $, connectionBanner, fill, h, say } from './dom.js';

const document_ = await loadDocument('admin');
const FEED_SIZE = 200;
const state = { api: null, unsubscribeFeed: null, unsubscribeStream: null, feed: [], rebuilding: null };

async function start(token) {
  if (state.api) state.api.dispose();
  state.api = createApi({ document: document_, token, onStatus: connectionBanner($('#connection'), refreshAll) });
  try {
    const { projections } = await state.api.request('Projections');
    sessionStorage.setItem('cartsource.admin', token);
    say($('#signed-in'), 'Signed in with an admin token.', 'ok');
    $('#token-form').hidden = true;
    renderProjections(projections);
    const head = BigInt(projections[0] ? projections[0].headPosition : '0');
    // The newest 50 events, then live: the whole log may be long.
    followFeed(head > 50n ? String(head - 50n) : null);
    setInterval(refreshProjections, 2000);
    renderProducts();
  } catch (e) {
    say($('#signed-in'), explain(e), 'error');
    sessionStorage.removeItem('cartsource.admin');
    $('#token-form').hidden = false;
  }
}

function refreshAll() {
  refreshProjections();
  renderProducts();
}

// ------------------------------------------------------------------ feed

const categories = () => [...document.querySelectorAll('#categories input:checked')].map((c) => c.value);

function summary(e) {
  const d = e.data || {};
  const parts = ['sku', 'quantity', 'price', 'status', 'orderId', 'customerId'].filter((k) => d[k] !== undefined).map((k) => `${k} ${typeof d[k] === 'object' ? JSON.stringify(d[k]) : d[k]}`);
  return parts.join(', ');
}

function followFeed(afterPosition) {
  if (state.unsubscribeFeed) state.unsubscribeFeed();
  state.feed = [];
  const wanted = categories();
  $('#feed-note').textContent = `Showing the last ${FEED_SIZE} events of: ${wanted.join(', ') || 'nothing'}.`;
  renderFeed();
  state.feedFrom = afterPosition;
  if (!wanted.length) return;
  state.unsubscribeFeed = state.api.subscribe('Events', { afterPosition, categories: wanted }, {
    next: ({ events: e }) => {
      // A resubscription after a reconnect repeats what we have: positions are unique.
      if (state.feed.some((seen) => seen.position === e.position)) return;
      state.feed.unshift(e);
      state.feed.length = Math.min(state.feed.length, FEED_SIZE);
      renderFeed();
    },
    error: (err) => {
      if (err.code === 'SUBSCRIPTION_LAGGED') return followFeed(err.extensions.afterPosition);
      say($('#projections-message'), explain(err), 'error');
    },
  });
}

/** `cart-01a24296…` for a UUID stream: the whole id is the button's title and in the stream panel. */
const short = (streamId) => streamId.replace(/^([a-z]+-[0-9a-f]{8})-[0-9a-f-]{27}$/, '$1…');

function renderFeed() {
  fill($('#feed tbody'), state.feed.map((e) => h('tr', { 'data-type': e.type, 'data-stream': e.streamId },
    h('td', { class: 'num' }, e.position),
    h('td', {}, h('button', { type: 'button', class: 'link', title: e.streamId, onclick: () => showStream(e.streamId) }, short(e.streamId)), h('span', { class: 'sku' }, ` v${e.version}`)),
    h('td', {}, h('strong', {}, e.type), h('div', { class: 'data' }, summary(e))),
    h('td', {}, h('time', { datetime: e.occurredAt }, time(e.occurredAt))))));
}

// Another filter replays from where the feed began, so the list shows the same span.
$('#categories').addEventListener('change', () => followFeed(state.feedFrom));

// ------------------------------------------------------------------ one stream

/** One stream: its history page by page (`streamEvents`), then live (`events` of its category from there). */
async function showStream(streamId) {
  $('#stream-id').value = streamId;
  if (state.unsubscribeStream) state.unsubscribeStream();
  state.unsubscribeStream = null;
  const rows = new Map();
  const render = () => fill($('#stream tbody'), [...rows.values()].sort((a, b) => a.version - b.version).map((r) => h('tr', {},
    h('td', { class: 'num' }, r.version), h('td', {}, r.type),
    h('td', {}, h('code', { class: 'data' }, JSON.stringify(r.data))),
    h('td', {}, h('time', { datetime: r.occurredAt }, time(r.occurredAt))))));
  let last = null;
  try {
    for (let afterVersion = 0; ;) {
      const page = (await state.api.request('StreamEvents', { streamId, afterVersion })).streamEvents;
      page.forEach((e) => rows.set(e.version, e));
      if (page.length) last = page[page.length - 1];
      if (page.length < 100) break;
      afterVersion = last.version;
    }
  } catch (err) {
    return fill($('#stream tbody'), h('tr', {}, h('td', { colspan: 4 }, explain(err))));
  }
  render();
  $('#stream-note').textContent = rows.size ? `${rows.size} events; new ones appear live.` : 'No events (yet): new ones appear live.';
  if ($('#stream-id').value !== streamId) return;
  const category = streamId.split('-')[0];
  state.unsubscribeStream = state.api.subscribe('Events', { afterPosition: last ? last.position : null, categories: [category] }, {
    next: ({ events: e }) => {
      if (e.streamId !== streamId || rows.has(e.version)) return;
      rows.set(e.version, e);
      render();
    },
    error: (err) => say($('#stream-note'), explain(err), 'error'),
  });
}

$('#stream-form').addEventListener('submit', (event) => {
  event.preventDefault();
  showStream($('#stream-id').value.trim());
});

// ------------------------------------------------------------------ projections

async function refreshProjections() {
  try {
    renderProjections((await state.api.request('Projections')).projections);
  } catch (e) {
    // The banner says when the server is away.
  }
}

function renderProjections(projections) {
  const rebuilt = projections.find((p) => p.name === state.rebuilding && p.state === 'RUNNING' && p.position === p.headPosition);
  if (rebuilt) {
    state.rebuilding = null;
    say($('#projections-message'), `Rebuild of ${rebuilt.name} finished: it has applied every event up to position ${rebuilt.position}.`, 'ok');
  }
  fill($('#projections tbody'), projections.map((p) => {
    const lag = BigInt(p.headPosition) - BigInt(p.position);
    return h('tr', { 'data-name': p.name },
      h('th', { scope: 'row' }, p.name),
      h('td', {}, h('span', { class: `state state-${p.state}` }, p.state), p.lastError ? h('div', { class: 'data' }, `Error: ${p.lastError}`) : null,
        h('div', { class: 'sku' }, `since ${time(p.updatedAt)}`)),
      h('td', { class: 'num' }, p.position),
      h('td', { class: 'num lag' }, lag > 0n ? lag : 0),
      h('td', {}, h('button', { type: 'button', class: 'rebuild', 'aria-label': `Rebuild ${p.name}`, disabled: p.state === 'REBUILDING', onclick: () => rebuild(p.name) }, 'Rebuild')));
  }));
}

async function rebuild(name) {
  try {
    await state.api.request('RebuildProjection', { name });
    state.rebuilding = name;
    say($('#projections-message'), `Rebuilding ${name}: it replays every event while the old read model keeps serving.`, 'ok');
    refreshProjections();
  } catch (e) {
    say($('#projections-message'), explain(e), 'error');
  }
}

// ------------------------------------------------------------------ catalog

/** Products by sku: the read model's, or a command's answer when that is newer (the read model follows a moment later). */
const products = new Map();

function keep(product) {
  const known = products.get(product.sku);
  if (!known || known.version <= product.version) products.set(product.sku, product);
}

async function renderProducts() {
  try {
    (await state.api.request('Products')).products.nodes.forEach(keep);
  } catch (e) {
    return;
  }
  showProducts();
}

function showProducts() {
  const list = [...products.values()];
  fill($('#products tbody'), list.map((p) => h('tr', { 'data-sku': p.sku },
    h('th', { scope: 'row' }, p.name, h('span', { class: 'sku' }, ` ${p.sku}`)),
    h('td', { class: 'num' }, money(p.price)), h('td', { class: 'num available' }, p.available), h('td', { class: 'num' }, p.version))));
  const selected = $('#stock-sku').value;
  fill($('#stock-sku'), list.map((p) => h('option', { value: p.sku, selected: p.sku === selected }, `${p.name} (${p.sku})`)));
}

async function catalog(operation, variables, done) {
  try {
    const data = await state.api.request(operation, variables);
    const { product } = Object.values(data)[0];
    say($('#products-message'), `${product.name}: ${money(product.price)}, ${product.available} available (version ${product.version}).`, 'ok');
    done();
    keep(product);
    showProducts();
  } catch (e) {
    say($('#products-message'), explain(e), 'error');
  }
}

$('#register-form').addEventListener('submit', (event) => {
  event.preventDefault();
  catalog('RegisterProduct', { sku: $('#reg-sku').value.trim(), name: $('#reg-name').value.trim(), price: $('#reg-price').value.trim(), initialStock: Number($('#reg-stock').value || 0) },
    () => event.target.reset());
});

$('#stock-form').addEventListener('submit', (event) => {
  event.preventDefault();
  catalog('ReceiveStock', { sku: $('#stock-sku').value, quantity: Number($('#stock-qty').value) }, () => {});
});

$('#change-price').addEventListener('click', () => {
  catalog('ChangePrice', { sku: $('#stock-sku').value, price: $('#new-price').value.trim() }, () => { $('#new-price').value = ''; });
});

// ------------------------------------------------------------------ token

$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  start($('#token').value.trim());
});

const saved = sessionStorage.getItem('cartsource.admin');
if (saved) {
  start(saved);
} else {
  try {
    const token = await devToken('admin', 'admin');
    if (token) start(token);
    else {
      say($('#signed-in'), 'This server runs in production: paste an admin token.', 'info');
      $('#token-form').hidden = false;
    }
  } catch (e) {
    say($('#signed-in'), explain(e), 'error');
    $('#token-form').hidden = false;
  }
}

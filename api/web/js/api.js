// The pages' one way to the server: GraphQL over HTTP (queries, mutations) and
// graphql-ws (subscriptions), with the operations loaded by name from a .graphql file
// of their own (checked against the schema in `cargo test -p api`). Also the
// connection's state, so a page can say when the server is unreachable.
import { createClient } from '/web/vendor/graphql-ws-6.4.2/client.js';

/** A GraphQL error with the contract's `extensions.code` (NETWORK when unreachable). */
export class ApiError extends Error {
  constructor(message, code, extensions = {}) {
    super(message);
    this.code = code;
    this.extensions = extensions;
  }
}

/** The text of `/web/graphql/<name>.graphql`. */
export async function loadDocument(name) {
  const response = await fetch(`/web/graphql/${name}.graphql`);
  if (!response.ok) throw new ApiError(`cannot load ${name}.graphql (HTTP ${response.status})`, 'NETWORK');
  return response.text();
}

/** A development token from `POST /dev/token`; null when the server has no such helper (production). */
export async function devToken(sub, role) {
  const response = await fetch('/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ sub, role }),
  });
  if (response.status === 404) return null;
  const body = await response.json();
  if (!response.ok) throw new ApiError(body.error || `HTTP ${response.status}`, 'BAD_USER_INPUT');
  return body.token;
}

function firstError(errors) {
  const e = errors[0] || {};
  const extensions = e.extensions || {};
  return new ApiError(e.message || 'unknown error', extensions.code || 'INTERNAL_SERVER_ERROR', extensions);
}

/**
 * A client for one document and one token. `onStatus('online' | 'offline')` hears
 * about the connection: a failed fetch or a closed WebSocket is 'offline', the next
 * success 'online' (the WebSocket retries by itself, every 0.5 to 2 s).
 */
export function createApi({ document, token, onStatus = () => {} }) {
  let status = null;
  let disposed = false;
  const report = (next) => {
    // A client being replaced (a new token) closes its socket: that is no outage.
    if (!disposed && next !== status) {
      status = next;
      onStatus(next);
    }
  };
  const authorization = token ? { Authorization: `Bearer ${token}` } : {};
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = createClient({
    url: `${scheme}://${location.host}/graphql/ws`,
    connectionParams: () => authorization,
    lazy: false,
    keepAlive: 5000,
    retryAttempts: Infinity,
    shouldRetry: () => true,
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** retries, 2000))),
    on: {
      connected: () => report('online'),
      closed: () => report('offline'),
    },
  });

  async function request(operationName, variables = {}) {
    let response;
    try {
      response = await fetch('/graphql', {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json, application/json',
          ...authorization,
        },
        body: JSON.stringify({ query: document, operationName, variables }),
      });
    } catch (e) {
      report('offline');
      throw new ApiError('the server is unreachable', 'NETWORK');
    }
    let body;
    try {
      body = await response.json();
    } catch (e) {
      throw new ApiError(`the server answered HTTP ${response.status} without GraphQL`, 'NETWORK');
    }
    report('online');
    if (body.errors && body.errors.length) throw firstError(body.errors);
    return body.data;
  }

  /** Subscribes; `next(data)` per result, `error(ApiError)` once at the end. Returns the unsubscribe function. */
  function subscribe(operationName, variables, { next, error = () => {} }) {
    return ws.subscribe(
      { query: document, operationName, variables },
      {
        next: (result) => {
          if (result.errors && result.errors.length) error(firstError(result.errors));
          else next(result.data);
        },
        error: (e) => error(Array.isArray(e) ? firstError(e) : new ApiError(e && e.reason ? e.reason : 'the subscription ended', 'NETWORK')),
        complete: () => {},
      },
    );
  }

  function dispose() {
    disposed = true;
    ws.dispose();
  }

  return { request, subscribe, dispose };
}

/** A sentence for a person, from an error of the contract. */
export function explain(error) {
  const x = error.extensions || {};
  switch (error.code) {
    case 'CONCURRENCY_CONFLICT':
      return `Conflict: this change was made against version ${x.expectedVersion} of the cart, but the cart is at version ${x.actualVersion}: someone (another tab?) changed it first. Nothing was changed; the cart shown is current, so look and try again.`;
    case 'OUT_OF_STOCK':
      return `Out of stock: ${x.requested} × ${x.sku} asked for, ${x.available} available.`;
    case 'UNAUTHENTICATED':
      return 'Your token is missing, expired or not valid here: sign in again.';
    case 'FORBIDDEN':
      return 'This needs an admin token.';
    case 'NETWORK':
      return `The server is unreachable (${error.message}).`;
    default:
      return `${error.code}: ${error.message}`;
  }
}

/** `{amount, currencyCode}` as "12.50 EUR". */
export const money = (m) => (m ? `${m.amount} ${m.currencyCode}` : '');

/** A DateTime as local time with seconds. */
export const time = (t) => (t ? new Date(t).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' }) : '');

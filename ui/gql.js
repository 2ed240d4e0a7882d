// The console's only way to the daemon: GraphQL queries over POST /graphql and
// subscriptions over one graphql-transport-ws WebSocket, both carrying the session's token.

let token = sessionStorage.getItem('hypernix.token') || '';

/** The session's token ('' when logged out). */
export function getToken() { return token; }

/** Remembers the session's token for this tab, or forgets it with ''. */
export function setToken(t) {
  token = t;
  if (t) sessionStorage.setItem('hypernix.token', t);
  else sessionStorage.removeItem('hypernix.token');
  closeSocket();
}

/** A GraphQL error, with each message and code of the answer. */
export class GqlError extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join('; '));
    this.codes = errors.map((e) => e.extensions && e.extensions.code);
  }
}

/** Runs a query or mutation; resolves to its data, rejects with a GqlError. */
export async function gql(query, variables = {}) {
  const r = await fetch('/graphql', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await r.json();
  if (body.errors && body.errors.length) throw new GqlError(body.errors);
  return body.data;
}

/** Like gql, but null instead of an error (for optional parts of a page). */
export async function gqlOr(query, variables = {}) {
  try { return await gql(query, variables); } catch { return null; }
}

// One WebSocket for every subscription of the tab; reopened on demand.
let socket = null;
let ready = null;
let nextId = 1;
const handlers = new Map();

/** A WebSocket URL on this origin. */
export function wsUrl(path) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
}

function open() {
  if (ready) return ready;
  socket = new WebSocket(wsUrl('/graphql'), 'graphql-transport-ws');
  const s = socket;
  ready = new Promise((resolve, reject) => {
    s.onopen = () => s.send(JSON.stringify({ type: 'connection_init', payload: { token } }));
    s.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === 'connection_ack') resolve(s);
      else if (m.type === 'ping') s.send(JSON.stringify({ type: 'pong' }));
      else if (m.type === 'next') handlers.get(m.id)?.next(m.payload);
      else if (m.type === 'error') handlers.get(m.id)?.error(new GqlError(m.payload));
      else if (m.type === 'complete') handlers.delete(m.id);
    };
    s.onclose = () => {
      reject(new Error('subscription socket closed'));
      if (socket === s) { socket = null; ready = null; }
      for (const h of handlers.values()) h.error(new Error('subscription socket closed'));
      handlers.clear();
    };
  });
  return ready;
}

function closeSocket() {
  if (socket) socket.close();
  socket = null;
  ready = null;
}

/**
 * Subscribes; onNext gets each result's data, onError (optional) an error. Returns a
 * function that ends the subscription.
 */
export function subscribe(query, variables, onNext, onError = () => {}) {
  const id = String(nextId++);
  let done = false;
  handlers.set(id, {
    next: (payload) => {
      if (payload.errors && payload.errors.length) onError(new GqlError(payload.errors));
      else onNext(payload.data);
    },
    error: (e) => { if (!done) onError(e); },
  });
  open().then((s) => {
    if (!done) s.send(JSON.stringify({ id, type: 'subscribe', payload: { query, variables } }));
  }, (e) => onError(e));
  return () => {
    done = true;
    handlers.delete(id);
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ id, type: 'complete' }));
    }
  };
}

/** Escapes text for HTML. */
export function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

/** Bytes as a short human figure (KiB, MiB, GiB). */
export function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n) || 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v >= 10 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

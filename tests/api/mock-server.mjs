#!/usr/bin/env node
// An in-memory model of the public API v1, in one process: the executable
// reading of schema/openapi.yaml and docs/api.md that contract.mjs and
// stream.mjs were written against. It exists to test the tests (and to
// show the C++ implementation one way every rule can be met); it is not
// the product: no durability, no cluster, plain-text secrets.
//
//   node tests/api/mock-server.mjs [--port 0] [--queue-bytes-max 4194304]
// prints "listening on http://127.0.0.1:PORT". Tenants: dev (admin client
// dev-admin / chat4all-dev) and other (other-admin / other-secret).
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const config = {
  port: Number(arg('port', '0')),
  textBytesMax: 65536,
  bodyBytesMax: 1048576,
  historyPageMax: 500,
  ratePerS: Number(arg('rate-per-s', '100')),
  burst: Number(arg('burst', '200')),
  tokenTtlS: 3600,
  queueBytesMax: Number(arg('queue-bytes-max', String(4 << 20))),
  membersMax: 256,
  webhookAttemptsMax: 3,
  webhookDeliveriesKeptMax: 1000,  // webhooks.deliveries_kept_max: the newest are kept
  resumeWaitMs: 2000,
  presenceGraceMs: 500,  // stream.presence_grace_ms (shorter than the product's 3 s)
  typingIntervalMs: 3000,
};
const specText = fs.readFileSync(path.join(here, '..', '..', 'schema', 'openapi.yaml'), 'utf8');
// The outside channels of the mock's topology (as topology/local.yaml); it has no connectors, so
// nothing is ever delivered on them. Identities may name any channel name but `all`.
const CHANNELS = ['whatsapp', 'instagram', 'telegram'];
const isChannelName = (name) => typeof name === 'string' && NAME.test(name) && name !== 'all';
const EVENTS = ['message.sent', 'message.delivered', 'message.read'];
const ID = /^[A-Za-z0-9._:@-]{1,128}$/;
const NAME = /^[A-Za-z0-9._-]{1,64}$/;
const now = () => Date.now();
const rid = (p) => `${p}${crypto.randomBytes(13).toString('hex')}`;

// ---------------------------------------------------------------- state
const tenants = {
  dev: { clients: { 'dev-admin': 'chat4all-dev' } },
  other: { clients: { 'other-admin': 'other-secret' } },
};
const users = new Map();          // tenant/user -> user
const identities = new Map();     // tenant/channel/address -> user_id
const clients = new Map();        // tenant/client -> client
const conversations = new Map();  // id -> conversation
const privates = new Map();       // tenant/a/b -> conversation id
const keyedGroups = new Map();    // tenant/role/subject/Idempotency-Key -> conversation id
const messageIndex = new Map();   // tenant/message_id -> the first message stored under it
const webhooks = new Map();       // id -> webhook
const tokens = new Map();         // token -> claims
const buckets = new Map();        // token -> {tokens, at}
const connections = new Set();    // stream connections

for (const [tenant, spec] of Object.entries(tenants)) {
  for (const [id, secret] of Object.entries(spec.clients)) {
    clients.set(`${tenant}/${id}`, { client_id: id, name: id, role: 'admin', source: 'topology', created_at: now(), secret, tenant });
  }
}

class HttpError extends Error {
  constructor(status, code, message, field, headers = {}) {
    super(message);
    Object.assign(this, { status, code, field, headers });
  }
}
const bad = (field, message, code = 'invalid_field') => new HttpError(400, code, message, field);
const missing = (field) => new HttpError(400, 'missing_field', `${field} is required`, field);
const notFound = (what = 'not found') => new HttpError(404, 'not_found', what);
const forbidden = (message, code = 'forbidden') => new HttpError(403, code, message);

// ---------------------------------------------------------------- views
function userView(user, withIdentities) {
  const out = { user_id: user.user_id, tenant_id: user.tenant_id, display_name: user.display_name, created_at: user.created_at, updated_at: user.updated_at };
  if (withIdentities) {
    out.identities = user.identities.map((x) => ({ ...x }));
    out.presence_hidden = Boolean(user.presence_hidden);
  }
  return out;
}
// ---------------------------------------------------------------- presence and typing
const online = (tenant, id) => [...connections].some((conn) => conn.tenant === tenant && conn.user === id);
const shareConversation = (tenant, a, b) =>
  [...conversations.values()].some((c) => c.tenant_id === tenant && c.members.includes(a) && c.members.includes(b));
function presenceView(user, asker) {
  if (user.presence_hidden && asker !== user.user_id) return { user_id: user.user_id, state: 'offline', last_seen_at: null };
  if (online(user.tenant_id, user.user_id)) return { user_id: user.user_id, state: 'online', last_seen_at: null };
  return { user_id: user.user_id, state: 'offline', last_seen_at: user.last_seen ?? null };
}
// To every ready stream of another user who shares a conversation with `user`.
function announcePresence(user, state, lastSeen) {
  for (const conn of connections)
    if (conn.ready && conn.tenant === user.tenant_id && conn.user !== user.user_id && shareConversation(conn.tenant, conn.user, user.user_id))
      conn.send({ type: 'presence', user_id: user.user_id, state, last_seen_at: lastSeen });
}
const typingLast = new Map();  // tenant/user/conversation -> ms
function conversationView(c) {
  return {
    conversation_id: c.conversation_id, tenant_id: c.tenant_id, type: c.type, name: c.name, members: [...c.members],
    created_by: c.created_by, metadata: c.metadata, created_at: c.created_at, updated_at: c.updated_at,
  };
}
function messageView(m) {
  const payload = m.payload.type === 'text' ? { type: 'text', text: m.payload.text } : { type: 'file', file_id: m.payload.file_id };
  return {
    message_id: m.message_id, conversation_id: m.conversation_id, seq: m.seq, sender_id: m.sender_id, to: [...m.to],
    channels: [...m.channels], payload, metadata: m.metadata, received_at: m.received_at, stored_at: m.stored_at,
  };
}
function stateView(m, recipient) {
  const history = m.states.get(recipient);
  return { recipient_id: recipient, state: history[history.length - 1].state, history: history.map((h) => ({ ...h })) };
}
function horizonsOf(c, userId) {
  if (!c.horizons.has(userId)) c.horizons.set(userId, { read: 0, delivered: 0 });
  return c.horizons.get(userId);
}
function summaryView(c, userId) {
  const h = userId && c.members.includes(userId) ? horizonsOf(c, userId) : { read: 0, delivered: 0 };
  const last = c.messages[c.messages.length - 1];
  const unread = userId ? c.messages.filter((m) => m.seq > h.read && m.to.includes(userId)).length : 0;
  return {
    ...conversationView(c), last_seq: c.messages.length, last_message: last ? messageView(last) : null,
    unread_count: Math.min(unread, 1000), read_up_to_seq: h.read, delivered_up_to_seq: h.delivered,
  };
}

// ---------------------------------------------------------------- rules
function page(items, key, query, idOf) {
  const limit = parseLimit(query, 200, 50);
  const after = query.get('after');
  const sorted = items.sort((x, y) => (idOf(x) < idOf(y) ? -1 : 1)).filter((x) => !after || idOf(x) > after);
  const chosen = sorted.slice(0, limit);
  return { [key]: chosen, next_after: sorted.length > limit ? idOf(chosen[chosen.length - 1]) : null };
}
function parseLimit(query, max, fallback) {
  if (!query.has('limit')) return fallback;
  const v = query.get('limit');
  if (!/^[0-9]+$/.test(v) || Number(v) < 1 || Number(v) > max) throw bad('limit', `limit must be an integer from 1 to ${max}`);
  return Number(v);
}
function onlyParams(query, allowed) {
  for (const key of query.keys()) if (!allowed.includes(key)) throw bad(key, `unknown query parameter '${key}'`, 'unknown_parameter');
}
function requireAdmin(auth) {
  if (auth.role !== 'admin') throw forbidden('this needs an admin token');
}
function requireUserToken(auth) {
  if (auth.role !== 'user') throw forbidden('this needs a user token', 'user_token_required');
}
function findUser(tenant, id) {
  return users.get(`${tenant}/${id}`);
}
function visibleConversation(auth, id) {
  const c = conversations.get(id);
  if (!c || c.tenant_id !== auth.tenant) throw notFound(`no conversation ${id}`);
  if (auth.role !== 'admin' && !c.members.includes(auth.subject)) throw notFound(`no conversation ${id}`);
  return c;
}
function visibleMessage(auth, id) {
  const m = messageIndex.get(`${auth.tenant}/${id}`);
  if (!m) throw notFound(`no message ${id}`);
  visibleConversation(auth, m.conversation_id);
  return m;
}
function isSeqParam(value) {
  return /^[0-9]+$/.test(value) && Number(value) >= 1 && Number.isSafeInteger(Number(value));
}

// A recipient's state moves forward only; READ from SENT records DELIVERED too.
function advance(m, recipient, target, at = now()) {
  const history = m.states.get(recipient);
  const order = ['SENT', 'DELIVERED', 'READ'];
  let current = order.indexOf(history[history.length - 1].state);
  const goal = order.indexOf(target);
  while (current < goal) {
    current += 1;
    history.push({ state: order[current], at });
    emitState(m, recipient, order[current], at);
  }
}

// ---------------------------------------------------------------- events
function emitState(m, recipient, state, at) {
  for (const conn of connections) {
    if (conn.ready && conn.tenant === m.tenant && conn.user === m.sender_id) {
      conn.send({ type: 'state', message_id: m.message_id, conversation_id: m.conversation_id, seq: m.seq, recipient_id: recipient, state, at });
    }
  }
  dispatchWebhooks(m.tenant, state === 'DELIVERED' ? 'message.delivered' : 'message.read', m, recipient, state, at);
}

function dispatchWebhooks(tenant, type, m, recipient, state, at) {
  for (const hook of webhooks.values()) {
    if (hook.tenant !== tenant || !hook.events.includes(type)) continue;
    const event = {
      id: rid('evt_'), type, timestamp: now(),
      data: { message_id: m.message_id, conversation_id: m.conversation_id, seq: m.seq, sender_id: m.sender_id, recipient_id: recipient, state, at },
    };
    const delivery = { event_id: event.id, event_type: type, state: 'retrying', attempts: [], created_at: now(), next_attempt_at: now() };
    hook.deliveries.set(event.id, delivery);
    // Maps keep insertion order: the first key is the oldest record.
    while (hook.deliveries.size > config.webhookDeliveriesKeptMax) hook.deliveries.delete(hook.deliveries.keys().next().value);
    attempt(hook, event, delivery, 1);
  }
}

function attempt(hook, event, delivery, n) {
  if (!webhooks.has(hook.webhook_id)) return;
  const body = JSON.stringify(event);
  const ts = String(Math.floor(now() / 1000));
  const key = Buffer.from(hook.secret.slice(6), 'base64');
  const sig = crypto.createHmac('sha256', key).update(`${event.id}.${ts}.${body}`).digest('base64');
  const started = now();
  const done = (statusCode, error) => {
    delivery.attempts.push({ at: started, status_code: statusCode, error, duration_ms: now() - started });
    const retry = statusCode === null || statusCode === 429 || statusCode >= 500;
    if (statusCode !== null && statusCode >= 200 && statusCode < 300) {
      delivery.state = 'delivered';
      delivery.next_attempt_at = null;
    } else if (retry && n < config.webhookAttemptsMax) {
      const wait = 200 * 2 ** (n - 1);
      delivery.next_attempt_at = now() + wait;
      setTimeout(() => attempt(hook, event, delivery, n + 1), wait);
    } else {
      delivery.state = 'failed';
      delivery.next_attempt_at = null;
    }
  };
  const req = http.request(hook.url, {
    method: 'POST', timeout: 5000,
    headers: {
      'content-type': 'application/json', 'user-agent': 'Chat4All-Webhooks/1', 'content-length': Buffer.byteLength(body),
      'webhook-id': event.id, 'webhook-timestamp': ts, 'webhook-signature': `v1,${sig}`,
    },
  }, (res) => {
    res.resume();
    res.on('end', () => done(res.statusCode, null));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (error) => done(null, error.message));
  req.end(body);
}

function stored(c, m) {
  dispatchWebhooks(c.tenant_id, 'message.sent', m, null, 'SENT', m.stored_at);
  for (const conn of connections) conn.pump(c);
}

// ---------------------------------------------------------------- handlers
function parseIdentities(list, field = 'identities') {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw bad(field, `${field} must be an array`);
  const seen = new Set();
  return list.map((x, i) => {
    if (!x || typeof x !== 'object') throw bad(`${field}[${i}]`, 'must be an object');
    if (!isChannelName(x.channel)) throw bad(`${field}[${i}].channel`, 'channel must be a channel name (1-64 of A-Z a-z 0-9 . _ -, not all)');
    if (typeof x.address !== 'string' || !x.address || x.address.length > 256) throw bad(`${field}[${i}].address`, 'address must be 1-256 characters');
    if (seen.has(x.channel)) throw bad(`${field}[${i}].channel`, 'one identity per channel');
    seen.add(x.channel);
    return { channel: x.channel, address: x.address };
  });
}
function checkPassword(p) {
  if (p === undefined || p === null) throw missing('password');
  if (typeof p !== 'string' || Buffer.byteLength(p) < 8 || Buffer.byteLength(p) > 256) throw bad('password', 'password must be 8-256 bytes');
}

const routes = [];
const route = (method, pattern, handler, { auth = true } = {}) => {
  const regex = new RegExp(`^${pattern.replace(/\{[^}]+\}/g, '([^/]+)')}$`);
  routes.push({ method, pattern, regex, handler, auth });
};

route('GET', '/healthz', () => [200, { status: 'ok', node: 'mock' }], { auth: false });
route('GET', '/metrics', () => [200, '# HELP mock_up 1 when up\n# TYPE mock_up gauge\nmock_up 1\n', { 'content-type': 'text/plain; version=0.0.4' }], { auth: false });
route('GET', '/v1/openapi.yaml', () => [200, specText, { 'content-type': 'application/yaml' }], { auth: false });

route('POST', '/v1/auth/token', (req) => {
  const b = req.body;
  const grant = b.grant_type ?? 'password';
  if (!['password', 'client_credentials'].includes(grant)) throw bad('grant_type', 'grant_type must be password or client_credentials');
  if (typeof b.tenant_id !== 'string' || !b.tenant_id) throw missing('tenant_id');
  const invalid = new HttpError(401, 'invalid_credentials', 'the credentials are wrong');
  let claims;
  if (grant === 'password') {
    if (typeof b.user_id !== 'string' || !b.user_id) throw missing('user_id');
    if (typeof b.password !== 'string') throw missing('password');
    const user = findUser(b.tenant_id, b.user_id);
    if (!user || user.password !== b.password) throw invalid;
    claims = { tenant: b.tenant_id, subject: user.user_id, role: 'user' };
  } else {
    if (typeof b.client_id !== 'string' || !b.client_id) throw missing('client_id');
    if (typeof b.client_secret !== 'string') throw missing('client_secret');
    const client = clients.get(`${b.tenant_id}/${b.client_id}`);
    if (!client || client.secret !== b.client_secret) throw invalid;
    claims = { tenant: b.tenant_id, subject: client.client_id, role: 'admin' };
  }
  const token = crypto.randomBytes(24).toString('base64url');
  tokens.set(token, { ...claims, exp: now() + config.tokenTtlS * 1000 });
  return [200, { access_token: token, token_type: 'Bearer', expires_in: config.tokenTtlS, tenant_id: claims.tenant, subject: claims.subject, role: claims.role }, { 'cache-control': 'no-store' }];
}, { auth: false });

route('POST', '/v1/users', (req, auth) => {
  requireAdmin(auth);
  const b = req.body;
  if (b.user_id === undefined) throw missing('user_id');
  if (typeof b.user_id !== 'string' || !NAME.test(b.user_id)) throw bad('user_id', 'user_id must be 1-64 characters of A-Z a-z 0-9 . _ -');
  checkPassword(b.password);
  if (b.display_name !== undefined && typeof b.display_name !== 'string') throw bad('display_name', 'display_name must be a string');
  const ids = parseIdentities(b.identities);
  if (findUser(auth.tenant, b.user_id)) throw new HttpError(409, 'user_exists', `user ${b.user_id} exists`, 'user_id');
  ids.forEach((x, i) => {
    if (identities.has(`${auth.tenant}/${x.channel}/${x.address}`)) throw new HttpError(409, 'identity_taken', 'the address is linked to another user', `identities[${i}].address`);
  });
  const user = { user_id: b.user_id, tenant_id: auth.tenant, display_name: b.display_name ?? null, password: b.password, identities: ids, created_at: now(), updated_at: now() };
  users.set(`${auth.tenant}/${user.user_id}`, user);
  for (const x of ids) identities.set(`${auth.tenant}/${x.channel}/${x.address}`, user.user_id);
  return [201, userView(user, true), { location: `/v1/users/${user.user_id}` }];
});
route('GET', '/v1/users', (req, auth) => {
  requireAdmin(auth);
  onlyParams(req.query, ['after', 'limit']);
  const mine = [...users.values()].filter((u) => u.tenant_id === auth.tenant);
  const result = page(mine, 'users', req.query, (u) => u.user_id);
  result.users = result.users.map((u) => userView(u, true));
  return [200, result];
});
route('GET', '/v1/users/{user_id}', (req, auth, [id]) => {
  const user = findUser(auth.tenant, id);
  if (!user) throw notFound(`no user ${id}`);
  return [200, userView(user, auth.role === 'admin' || auth.subject === id)];
});
const selfOrAdmin = (auth, id) => {
  const user = findUser(auth.tenant, id);
  if (!user) throw notFound(`no user ${id}`);
  if (auth.role !== 'admin' && auth.subject !== id) throw forbidden('only the user itself or an admin');
  return user;
};
route('PATCH', '/v1/users/{user_id}', (req, auth, [id]) => {
  const user = selfOrAdmin(auth, id);
  const b = req.body;
  if (b.display_name === undefined && b.password === undefined && b.presence_hidden === undefined) throw bad('display_name', 'give display_name, password or presence_hidden');
  if (b.presence_hidden !== undefined && typeof b.presence_hidden !== 'boolean') throw bad('presence_hidden', 'presence_hidden must be true or false');
  if (b.display_name !== undefined && (typeof b.display_name !== 'string' || b.display_name.length > 256)) throw bad('display_name', 'display_name must be a string');
  if (b.password !== undefined) checkPassword(b.password);
  if (b.display_name !== undefined) user.display_name = b.display_name;
  if (b.password !== undefined) user.password = b.password;
  if (b.presence_hidden !== undefined && b.presence_hidden !== Boolean(user.presence_hidden)) {
    user.presence_hidden = b.presence_hidden;
    if (online(user.tenant_id, user.user_id)) announcePresence(user, b.presence_hidden ? 'offline' : 'online', null);
  }
  user.updated_at = now();
  return [200, userView(user, true)];
});
route('GET', '/v1/users/{user_id}/presence', (req, auth, [id]) => {
  if (!NAME.test(id)) throw bad('user_id', 'user_id must be 1-64 of A-Z a-z 0-9 . _ -');
  const user = findUser(auth.tenant, id);
  const visible = user && (auth.role === 'admin' || auth.subject === id || shareConversation(auth.tenant, auth.subject, id));
  if (!visible) throw notFound(`no user ${id}`);
  return [200, presenceView(user, auth.subject)];
});
route('PUT', '/v1/users/{user_id}/identities/{channel}', (req, auth, [id, channel]) => {
  const user = selfOrAdmin(auth, id);
  if (!isChannelName(channel)) throw bad('channel', 'channel must be a channel name (1-64 of A-Z a-z 0-9 . _ -, not all)');
  const address = req.body.address;
  if (address === undefined) throw missing('address');
  if (typeof address !== 'string' || !address || address.length > 256) throw bad('address', 'address must be 1-256 characters');
  const owner = identities.get(`${auth.tenant}/${channel}/${address}`);
  if (owner && owner !== id) throw new HttpError(409, 'identity_taken', 'the address is linked to another user', 'address');
  const old = user.identities.find((x) => x.channel === channel);
  if (old) identities.delete(`${auth.tenant}/${channel}/${old.address}`);
  user.identities = user.identities.filter((x) => x.channel !== channel).concat([{ channel, address }]);
  identities.set(`${auth.tenant}/${channel}/${address}`, id);
  user.updated_at = now();
  return [200, userView(user, true)];
});
route('DELETE', '/v1/users/{user_id}/identities/{channel}', (req, auth, [id, channel]) => {
  const user = selfOrAdmin(auth, id);
  if (!isChannelName(channel)) throw bad('channel', 'channel must be a channel name (1-64 of A-Z a-z 0-9 . _ -, not all)');
  const old = user.identities.find((x) => x.channel === channel);
  if (old) identities.delete(`${auth.tenant}/${channel}/${old.address}`);
  user.identities = user.identities.filter((x) => x.channel !== channel);
  return [204];
});

route('POST', '/v1/clients', (req, auth) => {
  requireAdmin(auth);
  const name = req.body.name;
  if (name === undefined) throw missing('name');
  if (typeof name !== 'string' || !name || name.length > 128) throw bad('name', 'name must be 1-128 characters');
  const client = { client_id: rid('cl_'), name, role: 'admin', source: 'api', created_at: now(), secret: crypto.randomBytes(32).toString('base64url'), tenant: auth.tenant };
  clients.set(`${auth.tenant}/${client.client_id}`, client);
  return [201, { client_id: client.client_id, client_secret: client.secret, name, role: 'admin', source: 'api', created_at: client.created_at }, { 'cache-control': 'no-store' }];
});
route('GET', '/v1/clients', (req, auth) => {
  requireAdmin(auth);
  onlyParams(req.query, ['after', 'limit']);
  const mine = [...clients.values()].filter((x) => x.tenant === auth.tenant);
  const result = page(mine, 'clients', req.query, (x) => x.client_id);
  result.clients = result.clients.map(({ client_id, name, role, source, created_at }) => ({ client_id, name, role, source, created_at }));
  return [200, result];
});
route('DELETE', '/v1/clients/{client_id}', (req, auth, [id]) => {
  requireAdmin(auth);
  const client = clients.get(`${auth.tenant}/${id}`);
  if (!client) throw notFound(`no client ${id}`);
  if (client.source === 'topology') throw new HttpError(409, 'client_managed_by_topology', 'this client is declared in the topology');
  clients.delete(`${auth.tenant}/${id}`);
  // Its tokens are revoked with it.
  for (const [token, claims] of tokens) {
    if (claims.tenant === auth.tenant && claims.role === 'admin' && claims.subject === id) tokens.delete(token);
  }
  return [204];
});

function memberList(auth, list) {
  if (list === undefined) throw missing('members');
  if (!Array.isArray(list) || list.length === 0 || list.some((x) => typeof x !== 'string')) throw bad('members', 'members must be a non-empty array of user ids');
  const unknown = list.filter((x) => !findUser(auth.tenant, x));
  if (unknown.length) throw bad('members', `unknown users: ${unknown.join(', ')}`);
  return [...new Set(list)];
}
route('POST', '/v1/conversations', (req, auth) => {
  const b = req.body;
  if (b.type === undefined) throw missing('type');
  if (!['private', 'group'].includes(b.type)) throw bad('type', 'type must be private or group');
  let members = memberList(auth, b.members);
  if (auth.role === 'user' && !members.includes(auth.subject)) members = [auth.subject, ...members];
  if (b.metadata !== undefined && (typeof b.metadata !== 'object' || b.metadata === null || Array.isArray(b.metadata))) throw bad('metadata', 'metadata must be an object');
  if (b.name !== undefined && typeof b.name !== 'string') throw bad('name', 'name must be a string');
  const idempotencyKey = req.headers['idempotency-key'];
  if (idempotencyKey !== undefined && !ID.test(idempotencyKey)) throw bad('Idempotency-Key', 'Idempotency-Key must be 1-128 characters of A-Z a-z 0-9 . _ : @ -');
  if (b.type === 'private') {
    if (members.length !== 2) throw bad('members', 'a private conversation has exactly two members');
    const key = `${auth.tenant}/${[...members].sort().join('/')}`;
    if (privates.has(key)) return [200, conversationView(conversations.get(privates.get(key))), { 'idempotent-replayed': 'true' }];
  } else if (members.length > config.membersMax) {
    throw bad('members', `at most ${config.membersMax} members`);
  }
  const keyed = b.type === 'group' && idempotencyKey !== undefined ? `${auth.tenant}/${auth.role}/${auth.subject}/${idempotencyKey}` : undefined;
  if (keyed !== undefined && keyedGroups.has(keyed)) return [200, conversationView(conversations.get(keyedGroups.get(keyed))), { 'idempotent-replayed': 'true' }];
  const c = {
    conversation_id: rid('c_'), tenant_id: auth.tenant, type: b.type, name: b.name ?? null, members, created_by: auth.role === 'user' ? auth.subject : null,
    metadata: b.metadata ?? {}, created_at: now(), updated_at: now(), messages: [], horizons: new Map(),
  };
  conversations.set(c.conversation_id, c);
  if (b.type === 'private') privates.set(`${auth.tenant}/${[...members].sort().join('/')}`, c.conversation_id);
  if (keyed !== undefined) keyedGroups.set(keyed, c.conversation_id);
  return [201, conversationView(c), { location: `/v1/conversations/${c.conversation_id}` }];
});
route('GET', '/v1/conversations', (req, auth) => {
  onlyParams(req.query, ['after', 'limit', 'user_id']);
  let userId = auth.subject;
  if (auth.role === 'admin') {
    userId = req.query.get('user_id');
    if (!userId) throw missing('user_id');
  } else if (req.query.has('user_id') && req.query.get('user_id') !== auth.subject) {
    throw forbidden('user_id is for admins');
  }
  const mine = [...conversations.values()].filter((c) => c.tenant_id === auth.tenant && c.members.includes(userId));
  const result = page(mine, 'conversations', req.query, (c) => c.conversation_id);
  result.conversations = result.conversations.map((c) => summaryView(c, userId));
  return [200, result];
});
route('GET', '/v1/conversations/{conversation_id}', (req, auth, [id]) => {
  const c = visibleConversation(auth, id);
  return [200, summaryView(c, auth.role === 'user' ? auth.subject : null)];
});
route('POST', '/v1/conversations/{conversation_id}/members', (req, auth, [id]) => {
  const c = visibleConversation(auth, id);
  if (c.type === 'private') throw new HttpError(409, 'private_conversation', 'members of a private conversation do not change');
  const add = memberList(auth, req.body.members).filter((x) => !c.members.includes(x));
  if (c.members.length + add.length > config.membersMax) throw bad('members', `at most ${config.membersMax} members`);
  for (const user of add) {
    c.members.push(user);
    c.horizons.set(user, { read: c.messages.length, delivered: c.messages.length });
  }
  c.updated_at = now();
  return [200, conversationView(c)];
});
route('DELETE', '/v1/conversations/{conversation_id}/members/{user_id}', (req, auth, [id, user]) => {
  const c = visibleConversation(auth, id);
  if (c.type === 'private') throw new HttpError(409, 'private_conversation', 'members of a private conversation do not change');
  if (!c.members.includes(user)) throw notFound(`${user} is not a member`);
  if (auth.role !== 'admin' && auth.subject !== user && auth.subject !== c.created_by) throw forbidden('only the creator or an admin removes others');
  c.members = c.members.filter((x) => x !== user);
  c.horizons.delete(user);
  c.updated_at = now();
  return [204];
});
function horizonRoute(kind) {
  return (req, auth, [id]) => {
    requireUserToken(auth);
    const c = visibleConversation(auth, id);
    const v = req.body.up_to_seq;
    if (v === undefined) throw missing('up_to_seq');
    if (!Number.isSafeInteger(v) || v < 0) throw bad('up_to_seq', 'up_to_seq must be an integer >= 0');
    const h = horizonsOf(c, auth.subject);
    const upTo = Math.min(v, c.messages.length);
    const at = now();
    if (kind === 'read' && upTo > h.read) {
      for (const m of c.messages.slice(h.read, upTo)) if (m.to.includes(auth.subject)) advance(m, auth.subject, 'READ', at);
      h.read = upTo;
    }
    const deliveredTo = Math.max(h.read, kind === 'delivered' ? upTo : 0);
    if (deliveredTo > h.delivered) {
      for (const m of c.messages.slice(h.delivered, deliveredTo)) if (m.to.includes(auth.subject)) advance(m, auth.subject, 'DELIVERED', at);
      h.delivered = deliveredTo;
    }
    return [200, { conversation_id: c.conversation_id, user_id: auth.subject, read_up_to_seq: h.read, delivered_up_to_seq: h.delivered, last_seq: c.messages.length }];
  };
}
route('POST', '/v1/conversations/{conversation_id}/read', horizonRoute('read'));
route('POST', '/v1/conversations/{conversation_id}/delivered', horizonRoute('delivered'));

const cursorOf = (direction, seq) => Buffer.from(`${direction[0]}:${seq}`).toString('base64url');
route('GET', '/v1/conversations/{conversation_id}/messages', (req, auth, [id]) => {
  const q = req.query;
  onlyParams(q, ['from_seq', 'before_seq', 'since', 'cursor', 'limit']);
  const given = ['from_seq', 'before_seq', 'since', 'cursor'].filter((k) => q.has(k));
  if (given.length > 1) throw bad(given[1], `give only one of from_seq, before_seq, since, cursor`, 'conflicting_parameters');
  const limit = parseLimit(q, config.historyPageMax, 50);
  let direction = 'forward';
  let from = 1;
  let before = 0;
  if (q.has('from_seq')) {
    if (!isSeqParam(q.get('from_seq'))) throw bad('from_seq', 'from_seq must be a positive integer');
    from = Number(q.get('from_seq'));
  } else if (q.has('before_seq')) {
    if (!isSeqParam(q.get('before_seq'))) throw bad('before_seq', 'before_seq must be a positive integer');
    direction = 'backward';
    before = Number(q.get('before_seq'));
  } else if (q.has('cursor')) {
    const m = /^([fb]):([0-9]+)$/.exec(Buffer.from(q.get('cursor'), 'base64url').toString('utf8'));
    if (!m || !/^[A-Za-z0-9_-]+$/.test(q.get('cursor'))) throw bad('cursor', 'cursor is not one this server made');
    direction = m[1] === 'f' ? 'forward' : 'backward';
    if (direction === 'forward') from = Number(m[2]);
    else before = Number(m[2]);
  }
  const c = visibleConversation(auth, id);
  const last = c.messages.length;
  if (q.has('since')) {
    if (!/^[0-9]+$/.test(q.get('since'))) throw bad('since', 'since must be milliseconds since the epoch');
    const since = Number(q.get('since'));
    const first = c.messages.find((m) => m.stored_at >= since);
    from = first ? first.seq : last + 1;
  }
  let chosen;
  let end;
  let nextFrom;
  let cursor = null;
  if (direction === 'forward') {
    chosen = c.messages.slice(from - 1, from - 1 + limit);
    end = chosen.length === 0 || chosen[chosen.length - 1].seq >= last;
    nextFrom = chosen.length ? chosen[chosen.length - 1].seq + 1 : from;
    if (!end) cursor = cursorOf('forward', nextFrom);
  } else {
    const high = Math.min(before, last + 1);  // exclusive
    const low = Math.max(1, high - limit);
    chosen = c.messages.slice(low - 1, high - 1);
    end = low <= 1;
    nextFrom = chosen.length ? chosen[chosen.length - 1].seq + 1 : 1;
    if (!end) cursor = cursorOf('backward', low);
  }
  return [200, {
    conversation_id: c.conversation_id, messages: chosen.map(messageView), direction, next_cursor: cursor,
    end_of_history: end, last_seq: last, next_from_seq: nextFrom, has_more: !end,
  }];
});

route('POST', '/v1/messages', (req, auth) => {
  const b = req.body;
  const receivedAt = now();
  const idField = (key, required) => {
    const v = b[key];
    if (v === undefined || v === null) {
      if (required) throw missing(key);
      return undefined;
    }
    if (typeof v !== 'string' || !ID.test(v)) throw bad(key, `${key} must be 1-128 characters of A-Z a-z 0-9 . _ : @ -`);
    return v;
  };
  const conversationId = idField('conversation_id', true);
  const messageId = idField('message_id', false) ?? crypto.randomUUID();
  if (b.payload === undefined || b.payload === null) throw missing('payload');
  if (typeof b.payload !== 'object' || Array.isArray(b.payload)) throw bad('payload', 'payload must be an object');
  if (b.payload.type === undefined) throw missing('payload.type');
  if (b.payload.type === 'file') {
    const fileId = b.payload.file_id;
    if (fileId === undefined || fileId === null) throw missing('payload.file_id');
    if (typeof fileId !== 'string' || !ID.test(fileId)) throw bad('payload.file_id', 'payload.file_id must be 1-128 characters of A-Z a-z 0-9 . _ : @ -');
  } else if (b.payload.type !== 'text') {
    throw bad('payload.type', 'payload.type must be text or file', 'unsupported_payload_type');
  } else {
    if (b.payload.text === undefined || b.payload.text === null) throw missing('payload.text');
    if (typeof b.payload.text !== 'string') throw bad('payload.text', 'payload.text must be a string');
    if (!b.payload.text) throw bad('payload.text', 'payload.text must not be empty');
    if (Buffer.byteLength(b.payload.text) > config.textBytesMax) throw new HttpError(413, 'payload_too_large', `payload.text is over ${config.textBytesMax} bytes`, 'payload.text');
  }
  if (b.metadata !== undefined && (typeof b.metadata !== 'object' || b.metadata === null || Array.isArray(b.metadata))) throw bad('metadata', 'metadata must be an object');
  let channels = ['all'];
  if (b.channels !== undefined) {
    if (!Array.isArray(b.channels) || b.channels.length === 0) throw bad('channels', 'channels must be a non-empty array');
    b.channels.forEach((ch, i) => {
      if (ch !== 'all' && ch !== 'internal' && !CHANNELS.includes(ch)) throw bad(`channels[${i}]`, `unknown channel ${ch}`);
    });
    if (b.channels.includes('all') && b.channels.length > 1) throw bad('channels', '"all" may not be mixed with named channels');
    channels = b.channels;
  }
  let sender = auth.subject;
  if (auth.role === 'admin') {
    sender = idField('sender_id', true);
  } else if (b.sender_id !== undefined && b.sender_id !== auth.subject) {
    throw forbidden('users send as themselves');
  }
  const c = visibleConversation(auth, conversationId);
  if (!c.members.includes(sender)) throw bad('sender_id', `${sender} is not a member`);
  let to = c.members.filter((x) => x !== sender);
  if (b.to !== undefined) {
    if (!Array.isArray(b.to) || b.to.length === 0) throw bad('to', 'to must be a non-empty array of members');
    b.to.forEach((x, i) => {
      if (typeof x !== 'string' || !c.members.includes(x) || x === sender) throw bad(`to[${i}]`, `${x} is not another member`);
    });
    to = [...new Set(b.to)];
  }
  const fingerprint = JSON.stringify([conversationId, b.to ?? null, b.channels ?? null, b.payload, b.metadata ?? null, sender]);
  // Deduplication is per conversation; the id's locator (messageIndex) keeps the first message.
  c.byMessageId ??= new Map();
  const existing = c.byMessageId.get(messageId);
  if (existing) {
    if (existing.fingerprint !== fingerprint) throw new HttpError(409, 'message_id_conflict', `message_id ${messageId} names another message`, 'message_id');
    return [202, { status: 'accepted', message_id: messageId, conversation_id: conversationId, seq: existing.seq }, { 'idempotent-replayed': 'true' }];
  }
  const m = {
    tenant: auth.tenant, message_id: messageId, conversation_id: conversationId, seq: c.messages.length + 1, sender_id: sender, to, channels,
    payload: b.payload.type === 'file' ? { type: 'file', file_id: b.payload.file_id } : { type: 'text', text: b.payload.text }, metadata: b.metadata ?? {}, received_at: receivedAt, stored_at: Math.max(now(), c.messages.at(-1)?.stored_at ?? 0),
    states: new Map(to.map((r) => [r, [{ state: 'SENT', at: now() }]])), fingerprint,
  };
  c.messages.push(m);
  c.byMessageId.set(messageId, m);
  if (!messageIndex.has(`${auth.tenant}/${messageId}`)) messageIndex.set(`${auth.tenant}/${messageId}`, m);
  stored(c, m);
  return [202, { status: 'accepted', message_id: messageId, conversation_id: conversationId, seq: m.seq }];
});
route('GET', '/v1/messages/{message_id}', (req, auth, [id]) => {
  const m = visibleMessage(auth, id);
  const all = auth.role === 'admin' || auth.subject === m.sender_id;
  const states = m.to.filter((r) => all || r === auth.subject).map((r) => stateView(m, r));
  return [200, { ...messageView(m), states }];
});
route('GET', '/v1/messages/{message_id}/deliveries', (req, auth, [id]) => {
  const m = visibleMessage(auth, id);
  return [200, { message_id: m.message_id, conversation_id: m.conversation_id, deliveries: [] }];
});
function markRoute(target) {
  return (req, auth, [id]) => {
    requireUserToken(auth);
    const m = visibleMessage(auth, id);
    if (!m.to.includes(auth.subject)) throw forbidden('you are not a recipient of this message', 'not_a_recipient');
    advance(m, auth.subject, target);
    return [200, stateView(m, auth.subject)];
  };
}
route('POST', '/v1/messages/{message_id}/delivered', markRoute('DELIVERED'));
route('POST', '/v1/messages/{message_id}/read', markRoute('READ'));

route('GET', '/v1/stream', (req, auth) => {
  requireUserToken(auth);
  throw new HttpError(426, 'upgrade_required', 'GET /v1/stream is a WebSocket', undefined, { upgrade: 'websocket' });
});

const SECRET = /^whsec_[A-Za-z0-9+/]+={0,2}$/;
route('POST', '/v1/webhooks', (req, auth) => {
  requireAdmin(auth);
  const b = req.body;
  if (b.url === undefined) throw missing('url');
  let url;
  try {
    url = new URL(b.url);
  } catch {
    throw bad('url', 'url is not a URL');
  }
  if (!['http:', 'https:'].includes(url.protocol)) throw bad('url', 'url must be http or https');
  if (!Array.isArray(b.events) || b.events.length === 0) throw bad('events', 'events must be a non-empty array');
  b.events.forEach((e, i) => {
    if (!EVENTS.includes(e)) throw bad(`events[${i}]`, `unknown event ${e}`);
  });
  let secret = b.secret;
  if (secret === undefined) secret = `whsec_${crypto.randomBytes(24).toString('base64')}`;
  else {
    const keyBytes = typeof secret === 'string' && SECRET.test(secret) ? Buffer.from(secret.slice(6), 'base64').length : 0;
    if (keyBytes < 16 || keyBytes > 64) throw bad('secret', 'secret must be whsec_ + base64 of 16-64 bytes');
  }
  const hook = { webhook_id: rid('wh_'), tenant: auth.tenant, url: b.url, events: [...new Set(b.events)], secret, created_at: now(), deliveries: new Map() };
  webhooks.set(hook.webhook_id, hook);
  return [201, { webhook_id: hook.webhook_id, url: hook.url, events: hook.events, secret, created_at: hook.created_at }, { 'cache-control': 'no-store' }];
});
const hookView = (h) => ({ webhook_id: h.webhook_id, url: h.url, events: h.events, created_at: h.created_at });
const findHook = (auth, id) => {
  requireAdmin(auth);
  const h = webhooks.get(id);
  if (!h || h.tenant !== auth.tenant) throw notFound(`no webhook ${id}`);
  return h;
};
route('GET', '/v1/webhooks', (req, auth) => {
  requireAdmin(auth);
  onlyParams(req.query, ['after', 'limit']);
  const result = page([...webhooks.values()].filter((h) => h.tenant === auth.tenant), 'webhooks', req.query, (h) => h.webhook_id);
  result.webhooks = result.webhooks.map(hookView);
  return [200, result];
});
route('GET', '/v1/webhooks/{webhook_id}', (req, auth, [id]) => [200, hookView(findHook(auth, id))]);
route('DELETE', '/v1/webhooks/{webhook_id}', (req, auth, [id]) => {
  findHook(auth, id);
  webhooks.delete(id);
  return [204];
});
route('GET', '/v1/webhooks/{webhook_id}/deliveries', (req, auth, [id]) => {
  const h = findHook(auth, id);
  onlyParams(req.query, ['after', 'limit']);
  const result = page([...h.deliveries.values()], 'deliveries', req.query, (d) => d.event_id);
  return [200, { webhook_id: id, ...result, deliveries: result.deliveries.map((d) => ({ ...d, attempts: d.attempts.map((x) => ({ ...x })) })) }];
});

// ---------------------------------------------------------------- HTTP
function authenticate(header) {
  const m = /^Bearer (.+)$/i.exec(header || '');
  const claims = m && tokens.get(m[1]);
  if (!claims || claims.exp < now()) {
    throw new HttpError(401, 'unauthorized', 'a valid bearer token is required', undefined, { 'www-authenticate': 'Bearer error="invalid_token"' });
  }
  return { ...claims, token: m[1] };
}
function rateLimit(token) {
  const b = buckets.get(token) ?? { tokens: config.burst, at: now() };
  b.tokens = Math.min(config.burst, b.tokens + ((now() - b.at) / 1000) * config.ratePerS);
  b.at = now();
  buckets.set(token, b);
  if (b.tokens < 1) throw new HttpError(429, 'rate_limited', 'too many requests for this token', undefined, { 'retry-after': '1' });
  b.tokens -= 1;
}

function send(res, status, body, headers = {}) {
  const out = { 'x-trace-id': crypto.randomBytes(16).toString('hex'), ...headers };
  if (body === undefined) {
    res.writeHead(status, out);
    res.end();
    return;
  }
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  if (!out['content-type']) out['content-type'] = 'application/json';
  res.writeHead(status, out);
  res.end(text);
}
function sendError(res, e) {
  const error = { code: e.code, message: e.message || e.code };
  if (e.field) error.field = e.field;
  send(res, e.status, { error }, e.headers);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const matching = routes.filter((r) => r.regex.test(url.pathname));
  if (matching.length === 0) {
    req.resume();
    return sendError(res, notFound(`no such endpoint: ${url.pathname}`));
  }
  const r = matching.find((x) => x.method === req.method);
  if (!r) {
    req.resume();
    const allow = matching.map((x) => x.method).join(', ');
    return sendError(res, new HttpError(405, 'method_not_allowed', `${req.method} is not allowed on ${url.pathname}`, undefined, { allow }));
  }
  let auth = null;
  try {
    if (r.auth) {
      auth = authenticate(req.headers.authorization);
      rateLimit(auth.token);
    }
    const length = Number(req.headers['content-length'] || 0);
    if (length > config.bodyBytesMax) throw new HttpError(413, 'payload_too_large', `the body is over ${config.bodyBytesMax} bytes`);
    const type = (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
    if (length > 0 && type && type !== 'application/json') throw new HttpError(415, 'unsupported_media_type', 'send application/json');
  } catch (e) {
    req.resume();
    return sendError(res, e);
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    try {
      const text = Buffer.concat(chunks).toString('utf8');
      let body = {};
      if (['POST', 'PUT', 'PATCH'].includes(req.method) && text.length) {
        try {
          body = JSON.parse(text);
        } catch {
          throw new HttpError(400, 'invalid_json', 'the request body is not valid JSON');
        }
        if (!body || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'invalid_json', 'the request body must be a JSON object');
      }
      const params = r.regex.exec(url.pathname).slice(1).map(decodeURIComponent);
      const [status, out, headers] = r.handler({ body, query: url.searchParams, headers: req.headers }, auth, params);
      send(res, status, out, headers);
    } catch (e) {
      if (e instanceof HttpError) sendError(res, e);
      else {
        console.error(e);
        sendError(res, new HttpError(503, 'unavailable', String(e.message), undefined, { 'retry-after': '1' }));
      }
    }
  });
});

// ---------------------------------------------------------------- stream
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://x');
  const refuse = (e) => {
    const error = { code: e.code, message: e.message };
    const body = JSON.stringify({ error });
    const extra = Object.entries(e.headers || {}).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    socket.end(`HTTP/1.1 ${e.status} ${http.STATUS_CODES[e.status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`);
  };
  if (url.pathname !== '/v1/stream') return refuse(notFound());
  let auth;
  try {
    const query = url.searchParams.get('access_token');
    auth = authenticate(req.headers.authorization || (query ? `Bearer ${query}` : ''));
    requireUserToken(auth);
  } catch (e) {
    return refuse(e);
  }
  wss.handleUpgrade(req, socket, head, (ws) => openConnection(ws, auth));
});

function openConnection(ws, auth) {
  const conn = {
    tenant: auth.tenant, user: auth.subject, ws, ready: false, sent: new Map(), queued: 0, closing: false,
    send(frame) {
      if (this.closing) return;
      const data = JSON.stringify(frame);
      this.queued += Buffer.byteLength(data);
      if (this.queued > config.queueBytesMax) {
        this.closing = true;
        ws.close(1008, 'slow consumer');
        return;
      }
      const size = Buffer.byteLength(data);
      ws.send(data, (error) => {
        this.queued -= size;
        if (!error && frame.type === 'message') written(this, frame.message);
      });
    },
    pump(c) {
      if (!this.ready || c.tenant_id !== this.tenant || !c.members.includes(this.user)) return;
      if (!this.sent.has(c.conversation_id)) this.sent.set(c.conversation_id, horizonsOf(c, this.user).delivered);
      let seq = this.sent.get(c.conversation_id);
      while (seq < c.messages.length && !this.closing) {
        seq += 1;
        this.send({ type: 'message', message: messageView(c.messages[seq - 1]) });
      }
      this.sent.set(c.conversation_id, seq);
    },
  };
  const user = findUser(conn.tenant, conn.user);
  if (user && !online(conn.tenant, conn.user) && !user.presence_hidden) {
    clearTimeout(user.offlineTimer);
    if (!user.offlineTimer) announcePresence(user, 'online', null);
    user.offlineTimer = null;
  } else if (user) {
    clearTimeout(user.offlineTimer);
    user.offlineTimer = null;
  }
  connections.add(conn);
  const start = (cursors) => {
    if (conn.ready) return;
    const mine = [...conversations.values()].filter((c) => c.tenant_id === conn.tenant && c.members.includes(conn.user));
    const entries = mine.map((c) => {
      const given = cursors[c.conversation_id];
      const cursor = Number.isSafeInteger(given) && given >= 0 ? Math.min(given, c.messages.length) : horizonsOf(c, conn.user).delivered;
      conn.sent.set(c.conversation_id, cursor);
      return { conversation_id: c.conversation_id, last_seq: c.messages.length, cursor };
    });
    conn.ready = true;
    conn.send({ type: 'ready', user_id: conn.user, conversations: entries });
    for (const c of mine) conn.pump(c);
  };
  const timer = setTimeout(() => start({}), config.resumeWaitMs);
  ws.on('message', (data) => {
    let frame;
    try {
      frame = JSON.parse(data.toString('utf8'));
    } catch {
      return conn.send({ type: 'error', error: { code: 'invalid_json', message: 'frames are JSON objects' } });
    }
    if (frame?.type === 'resume' && frame.cursors && typeof frame.cursors === 'object' && !conn.ready) {
      clearTimeout(timer);
      return start(frame.cursors);
    }
    if (frame?.type === 'ping') return conn.send(frame.id === undefined ? { type: 'pong' } : { type: 'pong', id: String(frame.id) });
    if (frame?.type === 'typing') {
      if (typeof frame.conversation_id !== 'string' || !ID.test(frame.conversation_id))
        return conn.send({ type: 'error', error: { code: 'invalid_frame', message: 'a typing frame names a "conversation_id"' } });
      const c = conversations.get(frame.conversation_id);
      if (!c || c.tenant_id !== conn.tenant || !c.members.includes(conn.user))
        return conn.send({ type: 'error', error: { code: 'conversation_not_found', message: 'no such conversation, or not a member' } });
      const key = `${conn.tenant}/${conn.user}/${c.conversation_id}`;
      if (now() - (typingLast.get(key) ?? -Infinity) < config.typingIntervalMs) return undefined;
      typingLast.set(key, now());
      for (const other of connections)
        if (other.ready && other.tenant === conn.tenant && other.user !== conn.user && c.members.includes(other.user))
          other.send({ type: 'typing', conversation_id: c.conversation_id, user_id: conn.user });
      return undefined;
    }
    conn.send({ type: 'error', error: { code: 'invalid_field', message: `unexpected frame type ${JSON.stringify(frame?.type)}`, field: 'type' } });
  });
  ws.on('close', () => {
    clearTimeout(timer);
    connections.delete(conn);
    if (!user || online(conn.tenant, conn.user)) return;
    // The grace: a reconnect within it is not seen.
    user.offlineTimer = setTimeout(() => {
      user.offlineTimer = null;
      if (online(conn.tenant, conn.user)) return;
      user.last_seen = now();
      if (!user.presence_hidden) announcePresence(user, 'offline', user.last_seen);
    }, config.presenceGraceMs);
  });
  ws.on('error', () => {});
}

function written(conn, view) {
  const c = conversations.get(view.conversation_id);
  const m = c?.messages[view.seq - 1];
  if (!m) return;
  const h = horizonsOf(c, conn.user);
  if (view.seq > h.delivered) h.delivered = view.seq;
  if (m.to.includes(conn.user)) advance(m, conn.user, 'DELIVERED');
}

server.listen(config.port, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
const stop = () => {
  for (const conn of connections) conn.ws.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

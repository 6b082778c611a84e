#!/usr/bin/env node
// Contract test of the public API v1: walks the whole API as a client would
// and checks every response against schema/openapi.yaml (status code
// documented for the operation, headers, body schema) and against what the
// API promises (values, states, paging, errors naming the field).
//
//   node tests/api/contract.mjs --base-url http://127.0.0.1:8080 --tenant dev \
//     --admin-client-id dev-admin --admin-client-secret chat4all-dev
//
// Exit code 0 only when every check passed. See tests/api/README.md.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import YAML from 'yaml';
import { Api, enc, parseArgs, waitFor } from './lib/api.mjs';
import { startHookServer, verifySignature } from './lib/hooks.mjs';
import { Runner } from './lib/runner.mjs';
import { loadSpec } from './lib/spec.mjs';

const USAGE = `usage: node contract.mjs --base-url http://127.0.0.1:PORT --tenant TENANT
         --admin-client-id ID --admin-client-secret SECRET
       [--other-tenant T --other-admin-client-id ID --other-admin-client-secret S]
       [--text-bytes-max 65536] [--body-bytes-max 1048576] [--rate-requests-max 2000]
       [--timeout-ms 10000] [--wait-ms 20000] [--skip section,...] [--verbose]
sections: operations auth users clients conversations presence messages states horizons
          conversation-list history webhooks rate-limit files tenants`;

let options;
try {
  options = parseArgs(process.argv.slice(2), USAGE);
} catch (error) {
  console.error(error.message);
  process.exit(2);
}

const runner = new Runner({ verbose: options.verbose, skip: options.skip });
const spec = await loadSpec(options.spec);
const api = new Api({ baseUrl: options.baseUrl, spec, runner, timeoutMs: options.timeoutMs });
const run = `${Date.now().toString(36)}${crypto.randomBytes(3).toString('hex')}`;
const prefix = `ct${run}-`;
const hooks = [];  // webhook receivers to close at the end

// What the run makes, filled in as it goes.
const s = {
  admin: null,
  users: {},      // a, b, c: {id, password, token, whatsapp}
  private: null,  // conversation of a and b
  group: null,    // conversation of a, b, c (a created it)
  sent: [],       // messages of the private conversation, by seq: {seq, message_id, sender, text}
  groupMessage: null,
};

const ids = () => Object.values(s.users).map((u) => u.id);
const sameSet = (actual, expected, what) => assert.deepEqual([...actual].sort(), [...expected].sort(), what);

async function token(body) {
  return api.call('POST', '/v1/auth/token', { body });
}

async function adminToken(tenant, clientId, clientSecret) {
  const r = await token({ grant_type: 'client_credentials', tenant_id: tenant, client_id: clientId, client_secret: clientSecret });
  assert.equal(r.status, 200, `admin token: ${r.status} ${r.text.slice(0, 200)}`);
  return r.json;
}

async function userToken(user, { grantType = 'password' } = {}) {
  const body = { tenant_id: options.tenant, user_id: user.id, password: user.password };
  if (grantType) body.grant_type = grantType;
  const r = await token(body);
  assert.equal(r.status, 200, `token for ${user.id}: ${r.status} ${r.text.slice(0, 200)}`);
  assert.equal(r.json.role, 'user');
  assert.equal(r.json.subject, user.id);
  assert.equal(r.json.tenant_id, options.tenant);
  assert.equal(r.json.token_type, 'Bearer');
  return r.json.access_token;
}

// Every item of a paged list (users, clients, conversations, webhooks,
// deliveries), following next_after; bounded to `pages` pages.
async function listAll(pathname, key, tok, { limit = 200, pages = 50 } = {}) {
  const items = [];
  let after = null;
  for (let page = 0; page < pages; page += 1) {
    const sep = pathname.includes('?') ? '&' : '?';
    const url = `${pathname}${sep}limit=${limit}${after ? `&after=${enc(after)}` : ''}`;
    const r = await api.call('GET', url, { token: tok, expect: 200 });
    assert.ok(Array.isArray(r.json[key]), `${url}: ${key} is not an array`);
    items.push(...r.json[key]);
    if (r.json.next_after === null) return items;
    assert.equal(typeof r.json.next_after, 'string');
    after = r.json.next_after;
  }
  throw new Error(`${pathname}: more than ${pages} pages`);
}

async function send(tok, body, expectStatus = 202) {
  return api.call('POST', '/v1/messages', { token: tok, body, expect: expectStatus });
}

async function sendText(user, conversationId, text, extra = {}) {
  const r = await send(user.token, { conversation_id: conversationId, payload: { type: 'text', text }, ...extra });
  assert.equal(r.json.status, 'accepted');
  assert.equal(r.json.conversation_id, conversationId);
  return r.json;
}

function checkHistoryState(entry, recipient, states) {
  assert.equal(entry.recipient_id, recipient);
  assert.deepEqual(entry.history.map((h) => h.state), states, `${recipient}: history`);
  assert.equal(entry.state, states[states.length - 1], `${recipient}: state is the last of its history`);
  for (let i = 1; i < entry.history.length; i += 1) {
    assert.ok(entry.history[i].at >= entry.history[i - 1].at, `${recipient}: history times go forward`);
  }
}

async function main() {
  // ------------------------------------------------------------ operations
  if (runner.begin('operations')) {
    await runner.check('GET /healthz answers ok', async () => {
      const r = await api.call('GET', '/healthz', { expect: 200 });
      assert.equal(r.json.status, 'ok');
    }, { critical: true });
    await runner.check('GET /metrics is Prometheus text', async () => {
      const r = await api.call('GET', '/metrics', { expect: 200 });
      assert.match(r.text, /^# (HELP|TYPE) /m);
    });
    await runner.check('GET /v1/openapi.yaml serves schema/openapi.yaml', async () => {
      const r = await api.call('GET', '/v1/openapi.yaml', { expect: 200 });
      const served = YAML.parse(r.text);
      assert.equal(served.openapi, '3.0.3');
      assert.deepEqual(Object.keys(served.paths).sort(), Object.keys(spec.raw.paths).sort(), 'served paths');
      assert.deepEqual(served, spec.raw, 'the served document differs from schema/openapi.yaml');
    });
    await runner.check('an unknown path is 404, an unlisted method 405 with Allow', async () => {
      await api.error('GET', `/v1/no-such-endpoint-${run}`, {}, { status: 404, code: 'not_found' });
      const r = await api.error('DELETE', '/v1/messages', {}, { status: 405, code: 'method_not_allowed' });
      assert.match(r.headers.allow || '', /POST/);
      const h = await api.error('POST', '/healthz', {}, { status: 405 });
      assert.match(h.headers.allow || '', /GET/);
    });
  }

  // ------------------------------------------------------------ auth
  if (runner.begin('auth')) {
    await runner.check('admin token (client_credentials)', async () => {
      const t = await adminToken(options.tenant, options.adminClientId, options.adminClientSecret);
      assert.equal(t.role, 'admin');
      assert.equal(t.subject, options.adminClientId);
      assert.equal(t.tenant_id, options.tenant);
      assert.equal(t.token_type, 'Bearer');
      assert.ok(t.expires_in > 0);
      s.admin = t.access_token;
    }, { critical: true });
    await runner.check('wrong secret, unknown client and unknown tenant: 401 invalid_credentials', async () => {
      const base = { grant_type: 'client_credentials', tenant_id: options.tenant, client_id: options.adminClientId };
      await api.error('POST', '/v1/auth/token', { body: { ...base, client_secret: `wrong-${run}` } }, { status: 401, code: 'invalid_credentials' });
      await api.error('POST', '/v1/auth/token', { body: { ...base, client_id: `nobody-${run}`, client_secret: 'x' } }, { status: 401, code: 'invalid_credentials' });
      await api.error('POST', '/v1/auth/token', { body: { ...base, tenant_id: `no-tenant-${run}`, client_secret: options.adminClientSecret } }, { status: 401, code: 'invalid_credentials' });
    });
    await runner.check('bad token requests: 400 naming the field, 415, invalid JSON', async () => {
      await api.error('POST', '/v1/auth/token', { body: { tenant_id: options.tenant, password: 'xxxxxxxx' } }, { status: 400, field: 'user_id' });
      await api.error('POST', '/v1/auth/token', { body: { grant_type: 'implicit', tenant_id: options.tenant } }, { status: 400, field: 'grant_type' });
      await api.error('POST', '/v1/auth/token', { raw: '{"grant_type":', headers: { 'content-type': 'application/json' } }, { status: 400, code: 'invalid_json' });
      await api.error('POST', '/v1/auth/token', { raw: 'user=alice', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, { status: 415, code: 'unsupported_media_type' });
    });
    await runner.check('no, malformed or forged token: 401 with WWW-Authenticate', async () => {
      const none = await api.error('GET', '/v1/conversations', {}, { status: 401, code: 'unauthorized' });
      assert.match(none.headers['www-authenticate'] || '', /^Bearer/);
      await api.error('GET', '/v1/conversations', { token: 'not-a-jwt' }, { status: 401, code: 'unauthorized' });
      const forged = s.admin.slice(0, -4) + (s.admin.endsWith('AAAA') ? 'BBBB' : 'AAAA');
      await api.error('GET', '/v1/conversations', { token: forged }, { status: 401, code: 'unauthorized' });
    });
  }

  // ------------------------------------------------------------ users
  if (runner.begin('users')) {
    for (const name of ['a', 'b', 'c']) {
      s.users[name] = {
        id: `${prefix}${name}`,
        password: `pw-${crypto.randomBytes(9).toString('base64url')}`,
        whatsapp: `1555${crypto.randomInt(1e9, 1e10)}`,
      };
    }
    const { a, b, c } = s.users;
    await runner.check('admin creates three users (201, identities echoed)', async () => {
      const ra = await api.call('POST', '/v1/users', {
        token: s.admin, expect: 201,
        body: { user_id: a.id, password: a.password, display_name: `A ${run}`, identities: [{ channel: 'whatsapp', address: a.whatsapp }] },
      });
      assert.equal(ra.json.user_id, a.id);
      assert.equal(ra.json.tenant_id, options.tenant);
      assert.equal(ra.json.display_name, `A ${run}`);
      assert.deepEqual(ra.json.identities, [{ channel: 'whatsapp', address: a.whatsapp }]);
      for (const u of [b, c]) {
        const r = await api.call('POST', '/v1/users', { token: s.admin, expect: 201, body: { user_id: u.id, password: u.password } });
        assert.equal(r.json.user_id, u.id);
        assert.ok(!r.json.display_name, 'display_name is null or "" when not given');
        assert.deepEqual(r.json.identities ?? [], []);
      }
    }, { critical: true });
    await runner.check('409 user_exists, 409 identity_taken (and nothing created)', async () => {
      await api.error('POST', '/v1/users', { token: s.admin, body: { user_id: a.id, password: 'another-password' } }, { status: 409, code: 'user_exists' });
      const d = `${prefix}d`;
      await api.error('POST', '/v1/users', {
        token: s.admin, body: { user_id: d, password: 'password-d', identities: [{ channel: 'whatsapp', address: a.whatsapp }] },
      }, { status: 409, code: 'identity_taken' });
      await api.error('GET', `/v1/users/${d}`, { token: s.admin }, { status: 404, code: 'not_found' });
    });
    await runner.check('invalid users: 400 naming user_id / password / identities', async () => {
      await api.error('POST', '/v1/users', { token: s.admin, body: { user_id: 'bad id!', password: 'password-x' } }, { status: 400, field: 'user_id' });
      await api.error('POST', '/v1/users', { token: s.admin, body: { user_id: `${prefix}x`.padEnd(65, 'x'), password: 'password-x' } }, { status: 400, field: 'user_id' });
      await api.error('POST', '/v1/users', { token: s.admin, body: { user_id: `${prefix}x`, password: 'short' } }, { status: 400, field: 'password' });
      await api.error('POST', '/v1/users', { token: s.admin, body: { user_id: `${prefix}x` } }, { status: 400, field: 'password' });
      await api.error('POST', '/v1/users', {
        token: s.admin, body: { user_id: `${prefix}x`, password: 'password-x', identities: [{ channel: 'no such!', address: '1' }] },
      }, { status: 400, fieldPrefix: 'identities' });
      await api.error('POST', '/v1/users', {
        token: s.admin, body: { user_id: `${prefix}x`, password: 'password-x', identities: [{ channel: 'all', address: '1' }] },
      }, { status: 400, fieldPrefix: 'identities' });
    });
    await runner.check('user tokens (password grant, with and without grant_type)', async () => {
      a.token = await userToken(a, { grantType: null });
      b.token = await userToken(b);
      c.token = await userToken(c);
    }, { critical: true });
    await runner.check('wrong password and wrong tenant: 401 invalid_credentials', async () => {
      await api.error('POST', '/v1/auth/token', { body: { tenant_id: options.tenant, user_id: a.id, password: `${a.password}x` } }, { status: 401, code: 'invalid_credentials' });
      await api.error('POST', '/v1/auth/token', { body: { tenant_id: `no-tenant-${run}`, user_id: a.id, password: a.password } }, { status: 401, code: 'invalid_credentials' });
      await api.error('POST', '/v1/auth/token', { body: { tenant_id: options.tenant, user_id: `${prefix}nobody`, password: 'password-x' } }, { status: 401, code: 'invalid_credentials' });
    });
    await runner.check('GET /v1/users pages in user_id order with after/limit', async () => {
      const r1 = await api.call('GET', `/v1/users?after=${enc(prefix)}&limit=2`, { token: s.admin, expect: 200 });
      assert.deepEqual(r1.json.users.map((u) => u.user_id), [a.id, b.id]);
      assert.equal(r1.json.next_after, b.id);
      const r2 = await api.call('GET', `/v1/users?after=${enc(r1.json.next_after)}&limit=2`, { token: s.admin, expect: 200 });
      assert.equal(r2.json.users[0]?.user_id, c.id);
      assert.ok(r2.json.users.every((u, i, all) => i === 0 || all[i - 1].user_id < u.user_id), 'ascending user_id');
      await api.error('GET', '/v1/users?limit=0', { token: s.admin }, { status: 400, field: 'limit' });
      await api.error('GET', '/v1/users?bogus=1', { token: s.admin }, { status: 400, field: 'bogus' });
    });
    await runner.check('user tokens may not create or list users (403)', async () => {
      await api.error('POST', '/v1/users', { token: a.token, body: { user_id: `${prefix}e`, password: 'password-e' } }, { status: 403 });
      await api.error('GET', '/v1/users', { token: a.token }, { status: 403 });
    });
    await runner.check('GET /v1/users/{id}: identities for admin and self only; 404 unknown', async () => {
      const byB = await api.call('GET', `/v1/users/${a.id}`, { token: b.token, expect: 200 });
      assert.equal(byB.json.user_id, a.id);
      assert.equal(byB.json.identities, undefined, 'another user must not see identities');
      const self = await api.call('GET', `/v1/users/${a.id}`, { token: a.token, expect: 200 });
      assert.deepEqual(self.json.identities, [{ channel: 'whatsapp', address: a.whatsapp }]);
      const admin = await api.call('GET', `/v1/users/${a.id}`, { token: s.admin, expect: 200 });
      assert.deepEqual(admin.json.identities, [{ channel: 'whatsapp', address: a.whatsapp }]);
      await api.error('GET', `/v1/users/${prefix}nobody`, { token: a.token }, { status: 404, code: 'not_found' });
    });
    await runner.check('PATCH /v1/users/{id}: self changes name and password; others 403', async () => {
      const r = await api.call('PATCH', `/v1/users/${a.id}`, { token: a.token, body: { display_name: `Alice ${run}` }, expect: 200 });
      assert.equal(r.json.display_name, `Alice ${run}`);
      assert.ok(r.json.updated_at >= r.json.created_at);
      await api.error('PATCH', `/v1/users/${a.id}`, { token: b.token, body: { display_name: 'hacked' } }, { status: 403 });
      await api.error('PATCH', `/v1/users/${a.id}`, { token: a.token, body: {} }, { status: 400 });
      await api.error('PATCH', `/v1/users/${a.id}`, { token: a.token, body: { password: 'short' } }, { status: 400, field: 'password' });
      const newPassword = `${a.password}-2`;
      await api.call('PATCH', `/v1/users/${a.id}`, { token: a.token, body: { password: newPassword }, expect: 200 });
      await api.error('POST', '/v1/auth/token', { body: { tenant_id: options.tenant, user_id: a.id, password: a.password } }, { status: 401, code: 'invalid_credentials' });
      a.password = newPassword;
      a.token = await userToken(a);
      const admin = await api.call('PATCH', `/v1/users/${b.id}`, { token: s.admin, body: { display_name: `Bob ${run}` }, expect: 200 });
      assert.equal(admin.json.display_name, `Bob ${run}`);
      await api.error('PATCH', `/v1/users/${prefix}nobody`, { token: s.admin, body: { display_name: 'x' } }, { status: 404 });
    });
    await runner.check('identities: PUT links, 409 identity_taken, 400 invalid channel name, DELETE unlinks', async () => {
      const tg = `tg-${run}`;
      const put = await api.call('PUT', `/v1/users/${b.id}/identities/telegram`, { token: b.token, body: { address: tg }, expect: 200 });
      assert.deepEqual(put.json.identities, [{ channel: 'telegram', address: tg }]);
      await api.error('PUT', `/v1/users/${c.id}/identities/whatsapp`, { token: c.token, body: { address: a.whatsapp } }, { status: 409, code: 'identity_taken' });
      await api.error('PUT', `/v1/users/${c.id}/identities/all`, { token: c.token, body: { address: '123' } }, { status: 400, field: 'channel' });
      await api.error('PUT', `/v1/users/${c.id}/identities/${enc('no such!')}`, { token: c.token, body: { address: '123' } }, { status: 400, field: 'channel' });
      await api.error('PUT', `/v1/users/${c.id}/identities/instagram`, { token: c.token, body: {} }, { status: 400, field: 'address' });
      await api.error('PUT', `/v1/users/${b.id}/identities/instagram`, { token: c.token, body: { address: `ig-${run}` } }, { status: 403 });
      await api.error('DELETE', `/v1/users/${b.id}/identities/telegram`, { token: c.token }, { status: 403 });
      await api.call('DELETE', `/v1/users/${b.id}/identities/telegram`, { token: b.token, expect: 204 });
      await api.call('DELETE', `/v1/users/${b.id}/identities/telegram`, { token: s.admin, expect: 204 });
      const after = await api.call('GET', `/v1/users/${b.id}`, { token: s.admin, expect: 200 });
      assert.deepEqual(after.json.identities, []);
      // the address is free again
      await api.call('PUT', `/v1/users/${c.id}/identities/telegram`, { token: s.admin, body: { address: tg }, expect: 200 });
    });
    await runner.check('identities may name any channel, also one the topology does not declare', async () => {
      const sms = `+1555${crypto.randomInt(1e9, 1e10)}`;
      const put = await api.call('PUT', `/v1/users/${c.id}/identities/sms`, { token: c.token, body: { address: sms }, expect: 200 });
      assert.ok(put.json.identities.some((x) => x.channel === 'sms' && x.address === sms), 'the sms identity is linked');
      await api.call('DELETE', `/v1/users/${c.id}/identities/sms`, { token: c.token, expect: 204 });
      const after = await api.call('GET', `/v1/users/${c.id}`, { token: c.token, expect: 200 });
      assert.ok(!after.json.identities.some((x) => x.channel === 'sms'), 'the sms identity is unlinked');
    });
  }

  // ------------------------------------------------------------ clients
  if (runner.begin('clients')) {
    await runner.check('clients: create (secret once), use, list without secret, delete (its tokens too)', async () => {
      const created = await api.call('POST', '/v1/clients', { token: s.admin, body: { name: `contract ${run}` }, expect: 201 });
      const client = created.json;
      assert.equal(client.name, `contract ${run}`);
      assert.equal(client.role, 'admin');
      const t = await adminToken(options.tenant, client.client_id, client.client_secret);
      assert.equal(t.role, 'admin');
      assert.equal(t.subject, client.client_id);
      const listed = await listAll('/v1/clients', 'clients', t.access_token);
      const mine = listed.find((x) => x.client_id === client.client_id);
      assert.ok(mine, 'the new client is listed');
      assert.equal(mine.client_secret, undefined, 'no secret in the list');
      assert.ok(listed.some((x) => x.client_id === options.adminClientId), 'the topology admin client is listed');
      await api.call('DELETE', `/v1/clients/${enc(client.client_id)}`, { token: s.admin, expect: 204 });
      // The tokens it was issued are revoked with it (at once on this frontend).
      await api.error('GET', '/v1/clients', { token: t.access_token }, { status: 401, code: 'unauthorized' });
      await api.error('POST', '/v1/auth/token', {
        body: { grant_type: 'client_credentials', tenant_id: options.tenant, client_id: client.client_id, client_secret: client.client_secret },
      }, { status: 401, code: 'invalid_credentials' });
      await api.error('DELETE', `/v1/clients/${enc(client.client_id)}`, { token: s.admin }, { status: 404 });
    });
    await runner.check('clients: 400 without name, 403 for users, 409 for a topology client', async () => {
      await api.error('POST', '/v1/clients', { token: s.admin, body: {} }, { status: 400, field: 'name' });
      await api.error('POST', '/v1/clients', { token: s.users.a.token, body: { name: 'x' } }, { status: 403 });
      await api.error('GET', '/v1/clients', { token: s.users.a.token }, { status: 403 });
      await api.error('DELETE', `/v1/clients/${enc(options.adminClientId)}`, { token: s.admin }, { status: 409, code: 'client_managed_by_topology' });
    });
  }

  // ------------------------------------------------------------ conversations
  if (runner.begin('conversations')) {
    const { a, b, c } = s.users;
    await runner.check('create a private conversation (201), again by either member (200, same)', async () => {
      const r = await api.call('POST', '/v1/conversations', { token: a.token, body: { type: 'private', members: [b.id] }, expect: 201 });
      assert.equal(r.json.type, 'private');
      sameSet(r.json.members, [a.id, b.id], 'members');
      assert.equal(r.json.created_by, a.id);
      assert.equal(r.json.tenant_id, options.tenant);
      assert.deepEqual(r.json.metadata, {});
      s.private = r.json.conversation_id;
      const again = await api.call('POST', '/v1/conversations', { token: a.token, body: { type: 'private', members: [a.id, b.id] }, expect: 200 });
      assert.equal(again.json.conversation_id, s.private);
      const byB = await api.call('POST', '/v1/conversations', { token: b.token, body: { type: 'private', members: [a.id] }, expect: 200 });
      assert.equal(byB.json.conversation_id, s.private);
    }, { critical: true });
    await runner.check('invalid conversations: 400 naming members / type', async () => {
      await api.error('POST', '/v1/conversations', { token: a.token, body: { type: 'private', members: [b.id, c.id] } }, { status: 400, field: 'members' });
      await api.error('POST', '/v1/conversations', { token: a.token, body: { type: 'private', members: [`${prefix}nobody`] } }, { status: 400, field: 'members' });
      await api.error('POST', '/v1/conversations', { token: a.token, body: { type: 'group', members: [b.id, `${prefix}nobody`] } }, { status: 400, field: 'members' });
      await api.error('POST', '/v1/conversations', { token: a.token, body: { type: 'channel', members: [b.id] } }, { status: 400, field: 'type' });
      await api.error('POST', '/v1/conversations', { token: a.token, body: { type: 'group' } }, { status: 400, field: 'members' });
      await api.error('POST', '/v1/conversations', { token: a.token, raw: 'type=group', headers: { 'content-type': 'text/plain' } }, { status: 415 });
    });
    await runner.check('create a group with name and metadata (201)', async () => {
      const r = await api.call('POST', '/v1/conversations', {
        token: a.token, body: { type: 'group', name: `group ${run}`, members: [b.id], metadata: { topic: 'tests', n: 1 } }, expect: 201,
      });
      assert.equal(r.json.type, 'group');
      assert.equal(r.json.name, `group ${run}`);
      sameSet(r.json.members, [a.id, b.id], 'members');
      assert.deepEqual(r.json.metadata, { topic: 'tests', n: 1 });
      assert.notEqual(r.json.conversation_id, s.private);
      s.group = r.json.conversation_id;
    }, { critical: true });
    await runner.check('a group with an Idempotency-Key: 201, then 200 with the same group on a retry', async () => {
      const key = `create-${run}`;
      const body = { type: 'group', name: 'keyed', members: [b.id] };
      const first = await api.call('POST', '/v1/conversations', { token: a.token, body, headers: { 'idempotency-key': key }, expect: 201 });
      assert.equal(first.headers['idempotent-replayed'], undefined, 'not a replay');
      const again = await api.call('POST', '/v1/conversations', { token: a.token, body: { ...body, name: 'ignored' }, headers: { 'idempotency-key': key }, expect: 200 });
      assert.equal(again.json.conversation_id, first.json.conversation_id);
      assert.equal(again.json.name, 'keyed');
      assert.equal(again.headers['idempotent-replayed'], 'true');
      // Another caller's same key, and another key, make other groups.
      const byB = await api.call('POST', '/v1/conversations', { token: b.token, body: { type: 'group', members: [a.id] }, headers: { 'idempotency-key': key }, expect: 201 });
      assert.notEqual(byB.json.conversation_id, first.json.conversation_id);
      const other = await api.call('POST', '/v1/conversations', { token: a.token, body, headers: { 'idempotency-key': `${key}-2` }, expect: 201 });
      assert.notEqual(other.json.conversation_id, first.json.conversation_id);
      await api.error('POST', '/v1/conversations', { token: a.token, body, headers: { 'idempotency-key': 'bad key!' } }, { status: 400, field: 'Idempotency-Key' });
    });
    await runner.check('add members (idempotent); 409 on a private conversation; 400 unknown user', async () => {
      const r = await api.call('POST', `/v1/conversations/${s.group}/members`, { token: b.token, body: { members: [c.id] }, expect: 200 });
      sameSet(r.json.members, [a.id, b.id, c.id], 'members');
      const again = await api.call('POST', `/v1/conversations/${s.group}/members`, { token: a.token, body: { members: [c.id] }, expect: 200 });
      sameSet(again.json.members, [a.id, b.id, c.id], 'members');
      await api.error('POST', `/v1/conversations/${s.private}/members`, { token: a.token, body: { members: [c.id] } }, { status: 409, code: 'private_conversation' });
      await api.error('POST', `/v1/conversations/${s.group}/members`, { token: a.token, body: { members: [`${prefix}nobody`] } }, { status: 400, field: 'members' });
      await api.error('POST', `/v1/conversations/${s.group}/members`, { token: a.token, body: {} }, { status: 400, field: 'members' });
    });
    await runner.check('PATCH retention_s: 200 by the group creator; 400 naming retention_s; others 400/404', async () => {
      const group = await api.call('POST', '/v1/conversations', { token: a.token, body: { type: 'group', members: [b.id] }, expect: 201 });
      const id = group.json.conversation_id;
      assert.equal(group.json.retention_s, null, 'the tenant\'s retention');
      assert.equal(group.json.first_seq, 1);
      const r = await api.call('PATCH', `/v1/conversations/${id}`, { token: a.token, body: { retention_s: 86400 }, expect: 200 });
      assert.equal(r.json.retention_s, 86400);
      assert.equal(r.json.first_seq, 1);
      assert.equal(r.json.last_seq, 0);
      await api.error('PATCH', `/v1/conversations/${id}`, { token: b.token, body: { retention_s: 60 } }, { status: 400, field: 'retention_s' });
      await api.error('PATCH', `/v1/conversations/${id}`, { token: c.token, body: { retention_s: 60 } }, { status: 404 });
      for (const bad of [0, -5, 1.5, 'soon', null])
        await api.error('PATCH', `/v1/conversations/${id}`, { token: a.token, body: { retention_s: bad } }, { status: 400, field: 'retention_s' });
      await api.error('PATCH', `/v1/conversations/${id}`, { token: a.token, body: {} }, { status: 400, field: 'retention_s' });
      const admin = await api.call('PATCH', `/v1/conversations/${id}`, { token: s.admin, body: { retention_s: 3600 }, expect: 200 });
      assert.equal(admin.json.retention_s, 3600);
    });
    await runner.check('GET a conversation: members 200, others 404', async () => {
      const r = await api.call('GET', `/v1/conversations/${s.group}`, { token: c.token, expect: 200 });
      assert.equal(r.json.conversation_id, s.group);
      assert.equal(r.json.last_seq, 0);
      assert.equal(r.json.last_message, null);
      assert.equal(r.json.unread_count, 0);
      await api.error('GET', `/v1/conversations/${s.private}`, { token: c.token }, { status: 404, code: 'not_found' });
      await api.error('GET', `/v1/conversations/no-such-${run}`, { token: a.token }, { status: 404, code: 'not_found' });
      const admin = await api.call('GET', `/v1/conversations/${s.private}`, { token: s.admin, expect: 200 });
      assert.equal(admin.json.conversation_id, s.private);
    });
    await runner.check('leave and remove: self 204, non-creator 403, creator 204, private 409', async () => {
      await api.error('DELETE', `/v1/conversations/${s.group}/members/${c.id}`, { token: b.token }, { status: 403 });
      await api.call('DELETE', `/v1/conversations/${s.group}/members/${c.id}`, { token: c.token, expect: 204 });
      await api.error('GET', `/v1/conversations/${s.group}`, { token: c.token }, { status: 404 });
      await api.call('POST', `/v1/conversations/${s.group}/members`, { token: a.token, body: { members: [c.id] }, expect: 200 });
      await api.call('DELETE', `/v1/conversations/${s.group}/members/${c.id}`, { token: a.token, expect: 204 });
      await api.error('DELETE', `/v1/conversations/${s.group}/members/${c.id}`, { token: a.token }, { status: 404 });
      const back = await api.call('POST', `/v1/conversations/${s.group}/members`, { token: s.admin, body: { members: [c.id] }, expect: 200 });
      sameSet(back.json.members, [a.id, b.id, c.id], 'members');
      await api.error('DELETE', `/v1/conversations/${s.private}/members/${b.id}`, { token: b.token }, { status: 409, code: 'private_conversation' });
    });
  }

  // ------------------------------------------------------------ presence
  if (runner.begin('presence')) {
    const { a, b } = s.users;
    const stranger = { id: `${prefix}p`, password: `pw-${crypto.randomBytes(9).toString('base64url')}` };
    await runner.check('GET /v1/users/{id}/presence: the user, admins and those sharing a conversation; 404 for anyone else', async () => {
      await api.call('POST', '/v1/users', { token: s.admin, body: { user_id: stranger.id, password: stranger.password }, expect: 201 });
      stranger.token = await userToken(stranger);
      for (const token of [a.token, b.token, s.admin]) {
        const r = await api.call('GET', `/v1/users/${a.id}/presence`, { token, expect: 200 });
        assert.equal(r.json.user_id, a.id);
        assert.ok(['online', 'offline'].includes(r.json.state));
        if (r.json.state === 'online') assert.equal(r.json.last_seen_at, null);
      }
      // No conversation in common: the same 404 as a user that does not exist.
      await api.error('GET', `/v1/users/${a.id}/presence`, { token: stranger.token }, { status: 404, code: 'not_found' });
      await api.error('GET', `/v1/users/${prefix}nobody/presence`, { token: a.token }, { status: 404, code: 'not_found' });
      await api.error('GET', `/v1/users/${enc('bad id!')}/presence`, { token: a.token }, { status: 400, field: 'user_id' });
      await api.error('GET', `/v1/users/${a.id}/presence`, {}, { status: 401 });
    });
    await runner.check('PATCH presence_hidden: offline without last_seen_at to others, validated like every field', async () => {
      await api.error('PATCH', `/v1/users/${a.id}`, { token: a.token, body: { presence_hidden: 'yes' } }, { status: 400, field: 'presence_hidden' });
      await api.error('PATCH', `/v1/users/${a.id}`, { token: b.token, body: { presence_hidden: true } }, { status: 403 });
      const hidden = await api.call('PATCH', `/v1/users/${a.id}`, { token: a.token, body: { presence_hidden: true }, expect: 200 });
      assert.equal(hidden.json.presence_hidden, true);
      const seen = await api.call('GET', `/v1/users/${a.id}/presence`, { token: b.token, expect: 200 });
      assert.deepEqual(seen.json, { user_id: a.id, state: 'offline', last_seen_at: null });
      const shown = await api.call('PATCH', `/v1/users/${a.id}`, { token: s.admin, body: { presence_hidden: false }, expect: 200 });
      assert.equal(shown.json.presence_hidden, false);
      const byOther = await api.call('GET', `/v1/users/${a.id}`, { token: b.token, expect: 200 });
      assert.equal(byOther.json.presence_hidden, undefined, 'another user must not see presence_hidden');
    });
  }

  // ------------------------------------------------------------ messages
  if (runner.begin('messages')) {
    const { a, b, c } = s.users;
    const m1 = `m-${run}-1`;
    await runner.check('send with a message_id: 202 accepted, seq 1', async () => {
      const r = await sendText(a, s.private, 'hello 1', { message_id: m1 });
      assert.equal(r.message_id, m1);
      assert.equal(r.seq, 1);
      s.sent.push({ seq: 1, message_id: m1, sender: a.id, text: 'hello 1' });
    }, { critical: true });
    await runner.check('the same message again: the original 202 with Idempotent-Replayed', async () => {
      const r = await send(a.token, { message_id: m1, conversation_id: s.private, payload: { type: 'text', text: 'hello 1' } });
      assert.equal(r.json.seq, 1);
      assert.equal(r.json.message_id, m1);
      assert.equal(r.headers['idempotent-replayed'], 'true');
    });
    await runner.check('the same message_id with other content in the conversation: 409', async () => {
      await api.error('POST', '/v1/messages', { token: a.token, body: { message_id: m1, conversation_id: s.private, payload: { type: 'text', text: 'changed' } } },
        { status: 409, code: 'message_id_conflict', field: 'message_id' });
    });
    await runner.check('GET /v1/messages/{id} right after the 202', async () => {
      const id = `m-${run}-read-own`;
      const other = await api.call('POST', '/v1/conversations', { token: a.token, body: { type: 'group', members: [b.id] }, expect: 201 });
      await send(a.token, { message_id: id, conversation_id: other.json.conversation_id, payload: { type: 'text', text: 'read me now' } });
      const got = await api.call('GET', `/v1/messages/${id}`, { token: b.token, expect: 200 });
      assert.equal(got.json.conversation_id, other.json.conversation_id);
      assert.equal(got.json.payload.text, 'read me now');
    });
    await runner.check('send without a message_id: one is made, seq 2', async () => {
      const r = await send(a.token, { conversation_id: s.private, payload: { type: 'text', text: 'hello 2' } });
      assert.ok(r.json.message_id, 'a message_id is returned');
      assert.notEqual(r.json.message_id, m1);
      assert.equal(r.json.seq, 2);
      assert.equal(r.headers['idempotent-replayed'], undefined, 'not a replay');
      s.sent.push({ seq: 2, message_id: r.json.message_id, sender: a.id, text: 'hello 2' });
    });
    await runner.check('bad bodies: 400 naming the field', async () => {
      const P = s.private;
      const cases = [
        [{ payload: { type: 'text', text: 'x' } }, 'conversation_id'],
        [{ conversation_id: P }, 'payload'],
        [{ conversation_id: P, payload: 'hi' }, 'payload'],
        [{ conversation_id: P, payload: { text: 'x' } }, 'payload.type'],
        [{ conversation_id: P, payload: { type: 'video', text: 'x' } }, 'payload.type'],
        [{ conversation_id: P, payload: { type: 'text' } }, 'payload.text'],
        [{ conversation_id: P, payload: { type: 'text', text: '' } }, 'payload.text'],
        [{ conversation_id: P, payload: { type: 'text', text: 5 } }, 'payload.text'],
        [{ conversation_id: P, message_id: 'bad id!', payload: { type: 'text', text: 'x' } }, 'message_id'],
        [{ conversation_id: 'bad id!', payload: { type: 'text', text: 'x' } }, 'conversation_id'],
        [{ conversation_id: P, metadata: 'x', payload: { type: 'text', text: 'x' } }, 'metadata'],
      ];
      for (const [body, field] of cases) {
        await api.error('POST', '/v1/messages', { token: a.token, body }, { status: 400, field });
      }
      await api.error('POST', '/v1/messages', { token: a.token, body: { conversation_id: P, to: [c.id], payload: { type: 'text', text: 'x' } } }, { status: 400, fieldPrefix: 'to' });
      await api.error('POST', '/v1/messages', { token: a.token, body: { conversation_id: P, channels: ['pigeon'], payload: { type: 'text', text: 'x' } } }, { status: 400, fieldPrefix: 'channels' });
      // A valid name, but not a channel of the topology (identities may still name it).
      await api.error('POST', '/v1/messages', { token: a.token, body: { conversation_id: P, channels: ['sms'], payload: { type: 'text', text: 'x' } } }, { status: 400, field: 'channels[0]' });
      await api.error('POST', '/v1/messages', { token: a.token, body: { conversation_id: P, channels: ['internal', 'sms'], payload: { type: 'text', text: 'x' } } }, { status: 400, field: 'channels[1]' });
      await api.error('POST', '/v1/messages', { token: a.token, body: { conversation_id: P, channels: ['all', 'whatsapp'], payload: { type: 'text', text: 'x' } } }, { status: 400, fieldPrefix: 'channels' });
      await api.error('POST', '/v1/messages', { token: a.token, raw: '{"conversation_id":', headers: { 'content-type': 'application/json' } }, { status: 400, code: 'invalid_json' });
      await api.error('POST', '/v1/messages', { token: a.token, raw: '[1,2]', headers: { 'content-type': 'application/json' } }, { status: 400, code: 'invalid_json' });
    });
    await runner.check('413 for text over text_bytes_max and for a body over body_bytes_max', async () => {
      await api.error('POST', '/v1/messages', { token: a.token, body: { conversation_id: s.private, payload: { type: 'text', text: 'x'.repeat(options.textBytesMax + 1) } } },
        { status: 413, field: 'payload.text' });
      const big = JSON.stringify({ conversation_id: s.private, payload: { type: 'text', text: 'x' }, metadata: { pad: 'y'.repeat(options.bodyBytesMax + 1024) } });
      await api.error('POST', '/v1/messages', { token: a.token, raw: big, headers: { 'content-type': 'application/json' } }, { status: 413 });
    });
    await runner.check('415 for a body that is not JSON', async () => {
      await api.error('POST', '/v1/messages', { token: a.token, raw: JSON.stringify({ conversation_id: s.private, payload: { type: 'text', text: 'x' } }), headers: { 'content-type': 'text/plain' } },
        { status: 415, code: 'unsupported_media_type' });
    });
    await runner.check('401 without a token; 404 for a non-member or unknown conversation', async () => {
      const r = await api.error('POST', '/v1/messages', { body: { conversation_id: s.private, payload: { type: 'text', text: 'x' } } }, { status: 401, code: 'unauthorized' });
      assert.match(r.headers['www-authenticate'] || '', /^Bearer/);
      await api.error('POST', '/v1/messages', { token: c.token, body: { conversation_id: s.private, payload: { type: 'text', text: 'x' } } }, { status: 404, code: 'not_found' });
      await api.error('POST', '/v1/messages', { token: a.token, body: { conversation_id: `no-such-${run}`, payload: { type: 'text', text: 'x' } } }, { status: 404, code: 'not_found' });
    });
    await runner.check('admins send on behalf of a member (sender_id); users may not', async () => {
      // Internal only: which outside channels exist depends on the server's topology.
      const r = await send(s.admin, { conversation_id: s.private, sender_id: a.id, payload: { type: 'text', text: 'hello 3' }, channels: ['internal'], metadata: { via: 'admin' } });
      assert.equal(r.json.seq, 3);
      s.sent.push({ seq: 3, message_id: r.json.message_id, sender: a.id, text: 'hello 3', channels: ['internal'], metadata: { via: 'admin' } });
      await api.error('POST', '/v1/messages', { token: s.admin, body: { conversation_id: s.private, payload: { type: 'text', text: 'x' } } }, { status: 400, field: 'sender_id' });
      await api.error('POST', '/v1/messages', { token: s.admin, body: { conversation_id: s.private, sender_id: c.id, payload: { type: 'text', text: 'x' } } }, { status: 400, field: 'sender_id' });
      await api.error('POST', '/v1/messages', { token: b.token, body: { conversation_id: s.private, sender_id: a.id, payload: { type: 'text', text: 'x' } } }, { status: 403 });
    });
    await runner.check('more messages: seq is gap-free and increasing', async () => {
      for (let i = 4; i <= 7; i += 1) {
        const r = await sendText(a, s.private, `hello ${i}`, { message_id: `m-${run}-${i}` });
        assert.equal(r.seq, i);
        s.sent.push({ seq: i, message_id: r.message_id, sender: a.id, text: `hello ${i}` });
      }
      const r = await sendText(b, s.private, 'reply from b', { message_id: `m-${run}-8` });
      assert.equal(r.seq, 8);
      s.sent.push({ seq: 8, message_id: r.message_id, sender: b.id, text: 'reply from b' });
    });
    await runner.check('a group message narrowed with to', async () => {
      const r = await sendText(a, s.group, 'only for b', { message_id: `g-${run}-1`, to: [b.id] });
      assert.equal(r.seq, 1);
      s.groupMessage = r.message_id;
    });
    await runner.check('a file message without a well-formed file_id: 400 naming payload.file_id', async () => {
      const files = await api.call('POST', '/v1/conversations', { token: a.token, body: { type: 'group', members: [b.id] }, expect: 201 });
      const conversation = files.json.conversation_id;
      await api.error('POST', '/v1/messages', { token: a.token, body: { conversation_id: conversation, payload: { type: 'file' } } }, { status: 400, field: 'payload.file_id' });
      await api.error('POST', '/v1/messages', { token: a.token, body: { conversation_id: conversation, payload: { type: 'file', file_id: 'bad id!' } } }, { status: 400, field: 'payload.file_id' });
    });
    // One replicated round per send: deduplication is per conversation. Last in this section, well
    // after m1 was sent, so that m1 is the one indexed first; the locator keeps the first indexed.
    await runner.check('the same message_id in another conversation: stored there; the id keeps naming the first', async () => {
      const other = await api.call('POST', '/v1/conversations', { token: a.token, body: { type: 'group', members: [b.id] }, expect: 201 });
      const elsewhere = await send(a.token, { message_id: m1, conversation_id: other.json.conversation_id, payload: { type: 'text', text: 'hello 1' } });
      assert.equal(elsewhere.json.conversation_id, other.json.conversation_id);
      assert.equal(elsewhere.json.seq, 1);
      assert.equal(elsewhere.headers['idempotent-replayed'], undefined, 'not a replay');
      const history = await api.call('GET', `/v1/conversations/${other.json.conversation_id}/messages`, { token: b.token, expect: 200 });
      assert.deepEqual(history.json.messages.map((m) => m.message_id), [m1]);
      const got = await api.call('GET', `/v1/messages/${m1}`, { token: a.token, expect: 200 });
      assert.equal(got.json.conversation_id, s.private);
    });
  }

  // ------------------------------------------------------------ states
  if (runner.begin('states')) {
    const { a, b, c } = s.users;
    const [m1, m2] = s.sent;
    await runner.check('GET /v1/messages/{id}: the message and SENT for its recipient', async () => {
      const r = await api.call('GET', `/v1/messages/${m1.message_id}`, { token: a.token, expect: 200 });
      const m = r.json;
      assert.equal(m.message_id, m1.message_id);
      assert.equal(m.conversation_id, s.private);
      assert.equal(m.seq, 1);
      assert.equal(m.sender_id, a.id);
      assert.deepEqual(m.to, [b.id]);
      assert.deepEqual(m.payload, { type: 'text', text: 'hello 1' });
      assert.deepEqual(m.metadata, {});
      assert.ok(m.stored_at >= m.received_at, 'stored_at >= received_at');
      assert.equal(m.states.length, 1);
      checkHistoryState(m.states[0], b.id, ['SENT']);
      const m3 = await api.call('GET', `/v1/messages/${s.sent[2].message_id}`, { token: s.admin, expect: 200 });
      assert.deepEqual(m3.json.channels, ['internal']);
      assert.deepEqual(m3.json.metadata, { via: 'admin' });
      assert.equal(m3.json.sender_id, a.id);
    });
    await runner.check('GET /v1/messages/{id}: 404 for a non-member and an unknown id', async () => {
      await api.error('GET', `/v1/messages/${m1.message_id}`, { token: c.token }, { status: 404, code: 'not_found' });
      await api.error('GET', `/v1/messages/no-such-${run}`, { token: a.token }, { status: 404, code: 'not_found' });
    });
    await runner.check('GET /v1/messages/{id}/deliveries: none for an internal-only message', async () => {
      const m3 = s.sent[2];
      for (const tok of [a.token, b.token, s.admin]) {
        const r = await api.call('GET', `/v1/messages/${m3.message_id}/deliveries`, { token: tok, expect: 200 });
        assert.deepEqual(r.json, { message_id: m3.message_id, conversation_id: s.private, deliveries: [] });
      }
    });
    await runner.check('GET /v1/messages/{id}/deliveries: a recipient sees only its own', async () => {
      // m1 went to every channel: what it holds depends on the topology's channels and on
      // b's identities, but never anyone else's deliveries.
      const bySender = await api.call('GET', `/v1/messages/${m1.message_id}/deliveries`, { token: a.token, expect: 200 });
      assert.equal(bySender.json.message_id, m1.message_id);
      assert.equal(bySender.json.conversation_id, s.private);
      assert.ok(bySender.json.deliveries.every((d) => d.recipient_id === b.id), 'only recipients of the message');
      const byB = await api.call('GET', `/v1/messages/${m1.message_id}/deliveries`, { token: b.token, expect: 200 });
      assert.ok(byB.json.deliveries.every((d) => d.recipient_id === b.id), 'only its own');
      const byC = await api.call('GET', `/v1/messages/${s.groupMessage}/deliveries`, { token: c.token, expect: 200 });
      assert.deepEqual(byC.json.deliveries, [], 'a member that is not a recipient sees none');
    });
    await runner.check('GET /v1/messages/{id}/deliveries: 404 for a non-member and an unknown id, 401 without a token', async () => {
      await api.error('GET', `/v1/messages/${m1.message_id}/deliveries`, { token: c.token }, { status: 404, code: 'not_found' });
      await api.error('GET', `/v1/messages/no-such-${run}/deliveries`, { token: a.token }, { status: 404, code: 'not_found' });
      await api.error('GET', `/v1/messages/no-such-${run}/deliveries`, { token: s.admin }, { status: 404, code: 'not_found' });
      const r = await api.error('GET', `/v1/messages/${m1.message_id}/deliveries`, {}, { status: 401, code: 'unauthorized' });
      assert.match(r.headers['www-authenticate'] || '', /^Bearer/);
    });
    await runner.check('delivered then read: SENT → DELIVERED → READ, never back', async () => {
      const d = await api.call('POST', `/v1/messages/${m1.message_id}/delivered`, { token: b.token, expect: 200 });
      checkHistoryState(d.json, b.id, ['SENT', 'DELIVERED']);
      const again = await api.call('POST', `/v1/messages/${m1.message_id}/delivered`, { token: b.token, expect: 200 });
      checkHistoryState(again.json, b.id, ['SENT', 'DELIVERED']);
      const r = await api.call('POST', `/v1/messages/${m1.message_id}/read`, { token: b.token, expect: 200 });
      checkHistoryState(r.json, b.id, ['SENT', 'DELIVERED', 'READ']);
      const late = await api.call('POST', `/v1/messages/${m1.message_id}/delivered`, { token: b.token, body: {}, expect: 200 });
      checkHistoryState(late.json, b.id, ['SENT', 'DELIVERED', 'READ']);
      assert.deepEqual(late.json.history, r.json.history, 'a late DELIVERED changes nothing');
      const seen = await api.call('GET', `/v1/messages/${m1.message_id}`, { token: a.token, expect: 200 });
      checkHistoryState(seen.json.states[0], b.id, ['SENT', 'DELIVERED', 'READ']);
      assert.deepEqual(seen.json.states[0].history, r.json.history);
    });
    await runner.check('read straight from SENT records DELIVERED and READ at the same time', async () => {
      const r = await api.call('POST', `/v1/messages/${m2.message_id}/read`, { token: b.token, expect: 200 });
      checkHistoryState(r.json, b.id, ['SENT', 'DELIVERED', 'READ']);
      assert.equal(r.json.history[1].at, r.json.history[2].at);
    });
    await runner.check('only recipients mark states: sender and non-recipients 403, admins 403, others 404', async () => {
      await api.error('POST', `/v1/messages/${m1.message_id}/read`, { token: a.token }, { status: 403, code: 'not_a_recipient' });
      await api.error('POST', `/v1/messages/${m1.message_id}/read`, { token: s.admin }, { status: 403, code: 'user_token_required' });
      await api.error('POST', `/v1/messages/${m1.message_id}/delivered`, { token: c.token }, { status: 404 });
      await api.error('POST', `/v1/messages/${s.groupMessage}/read`, { token: c.token }, { status: 403, code: 'not_a_recipient' });
      await api.error('POST', `/v1/messages/no-such-${run}/read`, { token: b.token }, { status: 404 });
    });
    await runner.check('states visible: sender every recipient, a recipient only its own', async () => {
      const bySender = await api.call('GET', `/v1/messages/${s.groupMessage}`, { token: a.token, expect: 200 });
      assert.deepEqual(bySender.json.to, [b.id]);
      assert.deepEqual(bySender.json.states.map((x) => x.recipient_id), [b.id]);
      const byC = await api.call('GET', `/v1/messages/${s.groupMessage}`, { token: c.token, expect: 200 });
      assert.deepEqual(byC.json.states, [], 'a member that is not a recipient sees no states');
      const byB = await api.call('GET', `/v1/messages/${m1.message_id}`, { token: b.token, expect: 200 });
      assert.deepEqual(byB.json.states.map((x) => x.recipient_id), [b.id]);
    });
  }

  // ------------------------------------------------------------ horizons
  if (runner.begin('horizons')) {
    const { a, b, c } = s.users;
    const P = s.private;
    const last = s.sent.length;  // 8
    await runner.check('unread_count counts messages to the caller after its read horizon', async () => {
      const rb = await api.call('GET', `/v1/conversations/${P}`, { token: b.token, expect: 200 });
      assert.equal(rb.json.last_seq, last);
      assert.equal(rb.json.last_message?.seq, last);
      assert.equal(rb.json.last_message?.sender_id, b.id);
      assert.equal(rb.json.read_up_to_seq, 0);
      assert.equal(rb.json.unread_count, s.sent.filter((m) => m.sender !== b.id).length);
      const ra = await api.call('GET', `/v1/conversations/${P}`, { token: a.token, expect: 200 });
      assert.equal(ra.json.unread_count, 1, 'a has one message from b; its own never count');
    });
    await runner.check('read horizon: moves forward, ignores lower values, clamps to last_seq', async () => {
      const r3 = await api.call('POST', `/v1/conversations/${P}/read`, { token: b.token, body: { up_to_seq: 3 }, expect: 200 });
      assert.equal(r3.json.conversation_id, P);
      assert.equal(r3.json.user_id, b.id);
      assert.equal(r3.json.read_up_to_seq, 3);
      assert.ok(r3.json.delivered_up_to_seq >= 3, 'READ implies DELIVERED');
      assert.equal(r3.json.last_seq, last);
      const view = await api.call('GET', `/v1/conversations/${P}`, { token: b.token, expect: 200 });
      assert.equal(view.json.unread_count, s.sent.filter((m) => m.seq > 3 && m.sender !== b.id).length);
      const lower = await api.call('POST', `/v1/conversations/${P}/read`, { token: b.token, body: { up_to_seq: 1 }, expect: 200 });
      assert.equal(lower.json.read_up_to_seq, 3);
      const beyond = await api.call('POST', `/v1/conversations/${P}/read`, { token: b.token, body: { up_to_seq: 1000 }, expect: 200 });
      assert.equal(beyond.json.read_up_to_seq, last);
      assert.equal(beyond.json.delivered_up_to_seq, last);
      const done = await api.call('GET', `/v1/conversations/${P}`, { token: b.token, expect: 200 });
      assert.equal(done.json.unread_count, 0);
      assert.equal(done.json.read_up_to_seq, last);
    });
    await runner.check('a read horizon makes the messages below it READ', async () => {
      const r = await api.call('GET', `/v1/messages/${s.sent[4].message_id}`, { token: a.token, expect: 200 });
      checkHistoryState(r.json.states[0], b.id, ['SENT', 'DELIVERED', 'READ']);
    });
    await runner.check('delivered horizon: never below the read horizon; read unchanged', async () => {
      const r = await api.call('POST', `/v1/conversations/${P}/delivered`, { token: b.token, body: { up_to_seq: 2 }, expect: 200 });
      assert.equal(r.json.delivered_up_to_seq, last);
      assert.equal(r.json.read_up_to_seq, last);
      const g = await api.call('POST', `/v1/conversations/${s.group}/delivered`, { token: b.token, body: { up_to_seq: 1 }, expect: 200 });
      assert.equal(g.json.delivered_up_to_seq, 1);
      assert.equal(g.json.read_up_to_seq, 0);
      const m = await api.call('GET', `/v1/messages/${s.groupMessage}`, { token: a.token, expect: 200 });
      checkHistoryState(m.json.states[0], b.id, ['SENT', 'DELIVERED']);
    });
    await runner.check('horizons: 400 naming up_to_seq, 403 for admins, 404 for non-members', async () => {
      await api.error('POST', `/v1/conversations/${P}/read`, { token: b.token, body: {} }, { status: 400, field: 'up_to_seq' });
      await api.error('POST', `/v1/conversations/${P}/read`, { token: b.token, body: { up_to_seq: 'x' } }, { status: 400, field: 'up_to_seq' });
      await api.error('POST', `/v1/conversations/${P}/read`, { token: b.token, body: { up_to_seq: -1 } }, { status: 400, field: 'up_to_seq' });
      await api.error('POST', `/v1/conversations/${P}/read`, { token: s.admin, body: { up_to_seq: 1 } }, { status: 403, code: 'user_token_required' });
      await api.error('POST', `/v1/conversations/${P}/delivered`, { token: c.token, body: { up_to_seq: 1 } }, { status: 404 });
    });
  }

  // ------------------------------------------------------------ conversation list
  if (runner.begin('conversation-list')) {
    const { a, b, c } = s.users;
    await runner.check('GET /v1/conversations: the caller\'s conversations with unread counts', async () => {
      const all = await listAll('/v1/conversations', 'conversations', b.token, { limit: 100 });
      const ids_ = all.map((x) => x.conversation_id);
      assert.ok(ids_.includes(s.private) && ids_.includes(s.group), 'both conversations are listed');
      assert.deepEqual(ids_, [...ids_].sort(), 'ascending conversation_id');
      const p = all.find((x) => x.conversation_id === s.private);
      assert.equal(p.unread_count, 0);
      assert.equal(p.last_seq, s.sent.length);
      assert.equal(p.last_message.message_id, s.sent[s.sent.length - 1].message_id);
      const g = all.find((x) => x.conversation_id === s.group);
      assert.equal(g.unread_count, 1);
      assert.equal(g.last_seq, 1);
      const cList = await listAll('/v1/conversations', 'conversations', c.token, { limit: 100 });
      assert.ok(!cList.some((x) => x.conversation_id === s.private), 'c does not see the private conversation');
      assert.equal(cList.find((x) => x.conversation_id === s.group)?.unread_count, 0, 'g1 was not addressed to c');
    });
    await runner.check('paging with limit=1 and next_after', async () => {
      const first = await api.call('GET', '/v1/conversations?limit=1', { token: a.token, expect: 200 });
      assert.equal(first.json.conversations.length, 1);
      const id = first.json.conversations[0].conversation_id;
      assert.equal(first.json.next_after, id);
      const second = await api.call('GET', `/v1/conversations?limit=1&after=${enc(id)}`, { token: a.token, expect: 200 });
      assert.equal(second.json.conversations.length, 1);
      assert.ok(second.json.conversations[0].conversation_id > id);
    });
    await runner.check('admins list a user\'s conversations with user_id; users may not', async () => {
      const byAdmin = await listAll(`/v1/conversations?user_id=${enc(b.id)}`, 'conversations', s.admin, { limit: 100 });
      const mine = await listAll('/v1/conversations', 'conversations', b.token, { limit: 100 });
      assert.deepEqual(byAdmin.map((x) => x.conversation_id), mine.map((x) => x.conversation_id));
      await api.error('GET', '/v1/conversations', { token: s.admin }, { status: 400, field: 'user_id' });
      await api.error('GET', `/v1/conversations?user_id=${enc(a.id)}`, { token: b.token }, { status: 403 });
    });
  }

  // ------------------------------------------------------------ history
  if (runner.begin('history')) {
    const { a, c } = s.users;
    const P = s.private;
    const last = s.sent.length;
    const url = (q) => `/v1/conversations/${P}/messages${q ? `?${q}` : ''}`;
    const checkPage = (page, seqs, direction) => {
      assert.equal(page.conversation_id, P);
      assert.equal(page.direction, direction);
      assert.deepEqual(page.messages.map((m) => m.seq), seqs, 'seqs of the page');
      for (const m of page.messages) {
        const sent = s.sent[m.seq - 1];
        assert.equal(m.message_id, sent.message_id);
        assert.equal(m.sender_id, sent.sender);
        assert.equal(m.payload.text, sent.text);
        assert.equal(m.conversation_id, P);
      }
      assert.equal(page.last_seq, last);
      assert.equal(page.has_more, !page.end_of_history);
      assert.equal(page.next_cursor === null, page.end_of_history, 'next_cursor is null exactly at the end');
    };
    await runner.check('forward pages with cursors until end_of_history', async () => {
      let r = await api.call('GET', url('from_seq=1&limit=3'), { token: a.token, expect: 200 });
      const seen = [];
      for (let pages = 0; ; pages += 1) {
        assert.ok(pages < 10, 'too many pages');
        const expected = [];
        const start = seen.length + 1;
        for (let q = start; q < start + 3 && q <= last; q += 1) expected.push(q);
        checkPage(r.json, expected, 'forward');
        seen.push(...expected);
        assert.equal(r.json.next_from_seq, seen[seen.length - 1] + 1);
        if (r.json.end_of_history) break;
        r = await api.call('GET', url(`cursor=${enc(r.json.next_cursor)}&limit=3`), { token: a.token, expect: 200 });
      }
      assert.deepEqual(seen, s.sent.map((m) => m.seq));
    });
    await runner.check('backward pages with cursors until end_of_history', async () => {
      let r = await api.call('GET', url(`before_seq=${last + 1}&limit=3`), { token: a.token, expect: 200 });
      const seen = [];
      for (let pages = 0; ; pages += 1) {
        assert.ok(pages < 10, 'too many pages');
        const high = last - seen.length;
        const expected = [];
        for (let q = Math.max(1, high - 2); q <= high; q += 1) expected.push(q);
        checkPage(r.json, expected, 'backward');
        seen.unshift(...expected);
        assert.equal(r.json.next_from_seq, high + 1);
        if (r.json.end_of_history) break;
        r = await api.call('GET', url(`cursor=${enc(r.json.next_cursor)}&limit=3`), { token: a.token, expect: 200 });
      }
      assert.deepEqual(seen, s.sent.map((m) => m.seq));
      const newest = await api.call('GET', url('before_seq=9007199254740991&limit=2'), { token: a.token, expect: 200 });
      checkPage(newest.json, [last - 1, last], 'backward');
    });
    await runner.check('default page, since, a page past the end', async () => {
      const all = await api.call('GET', url(''), { token: a.token, expect: 200 });
      checkPage(all.json, s.sent.map((m) => m.seq), 'forward');
      assert.equal(all.json.end_of_history, true);
      const messages = all.json.messages;
      const since = messages[3].stored_at;
      const r = await api.call('GET', url(`since=${since}`), { token: a.token, expect: 200 });
      const first = r.json.messages[0];
      assert.ok(first.stored_at >= since, 'the first message is stored at or after since');
      assert.ok(messages.filter((m) => m.seq < first.seq).every((m) => m.stored_at < since), 'and none before it is');
      assert.equal(r.json.messages[r.json.messages.length - 1].seq, last);
      const future = await api.call('GET', url(`since=${Date.now() + 3600000}`), { token: a.token, expect: 200 });
      assert.deepEqual(future.json.messages, []);
      assert.equal(future.json.end_of_history, true);
      const past = await api.call('GET', url(`from_seq=${last + 10}`), { token: a.token, expect: 200 });
      assert.deepEqual(past.json.messages, []);
      assert.equal(past.json.end_of_history, true);
      assert.equal(past.json.next_cursor, null);
      assert.equal(past.json.next_from_seq, last + 10);
    });
    await runner.check('history: 400 naming the parameter', async () => {
      await api.error('GET', url('limit=0'), { token: a.token }, { status: 400, field: 'limit' });
      await api.error('GET', url('limit=501'), { token: a.token }, { status: 400, field: 'limit' });
      await api.error('GET', url('from_seq=0'), { token: a.token }, { status: 400, field: 'from_seq' });
      await api.error('GET', url('from_seq=x'), { token: a.token }, { status: 400, field: 'from_seq' });
      await api.error('GET', url('before_seq=0'), { token: a.token }, { status: 400, field: 'before_seq' });
      await api.error('GET', url('since=-5'), { token: a.token }, { status: 400, field: 'since' });
      await api.error('GET', url('from_seq=1&before_seq=3'), { token: a.token }, { status: 400, code: 'conflicting_parameters' });
      await api.error('GET', url('cursor=%21%21not-a-cursor%21%21'), { token: a.token }, { status: 400, field: 'cursor' });
      await api.error('GET', url('colour=blue'), { token: a.token }, { status: 400, code: 'unknown_parameter', field: 'colour' });
    });
    await runner.check('history: 404 for non-members and unknown conversations, 200 for admins', async () => {
      await api.error('GET', url(''), { token: c.token }, { status: 404 });
      await api.error('GET', `/v1/conversations/no-such-${run}/messages`, { token: a.token }, { status: 404 });
      const r = await api.call('GET', url('limit=1'), { token: s.admin, expect: 200 });
      assert.equal(r.json.messages[0].seq, 1);
    });
    await runner.check('a group member sees every message, also those not addressed to it', async () => {
      const r = await api.call('GET', `/v1/conversations/${s.group}/messages`, { token: c.token, expect: 200 });
      assert.deepEqual(r.json.messages.map((m) => m.message_id), [s.groupMessage]);
      assert.deepEqual(r.json.messages[0].to, [s.users.b.id]);
    });
  }

  // ------------------------------------------------------------ webhooks
  if (runner.begin('webhooks')) {
    const { a, b } = s.users;
    let receiver;
    let hook;
    await runner.check('register a webhook (201, generated whsec_ secret)', async () => {
      receiver = await startHookServer();
      hooks.push(receiver);
      const r = await api.call('POST', '/v1/webhooks', {
        token: s.admin, expect: 201, body: { url: `${receiver.url}/hook/${run}`, events: ['message.read'] },
      });
      assert.equal(r.json.url, `${receiver.url}/hook/${run}`);
      assert.deepEqual(r.json.events, ['message.read']);
      assert.match(r.json.secret, /^whsec_[A-Za-z0-9+/]+={0,2}$/);
      assert.ok(Buffer.from(r.json.secret.slice(6), 'base64').length >= 24, 'the secret has at least 24 bytes');
      hook = r.json;
    }, { critical: true });
    await runner.check('webhooks: a given secret, list and get without secrets, delete', async () => {
      const secret = `whsec_${crypto.randomBytes(32).toString('base64')}`;
      const r = await api.call('POST', '/v1/webhooks', {
        token: s.admin, expect: 201, body: { url: `${receiver.url}/other/${run}`, events: ['message.sent', 'message.delivered'], secret },
      });
      assert.equal(r.json.secret, secret);
      const listed = await listAll('/v1/webhooks', 'webhooks', s.admin);
      for (const id of [hook.webhook_id, r.json.webhook_id]) {
        const w = listed.find((x) => x.webhook_id === id);
        assert.ok(w, `webhook ${id} is listed`);
        assert.equal(w.secret, undefined, 'no secret in the list');
      }
      const one = await api.call('GET', `/v1/webhooks/${enc(hook.webhook_id)}`, { token: s.admin, expect: 200 });
      assert.equal(one.json.url, hook.url);
      assert.deepEqual(one.json.events, ['message.read']);
      assert.equal(one.json.secret, undefined);
      await api.call('DELETE', `/v1/webhooks/${enc(r.json.webhook_id)}`, { token: s.admin, expect: 204 });
      await api.error('GET', `/v1/webhooks/${enc(r.json.webhook_id)}`, { token: s.admin }, { status: 404 });
      await api.error('DELETE', `/v1/webhooks/${enc(r.json.webhook_id)}`, { token: s.admin }, { status: 404 });
    });
    await runner.check('webhooks: 400 naming url / events / secret, 403 for users', async () => {
      const url = `${receiver.url}/x`;
      await api.error('POST', '/v1/webhooks', { token: s.admin, body: { url: 'ftp://example.com/x', events: ['message.read'] } }, { status: 400, field: 'url' });
      await api.error('POST', '/v1/webhooks', { token: s.admin, body: { events: ['message.read'] } }, { status: 400, field: 'url' });
      await api.error('POST', '/v1/webhooks', { token: s.admin, body: { url, events: [] } }, { status: 400, fieldPrefix: 'events' });
      await api.error('POST', '/v1/webhooks', { token: s.admin, body: { url, events: ['message.exploded'] } }, { status: 400, fieldPrefix: 'events' });
      await api.error('POST', '/v1/webhooks', { token: s.admin, body: { url, events: ['message.read'], secret: 'not-a-secret' } }, { status: 400, field: 'secret' });
      // 16..64 key bytes: 12 and 65 are refused, 16 is accepted.
      for (const bytes of [12, 65]) {
        await api.error('POST', '/v1/webhooks', { token: s.admin, body: { url, events: ['message.read'], secret: `whsec_${crypto.randomBytes(bytes).toString('base64')}` } }, { status: 400, field: 'secret' });
      }
      const short = await api.call('POST', '/v1/webhooks', { token: s.admin, body: { url, events: ['message.read'], secret: `whsec_${crypto.randomBytes(16).toString('base64')}` }, expect: 201 });
      await api.call('DELETE', `/v1/webhooks/${enc(short.json.webhook_id)}`, { token: s.admin, expect: 204 });
      await api.error('POST', '/v1/webhooks', { token: a.token, body: { url, events: ['message.read'] } }, { status: 403 });
      await api.error('GET', '/v1/webhooks', { token: a.token }, { status: 403 });
      await api.error('GET', `/v1/webhooks/no-such-${run}`, { token: s.admin }, { status: 404 });
    });
    let event;
    await runner.check('a read event is POSTed with a valid Standard Webhooks signature', async () => {
      const sent = await sendText(a, s.private, 'webhook me', { message_id: `w-${run}-1` });
      await api.call('POST', `/v1/messages/${sent.message_id}/read`, { token: b.token, expect: 200 });
      const got = await receiver.waitFor((e) => {
        try {
          const body = JSON.parse(e.body);
          return e.url === `/hook/${run}` && body.type === 'message.read' && body.data?.message_id === sent.message_id;
        } catch {
          return false;
        }
      }, options.waitMs);
      assert.ok(got, `no message.read POST for ${sent.message_id} within ${options.waitMs} ms (received ${receiver.received.length} requests)`);
      assert.equal(got.method, 'POST');
      assert.match(got.headers['content-type'] || '', /^application\/json/);
      const problem = verifySignature(hook.secret, got.headers, got.body);
      assert.equal(problem, null, `signature: ${problem}`);
      const body = JSON.parse(got.body);
      const schemaProblem = spec.validateSchema('WebhookEvent', body);
      assert.equal(schemaProblem, null, `the event body: ${schemaProblem}`);
      assert.equal(body.id, got.headers['webhook-id'], 'body.id is the webhook-id header');
      const ts = Number(got.headers['webhook-timestamp']);
      assert.ok(Math.abs(ts - Date.now() / 1000) < 300, `webhook-timestamp ${ts} is within 5 minutes of now`);
      const expected = { message_id: sent.message_id, conversation_id: s.private, seq: sent.seq, sender_id: a.id, recipient_id: b.id, state: 'READ' };
      for (const [key, value] of Object.entries(expected)) assert.equal(body.data[key], value, `data.${key}`);
      assert.ok(Math.abs(body.data.at - Date.now()) < 300000, 'data.at is recent');
      assert.ok(!receiver.received.some((e) => e.url === `/other/${run}`), 'the deleted webhook is never called');
      event = body;
    });
    await runner.check('GET /v1/webhooks/{id}/deliveries lists it, delivered with the status code', async () => {
      assert.ok(event, 'needs the event of the previous check');
      const found = await waitFor(async () => {
        const all = await listAll(`/v1/webhooks/${enc(hook.webhook_id)}/deliveries`, 'deliveries', s.admin);
        return all.find((d) => d.event_id === event.id && d.state === 'delivered');
      }, options.waitMs, 500);
      assert.ok(found, `no delivered delivery for event ${event.id}`);
      assert.equal(found.event_type, 'message.read');
      assert.ok(found.attempts.length >= 1);
      const lastAttempt = found.attempts[found.attempts.length - 1];
      assert.equal(lastAttempt.status_code, 204);
      assert.equal(lastAttempt.error, null);
      assert.ok(lastAttempt.duration_ms >= 0);
      const page = await api.call('GET', `/v1/webhooks/${enc(hook.webhook_id)}/deliveries?limit=1`, { token: s.admin, expect: 200 });
      assert.equal(page.json.webhook_id, hook.webhook_id);
      await api.error('GET', `/v1/webhooks/no-such-${run}/deliveries`, { token: s.admin }, { status: 404 });
    });
    await runner.check('a 503 is retried with the same webhook-id, and both attempts are recorded', async () => {
      const flaky = await api.call('POST', '/v1/webhooks', {
        token: s.admin, expect: 201, body: { url: `${receiver.url}/flaky/${run}`, events: ['message.read'] },
      });
      const sent = await sendText(a, s.private, 'retry me', { message_id: `w-${run}-2` });
      await api.call('POST', `/v1/messages/${sent.message_id}/read`, { token: b.token, expect: 200 });
      const posts = () => receiver.received.filter((e) => e.url === `/flaky/${run}` && JSON.parse(e.body).data?.message_id === sent.message_id);
      const both = await waitFor(async () => (posts().length >= 2 ? posts() : null), options.waitMs, 200);
      assert.ok(both, `expected a failed and a retried POST, got ${posts().length}`);
      assert.equal(both[0].headers['webhook-id'], both[1].headers['webhook-id'], 'the event id is the same across retries');
      const record = await waitFor(async () => {
        const all = await listAll(`/v1/webhooks/${enc(flaky.json.webhook_id)}/deliveries`, 'deliveries', s.admin);
        return all.find((d) => d.event_id === both[0].headers['webhook-id'] && d.state === 'delivered');
      }, options.waitMs, 500);
      assert.ok(record, 'the delivery is recorded as delivered');
      assert.deepEqual(record.attempts.map((x) => x.status_code), [503, 204]);
      await api.call('DELETE', `/v1/webhooks/${enc(flaky.json.webhook_id)}`, { token: s.admin, expect: 204 });
    });
    await runner.check('delete the webhook', async () => {
      await api.call('DELETE', `/v1/webhooks/${enc(hook.webhook_id)}`, { token: s.admin, expect: 204 });
    });
  }

  // ------------------------------------------------------------ rate limit
  if (runner.begin('rate-limit')) {
    const { c } = s.users;
    await runner.check(`a burst of at most ${options.rateRequestsMax} requests on one token gets 429 with Retry-After`, async () => {
      const t = await userToken(c);
      let sent = 0;
      let limited = null;
      let ok = 0;
      const worker = async () => {
        while (!limited && sent < options.rateRequestsMax) {
          sent += 1;
          const r = await api.call('GET', `/v1/users/${c.id}`, { token: t, retry: false });
          if (r.status === 429) limited ??= r;
          else if (r.status === 200) ok += 1;
          else assert.fail(`unexpected ${r.status}: ${r.text.slice(0, 200)}`);
        }
      };
      await Promise.all(Array.from({ length: 16 }, worker));
      assert.ok(limited, `no 429 after ${sent} requests (${ok} answered 200)`);
      console.log(`      (429 after ${ok} requests answered 200)`);
      assert.equal(limited.json?.error?.code, 'rate_limited');
      const retryAfter = Number(limited.headers['retry-after']);
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After ${limited.headers['retry-after']}`);
      await sleep(Math.min(retryAfter, 10) * 1000);
      await api.call('GET', `/v1/users/${c.id}`, { token: t, retry: false, expect: 200 });
      const other = await userToken(s.users.b);
      await api.call('GET', `/v1/users/${c.id}`, { token: other, retry: false, expect: 200 });
    });
  }

  // ------------------------------------------------------------ files
  if (runner.begin('files')) {
    const tus = (tok, extra = {}) => ({ token: tok, headers: { 'Tus-Resumable': '1.0.0', ...extra } });
    const meta = (pairs) => Object.entries(pairs).map(([k, v]) => `${k} ${Buffer.from(v).toString('base64')}`).join(',');
    const content = 'chat4all file contract '.repeat(1000);
    const digest = crypto.createHash('sha256').update(content).digest('hex');
    let location;
    await runner.check('OPTIONS /v1/files tells the tus version, extensions and limits', async () => {
      const r = await api.call('OPTIONS', '/v1/files', { expect: 204 });
      assert.equal(r.headers['tus-version'], '1.0.0');
      assert.match(r.headers['tus-extension'], /creation-with-upload/);
      assert.equal(r.headers['tus-checksum-algorithm'], 'sha256');
      assert.ok(Number(r.headers['tus-max-size']) > 0);
    });
    await runner.check('POST /v1/files: 201 with Location, file_id and upload_url', async () => {
      const r = await api.call('POST', '/v1/files', tus(s.users.a.token, {
        'Upload-Length': String(content.length),
        'Upload-Metadata': meta({ filename: 'contract.txt', filetype: 'text/plain', sha256: digest }),
      }));
      assert.equal(r.status, 201, r.text);
      location = r.headers.location;
      assert.equal(location, `/v1/files/${r.json.file_id}`);
      assert.equal(r.json.upload_url, location);
      assert.equal(r.headers['upload-offset'], '0');
      assert.equal(r.json.state, 'uploading');
    });
    await runner.check('PATCH in two pieces, HEAD gives the offset, a stale offset is 409', async () => {
      const half = Math.floor(content.length / 2);
      const first = await api.call('PATCH', location, { ...tus(s.users.a.token, { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0' }), raw: content.slice(0, half), expect: 204 });
      assert.equal(first.headers['upload-offset'], String(half));
      const head = await api.call('HEAD', location, { ...tus(s.users.a.token), expect: 200 });
      assert.equal(head.headers['upload-offset'], String(half));
      assert.equal(head.headers['upload-length'], String(content.length));
      await api.error('PATCH', location, { ...tus(s.users.a.token, { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0' }), raw: 'x' }, { status: 409, code: 'offset_mismatch', field: 'Upload-Offset' });
      await api.error('PATCH', location, { ...tus(s.users.a.token, { 'Content-Type': 'text/plain', 'Upload-Offset': String(half) }), raw: 'x' }, { status: 415, field: 'Content-Type' });
      const rest = await api.call('PATCH', location, { ...tus(s.users.a.token, { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(half) }), raw: content.slice(half), expect: 204 });
      assert.equal(rest.headers['upload-offset'], String(content.length));
    });
    await runner.check('GET the file and its content: ETag, Range 206, If-None-Match 304', async () => {
      const file = await api.call('GET', location, { token: s.users.a.token, expect: 200 });
      assert.equal(file.json.state, 'complete');
      assert.equal(file.json.sha256, digest);
      assert.equal(file.json.download_path, `${location}/content`);
      const whole = await api.call('GET', `${location}/content`, { token: s.users.a.token, expect: 200 });
      assert.equal(whole.text, content);
      assert.equal(whole.headers.etag, `"${digest}"`);
      assert.match(whole.headers['content-disposition'], /filename="contract.txt"/);
      const part = await api.call('GET', `${location}/content`, { token: s.users.a.token, headers: { Range: 'bytes=5-14' }, expect: 206 });
      assert.equal(part.text, content.slice(5, 15));
      assert.equal(part.headers['content-range'], `bytes 5-14/${content.length}`);
      await api.call('GET', `${location}/content`, { token: s.users.a.token, headers: { 'If-None-Match': `"${digest}"` }, expect: 304 });
      await api.error('GET', `${location}/content`, { token: s.users.a.token, headers: { Range: `bytes=${content.length}-` } }, { status: 416, field: 'Range' });
    });
    await runner.check('files of others are 404; no token 401; no Tus-Resumable 412', async () => {
      await api.error('GET', location, { token: s.users.b.token }, { status: 404 });
      await api.error('GET', `${location}/content`, { token: s.users.b.token }, { status: 404 });
      await api.error('DELETE', location, { ...tus(s.users.b.token) }, { status: 404 });
      await api.error('GET', location, {}, { status: 401 });
      await api.error('POST', '/v1/files', { token: s.users.a.token, headers: { 'Upload-Length': '1' } }, { status: 412, field: 'Tus-Resumable' });
    });
    await runner.check('refusals: 413 over the size maximum, 400 past the length, 460 bad checksum', async () => {
      await api.error('POST', '/v1/files', tus(s.users.a.token, { 'Upload-Length': String(2 ** 53) }), { status: 413, code: 'file_too_large', field: 'Upload-Length' });
      const created = await api.call('POST', '/v1/files', { ...tus(s.users.a.token, { 'Upload-Length': '4' }), expect: 201 });
      const at = created.headers.location;
      await api.error('PATCH', at, { ...tus(s.users.a.token, { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0' }), raw: '12345' }, { status: 400, code: 'past_upload_length' });
      const wrong = Buffer.alloc(32).toString('base64');
      await api.error('PATCH', at, { ...tus(s.users.a.token, { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0', 'Upload-Checksum': `sha256 ${wrong}` }), raw: '1234' }, { status: 460, code: 'checksum_mismatch', field: 'Upload-Checksum' });
      const head = await api.call('HEAD', at, { ...tus(s.users.a.token), expect: 200 });
      assert.equal(head.headers['upload-offset'], '0');
      await api.call('DELETE', at, { ...tus(s.users.a.token), expect: 204 });
      const gone = await api.call('HEAD', at, { ...tus(s.users.a.token), retry: false });
      assert.equal(gone.status, 404);
    });
    await runner.check('a file message: only a complete file of the sender; members then read it', async () => {
      const { a, b } = s.users;
      const conversation = (await api.call('POST', '/v1/conversations', { token: a.token, body: { type: 'group', members: [b.id] }, expect: 201 })).json.conversation_id;
      const fileId = location.split('/').pop();
      await api.error('POST', '/v1/messages', { token: a.token, body: { conversation_id: conversation, payload: { type: 'file', file_id: `f-${run}` } } }, { status: 400, code: 'invalid_field', field: 'payload.file_id' });
      await api.error('POST', '/v1/messages', { token: b.token, body: { conversation_id: conversation, payload: { type: 'file', file_id: fileId } } }, { status: 400, field: 'payload.file_id' });
      const r = await send(a.token, { conversation_id: conversation, channels: ['internal'], payload: { type: 'file', file_id: fileId } });
      const m = await api.call('GET', `/v1/messages/${r.json.message_id}`, { token: b.token, expect: 200 });
      assert.deepEqual(m.json.payload, { type: 'file', file_id: fileId, name: 'contract.txt', size: content.length, media_type: 'text/plain', sha256: digest, download_path: `${location}/content` });
      const read = await api.call('GET', `${location}/content`, { token: b.token, expect: 200 });
      assert.equal(read.text, content);
    });
    await runner.check('the same content again completes at once (dedup)', async () => {
      const r = await api.call('POST', '/v1/files', { ...tus(s.users.a.token, { 'Upload-Length': String(content.length), 'Upload-Metadata': meta({ sha256: digest }) }), expect: 201 });
      assert.equal(r.headers['upload-offset'], String(content.length));
      assert.equal(r.json.state, 'complete');
    });
  }

  // ------------------------------------------------------------ tenants
  // ------------------------------------------------------------ erasure
  if (runner.begin('erasure')) {
    await runner.check('POST /v1/users/{id}/erase: 202 job, idempotent, tombstones, no login; users 403', async () => {
      const gone = { id: `${prefix}erased`, password: `pw-${crypto.randomBytes(9).toString('base64url')}` };
      await api.call('POST', '/v1/users', { token: s.admin, expect: 201, body: { user_id: gone.id, password: gone.password } });
      gone.token = await userToken(gone);
      const { a } = s.users;
      const conv = await api.call('POST', '/v1/conversations', { token: gone.token, body: { type: 'group', members: [a.id] }, expect: 201 });
      const id = conv.json.conversation_id;
      const theirs = await sendText(gone, id, 'to be erased', { metadata: { note: 'private' } });
      const mine = await sendText(a, id, 'stays');
      await api.error('POST', `/v1/users/${gone.id}/erase`, { token: a.token }, { status: 403 });
      const first = await api.call('POST', `/v1/users/${gone.id}/erase`, { token: s.admin, expect: 202 });
      assert.equal(first.json.user_id, gone.id);
      assert.equal(first.json.conversations_total, 1);
      assert.equal(first.headers.location, `/v1/users/${gone.id}/erase`);
      const again = await api.call('POST', `/v1/users/${gone.id}/erase`, { token: s.admin, expect: 202 });
      assert.equal(again.json.created_at, first.json.created_at, 'the same job');
      let job = again.json;
      for (let i = 0; i < 100 && job.state !== 'done'; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        job = (await api.call('GET', first.json.url, { token: s.admin, expect: 200 })).json;
      }
      assert.equal(job.state, 'done');
      assert.equal(job.conversations_done, 1);
      assert.equal(job.messages_erased, 1);
      const history = await api.call('GET', `/v1/conversations/${id}/messages`, { token: a.token, expect: 200 });
      const [tombstone, kept] = history.json.messages;
      assert.equal(tombstone.message_id, theirs.message_id);
      assert.equal(tombstone.erased, true);
      assert.equal(tombstone.payload, undefined);
      assert.equal(tombstone.metadata, undefined);
      assert.equal(kept.message_id, mine.message_id);
      assert.equal(kept.payload.text, 'stays');
      assert.equal(kept.erased, undefined);
      await api.error('POST', '/v1/auth/token', { body: { tenant_id: options.tenant, user_id: gone.id, password: gone.password } }, { status: 401 });
      await api.error('GET', '/v1/conversations', { token: gone.token }, { status: 401, code: 'unauthorized' });
      await api.error('GET', `/v1/users/${gone.id}`, { token: s.admin }, { status: 404 });
      await api.error('POST', `/v1/users/${prefix}never-was/erase`, { token: s.admin }, { status: 404 });
      await api.error('GET', `/v1/users/${prefix}never-was/erase`, { token: s.admin }, { status: 404 });
    });
  }

  if (runner.begin('tenants')) {
    if (!options.otherTenant) {
      console.log('      (no --other-tenant given: the cross-tenant checks are not run)');
    } else {
      await runner.check('another tenant sees nothing of this one (404)', async () => {
        const other = await adminToken(options.otherTenant, options.otherAdminClientId, options.otherAdminClientSecret);
        assert.equal(other.tenant_id, options.otherTenant);
        const t = other.access_token;
        const { a } = s.users;
        await api.error('GET', `/v1/users/${a.id}`, { token: t }, { status: 404 });
        await api.error('GET', `/v1/conversations/${s.private}`, { token: t }, { status: 404 });
        await api.error('GET', `/v1/conversations/${s.private}/messages`, { token: t }, { status: 404 });
        await api.error('GET', `/v1/messages/${s.sent[0].message_id}`, { token: t }, { status: 404 });
        await api.error('GET', `/v1/messages/${s.sent[0].message_id}/deliveries`, { token: t }, { status: 404 });
        await api.error('POST', '/v1/messages', { token: t, body: { conversation_id: s.private, sender_id: a.id, payload: { type: 'text', text: 'x' } } }, { status: 404 });
        await api.error('POST', `/v1/conversations/${s.group}/members`, { token: t, body: { members: [a.id] } }, { status: 404 });
        await api.error('POST', '/v1/auth/token', { body: { tenant_id: options.otherTenant, user_id: a.id, password: a.password } }, { status: 401, code: 'invalid_credentials' });
        const users = await listAll('/v1/users', 'users', t);
        assert.ok(!users.some((u) => u.user_id.startsWith(prefix)), 'no user of this run is listed in the other tenant');
      });
    }
  }
}

let exitCode = 1;
try {
  console.log(`contract test against ${options.baseUrl}, tenant ${options.tenant}, run ${run}`);
  await main();
  exitCode = runner.summary();
  console.log(`(${api.count} HTTP requests, every response checked against ${options.spec})`);
} catch (error) {
  console.error(`contract test stopped: ${error.stack || error}`);
  runner.summary();
  exitCode = 1;
} finally {
  for (const receiver of hooks) await receiver.close();
  api.close();
}
process.exit(exitCode);

#!/usr/bin/env node
// Test of the real-time stream, GET /v1/stream (WebSocket), with the npm `ws`
// client: live delivery to every device of a user, resume after a disconnect
// (exactly the missed messages, in order, once), DELIVERED on push, state
// frames to the sender, presence and typing frames, the slow-client cut-off
// (close 1008) and refusal of bad tokens. Every server frame is checked against StreamServerFrame in
// schema/openapi.yaml, every HTTP response against its operation.
//
//   node tests/api/stream.mjs --base-url http://127.0.0.1:8080 --tenant dev \
//     --admin-client-id dev-admin --admin-client-secret chat4all-dev
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { Api, parseArgs, request, waitFor } from './lib/api.mjs';
import { Runner } from './lib/runner.mjs';
import { loadSpec } from './lib/spec.mjs';

const USAGE = `usage: node stream.mjs --base-url http://127.0.0.1:PORT --tenant TENANT
         --admin-client-id ID --admin-client-secret SECRET
       [--queue-bytes-max 4194304] [--slow-messages-max 600] [--slow-text-bytes 60000]
       [--timeout-ms 10000] [--wait-ms 20000] [--skip section,...] [--verbose]
sections: setup auth live resume presence slow-client`;

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
const prefix = `st${run}-`;
const wsBase = options.baseUrl.replace(/^http/, 'ws');
// A live frame must arrive within this. Generous: it only costs time when
// something is wrong, and a loaded 2-core CI machine is slow.
const FRAME_WAIT_MS = 15000;
// The server marks what it wrote DELIVERED every 50 ms, one replicated command at
// a time; this is ample for those marks to be stored on a loaded machine.
const MARKS_SETTLE_MS = 2000;
const sockets = new Set();   // every client opened, closed at the end

// One WebSocket device. Keeps every server frame (parsed JSON), checks each
// against the contract, and exposes waits bounded in time.
class Device {
  constructor(name, ws) {
    this.name = name;
    this.ws = ws;
    this.frames = [];
    this.waiters = new Set();
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        sockets.delete(this);
        resolve(this.closeInfo);
        this.wake();
      });
    });
    ws.on('error', (error) => runner.log(`${name}: socket error ${error.message}`));
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        runner.violation(`${name}: a binary frame (frames are JSON text)`);
        return;
      }
      let frame;
      try {
        frame = JSON.parse(data.toString('utf8'));
      } catch {
        runner.violation(`${name}: a frame that is not JSON: ${data.toString('utf8').slice(0, 120)}`);
        return;
      }
      const problem = spec.validateSchema('StreamServerFrame', frame);
      if (problem) runner.violation(`${name}: frame ${JSON.stringify(frame).slice(0, 200)}: ${problem}`);
      runner.log(`${name} <- ${JSON.stringify(frame).slice(0, 160)}`);
      this.frames.push(frame);
      this.wake();
    });
    sockets.add(this);
  }

  // Connects; resolves the Device once upgraded. Rejects with
  // {status, body} when the server refuses the upgrade.
  static open(name, token, { via = 'header' } = {}) {
    const url = via === 'query' && token ? `${wsBase}/v1/stream?access_token=${encodeURIComponent(token)}` : `${wsBase}/v1/stream`;
    const headers = via === 'header' && token ? { authorization: `Bearer ${token}` } : {};
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers, handshakeTimeout: options.timeoutMs, perMessageDeflate: false });
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error(`${name}: no upgrade within ${options.timeoutMs} ms`));
      }, options.timeoutMs + 1000);
      ws.once('upgrade', (res) => {
        for (const problem of spec.checkResponse('GET', '/v1/stream', res.statusCode, res.headers, '')) runner.violation(problem);
      });
      ws.once('unexpected-response', (req, res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          const body = Buffer.concat(chunks).toString('utf8');
          for (const problem of spec.checkResponse('GET', '/v1/stream', res.statusCode, res.headers, body)) runner.violation(problem);
          req.destroy();
          const error = new Error(`${name}: upgrade refused with ${res.statusCode}: ${body.slice(0, 200)}`);
          error.status = res.statusCode;
          error.body = body;
          reject(error);
        });
      });
      ws.once('open', () => {
        clearTimeout(timer);
        resolve(new Device(name, ws));
      });
      ws.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  send(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  wake() {
    for (const waiter of [...this.waiters]) waiter();
  }

  // The first frame matching `match`, or an AssertionError after `ms`.
  waitFor(what, match, ms = FRAME_WAIT_MS) {
    return new Promise((resolve, reject) => {
      const look = () => {
        const found = this.frames.find(match);
        if (found) {
          finish();
          resolve(found);
        } else if (this.closeInfo) {
          finish();
          reject(new assert.AssertionError({ message: `${this.name}: closed (${this.closeInfo.code} ${this.closeInfo.reason}) while waiting for ${what}` }));
        }
      };
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(look);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new assert.AssertionError({ message: `${this.name}: no ${what} within ${ms} ms (frames: ${this.frames.map((f) => f.type).join(',') || 'none'})` }));
      }, ms);
      this.waiters.add(look);
      look();
    });
  }

  // Sends resume and waits for ready.
  async resume(cursors = {}) {
    this.send({ type: 'resume', cursors });
    return this.waitFor('ready', (f) => f.type === 'ready');
  }

  messages(conversationId) {
    return this.frames.filter((f) => f.type === 'message' && f.message.conversation_id === conversationId).map((f) => f.message);
  }

  lastSeq(conversationId) {
    const seqs = this.messages(conversationId).map((m) => m.seq);
    return seqs.length ? Math.max(...seqs) : 0;
  }

  async close() {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000, 'test done');
    const timeout = sleep(2000).then(() => null);
    if (!(await Promise.race([this.closed, timeout]))) this.ws.terminate();
  }
}

const s = { users: {}, admin: null, conversation: null, slowConversation: null };

async function userToken(user) {
  const r = await api.call('POST', '/v1/auth/token', {
    body: { grant_type: 'password', tenant_id: options.tenant, user_id: user.id, password: user.password }, expect: 200,
  });
  return r.json.access_token;
}

async function sendText(user, conversationId, text) {
  const r = await api.call('POST', '/v1/messages', {
    token: user.token, body: { conversation_id: conversationId, payload: { type: 'text', text } }, expect: 202,
  });
  return r.json;
}

async function stateOf(messageId, recipientId, token) {
  const r = await api.call('GET', `/v1/messages/${encodeURIComponent(messageId)}`, { token, expect: 200 });
  return r.json.states.find((x) => x.recipient_id === recipientId)?.state;
}

// Asserts that a device got exactly these seqs of a conversation, in order, once.
function assertExactly(device, conversationId, seqs, what) {
  const got = device.messages(conversationId).map((m) => m.seq);
  assert.deepEqual(got, seqs, `${device.name}: ${what}`);
}

async function main() {
  // ------------------------------------------------------------ setup
  if (runner.begin('setup')) {
    await runner.check('admin token, three users, their tokens, two private conversations', async () => {
      const t = await api.call('POST', '/v1/auth/token', {
        body: { grant_type: 'client_credentials', tenant_id: options.tenant, client_id: options.adminClientId, client_secret: options.adminClientSecret }, expect: 200,
      });
      s.admin = t.json.access_token;
      for (const name of ['a', 'b', 'c']) {
        const user = { id: `${prefix}${name}`, password: `pw-${crypto.randomBytes(9).toString('base64url')}` };
        await api.call('POST', '/v1/users', { token: s.admin, body: { user_id: user.id, password: user.password }, expect: 201 });
        user.token = await userToken(user);
        s.users[name] = user;
      }
      const { a, b, c } = s.users;
      const ab = await api.call('POST', '/v1/conversations', { token: a.token, body: { type: 'private', members: [b.id] }, expect: 201 });
      s.conversation = ab.json.conversation_id;
      const ac = await api.call('POST', '/v1/conversations', { token: a.token, body: { type: 'private', members: [c.id] }, expect: 201 });
      s.slowConversation = ac.json.conversation_id;
    }, { critical: true });
  }

  // ------------------------------------------------------------ auth
  if (runner.begin('auth')) {
    const refused = async (what, token, via, status) => {
      let device;
      try {
        device = await Device.open(what, token, { via });
      } catch (error) {
        assert.equal(error.status, status, `${what}: ${error.message}`);
        return;
      }
      await device.close();
      assert.fail(`${what}: the upgrade was accepted`);
    };
    await runner.check('a bad, forged or missing token is refused with 401 before the upgrade', async () => {
      await refused('no token', null, 'header', 401);
      await refused('garbage token', 'not-a-token', 'header', 401);
      const t = s.users.a.token;
      await refused('forged token', t.slice(0, -4) + (t.endsWith('AAAA') ? 'BBBB' : 'AAAA'), 'header', 401);
      await refused('garbage token in the query', 'not-a-token', 'query', 401);
    });
    await runner.check('an admin token is refused with 403', async () => {
      await refused('admin token', s.admin, 'header', 403);
    });
    await runner.check('a plain GET (no upgrade) gets 426', async () => {
      const r = await request(options.baseUrl, 'GET', '/v1/stream', { headers: { authorization: `Bearer ${s.users.a.token}` }, timeoutMs: options.timeoutMs });
      for (const problem of spec.checkResponse('GET', '/v1/stream', r.status, r.headers, r.text)) runner.violation(problem);
      assert.equal(r.status, 426, r.text.slice(0, 200));
    });
  }

  // ------------------------------------------------------------ live
  let b1;
  let b2;
  let a1;
  if (runner.begin('live')) {
    const { a, b } = s.users;
    const P = s.conversation;
    await runner.check('devices connect (header and ?access_token=), resume, get ready', async () => {
      b1 = await Device.open('b1', b.token);
      b2 = await Device.open('b2', b.token, { via: 'query' });
      a1 = await Device.open('a1', a.token);
      for (const device of [b1, b2, a1]) {
        const ready = await device.resume({});
        const entry = ready.conversations.find((x) => x.conversation_id === P);
        assert.ok(entry, `${device.name}: ready lists the conversation`);
        assert.equal(entry.last_seq, 0);
        assert.equal(entry.cursor, 0);
        assert.equal(ready.conversations_max, 2000, `${device.name}: ready announces the bound`);
      }
      assert.equal(b1.frames[0].user_id, b.id);
      assert.equal(a1.frames[0].user_id, a.id);
    }, { critical: true });
    let first;
    await runner.check('both devices of the recipient, and the sender\'s device, get a new message live', async () => {
      const started = Date.now();
      first = await sendText(a, P, 'live 1');
      for (const device of [b1, b2, a1]) {
        const frame = await device.waitFor(`message ${first.message_id}`, (f) => f.type === 'message' && f.message.message_id === first.message_id);
        assert.equal(frame.message.seq, first.seq);
        assert.equal(frame.message.sender_id, a.id);
        assert.deepEqual(frame.message.payload, { type: 'text', text: 'live 1' });
      }
      console.log(`      (all three devices had it ${Date.now() - started} ms after the POST was sent)`);
    });
    await runner.check('a message pushed to a device becomes DELIVERED for its user', async () => {
      assert.ok(first, 'needs the message of the previous check');
      const state = await waitFor(async () => {
        const st = await stateOf(first.message_id, b.id, a.token);
        return st === 'DELIVERED' ? st : null;
      }, FRAME_WAIT_MS, 200);
      assert.equal(state, 'DELIVERED', `state of ${first.message_id} for ${b.id}`);
      const view = await api.call('GET', `/v1/conversations/${P}`, { token: b.token, expect: 200 });
      assert.equal(view.json.delivered_up_to_seq, first.seq, 'the push moved the delivered horizon');
    });
    await runner.check('the sender gets state frames: DELIVERED, then READ', async () => {
      assert.ok(first, 'needs the message of the previous check');
      const delivered = await a1.waitFor('state DELIVERED', (f) => f.type === 'state' && f.message_id === first.message_id && f.state === 'DELIVERED');
      assert.equal(delivered.recipient_id, b.id);
      assert.equal(delivered.conversation_id, P);
      assert.equal(delivered.seq, first.seq);
      await api.call('POST', `/v1/messages/${first.message_id}/read`, { token: b.token, expect: 200 });
      const read = await a1.waitFor('state READ', (f) => f.type === 'state' && f.message_id === first.message_id && f.state === 'READ');
      assert.equal(read.recipient_id, b.id);
      assert.ok(read.at >= delivered.at);
      assert.ok(!b1.frames.some((f) => f.type === 'state'), 'the recipient gets no state frames for messages it did not send');
    });
    await runner.check('ping is answered with pong; a bad frame gets an error frame and the connection stays', async () => {
      b1.send({ type: 'ping', id: `p-${run}` });
      await b1.waitFor('pong', (f) => f.type === 'pong' && f.id === `p-${run}`);
      b1.send({ type: 'dance' });
      const error = await b1.waitFor('error frame', (f) => f.type === 'error');
      assert.ok(error.error.code && error.error.message);
      b1.ws.send('not json');
      await waitFor(() => b1.frames.filter((f) => f.type === 'error').length >= 2, FRAME_WAIT_MS, 50);
      assert.equal(b1.frames.filter((f) => f.type === 'error').length, 2, 'an error frame for text that is not JSON');
      b1.send({ type: 'ping', id: `q-${run}` });
      await b1.waitFor('pong after the errors', (f) => f.type === 'pong' && f.id === `q-${run}`);
    });
  }

  // ------------------------------------------------------------ resume
  if (runner.begin('resume')) {
    const { a, b } = s.users;
    const P = s.conversation;
    await runner.check('a device that was away resumes with its cursor: exactly the missed messages, in order, once', async () => {
      assert.ok(b1 && b2, 'needs the devices of the live section');
      const cursor = b2.lastSeq(P);
      assert.ok(cursor >= 1, 'b2 saw the first message');
      await b2.close();
      const missed = [];
      for (let i = 1; i <= 3; i += 1) missed.push((await sendText(a, P, `while away ${i}`)).seq);
      assert.deepEqual(missed, [cursor + 1, cursor + 2, cursor + 3], 'seqs are consecutive');
      await b1.waitFor(`seq ${missed[2]} on b1`, (f) => f.type === 'message' && f.message.conversation_id === P && f.message.seq === missed[2]);
      const back = await Device.open('b2-again', b.token);
      const ready = await back.resume({ [P]: cursor });
      const entry = ready.conversations.find((x) => x.conversation_id === P);
      assert.equal(entry.cursor, cursor, 'ready names the cursor it resumes after');
      assert.equal(entry.last_seq, missed[2]);
      await back.waitFor(`seq ${missed[2]}`, (f) => f.type === 'message' && f.message.conversation_id === P && f.message.seq === missed[2]);
      await sleep(1500);  // anything sent twice would arrive by now
      assertExactly(back, P, missed, 'the missed messages, in order, once');
      assert.equal(back.messages(P)[0].payload.text, 'while away 1');
      assert.ok(back.frames.findIndex((f) => f.type === 'ready') < back.frames.findIndex((f) => f.type === 'message'), 'ready comes before the messages');
      const live = await sendText(a, P, 'after resume');
      await back.waitFor('the next live message', (f) => f.type === 'message' && f.message.message_id === live.message_id);
      assertExactly(back, P, [...missed, live.seq], 'then live messages follow');
      await back.close();
    });
    await runner.check('b1 got every message of the conversation once, in order', async () => {
      const { last } = { last: b1.lastSeq(P) };
      assertExactly(b1, P, Array.from({ length: last }, (_, i) => i + 1), 'every seq from 1');
    });
    await runner.check('a device without cursors resumes from the delivered horizon', async () => {
      // Marking DELIVERED follows the socket write asynchronously (one command per
      // conversation after writes complete), so the horizon catches up shortly after.
      const readHorizon = async () =>
        (await api.call('GET', `/v1/conversations/${P}`, { token: b.token, expect: 200 })).json.delivered_up_to_seq;
      const horizon = await waitFor(async () => {
        const value = await readHorizon();
        return value === b1.lastSeq(P) ? value : 0;
      }, FRAME_WAIT_MS) || await readHorizon();
      assert.equal(horizon, b1.lastSeq(P), 'b1 had everything pushed, so the horizon is its last seq');
      const fresh = await Device.open('b3', b.token);
      const ready = await fresh.resume({});
      assert.equal(ready.conversations.find((x) => x.conversation_id === P)?.cursor, horizon);
      const next = await sendText(a, P, 'for every device');
      await fresh.waitFor('the new message', (f) => f.type === 'message' && f.message.message_id === next.message_id);
      await sleep(500);
      assertExactly(fresh, P, [next.seq], 'nothing at or below the horizon, then the new one');
      await fresh.close();
    });
  }

  // ------------------------------------------------------------ presence
  if (runner.begin('presence')) {
    const users = {};
    let conversation;
    let watcher;
    let strangerDevice;
    const presenceOf = (device, userId) => device.frames.filter((f) => f.type === 'presence' && f.user_id === userId);
    await runner.check('presence: online and offline (with last_seen_at) reach the streams of users sharing a conversation, nobody else', async () => {
      for (const name of ['subject', 'watcher', 'stranger']) {
        const user = { id: `${prefix}p-${name}`, password: `pw-${crypto.randomBytes(9).toString('base64url')}` };
        await api.call('POST', '/v1/users', { token: s.admin, body: { user_id: user.id, password: user.password }, expect: 201 });
        user.token = await userToken(user);
        users[name] = user;
      }
      const { subject, stranger } = users;
      const r = await api.call('POST', '/v1/conversations', { token: subject.token, body: { type: 'private', members: [users.watcher.id] }, expect: 201 });
      conversation = r.json.conversation_id;
      watcher = await Device.open('watcher', users.watcher.token);
      await watcher.resume({});
      strangerDevice = await Device.open('stranger', stranger.token);
      await strangerDevice.resume({});
      const before = await api.call('GET', `/v1/users/${subject.id}/presence`, { token: users.watcher.token, expect: 200 });
      assert.deepEqual(before.json, { user_id: subject.id, state: 'offline', last_seen_at: null });
      await api.error('GET', `/v1/users/${subject.id}/presence`, { token: stranger.token }, { status: 404, code: 'not_found' });

      const opened = Date.now();
      const device = await Device.open('subject', subject.token);
      await device.resume({});
      const online = await watcher.waitFor('presence online', (f) => f.type === 'presence' && f.user_id === subject.id && f.state === 'online');
      console.log(`      (the watcher had "online" ${Date.now() - opened} ms after the subject began to connect)`);
      assert.equal(online.last_seen_at, null);
      const now = await api.call('GET', `/v1/users/${subject.id}/presence`, { token: users.watcher.token, expect: 200 });
      assert.equal(now.json.state, 'online');
      await device.close();
      const offline = await watcher.waitFor('presence offline', (f) => f.type === 'presence' && f.user_id === subject.id && f.state === 'offline');
      assert.ok(Number.isInteger(offline.last_seen_at), 'an offline frame says when the user was last seen');
      const after = await api.call('GET', `/v1/users/${subject.id}/presence`, { token: users.watcher.token, expect: 200 });
      assert.deepEqual(after.json, { user_id: subject.id, state: 'offline', last_seen_at: offline.last_seen_at });
      assert.equal(presenceOf(watcher, subject.id).length, 2, 'each change once per connection');
      assert.equal(presenceOf(strangerDevice, subject.id).length, 0, 'a user sharing no conversation hears nothing');
    });
    await runner.check('typing: the other member\'s stream gets it once per interval, the typer none, a non-member an error frame', async () => {
      assert.ok(conversation && watcher, 'needs the previous check');
      const typer = await Device.open('typer', users.subject.token);
      await typer.resume({});
      const typed = Date.now();
      typer.send({ type: 'typing', conversation_id: conversation });
      const frame = await watcher.waitFor('typing', (f) => f.type === 'typing');
      console.log(`      (the other member had the typing frame ${Date.now() - typed} ms after it was sent)`);
      assert.deepEqual(frame, { type: 'typing', conversation_id: conversation, user_id: users.subject.id });
      typer.send({ type: 'typing', conversation_id: conversation });  // within 3 s: dropped
      await sleep(1500);
      assert.equal(watcher.frames.filter((f) => f.type === 'typing').length, 1, 'at most one every 3 s');
      assert.ok(!typer.frames.some((f) => f.type === 'typing'), 'the typer gets no typing frame of its own');
      strangerDevice.send({ type: 'typing', conversation_id: conversation });
      const refused = await strangerDevice.waitFor('error frame', (f) => f.type === 'error');
      assert.equal(refused.error.code, 'conversation_not_found');
      typer.send({ type: 'typing' });
      const invalid = await typer.waitFor('error frame', (f) => f.type === 'error');
      assert.equal(invalid.error.code, 'invalid_frame');
      await typer.close();
    });
  }

  // ------------------------------------------------------------ slow-client
  if (runner.begin('slow-client')) {
    const { a, c } = s.users;
    const Q = s.slowConversation;
    await runner.check(`a client that does not read is closed with 1008 (at most ${options.slowMessagesMax} messages of ${options.slowTextBytes} bytes)`, async () => {
      const slow = await Device.open('c-slow', c.token);
      await slow.resume({});
      slow.ws.pause();  // stop reading the socket: the server's queue for it grows
      const text = 'z'.repeat(options.slowTextBytes);
      const undeliveredMax = Math.ceil(options.queueBytesMax / options.slowTextBytes) + 20;
      const deadline = Date.now() + 120000;
      let sent = 0;
      let lastSeq = 0;
      let undelivered = 0;
      while (sent < options.slowMessagesMax && Date.now() < deadline) {
        const batch = Math.min(8, options.slowMessagesMax - sent);
        const answers = await Promise.all(Array.from({ length: batch }, (_, i) => sendText(a, Q, `${sent + i} ${text}`)));
        sent += batch;
        lastSeq = Math.max(lastSeq, ...answers.map((x) => x.seq));
        if (sent % 40 === 0) {
          // Messages written to the socket are DELIVERED; the rest sit in the
          // server's queue for this client (or the client is gone). The marks
          // trail the writes, so a count over the bound is read again once they
          // have settled: only a closed client stays over it.
          const undeliveredNow = async () => {
            const view = await api.call('GET', `/v1/conversations/${Q}`, { token: c.token, expect: 200 });
            return lastSeq - view.json.delivered_up_to_seq;
          };
          undelivered = await undeliveredNow();
          if (undelivered > undeliveredMax) {
            await sleep(MARKS_SETTLE_MS);
            undelivered = await undeliveredNow();
          }
          runner.log(`sent ${sent}, undelivered ${undelivered}`);
          if (undelivered > undeliveredMax) break;
        }
      }
      console.log(`      (${sent} messages sent, ${undelivered} not written to the socket when sending stopped)`);
      slow.ws.resume();
      const closeInfo = await Promise.race([slow.closed, sleep(30000).then(() => null)]);
      assert.ok(closeInfo, `not closed within 30 s after ${sent} messages (${(sent * options.slowTextBytes / 1048576).toFixed(1)} MiB) while not reading`);
      assert.equal(closeInfo.code, 1008, `close code (reason "${closeInfo.reason}")`);
      const got = slow.messages(Q).map((m) => m.seq);
      assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => i + 1), 'what it got before the close is in order, from seq 1');
      assert.ok(got.length < sent, 'it did not get everything');
      // It reconnects and resumes from its cursor: the rest, in order, once.
      const again = await Device.open('c-again', c.token);
      await again.resume({ [Q]: got.length });
      await again.waitFor(`seq ${lastSeq}`, (f) => f.type === 'message' && f.message.conversation_id === Q && f.message.seq === lastSeq, 30000);
      await sleep(500);
      assertExactly(again, Q, Array.from({ length: lastSeq - got.length }, (_, i) => got.length + i + 1), 'the rest after the cursor');
      await again.close();
    });
  }
}

let exitCode = 1;
try {
  console.log(`stream test against ${wsBase}/v1/stream, tenant ${options.tenant}, run ${run}`);
  await main();
  exitCode = runner.summary();
} catch (error) {
  console.error(`stream test stopped: ${error.stack || error}`);
  runner.summary();
  exitCode = 1;
} finally {
  await Promise.all([...sockets].map((device) => device.close()));
  api.close();
}
process.exit(exitCode);

#!/usr/bin/env node
// Self-test of provider-sim: starts the simulator as its own process on a free port, with a
// local callback receiver, and checks every documented behaviour over real HTTP.
// Exit 0 when every check passes, 1 otherwise. Bounded: the whole run has a deadline, every
// wait has a timeout, and every process started here is stopped (by pid) on every exit path.

import { spawn } from 'node:child_process';
import http from 'node:http';
import crypto from 'node:crypto';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const SIM_PATH = fileURLToPath(new URL('./provider-sim.mjs', import.meta.url));
const RUN_DEADLINE_MS = 60_000;
const START_TIMEOUT_MS = 5_000;
const WAIT_TIMEOUT_MS = 5_000;
const APP_SECRET = 'self-test-secret';
const TG_TOKEN = '123456:SELFTEST';
const BIG_BODY_BYTES = 2 * 1024 * 1024 + 1;

// ---------------------------------------------------------------------------------------------
// Processes started here, stopped on every exit path.

const children = new Set();

function startSim(args) {
  const proc = spawn(process.execPath, [SIM_PATH, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  let stderr = '';
  proc.stderr.on('data', (c) => { stderr += c; });
  return new Promise((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => reject(new Error(`simulator did not start within ${START_TIMEOUT_MS} ms: ${stderr}`)), START_TIMEOUT_MS);
    proc.stdout.on('data', (c) => {
      stdout += c;
      const m = /^provider-sim listening on (http:\/\/\S+)\n/.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, base: m[1], stderr: () => stderr, stdout: () => stdout });
      }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`simulator exited with ${code}: ${stderr}`)); });
  });
}

async function stopProc(proc, timeoutMs = 3_000) {
  if (proc.exitCode !== null || proc.signalCode !== null) return { code: proc.exitCode, signal: proc.signalCode };
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  const result = await exited;
  clearTimeout(timer);
  return result;
}

process.on('exit', () => { for (const p of children) p.kill('SIGKILL'); });

// ---------------------------------------------------------------------------------------------
// Callback receiver: records every POST and answers 200, or what failNext() asked for.

class Receiver {
  constructor() {
    this.calls = [];
    this.waiters = new Set();
    this.failures = new Map(); // path -> [status, ...] answered before 200s resume
    this.server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        let json = null;
        try { json = JSON.parse(raw.toString('utf8')); } catch { /* recorded as null */ }
        const queue = this.failures.get(req.url) ?? [];
        const status = queue.length ? queue.shift() : 200;
        this.calls.push({ path: req.url, headers: req.headers, raw, json, answered: status });
        res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
        for (const w of this.waiters) w();
      });
    });
  }

  async start() {
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${this.server.address().port}`;
  }

  failNext(path, statuses) { this.failures.set(path, [...statuses]); }

  // Resolves with the first `count` calls matching `pred`, in arrival order.
  waitCalls(pred, count, what) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.calls.filter(pred);
        if (found.length >= count) { done(); resolve(found.slice(0, count)); }
      };
      const timer = setTimeout(() => { done(); reject(new Error(`timed out waiting for ${count} callback(s): ${what}`)); }, WAIT_TIMEOUT_MS);
      const done = () => { clearTimeout(timer); this.waiters.delete(check); };
      this.waiters.add(check);
      check();
    });
  }

  close() { this.server.closeAllConnections(); return new Promise((r) => this.server.close(r)); }
}

// ---------------------------------------------------------------------------------------------
// HTTP helper

async function call(base, method, path, { json, form, raw, headers = {}, contentType } = {}) {
  const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(40_000) };
  if (json !== undefined) { init.body = JSON.stringify(json); init.headers['content-type'] = 'application/json'; }
  if (form !== undefined) { init.body = new URLSearchParams(form).toString(); init.headers['content-type'] = 'application/x-www-form-urlencoded'; }
  if (raw !== undefined) { init.body = raw; init.headers['content-type'] = contentType ?? 'application/json'; }
  const res = await fetch(base + path, init);
  const text = await res.text();
  let body = null;
  try { body = JSON.parse(text); } catch { /* left null; checks fail on it */ }
  assert.equal(res.headers.get('x-provider-simulation'), 'chat4all', `${method} ${path}: simulation header`);
  return { status: res.status, headers: res.headers, body, text };
}

function verifySignature(c) {
  const header = c.headers['x-hub-signature-256'];
  assert.match(header ?? '', /^sha256=[0-9a-f]{64}$/, 'X-Hub-Signature-256 present');
  const expected = crypto.createHmac('sha256', APP_SECRET).update(c.raw).digest();
  assert.ok(crypto.timingSafeEqual(Buffer.from(header.slice(7), 'hex'), expected), 'signature matches the body');
  assert.match(c.headers['content-type'], /^application\/json/);
}

const waStatuses = (wamid) => (c) => c.path === '/wa' && c.json?.entry?.[0]?.changes?.[0]?.value?.statuses?.[0]?.id === wamid;
const statusOf = (c) => c.json.entry[0].changes[0].value.statuses[0];
const igItems = (pred) => (c) => c.path === '/ig' && c.json?.entry?.[0]?.messaging?.[0] && pred(c.json.entry[0].messaging[0]);

// ---------------------------------------------------------------------------------------------
// The checks

const BEARER = { authorization: 'Bearer self-test-token' };
const WA_PATH = '/v21.0/106540352242922/messages';
const IG_USER = '17841400000000123';
const IG_PATH = `/v21.0/${IG_USER}/messages`;
const waText = (to, body = 'hello') => ({ messaging_product: 'whatsapp', recipient_type: 'individual', to, type: 'text', text: { body } });

function defineChecks(ctx) {
  const { rx } = ctx;
  const sim = (...a) => call(ctx.base, ...a);
  const tg = (method, opts) => sim(opts?.json || opts?.form ? 'POST' : 'GET', `/bot${TG_TOKEN}/${method}`, opts);
  const config = async (platform, body) => {
    const r = await sim('POST', `/_sim/${platform}/config`, { json: body });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  };

  return [
    ['health answers and names the simulation', async () => {
      const r = await sim('GET', '/_sim/health');
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, { ok: true, simulation: 'chat4all provider-sim' });
    }],

    ['whatsapp: 401 without a bearer token', async () => {
      const r = await sim('POST', WA_PATH, { json: waText('15550001000') });
      assert.equal(r.status, 401);
      assert.equal(r.body.error.code, 190);
      assert.equal(r.body.error.type, 'OAuthException');
      assert.equal(typeof r.body.error.message, 'string');
    }],

    ['whatsapp: 400 on a bad `to`, a missing field and a non-JSON body', async () => {
      for (const to of ['12ab34567', '12345', '1234567890123456', '']) {
        const r = await sim('POST', WA_PATH, { json: waText(to), headers: BEARER });
        assert.equal(r.status, 400, `to=${to}`);
        assert.equal(r.body.error.message, '(#100) Invalid parameter');
        assert.equal(r.body.error.type, 'OAuthException');
        assert.equal(r.body.error.code, 100);
        assert.equal(typeof r.body.error.error_data.details, 'string');
        assert.equal(typeof r.body.error.fbtrace_id, 'string');
      }
      const noBody = await sim('POST', WA_PATH, { json: { ...waText('15550001000'), text: {} }, headers: BEARER });
      assert.equal(noBody.status, 400);
      const notJson = await sim('POST', WA_PATH, { raw: '{not json', headers: BEARER });
      assert.equal(notJson.status, 400);
      assert.equal(notJson.body.error.code, 100);
      assert.match(notJson.body.error.error_data.details, /not valid JSON/);
    }],

    ['whatsapp: send, then signed `sent` and `delivered` in order, then `read` via control', async () => {
      const r = await sim('POST', WA_PATH, { json: waText('+15550001001', 'hi there'), headers: BEARER });
      assert.equal(r.status, 200);
      assert.equal(r.body.messaging_product, 'whatsapp');
      assert.deepEqual(r.body.contacts, [{ input: '+15550001001', wa_id: '15550001001' }]);
      const wamid = r.body.messages[0].id;
      assert.match(wamid, /^wamid\.[A-Za-z0-9_-]+$/);
      const calls = await rx.waitCalls(waStatuses(wamid), 2, 'sent + delivered');
      assert.deepEqual(calls.map((c) => statusOf(c).status), ['sent', 'delivered']);
      for (const c of calls) {
        verifySignature(c);
        assert.equal(c.json.object, 'whatsapp_business_account');
        const change = c.json.entry[0].changes[0];
        assert.equal(typeof c.json.entry[0].id, 'string');
        assert.equal(change.field, 'messages');
        assert.equal(change.value.messaging_product, 'whatsapp');
        assert.deepEqual(change.value.metadata, { display_phone_number: '15550000000', phone_number_id: '106540352242922' });
        const s = statusOf(c);
        assert.equal(s.recipient_id, '15550001001');
        assert.match(s.timestamp, /^\d{10}$/);
      }
      const read = await sim('POST', '/_sim/whatsapp/read', { json: { to: '15550001001', id: wamid } });
      assert.equal(read.status, 200);
      assert.deepEqual(read.body, { id: wamid, callback_status: 200, attempts: 1 });
      const [, , readCall] = await rx.waitCalls(waStatuses(wamid), 3, 'read');
      verifySignature(readCall);
      assert.equal(statusOf(readCall).status, 'read');
      const unknown = await sim('POST', '/_sim/whatsapp/read', { json: { to: '15550001001', id: 'wamid.nope' } });
      assert.equal(unknown.status, 404);
    }],

    ['whatsapp: read_delay_ms >= 0 reads automatically after delivery', async () => {
      await config('whatsapp', { read_delay_ms: 10 });
      try {
        const r = await sim('POST', WA_PATH, { json: waText('15550001002'), headers: BEARER });
        assert.equal(r.status, 200);
        const calls = await rx.waitCalls(waStatuses(r.body.messages[0].id), 3, 'sent, delivered, read');
        assert.deepEqual(calls.map((c) => statusOf(c).status), ['sent', 'delivered', 'read']);
      } finally {
        await config('whatsapp', { read_delay_ms: -1 });
      }
    }],

    ['whatsapp: document send and the sent listing filtered by `to`', async () => {
      const doc = { messaging_product: 'whatsapp', recipient_type: 'individual', to: '15550001003', type: 'document',
        document: { link: 'https://example.com/files/report.pdf', filename: 'report.pdf', caption: 'Q3' } };
      const d = await sim('POST', WA_PATH, { json: doc, headers: BEARER });
      assert.equal(d.status, 200);
      const t = await sim('POST', WA_PATH, { json: waText('15550001003', 'second'), headers: BEARER });
      const other = await sim('POST', WA_PATH, { json: waText('15550001004', 'elsewhere'), headers: BEARER });
      assert.equal(other.status, 200);
      const list = await sim('GET', '/_sim/whatsapp/sent?to=15550001003');
      assert.equal(list.status, 200);
      assert.deepEqual(list.body.messages.map((m) => m.id), [d.body.messages[0].id, t.body.messages[0].id]);
      const [m0, m1] = list.body.messages;
      assert.equal(m0.type, 'document');
      assert.deepEqual(m0.document, doc.document);
      assert.equal(m0.to, '15550001003');
      assert.equal(typeof m0.at_ms, 'number');
      assert.equal(m1.type, 'text');
      assert.equal(m1.text, 'second');
      assert.equal(m1.document, null);
      const plus = await sim('GET', `/_sim/whatsapp/sent?to=${encodeURIComponent('+15550001004')}`);
      assert.deepEqual(plus.body.messages.map((m) => m.id), [other.body.messages[0].id]);
    }],

    ['whatsapp: inbound message with context, signed', async () => {
      const r = await sim('POST', '/_sim/whatsapp/inbound', { json: { from: '15550002001', text: 'a reply', name: 'Ana', context_id: 'wamid.ORIGINAL' } });
      assert.equal(r.status, 200);
      assert.match(r.body.id, /^wamid\./);
      assert.equal(r.body.callback_status, 200);
      assert.equal(r.body.attempts, 1);
      const [c] = await rx.waitCalls((c) => c.path === '/wa' && c.json?.entry?.[0]?.changes?.[0]?.value?.messages?.[0]?.id === r.body.id, 1, 'inbound');
      verifySignature(c);
      const v = c.json.entry[0].changes[0].value;
      assert.deepEqual(v.contacts, [{ profile: { name: 'Ana' }, wa_id: '15550002001' }]);
      const m = v.messages[0];
      assert.equal(m.from, '15550002001');
      assert.equal(m.type, 'text');
      assert.deepEqual(m.text, { body: 'a reply' });
      assert.deepEqual(m.context, { id: 'wamid.ORIGINAL' });
      assert.match(m.timestamp, /^\d{10}$/);
      assert.equal(v.metadata.phone_number_id, '106540352242922'); // the last one a send used
    }],

    ['callbacks: a 500 from the receiver is retried with the same body', async () => {
      rx.failNext('/wa', [500]);
      const r = await sim('POST', '/_sim/whatsapp/inbound', { json: { from: '15550002002', text: 'retry me' } });
      assert.equal(r.status, 200);
      assert.equal(r.body.callback_status, 200);
      assert.equal(r.body.attempts, 2);
      const calls = await rx.waitCalls((c) => c.path === '/wa' && c.json?.entry?.[0]?.changes?.[0]?.value?.messages?.[0]?.id === r.body.id, 2, 'retried inbound');
      assert.equal(calls[0].answered, 500);
      assert.equal(calls[1].answered, 200);
      assert.ok(calls[0].raw.equals(calls[1].raw), 'the retry carries the same bytes');
      verifySignature(calls[1]);
    }],

    ['callbacks: per recipient, `delivered` waits for a `sent` that is being retried', async () => {
      // The retry interval (300 ms) is longer than the callback delay (20 ms), so `delivered`
      // becomes due while `sent` is still failing; it must still arrive after it.
      rx.failNext('/wa', [500]);
      const r = await sim('POST', WA_PATH, { json: waText('15550002004'), headers: BEARER });
      const calls = await rx.waitCalls(waStatuses(r.body.messages[0].id), 3, 'sent (500), sent, delivered');
      assert.deepEqual(calls.map((c) => [statusOf(c).status, c.answered]), [['sent', 500], ['sent', 200], ['delivered', 200]]);
    }],

    ['callbacks: a receiver that is down costs five attempts, not the simulator', async () => {
      const closed = http.createServer();
      await new Promise((r) => closed.listen(0, '127.0.0.1', r));
      const deadPort = closed.address().port;
      await new Promise((r) => closed.close(r));
      const other = await startSim(['--latency-ms', '0', '--jitter-ms', '0', '--whatsapp-callback', `http://127.0.0.1:${deadPort}/wa`]);
      try {
        const r = await call(other.base, 'POST', '/_sim/whatsapp/inbound', { json: { from: '15550002003', text: 'nobody home' } });
        assert.equal(r.status, 200);
        assert.equal(r.body.callback_status, null);
        assert.equal(r.body.attempts, 5);
        const h = await call(other.base, 'GET', '/_sim/health');
        assert.equal(h.status, 200);
        const s = await call(other.base, 'GET', '/_sim/stats');
        assert.equal(s.body.whatsapp.callbacks_failed, 1);
        assert.equal(s.body.whatsapp.inbound, 1);
      } finally {
        const exit = await stopProc(other.proc);
        assert.deepEqual(exit, { code: 0, signal: null }, 'second simulator exits 0 on SIGTERM');
      }
    }],

    ['seed: the same seed gives the same ids', async () => {
      const ids = [];
      for (let i = 0; i < 2; i++) {
        const s = await startSim(['--seed', '42', '--latency-ms', '0', '--jitter-ms', '0']);
        try {
          const r = await call(s.base, 'POST', WA_PATH, { json: waText('15550003001'), headers: BEARER });
          ids.push(r.body.messages[0].id);
        } finally {
          await stopProc(s.proc);
        }
      }
      assert.equal(ids[0], ids[1]);
    }],

    ['instagram: send, signed delivery, read via control', async () => {
      const r = await sim('POST', IG_PATH, { json: { recipient: { id: '6001' }, message: { text: 'hi ig' } }, headers: BEARER });
      assert.equal(r.status, 200);
      assert.equal(r.body.recipient_id, '6001');
      const mid = r.body.message_id;
      assert.match(mid, /^mid\.[A-Za-z0-9_-]+$/);
      const [d] = await rx.waitCalls(igItems((i) => i.delivery?.mids?.includes(mid)), 1, 'instagram delivery');
      verifySignature(d);
      assert.equal(d.json.object, 'instagram');
      assert.equal(d.json.entry[0].id, IG_USER);
      assert.equal(typeof d.json.entry[0].time, 'number');
      const item = d.json.entry[0].messaging[0];
      assert.deepEqual(item.sender, { id: '6001' });
      assert.deepEqual(item.recipient, { id: IG_USER });
      assert.equal(typeof item.timestamp, 'number');
      assert.equal(typeof item.delivery.watermark, 'number');
      const read = await sim('POST', '/_sim/instagram/read', { json: { to: '6001', id: mid } });
      assert.deepEqual(read.body, { id: mid, callback_status: 200, attempts: 1 });
      const [rc] = await rx.waitCalls(igItems((i) => i.read?.mid === mid), 1, 'instagram read');
      verifySignature(rc);
      assert.deepEqual(rc.json.entry[0].messaging[0].sender, { id: '6001' });
    }],

    ['instagram: attachment via "me", 400 without recipient or message, 401 without token', async () => {
      const a = await sim('POST', '/v21.0/me/messages', { json: { recipient: { id: '6002' }, message: { attachment: { type: 'file', payload: { url: 'https://example.com/a.pdf' } } } }, headers: BEARER });
      assert.equal(a.status, 200);
      const list = await sim('GET', '/_sim/instagram/sent?to=6002');
      assert.equal(list.body.messages.length, 1);
      assert.equal(list.body.messages[0].type, 'file');
      assert.deepEqual(list.body.messages[0].document, { url: 'https://example.com/a.pdf' });
      for (const body of [{ message: { text: 'x' } }, { recipient: { id: '6002' } }]) {
        const r = await sim('POST', IG_PATH, { json: body, headers: BEARER });
        assert.equal(r.status, 400);
        assert.equal(r.body.error.code, 100);
        assert.equal(r.body.error.type, 'OAuthException');
      }
      const noAuth = await sim('POST', IG_PATH, { json: { recipient: { id: '6002' }, message: { text: 'x' } } });
      assert.equal(noAuth.status, 401);
      assert.equal(noAuth.body.error.code, 190);
    }],

    ['instagram: inbound message with reply_to', async () => {
      const r = await sim('POST', '/_sim/instagram/inbound', { json: { from: '6003', text: 'hey', reply_to: 'mid.ORIG' } });
      assert.equal(r.status, 200);
      assert.match(r.body.id, /^mid\./);
      assert.equal(r.body.callback_status, 200);
      assert.equal(r.body.attempts, 1);
      const [c] = await rx.waitCalls(igItems((i) => i.message?.mid === r.body.id), 1, 'instagram inbound');
      verifySignature(c);
      const item = c.json.entry[0].messaging[0];
      assert.deepEqual(item.sender, { id: '6003' });
      assert.deepEqual(item.message, { mid: r.body.id, text: 'hey', reply_to: { mid: 'mid.ORIG' } });
    }],

    ['telegram: 401 on another token, 404 on an unknown method, getMe', async () => {
      const bad = await sim('GET', '/bot999:WRONG/getMe');
      assert.equal(bad.status, 401);
      assert.deepEqual(bad.body, { ok: false, error_code: 401, description: 'Unauthorized' });
      const unknown = await tg('frobnicate');
      assert.equal(unknown.status, 404);
      assert.deepEqual(unknown.body, { ok: false, error_code: 404, description: 'Not Found' });
      const me = await tg('getMe');
      assert.equal(me.status, 200);
      assert.equal(me.body.ok, true);
      assert.equal(Number.isInteger(me.body.result.id), true);
      assert.equal(me.body.result.is_bot, true);
      assert.equal(me.body.result.first_name, 'Chat4All Sim');
      assert.equal(me.body.result.username, 'chat4all_sim_bot');
    }],

    ['telegram: sendMessage by JSON, form and query; errors', async () => {
      const a = await tg('sendMessage', { json: { chat_id: 7001, text: 'one', reply_to_message_id: 3 } });
      assert.equal(a.status, 200);
      assert.equal(a.body.ok, true);
      assert.deepEqual(a.body.result.chat, { id: 7001, type: 'private' });
      assert.equal(a.body.result.text, 'one');
      assert.equal(a.body.result.reply_to_message.message_id, 3);
      assert.equal(Number.isInteger(a.body.result.date), true);
      const b = await tg('sendMessage', { form: { chat_id: '7001', text: 'two' } });
      const c = await tg('sendMessage?chat_id=7001&text=three');
      assert.equal(b.body.result.text, 'two');
      assert.equal(c.body.result.text, 'three');
      assert.ok(a.body.result.message_id < b.body.result.message_id && b.body.result.message_id < c.body.result.message_id, 'message ids increase');
      const empty = await tg('sendMessage', { json: { chat_id: 7001 } });
      assert.equal(empty.status, 400);
      assert.deepEqual(empty.body, { ok: false, error_code: 400, description: 'Bad Request: message text is empty' });
      const chat = await tg('sendMessage', { json: { chat_id: 'not-a-chat', text: 'x' } });
      assert.equal(chat.status, 400);
      assert.deepEqual(chat.body, { ok: false, error_code: 400, description: 'Bad Request: chat not found' });
      const list = await sim('GET', '/_sim/telegram/sent?to=7001');
      assert.deepEqual(list.body.messages.map((m) => m.text), ['one', 'two', 'three']);
      assert.deepEqual(list.body.messages.map((m) => m.id), [a, b, c].map((x) => String(x.body.result.message_id)));
    }],

    ['telegram: sendDocument by URL and by file_id', async () => {
      const r = await tg('sendDocument', { json: { chat_id: 7002, document: 'https://example.com/x/invoice.pdf', caption: 'here' } });
      assert.equal(r.status, 200);
      assert.equal(r.body.result.document.file_name, 'invoice.pdf');
      assert.equal(typeof r.body.result.document.file_id, 'string');
      assert.equal(r.body.result.caption, 'here');
      const again = await tg('sendDocument', { json: { chat_id: 7002, document: r.body.result.document.file_id } });
      assert.equal(again.body.result.document.file_id, r.body.result.document.file_id);
      assert.equal(again.body.result.document.file_name, 'invoice.pdf');
      const none = await tg('sendDocument', { json: { chat_id: 7002 } });
      assert.equal(none.status, 400);
    }],

    ['telegram: getUpdates long-polls, and an offset confirms earlier updates', async () => {
      const t0 = Date.now();
      const poll = tg('getUpdates?timeout=5');
      await sleep(200); // let the poll reach the simulator and wait there
      const inb = await sim('POST', '/_sim/telegram/inbound', { json: { chat_id: 7003, text: 'first', first_name: 'Bo' } });
      assert.equal(inb.status, 200);
      const got = await poll;
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 150 && elapsed < 4_000, `the poll waited for the update (${elapsed} ms)`);
      assert.equal(got.body.ok, true);
      assert.equal(got.body.result.length, 1);
      const u = got.body.result[0];
      assert.equal(u.update_id, inb.body.update_id);
      assert.equal(u.message.message_id, inb.body.message_id);
      assert.deepEqual(u.message.from, { id: 7003, is_bot: false, first_name: 'Bo' });
      assert.equal(u.message.chat.id, 7003);
      assert.equal(u.message.chat.type, 'private');
      assert.equal(u.message.text, 'first');
      // Two more (one a reply); an offset past the first returns exactly those two.
      const i2 = await sim('POST', '/_sim/telegram/inbound', { json: { chat_id: 7003, text: 'second' } });
      const i3 = await sim('POST', '/_sim/telegram/inbound', { json: { chat_id: 7003, text: 'third', reply_to_message_id: i2.body.message_id } });
      const next = await tg(`getUpdates?offset=${u.update_id + 1}`);
      assert.deepEqual(next.body.result.map((x) => x.update_id), [i2.body.update_id, i3.body.update_id]);
      assert.deepEqual(next.body.result[1].message.reply_to_message, { message_id: i2.body.message_id });
      const after = await tg('getUpdates', { json: { offset: i3.body.update_id + 1, timeout: 0 } });
      assert.deepEqual(after.body, { ok: true, result: [] });
      const noOffset = await tg('getUpdates');
      assert.deepEqual(noOffset.body.result, [], 'confirmed updates are gone');
      const t1 = Date.now();
      const idle = await tg('getUpdates?timeout=1');
      assert.deepEqual(idle.body, { ok: true, result: [] });
      assert.ok(Date.now() - t1 >= 900, 'an idle long poll lasts its timeout');
    }],

    ['telegram: setWebhook pushes updates with the secret header; getUpdates answers 409 meanwhile', async () => {
      const set = await tg('setWebhook', { json: { url: `${rx.base}/tg`, secret_token: 'S3cret_token' } });
      assert.equal(set.status, 200);
      assert.equal(set.body.ok, true);
      assert.equal(set.body.result, true);
      try {
        const conflict = await tg('getUpdates');
        assert.equal(conflict.status, 409);
        assert.deepEqual(conflict.body, { ok: false, error_code: 409, description: "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first" });
        const inb = await sim('POST', '/_sim/telegram/inbound', { json: { chat_id: 7004, text: 'pushed' } });
        const [c] = await rx.waitCalls((c) => c.path === '/tg' && c.json?.update_id === inb.body.update_id, 1, 'telegram webhook push');
        assert.equal(c.headers['x-telegram-bot-api-secret-token'], 'S3cret_token');
        assert.equal(c.json.message.text, 'pushed');
        assert.equal(c.json.message.chat.id, 7004);
      } finally {
        const del = await tg('deleteWebhook');
        assert.deepEqual([del.status, del.body.ok, del.body.result], [200, true, true]);
      }
      const ok = await tg('getUpdates');
      assert.equal(ok.status, 200);
    }],

    ['failure_rate 1 answers 503 (Graph) and 502 (Telegram)', async () => {
      await config('whatsapp', { failure_rate: 1 });
      await config('telegram', { failure_rate: 1 });
      try {
        const r = await sim('POST', WA_PATH, { json: waText('15550004001'), headers: BEARER });
        assert.equal(r.status, 503);
        assert.equal(r.body.error.message, '(#2) Service temporarily unavailable');
        assert.equal(r.body.error.type, 'OAuthException');
        assert.equal(r.body.error.code, 2);
        assert.equal(typeof r.body.error.fbtrace_id, 'string');
        const t = await tg('sendMessage', { json: { chat_id: 7005, text: 'x' } });
        assert.equal(t.status, 502);
        assert.deepEqual(t.body, { ok: false, error_code: 502, description: 'Bad Gateway' });
      } finally {
        await config('whatsapp', { failure_rate: 0 });
        await config('telegram', { failure_rate: 0 });
      }
      const list = await sim('GET', '/_sim/whatsapp/sent?to=15550004001');
      assert.deepEqual(list.body.messages, [], 'a failed send is not recorded as sent');
    }],

    ['down: an outage until it is switched off', async () => {
      const cfg = await config('instagram', { down: true });
      assert.equal(cfg.down, true);
      for (const key of ['latency_ms', 'jitter_ms', 'failure_rate', 'down_status', 'rate_limited', 'callback_delay_ms', 'read_delay_ms']) {
        assert.ok(key in cfg, `config answer has ${key}`);
      }
      const send = () => sim('POST', IG_PATH, { json: { recipient: { id: '6004' }, message: { text: 'x' } }, headers: BEARER });
      try {
        for (let i = 0; i < 3; i++) {
          const r = await send();
          assert.equal(r.status, 503);
          assert.equal(r.body.error.code, 2);
        }
        await config('telegram', { down: true });
        const t = await tg('sendMessage', { json: { chat_id: 7005, text: 'x' } });
        assert.equal(t.status, 502);
      } finally {
        await config('instagram', { down: false });
        await config('telegram', { down: false });
      }
      assert.equal((await send()).status, 200);
      assert.equal((await tg('sendMessage', { json: { chat_id: 7005, text: 'x' } })).status, 200);
    }],

    ['rate_limited: 429 with Retry-After', async () => {
      await config('whatsapp', { rate_limited: true });
      await config('telegram', { rate_limited: true });
      try {
        const r = await sim('POST', WA_PATH, { json: waText('15550004002'), headers: BEARER });
        assert.equal(r.status, 429);
        assert.equal(r.headers.get('retry-after'), '1');
        assert.equal(r.body.error.code, 130429);
        assert.equal(r.body.error.type, 'OAuthException');
        const t = await tg('sendMessage', { json: { chat_id: 7005, text: 'x' } });
        assert.equal(t.status, 429);
        assert.equal(t.headers.get('retry-after'), '1');
        assert.deepEqual(t.body, { ok: false, error_code: 429, description: 'Too Many Requests: retry after 1', parameters: { retry_after: 1 } });
      } finally {
        await config('whatsapp', { rate_limited: false });
        await config('telegram', { rate_limited: false });
      }
    }],

    ['control: telegram read is 400, bad JSON 400, bad config 400, unknown path 404, big body 413', async () => {
      assert.equal((await sim('POST', '/_sim/telegram/read', { json: { to: '7001', id: '1' } })).status, 400);
      const bad = await sim('POST', '/_sim/whatsapp/inbound', { raw: 'nope' });
      assert.equal(bad.status, 400);
      assert.match(bad.body.error, /not valid JSON/);
      assert.equal((await sim('POST', '/_sim/whatsapp/config', { json: { latency: 5 } })).status, 400);
      assert.equal((await sim('POST', '/_sim/whatsapp/config', { json: { failure_rate: 2 } })).status, 400);
      const nf = await sim('GET', '/no/such/thing');
      assert.equal(nf.status, 404);
      assert.equal(typeof nf.body.error, 'string');
      const big = await sim('POST', WA_PATH, { raw: Buffer.alloc(BIG_BODY_BYTES, 0x20), headers: BEARER });
      assert.equal(big.status, 413);
    }],

    ['stats count sends, failures, callbacks and inbound; reset clears them', async () => {
      const s = await sim('GET', '/_sim/stats');
      for (const p of ['whatsapp', 'instagram', 'telegram']) {
        for (const k of ['sends_accepted', 'sends_failed', 'callbacks_sent', 'callbacks_failed', 'inbound']) {
          assert.equal(typeof s.body[p][k], 'number', `${p}.${k}`);
        }
      }
      assert.ok(s.body.whatsapp.sends_accepted >= 5);
      assert.ok(s.body.whatsapp.sends_failed >= 5);
      assert.ok(s.body.whatsapp.callbacks_sent >= 8);
      assert.ok(s.body.whatsapp.inbound >= 2);
      assert.ok(s.body.instagram.inbound >= 1);
      assert.ok(s.body.telegram.inbound >= 4);
      const r = await sim('POST', '/_sim/reset');
      assert.equal(r.status, 200);
      const after = await sim('GET', '/_sim/stats');
      assert.equal(after.body.whatsapp.sends_accepted, 0);
      assert.deepEqual((await sim('GET', '/_sim/whatsapp/sent')).body.messages, []);
      const cfg = await sim('GET', '/_sim/whatsapp/config');
      assert.equal(cfg.body.callback_delay_ms, 20, 'reset keeps the config');
    }],
  ];
}

// ---------------------------------------------------------------------------------------------
// main

async function main() {
  const rx = new Receiver();
  await rx.start();
  let failed = 0;
  let simProc = null;
  try {
    const s = await startSim([
      '--seed', '1', '--latency-ms', '5', '--jitter-ms', '2', '--callback-delay-ms', '20', '--read-delay-ms', '-1',
      '--app-secret', APP_SECRET, '--telegram-token', TG_TOKEN,
      '--whatsapp-callback', `${rx.base}/wa`, '--instagram-callback', `${rx.base}/ig`,
    ]);
    simProc = s.proc;
    const checks = defineChecks({ base: s.base, rx });
    for (const [name, fn] of checks) {
      const t0 = Date.now();
      try {
        await fn();
        console.log(`ok - ${name} (${Date.now() - t0} ms)`);
      } catch (err) {
        failed++;
        console.log(`not ok - ${name}\n  ${String(err.stack ?? err).split('\n').slice(0, 4).join('\n  ')}`);
      }
    }
    const exit = await stopProc(simProc);
    if (exit.code === 0 && exit.signal === null) {
      console.log('ok - the simulator exits 0 on SIGTERM');
    } else {
      failed++;
      console.log(`not ok - the simulator exits 0 on SIGTERM (got ${JSON.stringify(exit)})`);
    }
    if (failed) console.log(`--- simulator stderr ---\n${s.stderr()}`);
    console.log(failed ? `${failed} check(s) failed` : `all ${checks.length + 1} checks passed`);
  } finally {
    for (const p of children) await stopProc(p);
    await rx.close();
  }
  return failed ? 1 : 0;
}

const deadline = setTimeout(() => {
  console.log(`not ok - the self-test did not finish within ${RUN_DEADLINE_MS} ms`);
  for (const p of children) p.kill('SIGKILL');
  process.exit(1);
}, RUN_DEADLINE_MS);
deadline.unref();

main().then(
  (code) => { clearTimeout(deadline); process.exit(code); },
  (err) => { console.log(`not ok - ${err.stack ?? err}`); for (const p of children) p.kill('SIGKILL'); process.exit(1); },
);

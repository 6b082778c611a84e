#!/usr/bin/env node
// provider-sim: a SIMULATION of the messaging providers Chat4All's connector talks to
// (WhatsApp Cloud API, Instagram Messaging, Telegram Bot API). It is not any of those
// platforms and is not affiliated with them; it answers in their documented shapes so that
// the connector's adapters can be tested and demonstrated without accounts, tokens or network.
// Every answer carries `x-provider-simulation: chat4all` so that nobody mistakes it for the
// real thing. See README.md beside this file for the endpoints and options.
//
// Node 20 standard library only. Everything lives in memory and every list, queue and wait has
// a limit (the constants below); what happens at a limit is said where the limit is enforced.

import http from 'node:http';
import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

// ---------------------------------------------------------------------------------------------
// Limits

const BODY_BYTES_MAX = 2 * 1024 * 1024;        // larger request bodies answer 413
const SENT_PER_PLATFORM_MAX = 100_000;         // oldest sent messages dropped beyond, counted
const PENDING_CALLBACKS_MAX = 100_000;         // per platform; beyond, a callback is dropped, counted
const TELEGRAM_UPDATES_MAX = 100_000;          // queued unconfirmed updates; oldest dropped, counted
const TELEGRAM_FILE_NAMES_MAX = 100_000;       // file_id -> file_name memory for sendDocument
const CALLBACK_ATTEMPTS_MAX = 5;               // like the real platforms, a non-2xx is retried
const CALLBACK_RETRY_INTERVAL_MS = 300;
const CALLBACK_ATTEMPT_TIMEOUT_MS = 5_000;     // a receiver that hangs counts as a failed attempt
const GET_UPDATES_TIMEOUT_S_MAX = 30;
const GET_UPDATES_LIMIT_MAX = 100;
const TELEGRAM_TEXT_CHARS_MAX = 4096;
const SHUTDOWN_GRACE_MS = 2_000;

const SIM_HEADER = 'x-provider-simulation';
const SIM_HEADER_VALUE = 'chat4all';
const PLATFORMS = ['whatsapp', 'instagram', 'telegram'];

// Identities the simulated accounts report. Digits, like the real ids, but obviously made up.
const WABA_ID = '1000000000000001';
const WHATSAPP_DISPLAY_PHONE = '15550000000';
const WHATSAPP_DEFAULT_PHONE_NUMBER_ID = '1000000000000002';
const INSTAGRAM_DEFAULT_USER_ID = '17841400000000001';
const TELEGRAM_DEFAULT_BOT_ID = 7000000001;

// ---------------------------------------------------------------------------------------------
// Command line

const USAGE = `usage: provider-sim.mjs --port P [--host 127.0.0.1] [--latency-ms 20] [--jitter-ms 10]
  [--failure-rate 0] [--callback-delay-ms 100] [--read-delay-ms -1] [--app-secret sim-app-secret]
  [--whatsapp-callback URL] [--instagram-callback URL] [--telegram-token TOKEN] [--seed N] [--log]`;

function parseArgs(argv) {
  const opts = {
    port: null, host: '127.0.0.1', latency_ms: 20, jitter_ms: 10, failure_rate: 0,
    callback_delay_ms: 100, read_delay_ms: -1, app_secret: 'sim-app-secret',
    whatsapp_callback: null, instagram_callback: null, telegram_token: null, seed: null, log: false,
  };
  const numeric = {
    '--port': 'port', '--latency-ms': 'latency_ms', '--jitter-ms': 'jitter_ms',
    '--failure-rate': 'failure_rate', '--callback-delay-ms': 'callback_delay_ms',
    '--read-delay-ms': 'read_delay_ms', '--seed': 'seed',
  };
  const text = {
    '--host': 'host', '--app-secret': 'app_secret', '--whatsapp-callback': 'whatsapp_callback',
    '--instagram-callback': 'instagram_callback', '--telegram-token': 'telegram_token',
  };
  for (let i = 0; i < argv.length; i++) {
    let flag = argv[i];
    let value;
    const eq = flag.indexOf('=');
    if (flag.startsWith('--') && eq > 0) { value = flag.slice(eq + 1); flag = flag.slice(0, eq); }
    if (flag === '--help' || flag === '-h') { console.log(USAGE); process.exit(0); }
    if (flag === '--log') { opts.log = true; continue; }
    if (!(flag in numeric) && !(flag in text)) throw new Error(`unknown option ${flag}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new Error(`${flag} needs a value`);
      value = argv[++i];
    }
    if (flag in text) { opts[text[flag]] = value; continue; }
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) throw new Error(`${flag} needs a number, got "${value}"`);
    opts[numeric[flag]] = n;
  }
  if (opts.port === null) throw new Error('--port is required (0 picks a free one)');
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new Error('--port must be 0..65535');
  if (opts.latency_ms < 0 || opts.jitter_ms < 0 || opts.callback_delay_ms < 0) {
    throw new Error('--latency-ms, --jitter-ms and --callback-delay-ms must be >= 0');
  }
  if (opts.failure_rate < 0 || opts.failure_rate > 1) throw new Error('--failure-rate must be within 0..1');
  for (const key of ['whatsapp_callback', 'instagram_callback']) {
    if (opts[key] !== null && !isHttpUrl(opts[key])) throw new Error(`--${key.replace('_', '-')} must be an http(s) URL`);
  }
  if (opts.seed !== null && !Number.isInteger(opts.seed)) throw new Error('--seed must be an integer');
  return opts;
}

function isHttpUrl(s) {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness. Latency jitter, injected failures and every generated id come from one
// mulberry32 stream, so the same seed and the same sequence of requests give the same answers.
// (Timing still depends on the machine; the seed fixes the draws, not the clock.)

function makePrng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------
// A FIFO with a bound and an index by id: the sent-message log of one platform. Dropping from
// the head is O(1) (a moving head index, compacted now and then) because at the bound every
// push drops one.

class BoundedLog {
  constructor(max) { this.max = max; this.clear(); }

  clear() { this.items = []; this.head = 0; this.byId = new Map(); this.dropped = 0; }

  get size() { return this.items.length - this.head; }

  push(entry) {
    this.items.push(entry);
    this.byId.set(entry.rec.id, entry);
    if (this.size > this.max) {
      const old = this.items[this.head];
      this.items[this.head++] = undefined;
      this.byId.delete(old.rec.id);
      this.dropped++;
      if (this.head > 4096 && this.head * 2 > this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
    }
  }

  get(id) { return this.byId.get(id); }

  *entries() { for (let i = this.head; i < this.items.length; i++) yield this.items[i]; }
}

// ---------------------------------------------------------------------------------------------
// The simulator

function createSimulator(opts) {
  const seed = opts.seed ?? crypto.randomInt(0, 2 ** 31);
  const rand = makePrng(seed);
  const randomToken = (bytes) => {
    const b = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i++) b[i] = Math.floor(rand() * 256);
    return b.toString('base64url');
  };
  const log = opts.log ? (...a) => console.error('provider-sim:', ...a) : () => {};

  // Per-platform behaviour (changed at run time through /_sim/{platform}/config), sent log,
  // counters and scheduled callback timers.
  const platforms = {};
  for (const name of PLATFORMS) {
    platforms[name] = {
      name,
      config: {
        latency_ms: opts.latency_ms, jitter_ms: opts.jitter_ms, failure_rate: opts.failure_rate,
        down: false, down_status: name === 'telegram' ? 502 : 503, rate_limited: false,
        callback_delay_ms: opts.callback_delay_ms, read_delay_ms: opts.read_delay_ms,
      },
      sent: new BoundedLog(SENT_PER_PLATFORM_MAX),
      stats: null,
      timers: new Set(),
      pendingCallbacks: 0, // scheduled or waiting in an ordering chain
    };
  }
  const resetStats = (p) => {
    p.stats = { sends_accepted: 0, sends_failed: 0, callbacks_sent: 0, callbacks_failed: 0, inbound: 0 };
    p.callbacksDropped = 0;
  };
  PLATFORMS.forEach((n) => resetStats(platforms[n]));

  const callbackUrls = { whatsapp: opts.whatsapp_callback, instagram: opts.instagram_callback, telegram: null };
  // The ids seen in the most recent send; inbound messages are addressed to them by default.
  let lastPhoneNumberId = WHATSAPP_DEFAULT_PHONE_NUMBER_ID;
  let lastIgUserId = INSTAGRAM_DEFAULT_USER_ID;

  // Telegram bot state.
  const botId = (() => {
    const prefix = (opts.telegram_token ?? '').split(':')[0];
    return /^\d{1,15}$/.test(prefix) ? Number(prefix) : TELEGRAM_DEFAULT_BOT_ID;
  })();
  const botUser = { id: botId, is_bot: true, first_name: 'Chat4All Sim', username: 'chat4all_sim_bot' };
  const tg = {
    nextMessageId: 1,
    nextUpdateId: 1,
    updates: [],        // unconfirmed updates, ascending update_id (only while no webhook is set)
    updatesDropped: 0,
    waiter: null,       // the one pending long poll, as on the real API
    webhook: null,      // { url, secret }
    fileNames: new Map(),
  };

  // A reset or shutdown bumps the generation; callbacks of an older generation stop retrying.
  let generation = 0;
  let shuttingDown = false;
  const shutdownController = new AbortController();

  // ---- callbacks ------------------------------------------------------------------------------

  // Callbacks to one recipient leave in the order they were queued, each after the previous one
  // has finished (including its retries): the real platforms keep per-conversation order too, and
  // the adapters may rely on `sent` arriving before `delivered`.
  const chains = new Map();
  function inOrder(key, task) {
    let entry = chains.get(key);
    if (!entry) { entry = { tail: Promise.resolve(), pending: 0 }; chains.set(key, entry); }
    entry.pending++;
    const result = entry.tail.then(task);
    const done = () => { if (--entry.pending === 0 && chains.get(key) === entry) chains.delete(key); };
    entry.tail = result.then(done, done);
    return result;
  }

  // POST `body` to `url`, retrying a non-2xx or unreachable receiver. Never throws: a receiver
  // that is down costs retries, not the simulator. Returns the last HTTP status (null when no
  // answer came) and the number of attempts made.
  async function deliver(platform, url, body, headers) {
    const gen = generation;
    let status = null;
    let attempts = 0;
    for (let attempt = 1; attempt <= CALLBACK_ATTEMPTS_MAX; attempt++) {
      if (gen !== generation || shuttingDown) break;
      attempts = attempt;
      try {
        const res = await fetch(url, {
          method: 'POST', headers, body,
          signal: AbortSignal.any([AbortSignal.timeout(CALLBACK_ATTEMPT_TIMEOUT_MS), shutdownController.signal]),
        });
        status = res.status;
        await res.arrayBuffer().catch(() => {});
        if (status >= 200 && status < 300) {
          platform.stats.callbacks_sent++;
          log(`callback ${platform.name} -> ${url} ${status} (attempt ${attempt})`);
          return { status, attempts };
        }
        log(`callback ${platform.name} -> ${url} answered ${status} (attempt ${attempt})`);
      } catch (err) {
        status = null;
        log(`callback ${platform.name} -> ${url} failed: ${err.cause?.code ?? err.name} (attempt ${attempt})`);
      }
      if (attempt < CALLBACK_ATTEMPTS_MAX) {
        try { await sleep(CALLBACK_RETRY_INTERVAL_MS, undefined, { signal: shutdownController.signal }); } catch { break; }
      }
    }
    // A reset cleared the counters this callback belonged to; do not count it against new ones.
    if (gen === generation) platform.stats.callbacks_failed++;
    return { status, attempts };
  }

  // Graph webhooks (WhatsApp, Instagram) are signed with the app secret over the exact bytes.
  function sendGraphWebhook(platform, orderKey, payload) {
    const url = callbackUrls[platform.name];
    if (!url) return Promise.resolve({ status: null, attempts: 0 });
    if (platform.pendingCallbacks >= PENDING_CALLBACKS_MAX) {
      platform.stats.callbacks_failed++;
      platform.callbacksDropped++;
      return Promise.resolve({ status: null, attempts: 0 });
    }
    const body = JSON.stringify(payload);
    const signature = crypto.createHmac('sha256', opts.app_secret).update(body).digest('hex');
    const headers = {
      'content-type': 'application/json',
      'x-hub-signature-256': `sha256=${signature}`,
      'user-agent': 'chat4all-provider-sim',
      [SIM_HEADER]: SIM_HEADER_VALUE,
    };
    platform.pendingCallbacks++;
    return inOrder(orderKey, () => deliver(platform, url, body, headers))
      .finally(() => { platform.pendingCallbacks--; });
  }

  function schedule(platform, delayMs, fn) {
    if (platform.timers.size >= PENDING_CALLBACKS_MAX) {
      platform.stats.callbacks_failed++;
      platform.callbacksDropped++;
      return;
    }
    const timer = setTimeout(() => { platform.timers.delete(timer); fn(); }, delayMs);
    platform.timers.add(timer);
  }

  // Statuses only move forward: a read reported through the control API makes a scheduled
  // `delivered` for the same message moot, as the platforms never report a step backwards.
  const STATUS_RANK = { accepted: 0, sent: 1, delivered: 2, read: 3, failed: 4 };
  const advances = (entry, status) => STATUS_RANK[status] > STATUS_RANK[entry.status];

  // ---- WhatsApp -------------------------------------------------------------------------------

  function whatsappEnvelope(phoneNumberId, value) {
    return {
      object: 'whatsapp_business_account',
      entry: [{
        id: WABA_ID,
        changes: [{
          field: 'messages',
          value: {
            messaging_product: 'whatsapp',
            metadata: { display_phone_number: WHATSAPP_DISPLAY_PHONE, phone_number_id: phoneNumberId },
            ...value,
          },
        }],
      }],
    };
  }

  function whatsappStatus(entry, status, extra = {}) {
    entry.status = status;
    const statusItem = {
      id: entry.rec.id, status, timestamp: String(Math.floor(Date.now() / 1000)),
      recipient_id: entry.waId, ...extra,
    };
    return sendGraphWebhook(platforms.whatsapp, `whatsapp:${entry.waId}`,
      whatsappEnvelope(entry.phoneNumberId, { statuses: [statusItem] }));
  }

  function validateWhatsappSend(body) {
    const bad = (details) => ({ error: details });
    if (body.messaging_product !== 'whatsapp') return bad('messaging_product must be "whatsapp"');
    if (body.recipient_type !== undefined && body.recipient_type !== 'individual') {
      return bad('recipient_type must be "individual"');
    }
    if (typeof body.to !== 'string' || !/^\+?\d{6,15}$/.test(body.to)) {
      return bad('to must be a phone number of 6 to 15 digits, optionally with a leading +');
    }
    const replyTo = body.context?.message_id;
    if (body.context !== undefined && typeof replyTo !== 'string') return bad('context.message_id must be a string');
    if (body.type === 'text') {
      if (typeof body.text?.body !== 'string' || body.text.body.length === 0) return bad('text.body is required');
      return { type: 'text', text: body.text.body, document: null, replyTo };
    }
    if (body.type === 'document') {
      const d = body.document;
      if (typeof d?.link !== 'string' || !isHttpUrl(d.link)) return bad('document.link must be an http(s) URL');
      for (const k of ['filename', 'caption']) {
        if (d[k] !== undefined && typeof d[k] !== 'string') return bad(`document.${k} must be a string`);
      }
      const document = { link: d.link };
      if (d.filename !== undefined) document.filename = d.filename;
      if (d.caption !== undefined) document.caption = d.caption;
      return { type: 'document', text: d.caption ?? null, document, replyTo };
    }
    return bad(`type must be "text" or "document" (the simulation supports no other type), got ${JSON.stringify(body.type)}`);
  }

  function acceptWhatsapp(phoneNumberId, body, ok) {
    const p = platforms.whatsapp;
    const waId = body.to.replace(/^\+/, '');
    const id = `wamid.${randomToken(24)}`;
    const rec = { id, to: body.to, type: ok.type, text: ok.text, document: ok.document, reply_to: ok.replyTo ?? null, at_ms: Date.now() };
    const entry = { rec, status: 'accepted', waId, phoneNumberId };
    p.sent.push(entry);
    p.stats.sends_accepted++;
    lastPhoneNumberId = phoneNumberId;
    // Delays are fixed at acceptance, so a later config change does not reorder this message.
    const { callback_delay_ms: cd, read_delay_ms: rd } = p.config;
    schedule(p, cd, () => { if (advances(entry, 'sent')) whatsappStatus(entry, 'sent'); });
    schedule(p, 2 * cd, () => { if (advances(entry, 'delivered')) whatsappStatus(entry, 'delivered'); });
    if (rd >= 0) schedule(p, 2 * cd + rd, () => { if (advances(entry, 'read')) whatsappStatus(entry, 'read'); });
    return { messaging_product: 'whatsapp', contacts: [{ input: body.to, wa_id: waId }], messages: [{ id }] };
  }

  async function whatsappInbound(body) {
    const p = platforms.whatsapp;
    if (typeof body.from !== 'string' || !/^\+?\d{6,15}$/.test(body.from)) return [400, { error: 'from must be 6 to 15 digits' }];
    if (typeof body.text !== 'string' || body.text.length === 0) return [400, { error: 'text must be a non-empty string' }];
    for (const k of ['name', 'context_id', 'phone_number_id']) {
      if (body[k] !== undefined && typeof body[k] !== 'string') return [400, { error: `${k} must be a string` }];
    }
    const from = body.from.replace(/^\+/, '');
    const id = `wamid.${randomToken(24)}`;
    const message = { from, id, timestamp: String(Math.floor(Date.now() / 1000)), type: 'text', text: { body: body.text } };
    if (body.context_id !== undefined) message.context = { id: body.context_id };
    p.stats.inbound++;
    const payload = whatsappEnvelope(body.phone_number_id ?? lastPhoneNumberId, {
      contacts: [{ profile: { name: body.name ?? 'Sim User' }, wa_id: from }],
      messages: [message],
    });
    const r = await sendGraphWebhook(p, `whatsapp:${from}`, payload);
    return [200, { id, callback_status: r.status, attempts: r.attempts }];
  }

  // ---- Instagram ------------------------------------------------------------------------------

  function instagramWebhook(igUserId, orderKey, item) {
    const now = Date.now();
    return sendGraphWebhook(platforms.instagram, orderKey, {
      object: 'instagram',
      entry: [{ id: igUserId, time: now, messaging: [{ timestamp: now, ...item }] }],
    });
  }

  function instagramReceipt(entry, kind) {
    entry.status = kind;
    const now = Date.now();
    const receipt = kind === 'delivered' ? { delivery: { mids: [entry.rec.id], watermark: now } } : { read: { mid: entry.rec.id } };
    return instagramWebhook(entry.igUserId, `instagram:${entry.rec.to}`, {
      sender: { id: entry.rec.to }, recipient: { id: entry.igUserId }, timestamp: now, ...receipt,
    });
  }

  function validateInstagramSend(body) {
    const bad = (details) => ({ error: details });
    let rid = body.recipient?.id;
    if (typeof rid === 'number' && Number.isSafeInteger(rid)) rid = String(rid);
    if (typeof rid !== 'string' || rid.length === 0) return bad('param recipient must be non-empty');
    const m = body.message;
    if (typeof m !== 'object' || m === null) return bad('param message must be non-empty');
    const hasText = m.text !== undefined;
    const hasAttachment = m.attachment !== undefined;
    if (hasText === hasAttachment) return bad('message must have exactly one of text or attachment');
    if (hasText) {
      if (typeof m.text !== 'string' || m.text.length === 0) return bad('message.text must be a non-empty string');
      return { to: rid, type: 'text', text: m.text, document: null };
    }
    const a = m.attachment;
    if (!['file', 'image', 'audio', 'video'].includes(a?.type)) return bad('message.attachment.type must be file, image, audio or video');
    if (typeof a.payload?.url !== 'string' || !isHttpUrl(a.payload.url)) return bad('message.attachment.payload.url must be an http(s) URL');
    return { to: rid, type: a.type, text: null, document: { url: a.payload.url } };
  }

  function acceptInstagram(pathId, ok) {
    const p = platforms.instagram;
    const igUserId = pathId === 'me' ? lastIgUserId : pathId;
    const id = `mid.${randomToken(24)}`;
    const rec = { id, to: ok.to, type: ok.type, text: ok.text, document: ok.document, reply_to: null, at_ms: Date.now() };
    const entry = { rec, status: 'accepted', igUserId };
    p.sent.push(entry);
    p.stats.sends_accepted++;
    if (pathId !== 'me') lastIgUserId = pathId;
    const { callback_delay_ms: cd, read_delay_ms: rd } = p.config;
    schedule(p, cd, () => { if (advances(entry, 'delivered')) instagramReceipt(entry, 'delivered'); });
    if (rd >= 0) schedule(p, cd + rd, () => { if (advances(entry, 'read')) instagramReceipt(entry, 'read'); });
    return { recipient_id: ok.to, message_id: id };
  }

  async function instagramInbound(body) {
    const p = platforms.instagram;
    if (typeof body.from !== 'string' || body.from.length === 0) return [400, { error: 'from must be a non-empty IGSID string' }];
    if (typeof body.text !== 'string' || body.text.length === 0) return [400, { error: 'text must be a non-empty string' }];
    for (const k of ['reply_to', 'ig_user_id']) {
      if (body[k] !== undefined && typeof body[k] !== 'string') return [400, { error: `${k} must be a string` }];
    }
    const igUserId = body.ig_user_id ?? lastIgUserId;
    const mid = `mid.${randomToken(24)}`;
    const message = { mid, text: body.text };
    if (body.reply_to !== undefined) message.reply_to = { mid: body.reply_to };
    p.stats.inbound++;
    const r = await instagramWebhook(igUserId, `instagram:${body.from}`, {
      sender: { id: body.from }, recipient: { id: igUserId }, timestamp: Date.now(), message,
    });
    return [200, { id: mid, callback_status: r.status, attempts: r.attempts }];
  }

  // ---- Telegram -------------------------------------------------------------------------------

  const TELEGRAM_STATUS_TEXT = { 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };
  const tgError = (code, description, extra) => [code, { ok: false, error_code: code, description, ...extra }];
  const tgOk = (result, extra) => [200, { ok: true, result, ...extra }];

  // chat_id: an integer (number or decimal string) or "@channelname", as the Bot API accepts.
  function parseChatId(v) {
    if (typeof v === 'number' && Number.isSafeInteger(v)) return { id: v, type: 'private', to: String(v) };
    if (typeof v === 'string' && /^-?\d{1,16}$/.test(v) && Number.isSafeInteger(Number(v))) return { id: Number(v), type: 'private', to: v };
    if (typeof v === 'string' && /^@[A-Za-z][A-Za-z0-9_]{3,31}$/.test(v)) {
      // Only channels (and supergroups) have @names a bot can send to; the real API answers
      // with the numeric id, which we derive from the name so that it is stable.
      const h = crypto.createHash('sha256').update(v.toLowerCase()).digest().readUIntBE(0, 5);
      return { id: -(1_000_000_000_000 + h), type: 'channel', username: v.slice(1), to: v };
    }
    return null;
  }
  const chatObject = (c) => (c.type === 'channel' ? { id: c.id, title: c.username, username: c.username, type: 'channel' } : { id: c.id, type: 'private' });

  function replyToParam(params) {
    const raw = params.reply_to_message_id ?? params.reply_parameters?.message_id;
    if (raw === undefined) return { value: undefined };
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n <= 0) return { error: 'Bad Request: message to be replied not found' };
    return { value: n };
  }

  function pushUpdate(update) {
    if (tg.webhook) {
      pushToWebhook(update);
      return;
    }
    tg.updates.push(update);
    if (tg.updates.length > TELEGRAM_UPDATES_MAX) {
      tg.updates.shift();
      tg.updatesDropped++;
    }
    wakeWaiter();
  }

  function pushToWebhook(update) {
    const p = platforms.telegram;
    if (p.pendingCallbacks >= PENDING_CALLBACKS_MAX) {
      p.stats.callbacks_failed++;
      p.callbacksDropped++;
      return;
    }
    const { url, secret } = tg.webhook;
    const headers = { 'content-type': 'application/json', 'user-agent': 'chat4all-provider-sim', [SIM_HEADER]: SIM_HEADER_VALUE };
    if (secret) headers['x-telegram-bot-api-secret-token'] = secret;
    p.pendingCallbacks++;
    // One chain for the bot: Telegram delivers a bot's updates in update_id order.
    inOrder('telegram:webhook', () => deliver(p, url, JSON.stringify(update), headers))
      .finally(() => { p.pendingCallbacks--; });
  }

  function wakeWaiter() {
    const w = tg.waiter;
    if (!w || tg.updates.length === 0) return;
    tg.waiter = null;
    clearTimeout(w.timer);
    w.answer(tgOk(tg.updates.slice(0, w.limit)));
  }

  function endWaiter(result) {
    const w = tg.waiter;
    if (!w) return;
    tg.waiter = null;
    clearTimeout(w.timer);
    w.answer(result);
  }

  const CONFLICT_WEBHOOK = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";

  // Resolves to [status, body]. `res` is needed only to notice a long poller going away.
  function telegramGetUpdates(params, res) {
    if (tg.webhook) return tgError(409, CONFLICT_WEBHOOK);
    const offset = params.offset === undefined ? 0 : Number(params.offset);
    const limitRaw = params.limit === undefined ? GET_UPDATES_LIMIT_MAX : Number(params.limit);
    const timeoutRaw = params.timeout === undefined ? 0 : Number(params.timeout);
    if (!Number.isSafeInteger(offset)) return tgError(400, 'Bad Request: invalid offset');
    if (!Number.isFinite(limitRaw) || !Number.isFinite(timeoutRaw)) return tgError(400, 'Bad Request: invalid limit or timeout');
    const limit = Math.min(GET_UPDATES_LIMIT_MAX, Math.max(1, Math.trunc(limitRaw)));
    const timeoutS = Math.min(GET_UPDATES_TIMEOUT_S_MAX, Math.max(0, Math.trunc(timeoutRaw)));
    // An offset confirms every earlier update; a negative one keeps only the last -offset.
    if (offset > 0) {
      let i = 0;
      while (i < tg.updates.length && tg.updates[i].update_id < offset) i++;
      if (i > 0) tg.updates.splice(0, i);
    } else if (offset < 0 && tg.updates.length > -offset) {
      tg.updates.splice(0, tg.updates.length + offset);
    }
    if (tg.updates.length > 0 || timeoutS === 0) return tgOk(tg.updates.slice(0, limit));
    // Long poll. The real API allows one at a time and ends the older one with a conflict.
    endWaiter(tgError(409, 'Conflict: terminated by other getUpdates request; make sure that only one bot instance is running'));
    return new Promise((resolve) => {
      const w = { limit, answer: resolve };
      w.timer = setTimeout(() => { if (tg.waiter === w) tg.waiter = null; resolve(tgOk([])); }, timeoutS * 1000);
      tg.waiter = w;
      res.on('close', () => { if (tg.waiter === w) { tg.waiter = null; clearTimeout(w.timer); } });
    });
  }

  function telegramSetWebhook(params) {
    const url = params.url ?? '';
    if (typeof url !== 'string') return tgError(400, 'Bad Request: bad webhook: URL must be a string');
    const drop = params.drop_pending_updates === true || params.drop_pending_updates === 'true';
    if (url === '') return telegramDeleteWebhook(params); // as the real API does with an empty url
    if (!isHttpUrl(url)) return tgError(400, 'Bad Request: bad webhook: invalid URL');
    const secret = params.secret_token;
    if (secret !== undefined && (typeof secret !== 'string' || !/^[A-Za-z0-9_-]{1,256}$/.test(secret))) {
      return tgError(400, 'Bad Request: secret token contains unallowed characters');
    }
    tg.webhook = { url, secret: secret ?? null };
    endWaiter(tgError(409, CONFLICT_WEBHOOK));
    // Updates nobody fetched yet go to the new webhook, in order, unless asked to drop them.
    const pending = tg.updates;
    tg.updates = [];
    if (!drop) pending.forEach(pushToWebhook);
    return tgOk(true, { description: 'Webhook was set' });
  }

  function telegramDeleteWebhook(params) {
    const was = tg.webhook !== null;
    tg.webhook = null;
    if (params.drop_pending_updates === true || params.drop_pending_updates === 'true') tg.updates = [];
    return tgOk(true, { description: was ? 'Webhook was deleted' : 'Webhook is already deleted' });
  }

  function telegramSend(method, params) {
    const p = platforms.telegram;
    if (params.chat_id === undefined || params.chat_id === '') return tgError(400, 'Bad Request: chat_id is empty');
    const chat = parseChatId(params.chat_id);
    if (!chat) return tgError(400, 'Bad Request: chat not found');
    const reply = replyToParam(params);
    if (reply.error) return tgError(400, reply.error);
    const message = { message_id: 0, from: botUser, date: Math.floor(Date.now() / 1000), chat: chatObject(chat) };
    if (reply.value !== undefined) message.reply_to_message = { message_id: reply.value, chat: chatObject(chat) };
    let rec;
    if (method === 'sendmessage') {
      const text = params.text === undefined || params.text === null ? '' : String(params.text);
      if (text.length === 0) return tgError(400, 'Bad Request: message text is empty');
      if (text.length > TELEGRAM_TEXT_CHARS_MAX) return tgError(400, 'Bad Request: message is too long');
      message.text = text;
      rec = { type: 'text', text, document: null };
    } else {
      const doc = params.document;
      if (typeof doc !== 'string' || doc.length === 0) return tgError(400, 'Bad Request: there is no document in the request');
      let document;
      if (isHttpUrl(doc)) {
        const name = decodeURIComponent(new URL(doc).pathname.split('/').pop() || '') || 'document';
        document = { file_id: `BQACAgSim${randomToken(24)}`, file_unique_id: `AgADSim${randomToken(6)}`, file_name: name };
        tg.fileNames.set(document.file_id, name);
        if (tg.fileNames.size > TELEGRAM_FILE_NAMES_MAX) tg.fileNames.delete(tg.fileNames.keys().next().value);
      } else {
        // A file_id: the real API resends the stored file; we remember names of files we issued.
        document = { file_id: doc, file_unique_id: `AgADSim${randomToken(6)}`, file_name: tg.fileNames.get(doc) ?? 'document' };
      }
      message.document = document;
      const caption = params.caption === undefined ? null : String(params.caption);
      if (caption !== null) message.caption = caption;
      rec = { type: 'document', text: caption, document: { ...document, source: doc } };
    }
    message.message_id = tg.nextMessageId++;
    p.sent.push({ rec: { id: String(message.message_id), to: chat.to, ...rec, reply_to: reply.value ?? null, at_ms: Date.now() }, status: 'accepted' });
    p.stats.sends_accepted++;
    return tgOk(message);
  }

  function telegramInbound(body) {
    const p = platforms.telegram;
    const chatId = body.chat_id;
    if (!Number.isSafeInteger(chatId)) return [400, { error: 'chat_id must be an integer' }];
    if (typeof body.text !== 'string' || body.text.length === 0) return [400, { error: 'text must be a non-empty string' }];
    if (body.first_name !== undefined && typeof body.first_name !== 'string') return [400, { error: 'first_name must be a string' }];
    if (body.reply_to_message_id !== undefined && !(Number.isSafeInteger(body.reply_to_message_id) && body.reply_to_message_id > 0)) {
      return [400, { error: 'reply_to_message_id must be a positive integer' }];
    }
    const firstName = body.first_name ?? 'Sim User';
    const message = {
      message_id: tg.nextMessageId++,
      from: { id: chatId, is_bot: false, first_name: firstName },
      chat: { id: chatId, first_name: firstName, type: 'private' },
      date: Math.floor(Date.now() / 1000),
      text: body.text,
    };
    if (body.reply_to_message_id !== undefined) message.reply_to_message = { message_id: body.reply_to_message_id };
    const update = { update_id: tg.nextUpdateId++, message };
    p.stats.inbound++;
    pushUpdate(update);
    return [200, { update_id: update.update_id, message_id: message.message_id }];
  }

  // ---- availability (latency, outages, rate limits, injected failures) -------------------------

  // Every send waits latency ± jitter, then may be refused. Returns null when the send may
  // proceed, else the refusal as 'rate_limited' | { status } for the caller to shape.
  async function gate(platform) {
    const c = platform.config;
    const waitMs = Math.max(0, c.latency_ms + (rand() * 2 - 1) * c.jitter_ms);
    const failureDraw = rand(); // drawn on every send so the stream does not depend on config
    if (waitMs > 0) await sleep(waitMs);
    if (c.rate_limited) return 'rate_limited';
    if (c.down) return { status: c.down_status };
    if (failureDraw < c.failure_rate) return { status: platform.name === 'telegram' ? 502 : 503 };
    return null;
  }

  // ---- HTTP -----------------------------------------------------------------------------------

  const graphError = (status, code, message, extra = {}) =>
    [status, { error: { message, type: 'OAuthException', code, ...extra, fbtrace_id: randomToken(16) } }];
  const graphInvalid = (details) => graphError(400, 100, '(#100) Invalid parameter', { error_data: { details } });

  function parseJson(buf) {
    if (buf.length === 0) return { error: 'request body is empty; a JSON object is required' };
    try {
      const value = JSON.parse(buf.toString('utf8'));
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return { error: 'request body must be a JSON object' };
      return { value };
    } catch (err) {
      return { error: `request body is not valid JSON (${err.message})` };
    }
  }

  async function handleGraphSend(req, pathId, buf) {
    const parsed = parseJson(buf);
    // WhatsApp and Instagram share the Graph path shape; the body (or "me") tells them apart.
    const v = parsed.value;
    const isInstagram = pathId === 'me' || (v !== undefined && v.messaging_product === undefined && (v.recipient !== undefined || v.message !== undefined));
    const p = platforms[isInstagram ? 'instagram' : 'whatsapp'];
    const answer = await (async () => {
      const auth = req.headers.authorization ?? '';
      if (!/^Bearer\s+\S+/.test(auth)) {
        return graphError(401, 190, 'Invalid OAuth access token - Cannot parse access token');
      }
      const refusal = await gate(p);
      if (refusal === 'rate_limited') return [...graphError(429, 130429, '(#130429) Rate limit hit'), { 'retry-after': '1' }];
      if (refusal) return graphError(refusal.status, 2, '(#2) Service temporarily unavailable');
      if (parsed.error) return graphInvalid(parsed.error);
      if (isInstagram) {
        const ok = validateInstagramSend(v);
        return ok.error ? graphInvalid(ok.error) : [200, acceptInstagram(pathId, ok)];
      }
      const ok = validateWhatsappSend(v);
      return ok.error ? graphInvalid(ok.error) : [200, acceptWhatsapp(pathId, v, ok)];
    })();
    if (answer[0] !== 200) p.stats.sends_failed++;
    return answer;
  }

  function telegramParams(req, url, buf) {
    const params = Object.fromEntries(url.searchParams);
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (buf.length === 0) return { params };
    if (type === 'application/json') {
      const parsed = parseJson(buf);
      if (parsed.error) return { error: `Bad Request: ${parsed.error}` };
      return { params: { ...params, ...parsed.value } };
    }
    if (type === 'application/x-www-form-urlencoded') {
      return { params: { ...params, ...Object.fromEntries(new URLSearchParams(buf.toString('utf8'))) } };
    }
    if (type === 'multipart/form-data') {
      return { error: 'Bad Request: multipart/form-data uploads are not supported by the simulation; pass a URL or file_id' };
    }
    return { error: `Bad Request: unsupported content type "${type}"; use JSON, a form or the query string` };
  }

  async function handleTelegram(req, url, token, methodName, buf, res) {
    if (opts.telegram_token !== null && token !== opts.telegram_token) return tgError(401, 'Unauthorized');
    const method = methodName.toLowerCase(); // Bot API method names are case-insensitive
    const known = ['getme', 'sendmessage', 'senddocument', 'getupdates', 'setwebhook', 'deletewebhook', 'getwebhookinfo'];
    if (!known.includes(method)) return tgError(404, 'Not Found');
    const { params, error } = telegramParams(req, url, buf);
    if (error) return tgError(400, error);
    switch (method) {
      case 'getme': return tgOk(botUser);
      case 'getupdates': return telegramGetUpdates(params, res);
      case 'setwebhook': return telegramSetWebhook(params);
      case 'deletewebhook': return telegramDeleteWebhook(params);
      case 'getwebhookinfo':
        return tgOk({ url: tg.webhook?.url ?? '', has_custom_certificate: false, pending_update_count: tg.updates.length });
      default: {
        const p = platforms.telegram;
        const refusal = await gate(p);
        let answer;
        if (refusal === 'rate_limited') {
          answer = [...tgError(429, 'Too Many Requests: retry after 1', { parameters: { retry_after: 1 } }), { 'retry-after': '1' }];
        } else if (refusal) {
          answer = tgError(refusal.status, TELEGRAM_STATUS_TEXT[refusal.status] ?? 'Bad Gateway');
        } else {
          answer = telegramSend(method, params);
        }
        if (answer[0] !== 200) p.stats.sends_failed++;
        return answer;
      }
    }
  }

  // ---- control API ----------------------------------------------------------------------------

  const CONFIG_CHECKS = {
    latency_ms: (v) => typeof v === 'number' && v >= 0,
    jitter_ms: (v) => typeof v === 'number' && v >= 0,
    failure_rate: (v) => typeof v === 'number' && v >= 0 && v <= 1,
    down: (v) => typeof v === 'boolean',
    down_status: (v) => Number.isInteger(v) && v >= 400 && v <= 599,
    rate_limited: (v) => typeof v === 'boolean',
    callback_delay_ms: (v) => typeof v === 'number' && v >= 0,
    read_delay_ms: (v) => typeof v === 'number' && Number.isFinite(v),
  };

  function applyConfig(p, body) {
    // Check everything before changing anything, so a bad request changes nothing.
    for (const [k, v] of Object.entries(body)) {
      if (!(k in CONFIG_CHECKS)) return [400, { error: `unknown config key "${k}"; known: ${Object.keys(CONFIG_CHECKS).join(', ')}` }];
      if (!CONFIG_CHECKS[k](v)) return [400, { error: `bad value for ${k}: ${JSON.stringify(v)}` }];
    }
    Object.assign(p.config, body);
    log(`${p.name} config ${JSON.stringify(p.config)}`);
    return [200, p.config];
  }

  async function controlRead(p, body, status) {
    if (p.name === 'telegram') return [400, { error: 'the Telegram Bot API has no read reports; nothing to simulate' }];
    if (typeof body.id !== 'string') return [400, { error: 'id (the provider message id) is required' }];
    const entry = p.sent.get(body.id);
    const norm = (s) => (p.name === 'whatsapp' ? String(s).replace(/^\+/, '') : String(s));
    if (!entry || (body.to !== undefined && norm(body.to) !== norm(entry.rec.to))) {
      return [404, { error: `no sent ${p.name} message ${body.id}${body.to !== undefined ? ` to ${body.to}` : ''}` }];
    }
    let r;
    if (p.name === 'instagram') r = await instagramReceipt(entry, 'read');
    else if (status === 'read') r = await whatsappStatus(entry, 'read');
    else {
      r = await whatsappStatus(entry, 'failed', {
        errors: [{ code: 131026, title: 'Message undeliverable', message: 'Message undeliverable', error_data: { details: 'Simulated delivery failure.' } }],
      });
    }
    return [200, { id: entry.rec.id, callback_status: r.status, attempts: r.attempts }];
  }

  function stats() {
    const out = {};
    for (const name of PLATFORMS) {
      const p = platforms[name];
      out[name] = { ...p.stats, sent_stored: p.sent.size, sent_dropped: p.sent.dropped, callbacks_dropped: p.callbacksDropped, callbacks_pending: p.timers.size + p.pendingCallbacks };
    }
    out.telegram.updates_queued = tg.updates.length;
    out.telegram.updates_dropped = tg.updatesDropped;
    return out;
  }

  function reset() {
    generation++; // in-flight callbacks stop retrying
    for (const name of PLATFORMS) {
      const p = platforms[name];
      p.timers.forEach(clearTimeout);
      p.timers.clear();
      p.sent.clear();
      resetStats(p);
    }
    endWaiter(tgOk([]));
    tg.updates = [];
    tg.updatesDropped = 0;
    tg.webhook = null;
    tg.fileNames.clear();
    return [200, { ok: true }];
  }

  async function handleControl(req, url, buf) {
    const path = url.pathname;
    const method = req.method;
    if (path === '/_sim/health' && method === 'GET') return [200, { ok: true, simulation: 'chat4all provider-sim' }];
    if (path === '/_sim/stats' && method === 'GET') return [200, stats()];
    if (path === '/_sim/reset' && method === 'POST') return reset();
    const m = /^\/_sim\/(whatsapp|instagram|telegram)\/(sent|config|read|inbound|fail)$/.exec(path);
    if (!m) return [404, { error: `no such endpoint in the simulation: ${method} ${path}` }];
    const p = platforms[m[1]];
    const action = m[2];
    if (action === 'sent' && method === 'GET') {
      const to = url.searchParams.get('to');
      const norm = (s) => (p.name === 'whatsapp' ? s.replace(/^\+/, '') : s);
      const messages = [];
      for (const e of p.sent.entries()) if (to === null || norm(e.rec.to) === norm(to)) messages.push(e.rec);
      return [200, { messages }];
    }
    if (action === 'config' && method === 'GET') return [200, p.config];
    if (method !== 'POST' || action === 'sent') return [405, { error: `${method} is not allowed on ${path}` }];
    if (action === 'fail' && p.name !== 'whatsapp') return [404, { error: `no such endpoint in the simulation: ${method} ${path}` }];
    const parsed = parseJson(buf);
    if (parsed.error) return [400, { error: parsed.error }];
    const body = parsed.value;
    switch (action) {
      case 'config': return applyConfig(p, body);
      case 'read': return controlRead(p, body, 'read');
      case 'fail': return controlRead(p, body, 'failed');
      default:
        if (p.name === 'whatsapp') return whatsappInbound(body);
        if (p.name === 'instagram') return instagramInbound(body);
        return telegramInbound(body);
    }
  }

  // Read the body up to the bound. Past it, keep reading and discarding so that the client
  // receives the 413 instead of a connection reset halfway through its upload.
  function readBody(req) {
    return new Promise((resolve, reject) => {
      const chunks = [];
      let bytes = 0;
      let tooLarge = false;
      req.on('data', (c) => {
        bytes += c.length;
        if (bytes > BODY_BYTES_MAX) { tooLarge = true; chunks.length = 0; return; }
        chunks.push(c);
      });
      req.on('end', () => resolve(tooLarge ? null : Buffer.concat(chunks)));
      req.on('error', reject);
    });
  }

  function send(res, status, body, extraHeaders = {}) {
    if (res.headersSent || res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      [SIM_HEADER]: SIM_HEADER_VALUE,
      ...extraHeaders,
    });
    res.end(text);
  }

  async function route(req, res) {
    const url = new URL(req.url, 'http://provider-sim');
    const path = url.pathname;
    const tgMatch = /^\/bot([^/]+)\/([A-Za-z0-9_]+)\/?$/.exec(path);
    const graphMatch = /^\/(v\d+(?:\.\d+)?)\/([^/]+)\/messages\/?$/.exec(path);
    const buf = await readBody(req);
    if (buf === null) {
      const message = `request body exceeds ${BODY_BYTES_MAX} bytes`;
      if (tgMatch) return [...tgError(413, 'Request Entity Too Large'), { connection: 'close' }];
      if (graphMatch) return [...graphError(413, 1, message), { connection: 'close' }];
      return [413, { error: message }, { connection: 'close' }];
    }
    if (path.startsWith('/_sim/')) return handleControl(req, url, buf);
    if (tgMatch) {
      if (req.method !== 'GET' && req.method !== 'POST') return tgError(405, 'Method Not Allowed');
      return handleTelegram(req, url, tgMatch[1], tgMatch[2], buf, res);
    }
    if (graphMatch && req.method === 'POST') return handleGraphSend(req, decodeURIComponent(graphMatch[2]), buf);
    return [404, { error: `no such endpoint in the simulation: ${req.method} ${path}` }];
  }

  const server = http.createServer(async (req, res) => {
    const started = Date.now();
    let answer;
    try {
      answer = await route(req, res);
    } catch (err) {
      console.error('provider-sim: internal error:', err);
      answer = [500, { error: `internal error in the simulation: ${err.message}` }];
    }
    const [status, body, headers] = answer;
    send(res, status, body, headers);
    log(`${req.method} ${req.url} ${status} ${Date.now() - started}ms`);
  });
  server.keepAliveTimeout = 5_000;

  function shutdown() {
    if (shuttingDown) return;
    shuttingDown = true;
    shutdownController.abort();
    for (const name of PLATFORMS) platforms[name].timers.forEach(clearTimeout);
    endWaiter(tgOk([]));
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), SHUTDOWN_GRACE_MS).unref();
  }

  return { server, seed, shutdown };
}

// ---------------------------------------------------------------------------------------------
// main

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  console.error(`provider-sim: ${err.message}\n${USAGE}`);
  process.exit(2);
}
const sim = createSimulator(opts);
sim.server.on('error', (err) => {
  console.error(`provider-sim: cannot listen on ${opts.host}:${opts.port}: ${err.message}`);
  process.exit(1);
});
sim.server.listen(opts.port, opts.host, () => {
  const { port } = sim.server.address();
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  console.error(`provider-sim: a SIMULATION of the WhatsApp Cloud API, Instagram Messaging and the Telegram Bot API ` +
    `for Chat4All tests and demos, not the real platforms (seed ${sim.seed})`);
  console.log(`provider-sim listening on http://${host}:${port}`);
});
process.on('SIGTERM', sim.shutdown);
process.on('SIGINT', sim.shutdown);

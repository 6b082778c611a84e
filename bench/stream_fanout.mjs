#!/usr/bin/env node
// bench/stream_fanout.mjs: fan-out of GET /v1/stream to many WebSockets of one group, and the
// frontend's memory per idle stream. See bench/README.md, "Stream fan-out".
//
// Starts its own copy of topology/local.yaml (same nodes and settings; ports moved by
// --port-offset, data in a temporary folder, stream.connections_max and the per-token request
// rate raised for the setup), then
//   1. idle (first, on a fresh frontend): --idle-streams streams (spread over --idle-users
//      users, in groups of at most 250), nothing sent; the frontend's resident memory (VmRSS)
//      before they open and once all are ready and have resynced, per stream; then closed;
//   2. fan-out: --users users in one group, each with --devices streams; the group's creator
//      sends for --seconds at each rate of --rates (open loop, client-chosen message ids), and
//      every stream's frames are matched to the sends: send-to-frame p50/p90/p99/max over
//      every (stream, message), messages missing on a stream, messages a stream got twice, and
//      the frontend's storage reads (where it counts them) per message frame pushed.
// The cluster is stopped (by pid) at the end, also on failure. Needs `ulimit -n` above
// --idle-streams plus a margin, for this process and the frontend (it inherits it).
//
//   node bench/stream_fanout.mjs [--build-dir build] [--users 250] [--devices 4]
//     [--seconds 10] [--rates 2,50] [--idle-streams 10000] [--idle-users 1000]
//     [--port-offset 20000] [--skip-idle] [--keep]
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// The `ws` client the API tests install (tests/api/package.json: npm ci there).
const WebSocket = createRequire(path.join(repo, 'tests/api/package.json'))('ws');

const options = {
  buildDir: path.join(repo, 'build'), users: 250, devices: 4, seconds: 10, rates: [2, 50],
  idleStreams: 10000, idleUsers: 1000, portOffset: 20000, skipIdle: false, keep: false,
};
for (let i = 2; i < process.argv.length; ++i) {
  const arg = process.argv[i];
  const next = () => process.argv[++i];
  if (arg === '--build-dir') options.buildDir = path.resolve(next());
  else if (arg === '--users') options.users = Number(next());
  else if (arg === '--devices') options.devices = Number(next());
  else if (arg === '--seconds') options.seconds = Number(next());
  else if (arg === '--rates') options.rates = next().split(',').map(Number);
  else if (arg === '--idle-streams') options.idleStreams = Number(next());
  else if (arg === '--idle-users') options.idleUsers = Number(next());
  else if (arg === '--port-offset') options.portOffset = Number(next());
  else if (arg === '--skip-idle') options.skipIdle = true;
  else if (arg === '--keep') options.keep = true;
  else {
    console.error(`stream_fanout: unknown option ${arg} (see the header of this file)`);
    process.exit(2);
  }
}
if (options.users > 250) {
  console.error('stream_fanout: --users at most 250 (limits.members_max is 256)');
  process.exit(2);
}

const TENANT = 'dev';
const PASSWORD = 'bench-password';
const GROUP_MAX = 250;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'chat4all-fanout-'));
let cluster = null;

function log(text) {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${text}`);
}

// topology/local.yaml with its ports moved, its data here, and the bounds the run needs.
function writeTopology() {
  let text = fs.readFileSync(path.join(repo, 'topology/local.yaml'), 'utf8');
  text = text.replace(/^(\s*data_dir:\s*)\S+/m, `$1${path.join(work, 'var')}`);
  text = text.replace(/(endpoints: \{)([^}]*)(\})/g, (_, open, body, close) =>
    open + body.replace(/(\w+): (\d+)/g, (__, name, port) => `${name}: ${Number(port) + options.portOffset}`) + close);
  text = text.replace(/^(\s*connections_max:\s*)\d+/m, `$1${options.idleStreams + 2000}`);
  text = text.replace(/^(\s*token_requests_per_s:\s*)\d+/m, '$1100000');
  text = text.replace(/^(\s*token_burst:\s*)\d+/m, '$1100000');
  text = text.replace(/^(\s*login_queue_max:\s*)\d+/m, '$11024');
  // The secret file and any other relative path are resolved against the file's folder.
  text = text.replace(/^(\s*token_secret_file:\s*)(\S+)/m, (_, key, file) => key + path.resolve(repo, 'topology', file));
  const file = path.join(work, 'fanout.yaml');
  fs.writeFileSync(file, text);
  return file;
}

const http = { base: `http://127.0.0.1:${8080 + options.portOffset}` };
http.ws = http.base.replace(/^http/, 'ws');

async function call(method, pathname, { token, body, expect } = {}) {
  for (let attempt = 0; ; ++attempt) {
    let response;
    try {
      response = await fetch(http.base + pathname, {
        method,
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      if (attempt > 100) throw error;
      await sleep(200);
      continue;
    }
    const text = await response.text();
    if ([429, 502, 503, 504].includes(response.status) && attempt < 100) {
      await sleep(100 + attempt * 50);
      continue;
    }
    const statuses = Array.isArray(expect) ? expect : [expect];
    if (expect !== undefined && !statuses.includes(response.status))
      throw new Error(`${method} ${pathname}: ${response.status} ${text.slice(0, 300)}`);
    return { status: response.status, json: text ? JSON.parse(text) : null };
  }
}

async function startCluster() {
  const topology = writeTopology();
  const binary = path.join(options.buildDir, 'chat4all');
  const out = fs.openSync(path.join(work, 'cluster.log'), 'a');
  cluster = spawn(binary, ['up', topology], { stdio: ['ignore', out, out], detached: true });
  log(`cluster: ${binary} up ${topology} (pid ${cluster.pid}, log ${path.join(work, 'cluster.log')})`);
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`${http.base}/v1/auth/token`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ grant_type: 'client_credentials', tenant_id: TENANT, client_id: 'dev-admin', client_secret: 'chat4all-dev' }),
      });
      if (r.status === 200) {
        // Storage must have leaders too: a user listing goes through them.
        const admin = (await r.json()).access_token;
        const users = await fetch(`${http.base}/v1/users?limit=1`, { headers: { authorization: `Bearer ${admin}` } });
        if (users.status === 200) return admin;
      }
    } catch { /* not up yet */ }
    await sleep(500);
  }
  throw new Error('the cluster did not answer within 60 s');
}

function stopCluster() {
  if (!cluster || cluster.exitCode !== null) return;
  try { process.kill(cluster.pid, 'SIGTERM'); } catch { /* gone */ }
}

function frontendPid() {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (cmdline.includes('frontend-1') && cmdline.some((part) => part.startsWith(work))) return Number(entry);
    } catch { /* exited */ }
  }
  throw new Error('no frontend process found');
}

// CPU seconds used so far by each node of the cluster (by name) and by this client: on a
// shared machine latency follows the load of others, CPU per message does not.
function cpuSeconds() {
  const used = { client: (process.cpuUsage().user + process.cpuUsage().system) / 1e6 };
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const name = cmdline[cmdline.indexOf('--name') + 1];
      if (!cmdline.includes('--name') || !cmdline.some((part) => part.startsWith(work))) continue;
      const fields = fs.readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1].split(' ');
      const role = name.replace(/-\d+$/, '');
      used[role] = (used[role] ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100;  // utime, stime
    } catch { /* exited */ }
  }
  return used;
}

function residentKiB(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
}

async function makeUsers(admin, count, from = 0) {
  const users = [];
  for (let i = from; i < from + count; ++i) users.push({ id: `fan${i}` });
  let next = 0;
  const worker = async () => {
    while (next < users.length) {
      const user = users[next++];
      await call('POST', '/v1/users', { token: admin, body: { user_id: user.id, password: PASSWORD }, expect: [201, 409] });
      const t = await call('POST', '/v1/auth/token', { body: { grant_type: 'password', tenant_id: TENANT, user_id: user.id, password: PASSWORD }, expect: 200 });
      user.token = t.json.access_token;
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return users;
}

async function makeGroup(users) {
  const members = users.slice(1).map((u) => u.id);
  const r = await call('POST', '/v1/conversations', { token: users[0].token, body: { type: 'group', members, name: 'fanout' }, expect: 201 });
  return r.json.conversation_id;
}

// One stream; `onMessage(frame, receivedAtMs)` for each message frame.
function openStream(token, onMessage) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${http.ws}/v1/stream`, { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false, handshakeTimeout: 60000 });
    let ready = false;
    ws.on('message', (data) => {
      const at = performance.now();
      const frame = JSON.parse(data.toString('utf8'));
      if (frame.type === 'ready') {
        ready = true;
        resolve(ws);
      } else if (frame.type === 'message' && onMessage) {
        onMessage(frame.message, at);
      }
    });
    ws.on('open', () => ws.send(JSON.stringify({ type: 'resume', cursors: {} })));
    ws.on('error', (error) => { if (!ready) reject(error); });
    ws.on('close', (code, reason) => {
      if (!ready) reject(new Error(`closed before ready: ${code} ${reason}`));
      else if (code !== 1000 && code !== 1005) log(`a stream closed: ${code} ${reason}`);
    });
  });
}

async function openMany(count, tokenOf, onMessage, concurrency = 32) {
  const sockets = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      sockets[i] = await openStream(tokenOf(i), onMessage ? (m, at) => onMessage(i, m, at) : null);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return sockets;
}

async function closeAll(sockets) {
  await Promise.all(sockets.map((ws) => new Promise((resolve) => {
    if (ws.readyState !== WebSocket.OPEN) return resolve();
    const timer = setTimeout(() => { ws.terminate(); resolve(); }, 5000);
    ws.once('close', () => { clearTimeout(timer); resolve(); });
    ws.close(1000, 'bench done');
  })));
}

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function metric(name) {
  const port = 8080 + options.portOffset;
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text().catch(() => '');
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

async function fanout(admin) {
  log(`fan-out: ${options.users} users, ${options.devices} streams each`);
  const users = await makeUsers(admin, options.users);
  const conversation = await makeGroup(users);
  const streams = options.users * options.devices;
  const sentAt = new Map();  // message id -> ms (performance.now) just before the POST
  const received = Array.from({ length: streams }, () => new Map());  // stream -> message id -> count
  const latencies = [];
  const sockets = await openMany(streams, (i) => users[Math.floor(i / options.devices)].token, (i, message, at) => {
    if (message.conversation_id !== conversation) return;
    const seen = received[i].get(message.message_id) ?? 0;
    received[i].set(message.message_id, seen + 1);
    const sent = sentAt.get(message.message_id);
    if (seen === 0 && sent !== undefined) latencies.push(at - sent);
  });
  log(`fan-out: ${streams} streams ready`);
  const results = [];
  for (const rate of options.rates) {
    latencies.length = 0;
    for (const r of received) r.clear();
    sentAt.clear();
    const readsBefore = await metric('chat4all_frontend_stream_storage_reads_total');
    const pushedBefore = await metric('chat4all_frontend_stream_messages_pushed_total');
    const cpuBefore = cpuSeconds();
    const ids = [];
    const start = performance.now();
    const sends = [];
    let refused = 0;
    const count = Math.max(1, Math.round(options.seconds * rate));
    for (let k = 0; k < count; ++k) {
      const due = start + (k * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      const id = `fan-${crypto.randomUUID()}`;
      ids.push(id);
      sentAt.set(id, performance.now());
      sends.push(call('POST', '/v1/messages', {
        token: users[0].token, body: { message_id: id, conversation_id: conversation, payload: { type: 'text', text: `fan-out ${rate}/s #${k}` } },
      }).then((r) => { if (r.status !== 202) ++refused; }));
    }
    await Promise.all(sends);
    const expected = streams * ids.length;
    const deadline = performance.now() + 30000;
    const delivered = () => received.reduce((n, r) => n + r.size, 0);
    while (delivered() < expected && performance.now() < deadline) await sleep(100);
    await sleep(1000);  // late duplicates
    let missing = 0;
    let duplicates = 0;
    for (const r of received) {
      for (const id of ids) {
        const n = r.get(id) ?? 0;
        if (n === 0) ++missing;
        else duplicates += n - 1;
      }
    }
    const cpuAfter = cpuSeconds();
    const cpu_ms_per_message = {};
    for (const [role, seconds] of Object.entries(cpuAfter))
      cpu_ms_per_message[role] = ((seconds - (cpuBefore[role] ?? 0)) * 1000) / ids.length;
    latencies.sort((a, b) => a - b);
    const reads = (await metric('chat4all_frontend_stream_storage_reads_total')) - readsBefore;
    const pushed = (await metric('chat4all_frontend_stream_messages_pushed_total')) - pushedBefore;
    const row = {
      rate, messages: ids.length, refused, frames_expected: expected, missing, duplicates,
      p50_ms: percentile(latencies, 50), p90_ms: percentile(latencies, 90), p99_ms: percentile(latencies, 99),
      max_ms: latencies.at(-1), storage_reads: reads, frames_pushed: pushed,
      reads_per_message: reads / ids.length, reads_per_frame: reads / pushed, cpu_ms_per_message,
    };
    results.push(row);
    log(`fan-out ${rate}/s: ${JSON.stringify(row, (k, v) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(4)) : v))}`);
  }
  await closeAll(sockets);
  return results;
}

async function idle(admin) {
  const perUser = Math.ceil(options.idleStreams / options.idleUsers);
  log(`idle: ${options.idleStreams} streams over ${options.idleUsers} users (${perUser} each)`);
  const users = await makeUsers(admin, options.idleUsers, 1000);
  for (let g = 0; g < users.length; g += GROUP_MAX) await makeGroup(users.slice(g, g + GROUP_MAX));
  const pid = frontendPid();
  await sleep(2000);
  const before = residentKiB(pid);
  const sockets = await openMany(options.idleStreams, (i) => users[Math.floor(i / perUser)].token, null, 64);
  log(`idle: ${sockets.length} streams ready`);
  await sleep(5000);  // a few resyncs
  const after = residentKiB(pid);
  const row = {
    streams: sockets.length, frontend_rss_before_mib: before / 1024, frontend_rss_after_mib: after / 1024,
    kib_per_stream: (after - before) / sockets.length,
  };
  log(`idle: ${JSON.stringify(row, (k, v) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(4)) : v))}`);
  await closeAll(sockets);
  return row;
}

let failed = false;
try {
  const limit = Number(execFileSync('bash', ['-c', 'ulimit -n']).toString().trim());
  if (!options.skipIdle && limit < options.idleStreams + 1000)
    throw new Error(`ulimit -n is ${limit}: raise it above ${options.idleStreams + 1000} (or --skip-idle)`);
  log(`machine: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; ulimit -n ${limit}`);
  const admin = await startCluster();
  const results = {};
  if (!options.skipIdle) results.idle = await idle(admin);
  results.fanout = await fanout(admin);
  log(`load after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(JSON.stringify(results));
} catch (error) {
  failed = true;
  console.error(`stream_fanout: ${error.stack ?? error}`);
} finally {
  stopCluster();
  if (cluster && cluster.exitCode === null) await new Promise((resolve) => {
    const timer = setTimeout(() => { try { process.kill(cluster.pid, 'SIGKILL'); } catch { /* gone */ } resolve(); }, 15000);
    cluster.once('exit', () => { clearTimeout(timer); resolve(); });
  });
  if (!options.keep) fs.rmSync(work, { recursive: true, force: true });
  else log(`kept ${work}`);
}
process.exit(failed ? 1 : 0);

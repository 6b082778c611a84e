// stress: N users with WhatsApp or Telegram identities, M messages sent concurrently across
// their conversations with channels ["all"]; measures how fast the API accepts them and how fast
// they reach the (simulated) platforms.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import {
  API, RUN, SIM, adminToken, api, call, checkRunning, createUser, fail, login, options, say,
  show, sim, sleep, stateOf, step,
} from './common.mjs';

const opts = options({ users: 50, messages: 2000, concurrency: 32, wait: 120 });
if (opts.help) {
  console.log('tools/demo/stress [--users N] [--messages M] [--concurrency C] [--wait S]\n' +
    '  --users        users, paired into private conversations (default 50, even, 2..9998)\n' +
    '  --messages     messages to send (default 2000)\n' +
    '  --concurrency  HTTP requests in flight at once (default 32)\n' +
    '  --wait         seconds to wait for the channel deliveries after the last 202 (default 120)');
  process.exit(0);
}
const users = Math.max(2, Math.min(9998, opts.users - (opts.users % 2)));
if (!(opts.messages >= 1) || !(opts.concurrency >= 1)) fail('--messages and --concurrency must be at least 1');

await checkRunning();
console.log(`stress against ${API}, simulated provider at ${SIM} (run ${RUN})`);

// Runs `work(item)` over `items` with at most `limit` at once; resolves when all are done.
async function pool(items, limit, work) {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      await work(items[index], index);
    }
  });
  await Promise.all(workers);
}

step('The machine and the configuration');
const topologyPath = fileURLToPath(new URL('../../../topology/local.yaml', import.meta.url));
let topologyLines = [];
try {
  topologyLines = readFileSync(topologyPath, 'utf8').split('\n');
} catch { /* reported below */ }
const setting = (key) => {
  const line = topologyLines.find((l) => l.trim().startsWith(`${key}:`));
  return line ? line.split(':')[1].split('#')[0].trim() : '?';
};
say(`${os.cpus().length} cores (nproc ${os.availableParallelism?.() ?? os.cpus().length}), ` +
    `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.cpus()[0]?.model || 'unknown cpu'}, node ${process.version}`);
say(`topology/local.yaml: replication_factor ${setting('replication_factor')}, ` +
    `partition_count ${setting('partition_count')}, token_requests_per_s ${setting('token_requests_per_s')}, ` +
    `token_burst ${setting('token_burst')}, whatsapp concurrency ${setting('concurrency')} per connector`);
say('the per-token rate limit would cap one token at ~100 msgs/s: every user sends with its own token');
const simConfig = await call('GET', sim('/_sim/whatsapp/config'));
if (simConfig.status === 200)
  say(`simulator: latency ${simConfig.body.latency_ms ?? '?'} ± ${simConfig.body.jitter_ms ?? '?'} ms per send, ` +
      `failure_rate ${simConfig.body.failure_rate ?? '?'}, down ${simConfig.body.down ?? '?'}`);
say(`this run: ${users} users, ${users / 2} conversations, ${opts.messages} messages, ` +
    `${opts.concurrency} requests in flight`);

step(`${users} users, alternately on WhatsApp and on Telegram`);
const admin = await adminToken();
const base = String(Date.now() % 1e9).padStart(9, '0');
const people = Array.from({ length: users }, (_, i) => {
  const index = String(i).padStart(4, '0');
  return i % 2 === 0
    ? { id: `st-${RUN}-${i}`, channel: 'whatsapp', address: `7${base}${index}` }
    : { id: `st-${RUN}-${i}`, channel: 'telegram', address: `8${base}${index}` };
});
let started = Date.now();
// User creation and login hash or verify an argon2id password (64 MiB each, two at once on the
// server): a few at a time is as fast as it gets.
await pool(people, 4, async (person) => {
  await createUser(admin, person.id, `secret-${person.id}`, [{ channel: person.channel, address: person.address }]);
});
await pool(people, 4, async (person) => {
  person.token = await login(person.id, `secret-${person.id}`);
});
say(`created and logged in in ${((Date.now() - started) / 1000).toFixed(1)} s`);

step(`${users / 2} private conversations, each a WhatsApp user with a Telegram user`);
const conversations = [];
for (let i = 0; i < users; i += 2) {
  const [a, b] = [people[i], people[i + 1]];
  const answer = await call('POST', api('/v1/conversations'),
    { token: a.token, body: { type: 'private', members: [b.id] } });
  if (answer.status !== 200 && answer.status !== 201) fail(`conversation: ${answer.status} ${JSON.stringify(answer.body)}`);
  conversations.push({ id: answer.body.conversation_id, members: [a, b] });
}
say(`${conversations.length} made`);

// Message j goes to conversation j mod C, from either member at random, to the other.
const plan = Array.from({ length: opts.messages }, (_, j) => {
  const conversation = conversations[j % conversations.length];
  const from = Math.random() < 0.5 ? 0 : 1;
  return { j, conversation, sender: conversation.members[from], recipient: conversation.members[1 - from] };
});
const expected = { whatsapp: 0, telegram: 0 };
for (const m of plan) expected[m.recipient.channel] += 1;

const statsBefore = (await call('GET', sim('/_sim/stats'))).body || {};
const counter = (stats, platform, key) => stats?.[platform]?.[key] ?? 0;

step(`Sending ${opts.messages} messages, ${opts.concurrency} at a time, channels ["all"]`);
say(`expected on the platforms: ${expected.whatsapp} WhatsApp sends, ${expected.telegram} Telegram sends`);
const latencies = [];
const outcome = { accepted: 0, failed: 0, rateLimited: 0, retried: 0, statuses: {} };
started = Date.now();
await pool(plan, opts.concurrency, async (m) => {
  const body = { message_id: `st-${RUN}-m${m.j}`, conversation_id: m.conversation.id, channels: ['all'],
                 payload: { type: 'text', text: `stress ${RUN} #${m.j}` } };
  for (let attempt = 1; ; attempt += 1) {
    const sentAt = performance.now();
    const answer = await call('POST', api('/v1/messages'), { token: m.sender.token, body });
    latencies.push(performance.now() - sentAt);
    if (answer.status === 202) { outcome.accepted += 1; return; }
    outcome.statuses[answer.status] = (outcome.statuses[answer.status] || 0) + 1;
    // 429, 503, 504 and no answer are worth another try with the same message_id (safe: the
    // platform deduplicates it); anything else is a failure.
    const retriable = [0, 429, 503, 504].includes(answer.status);
    if (answer.status === 429) outcome.rateLimited += 1;
    if (!retriable || attempt >= 5) { outcome.failed += 1; return; }
    outcome.retried += 1;
    const retryAfterS = Number(answer.headers?.get?.('retry-after')) || 0;
    await sleep(retryAfterS > 0 ? retryAfterS * 1000 : 100 * attempt);
  }
});
const acceptSeconds = (Date.now() - started) / 1000;
latencies.sort((x, y) => x - y);
const percentile = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
say(`${outcome.accepted} accepted (202) in ${acceptSeconds.toFixed(2)} s: ` +
    `${(outcome.accepted / acceptSeconds).toFixed(0)} msgs/s accepted`);
say(`request latency p50 ${percentile(0.5).toFixed(1)} ms, p99 ${percentile(0.99).toFixed(1)} ms, max ${latencies.at(-1)?.toFixed(1)} ms`);
say(`failed ${outcome.failed}, retried ${outcome.retried} (429: ${outcome.rateLimited}), other answers ${JSON.stringify(outcome.statuses)}`);

step(`Waiting (at most ${opts.wait} s) until the simulator has taken every channel send`);
const expectedTotal = expected.whatsapp + expected.telegram;
let reachedAt = null;
let lastShown = 0;
let progress = 0;
const waitDeadline = Date.now() + opts.wait * 1000;
while (Date.now() < waitDeadline) {
  const stats = (await call('GET', sim('/_sim/stats'))).body || {};
  progress = ['whatsapp', 'telegram']
    .reduce((sum, p) => sum + counter(stats, p, 'sends_accepted') - counter(statsBefore, p, 'sends_accepted'), 0);
  if (progress >= expectedTotal) { reachedAt = Date.now(); break; }
  if (Date.now() - lastShown >= 2000) {
    say(`${progress} / ${expectedTotal} sends taken by the simulator (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    lastShown = Date.now();
  }
  await sleep(200);
}
const deliverySeconds = ((reachedAt ?? Date.now()) - started) / 1000;
if (reachedAt)
  say(`all ${expectedTotal} taken ${deliverySeconds.toFixed(2)} s after the first request: ` +
      `${(expectedTotal / deliverySeconds).toFixed(0)} msgs/s end to end ` +
      `(${(deliverySeconds - acceptSeconds).toFixed(2)} s after the last 202)`);
else say(`only ${progress} / ${expectedTotal} after waiting ${opts.wait} s`);

step('Counting what arrived, message by message');
const arrived = {};
for (const platform of ['whatsapp', 'telegram']) {
  const list = await call('GET', sim(`/_sim/${platform}/sent`), { timeoutMs: 60000 });
  const prefix = `stress ${RUN} #`;
  const counts = new Map();
  for (const message of list.body?.messages || [])
    if (typeof message.text === 'string' && message.text.startsWith(prefix))
      counts.set(message.text, (counts.get(message.text) || 0) + 1);
  const duplicates = [...counts.values()].reduce((sum, n) => sum + n - 1, 0);
  arrived[platform] = { unique: counts.size, duplicates };
  say(`${platform}: ${counts.size} of ${expected[platform]} distinct messages, ${duplicates} sent twice or more`);
}
const statsAfter = (await call('GET', sim('/_sim/stats'))).body || {};
const simFailed = ['whatsapp', 'telegram']
  .reduce((sum, p) => sum + counter(statsAfter, p, 'sends_failed') - counter(statsBefore, p, 'sends_failed'), 0);
say(`sends the simulator refused or failed meanwhile: ${simFailed}`);

const sample = plan.filter((_, i) => i % Math.max(1, Math.floor(plan.length / 20)) === 0).slice(0, 20);
// WhatsApp reports "sent" and then "delivered" for every message, through the connector's
// webhook endpoint, one at a time per number (as the real platform does): wait for them too.
step(`Waiting (at most ${opts.wait} s) until the simulator's WhatsApp status reports are all taken`);
const callbacksBefore = counter(statsBefore, 'whatsapp', 'callbacks_sent');
let reportsDoneAt = null;
let pending = 0;
const reportsDeadline = Date.now() + opts.wait * 1000;
lastShown = Date.now();
while (Date.now() < reportsDeadline) {
  const stats = (await call('GET', sim('/_sim/stats'))).body || {};
  pending = counter(stats, 'whatsapp', 'callbacks_pending');
  if (pending === 0) { reportsDoneAt = Date.now(); break; }
  if (Date.now() - lastShown >= 5000) {
    say(`${pending} status reports still queued at the simulator`);
    lastShown = Date.now();
  }
  await sleep(250);
}
const reportsTaken = counter((await call('GET', sim('/_sim/stats'))).body, 'whatsapp', 'callbacks_sent') - callbacksBefore;
const reportsSeconds = ((reportsDoneAt ?? Date.now()) - started) / 1000;
say(reportsDoneAt
  ? `${reportsTaken} status reports taken by the connector ${reportsSeconds.toFixed(2)} s after the first request ` +
    `(${(reportsTaken / reportsSeconds).toFixed(0)} reports/s)`
  : `${pending} status reports were still queued after ${opts.wait} s`);
const sampleStates = { whatsapp: {}, telegram: {} };
for (const m of sample) {
  const state = (await stateOf(admin, `st-${RUN}-m${m.j}`, m.recipient.id))?.state || 'none';
  const counts = sampleStates[m.recipient.channel];
  counts[state] = (counts[state] || 0) + 1;
}
say(`states of ${sample.length} sampled messages, by the recipient's platform: ` +
    `WhatsApp ${JSON.stringify(sampleStates.whatsapp)}, Telegram ${JSON.stringify(sampleStates.telegram)}`);

step('Summary');
const missing = expected.whatsapp - arrived.whatsapp.unique + expected.telegram - arrived.telegram.unique;
show('machine', `${os.availableParallelism?.() ?? os.cpus().length} cores; ${users} users, ${opts.messages} messages, ${opts.concurrency} in flight`);
show('accepted', `${outcome.accepted} in ${acceptSeconds.toFixed(2)} s = ${(outcome.accepted / acceptSeconds).toFixed(0)} msgs/s (p50 ${percentile(0.5).toFixed(1)} ms, p99 ${percentile(0.99).toFixed(1)} ms)`);
show('delivered on channels', reachedAt
  ? `${expectedTotal} in ${deliverySeconds.toFixed(2)} s = ${(expectedTotal / deliverySeconds).toFixed(0)} msgs/s end to end`
  : `${progress} of ${expectedTotal} within the wait`);
show('WhatsApp reports', reportsDoneAt
  ? `${reportsTaken} (sent, delivered) taken in ${reportsSeconds.toFixed(2)} s = ${(reportsTaken / reportsSeconds).toFixed(0)}/s`
  : `${pending} still queued after the wait`);
show('failures', `HTTP ${outcome.failed}, 429 answers ${outcome.rateLimited}, missing on channels ${missing}, ` +
     `duplicates ${arrived.whatsapp.duplicates + arrived.telegram.duplicates} (at-least-once), simulator refusals ${simFailed}`);
if (outcome.failed > 0 || missing > 0) fail('not every message was accepted and delivered');
console.log('\nstress: OK');

// cross-platform: a WhatsApp user and an Instagram user in one conversation, through the
// simulated provider. The WhatsApp user writes in; the platform stores the message as theirs
// and delivers it on Instagram; the simulator's delivery and read reports come back through the
// connector's webhook endpoint as DELIVERED and READ, and the platform's own webhooks
// (message.delivered, message.read) reach a receiver this script runs.
import { execFileSync } from 'node:child_process';
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import {
  API, RUN, SIM, adminToken, api, call, checkRunning, createUser, describeState, fail, login,
  must, say, show, sim, stateOf, step, waitFor,
} from './common.mjs';

await checkRunning();
console.log(`cross-platform against ${API}, simulated provider at ${SIM} (run ${RUN})`);
console.log('(a simulation: nothing reaches the real WhatsApp or Instagram)');

const problems = [];
const note = (text) => { problems.push(text); say(`!! ${text}`); };

// --- a local webhook receiver ------------------------------------------------------------
let webhookSecret = null;
const received = [];
const receiver = http.createServer((request, response) => {
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    const body = Buffer.concat(chunks).toString();
    let event = null;
    try { event = JSON.parse(body); } catch { /* kept as null */ }
    received.push({ event, signed: verify(request.headers, body), at: Date.now() });
    response.writeHead(204).end();
  });
});
// Standard Webhooks: v1,base64(HMAC-SHA256(secret bytes, id.timestamp.body)).
function verify(headers, body) {
  if (!webhookSecret) return false;
  const key = Buffer.from(webhookSecret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key)
    .update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`).digest();
  return String(headers['webhook-signature'] || '').split(' ').some((entry) => {
    const [version, signature] = entry.split(',', 2);
    const offered = Buffer.from(signature || '', 'base64');
    return version === 'v1' && offered.length === expected.length && timingSafeEqual(offered, expected);
  });
}
await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const receiverUrl = `http://127.0.0.1:${receiver.address().port}/chat4all-events`;
process.on('exit', () => receiver.close());

// --- the scenario ------------------------------------------------------------------------
step('An admin token for tenant "dev"');
const admin = await adminToken();
say('got one');

const stamp = String(Date.now());
const waUser = `wa-${RUN}`;
const igUser = `ig-${RUN}`;
// WhatsApp reports numbers as digits without "+", so the identity is stored that way.
const waNumber = `5511${stamp.slice(-9)}`;
const igsid = `9${stamp}`;
step(`Two users, each with an identity on one platform`);
await createUser(admin, waUser, `secret-${waUser}`, [{ channel: 'whatsapp', address: waNumber }]);
await createUser(admin, igUser, `secret-${igUser}`, [{ channel: 'instagram', address: igsid }]);
say(`${waUser}: whatsapp ${waNumber}`);
say(`${igUser}: instagram IGSID ${igsid}`);

step(`${waUser} and ${igUser} share a private conversation`);
const waToken = await login(waUser, `secret-${waUser}`);
const conversation = await must('POST', api('/v1/conversations'),
  { token: waToken, body: { type: 'private', members: [igUser] } }, [200, 201]);
const conversationId = conversation.conversation_id;
show('conversation', conversationId);

step(`A webhook receiver on ${receiverUrl}, registered for message.delivered and message.read`);
const webhook = await must('POST', api('/v1/webhooks'), {
  token: admin, body: { url: receiverUrl, events: ['message.delivered', 'message.read'] },
}, [201]);
webhookSecret = webhook.secret;
const webhookId = webhook.webhook_id || webhook.id;
let webhookDeleted = false;
// However the run ends, the webhook goes: its receiver ends with this process.
process.on('exit', () => {
  if (webhookDeleted) return;
  try {
    execFileSync('curl', ['-s', '-o', '/dev/null', '-X', 'DELETE', api(`/v1/webhooks/${webhookId}`),
      '-H', `Authorization: Bearer ${admin}`], { timeout: 5000 });
  } catch { /* best effort */ }
});
say(`webhook ${webhookId}; events are signed with the secret returned once`);

const text = `Olá from WhatsApp! (${RUN})`;
step(`${waUser} writes on WhatsApp: "${text}"  (POST ${SIM}/_sim/whatsapp/inbound)`);
const inbound = await must('POST', sim('/_sim/whatsapp/inbound'), {
  body: { from: waNumber, text, name: 'Wanda (sim)', phone_number_id: '100200300' },
}, [200]);
say(`the simulator posted it to the connector's webhook endpoint: wamid ${inbound.id}, ` +
    `answer ${inbound.callback_status} after ${inbound.attempts} attempt(s)`);
if (inbound.callback_status !== 200)
  note('the connector did not take the WhatsApp webhook (is the connector node running, port 8400?)');

step('The platform stored it in the conversation, as sent by the WhatsApp user');
const stored = await waitFor(async () => {
  const page = await call('GET', api(`/v1/conversations/${conversationId}/messages?limit=50`),
    { token: admin });
  return page.status === 200 ? page.body.messages.find((m) => m.payload?.text === text) : null;
}, { timeoutMs: 10000 });
if (!stored) fail('the inbound message did not appear in the conversation within 10 s');
const messageId = stored.message_id;
say(`seq ${stored.seq}, message_id ${messageId}, sender ${stored.sender_id}`);

step(`It goes out on Instagram to ${igsid}  (GET ${SIM}/_sim/instagram/sent?to=${igsid})`);
const onInstagram = await waitFor(async () => {
  const list = await call('GET', sim(`/_sim/instagram/sent?to=${igsid}`));
  return list.status === 200 ? list.body.messages.find((m) => m.text === text) : null;
}, { timeoutMs: 20000 });
if (!onInstagram) fail('nothing reached the simulated Instagram within 20 s (see the connector\'s log)');
say(`Instagram accepted it as ${onInstagram.id} (${onInstagram.type}: "${onInstagram.text}")`);

step('Instagram reports the delivery; the message becomes DELIVERED for the Instagram user');
const delivered = await waitFor(async () => {
  const entry = await stateOf(admin, messageId, igUser);
  return entry && (entry.state === 'DELIVERED' || entry.state === 'READ') ? entry : null;
}, { timeoutMs: 10000 });
say(describeState(delivered || await stateOf(admin, messageId, igUser)));
if (!delivered) note('no DELIVERED within 10 s');

step(`The Instagram user reads it  (POST ${SIM}/_sim/instagram/read)`);
const read = await must('POST', sim('/_sim/instagram/read'), { body: { to: igsid, id: onInstagram.id } }, [200]);
say(`the simulator sent the read report: answer ${read.callback_status}`);
const readState = await waitFor(async () => {
  const entry = await stateOf(admin, messageId, igUser);
  return entry && entry.state === 'READ' ? entry : null;
}, { timeoutMs: 10000 });
say(describeState(readState || await stateOf(admin, messageId, igUser)));
if (!readState) note('no READ within 10 s');

step('The platform\'s webhooks reached our receiver');
const ours = () => received.filter((r) => r.event?.data?.message_id === messageId);
await waitFor(() => ['message.delivered', 'message.read']
  .every((type) => ours().some((r) => r.event.type === type)), { timeoutMs: 15000 });
for (const r of ours())
  say(`${r.event.type}: recipient ${r.event.data.recipient_id}, state ${r.event.data.state}, ` +
      `signature ${r.signed ? 'valid' : 'NOT valid'}`);
for (const type of ['message.delivered', 'message.read'])
  if (!ours().some((r) => r.event.type === type)) note(`no ${type} webhook within 15 s`);

step(`Every channel attempt  (GET /v1/messages/${messageId}/deliveries)`);
const deliveries = await call('GET', api(`/v1/messages/${encodeURIComponent(messageId)}/deliveries`), { token: admin });
if (deliveries.status === 200) {
  const list = deliveries.body.deliveries || deliveries.body.items || deliveries.body;
  if (Array.isArray(list)) for (const d of list) say(JSON.stringify(d));
  else show('answer', deliveries.body);
} else if (deliveries.status === 404 || deliveries.status === 405) {
  say(`not served by this build (${deliveries.status}): the endpoint is newer than it`);
} else {
  note(`deliveries answered ${deliveries.status}: ${JSON.stringify(deliveries.body)}`);
}

const reply = `Got it, thanks! (${RUN})`;
step(`${igUser} answers on Instagram, replying to that message: "${reply}"`);
await must('POST', sim('/_sim/instagram/inbound'),
  { body: { from: igsid, text: reply, reply_to: onInstagram.id } }, [200]);
const onWhatsApp = await waitFor(async () => {
  const list = await call('GET', sim(`/_sim/whatsapp/sent?to=${waNumber}`));
  return list.status === 200 ? list.body.messages.find((m) => m.text === reply) : null;
}, { timeoutMs: 20000 });
if (onWhatsApp) say(`WhatsApp accepted it for ${waNumber} as ${onWhatsApp.id}`);
else note('the reply did not reach the simulated WhatsApp within 20 s');

step('Summary');
say(`WhatsApp ${waNumber} (${waUser}) → Chat4All ${conversationId} seq ${stored.seq} → Instagram ${igsid} (${igUser})`);
say(`state for ${igUser}: ${(await stateOf(admin, messageId, igUser))?.state}; ` +
    `webhook calls received for it: ${ours().map((r) => r.event.type).join(', ') || 'none'}`);
say(`the reply went back to WhatsApp: ${onWhatsApp ? 'yes' : 'no'}`);
receiver.close();
webhookDeleted = (await call('DELETE', api(`/v1/webhooks/${webhookId}`), { token: admin })).status < 300;
if (problems.length) fail(`${problems.length} step(s) did not go as expected:\n  - ${problems.join('\n  - ')}`);
console.log('\ncross-platform: OK');

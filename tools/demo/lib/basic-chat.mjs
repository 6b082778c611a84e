// basic-chat: two users, a private conversation, messages both ways, the history a page at a
// time, and the states SENT → DELIVERED → READ. Internal only: no outside channel is used.
import {
  API, RUN, adminToken, api, call, checkRunning, createUser, describeState, fail, login, must,
  say, show, stateOf, step, waitFor,
} from './common.mjs';

await checkRunning({ simulator: false });
console.log(`basic-chat against ${API} (run ${RUN})`);

step('An admin token for tenant "dev" (client dev-admin)');
const admin = await adminToken();
say('got one (valid for an hour)');

const alice = `alice-${RUN}`;
const bob = `bob-${RUN}`;
step(`Two users: ${alice} and ${bob}`);
await createUser(admin, alice, `secret-${alice}`);
await createUser(admin, bob, `secret-${bob}`);
say('created (passwords are stored as argon2id hashes)');

step('Both log in');
const aliceToken = await login(alice, `secret-${alice}`);
const bobToken = await login(bob, `secret-${bob}`);
say('each has a user token');

step(`${alice} opens a private conversation with ${bob}`);
const conversation = await must('POST', api('/v1/conversations'),
  { token: aliceToken, body: { type: 'private', members: [bob] } }, [200, 201]);
const conversationId = conversation.conversation_id;
show('conversation', conversationId);

step('Messages both ways (channels ["internal"]: stored and streamed, no outside platform)');
const lines = [
  [alice, aliceToken, 'Hi Bob, are you there?'],
  [bob, bobToken, 'Hi Alice! Yes.'],
  [alice, aliceToken, 'Lunch at one?'],
  [bob, bobToken, 'Sounds good.'],
  [alice, aliceToken, 'See you then.'],
];
const sent = [];
for (const [index, [sender, token, text]] of lines.entries()) {
  const messageId = `chat-${RUN}-${index + 1}`;
  const answer = await must('POST', api('/v1/messages'), {
    token,
    body: { message_id: messageId, conversation_id: conversationId, channels: ['internal'],
            payload: { type: 'text', text } },
  }, [202]);
  sent.push({ sender, messageId, seq: answer.seq });
  say(`${sender}: "${text}"  → 202 ${answer.status}, seq ${answer.seq}`);
}

step('Sending the first message again with the same message_id stores nothing new');
const replay = await call('POST', api('/v1/messages'), {
  token: aliceToken,
  body: { message_id: sent[0].messageId, conversation_id: conversationId, channels: ['internal'],
          payload: { type: 'text', text: lines[0][2] } },
});
say(`${replay.status}, seq ${replay.body?.seq}, Idempotent-Replayed: ${replay.headers?.get('idempotent-replayed')}`);

step('The history, two messages a page, following next_cursor');
let query = 'limit=2';
let pages = 0;
const seen = [];
for (;;) {
  const page = await must('GET', api(`/v1/conversations/${conversationId}/messages?${query}`),
    { token: bobToken }, [200]);
  pages += 1;
  for (const message of page.messages) seen.push(message.seq);
  say(`page ${pages}: ${page.messages.map((m) => `#${m.seq} ${m.sender_id}: "${m.payload?.text}"`).join(' | ')}` +
      `  (end_of_history: ${page.end_of_history})`);
  if (page.end_of_history || !page.next_cursor || pages > 10) break;
  query = `limit=2&cursor=${encodeURIComponent(page.next_cursor)}`;
}
if (seen.join(',') !== sent.map((m) => m.seq).join(','))
  fail(`history order ${seen.join(',')} differs from what was sent ${sent.map((m) => m.seq).join(',')}`);
say(`all ${seen.length} messages, in seq order, in ${pages} pages`);

const first = sent[0];
step(`The state of ${first.messageId} for ${bob} before he does anything`);
say(describeState(await stateOf(aliceToken, first.messageId, bob)));

step(`${bob} reports it delivered (a device got it)`);
await must('POST', api(`/v1/messages/${first.messageId}/delivered`), { token: bobToken, body: {} }, [200]);
say(describeState(await waitFor(async () => {
  const state = await stateOf(aliceToken, first.messageId, bob);
  return state && state.state !== 'SENT' ? state : null;
}, { timeoutMs: 5000 }) || await stateOf(aliceToken, first.messageId, bob)));

const lastFromAlice = sent.filter((m) => m.sender === alice).at(-1);
step(`${bob} reads everything up to seq ${lastFromAlice.seq} (POST /v1/conversations/{id}/read)`);
await must('POST', api(`/v1/conversations/${conversationId}/read`),
  { token: bobToken, body: { up_to_seq: lastFromAlice.seq } }, [200, 202, 204]);
const results = [];
for (const message of sent.filter((m) => m.sender === alice)) {
  const state = await waitFor(async () => {
    const entry = await stateOf(aliceToken, message.messageId, bob);
    return entry && entry.state === 'READ' ? entry : null;
  }, { timeoutMs: 5000 }) || await stateOf(aliceToken, message.messageId, bob);
  results.push(state?.state);
  say(`${message.messageId}  ${describeState(state)}`);
}

step('Summary');
const allRead = results.every((s) => s === 'READ');
say(`users ${alice}, ${bob}; conversation ${conversationId}`);
say(`${sent.length} messages sent both ways, history read back in order in ${pages} pages`);
say(`${alice}'s messages are ${allRead ? 'all READ' : `in states ${results.join(', ')}`} for ${bob}`);
if (!allRead) fail('not every message reached READ');
console.log('\nbasic-chat: OK');

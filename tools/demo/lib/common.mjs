// Shared by the demo scenarios: where the platform and the simulated provider listen, a small
// JSON-over-HTTP client (Node's fetch, nothing to install), plain-words output and waiting.
//
// API (default http://127.0.0.1:8080) and SIM (default http://127.0.0.1:9600) may be set in the
// environment to point the demos elsewhere.

export const API = (process.env.API || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const SIM = (process.env.SIM || 'http://127.0.0.1:9600').replace(/\/+$/, '');
export const TENANT = 'dev';
export const ADMIN_CLIENT = 'dev-admin';
export const ADMIN_SECRET = 'chat4all-dev';

// A suffix that makes this run's users, conversations and message ids new.
export const RUN = `${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;

const bold = (text) => (process.stdout.isTTY ? `\x1b[1m${text}\x1b[0m` : text);
let stepNumber = 0;
export function step(text) {
  stepNumber += 1;
  console.log(`\n${bold(`${stepNumber}. ${text}`)}`);
}
export function say(text) {
  console.log(`   ${text}`);
}
export function show(label, value) {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  console.log(`   ${label}: ${text.length > 600 ? `${text.slice(0, 600)}…` : text}`);
}
export function fail(text) {
  console.error(`\nFAILED: ${text}`);
  process.exit(1);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One HTTP call with a JSON body (or none). Never throws for HTTP statuses: returns
// {status, body, headers}; a network failure is {status: 0, error}.
export async function call(method, url, { token, body, timeoutMs = 10000 } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  try {
    const response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    let parsed = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, body: parsed, headers: response.headers };
  } catch (error) {
    return { status: 0, body: null, error: String(error.cause?.code || error.message || error) };
  }
}

// Like call(), but a status outside `expected` ends the demo with what came back.
export async function must(method, url, options = {}, expected = [200, 201, 202]) {
  const response = await call(method, url, options);
  if (!expected.includes(response.status)) {
    const what = response.status === 0 ? response.error : JSON.stringify(response.body);
    fail(`${method} ${url} answered ${response.status}: ${what}`);
  }
  return response.body;
}

export const api = (path) => `${API}${path}`;
export const sim = (path) => `${SIM}${path}`;

// Checks that the platform and (when needed) the simulator are up, and says what to start if not.
export async function checkRunning({ simulator = true } = {}) {
  const health = await call('GET', api('/healthz'), { timeoutMs: 3000 });
  if (health.status !== 200)
    fail(`the platform does not answer at ${API}/healthz (${health.status || health.error}).\n` +
         '        Start it in another terminal with   tools/run   and run this again once it prints\n' +
         '        where the API listens (the first build takes a few minutes).');
  if (!simulator) return;
  const simHealth = await call('GET', sim('/_sim/health'), { timeoutMs: 3000 });
  if (simHealth.status !== 200)
    fail(`the simulated provider does not answer at ${SIM}/_sim/health (${simHealth.status || simHealth.error}).\n` +
         '        tools/run starts it (see var/provider-sim.log); an older tools/run did not: start it with\n' +
         '        node tools/provider-sim/provider-sim.mjs --port 9600 --app-secret sim-app-secret \\\n' +
         '          --whatsapp-callback http://127.0.0.1:8400/channels/whatsapp/webhook \\\n' +
         '          --instagram-callback http://127.0.0.1:8400/channels/instagram/webhook');
}

export async function adminToken() {
  const answer = await must('POST', api('/v1/auth/token'), {
    body: { grant_type: 'client_credentials', tenant_id: TENANT, client_id: ADMIN_CLIENT,
            client_secret: ADMIN_SECRET },
  }, [200]);
  return answer.access_token;
}

export async function createUser(admin, user_id, password, identities) {
  const body = { user_id, password };
  if (identities) body.identities = identities;
  return must('POST', api('/v1/users'), { token: admin, body }, [201]);
}

export async function login(user_id, password) {
  const answer = await must('POST', api('/v1/auth/token'), {
    body: { grant_type: 'password', tenant_id: TENANT, user_id, password },
  }, [200]);
  return answer.access_token;
}

// Calls `probe` every `intervalMs` until it returns something truthy or `timeoutMs` passes
// (then null).
export async function waitFor(probe, { timeoutMs = 15000, intervalMs = 250 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() >= deadline) return null;
    await sleep(intervalMs);
  }
}

// The state of `recipient` for a message, as GET /v1/messages/{id} reports it, or null.
export async function stateOf(token, messageId, recipient) {
  const answer = await call('GET', api(`/v1/messages/${encodeURIComponent(messageId)}`), { token });
  if (answer.status !== 200) return null;
  const entry = (answer.body.states || []).find((s) => s.recipient_id === recipient);
  return entry || null;
}

export function describeState(entry) {
  if (!entry) return '(no state yet)';
  const history = (entry.history || [])
    .map((h) => `${h.state} at ${new Date(h.at).toISOString().slice(11, 23)}`)
    .join(' → ');
  return `${entry.recipient_id}: ${entry.state}${history ? `  (${history})` : ''}`;
}

// Command-line options as --name value (or --name=value); numbers where the default is one.
export function options(defaults) {
  const result = { ...defaults };
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i += 1) {
    let [name, value] = args[i].replace(/^--/, '').split('=', 2);
    if (name === 'help' || name === 'h') return { ...result, help: true };
    if (!(name in defaults)) fail(`unknown option --${name} (known: ${Object.keys(defaults).map((k) => `--${k}`).join(' ')})`);
    if (value === undefined) value = args[++i];
    result[name] = typeof defaults[name] === 'number' ? Number(value) : value;
    if (typeof defaults[name] === 'number' && !Number.isFinite(result[name]))
      fail(`--${name} needs a number`);
  }
  return result;
}

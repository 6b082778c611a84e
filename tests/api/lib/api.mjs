// The HTTP side of the tests: the command line, one request helper over
// node:http, and an API client whose every response is checked against
// schema/openapi.yaml (problems go to the runner as contract violations).
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';

const here = path.dirname(fileURLToPath(import.meta.url));

const OPTIONS = {
  'base-url': { required: true },
  tenant: { required: true },
  'admin-client-id': { required: true },
  'admin-client-secret': { required: true },
  'other-tenant': {},
  'other-admin-client-id': {},
  'other-admin-client-secret': {},
  'text-bytes-max': { default: '65536' },
  'body-bytes-max': { default: '1048576' },
  'rate-requests-max': { default: '2000' },
  'timeout-ms': { default: '10000' },
  'wait-ms': { default: '20000' },
  'slow-messages-max': { default: '600' },
  'queue-bytes-max': { default: '4194304' },
  'slow-text-bytes': { default: '60000' },
  skip: { default: '' },
  spec: { default: path.join(here, '..', '..', '..', 'schema', 'openapi.yaml') },
  verbose: { flag: true },
  help: { flag: true },
};

export function parseArgs(argv, usage) {
  const values = {};
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}\n${usage}`);
    let [name, value] = arg.slice(2).split(/=(.*)/s, 2);
    const option = OPTIONS[name];
    if (!option) throw new Error(`unknown option --${name}\n${usage}`);
    if (option.flag) {
      values[name] = true;
      continue;
    }
    if (value === undefined) {
      value = argv[i + 1];
      i += 1;
      if (value === undefined) throw new Error(`--${name} needs a value\n${usage}`);
    }
    values[name] = value;
  }
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  for (const [name, option] of Object.entries(OPTIONS)) {
    if (values[name] === undefined && option.default !== undefined) values[name] = option.default;
    if (option.required && values[name] === undefined) throw new Error(`--${name} is required\n${usage}`);
  }
  const url = new URL(values['base-url']);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
    throw new Error(`--base-url must be a loopback address (got ${url.hostname})`);
  }
  return {
    baseUrl: url.origin,
    tenant: values.tenant,
    adminClientId: values['admin-client-id'],
    adminClientSecret: values['admin-client-secret'],
    otherTenant: values['other-tenant'],
    otherAdminClientId: values['other-admin-client-id'],
    otherAdminClientSecret: values['other-admin-client-secret'],
    textBytesMax: Number(values['text-bytes-max']),
    bodyBytesMax: Number(values['body-bytes-max']),
    rateRequestsMax: Number(values['rate-requests-max']),
    timeoutMs: Number(values['timeout-ms']),
    waitMs: Number(values['wait-ms']),
    slowMessagesMax: Number(values['slow-messages-max']),
    slowTextBytes: Number(values['slow-text-bytes']),
    queueBytesMax: Number(values['queue-bytes-max']),
    skip: values.skip ? values.skip.split(',').map((s) => s.trim()).filter(Boolean) : [],
    spec: values.spec,
    verbose: Boolean(values.verbose),
  };
}

// One HTTP request. Resolves {status, headers, text} (headers lower-case);
// rejects on a socket error before any response or after `timeoutMs`.
// A response that arrives while the body is still being written (a 413
// sent early) is kept: later write errors are ignored.
export function request(baseUrl, method, pathname, { headers = {}, body, timeoutMs = 10000, agent } = {}) {
  return new Promise((resolve, reject) => {
    const url = new URL(pathname, baseUrl);
    let settled = false;
    const finish = (fn, value) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        fn(value);
      }
    };
    let answered = false;
    const req = http.request(url, { method, headers, agent }, (res) => {
      answered = true;
      const chunks = [];
      const done = () => finish(resolve, {
        status: res.statusCode,
        headers: res.headers,
        text: Buffer.concat(chunks).toString('utf8'),
      });
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', done);
      res.on('error', (error) => finish(reject, error));
      res.on('close', () => (res.complete ? done() : finish(reject, new Error(`${method} ${pathname}: the connection closed in the middle of the answer`))));
    });
    const timer = setTimeout(() => {
      req.destroy();
      finish(reject, new Error(`${method} ${pathname}: no complete answer within ${timeoutMs} ms`));
    }, timeoutMs);
    req.on('error', (error) => {
      // Once an answer has begun (a 413 sent before the whole body was read),
      // a write error on the request side is expected and the answer counts.
      if (!answered) finish(reject, Object.assign(error, { message: `${method} ${pathname}: ${error.message}` }));
    });
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

export class Api {
  constructor({ baseUrl, spec, runner, timeoutMs = 10000 }) {
    this.baseUrl = baseUrl;
    this.spec = spec;
    this.runner = runner;
    this.timeoutMs = timeoutMs;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    this.count = 0;
  }

  close() {
    this.agent.destroy();
  }

  // Sends a request and checks the response against the contract.
  //   token:        bearer token (none: no Authorization header)
  //   body:         a value sent as JSON (Content-Type: application/json)
  //   raw:          a string or Buffer sent as is (set Content-Type in headers)
  //   expect:       a status (or array of them); anything else throws, with the body
  //   retry:        retry 429 and 503 after Retry-After (default true; at most 3 times)
  // Returns {status, headers, text, json}.
  async call(method, pathname, { token, body, raw, headers = {}, expect, retry = true, timeoutMs } = {}) {
    const sent = { ...headers };
    if (token) sent.authorization = `Bearer ${token}`;
    let payload;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      if (!Object.keys(sent).some((k) => k.toLowerCase() === 'content-type')) sent['content-type'] = 'application/json';
    } else if (raw !== undefined) {
      payload = raw;
    }
    if (payload !== undefined) sent['content-length'] = Buffer.byteLength(payload);

    let response;
    for (let attempt = 1; ; attempt += 1) {
      response = await request(this.baseUrl, method, pathname, {
        headers: sent, body: payload, timeoutMs: timeoutMs ?? this.timeoutMs, agent: this.agent,
      });
      this.count += 1;
      this.record(method, pathname, response);
      if (!(retry && (response.status === 429 || response.status === 503) && attempt <= 3)) break;
      const wait = Math.min(Number(response.headers['retry-after']) || 1, 5);
      this.runner.log(`   ${response.status}: retrying in ${wait} s`);
      await sleep(wait * 1000);
    }
    if (expect !== undefined) {
      const wanted = Array.isArray(expect) ? expect : [expect];
      if (!wanted.includes(response.status)) {
        assert.fail(`${method} ${pathname}: expected ${wanted.join(' or ')}, got ${response.status}: ${response.text.slice(0, 300)}`);
      }
    }
    return response;
  }

  record(method, pathname, response) {
    const pathOnly = pathname.split('?')[0];
    try {
      response.json = response.text ? JSON.parse(response.text) : undefined;
    } catch {
      response.json = undefined;
    }
    this.runner.log(`${method} ${pathname} -> ${response.status} ${response.text.slice(0, 160).replace(/\s+/g, ' ')}`);
    for (const problem of this.spec.checkResponse(method, pathOnly, response.status, response.headers, response.text)) {
      this.runner.violation(problem);
    }
  }

  // Asserts an error response: status, code (when given), field (exact, or a
  // prefix with fieldPrefix).
  async error(method, pathname, options, { status, code, field, fieldPrefix }) {
    const response = await this.call(method, pathname, { ...options, retry: false });
    assert.equal(response.status, status, `${method} ${pathname}: expected ${status}, got ${response.status}: ${response.text.slice(0, 300)}`);
    const error = response.json?.error;
    assert.ok(error && typeof error === 'object', `${method} ${pathname}: no error object in ${response.text.slice(0, 200)}`);
    if (code !== undefined) assert.equal(error.code, code, `${method} ${pathname}: error.code`);
    if (field !== undefined) assert.equal(error.field, field, `${method} ${pathname}: error.field (${error.message})`);
    if (fieldPrefix !== undefined) {
      assert.ok(typeof error.field === 'string' && error.field.startsWith(fieldPrefix),
        `${method} ${pathname}: error.field should start with "${fieldPrefix}", got ${JSON.stringify(error.field)} (${error.message})`);
    }
    return response;
  }
}

export function enc(value) {
  return encodeURIComponent(value);
}

// Polls `fn` until it returns a truthy value or `ms` pass; returns the last value.
export async function waitFor(fn, ms, stepMs = 250) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value || Date.now() >= deadline) return value;
    await sleep(stepMs);
  }
}

#!/usr/bin/env node
// Uploads through /v1/files with an unmodified tus-js-client (npm, pinned in
// package.json): a whole upload in pieces, an upload aborted in the middle of a
// request and resumed from the offset the server kept, and the bytes read back
// compared by sha256. Every response is also checked against schema/openapi.yaml.
//
//   node tests/api/tus.mjs --base-url http://127.0.0.1:8080 --tenant dev \
//     --admin-client-id dev-admin --admin-client-secret chat4all-dev
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import * as tus from 'tus-js-client';
import { Api, parseArgs } from './lib/api.mjs';
import { Runner } from './lib/runner.mjs';
import { loadSpec } from './lib/spec.mjs';

const USAGE = 'usage: node tus.mjs --base-url URL --tenant T --admin-client-id ID --admin-client-secret S';
const options = parseArgs(process.argv.slice(2), USAGE);
const runner = new Runner({ verbose: options.verbose, skip: options.skip });
const spec = await loadSpec(options.spec);
const api = new Api({ baseUrl: options.baseUrl, spec, runner, timeoutMs: options.timeoutMs });
const MiB = 1 << 20;

// Runs one tus upload of `bytes`; resolves with the upload when it succeeds. `abortWhen(sent)`
// may stop it: it then resolves with {aborted: true, url} once aborted.
function upload(bytes, token, { uploadUrl, chunkSize, abortWhen, metadata = {} } = {}) {
  return new Promise((resolve, reject) => {
    let aborted = false;
    // An option given as undefined replaces tus-js-client's default (chunkSize: Infinity) and
    // makes it send empty bodies: leave out what is not set.
    const optional = Object.fromEntries(Object.entries({ uploadUrl, chunkSize }).filter(([, v]) => v !== undefined));
    const job = new tus.Upload(bytes, {
      endpoint: `${options.baseUrl}/v1/files`,
      ...optional,
      headers: { Authorization: `Bearer ${token}` },
      metadata,
      retryDelays: [200, 500, 1000],
      onError: reject,
      onProgress: (sent) => {
        if (!aborted && abortWhen && abortWhen(sent)) {
          aborted = true;
          job.abort(false).then(() => resolve({ aborted: true, url: job.url }), reject);
        }
      },
      onSuccess: () => resolve({ aborted: false, url: job.url }),
    });
    job.start();
  });
}

async function main() {
  const admin = await api.call('POST', '/v1/auth/token', {
    body: { grant_type: 'client_credentials', tenant_id: options.tenant, client_id: options.adminClientId, client_secret: options.adminClientSecret },
    expect: 200,
  });
  const user = { id: `tus${Date.now().toString(36)}`, password: crypto.randomBytes(12).toString('hex') };
  await api.call('POST', '/v1/users', { token: admin.json.access_token, body: { user_id: user.id, password: user.password }, expect: 201 });
  const login = await api.call('POST', '/v1/auth/token', { body: { tenant_id: options.tenant, user_id: user.id, password: user.password }, expect: 200 });
  const token = login.json.access_token;

  const download = async (url) => {
    const path = new URL(url).pathname;
    const response = await fetch(`${options.baseUrl}${path}/content`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(response.status, 200);
    return Buffer.from(await response.arrayBuffer());
  };
  const sha256 = (bytes) => crypto.createHash('sha256').update(bytes).digest('hex');
  const offsetOf = async (url) => {
    const head = await api.call('HEAD', new URL(url).pathname, { token, headers: { 'Tus-Resumable': '1.0.0' }, expect: 200 });
    return Number(head.headers['upload-offset']);
  };

  if (runner.begin('tus-js-client')) {
    await runner.check('an upload in 3 MiB pieces, read back whole', async () => {
      const bytes = crypto.randomBytes(10 * MiB + 17);
      const done = await upload(bytes, token, { chunkSize: 3 * MiB, metadata: { filename: 'pieces.bin', filetype: 'application/octet-stream', sha256: sha256(bytes) } });
      assert.equal(done.aborted, false);
      const file = await api.call('GET', new URL(done.url).pathname, { token, expect: 200 });
      assert.equal(file.json.state, 'complete');
      assert.equal(file.json.sha256, sha256(bytes));
      assert.equal(sha256(await download(done.url)), sha256(bytes));
    });

    await runner.check('aborted in the middle of a request, resumed from what the server kept', async () => {
      const bytes = crypto.randomBytes(14 * MiB);
      const first = await upload(bytes, token, { abortWhen: (sent) => sent >= 9 * MiB, metadata: { filename: 'resumed.bin' } });
      assert.equal(first.aborted, true);
      // The server keeps every whole chunk it stored; give it a moment for the one in flight.
      await new Promise((r) => setTimeout(r, 500));
      const kept = await offsetOf(first.url);
      assert.ok(kept > 0 && kept < bytes.length, `kept ${kept} of ${bytes.length}`);
      let resumedFrom = null;
      const second = await new Promise((resolve, reject) => {
        const job = new tus.Upload(bytes, {
          endpoint: `${options.baseUrl}/v1/files`,
          uploadUrl: first.url,
          headers: { Authorization: `Bearer ${token}` },
          onProgress: (sent) => { if (resumedFrom === null) resumedFrom = sent; },
          onError: reject,
          onSuccess: () => resolve(job.url),
        });
        job.start();
      });
      assert.equal(second, first.url);
      assert.ok(resumedFrom !== null && resumedFrom >= kept, `resumed at ${resumedFrom}, the server had ${kept}`);
      assert.equal(await offsetOf(first.url), bytes.length);
      assert.equal(sha256(await download(first.url)), sha256(bytes));
    });
  }
}

let exitCode = 1;
try {
  console.log(`tus-js-client test against ${options.baseUrl}`);
  await main();
  exitCode = runner.summary();
} catch (error) {
  console.error(`tus test stopped: ${error.stack || error}`);
  runner.summary();
} finally {
  api.close();
}
process.exit(exitCode);

#!/usr/bin/env node
// Tests the tests: starts mock-server.mjs on a free loopback port, runs
// validate-spec.mjs, contract.mjs and stream.mjs against it, stops it.
// Exit code 0 only when all three pass. Needs no Chat4All build.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

function runScript(script, args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(here, script), ...args], { stdio: 'inherit' });
    const timer = setTimeout(() => child.kill('SIGTERM'), 300000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? (signal ? 1 : 0));
    });
  });
}

const mock = spawn(process.execPath, [path.join(here, 'mock-server.mjs'), '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
let code = 1;
try {
  const baseUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the mock server did not start within 10 s')), 10000);
    mock.stdout.on('data', (chunk) => {
      const match = /listening on (http:\/\/\S+)/.exec(chunk.toString());
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    mock.on('exit', () => reject(new Error('the mock server exited')));
  });
  const common = ['--base-url', baseUrl, '--tenant', 'dev', '--admin-client-id', 'dev-admin', '--admin-client-secret', 'chat4all-dev'];
  const results = {
    'validate-spec': await runScript('validate-spec.mjs', []),
    contract: await runScript('contract.mjs', [...common, '--other-tenant', 'other', '--other-admin-client-id', 'other-admin', '--other-admin-client-secret', 'other-secret',
      // The mock models no file storage: the files section runs against the product only.
      '--skip', 'files']),
    stream: await runScript('stream.mjs', common),
  };
  const failed = Object.entries(results).filter(([, c]) => c !== 0).map(([name]) => name);
  console.log(`\nself-test: ${failed.length ? `FAILED: ${failed.join(', ')}` : 'the spec, the contract test and the stream test pass against the mock'}`);
  code = failed.length ? 1 : 0;
} catch (error) {
  console.error(`self-test: ${error.message}`);
} finally {
  mock.kill('SIGTERM');
}
process.exit(code);

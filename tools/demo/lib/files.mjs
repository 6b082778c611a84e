// The files demo: makes a file of --size bytes (1.8 GB by default; generated as it is sent, never
// held in memory), uploads it with tus (plain HTTP, no client library), breaks the connection
// half-way, asks the server where to resume (HEAD), sends the rest, downloads the file and
// compares its sha256 with the one computed here, printing progress as it goes.
import crypto from 'node:crypto';
import http from 'node:http';

const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
if (argv.includes('--help')) {
  console.log('usage: tools/demo/files [--size BYTES] [--base-url URL] [--tenant T] [--admin-client-id ID] [--admin-client-secret S]');
  process.exit(0);
}
const base = option('base-url', process.env.API || 'http://127.0.0.1:8080');
const tenant = option('tenant', 'dev');
const size = Number(option('size', String(1_800_000_000)));
const BLOCK = 1 << 20;
const seed = crypto.randomBytes(BLOCK);

// Block i of the file: the seed with i written over its first 8 bytes (every block differs).
function block(i) {
  const out = Buffer.from(seed);
  out.writeBigUInt64BE(BigInt(i), 0);
  return out;
}
// Bytes [from, to) of the file, as a sequence of buffers.
function* bytes(from, to) {
  for (let i = Math.floor(from / BLOCK); i * BLOCK < to; i += 1) {
    const start = Math.max(from - i * BLOCK, 0);
    const end = Math.min(to - i * BLOCK, BLOCK);
    yield block(i).subarray(start, end);
  }
}
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
let lastShown = -1;
function progress(what, done, total, started) {
  const percent = Math.floor((done * 100) / total);
  if (percent === lastShown || (percent % 5 !== 0 && done !== total)) return;
  lastShown = percent;
  const seconds = (Date.now() - started) / 1000;
  console.log(`  ${what}: ${String(percent).padStart(3)} %  ${mb(done)} of ${mb(total)}  (${(done / 1e6 / Math.max(seconds, 0.001)).toFixed(0)} MB/s)`);
}

function request(method, path, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
const json = (body) => ({ headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
function must(response, status, what) {
  if (response.status !== status) {
    console.error(`FAILED: ${what}: expected ${status}, got ${response.status} ${response.text.slice(0, 300)}`);
    process.exit(1);
  }
  return response;
}

// Sends bytes [from, size) in one PATCH; with `cutAt`, destroys the connection once that many
// bytes of the file were written. Resolves when the server answered or the connection is gone.
function patch(path, token, from, cutAt) {
  return new Promise((resolve) => {
    const started = Date.now();
    lastShown = -1;
    const req = http.request(`${base}${path}`, {
      method: 'PATCH',
      headers: {
        Authorization: `Bearer ${token}`, 'Tus-Resumable': '1.0.0', 'Upload-Offset': String(from),
        'Content-Type': 'application/offset+octet-stream', 'Content-Length': String(size - from),
      },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, offset: Number(res.headers['upload-offset']) }));
    });
    req.on('error', () => resolve({ status: 0 }));
    const pieces = bytes(from, size);
    let sent = from;
    const pump = () => {
      for (;;) {
        if (cutAt !== undefined && sent >= cutAt) {
          console.log(`  ... the connection is cut after ${mb(sent)} sent`);
          req.destroy();
          return;
        }
        const next = pieces.next();
        if (next.done) return req.end();
        sent += next.value.length;
        progress('upload', sent, size, started);
        if (!req.write(next.value)) return req.once('drain', pump);
      }
    };
    pump();
  });
}

async function main() {
  console.log(`files demo against ${base}: a ${mb(size)} file`);
  const admin = JSON.parse(must(await request('POST', '/v1/auth/token', json({
    grant_type: 'client_credentials', tenant_id: tenant,
    client_id: option('admin-client-id', 'dev-admin'), client_secret: option('admin-client-secret', 'chat4all-dev'),
  })), 200, 'admin token').text).access_token;
  const user = { id: `files-${Date.now().toString(36)}`, password: crypto.randomBytes(9).toString('hex') };
  must(await request('POST', '/v1/users', { ...json({ user_id: user.id, password: user.password }), headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${admin}` } }), 201, 'create user');
  const token = JSON.parse(must(await request('POST', '/v1/auth/token', json({ tenant_id: tenant, user_id: user.id, password: user.password })), 200, 'user token').text).access_token;

  console.log('1. the sha256 of the file, computed here');
  const hash = crypto.createHash('sha256');
  for (const piece of bytes(0, size)) hash.update(piece);
  const digest = hash.digest('hex');
  console.log(`  ${digest}`);

  console.log('2. create the upload (POST /v1/files, tus creation)');
  const created = must(await request('POST', '/v1/files', { headers: {
    Authorization: `Bearer ${token}`, 'Tus-Resumable': '1.0.0', 'Upload-Length': String(size),
    'Upload-Metadata': `filename ${Buffer.from('demo.bin').toString('base64')},sha256 ${Buffer.from(digest).toString('base64')}`,
  } }), 201, 'create upload');
  const location = created.headers.location;
  console.log(`  ${location}  (file_id ${JSON.parse(created.text).file_id})`);

  console.log('3. send it, and cut the connection half-way');
  await patch(location, token, 0, Math.floor(size / 2));
  await new Promise((r) => setTimeout(r, 500));
  const head = must(await request('HEAD', location, { headers: { Authorization: `Bearer ${token}`, 'Tus-Resumable': '1.0.0' } }), 200, 'HEAD');
  const offset = Number(head.headers['upload-offset']);
  console.log(`4. HEAD: the server holds ${mb(offset)} on a majority of its replicas; resume from there`);
  const rest = await patch(location, token, offset);
  if (rest.status !== 204 || rest.offset !== size) {
    console.error(`FAILED: the resumed PATCH answered ${rest.status}, offset ${rest.offset}`);
    process.exit(1);
  }
  const file = JSON.parse(must(await request('GET', location, { headers: { Authorization: `Bearer ${token}` } }), 200, 'GET file').text);
  console.log(`  complete: ${file.state}, ${file.chunks} chunks, sha256 ${file.sha256}`);

  console.log('5. download it and compare');
  const got = crypto.createHash('sha256');
  let received = 0;
  const started = Date.now();
  lastShown = -1;
  await new Promise((resolve, reject) => {
    http.get(`${base}${location}/content`, { headers: { Authorization: `Bearer ${token}` } }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`download answered ${res.statusCode}`));
      res.on('data', (c) => { got.update(c); received += c.length; progress('download', received, size, started); });
      res.on('end', resolve);
      res.on('error', reject);
    }).on('error', reject);
  });
  const downloaded = got.digest('hex');
  const same = downloaded === digest && received === size;
  console.log(`  ${same ? 'the same bytes' : 'DIFFERENT bytes'}: ${mb(received)}, sha256 ${downloaded}`);
  process.exit(same ? 0 : 1);
}

main().catch((error) => {
  console.error(`FAILED: ${error.message}`);
  process.exit(1);
});

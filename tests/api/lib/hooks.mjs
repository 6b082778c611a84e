// A webhook receiver on 127.0.0.1 (port 0) and the Standard Webhooks
// signature check.
import crypto from 'node:crypto';
import http from 'node:http';

// Verifies `webhook-signature` for a body: v1,<base64 HMAC-SHA256(key,
// "<webhook-id>.<webhook-timestamp>.<body>")>, key = base64 after "whsec_".
// Returns null when one of the (space-separated) signatures matches, else a reason.
export function verifySignature(secret, headers, body) {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (!id || !timestamp || !signatures) return 'webhook-id, webhook-timestamp or webhook-signature is missing';
  if (!secret.startsWith('whsec_')) return `the secret does not start with whsec_: ${secret}`;
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = crypto.createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
  for (const entry of signatures.split(' ')) {
    const [version, value] = entry.split(',', 2);
    if (version !== 'v1' || !value) continue;
    const given = Buffer.from(value, 'base64');
    if (given.length === expected.length && crypto.timingSafeEqual(given, expected)) return null;
  }
  return `no signature in "${signatures}" matches v1,${expected.toString('base64')}`;
}

// Starts the receiver. Every request is kept ({method, url, headers, body,
// at}); it answers `status` (204 by default).
export async function startHookServer({ status = 204 } = {}) {
  const received = [];
  const waiters = new Set();
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const entry = {
        method: req.method, url: req.url, headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'), at: Date.now(),
      };
      received.push(entry);
      // A path with /flaky/ fails its first request (503), to exercise retries.
      const first = req.url.includes('/flaky/') && received.filter((e) => e.url === req.url).length === 1;
      res.writeHead(first ? 503 : status);
      res.end();
      for (const waiter of waiters) waiter();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    received,
    // Resolves the first request for which `match(entry)` is true, or null after `ms`.
    waitFor(match, ms) {
      return new Promise((resolve) => {
        const look = () => {
          const found = received.find(match);
          if (found) {
            done(found);
            return true;
          }
          return false;
        };
        const done = (value) => {
          clearTimeout(timer);
          waiters.delete(look);
          resolve(value);
        };
        const timer = setTimeout(() => done(null), ms);
        if (!look()) waiters.add(look);
      });
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

'use strict';
// One plain HTTP process that records, for each connection a proxy opens to
// it, how often the next request on it comes from another client (the first
// address of X-Forwarded-For). GET /__mix (sent to it directly) returns the counts.
const http = require('http');

const stats = { connections: 0, requests: 0, reused: 0, changedClient: 0 };
const last = new WeakMap();
const server = http.createServer((req, res) => {
  if (req.url === '/__mix') return res.end(JSON.stringify(stats));
  const client = String(req.headers['x-forwarded-for'] || '').split(',')[0].trim();
  stats.requests++;
  if (last.has(req.socket)) {
    stats.reused++;
    if (last.get(req.socket) !== client) stats.changedClient++;
  }
  last.set(req.socket, client);
  res.end('ok');
});
server.on('connection', () => stats.connections++);
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));

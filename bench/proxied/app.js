'use strict';
// The backends of the proxied benchmark (bench/proxied.js), 2 workers each,
// every response `ok`, keep-alive (no `Connection: close` of its own), with
// socket.io attached. PROXIED_APP says which:
//   sticky    sticky-session-rs, PROXIED_OPTIONS (JSON) for listen()
//   plain     PROXIED_WORKERS plain processes, each on its own port (the
//             proxy hashes over them)
//   sched-none  Node cluster SCHED_NONE on one port (not sticky)
// Reports on stdout, one JSON object a line: {type:'ready', port, ports,
// haproxy, nginx} from the primary, {type:'worker', pid} from each worker and,
// on SIGUSR2 to a worker, {type:'seen', pid, requests, clients, foreignSid}:
// the client addresses (first X-Forwarded-For entry) it served, for the
// misrouting check, and the requests whose sid named another slot.
const cluster = require('cluster');
const http = require('http');
const path = require('path');

const kind = process.env.PROXIED_APP || 'sticky';
const workers = Number(process.env.PROXIED_WORKERS || 2);
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');

const clients = new Set();
let requests = 0;
let foreignSid = 0;
let connections = 0;
const SID_TAG = /[?&]sid=[^&]*~\d+(&|$)/;

/** The client: the first X-Forwarded-For address, or (PROXIED_KEY=remote) the peer, as a PROXY header named it. */
const clientOf = process.env.PROXIED_KEY === 'remote'
  ? (req) => req.socket.remoteAddress
  : (req) => (req.headers['x-forwarded-for'] ? req.headers['x-forwarded-for'].split(',')[0].trim() : null);

function createServer() {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 2 });
    res.end('ok');
  });
  const { Server } = require(require.resolve('socket.io', { paths: [path.join(__dirname, '..')] }));
  new Server(server, { serveClient: false, pingInterval: 60000, pingTimeout: 60000 });
  server.on('connection', () => connections++);
  // Every request, engine.io's too (it took the 'request' listeners over).
  server.prependListener('request', (req) => {
    requests++;
    // 'sid' traffic: a session's client is its sid, not an address.
    if (req.url.includes('sid=') || req.url.startsWith('/socket.io/')) {
      // A sid still tagged here carries another slot's tag: a worker takes its own off.
      if (SID_TAG.test(req.url)) foreignSid++;
      return;
    }
    const client = clientOf(req);
    if (client) clients.add(client);
  });
  return server;
}

function workerReports() {
  emit({ type: 'worker', pid: process.pid });
  process.on('SIGUSR2', () => emit({ type: 'seen', pid: process.pid, requests, connections, clients: [...clients], foreignSid }));
}

if (kind === 'sticky') {
  const sticky = require(process.env.PROXIED_ADDON || path.join(__dirname, '..', '..'));
  const options = { workers, host: '127.0.0.1', ...JSON.parse(process.env.PROXIED_OPTIONS || '{}') };
  const server = createServer();
  if (sticky.listen(server, 0, options)) {
    workerReports();
  } else {
    process.on('SIGUSR2', () => {});
    server.once('listening', () => {
      const slotPorts = options.slotPorts ? sticky.slotAddresses().map((a) => a.port) : null;
      const key = options.routing === 'header' ? { key: 'x-forwarded-for' } : {};
      emit({
        type: 'ready',
        port: server.address().port,
        ports: slotPorts,
        haproxy: slotPorts && sticky.proxyConfig('haproxy', { name: 'be', ...key }),
        nginx: slotPorts && sticky.proxyConfig('nginx', { name: 'app', ...key }),
      });
    });
  }
} else if (kind === 'plain' || kind === 'sched-none') {
  const ports = JSON.parse(process.env.PROXIED_PORTS);
  if (kind === 'sched-none') cluster.schedulingPolicy = cluster.SCHED_NONE;
  if (cluster.isPrimary) {
    process.on('SIGUSR2', () => {});
    let listening = 0;
    cluster.on('listening', () => ++listening === workers && emit({ type: 'ready', port: ports[0], ports }));
    for (let i = 0; i < workers; i++) cluster.fork({ PROXIED_PORT: String(kind === 'plain' ? ports[i] : ports[0]) });
  } else {
    createServer().listen(Number(process.env.PROXIED_PORT), '127.0.0.1', workerReports);
  }
} else {
  throw new Error(`unknown PROXIED_APP ${kind}`);
}

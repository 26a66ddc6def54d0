'use strict';
// One process of the reconnect storm (`node bench/run.js --storm`): a share of
// the socket.io clients, started all at once when the harness says "go".
//
// Each client: polling handshake, websocket upgrade, one emit with an ack,
// then it stays connected until the harness says "stop" (a real storm's
// clients stay). Source addresses rotate over 127.0.0.2.. (one per "client
// IP"); in header and proxy-protocol modes the connection comes from the
// same loopback address and names the client (198.18.x.y) in X-Forwarded-For
// or a PROXY v1 line.
//
// Protocol with the harness (stdin/stdout, one JSON object per line):
//   argv: JSON { port, clients, first, sourceIps, kind: 'plain'|'xff'|'proxy', timeoutMs }
//   out:  {"type":"ready"}                       once set up
//   in:   "go"                                   start every client now
//   out:  {"type":"result", done, failed, errors (by stage and reason), socketErrors (by code), maxLagMs, lastMs, p50Ms, p99Ms}
//   in:   "stop"                                 close every client and exit
const http = require('http');
const net = require('net');
const readline = require('readline');
const { io } = require('socket.io-client');

const cfg = JSON.parse(process.argv[2]);
const { port, clients, first, sourceIps, kind, timeoutMs } = cfg;

const CLIENTS_PER_TURN = 20;
const sourceIp = (i) => `127.0.0.${2 + (i % sourceIps)}`;
// RFC 2544 benchmark range: strings only, no packet is sent there.
const clientIp = (i) => `198.18.${Math.floor((i % sourceIps) / 250)}.${1 + ((i % sourceIps) % 250)}`;

/** Socket errors by code (engine.io reports an xhr failure as "status 0" only). */
const socketErrors = {};
const countErrors = (socket) => socket.on('error', (e) => {
  const code = e.code || e.message;
  socketErrors[code] = (socketErrors[code] || 0) + 1;
});

/** Every connection from `localAddress`; with `client`, opened by a PROXY v1 line naming it. */
class StormAgent extends http.Agent {
  constructor(localAddress, client) {
    super({ localAddress });
    this.client = client;
  }

  createConnection(options, callback) {
    const socket = net.createConnection({ ...options, localAddress: this.options.localAddress }, callback);
    if (this.client) {
      const sport = 1024 + Math.floor(Math.random() * 60000);
      socket.write(`PROXY TCP4 ${this.client} 127.0.0.1 ${sport} ${port}\r\n`);
    }
    countErrors(socket);
    return socket;
  }
}

const agents = new Map();
function agentFor(i) {
  if (kind === 'proxy') return new StormAgent(sourceIp(i), clientIp(i));
  const key = sourceIp(i);
  if (!agents.has(key)) agents.set(key, new StormAgent(key));
  return agents.get(key);
}

const sockets = [];
const outcome = { done: 0, failed: 0, errors: {}, times: [] };
let started = 0;
let reported = false;

function report() {
  if (reported) return;
  reported = true;
  const times = outcome.times.sort((a, b) => a - b);
  const at = (q) => (times.length ? times[Math.min(times.length - 1, Math.floor(q * times.length))] : null);
  process.stdout.write(JSON.stringify({
    type: 'result', socketErrors, maxLagMs, done: outcome.done, failed: outcome.failed, errors: outcome.errors,
    lastMs: times.length ? times[times.length - 1] : null, p50Ms: at(0.5), p99Ms: at(0.99),
  }) + '\n');
}

function settle() {
  if (outcome.done + outcome.failed === clients) report();
}

/** What an engine.io transport error carries: an HTTP status, or the socket error. */
function describe(description) {
  if (description === undefined || description === null) return '';
  if (typeof description === 'number') return ` (status ${description})`;
  return ` (${description.code || description.message || description})`;
}

function startClient(i) {
  let finished = false;
  // Where the client is: its polling handshake, its websocket upgrade, or its emit.
  let stage = 'handshake';
  const finish = (error) => {
    if (finished) return;
    finished = true;
    if (error) {
      outcome.failed++;
      const reason = `${stage}: ${String(error).slice(0, 80)}`;
      outcome.errors[reason] = (outcome.errors[reason] || 0) + 1;
      socket.close();
    } else {
      outcome.done++;
      outcome.times.push(Date.now() - started);
    }
    settle();
  };
  const options = {
    transports: ['polling', 'websocket'],
    upgrade: true,
    agent: agentFor(i),
    localAddress: sourceIp(i),
    reconnection: false,
    forceNew: true,
    timeout: timeoutMs,
  };
  if (kind === 'xff') options.extraHeaders = { 'X-Forwarded-For': clientIp(i) };
  const socket = io(`http://127.0.0.1:${port}`, options);
  sockets.push(socket);
  const timer = setTimeout(() => finish('timeout'), timeoutMs);
  const emit = () => {
    stage = 'ack';
    socket.timeout(timeoutMs).emitWithAck('ping').then(
      (answer) => { clearTimeout(timer); finish(answer === 'pong' ? null : `bad ack ${answer}`); },
      (error) => finish(`ack: ${error.message}`),
    );
  };
  socket.on('connect', () => {
    stage = 'upgrade';
    const engine = socket.io.engine;
    if (engine.transport.name === 'websocket') return emit();
    engine.once('upgrade', emit);
    engine.once('upgradeError', (error) => finish(`upgrade: ${error.message}`));
  });
  socket.on('connect_error', (error) => finish(`connect: ${error.message}${describe(error.description)}`));
  socket.on('disconnect', (reason) => finish(`disconnect: ${reason}`));
}

// The longest this process's event loop stalled: a client that is late to
// write its request is late because of this, not because of the server.
let maxLagMs = 0;
function watchLag() {
  let last = Date.now();
  setInterval(() => {
    const now = Date.now();
    maxLagMs = Math.max(maxLagMs, now - last - 100);
    last = now;
  }, 100).unref();
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'go') {
    started = Date.now();
    watchLag();
    // All at once, but a few per turn of the event loop: created in one
    // synchronous loop, the first clients' connections would sit connected
    // and silent until the last client was created (seconds, for thousands),
    // which no real crowd of machines does.
    let next = first;
    const startSome = () => {
      for (const end = Math.min(first + clients, next + CLIENTS_PER_TURN); next < end; next++) startClient(next);
      if (next < first + clients) setImmediate(startSome);
    };
    startSome();
    // Bounded: whatever has not finished by then counts as failed.
    setTimeout(() => {
      const unfinished = clients - outcome.done - outcome.failed;
      if (unfinished > 0) outcome.errors['not finished'] = unfinished;
      outcome.failed += unfinished;
      report();
    }, timeoutMs + 5000).unref();
  } else if (line === 'stop') {
    for (const socket of sockets) socket.close();
    setTimeout(() => process.exit(0), 200);
  }
});
process.stdout.write(JSON.stringify({ type: 'ready' }) + '\n');

'use strict';
// Shared pieces of the benchmark server scripts. Every script is started by
// bench/run.js as a fresh primary process (its own process group) and talks
// back over stdout, one JSON object per line:
//   primary: {"type":"ready","pid":<primary pid>,"port":<port>}
//   worker:  {"type":"worker","pid":<worker pid>,"slot":<STICKY_WORKER_SLOT|null>}
//   either:  {"type":"unavailable","reason":"..."}   (then exits non-zero)
const http = require('http');

const PORT = Number(process.env.BENCH_PORT || 0);
const WORKERS = Number(process.env.BENCH_WORKERS || 2);
const SOCKETIO = process.env.BENCH_SOCKETIO !== '0';

function emit(obj) {
  // stdout is a pipe: writes are synchronous on Linux, so lines never interleave
  // mid-line between the primary and its workers.
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function reportReady(port) {
  emit({ type: 'ready', pid: process.pid, port });
}

function reportWorker() {
  emit({ type: 'worker', pid: process.pid, slot: process.env.STICKY_WORKER_SLOT ?? null });
}

function unavailable(reason) {
  emit({ type: 'unavailable', reason: String(reason).split('\n')[0].slice(0, 300) });
  process.exit(3);
}

const BODY = Buffer.from('ok');
// The tiny response every mode serves: 200 "ok", Connection: close.
// X-Worker-Pid lets the harness check stickiness and the worker spread.
function handler(req, res) {
  res.writeHead(200, {
    'Content-Type': 'text/plain',
    'Content-Length': BODY.length,
    'Connection': 'close',
    'X-Worker-Pid': String(process.pid),
  });
  res.end(BODY);
}

function createHttpServer() {
  // The plain handler is registered BEFORE socket.io attaches: engine.io then
  // wraps existing 'request' listeners and only calls them for non-/socket.io/ URLs.
  return http.createServer(handler);
}

// Attaches a socket.io server with the event the load generator sends:
// `421["ping"]` -> ack `431["pong"]`.
function attachSocketIo(httpServer) {
  if (!SOCKETIO) return null;
  const { Server } = require('socket.io');
  const io = new Server(httpServer, { serveClient: false });
  io.on('connection', (socket) => {
    socket.on('ping', (cb) => {
      if (typeof cb === 'function') cb('pong');
    });
  });
  return io;
}

process.on('uncaughtException', (err) => {
  unavailable(`uncaught exception in ${process.pid}: ${err && err.stack ? err.stack.split('\n').slice(0, 2).join(' | ') : err}`);
});

module.exports = {
  PORT, WORKERS, SOCKETIO, emit, reportReady, reportWorker, unavailable, handler,
  createHttpServer, attachSocketIo,
};

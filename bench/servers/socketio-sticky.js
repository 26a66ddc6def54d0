'use strict';
// @socket.io/sticky@2.0.1: setupMaster() in the primary (least-connection),
// setupWorker(io) in the workers. The workers' http server never listens: the
// primary reads the first chunk of each connection, picks a worker (engine.io
// sid from the URL, else least-connection) and passes the socket over IPC.
// Requests with a body (Content-Length / Transfer-Encoding, e.g. polling POSTs)
// are not handed over: the primary keeps the socket and relays chunks via IPC.
const cluster = require('cluster');
const http = require('http');
const c = require('./common');
const { setupMaster, setupWorker } = require('@socket.io/sticky');

if (!c.PORT) c.unavailable('needs an explicit port (BENCH_PORT)');

if (cluster.isPrimary) {
  const httpServer = http.createServer();
  setupMaster(httpServer, { loadBalancingMethod: 'least-connection' });
  cluster.setupPrimary({ serialization: 'advanced' }); // Buffers in IPC messages
  httpServer.on('error', (e) => c.unavailable(`primary error: ${e.message}`));
  httpServer.listen(c.PORT, () => c.reportReady(c.PORT));
  for (let i = 0; i < c.WORKERS; i++) cluster.fork();
} else {
  const httpServer = c.createHttpServer();
  const { Server } = require('socket.io');
  // setupWorker needs an io instance even when only plain HTTP is measured.
  const io = c.attachSocketIo(httpServer) || new Server(httpServer, { serveClient: false });
  setupWorker(io);
  c.reportWorker();
}

'use strict';
// socketio-sticky-session@0.4.3, object form: sticky({ num }, serverFactory).listen(port, cb).
// In the primary, sticky() returns a net.Server (pauseOnConnect) that hashes the
// remote IPv4 address and sends the socket to a worker. In workers it returns the
// factory's http server with listen() monkey-patched (it calls the callback and
// then listens on a random port of its own, which nobody uses).
// Called exactly as documented: .listen(port, cb) (dual-stack '::' listener; its
// hash splits remoteAddress on '.', which still spreads '::ffff:127.0.0.x' clients).
const cluster = require('cluster');
const c = require('./common');
const sticky = require('socketio-sticky-session');

if (!c.PORT) c.unavailable('needs an explicit port (BENCH_PORT)');

const opts = { num: c.WORKERS };
if (process.env.BENCH_SSS_PROXY === '1') Object.assign(opts, { proxy: true, header: 'x-forwarded-for' });
const srv = sticky(opts, () => {
  const server = c.createHttpServer();
  c.attachSocketIo(server);
  return server;
});

srv.listen(c.PORT, () => {
  if (cluster.isPrimary) c.reportReady(c.PORT);
  else c.reportWorker();
});
if (cluster.isPrimary) srv.on('error', (e) => c.unavailable(`primary error: ${e.message}`));

'use strict';
// npm sticky-session@1.1.2: sticky.listen(server, port, { workers }).
// Its primary listens on an internal net.Server, so server.address() is not
// usable in the primary: the harness probes a free port and passes it.
const c = require('./common');
const sticky = require('sticky-session');

if (!c.PORT) c.unavailable('sticky-session needs an explicit port (BENCH_PORT)');
const server = c.createHttpServer();
c.attachSocketIo(server);

if (sticky.listen(server, c.PORT, { workers: c.WORKERS })) {
  c.reportWorker();
} else {
  server.once('listening', () => c.reportReady(c.PORT));
}

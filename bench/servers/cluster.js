'use strict';
// Plain Node cluster, not sticky. BENCH_POLICY=rr: primary accepts and
// round-robins handles to workers (SCHED_RR). BENCH_POLICY=none: workers share
// the listening socket and accept directly (SCHED_NONE; the no-balancer limit).
const cluster = require('cluster');
const c = require('./common');

cluster.schedulingPolicy = process.env.BENCH_POLICY === 'none' ? cluster.SCHED_NONE : cluster.SCHED_RR;
if (!c.PORT) c.unavailable('needs an explicit port (BENCH_PORT)');

if (cluster.isPrimary) {
  let listening = 0;
  cluster.on('listening', () => {
    if (++listening === c.WORKERS) c.reportReady(c.PORT);
  });
  for (let i = 0; i < c.WORKERS; i++) cluster.fork();
} else {
  const server = c.createHttpServer();
  c.attachSocketIo(server);
  server.listen(c.PORT, () => c.reportWorker());
}

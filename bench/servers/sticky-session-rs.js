'use strict';
// sticky-session-rs (this repo): sticky.listen(server, port, { workers, routing })
// BENCH_ROUTING = ip (the defaults: kernel steering on Linux) | ip-accept-loop (kernel: false) | kernel (kernel: true)
//   | header | proxy-protocol | sid ; BENCH_ADDON = path to the repo root.
// BENCH_EXTRA_OPTS = optional JSON merged into the options (e.g. trusted proxies).
const path = require('path');
const c = require('./common');

const addonPath = process.env.BENCH_ADDON || path.resolve(__dirname, '..', '..');
let sticky;
try {
  sticky = require(addonPath);
} catch (e) {
  c.unavailable(`addon not loadable from ${addonPath}: ${e.message}`);
}
if (!sticky || typeof sticky.listen !== 'function') {
  c.unavailable(`addon at ${addonPath} exports no listen()`);
}

const routing = process.env.BENCH_ROUTING || 'ip';
const opts = { workers: c.WORKERS };
if (routing === 'kernel') opts.kernel = true;
else if (routing === 'ip-accept-loop') opts.kernel = false;
else if (routing !== 'ip') opts.routing = routing;
if (process.env.BENCH_EXTRA_OPTS) Object.assign(opts, JSON.parse(process.env.BENCH_EXTRA_OPTS));

const server = c.createHttpServer();
c.attachSocketIo(server);

let isWorker;
try {
  isWorker = sticky.listen(server, c.PORT, opts);
} catch (e) {
  c.unavailable(`listen(${JSON.stringify(opts)}) threw: ${e.message}`);
}
if (isWorker) {
  c.reportWorker();
} else {
  server.once('error', (e) => c.unavailable(`primary error: ${e.message}`));
  // The storm benchmark asks for the primary's counters (drops) after a run.
  process.on('SIGUSR2', () => c.emit({ type: 'stats', stats: sticky.stats() }));
  server.once('listening', () => {
    const a = server.address();
    if (!a || typeof a.port !== 'number') c.unavailable('server.address() returned no port in the primary');
    c.reportReady(a.port);
  });
}

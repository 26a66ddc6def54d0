// Prometheus metrics of the balancer: the primary serves /metrics on
// METRICS_PORT (default 9464) with prom-client, next to the app on PORT.
//   npm install prom-client
//   PORT=3000 node examples/metrics/app.js
//   curl localhost:9464/metrics
'use strict'

const http = require('http')
const sticky = require('sticky-session-rs')

const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ pid: process.pid, slot: Number(process.env.STICKY_WORKER_SLOT) }))
})

const workers = Number(process.env.WORKERS) || 2
// kernel: false: the accept loop counts every connection it hands out (with
// kernel steering, the default for IP routing, the primary sees none and only
// the slot metrics move).
if (!sticky.listen(server, Number(process.env.PORT ?? 3000), { workers, kernel: false })) {
  // The primary: the balancer's counters (sticky_session_*) and the
  // primary's own process metrics, on a port of their own.
  const client = require('prom-client')
  sticky.registerMetrics({ client })
  client.collectDefaultMetrics()
  const metricsServer = http.createServer(async (req, res) => {
    if (req.url !== '/metrics') {
      res.statusCode = 404
      return res.end('see /metrics\n')
    }
    res.setHeader('content-type', client.register.contentType)
    res.end(await client.register.metrics())
  })
  server.once('listening', () => {
    metricsServer.listen(Number(process.env.METRICS_PORT ?? 9464), process.env.METRICS_HOST || '127.0.0.1', () => {
      console.log(`listening on ${server.address().port} with ${workers} workers; metrics on http://127.0.0.1:${metricsServer.address().port}/metrics`)
    })
  })
  server.on('error', (error) => {
    console.error(`cannot listen: ${error.code} ${error.message}`)
    process.exit(1)
  })
}

// An app for pm2 in fork mode: pm2 supervises this one primary, and the
// primary forks and balances its own workers (see ecosystem.config.js).
//   pm2 start examples/pm2/ecosystem.config.js
//   pm2 sendSignal SIGHUP sticky-app     # rolling reload of the workers, zero failed requests
// A new primary without refusing a connection: blue-green.config.js.
'use strict'

const http = require('http')
const sticky = require('sticky-session-rs')

const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ pid: process.pid, slot: Number(process.env.STICKY_WORKER_SLOT) }))
})

// TAKEOVER=1 (blue-green.config.js): a new primary started while this one
// runs takes its listening socket over; this one then drains and exits 0.
const options = { workers: Number(process.env.WORKERS) || 2, takeover: process.env.TAKEOVER === '1' }
if (!sticky.listen(server, Number(process.env.PORT ?? 3000), options)) {
  server.once('listening', () => console.log(`primary ${process.pid} listening on ${server.address().port} with ${options.workers} workers`))
  server.on('error', (error) => {
    console.error(`cannot listen: ${error.code} ${error.message}`)
    process.exit(1)
  })
}

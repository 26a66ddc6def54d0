// An app for pm2 in fork mode: pm2 supervises this one primary, and the
// primary forks and balances its own workers (see ecosystem.config.js).
//   pm2 start examples/pm2/ecosystem.config.js
//   pm2 sendSignal SIGHUP sticky-app     # rolling reload of the workers, zero failed requests
'use strict'

const http = require('http')
const sticky = require('sticky-session-rs')

const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ pid: process.pid, slot: Number(process.env.STICKY_WORKER_SLOT) }))
})

const options = { workers: Number(process.env.WORKERS) || 2 }
if (!sticky.listen(server, Number(process.env.PORT ?? 3000), options)) {
  server.once('listening', () => console.log(`primary ${process.pid} listening on ${server.address().port} with ${options.workers} workers`))
  server.on('error', (error) => {
    console.error(`cannot listen: ${error.code} ${error.message}`)
    process.exit(1)
  })
}

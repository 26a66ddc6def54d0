// A sticky-session-rs app run by systemd with socket activation (see
// sticky-app.socket and sticky-app.service beside this file).
//
// Started by systemd, `listen` uses the socket systemd passes (the .socket
// unit's ListenStream=) instead of binding; systemd keeps that socket open
// while the service restarts, so clients wait in its queue instead of being
// refused. Started by hand, it binds PORT as usual. To try activation without
// installing the units:
//
//   systemd-socket-activate -l 127.0.0.1:3000 node examples/systemd/app.js
//   curl http://127.0.0.1:3000/
'use strict'

const http = require('http')
const sticky = require('sticky-session-rs')

const PORT = Number(process.env.PORT ?? 3000)
const WORKERS = Number(process.env.WORKERS) || undefined // default: one per CPU

const server = http.createServer((req, res) => {
  res.end(`hello from slot ${process.env.STICKY_WORKER_SLOT} (pid ${process.pid})\n`)
})

if (!sticky.listen(server, PORT, { workers: WORKERS })) {
  // SIGTERM (systemctl stop/restart): stop accepting, drain, exit 0.
  // SIGHUP (systemctl reload): replace the workers one at a time.
  server.once('listening', () => console.log(`listening on ${server.address().port}`))
  server.on('error', (error) => {
    console.error(`cannot listen: ${error.code}: ${error.message}`)
    process.exit(1)
  })
}

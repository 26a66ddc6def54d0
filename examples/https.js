// Socket.IO over HTTPS with sticky sessions. TLS ends in the workers: the
// primary routes by client IP and never reads the encrypted stream.
//
//   TLS_KEY=key.pem TLS_CERT=cert.pem PORT=3443 node examples/https.js
//
// Without TLS_KEY/TLS_CERT it uses the self-signed test certificate from
// this repository (__test__/fixtures/tls): fine to try, never for production.
'use strict'

const cluster = require('cluster')
const fs = require('fs')
const https = require('https')
const path = require('path')
const { Server } = require('socket.io')
const sticky = require('sticky-session-rs')

const PORT = Number(process.env.PORT ?? 3443)
const WORKERS = Number(process.env.WORKERS) || undefined
const fixtures = path.join(__dirname, '..', '__test__', 'fixtures', 'tls')

const server = https.createServer(
  {
    key: fs.readFileSync(process.env.TLS_KEY || path.join(fixtures, 'key.pem')),
    cert: fs.readFileSync(process.env.TLS_CERT || path.join(fixtures, 'cert.pem')),
  },
  (req, res) => {
    // Socket.IO answers its own path; everything else gets a greeting.
    if (!req.url.startsWith('/socket.io/')) res.end(`hello over TLS from worker ${cluster.worker.id}\n`)
  },
)

if (sticky.listen(server, PORT, { workers: WORKERS })) {
  const io = new Server(server)
  io.on('connection', (socket) => {
    socket.on('whoami', (ack) => ack({ worker: cluster.worker.id, pid: process.pid, transport: socket.conn.transport.name }))
  })
} else {
  server.once('listening', () => console.log(`listening on ${server.address().port}`))
  server.on('error', (error) => {
    console.error(`cannot listen on ${PORT}: ${error.code}`)
    process.exit(1)
  })
}

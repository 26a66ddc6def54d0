// Express + Socket.IO on every core, with sticky sessions.
//
//   PORT=3000 WORKERS=4 node examples/express-socketio.js
//
// The same file runs in the primary and in each worker: `sticky.listen`
// returns false in the primary (which only forks and balances) and true in a
// worker (which serves the connections routed to it: always the same worker
// for the same client IP, so Socket.IO long-polling works).
'use strict'

const cluster = require('cluster')
const http = require('http')
const express = require('express')
const { Server } = require('socket.io')
const sticky = require('sticky-session-rs')

const PORT = Number(process.env.PORT ?? 3000)
const WORKERS = Number(process.env.WORKERS) || undefined // default: one per CPU

const app = express()
app.get('/', (req, res) => res.send(`hello from worker ${cluster.worker.id}\n`))
app.get('/api/whoami', (req, res) => res.json({ worker: cluster.worker.id, pid: process.pid, ip: req.socket.remoteAddress }))

// Hand sticky-session-rs the server, not the port: do not call server.listen().
const server = http.createServer(app)

if (sticky.listen(server, PORT, { workers: WORKERS })) {
  // Worker: a plain Socket.IO server on the worker's share of the clients.
  const io = new Server(server)
  io.on('connection', (socket) => {
    socket.on('whoami', (ack) => ack({ worker: cluster.worker.id, pid: process.pid }))
    socket.on('chat', (text, ack) => {
      socket.broadcast.emit('chat', text) // reaches this worker's clients only (see cluster-adapter.js)
      ack('ok')
    })
  })
  // Graceful stop (sticky.close() in the primary disconnects this worker): end
  // the Socket.IO sessions too, or each open long-poll holds the worker until
  // it returns (up to Socket.IO's 25 s ping interval).
  cluster.worker.once('disconnect', () => io.close())
} else {
  // Primary: no request ever reaches this branch's JavaScript.
  server.once('listening', () => console.log(`listening on ${server.address().port}`))
  server.on('error', (error) => {
    console.error(`cannot listen on ${PORT}: ${error.code}`)
    process.exit(1)
  })
  // Graceful stop: stop accepting, let the workers finish and exit.
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => sticky.close(() => process.exit(0)))
  }
}

// Broadcasting across workers with @socket.io/cluster-adapter.
//
//   PORT=3000 WORKERS=4 node examples/cluster-adapter.js
//
// Sticky sessions keep each client on one worker; the cluster adapter relays
// io.emit() & co. through the primary's IPC channels so a broadcast from one
// worker reaches the clients of every worker. (Across several hosts, use a
// shared adapter such as Redis: see examples/scale-out/.)
//
// Protocol: a client emits 'shout' with a text; every client receives 'news'.
'use strict'

const cluster = require('cluster')
const http = require('http')
const { Server } = require('socket.io')
const { createAdapter, setupPrimary } = require('@socket.io/cluster-adapter')
const sticky = require('sticky-session-rs')

const PORT = Number(process.env.PORT ?? 3000)
const WORKERS = Number(process.env.WORKERS) || undefined

const server = http.createServer()

if (sticky.listen(server, PORT, { workers: WORKERS })) {
  const io = new Server(server)
  io.adapter(createAdapter()) // talks to setupPrimary() below
  io.on('connection', (socket) => {
    socket.on('whoami', (ack) => ack({ worker: cluster.worker.id, pid: process.pid }))
    socket.on('shout', (text, ack) => {
      io.emit('news', { text, from: process.pid }) // every client, every worker
      if (typeof ack === 'function') ack('sent')
    })
  })
} else {
  // Relay the adapter's messages between workers (sticky.listen forks them).
  setupPrimary()
  server.once('listening', () => console.log(`listening on ${server.address().port}`))
  server.on('error', (error) => {
    console.error(`cannot listen on ${PORT}: ${error.code}`)
    process.exit(1)
  })
}

// One host of a scaled-out Socket.IO service (see README.md in this folder).
//
//   REDIS_URL=redis://10.0.0.5:6379 PORT=3000 HOST_NAME=host-a node app.js
//
// Two layers of stickiness:
//   HAProxy (balance source)          picks the host for a client IP, and
//                                     tells the host that IP in a PROXY v2 header;
//   sticky-session-rs (proxy-protocol) picks the worker on that host for the
//                                     same IP, read from the PROXY header.
// The Redis adapter carries broadcasts between every worker of every host.
'use strict'

const cluster = require('cluster')
const http = require('http')
const os = require('os')
const { Server } = require('socket.io')
const { createAdapter } = require('@socket.io/redis-adapter')
const { createClient } = require('redis')
const sticky = require('sticky-session-rs')

const PORT = Number(process.env.PORT ?? 3000)
const HOST_NAME = process.env.HOST_NAME || os.hostname()
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const options = {
  workers: Number(process.env.WORKERS) || undefined, // default: one per CPU
  routing: 'proxy-protocol',
  // Who may send PROXY headers: your HAProxy hosts (default: loopback only).
  // Connections from anyone else are closed.
  trustedProxies: process.env.TRUSTED_PROXIES ? process.env.TRUSTED_PROXIES.split(',') : undefined,
}

const server = http.createServer((req, res) => {
  if (!req.url.startsWith('/socket.io/')) res.end(`${HOST_NAME} worker ${cluster.worker.id}\n`)
})

if (cluster.isPrimary) {
  sticky.listen(server, PORT, options) // forks the workers; returns false here
  server.once('listening', () => console.log(`${HOST_NAME} listening on ${server.address().port}`))
  server.on('error', (error) => {
    console.error(`cannot listen on ${PORT}: ${error.code}`)
    process.exit(1)
  })
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => sticky.close(() => process.exit(0)))
} else {
  startWorker().catch((error) => {
    console.error(`worker ${process.pid}: ${error.message}`)
    process.exit(1) // the primary respawns it (with back-off)
  })
}

async function startWorker() {
  // Connect to Redis first: the primary sends this worker no client until it
  // calls sticky.listen (clients wait in the accept queue meanwhile).
  const pubClient = createClient({ url: REDIS_URL })
  const subClient = pubClient.duplicate()
  for (const client of [pubClient, subClient]) client.on('error', (error) => console.error(`redis: ${error.message}`))
  await Promise.all([pubClient.connect(), subClient.connect()])

  const io = new Server(server, { adapter: createAdapter(pubClient, subClient) })
  const identity = () => ({ host: HOST_NAME, pid: process.pid, worker: cluster.worker.id })
  io.on('connection', (socket) => {
    // In proxy-protocol mode the worker sees the real client address.
    socket.on('whoami', (ack) => ack({ ...identity(), address: socket.handshake.address }))
    socket.on('shout', (text, ack) => {
      io.emit('news', { text, from: identity() }) // every client of every worker of every host
      if (typeof ack === 'function') ack('sent')
    })
  })

  sticky.listen(server, PORT, options) // returns true here: start taking clients

  // Graceful stop (sticky.close() in the primary): end the sessions, then Redis.
  cluster.worker.once('disconnect', async () => {
    await io.close()
    await Promise.allSettled([pubClient.quit(), subClient.quit()])
  })
}

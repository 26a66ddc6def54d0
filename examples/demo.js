// `npm start`: a socket.io app on 3 workers behind sticky-session-rs, then a
// short client run from 8 loopback addresses that prints which worker each
// client IP reached (polling first, then after the websocket upgrade).
'use strict'

const cluster = require('cluster')
const http = require('http')
const sticky = require('sticky-session-rs')

const WORKERS = 3
const server = http.createServer((req, res) => {
  if (!req.url.startsWith('/socket.io/')) res.end(`hello from worker ${cluster.worker.id}\n`)
})

if (sticky.listen(server, Number(process.env.PORT || 0), { workers: WORKERS })) {
  // Worker: an ordinary socket.io server; long-polling works because every
  // request of a client reaches this same process.
  const { Server } = require('socket.io')
  const io = new Server(server)
  io.on('connection', (socket) => {
    socket.on('whoami', (ack) => ack({ worker: cluster.worker.id, pid: process.pid, slot: process.env.STICKY_WORKER_SLOT }))
  })
} else {
  server.once('listening', async () => {
    const { port } = server.address()
    console.log(`sticky-session-rs demo: primary ${process.pid} listening on port ${port} with ${WORKERS} workers\n`)
    await new Promise((resolve) => setTimeout(resolve, 300))
    try {
      await runClients(port)
    } catch (error) {
      console.error('demo failed:', error.message)
      process.exitCode = 1
    } finally {
      // Graceful: stop accepting, let the workers drain and exit.
      sticky.close(() => console.log('all workers exited'))
    }
  })
  server.on('error', (error) => {
    console.error(`cannot listen: ${error.code} ${error.message}`)
    process.exit(1)
  })
}

async function runClients(port) {
  const { io } = require('socket.io-client')
  const rows = []
  await Promise.all(
    Array.from({ length: 8 }, async (_, i) => {
      const localAddress = `127.0.0.${10 + i}`
      const socket = io(`http://127.0.0.1:${port}`, {
        agent: new http.Agent({ localAddress }),
        localAddress,
        transports: ['polling', 'websocket'],
        reconnection: false,
        forceNew: true,
      })
      try {
        await new Promise((resolve, reject) => {
          socket.once('connect', resolve)
          socket.once('connect_error', reject)
        })
        const polling = await socket.timeout(5000).emitWithAck('whoami')
        if (socket.io.engine.transport.name !== 'websocket') {
          await new Promise((resolve) => socket.io.engine.once('upgrade', resolve))
        }
        const websocket = await socket.timeout(5000).emitWithAck('whoami')
        rows[i] = { client: localAddress, polling: `worker ${polling.worker} (slot ${polling.slot})`, websocket: `worker ${websocket.worker} (slot ${websocket.slot})`, sticky: polling.pid === websocket.pid ? 'yes' : 'NO' }
      } finally {
        socket.close()
      }
    }),
  )
  console.table(rows)
  const workersUsed = new Set(rows.map((row) => row.polling)).size
  const allSticky = rows.every((row) => row.sticky === 'yes')
  console.log(`\n${rows.length} clients, ${workersUsed} of ${WORKERS} workers used, every client stayed on its worker: ${allSticky}`)
  if (!allSticky) process.exitCode = 1
}

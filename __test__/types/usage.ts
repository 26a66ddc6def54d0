// Compiled with `tsc --noEmit` by types.spec.js: the public types must accept
// every documented use and reject misuse (the @ts-expect-error lines).
import * as http from 'http'
import * as promClient from 'prom-client'
import sticky = require('sticky-session-rs')
import { setupMaster, setupWorker, listen, type Stats, type SlotStats } from 'sticky-session-rs'

const server = http.createServer((_req, res) => res.end('ok'))

// 1. sticky-session shape, with every option.
const isWorker: boolean = sticky.listen(server, 3000, {
  workers: 4,
  env: { FOO: 'bar' },
  host: '::',
  backlog: 1024,
  seed: 42n,
  maxPendingPerSlot: 512,
  maxParked: 100,
  startupWait: 5000,
  routing: 'header',
  header: 'x-real-ip',
  trustedProxies: ['10.0.0.0/8', 'loopback'],
  ignoreMissingHeader: false,
  headerTimeout: 3000,
  maxHeaderBytes: 8192,
  maxPendingHeaders: 256,
  loadBalancingMethod: 'round-robin',
  sessionTtl: 60000,
  maxSessions: 1000,
  shutdownTimeout: 5000,
  handleSignals: false,
})
listen(server, '3000', { routing: 'proxy-protocol' })
// The port as net.Server#listen takes it: nothing (a free port), or where to listen.
listen(server)
listen(server, { port: 0, host: '::', ipv6Only: true, backlog: 64, exclusive: true, signal: new AbortController().signal })
// @ts-expect-error: a port is a number or a string
listen(server, true)
listen(server, 3000, { kernel: true })
listen(server, 3000, { kernel: true, takeover: true })
if (!isWorker) {
  const stats: Stats | null = sticky.stats()
  if (stats) {
    const first: SlotStats = stats.slots[0]
    const state: 'live' | 'down' = first.state
    console.log(stats.accepted, stats.dropped, stats.droppedHeaderTimeout, first.pid, first.sessions, state)
  }
  sticky.close(() => console.log('closed'))
  const reloaded: Promise<void> = sticky.reload((error) => error && console.error(error.message))
  void reloaded
}

// Prometheus metrics over stats().
const metrics: Record<string, unknown> = sticky.registerMetrics({ client: promClient, register: new promClient.Registry(), prefix: 'app_sticky_' })
void metrics
sticky.registerMetrics()
// @ts-expect-error: the prefix is a string
sticky.registerMetrics({ prefix: 1 })

// 2. socketio-sticky-session shape.
sticky(server).listen(3000, () => console.log('started'))
sticky(2, () => http.createServer()).listen(3000, '127.0.0.1', () => {})
sticky({ num: 2, proxy: true, header: 'x-forwarded-for', ignoreMissingHeader: true, sync: { isSynced: false, event: 'e' } }, server)

// 3. @socket.io/sticky shape.
setupMaster(server, { loadBalancingMethod: 'least-connection' })
sticky.setupPrimary(server)
declare const io: sticky.SocketIoServerLike
setupWorker(io)

// @ts-expect-error: the server must be a net.Server
sticky.listen({}, 3000)
// @ts-expect-error: unknown option
sticky.listen(server, 3000, { wrokers: 2 })
// @ts-expect-error: takeover is a boolean
sticky.listen(server, 3000, { takeover: 'yes' })
// @ts-expect-error: not a routing mode
sticky.listen(server, 3000, { routing: 'cookie' })
// @ts-expect-error: not a balancing method
setupMaster(server, { loadBalancingMethod: 'fastest' })

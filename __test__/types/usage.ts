// Compiled with `tsc --noEmit` by types.spec.js: the public types must accept
// every documented use and reject misuse (the @ts-expect-error lines).
import * as http from 'http'
import * as sticky from 'sticky-session-rs'

const server = http.createServer((_req, res) => res.end('ok'))
const isWorker: boolean = sticky.listen(server, 3000, {
  workers: 4,
  env: { FOO: 'bar' },
  host: '::',
  backlog: 1024,
  seed: 42n,
  maxPendingPerSlot: 512,
  maxParked: 100,
  startupWait: 5000,
})
sticky.listen(server, '3000')
if (!isWorker) {
  const stats = sticky.stats()
  if (stats) {
    const first: sticky.SlotStats = stats.slots[0]
    const state: 'live' | 'down' = first.state
    console.log(stats.accepted, stats.dropped, first.pid, state)
  }
}
// @ts-expect-error: the server must be a net.Server
sticky.listen({}, 3000)
// @ts-expect-error: unknown option
sticky.listen(server, 3000, { wrokers: 2 })

'use strict'
// Kernel-steered routing (kernel: true): SO_REUSEPORT listeners, one per
// slot, steered by a classic BPF program; the primary is out of the path.

const { startApp, stopAll, request, ioClient, once, whoamiRounds, fdCount, clientIp, sleep, startLoad, failuresOf, waitUntil, freeze, kernelQueueLimit } = require('./helpers')
const { optionDefault } = require('../lib/options')

afterAll(stopAll)


describe('kernel: true', () => {
  let app
  beforeAll(async () => {
    app = await startApp({ options: { workers: 3, kernel: true } })
  })

  test('socket.io polling clients from 12 addresses stay on their worker; the primary handles no connection', async () => {
    const fdsBefore = fdCount(app.pid)
    const clients = Array.from({ length: 12 }, (_, i) => ioClient(app.port, clientIp(i)))
    try {
      await Promise.all(clients.map((socket) => once(socket, 'connect')))
      const workers = new Set()
      for (const socket of clients) {
        const replies = await whoamiRounds(socket, 3)
        expect(new Set(replies.map((r) => r.pid)).size).toBe(1)
        workers.add(replies[0].pid)
      }
      expect(workers.size).toBeGreaterThanOrEqual(2)
    } finally {
      clients.forEach((socket) => socket.close())
    }
    const stats = await app.stats()
    expect(stats.kernel).toBe(true)
    expect(stats.accepted).toBe(0)
    expect(stats.slots.map((slot) => slot.state)).toEqual(['live', 'live', 'live'])
    expect(fdCount(app.pid)).toBe(fdsBefore)
  })

  test("a killed worker's clients wait for the respawn in the same slot; nobody moves and nothing fails", async () => {
    const before = new Map()
    for (let i = 0; i < 30; i++) before.set(clientIp(i), (await request(app.port, { localAddress: clientIp(i) })).json)
    const victim = before.get(clientIp(0))
    const victimIps = [...before].filter(([, who]) => who.pid === victim.pid).map(([ip]) => ip)
    process.kill(victim.pid, 'SIGKILL')
    await sleep(50)
    // Sent while the slot has no worker: queued on its socket, served by the replacement.
    const during = await Promise.all(victimIps.map((ip) => request(app.port, { localAddress: ip, timeout: 15000 })))
    for (const reply of during) {
      expect(reply.status).toBe(200)
      expect(reply.json.slot).toBe(victim.slot)
      expect(reply.json.pid).not.toBe(victim.pid)
    }
    for (const [ip, who] of before) {
      const now = (await request(app.port, { localAddress: ip })).json
      expect(now.slot).toBe(who.slot)
      if (who.pid !== victim.pid) expect(now.pid).toBe(who.pid)
    }
    expect((await app.stats()).slots[Number(victim.slot)].respawns).toBe(1)
  })

  test('kernel steering is refused with another routing mode', async () => {
    const sticky = require('..')
    expect(() => sticky.listen(require('http').createServer(), 0, { kernel: true, routing: 'header' })).toThrow(
      expect.objectContaining({ code: 'ERR_STICKY_INVALID_OPTION', message: expect.stringMatching(/routing 'ip' only/) }),
    )
  })
})

describe('kernel: true where the kernel refuses', () => {
  test('the primary warns and falls back to the accept loop, and clients are served as usual', async () => {
    const app = await startApp({ options: { workers: 2, kernel: true } }, { env: { STICKY_FAULT_INJECTION: 'kernel-unsupported' } })
    const warning = await app.waitFor('warning', (w) => w.code === 'ERR_STICKY_KERNEL_UNSUPPORTED')
    expect(warning.message).toMatch(/using the accept loop/)
    const pids = new Set()
    for (let i = 0; i < 10; i++) pids.add((await request(app.port, { localAddress: clientIp(i) })).json.pid)
    expect(pids.size).toBe(2)
    const stats = await app.stats()
    expect(stats.kernel).toBeUndefined()
    expect(stats.accepted).toBeGreaterThanOrEqual(10)
  })
})

// What only kernel steering does when a worker closes and when the primary
// closes: nothing a worker's socket queued may be lost. (A worker killed,
// rolling reload and SIGTERM under load are lifecycle.spec.js's, which runs
// them in both modes.)
describe('kernel: true, under load', () => {
  test("a worker that closes its server finishes what it has; its slot's clients wait for the replacement, nobody moves, nothing fails", async () => {
    const app = await startApp({ options: { workers: 2, kernel: true } })
    const slotOf = new Map()
    for (let i = 0; i < 40; i++) slotOf.set(clientIp(i), (await request(app.port, { localAddress: clientIp(i) })).json)
    // Counts, not time, so that it holds on a slow machine (60 s: a safety stop).
    const load = startLoad(app.port, { maxMs: 60000 })
    let results, closer
    try {
      await load.completed(50, { what: 'the load to get going' })
      closer = (await request(app.port, { localAddress: clientIp(0), path: '/close' })).json
      await app.waitFor('exit', (e) => e.pid === closer.pid, 60000)
      await waitUntil(() => app.workerPids().length === 2, { what: 'the replacement', timeout: 60000 })
      // The closer's slot's clients are served again, by the replacement.
      const replacedAt = Date.now()
      await load.completed(20, { since: replacedAt, where: (r) => r.slot === closer.slot, what: "20 requests of the closer's slot after the replacement" })
    } finally {
      results = await load.stop()
    }
    expect(failuresOf(results)).toEqual([])
    for (const result of results) expect(result.slot).toBe(slotOf.get(result.localAddress).slot)
    expect(app.find('exit', (e) => e.pid === closer.pid)).toEqual([expect.objectContaining({ code: 0 })])
  }, 180000)

  test('close() (the API) serves every accepted connection, then reports closed; the workers exit 0', async () => {
    const app = await startApp({ options: { workers: 2, kernel: true } })
    const load = startLoad(app.port, { path: '/slow?ms=200', concurrency: 12, maxMs: 60000 })
    let results, underWayAtClose
    try {
      // Counts, not time: on one CPU the first round alone can take long.
      await load.completed(12, { what: 'a first round of 12' })
      // Requests whose connection is established when close() is called: each must be answered.
      const underWay = () => load.inFlight().filter((r) => r.connected)
      await waitUntil(() => underWay().length >= 6, { what: '6 requests under way', timeout: 60000 })
      underWayAtClose = underWay()
      app.child.stdin.write('close\n')
      await app.waitFor('closed', () => true, 60000)
    } finally {
      results = await load.stop()
    }
    expect(failuresOf(results).filter((r) => r.error !== 'ECONNREFUSED')).toEqual([])
    const underWayIds = new Set(underWayAtClose.map((r) => r.id))
    expect(results.filter((r) => underWayIds.has(r.id)).map((r) => r.ok)).toEqual(underWayAtClose.map(() => true))
    await waitUntil(() => app.find('exit').length === 2, { what: 'both workers to exit' })
    expect(app.find('exit').every((e) => e.code === 0)).toBe(true)
  }, 180000)
})

// What stats() and the metrics show of kernel steering: the primary sees no
// connection, so the workers count what they accept in memory they share
// with it, and the kernel reports each slot's queue and what it dropped.
describe('kernel: true, observed', () => {
  /** The client addresses (of the first 40) that the kernel steers to each slot. */
  async function addressesBySlot(app) {
    const bySlot = new Map()
    for (let i = 0; i < 40; i++) {
      const { slot, pid } = (await request(app.port, { localAddress: clientIp(i) })).json
      if (!bySlot.has(slot)) bySlot.set(slot, { pid, addresses: [] })
      bySlot.get(slot).addresses.push(clientIp(i))
    }
    return bySlot
  }

  test('under load, each slot counts what its workers accepted; the queue limit is the backlog, and an idle queue is empty', async () => {
    const app = await startApp({ options: { workers: 2, kernel: true, backlog: 64 } })
    const load = startLoad(app.port, { concurrency: 8, maxMs: 60000 })
    let results
    try {
      await load.completed(150)
    } finally {
      results = await load.stop()
    }
    expect(failuresOf(results)).toEqual([])
    const stats = await app.stats()
    const served = (slot) => results.filter((r) => r.slot === String(slot)).length
    for (const slot of stats.slots) {
      // Each request is one connection; the stickiness probe and the first ones may be counted too.
      expect(slot.accepted).toBeGreaterThanOrEqual(served(slot.slot))
      expect(slot.accepted).toBeLessThan(served(slot.slot) + 20)
      expect(slot).toEqual(expect.objectContaining({ queueLimit: 64, queued: 0, listenDrops: 0, held: 0 }))
    }
    expect(stats.slots.reduce((sum, slot) => sum + slot.accepted, 0)).toBeGreaterThan(100)
    expect(stats.accepted).toBe(0)
    expect(stats.hostListenDrops).toBeGreaterThanOrEqual(stats.hostListenOverflows)
  }, 180000)

  test('a worker whose JavaScript is busy: its relief thread takes the burst off the queue (relieved, held), nothing is dropped, everyone is served', async () => {
    const app = await startApp({ options: { workers: 2, kernel: true, backlog: 64 } })
    const bySlot = await addressesBySlot(app)
    const [slot, { pid, addresses }] = [...bySlot].find(([, { addresses }]) => addresses.length >= 5)
    const busy = request(app.port, { localAddress: addresses[0], path: '/busy?ms=2500' })
    await sleep(300)
    // Twice the queue's limit within a quarter of a second or so (relief looks
    // every 10 ms: a burst that fills the queue faster still overflows it),
    // while the worker's JavaScript thread accepts nothing.
    const burst = []
    for (let i = 0; i < 128; i++) {
      burst.push(request(app.port, { localAddress: addresses[i % addresses.length] }))
      await sleep(2)
    }
    const during = await waitUntil(async () => {
      const stats = await app.stats()
      return stats.slots[Number(slot)].held >= 100 && stats
    }, { what: 'the relief thread to hold the burst' })
    // A quarter of the limit, and what arrived since the last look: far from full.
    expect(during.slots[Number(slot)].queued).toBeLessThan(40)
    expect((await busy).json.pid).toBe(pid)
    const results = await Promise.all(burst)
    expect(results.map((r) => r.json.pid)).toEqual(Array(128).fill(pid))
    const after = (await app.stats()).slots[Number(slot)]
    expect(after.relieved).toBeGreaterThanOrEqual(100)
    expect(after).toEqual(expect.objectContaining({ held: 0, listenDrops: 0 }))
  })

  test('a frozen worker (relief stopped with it): its full queue drops handshakes, counted for its slot and host-wide; its clients are served once it resumes', async () => {
    const app = await startApp({ options: { workers: 2, kernel: true, backlog: 8 } })
    const bySlot = await addressesBySlot(app)
    const [slot, { pid, addresses }] = [...bySlot].find(([, { addresses }]) => addresses.length >= 5)
    const before = await app.stats()
    await freeze(pid)
    let results
    try {
      const burst = Array.from({ length: 30 }, (_, i) => request(app.port, { localAddress: addresses[i % addresses.length], timeout: 20000 }))
      const full = await waitUntil(async () => {
        const stats = await app.stats()
        return stats.slots[Number(slot)].listenDrops > 0 && stats
      }, { what: 'the frozen slot to drop handshakes' })
      expect(full.slots[Number(slot)].queued).toBe(9) // the kernel holds limit + 1
      expect(full.hostListenOverflows - before.hostListenOverflows).toBeGreaterThan(0)
      expect(full.hostListenDrops - before.hostListenDrops).toBeGreaterThanOrEqual(full.slots[Number(slot)].listenDrops - before.slots[Number(slot)].listenDrops)
      process.kill(pid, 'SIGCONT')
      // Dropped SYNs are sent again (1 s, 3 s, ...): served then.
      results = await Promise.all(burst)
    } finally {
      process.kill(pid, 'SIGCONT')
    }
    expect(results.map((r) => r.json.pid)).toEqual(Array(30).fill(pid))
    const other = [...bySlot.keys()].find((s) => s !== slot)
    expect((await app.stats()).slots[Number(other)].listenDrops).toBe(0)
  }, 30000)

  test('registerMetrics() exposes the slots\' kernel counters and the host-wide ones', async () => {
    const app = await startApp({ options: { workers: 2, kernel: true } })
    for (let i = 0; i < 10; i++) await request(app.port, { localAddress: clientIp(i) })
    const stats = await app.stats()
    const { registerMetrics } = require('../lib/metrics')
    const client = require('prom-client')
    const register = new client.Registry()
    registerMetrics(() => stats, { client, register })
    const text = await register.metrics()
    const accepted = stats.slots.map((slot) => slot.accepted)
    expect(accepted.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(10)
    for (const slot of stats.slots) {
      expect(text).toContain(`sticky_session_slot_accepted_total{slot="${slot.slot}"} ${slot.accepted}`)
      // The default backlog, as the kernel caps it.
      expect(slot.queueLimit).toBe(kernelQueueLimit(optionDefault('backlog')))
      expect(text).toContain(`sticky_session_slot_queue_limit{slot="${slot.slot}"} ${slot.queueLimit}`)
      expect(text).toContain(`sticky_session_slot_listen_drops_total{slot="${slot.slot}"} 0`)
    }
    expect(text).toMatch(/^sticky_session_host_listen_overflows_total \d+$/m)
    expect(text).toMatch(/^# HELP sticky_session_host_listen_drops_total Host-wide/m)
  })
})

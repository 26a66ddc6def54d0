'use strict'
// Kernel-steered routing (kernel: true): SO_REUSEPORT listeners, one per
// slot, steered by a classic BPF program; the primary is out of the path.

const { startApp, stopAll, request, ioClient, once, emitWithAck, fdCount, clientIp, sleep, startLoad, failuresOf, waitUntil, freeze } = require('./helpers')

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
        const replies = [await emitWithAck(socket, 'whoami'), await emitWithAck(socket, 'whoami'), await emitWithAck(socket, 'whoami')]
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

// The lifecycle of lifecycle.spec.js, in kernel mode: nothing a worker's
// socket queued may be lost when workers are replaced, close, die or the
// primary shuts down.
describe('kernel: true, under load', () => {
  test('SIGTERM: no connection the kernel accepted is dropped, in-flight requests finish, every process exits 0', async () => {
    const app = await startApp({ options: { workers: 2, kernel: true } })
    const load = startLoad(app.port, { path: '/slow?ms=300', concurrency: 16 })
    await sleep(700)
    process.kill(app.pid, 'SIGTERM')
    await waitUntil(() => app.exited, { what: 'the primary to exit', timeout: 20000 })
    const results = await load.stop()
    expect(app.exited).toEqual({ code: 0, signal: null })
    // Once the sockets close, new connections are refused; nothing else may fail.
    expect(failuresOf(results).filter((r) => r.error !== 'ECONNREFUSED')).toEqual([])
    expect(results.filter((r) => r.ok).length).toBeGreaterThan(16)
    expect(app.find('exit').every((e) => e.code === 0)).toBe(true)
  })

  test.each([['sticky.reload()', 'api'], ['SIGHUP', 'signal']])('%s replaces every worker one at a time with zero failed requests; every client keeps its slot', async (_, how) => {
    const app = await startApp({ options: { workers: 3, kernel: true } })
    const slotOf = new Map()
    for (let i = 0; i < 40; i++) slotOf.set(clientIp(i), (await request(app.port, { localAddress: clientIp(i) })).json.slot)
    const before = new Set(app.workerPids())
    const load = startLoad(app.port)
    await sleep(300)
    if (how === 'api') app.child.stdin.write('reload\n')
    else process.kill(app.pid, 'SIGHUP')
    await waitUntil(() => app.workerPids().length === 3 && app.workerPids().every((pid) => !before.has(pid)), { what: 'every worker replaced', timeout: 30000 })
    if (how === 'api') expect((await app.waitFor('reloaded')).error).toBeNull()
    await sleep(300)
    const results = await load.stop()
    expect(failuresOf(results)).toEqual([])
    expect(results.length).toBeGreaterThan(100)
    for (let i = 0; i < 40; i++) expect((await request(app.port, { localAddress: clientIp(i) })).json.slot).toBe(slotOf.get(clientIp(i)))
    expect(app.find('exit').every((e) => e.code === 0)).toBe(true)
  })

  test("a worker that closes its server finishes what it has; its slot's clients wait for the replacement, nobody moves, nothing fails", async () => {
    const app = await startApp({ options: { workers: 2, kernel: true } })
    const slotOf = new Map()
    for (let i = 0; i < 40; i++) slotOf.set(clientIp(i), (await request(app.port, { localAddress: clientIp(i) })).json)
    const load = startLoad(app.port)
    await sleep(300)
    const closer = (await request(app.port, { localAddress: clientIp(0), path: '/close' })).json
    await app.waitFor('exit', (e) => e.pid === closer.pid, 15000)
    await waitUntil(() => app.workerPids().length === 2, { what: 'the replacement', timeout: 15000 })
    await sleep(300)
    const results = await load.stop()
    expect(failuresOf(results)).toEqual([])
    for (const result of results) expect(result.slot).toBe(slotOf.get(result.localAddress).slot)
    expect(app.find('exit', (e) => e.pid === closer.pid)).toEqual([expect.objectContaining({ code: 0 })])
  })

  test('a worker killed under load: requests sent after it stopped are served by its replacement, in its slot', async () => {
    const app = await startApp({ options: { workers: 3, kernel: true } })
    const load = startLoad(app.port)
    await sleep(500)
    const victim = app.workerPids()[0]
    await freeze(victim)
    const stoppedAt = Date.now()
    await sleep(400)
    process.kill(victim, 'SIGKILL')
    await app.waitFor('exit', (e) => e.pid === victim)
    await sleep(1500)
    const results = await load.stop()
    // Requests the victim took before it was frozen die with it (at most one per load loop).
    expect(failuresOf(results).length).toBeLessThanOrEqual(8)
    // Strictly later: Date.now() counts milliseconds, and a request started in
    // the millisecond the stop was seen may have been taken just before it.
    expect(failuresOf(results.filter((r) => r.started > stoppedAt))).toEqual([])
    expect(results.length).toBeGreaterThan(100)
  })

  test('close() (the API) serves every accepted connection, then reports closed; the workers exit 0', async () => {
    const app = await startApp({ options: { workers: 2, kernel: true } })
    const load = startLoad(app.port, { path: '/slow?ms=200', concurrency: 12 })
    await sleep(500)
    app.child.stdin.write('close\n')
    await app.waitFor('closed', () => true, 20000)
    const results = await load.stop()
    expect(failuresOf(results).filter((r) => r.error !== 'ECONNREFUSED')).toEqual([])
    expect(results.filter((r) => r.ok).length).toBeGreaterThan(12)
    await waitUntil(() => app.find('exit').length === 2, { what: 'both workers to exit' })
    expect(app.find('exit').every((e) => e.code === 0)).toBe(true)
  })
})

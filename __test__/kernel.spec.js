'use strict'
// Kernel-steered routing (kernel: true): SO_REUSEPORT listeners, one per
// slot, steered by a classic BPF program; the primary is out of the path.

const { startApp, stopAll, request, ioClient, once, emitWithAck, fdCount, clientIp, sleep } = require('./helpers')

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
    expect(warning.message).toMatch(/falling back to the accept loop/)
    const pids = new Set()
    for (let i = 0; i < 10; i++) pids.add((await request(app.port, { localAddress: clientIp(i) })).json.pid)
    expect(pids.size).toBe(2)
    const stats = await app.stats()
    expect(stats.kernel).toBeUndefined()
    expect(stats.accepted).toBeGreaterThanOrEqual(10)
  })
})

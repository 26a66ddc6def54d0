'use strict'
// Worker death, graceful close, and hostile or broken clients.

const { startApp, stopAll, request, ioClient, once, emitWithAck, fdCount, rawConnection, waitUntil, clientIp, sleep } = require('./helpers')

afterAll(stopAll)


describe('a worker killed with SIGKILL', () => {
  let app
  beforeAll(async () => {
    app = await startApp({ options: { workers: 3 } })
  })

  test('is respawned into its slot, and the clients of the surviving workers keep their sessions and workers', async () => {
    const clients = Array.from({ length: 24 }, (_, i) => ioClient(app.port, clientIp(i)))
    try {
      await Promise.all(clients.map((socket) => once(socket, 'connect')))
      const before = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami')))
      const victim = before[0]
      const survivors = clients.filter((_, i) => before[i].pid !== victim.pid)
      expect(survivors.length).toBeGreaterThan(0)
      let survivorDisconnects = 0
      survivors.forEach((socket) => socket.on('disconnect', () => survivorDisconnects++))

      process.kill(victim.pid, 'SIGKILL')
      await app.waitFor('exit', (e) => e.pid === victim.pid)
      // The respawned worker takes the victim's slot, and with it the victim's clients.
      const replacement = await waitUntil(
        async () => {
          const { json } = await request(app.port, { localAddress: clientIp(0) })
          return json.pid !== victim.pid && json.slot === victim.slot ? json : null
        },
        { what: 'the replacement worker to serve slot ' + victim.slot },
      )
      expect(app.workerPids()).toContain(replacement.pid)

      const after = await Promise.all(survivors.map((socket) => emitWithAck(socket, 'whoami')))
      survivors.forEach((socket, i) => {
        const original = before[clients.indexOf(socket)]
        expect(after[i].pid).toBe(original.pid)
      })
      expect(survivorDisconnects).toBe(0)
      // Every client address is back on its original slot.
      for (let i = 0; i < clients.length; i++) {
        const { json } = await request(app.port, { localAddress: clientIp(i) })
        expect(json.slot).toBe(before[i].slot)
      }
      const stats = await app.stats()
      expect(stats.slots[Number(victim.slot)].respawns).toBe(1)
      expect(stats.slots.every((slot) => slot.state === 'live')).toBe(true)
    } finally {
      clients.forEach((socket) => socket.close())
    }
  })
})

describe('server.close() in a worker', () => {
  let app
  beforeAll(async () => {
    app = await startApp({ options: { workers: 2 } })
  })

  test('the worker stops taking connections, exits once drained, and is replaced exactly once', async () => {
    const { json: closing } = await request(app.port, { localAddress: clientIp(0) })
    // A slow request in flight on the closing worker must complete.
    const slow = request(app.port, { localAddress: clientIp(0), path: '/slow?ms=700' })
    await sleep(100)
    const closed = await request(app.port, { localAddress: clientIp(0), path: '/close' })
    expect(closed.json.pid).toBe(closing.pid)

    // While it drains, its clients are served by the other worker.
    const during = await request(app.port, { localAddress: clientIp(0) })
    expect(during.status).toBe(200)
    expect((await slow).json.pid).toBe(closing.pid)

    await app.waitFor('exit', (e) => e.pid === closing.pid, 10000)
    await waitUntil(() => app.workerPids().length === 2, { what: 'a replacement worker' })
    await sleep(1500)
    const onlineCount = app.find('online').length
    expect(onlineCount).toBe(3)
    expect(app.find('exit').length).toBe(1)
    const { json: back } = await request(app.port, { localAddress: clientIp(0) })
    expect(back.slot).toBe(closing.slot)
    expect(back.pid).not.toBe(closing.pid)
  })
})

describe('slow, broken and hostile clients', () => {
  let app
  beforeAll(async () => {
    // The accept loop: what the primary does with hostile clients (kernel
    // steering never shows them to the primary).
    app = await startApp({ options: { workers: 2, kernel: false }, headersTimeout: 1000, requestTimeout: 2000, connectionsCheckingInterval: 100 })
  })

  test('garbage, immediate resets and silent connections leave the primary serving, with no fd growth', async () => {
    // Warm up: the primary's steady state includes the runtime's own descriptors.
    for (let i = 0; i < 20; i++) await request(app.port, { localAddress: clientIp(i) })
    const fdsBefore = fdCount(app.pid)

    const silent = []
    const tasks = []
    for (let i = 0; i < 300; i++) {
      const localAddress = clientIp(i)
      const kind = i % 3
      tasks.push(
        rawConnection(app.port, localAddress).then((socket) => {
          socket.on('error', () => {})
          if (kind === 0) {
            socket.end(Buffer.from([0x16, 0x03, 0x01, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a, 0xde, 0xad]))
          } else if (kind === 1) {
            socket.resetAndDestroy()
          } else {
            silent.push(socket)
          }
        }),
      )
    }
    await Promise.all(tasks)
    // The primary keeps serving while 100 silent connections are open.
    const during = await request(app.port, { localAddress: clientIp(7) })
    expect(during.status).toBe(200)
    silent.forEach((socket) => socket.destroy())

    await waitUntil(async () => {
      const stats = await app.stats()
      return stats.slots.every((slot) => slot.pending === 0) && fdCount(app.pid) <= fdsBefore
    }, { what: 'the primary to release every connection' })
    const stats = await app.stats()
    expect(stats.dropped).toBe(0)
    expect(stats.accepted).toBeGreaterThanOrEqual(320)
    expect(fdCount(app.pid)).toBeLessThanOrEqual(fdsBefore)
    expect((await request(app.port, { localAddress: clientIp(8) })).status).toBe(200)
  })

  test('a slowloris gets its 408 after headersTimeout: the worker enforces Node timeouts', async () => {
    const socket = await rawConnection(app.port, clientIp(9))
    socket.write('GET /whoami HTTP/1.1\r\nHost: x\r\n')
    let reply = ''
    socket.on('data', (chunk) => (reply += chunk))
    const started = Date.now()
    await once(socket, 'close', 8000)
    expect(reply).toMatch(/^HTTP\/1\.1 408/)
    expect(Date.now() - started).toBeLessThan(6000)
  })
})

'use strict'
// Worker death, graceful close, and hostile or broken clients. The worker's
// death and the slowloris are runtime-specs.js's, run here under Node (and
// under Bun and Deno by bun.spec.js and deno.spec.js).

const { startApp, request, fdCount, rawConnection, waitUntil, clientIp, sleep } = require('./helpers')
const { NODE, cleanUp, socketIoApp, killedWorkerSpec, SLOWLORIS_TIMEOUTS, expectSlowloris408 } = require('./runtime-specs')

afterAll(cleanUp)

describe('a socket.io app, 3 workers', () => {
  killedWorkerSpec(NODE, socketIoApp(NODE))
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
    // Until the worker has taken the slow request's connection (not for a time:
    // each look is a connection of its own to the same worker, counted too).
    let looks = 0
    await waitUntil(async () => {
      looks++
      const { json } = await request(app.port, { localAddress: clientIp(0) })
      return json.connectionsTaken >= closing.connectionsTaken + looks + 1
    }, { what: 'the worker to take the slow request' })
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
    app = await startApp({ options: { workers: 2, kernel: false }, ...SLOWLORIS_TIMEOUTS })
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
    await expectSlowloris408(app.port, clientIp(9))
  })
})

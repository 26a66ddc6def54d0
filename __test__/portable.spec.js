'use strict'
// The portable path (STICKY_SESSION_PORTABLE=1 here; what macOS and Windows
// get without it) as its users see it: it says once that it runs, routes
// each client to the slot the native accept loop would (same rendezvous hash
// and seed), refuses the Linux-only features (and slot ports) by name, and keeps socket.io
// clients sticky through a worker's death and a rolling reload. The rest of
// its behaviour is checked by CI's second pass over the API, listen-form,
// fork-order, shutdown, peers', routing, lifecycle and fault specs with
// STICKY_SESSION_PORTABLE=1 (see .ci/run).

const net = require('net')
const { startApp, stopAll, request, ioClient, once, emitWithAck, clientIp, waitUntil, startLoad, failuresOf, sleep, freePort } = require('./helpers')

const PORTABLE_ENV = { STICKY_SESSION_PORTABLE: '1' }

afterAll(stopAll)

/** The slot each of `count` client addresses reaches. */
async function slotsOf(app, count) {
  const slots = []
  for (let i = 0; i < count; i++) slots.push((await request(app.port, { localAddress: clientIp(i) })).json.slot)
  return slots
}

test('it says once, in the debug log, that it runs and why; the primary forks and serves as usual', async () => {
  const app = await startApp({ options: { workers: 2 } }, { env: { ...PORTABLE_ENV, DEBUG: 'sticky-session-rs' } })
  expect((await request(app.port)).status).toBe(200)
  const lines = app.stderr.split('\n').filter((line) => /portable path/.test(line))
  expect(lines).toHaveLength(1)
  expect(lines[0]).toMatch(/sticky-session-rs portable path \(JavaScript, cluster IPC\): STICKY_SESSION_PORTABLE=1 asks for it/)
  expect(app.stderr).toMatch(/listening on .* with 2 workers \(portable, bound\)/)
  expect((await app.stats()).slots.map((slot) => slot.state)).toEqual(['live', 'live'])
  await app.stop()
})

test('each client reaches the slot the native accept loop gives it (the same rendezvous hash and seed), also with another seed', async () => {
  for (const options of [{ workers: 3, kernel: false }, { workers: 3, kernel: false, seed: '12345' }]) {
    const native = await startApp({ options })
    const expected = await slotsOf(native, 24)
    await native.stop()
    const portable = await startApp({ options }, { env: PORTABLE_ENV })
    expect(await slotsOf(portable, 24)).toEqual(expected)
    await portable.stop()
    expect(new Set(expected).size).toBe(3)
  }
})

describe('Linux-only features are refused by name', () => {
  test('kernel: true: one ERR_STICKY_KERNEL_UNSUPPORTED warning, then it serves', async () => {
    const app = await startApp({ options: { workers: 2, kernel: true } }, { env: PORTABLE_ENV })
    const warning = await app.waitFor('warning', (w) => w.code === 'ERR_STICKY_KERNEL_UNSUPPORTED')
    expect(warning.message).toMatch(/kernel steering needs the native binding, and STICKY_SESSION_PORTABLE=1 asks for it/)
    expect((await request(app.port)).status).toBe(200)
    expect(app.find('warning')).toHaveLength(1)
    expect((await app.stats()).kernel).toBeUndefined()
  })

  test('takeover: true: one ERR_STICKY_TAKEOVER_UNSUPPORTED warning; the port is bound as usual', async () => {
    const port = await freePort()
    const app = await startApp({ port, options: { workers: 2, takeover: true, host: '127.0.0.1' } }, { env: PORTABLE_ENV })
    const warning = await app.waitFor('warning', (w) => w.code === 'ERR_STICKY_TAKEOVER_UNSUPPORTED')
    expect(warning.message).toMatch(/takeover needs the native binding \(Linux\).*takeover is off/)
    expect(app.port).toBe(port)
    expect((await request(app.port)).status).toBe(200)
    expect(app.find('warning')).toHaveLength(1)
  })

  test('systemd socket activation: an ERR_STICKY_SYSTEMD_UNSUPPORTED error event; no worker is forked', async () => {
    const listening = net.createServer()
    await new Promise((resolve) => listening.listen(0, '127.0.0.1', resolve))
    const app = await startApp(
      { port: listening.address().port, options: { workers: 1 } },
      {
        env: { ...PORTABLE_ENV, LISTEN_FDS: '1' },
        extraStdio: [listening._handle.fd],
        launcher: (node, args) => ['sh', ['-c', 'LISTEN_PID=$$ exec "$@"', 'sh', node, ...args]],
        waitForListening: false,
      },
    )
    listening.close()
    const error = await app.waitFor('error')
    expect(error.code).toBe('ERR_STICKY_SYSTEMD_UNSUPPORTED')
    expect(error.message).toMatch(/LISTEN_FDS=1.*install the native binding, or start the app without socket activation/)
    await sleep(300)
    expect(app.find('online')).toEqual([])
  })
})

test('slotPorts: an ERR_STICKY_SLOT_PORTS_UNSUPPORTED error event (a proxy set up over them would find nothing); no worker is forked', async () => {
  const app = await startApp({ options: { workers: 2, routing: 'header', slotPorts: true } }, { env: PORTABLE_ENV, waitForListening: false })
  const error = await app.waitFor('error')
  expect(error.code).toBe('ERR_STICKY_SLOT_PORTS_UNSUPPORTED')
  expect(error.message).toMatch(/options\.slotPorts needs the native binding \(Linux\), and STICKY_SESSION_PORTABLE=1 asks for it: install the native binding, or leave slotPorts off/)
  await sleep(300)
  expect(app.find('online')).toEqual([])
})

describe('socket.io on the portable path, 3 workers', () => {
  let app
  beforeAll(async () => {
    app = await startApp({ options: { workers: 3 } }, { env: PORTABLE_ENV })
  })

  test('polling and upgraded clients from 12 addresses keep their worker; a killed worker is respawned into its slot and the others keep their sessions', async () => {
    const clients = Array.from({ length: 12 }, (_, i) => ioClient(app.port, clientIp(i), { transports: ['polling', 'websocket'], upgrade: i % 2 === 0 }))
    try {
      await Promise.all(clients.map((socket) => once(socket, 'connect')))
      const before = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami')))
      for (const [i, reply] of before.entries()) expect((await request(app.port, { localAddress: clientIp(i) })).json.pid).toBe(reply.pid)
      expect(new Set(before.map((reply) => reply.pid)).size).toBeGreaterThanOrEqual(2)
      const victim = before[0]
      const survivors = clients.filter((_, i) => before[i].pid !== victim.pid)
      process.kill(victim.pid, 'SIGKILL')
      await app.waitFor('exit', (e) => e.pid === victim.pid)
      const replacement = await waitUntil(async () => {
        const { json } = await request(app.port, { localAddress: clientIp(0) })
        return json.pid !== victim.pid && json.slot === victim.slot ? json : null
      }, { what: `a new worker in slot ${victim.slot}` })
      expect(app.workerPids()).toContain(replacement.pid)
      const after = await Promise.all(survivors.map((socket) => emitWithAck(socket, 'whoami')))
      survivors.forEach((socket, i) => expect(after[i].pid).toBe(before[clients.indexOf(socket)].pid))
      const stats = await app.stats()
      expect(stats.slots[Number(victim.slot)].respawns).toBe(1)
      expect(stats.dropped).toBe(0)
    } finally {
      clients.forEach((socket) => socket.close())
    }
  })

  test('a rolling reload under load: every worker replaced, zero failed requests, every client back on its slot', async () => {
    const slots = await slotsOf(app, 24)
    const before = new Set(app.workerPids())
    // Counts, not time, so that it holds on a slow machine (60 s: a safety stop).
    const load = startLoad(app.port, { maxMs: 60000 })
    let results
    try {
      await load.completed(50, { what: 'the load to get going' })
      app.child.stdin.write('reload\n')
      expect((await app.waitFor('reloaded', () => true, 60000)).error).toBeNull()
      await load.completed(50, { since: Date.now(), what: '50 requests sent after the reload' })
    } finally {
      results = await load.stop()
    }
    expect(failuresOf(results)).toEqual([])
    expect(app.workerPids().filter((pid) => before.has(pid))).toEqual([])
    expect(await slotsOf(app, 24)).toEqual(slots)
    const stats = await app.stats()
    expect(stats.slots.map((slot) => slot.pending)).toEqual([0, 0, 0])
    expect(stats.accepted).toBe(stats.slots.reduce((sum, slot) => sum + slot.taken, 0))
  }, 180000)
})

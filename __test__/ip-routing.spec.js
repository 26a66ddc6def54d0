'use strict'
// IP routing end to end: real socket.io servers in real workers, real
// socket.io clients from many loopback addresses.

const { startApp, stopAll, request, ioClient, once, emitWithAck, clientIp, PORTABLE, nativeTest } = require('./helpers')

afterAll(stopAll)

/** Runs `rounds` acknowledged emits on a connected client; returns the identities seen. */
async function whoamiRounds(socket, rounds) {
  const seen = []
  for (let i = 0; i < rounds; i++) seen.push(await emitWithAck(socket, 'whoami'))
  return seen
}

// Both ways of routing by IP: kernel steering (the default on Linux) and the
// accept loop in the primary (`kernel: false`, and wherever kernel steering
// cannot work).
describe.each([
  ['kernel steering (the default)', {}],
  ['the accept loop (kernel: false)', { kernel: false }],
])('ip routing with socket.io: %s', (_, mode) => {
  let app
  beforeAll(async () => {
    app = await startApp({ options: { workers: 3, ...mode } })
  })

  test('the primary routes as asked (the portable path by the same hash in JavaScript)', async () => {
    const stats = await app.stats()
    expect(Boolean(stats.kernel)).toBe(mode.kernel !== false && !PORTABLE)
  })

  test('polling-only clients from 12 addresses complete the handshake and acknowledged emits, each on one worker', async () => {
    const clients = Array.from({ length: 12 }, (_, i) => ioClient(app.port, clientIp(i)))
    try {
      await Promise.all(clients.map((socket) => once(socket, 'connect')))
      const perClient = await Promise.all(clients.map((socket) => whoamiRounds(socket, 5)))
      const workersUsed = new Set()
      perClient.forEach((seen, i) => {
        const pids = new Set(seen.map((s) => s.pid))
        expect({ ip: clientIp(i), pids: [...pids] }).toEqual({ ip: clientIp(i), pids: [seen[0].pid] })
        expect(seen[0].remoteAddress).toMatch(new RegExp(`${clientIp(i).replace(/\./g, '\\.')}$`))
        workersUsed.add(seen[0].pid)
      })
      expect(workersUsed.size).toBeGreaterThanOrEqual(2)
      for (const socket of clients) expect(socket.io.engine.transport.name).toBe('polling')
    } finally {
      clients.forEach((socket) => socket.close())
    }
  })

  test('an address always reaches the same worker across new connections', async () => {
    for (let i = 0; i < 8; i++) {
      const replies = []
      for (let j = 0; j < 4; j++) replies.push((await request(app.port, { localAddress: clientIp(i) })).json)
      expect(new Set(replies.map((r) => r.pid)).size).toBe(1)
      expect(['0', '1', '2']).toContain(replies[0].slot)
    }
  })

  test('clients upgrade from polling to websocket and keep their worker', async () => {
    const clients = Array.from({ length: 6 }, (_, i) => ioClient(app.port, clientIp(40 + i), { transports: ['polling', 'websocket'], upgrade: true }))
    try {
      await Promise.all(clients.map((socket) => once(socket, 'connect')))
      const before = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami')))
      await Promise.all(clients.map((socket) => (socket.io.engine.transport.name === 'websocket' ? null : once(socket.io.engine, 'upgrade'))))
      const after = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami')))
      clients.forEach((socket, i) => {
        expect(socket.io.engine.transport.name).toBe('websocket')
        expect(after[i].pid).toBe(before[i].pid)
      })
    } finally {
      clients.forEach((socket) => socket.close())
    }
  })

  test('IPv6 clients are served on the default dual-stack host', async () => {
    const reply = await request(app.port, { host: '::1', localAddress: '::1' })
    expect(reply.status).toBe(200)
    expect(reply.json.remoteAddress).toBe('::1')
  })

  test('each worker has its stable slot in STICKY_WORKER_SLOT and no channel fd number left in its environment', async () => {
    const seen = new Map()
    for (let i = 0; i < 60 && seen.size < 3; i++) {
      const { json } = await request(app.port, { localAddress: clientIp(i) })
      seen.set(json.slot, json)
    }
    expect([...seen.keys()].sort()).toEqual(['0', '1', '2'])
    for (const identity of seen.values()) expect(identity.inheritedChannelFd).toBeNull()
  })

  // The native path's channel descriptor (the portable path has none).
  nativeTest("a worker's own child processes do not inherit its channel (close-on-exec)", async () => {
    const { json } = await request(app.port, { path: '/child-fds' })
    expect(json.channel).toMatch(/^socket:\[\d+\]$/)
    expect(json.inherited.length).toBeGreaterThan(0)
    expect(json.inherited).not.toContain(json.channel)
  })
})

describe('https', () => {
  let app
  beforeAll(async () => {
    app = await startApp({ https: true, options: { workers: 2 } })
  })

  test('https requests and socket.io over TLS (polling, then websocket) are served', async () => {
    const reply = await request(app.port, { tls: true, localAddress: clientIp(3) })
    expect(reply.status).toBe(200)
    const socket = ioClient(app.port, clientIp(3), { tls: true, transports: ['polling', 'websocket'], upgrade: true })
    try {
      await once(socket, 'connect')
      const first = await emitWithAck(socket, 'whoami')
      expect(first.pid).toBe(reply.json.pid)
      if (socket.io.engine.transport.name !== 'websocket') await once(socket.io.engine, 'upgrade')
      expect((await emitWithAck(socket, 'whoami')).pid).toBe(first.pid)
    } finally {
      socket.close()
    }
  })
})

describe('seed', () => {
  test('the same client reaches the same slot after a restart of the primary', async () => {
    const slotsOf = async (app) => {
      const slots = []
      for (let i = 0; i < 16; i++) slots.push((await request(app.port, { localAddress: clientIp(i) })).json.slot)
      return slots
    }
    const first = await startApp({ options: { workers: 3 } })
    const before = await slotsOf(first)
    await first.stop()
    const second = await startApp({ options: { workers: 3 } })
    expect(await slotsOf(second)).toEqual(before)
    await second.stop()
    const reseeded = await startApp({ options: { workers: 3, seed: 12345 } })
    expect(await slotsOf(reseeded)).not.toEqual(before)
    await reseeded.stop()
  })
})

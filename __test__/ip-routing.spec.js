'use strict'
// IP routing end to end: real socket.io servers in real workers, real
// socket.io clients from many loopback addresses. The socket.io and https
// specs are runtime-specs.js's, run here under Node (and under Bun and Deno
// by bun.spec.js and deno.spec.js).

const { startApp, request, clientIp, PORTABLE, nativeTest } = require('./helpers')
const { NODE, cleanUp, socketIoApp, pollingAndUpgradeSpecs, httpsSpec } = require('./runtime-specs')

afterAll(cleanUp)

// Both ways of routing by IP: kernel steering (the default on Linux) and the
// accept loop in the primary (`kernel: false`, and wherever kernel steering
// cannot work).
describe.each([
  ['kernel steering (the default)', {}],
  ['the accept loop (kernel: false)', { kernel: false }],
])('ip routing with socket.io: %s', (_, mode) => {
  const appOf = socketIoApp(NODE, mode)
  let app
  beforeAll(() => (app = appOf()))

  test('the primary routes as asked (the portable path by the same hash in JavaScript)', async () => {
    const stats = await app.stats()
    expect(Boolean(stats.kernel)).toBe(mode.kernel !== false && !PORTABLE)
  })

  pollingAndUpgradeSpecs(appOf)

  test('an address always reaches the same worker across new connections', async () => {
    for (let i = 0; i < 8; i++) {
      const replies = []
      for (let j = 0; j < 4; j++) replies.push((await request(app.port, { localAddress: clientIp(i) })).json)
      expect(new Set(replies.map((r) => r.pid)).size).toBe(1)
      expect(['0', '1', '2']).toContain(replies[0].slot)
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
  httpsSpec(NODE)
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

'use strict'
// Routing behind proxies and by session: header (X-Forwarded-For, Forwarded),
// PROXY protocol v1/v2, engine.io sid. Real workers, real clients.

const crypto = require('crypto')
const net = require('net')
const tls = require('tls')
const { startApp, stopAll, request, ioClient, once, emitWithAck, whoamiRounds, rawConnection, waitUntil, clientIp } = require('./helpers')

afterAll(stopAll)

/**
 * One HTTP/1.1 request over a raw TCP connection; resolves with the whole
 * reply text ('' when the server closes or resets the connection unanswered,
 * which can happen even before the client saw 'connect').
 */
function rawRequest(port, { prefix = Buffer.alloc(0), localAddress = '127.0.0.1', headers = {}, path = '/whoami' } = {}) {
  const head = [`GET ${path} HTTP/1.1`, 'Host: x', 'Connection: close', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n')
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress }, () => socket.write(Buffer.concat([prefix, Buffer.from(head)])))
    let reply = ''
    socket.on('data', (chunk) => (reply += chunk))
    socket.on('error', () => {})
    socket.on('close', () => resolve(reply))
  })
}

const jsonBody = (reply) => JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4))

function proxyV1(source, sourcePort, destinationPort) {
  const family = source.includes(':') ? 'TCP6' : 'TCP4'
  const destination = family === 'TCP6' ? '::1' : '127.0.0.1'
  return Buffer.from(`PROXY ${family} ${source} ${destination} ${sourcePort} ${destinationPort}\r\n`)
}

function proxyV2(source, sourcePort, destinationPort, tlvs = Buffer.alloc(0)) {
  const signature = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
  const addresses = Buffer.alloc(12)
  source.split('.').forEach((octet, i) => addresses.writeUInt8(Number(octet), i))
  Buffer.from([127, 0, 0, 1]).copy(addresses, 4)
  addresses.writeUInt16BE(sourcePort, 8)
  addresses.writeUInt16BE(destinationPort, 10)
  const header = Buffer.from([0x21, 0x11, 0, 0])
  header.writeUInt16BE(addresses.length + tlvs.length, 2)
  return Buffer.concat([signature, header, addresses, tlvs])
}

describe("routing: 'header'", () => {
  let app
  beforeAll(async () => {
    // headerTimeout as the stalled-heads test below needs it (the default is a minute).
    app = await startApp({ options: { workers: 3, routing: 'header', trustedProxies: ['127.0.0.1'], headerTimeout: 5000 } })
  })

  test('socket.io clients behind one trusted proxy address are spread by X-Forwarded-For and each stays on its worker', async () => {
    const clients = Array.from({ length: 12 }, (_, i) =>
      ioClient(app.port, '127.0.0.1', { extraHeaders: { 'x-forwarded-for': `198.51.100.${i + 1}` } }),
    )
    try {
      await Promise.all(clients.map((socket) => once(socket, 'connect')))
      const workers = new Set()
      for (const socket of clients) {
        const replies = await whoamiRounds(socket, 4)
        expect(new Set(replies.map((r) => r.pid)).size).toBe(1)
        workers.add(replies[0].pid)
      }
      expect(workers.size).toBeGreaterThanOrEqual(2)
    } finally {
      clients.forEach((socket) => socket.close())
    }
  })

  test('the client is the rightmost untrusted address, and the same client always reaches the same worker', async () => {
    const viaChain = jsonBody(await rawRequest(app.port, { headers: { 'X-Forwarded-For': '203.0.113.9, 198.51.100.77, 127.0.0.1' } }))
    const direct = jsonBody(await rawRequest(app.port, { headers: { 'x-forwarded-for': '198.51.100.77' } }))
    expect(viaChain.pid).toBe(direct.pid)
  })

  test('a header from an untrusted peer is not believed: it routes by the peer address', async () => {
    const pids = new Set()
    for (let i = 0; i < 8; i++) {
      pids.add(jsonBody(await rawRequest(app.port, { localAddress: clientIp(3), headers: { 'X-Forwarded-For': `198.51.100.${i}` } })).pid)
    }
    expect(pids.size).toBe(1)
  })

  test('a 1 MB POST body and binary socket.io payloads over polling arrive intact', async () => {
    const body = crypto.randomBytes(1024 * 1024)
    const reply = await request(app.port, { method: 'POST', path: '/echo', body })
    expect(reply.json.bytes).toBe(body.length)
    const socket = ioClient(app.port, '127.0.0.1', { extraHeaders: { 'x-forwarded-for': '198.51.100.200' } })
    try {
      await once(socket, 'connect')
      const blob = crypto.randomBytes(200 * 1024)
      const ack = await socket.timeout(10000).emitWithAck('blob', blob)
      expect(ack).toEqual(expect.objectContaining({ bytes: blob.length, sha1: crypto.createHash('sha1').update(blob).digest('hex') }))
      expect(socket.io.engine.transport.name).toBe('polling')
    } finally {
      socket.close()
    }
  })

  test('polling responses carry Connection: close so a proxy cannot reuse a connection for another client', async () => {
    const reply = await rawRequest(app.port, { headers: { 'x-forwarded-for': '198.51.100.1' } })
    expect(reply).toMatch(/\r\nConnection: close\r\n/i)
  })

  test('150 stalled partial request heads delay nobody; they are closed after headerTimeout and counted', async () => {
    const stalled = await Promise.all(
      Array.from({ length: 150 }, async () => {
        const socket = await rawConnection(app.port, '127.0.0.1')
        socket.on('error', () => {})
        socket.write('GET / HTTP/1.1\r\nX-Forwarded-For: 198.51.')
        return socket
      }),
    )
    let closedEarly = 0
    for (const socket of stalled) socket.once('close', () => closedEarly++)
    const reply = jsonBody(await rawRequest(app.port, { headers: { 'x-forwarded-for': '198.51.100.9' } }))
    expect(reply.pid).toBeGreaterThan(0)
    // Served while every stalled head was still waiting: not behind them.
    expect(closedEarly).toBe(0)
    const before = (await app.stats()).droppedHeaderTimeout
    await Promise.all(stalled.map((socket) => once(socket, 'close', 15000)))
    const stats = await app.stats()
    expect(stats.droppedHeaderTimeout - before).toBe(150)
    expect(stats.readingHeader).toBe(0)
  })
})

describe("routing: 'header', the primary late", () => {
  let app
  beforeAll(async () => {
    app = await startApp({ options: { workers: 2, routing: 'header', headerTimeout: 300 } })
  })

  test('a header that arrived within headerTimeout is served even when the primary was busy past it', async () => {
    const socket = await rawConnection(app.port, '127.0.0.1')
    let reply = ''
    socket.on('data', (chunk) => (reply += chunk))
    socket.on('error', () => {})
    await waitUntil(async () => (await app.stats()).readingHeader === 1, { what: 'the primary to read the header' })
    const before = await app.stats()
    app.child.stdin.write('busy 1000\n')
    await app.waitFor('busy')
    const closed = once(socket, 'close')
    socket.write('GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Forwarded-For: 198.51.100.60\r\n\r\n')
    await closed
    // (The native reader has its own thread: it answers before the primary's JavaScript is idle.)
    await app.waitFor('idle')
    expect(jsonBody(reply).pid).toBeGreaterThan(0)
    expect((await app.stats()).droppedHeaderTimeout).toBe(before.droppedHeaderTimeout)
  })
})

describe("routing: 'header' with ignoreMissingHeader: false and RFC 7239 Forwarded", () => {
  let app
  beforeAll(async () => {
    app = await startApp({ options: { workers: 2, routing: 'header', header: 'forwarded', ignoreMissingHeader: false } })
  })

  test('Forwarded for= (quoted IPv6 with port) routes like the same client', async () => {
    const a = jsonBody(await rawRequest(app.port, { headers: { Forwarded: 'for="[2001:db8::7]:4711";proto=http' } }))
    const b = jsonBody(await rawRequest(app.port, { headers: { Forwarded: 'for="[2001:db8::7]"' } }))
    expect(a.pid).toBe(b.pid)
  })

  test('a request without the header is closed and counted', async () => {
    const before = (await app.stats()).droppedInvalidHeader
    const reply = await rawRequest(app.port)
    expect(reply).toBe('')
    await waitUntil(async () => (await app.stats()).droppedInvalidHeader === before + 1, { what: 'the drop to be counted' })
  })
})

describe("routing: 'proxy-protocol'", () => {
  let app
  beforeAll(async () => {
    app = await startApp({ options: { workers: 3, routing: 'proxy-protocol', trustedProxies: ['127.0.0.1', '::1'] } })
  })

  test('PROXY v1 and v2: the worker sees the client address, and each client sticks to one worker', async () => {
    for (let i = 1; i <= 6; i++) {
      const source = `198.51.100.${i}`
      const v1 = jsonBody(await rawRequest(app.port, { prefix: proxyV1(source, 40000 + i, app.port) }))
      const v2 = jsonBody(await rawRequest(app.port, { prefix: proxyV2(source, 41000 + i, app.port, Buffer.from([0x04, 0x00, 0x01, 0x00])) }))
      expect(v1.remoteAddress).toBe(source)
      expect(v1.remotePort).toBe(40000 + i)
      expect(v2.remoteAddress).toBe(source)
      expect(v2.remotePort).toBe(41000 + i)
      expect(v2.pid).toBe(v1.pid)
    }
    const v6 = jsonBody(await rawRequest(app.port, { prefix: proxyV1('2001:db8::5', 5000, app.port) }))
    expect(v6.remoteAddress).toBe('2001:db8::5')
  })

  test('UNKNOWN and LOCAL headers are served as the proxy itself', async () => {
    const unknown = jsonBody(await rawRequest(app.port, { prefix: Buffer.from('PROXY UNKNOWN\r\n') }))
    expect(unknown.remoteAddress).toMatch(/127\.0\.0\.1$/)
    const local = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00])
    expect(jsonBody(await rawRequest(app.port, { prefix: local })).pid).toBeGreaterThan(0)
  })

  test('a missing, invalid or untrusted header closes the connection and is counted', async () => {
    const before = await app.stats()
    expect(await rawRequest(app.port)).toBe('')
    expect(await rawRequest(app.port, { prefix: Buffer.from('PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n') })).toBe('')
    expect(await rawRequest(app.port, { localAddress: clientIp(5), prefix: proxyV1('198.51.100.1', 1, 2) })).toBe('')
    await waitUntil(async () => {
      const stats = await app.stats()
      return stats.droppedInvalidHeader - before.droppedInvalidHeader === 2 && stats.droppedUntrustedProxy - before.droppedUntrustedProxy === 1
    }, { what: 'three drops counted by reason' })
  })
})

describe("routing: 'proxy-protocol' in front of https", () => {
  let app
  beforeAll(async () => {
    app = await startApp({ https: true, options: { workers: 2, routing: 'proxy-protocol' } })
  })

  test('the TLS ClientHello after a PROXY v2 header reaches the worker untouched', async () => {
    const raw = await rawConnection(app.port)
    raw.write(proxyV2('198.51.100.42', 1234, app.port))
    const secure = tls.connect({ socket: raw, rejectUnauthorized: false, servername: 'localhost' })
    await once(secure, 'secureConnect')
    secure.write('GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    let reply = ''
    secure.on('data', (chunk) => (reply += chunk))
    await once(secure, 'close')
    expect(jsonBody(reply).remoteAddress).toBe('198.51.100.42')
  })
})

describe("routing: 'sid'", () => {
  let app
  beforeAll(async () => {
    app = await startApp({ options: { workers: 3, routing: 'sid' } })
  })

  test('many polling clients from one address complete handshakes and acknowledged emits, spread over the workers', async () => {
    const clients = Array.from({ length: 15 }, () => ioClient(app.port, '127.0.0.1'))
    try {
      await Promise.all(clients.map((socket) => once(socket, 'connect')))
      const perWorker = new Map()
      for (const socket of clients) {
        const replies = await whoamiRounds(socket, 4)
        expect(new Set(replies.map((r) => r.pid)).size).toBe(1)
        perWorker.set(replies[0].pid, (perWorker.get(replies[0].pid) || 0) + 1)
      }
      // least-connection: 15 handshakes over 3 workers, counted at dispatch.
      expect([...perWorker.values()].sort()).toEqual([5, 5, 5])
      const stats = await app.stats()
      expect(stats.slots.reduce((sum, slot) => sum + slot.sessions, 0)).toBeGreaterThanOrEqual(15)
    } finally {
      clients.forEach((socket) => socket.close())
    }
  })

  test('clients upgrade to websocket on their worker', async () => {
    const clients = Array.from({ length: 4 }, () => ioClient(app.port, '127.0.0.1', { transports: ['polling', 'websocket'], upgrade: true }))
    try {
      await Promise.all(clients.map((socket) => once(socket, 'connect')))
      const before = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami')))
      await Promise.all(clients.map((socket) => (socket.io.engine.transport.name === 'websocket' ? null : once(socket.io.engine, 'upgrade'))))
      const after = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami')))
      after.forEach((reply, i) => expect(reply.pid).toBe(before[i].pid))
    } finally {
      clients.forEach((socket) => socket.close())
    }
  })

  test('a sid in a Referer header does not steer routing; an unknown sid gets engine.io\'s clean error', async () => {
    const stale = await rawRequest(app.port, { path: '/socket.io/?EIO=4&transport=polling&sid=doesNotExist123' })
    expect(stale).toMatch(/^HTTP\/1\.1 400/)
    expect(stale).toMatch(/Session ID unknown/)
    const handshake = await rawRequest(app.port, { path: '/socket.io/?EIO=4&transport=polling', headers: { Referer: 'http://x/?sid=doesNotExist123' } })
    expect(handshake).toMatch(/^HTTP\/1\.1 200/)
    expect(handshake).toMatch(/\r\nConnection: close\r\n/i)
  })

  test("a worker's death: its clients reconnect to a live worker, the others keep their sessions", async () => {
    const clients = Array.from({ length: 6 }, () => ioClient(app.port, '127.0.0.1', { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 }))
    try {
      await Promise.all(clients.map((socket) => once(socket, 'connect')))
      const before = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami')))
      const victim = before[0].pid
      const survivorIds = clients.filter((_, i) => before[i].pid !== victim).map((socket) => socket.id)
      process.kill(victim, 'SIGKILL')
      await app.waitFor('exit', (e) => e.pid === victim)
      await waitUntil(async () => {
        const replies = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami', 2000).catch(() => null)))
        return replies.every((reply) => reply && reply.pid !== victim)
      }, { what: 'every client to be served by a live worker', timeout: 20000 })
      const survivors = clients.filter((_, i) => before[i].pid !== victim)
      expect(survivors.map((socket) => socket.id)).toEqual(survivorIds)
    } finally {
      clients.forEach((socket) => socket.close())
    }
  })
})

describe("routing: 'sid' with other balancing methods for new sessions", () => {
  test.each([
    ['round-robin', (counts) => expect(counts).toEqual([2, 2, 2])],
    ['random', (counts) => expect(counts.reduce((a, b) => a + b, 0)).toBe(6)],
  ])('%s: six handshakes from one address, each session stays on its worker', async (method, check) => {
    const app = await startApp({ options: { workers: 3, routing: 'sid', loadBalancingMethod: method } })
    const clients = []
    try {
      for (let i = 0; i < 6; i++) {
        const socket = ioClient(app.port, '127.0.0.1')
        clients.push(socket)
        await once(socket, 'connect')
      }
      const perWorker = new Map()
      for (const socket of clients) {
        const [a, b] = [await emitWithAck(socket, 'whoami'), await emitWithAck(socket, 'whoami')]
        expect(b.pid).toBe(a.pid)
        perWorker.set(a.pid, (perWorker.get(a.pid) || 0) + 1)
      }
      check([...perWorker.values()].sort())
    } finally {
      clients.forEach((socket) => socket.close())
      await app.stop()
    }
  })
})

'use strict'
// Runs the examples in examples/ as a user would (PORT=0, real processes) and
// talks to them with real clients from several loopback addresses.

const path = require('path')
const { request, ioClientsClosedAfterEach, once, emitWithAck, waitUntil, clientIp } = require('./helpers')
const { startExample, stopAllProcesses, isAlive } = require('./fixtures/examples/processes')

const EXAMPLES = path.join(__dirname, '..', 'examples')
const connect = ioClientsClosedAfterEach()

afterAll(async () => {
  await stopAllProcesses()
})

describe('examples/express-socketio.js', () => {
  let app

  beforeAll(async () => {
    app = await startExample(path.join(EXAMPLES, 'express-socketio.js'), { WORKERS: '2' })
  })

  test('express routes answer; every client IP keeps its worker over HTTP and socket.io polling; acks work', async () => {
    const ips = Array.from({ length: 8 }, (_, i) => clientIp(i))
    const hello = await request(app.port, { path: '/', localAddress: ips[0] })
    expect(hello.status).toBe(200)
    expect(hello.text).toMatch(/^hello from worker \d+\n$/)
    expect((await request(app.port, { path: '/nowhere', localAddress: ips[0] })).status).toBe(404)

    const workers = new Set()
    await Promise.all(
      ips.map(async (ip) => {
        const viaExpress = await request(app.port, { path: '/api/whoami', localAddress: ip })
        expect(viaExpress.status).toBe(200)
        expect(viaExpress.json.ip.replace(/^::ffff:/, '')).toBe(ip)
        const socket = connect(app.port, ip) // polling only: every packet is a new HTTP request
        await once(socket, 'connect')
        for (let round = 0; round < 3; round++) {
          const viaSocket = await emitWithAck(socket, 'whoami')
          expect(viaSocket.pid).toBe(viaExpress.json.pid)
        }
        expect(await socket.timeout(10000).emitWithAck('chat', 'hi')).toBe('ok')
        const again = await request(app.port, { path: '/api/whoami', localAddress: ip })
        expect(again.json.pid).toBe(viaExpress.json.pid)
        workers.add(viaExpress.json.pid)
      }),
    )
    expect(workers.size).toBe(2)
  })

  test('SIGTERM in the primary closes gracefully, with socket.io clients still connected: they are told, workers exit, the primary exits 0', async () => {
    const clients = Array.from({ length: 4 }, (_, i) => connect(app.port, clientIp(i)))
    await Promise.all(clients.map((socket) => once(socket, 'connect')))
    const pids = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami').then((me) => me.pid)))
    const disconnected = clients.map((socket) => once(socket, 'disconnect', 10000))
    const started = Date.now()
    process.kill(app.pid, 'SIGTERM')
    await waitUntil(() => app.exited, { timeout: 10000, what: `the primary to exit (output: ${app.output()})` })
    expect(app.exited).toEqual({ code: 0, signal: null })
    expect(Date.now() - started).toBeLessThan(5000) // no long-poll held a worker until its next ping
    await Promise.all(disconnected)
    for (const pid of new Set(pids)) expect(isAlive(pid)).toBe(false)
  })
})

describe('examples/https.js', () => {
  let app

  beforeAll(async () => {
    app = await startExample(path.join(EXAMPLES, 'https.js'), { WORKERS: '2' })
  })

  test('plain HTTPS requests are served by the client IP\'s worker', async () => {
    const first = await request(app.port, { path: '/', tls: true, localAddress: clientIp(0) })
    expect(first.status).toBe(200)
    expect(first.text).toMatch(/^hello over TLS from worker \d+\n$/)
    const second = await request(app.port, { path: '/', tls: true, localAddress: clientIp(0) })
    expect(second.text).toBe(first.text)
  })

  test('socket.io over TLS: polling, websocket, and polling upgraded to websocket, each client on one worker', async () => {
    const workers = new Set()
    await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const ip = clientIp(i)
        const polling = connect(app.port, ip, { tls: true })
        const websocket = connect(app.port, ip, { tls: true, transports: ['websocket'] })
        const upgraded = connect(app.port, ip, { tls: true, transports: ['polling', 'websocket'], upgrade: true })
        await Promise.all([polling, websocket, upgraded].map((socket) => once(socket, 'connect')))

        const p1 = await emitWithAck(polling, 'whoami')
        const p2 = await emitWithAck(polling, 'whoami')
        expect(p1.transport).toBe('polling')
        expect(p2.pid).toBe(p1.pid)

        const ws = await emitWithAck(websocket, 'whoami')
        expect(ws.transport).toBe('websocket')
        expect(ws.pid).toBe(p1.pid)

        const before = await emitWithAck(upgraded, 'whoami')
        if (upgraded.io.engine.transport.name !== 'websocket') await once(upgraded.io.engine, 'upgrade')
        const after = await emitWithAck(upgraded, 'whoami')
        expect(after.transport).toBe('websocket')
        expect(before.pid).toBe(p1.pid)
        expect(after.pid).toBe(p1.pid)
        workers.add(p1.pid)
      }),
    )
    expect(workers.size).toBe(2)
  })
})

describe('examples/cluster-adapter.js', () => {
  let app

  beforeAll(async () => {
    app = await startExample(path.join(EXAMPLES, 'cluster-adapter.js'), { WORKERS: '3' })
  })

  test('a shout from one worker\'s client reaches the clients of every worker', async () => {
    const clients = Array.from({ length: 9 }, (_, i) =>
      connect(app.port, clientIp(i), { transports: ['polling', 'websocket'], upgrade: true }),
    )
    await Promise.all(clients.map((socket) => once(socket, 'connect')))
    const owners = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami').then((me) => me.pid)))
    const workers = new Set(owners)
    expect(workers.size).toBeGreaterThanOrEqual(2)

    // Two shouts, from clients on two different workers.
    const shouters = [0, owners.findIndex((pid) => pid !== owners[0])]
    for (const [round, index] of shouters.entries()) {
      const text = `round ${round} from ${clientIp(index)}`
      const received = clients.map((socket) => once(socket, 'news'))
      expect(await clients[index].timeout(10000).emitWithAck('shout', text)).toBe('sent')
      const news = await Promise.all(received)
      for (const [event] of news) expect(event).toEqual({ text, from: owners[index] })
    }
    // Still on the same workers afterwards.
    const later = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami').then((me) => me.pid)))
    expect(later).toEqual(owners)
  })
})

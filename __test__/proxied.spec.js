'use strict'
// Behind a real HAProxy (http-reuse safe, aggressive, always) and a real nginx
// (upstream keepalive 32), both of which reuse an upstream connection for
// whichever client comes next: socket.io clients from many addresses, polling
// and websocket, never reach a worker that does not hold their session, in
// 'header' and 'sid' routing, through the slot ports (the proxy routes each
// request with the block sticky.proxyConfig() writes; upstream connections
// stay open) and through the one public port (the accept loop routes each
// connection; every response closes its connection).

const { startApp, stopAll, request, ioClient, once, emitWithAck, clientIp, requireProgram, waitUntil } = require('./helpers')
const { bunRuntime } = require('./runtime-specs')
const http = require('http')
const { haproxyConfig, nginxConfig, startProxy } = require('../bench/proxied/proxies')

const haproxyBinary = requireProgram('haproxy', 'Debian/Ubuntu: apt-get install haproxy')
const nginxBinary = requireProgram('nginx', 'Debian/Ubuntu: apt-get install nginx')
const { binary: bun = null } = bunRuntime() || {}

const FRONTS = [
  { name: 'HAProxy, http-reuse safe', kind: 'haproxy', reuse: 'safe', available: Boolean(haproxyBinary) },
  { name: 'HAProxy, http-reuse aggressive', kind: 'haproxy', reuse: 'aggressive', available: Boolean(haproxyBinary) },
  { name: 'HAProxy, http-reuse always', kind: 'haproxy', reuse: 'always', available: Boolean(haproxyBinary) },
  { name: 'nginx, upstream keepalive 32', kind: 'nginx', available: Boolean(nginxBinary) },
]
const CLIENTS = 16
const EMITS = 6

jest.setTimeout(60000)
afterAll(() => stopAll())

/** The proxy's block for the app: the slot ports' (from proxyConfig), or the one public port. */
async function proxyConfigOf(app, proxy, name) {
  const before = app.find('proxy-config').length
  app.child.stdin.write(`proxy-config ${JSON.stringify({ proxy, settings: { name } })}\n`)
  await waitUntil(() => app.find('proxy-config').length > before, { what: 'proxy-config' })
  return app.find('proxy-config')[before]
}

async function startFront(front, app, { routing, via }) {
  // The frontend's default backend is 'be' (bench/proxied/proxies.js); nginx's location proxies to 'app'.
  const slotBlock = via === 'slot ports' ? (await proxyConfigOf(app, front.kind, front.kind === 'haproxy' ? 'be' : 'app')).text : null
  const waitFor = (port) => waitUntil(async () => (await request(port, { path: '/whoami' }).catch(() => ({}))).status === 200, { what: `${front.name} to answer` })
  if (front.kind === 'haproxy') {
    const backend = slotBlock || `server app 127.0.0.1:${app.port}`
    return startProxy('haproxy', ({ port }) => haproxyConfig({ port, reuse: front.reuse, backend }), { port: await freePortOf(), waitFor })
  }
  const http = slotBlock || `upstream app { server 127.0.0.1:${app.port}; keepalive 32; }`
  const passTo = slotBlock && routing === 'sid' ? '$app_upstream' : 'app'
  return startProxy('nginx', ({ port, dir }) => nginxConfig({ port, dir, http, passTo }), { port: await freePortOf(), waitFor })
}

function freePortOf() {
  return require('./helpers').freePort()
}

/**
 * CLIENTS socket.io clients at once, one address each, half staying on
 * polling (every emit a request through the proxy), half upgrading to
 * websocket; each emits EMITS times at once before (and after) its upgrade.
 * Fails on any error or disconnection ("Session ID unknown" is a 400 that
 * ends the session). `whileOpen(clients)` runs before they close. Returns
 * what each client saw.
 */
async function socketIoClients(port, whileOpen = async () => {}) {
  const failures = []
  const clients = Array.from({ length: CLIENTS }, (_, i) => {
    const upgrade = i % 2 === 1
    const socket = ioClient(port, clientIp(i), { transports: upgrade ? ['polling', 'websocket'] : ['polling'], upgrade })
    socket.on('connect_error', (error) => failures.push(`client ${i}: connect_error ${error.message}`))
    socket.on('disconnect', (reason) => socket.expectedClose || failures.push(`client ${i}: disconnected (${reason})`))
    return { i, upgrade, socket }
  })
  try {
    await Promise.all(clients.map(({ socket }) => once(socket, 'connect', 15000)))
    await Promise.all(
      clients.map(async (client) => {
        const { socket, upgrade } = client
        client.acks = await Promise.all(Array.from({ length: EMITS }, () => emitWithAck(socket, 'whoami')))
        if (upgrade) {
          if (socket.io.engine.transport.name !== 'websocket') await once(socket.io.engine, 'upgrade')
          client.acks.push(...(await Promise.all(Array.from({ length: EMITS }, () => emitWithAck(socket, 'whoami')))))
        }
        client.engineId = socket.io.engine.id
      }),
    )
    await whileOpen(clients)
  } finally {
    for (const { socket } of clients) {
      socket.expectedClose = true
      socket.close()
    }
  }
  expect(failures).toEqual([])
  for (const client of clients) expect(new Set(client.acks.map((ack) => ack.pid)).size).toBe(1)
  expect(new Set(clients.map((client) => client.acks[0].pid)).size).toBeGreaterThanOrEqual(2)
  return clients
}

/**
 * Plain requests through the proxy, one after another on one kept-alive
 * client connection: the workers that answered, and the distinct upstream
 * connections they came on (the proxy's source ports).
 */
async function upstreamConnectionsOf(port, count, localAddress, path = '/whoami') {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress })
  const get = () =>
    new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
        const clientPort = res.socket.localPort
        let body = ''
        res.on('data', (chunk) => (body += chunk))
        res.on('end', () => resolve({ status: res.statusCode, json: JSON.parse(body), clientPort }))
      }).on('error', reject)
    })
  const seen = []
  try {
    for (let i = 0; i < count; i++) {
      const response = await get()
      expect(response.status).toBe(200)
      seen.push(response)
    }
  } finally {
    agent.destroy()
  }
  const taken = seen.map((r) => r.json.connectionsTaken)
  return {
    pids: new Set(seen.map((r) => r.json.pid)),
    clientConnections: new Set(seen.map((r) => r.clientPort)),
    // Connections the worker took from the first request to the last: one each without keep-alive.
    newUpstreamConnections: taken[taken.length - 1] - taken[0],
  }
}

/**
 * The matrix: every front, both ways in, under this Node; under Bun, the
 * slot ports behind the fronts that reuse connections the most.
 */
const RUNTIMES = [
  { name: '', runtime: process.execPath, available: true, fronts: FRONTS, vias: ['slot ports', 'one port'] },
  { name: ' (Bun)', runtime: bun, available: Boolean(bun), fronts: FRONTS.filter((front) => front.reuse === 'always' || front.kind === 'nginx'), vias: ['slot ports'] },
]

for (const { name, runtime, available, fronts, vias } of RUNTIMES) for (const routing of ['header', 'sid']) {
  describe(`'${routing}' routing behind a proxy that reuses upstream connections${name}`, () => {
    let app
    beforeAll(async () => {
      if (!available || !fronts.some((front) => front.available)) return
      app = await startApp({ options: { workers: 3, routing, slotPorts: true, host: '127.0.0.1' } }, { runtime })
    })

    for (const front of fronts) {
      for (const via of vias) {
        const testWith = available && front.available ? test : test.skip
        testWith(`${front.name}, ${via}: socket.io clients from ${CLIENTS} addresses never reach a worker without their session`, async () => {
          const proxy = await startFront(front, app, { routing, via })
          try {
            // The primary reads the tags: a session opened through a slot port is
            // its worker's through the public port too (a noop packet: 'ok').
            const throughThePublicPort = routing === 'sid' && via === 'slot ports' ? [] : null
            const clients = await socketIoClients(proxy.port, async (open) => {
              if (!throughThePublicPort) return
              for (const client of open.filter((c) => !c.upgrade).slice(0, 4)) {
                const reply = await request(app.port, { method: 'POST', path: `/socket.io/?EIO=4&transport=polling&sid=${client.engineId}`, body: '6', localAddress: clientIp(client.i) })
                throughThePublicPort.push({ status: reply.status, text: reply.text })
              }
            })
            if (throughThePublicPort) expect(throughThePublicPort).toEqual(Array(4).fill({ status: 200, text: 'ok' }))
            if (routing === 'sid' && via === 'slot ports') {
              // The sid a client holds names its worker's slot; the application's is engine.io's own.
              for (const client of clients) {
                const { slot, sid } = client.acks[0]
                expect(client.engineId).toBe(`${sid}~${slot}`)
              }

            }
            if (routing === 'header') {
              // A client's plain requests reach the worker of its socket.io session.
              for (const client of clients.slice(0, 4)) {
                const { pids } = await upstreamConnectionsOf(proxy.port, 3, clientIp(client.i))
                expect([...pids]).toEqual([client.acks[0].pid])
              }
            }
            // Kept alive through the slot ports, closed after each response through
            // the one port. ('sid': a sid tagged for slot 0 pins the requests to one slot.)
            const { pids, clientConnections, newUpstreamConnections } = await upstreamConnectionsOf(proxy.port, 12, clientIp(0), routing === 'sid' ? '/whoami?sid=pinned~0' : '/whoami')
            expect(clientConnections.size).toBe(1)
            if (via === 'slot ports') {
              expect(pids.size).toBe(1)
              expect(newUpstreamConnections).toBeLessThan(11)
            } else if (pids.size === 1) {
              expect(newUpstreamConnections).toBeGreaterThanOrEqual(11)
            }
          } finally {
            proxy.stop()
          }
        })
      }
    }
  })
}

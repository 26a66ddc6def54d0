'use strict'
// Interop with a real HAProxy (Debian package, started by the test) in front
// of the primary: PROXY protocol v2 and v1, and X-Forwarded-For in HTTP mode.

const { spawn, execFileSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { startApp, stopAll, request, ioClient, once, emitWithAck, freePort, waitUntil, clientIp, requireProgram } = require('./helpers')

const haproxyBinary = requireProgram('haproxy', 'Debian/Ubuntu: apt-get install haproxy')
const describeWith = haproxyBinary ? describe : describe.skip
const proxies = []
const tempDirs = []

afterAll(async () => {
  for (const proxy of proxies) proxy.kill('SIGKILL')
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true })
  await stopAll()
})

/** Starts HAProxy with `backendLine` options towards the app; resolves with its frontend port. */
async function startHaproxy(appPort, { mode, serverOptions, extra = '' }) {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-haproxy-'))
  tempDirs.push(dir)
  const config = path.join(dir, 'haproxy.cfg')
  fs.writeFileSync(
    config,
    `global
  maxconn 2000
defaults
  mode ${mode}
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
${extra}
  server app 127.0.0.1:${appPort} ${serverOptions}
`,
  )
  execFileSync(haproxyBinary, ['-c', '-f', config], { stdio: 'pipe' })
  const proxy = spawn(haproxyBinary, ['-db', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] })
  proxies.push(proxy)
  let log = ''
  proxy.stderr.on('data', (chunk) => (log += chunk))
  await waitUntil(async () => (await request(port, { path: '/whoami' }).catch(() => null)) !== null, { what: `haproxy to accept (log: ${log})` })
  return port
}

async function clientsStickThroughProxy(port, { expectRemote = true } = {}) {
  const clients = Array.from({ length: 10 }, (_, i) => ioClient(port, clientIp(i), { transports: ['polling', 'websocket'], upgrade: true }))
  try {
    await Promise.all(clients.map((socket) => once(socket, 'connect')))
    const workers = new Set()
    for (const [i, socket] of clients.entries()) {
      const first = await emitWithAck(socket, 'whoami')
      if (socket.io.engine.transport.name !== 'websocket') await once(socket.io.engine, 'upgrade')
      const second = await emitWithAck(socket, 'whoami')
      expect(second.pid).toBe(first.pid)
      if (expectRemote) expect(first.remoteAddress).toBe(clientIp(i))
      const plain = await request(port, { localAddress: clientIp(i) })
      expect(plain.json.pid).toBe(first.pid)
      workers.add(first.pid)
    }
    expect(workers.size).toBeGreaterThanOrEqual(2)
  } finally {
    clients.forEach((socket) => socket.close())
  }
}

describeWith('HAProxy in TCP mode with send-proxy-v2', () => {
  test('socket.io clients from 10 addresses keep their worker (polling and websocket); workers see the client address', async () => {
    const app = await startApp({ options: { workers: 3, routing: 'proxy-protocol' } })
    const port = await startHaproxy(app.port, { mode: 'tcp', serverOptions: 'send-proxy-v2' })
    await clientsStickThroughProxy(port)
    const stats = await app.stats()
    expect(stats.dropped).toBe(0)
  })
})

describeWith('HAProxy in TCP mode with send-proxy (v1)', () => {
  test('the same, with PROXY protocol v1', async () => {
    const app = await startApp({ options: { workers: 3, routing: 'proxy-protocol' } })
    const port = await startHaproxy(app.port, { mode: 'tcp', serverOptions: 'send-proxy' })
    await clientsStickThroughProxy(port)
  })
})

describeWith('HAProxy in HTTP mode with option forwardfor', () => {
  test('header routing by X-Forwarded-For keeps every client on its worker', async () => {
    const app = await startApp({ options: { workers: 3, routing: 'header' } })
    const port = await startHaproxy(app.port, { mode: 'http', serverOptions: '', extra: '  option forwardfor\n  http-reuse never' })
    await clientsStickThroughProxy(port, { expectRemote: false })
  })
})

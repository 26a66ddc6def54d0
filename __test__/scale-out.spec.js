'use strict'
// examples/scale-out/ for real on one machine: redis-server, two "hosts" (two
// primaries of app.js, 2 workers each) and HAProxy running the documented
// haproxy.cfg.example (addresses replaced), with socket.io clients from 12
// source addresses.

const { execFileSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { request, ioClient, once, emitWithAck, freePort, waitUntil, clientIp, requireProgram } = require('./helpers')
const { startProcess, startExample, stopAllProcesses } = require('./fixtures/examples/processes')

const DIR = path.join(__dirname, '..', 'examples', 'scale-out')
const haproxyBinary = requireProgram('haproxy', 'Debian/Ubuntu: apt-get install haproxy')
const redisBinary = requireProgram('redis-server', 'Debian/Ubuntu: apt-get install redis-server')
const describeWith = haproxyBinary && redisBinary ? describe : describe.skip
const CLIENTS = 12
const sockets = []
let tmp

afterAll(async () => {
  // Let the clients' close requests finish before the servers go away.
  for (const socket of sockets) socket.close()
  await new Promise((resolve) => setTimeout(resolve, 500))
  await stopAllProcesses()
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
})

/** haproxy.cfg.example with its bind and server addresses replaced. */
function haproxyConfig(frontendPort, hostPorts) {
  const example = fs.readFileSync(path.join(DIR, 'haproxy.cfg.example'), 'utf8')
  let servers = 0
  const config = example
    .replace(/^(\s*bind\s+)\S+/m, `$1127.0.0.1:${frontendPort}`)
    .replace(/^(\s*server\s+\S+\s+)\S+/gm, (_, prefix) => `${prefix}127.0.0.1:${hostPorts[servers++]}`)
  expect(servers).toBe(hostPorts.length)
  return config
}

describeWith('examples/scale-out: HAProxy (balance source, send-proxy-v2) -> 2 hosts x 2 workers, Redis adapter', () => {
  let proxyPort
  let hosts
  let owners

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-scale-out-'))
    const redisPort = await freePort()
    await startProcess(
      redisBinary,
      ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp],
      { ready: /Ready to accept connections/, name: 'redis-server' },
    )
    const redisUrl = `redis://127.0.0.1:${redisPort}`

    const hostPorts = [await freePort(), await freePort()]
    hosts = await Promise.all(
      ['host-a', 'host-b'].map((name, i) =>
        startExample(path.join(DIR, 'app.js'), { PORT: String(hostPorts[i]), HOST_NAME: name, WORKERS: '2', REDIS_URL: redisUrl }),
      ),
    )

    proxyPort = await freePort()
    const configFile = path.join(tmp, 'haproxy.cfg')
    fs.writeFileSync(configFile, haproxyConfig(proxyPort, hostPorts))
    execFileSync(haproxyBinary, ['-c', '-f', configFile], { stdio: 'pipe' })
    const proxy = await startProcess(haproxyBinary, ['-db', '-f', configFile], { name: 'haproxy' })
    await waitUntil(async () => !proxy.exited && (await request(proxyPort, { path: '/', timeout: 2000 }).catch(() => null)), {
      timeout: 20000,
      what: 'haproxy to serve',
    }).catch((error) => {
      throw new Error(`${error.message}; haproxy ${JSON.stringify(proxy.exited)}: ${proxy.output()}`)
    })
  })

  test('clients spread over both hosts, keep their worker over polling and websocket, and a broadcast crosses hosts', async () => {
    // Half the clients stay on long-polling (every packet a new connection
    // through HAProxy), half upgrade to websocket.
    const clients = Array.from({ length: CLIENTS }, (_, i) => {
      const socket = ioClient(proxyPort, clientIp(i), i % 2 ? { transports: ['polling', 'websocket'], upgrade: true } : {})
      sockets.push(socket)
      return socket
    })
    await Promise.all(clients.map((socket) => once(socket, 'connect')))

    owners = await Promise.all(
      clients.map(async (socket, i) => {
        const first = await emitWithAck(socket, 'whoami')
        expect(first.address).toBe(clientIp(i)) // the PROXY header reached the worker
        for (let round = 0; round < 3; round++) {
          const again = await emitWithAck(socket, 'whoami')
          expect({ host: again.host, pid: again.pid }).toEqual({ host: first.host, pid: first.pid })
        }
        // A plain HTTP request from the same address lands on the same worker.
        const plain = await request(proxyPort, { path: '/', localAddress: clientIp(i) })
        expect(plain.text).toBe(`${first.host} worker ${first.worker}\n`)
        return first
      }),
    )
    expect([...new Set(owners.map((owner) => owner.host))].sort()).toEqual(['host-a', 'host-b'])
    expect(new Set(owners.map((owner) => `${owner.host}/${owner.pid}`)).size).toBeGreaterThanOrEqual(3)

    // A client on host-a shouts, then one on host-b: every client hears both.
    for (const host of ['host-a', 'host-b']) {
      const index = owners.findIndex((owner) => owner.host === host)
      const text = `hello from a client of ${host}`
      const received = clients.map((socket) => once(socket, 'news'))
      expect(await clients[index].timeout(10000).emitWithAck('shout', text)).toBe('sent')
      for (const [news] of await Promise.all(received)) {
        expect(news.text).toBe(text)
        expect(news.from.host).toBe(host)
        expect(news.from.pid).toBe(owners[index].pid)
      }
    }
  })

  test('SIGTERM stops a host gracefully: its clients are disconnected, the other host\'s are not, it exits 0', async () => {
    expect(owners).toBeDefined()
    const host = hosts[1]
    const mine = sockets.filter((_, i) => owners[i].host === 'host-b')
    expect(mine.length).toBeGreaterThan(0)
    const disconnected = mine.map((socket) => once(socket, 'disconnect', 10000))
    const started = Date.now()
    process.kill(host.pid, 'SIGTERM')
    await waitUntil(() => host.exited, { timeout: 15000, what: 'host-b to exit' }).catch((error) => {
      throw new Error(`${error.message}: ${host.output()}`)
    })
    expect(host.exited).toEqual({ code: 0, signal: null })
    expect(Date.now() - started).toBeLessThan(8000)
    await Promise.all(disconnected)
    // host-a's clients are unaffected.
    const index = owners.findIndex((owner) => owner.host === 'host-a')
    expect((await emitWithAck(sockets[index], 'whoami')).pid).toBe(owners[index].pid)
  })
})

'use strict'
// The drop-in under Bun: sticky-session 1.1.2's README example, and a
// socket.io app (fixtures/app.js) with real socket.io clients from many
// 127.0.0.x addresses — polling, upgrade, a worker's death, HTTPS, Node's
// request timeouts, a rolling reload, kernel steering — all run by the real
// Bun binary. CI installs @oven/bun-linux-x64 from the npm registry and names
// it in STICKY_BUN; elsewhere `bun` on PATH is used. The specs every runtime
// runs are runtime-specs.js's. What Bun does differently, and how
// lib/runtime.js deals with it: fixtures/bun-repros/.

const { execFileSync } = require('child_process')
const path = require('path')
const { request, once, rawConnection, clientIp } = require('./helpers')
const {
  bunRuntime, startOn, runsOn, cleanUp, stickySessionReadmeSpec, socketIoApp, pollingAndUpgradeSpecs, killedWorkerSpec, httpsSpec,
  SLOWLORIS_TIMEOUTS, expectSlowloris408, reloadUnderLoad,
} = require('./runtime-specs')

const bun = bunRuntime()
const describeWith = bun ? describe : describe.skip

afterAll(cleanUp)

describeWith(bun ? bun.name : 'Bun', () => {
  test('http, https and net servers are accepted; anything else is refused with ERR_STICKY_INVALID_SERVER', () => {
    const script = `
      const fs = require('fs'), http = require('http'), https = require('https'), net = require('net')
      const { validateServer } = require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'options.js'))})
      const tls = { key: fs.readFileSync(${JSON.stringify(path.join(__dirname, 'fixtures', 'tls', 'key.pem'))}), cert: fs.readFileSync(${JSON.stringify(path.join(__dirname, 'fixtures', 'tls', 'cert.pem'))}) }
      const candidates = { http: http.createServer(), https: https.createServer(tls), net: net.createServer(), express: require('express')(), object: {}, none: undefined }
      const verdicts = {}
      for (const [name, candidate] of Object.entries(candidates)) {
        try { validateServer(candidate); verdicts[name] = 'accepted' } catch (error) { verdicts[name] = error.code }
      }
      console.log(JSON.stringify(verdicts))`
    const verdicts = JSON.parse(execFileSync(bun.binary, ['-e', script], { cwd: path.join(__dirname, '..') }).toString())
    expect(verdicts).toEqual({
      http: 'accepted',
      https: 'accepted',
      net: 'accepted',
      express: 'ERR_STICKY_INVALID_SERVER',
      object: 'ERR_STICKY_INVALID_SERVER',
      none: 'ERR_STICKY_INVALID_SERVER',
    })
  })

  stickySessionReadmeSpec(bun)

  describe('a socket.io app, 3 workers', () => {
    const app = socketIoApp(bun)

    test('the primary and every worker are Bun processes', () => {
      expect(app().workerPids()).toHaveLength(3)
      for (const pid of [app().pid, ...app().workerPids()]) expect(runsOn(bun, pid)).toBe(true)
    })

    pollingAndUpgradeSpecs(app)
    killedWorkerSpec(bun, app)
  })

  httpsSpec(bun)

  test("Node's server timeouts hold in the workers: a slowloris gets its 408 after headersTimeout, an idle kept-alive connection is closed after keepAliveTimeout", async () => {
    const config = { options: { workers: 2 }, ...SLOWLORIS_TIMEOUTS, keepAliveTimeout: 1000 }
    const app = await startOn(bun, config)
    try {
      await expectSlowloris408(app.port, clientIp(9))

      // Closed by the server after keepAliveTimeout plus Bun's keepAliveTimeoutBuffer (1 s).
      const idle = await rawConnection(app.port, clientIp(10))
      let answer = ''
      idle.on('data', (chunk) => (answer += chunk))
      idle.write('GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n')
      const answered = Date.now()
      await once(idle, 'close', 12000)
      expect(answer).toMatch(/^HTTP\/1\.1 200/)
      expect(answer).toMatch(/\r\nConnection: keep-alive\r\n/i)
      expect(Date.now() - answered).toBeGreaterThanOrEqual(config.keepAliveTimeout)
    } finally {
      await app.stop()
    }
  })

  test('sticky.reload() under load replaces every worker with zero failed requests, and every client address keeps its slot', async () => {
    await reloadUnderLoad(bun, {}, 'api')
  })

  test('kernel: true steers in the kernel under Bun too: clients stay on their worker and the primary handles no connection', async () => {
    const app = await startOn(bun, { options: { workers: 3, kernel: true } })
    try {
      const workerOf = new Map()
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < 12; i++) {
          const { json } = await request(app.port, { localAddress: clientIp(i) })
          if (round === 0) workerOf.set(clientIp(i), json.pid)
          else expect(json.pid).toBe(workerOf.get(clientIp(i)))
        }
      }
      expect(new Set(workerOf.values()).size).toBeGreaterThanOrEqual(2)
      const stats = await app.stats()
      expect(stats.kernel).toBe(true)
      expect(stats.accepted).toBe(0)
      expect(app.find('warning')).toEqual([])
    } finally {
      await app.stop()
    }
  })
})

'use strict'
// The drop-in under Bun: sticky-session 1.1.2's README example, and a
// socket.io app (fixtures/app.js) with real socket.io clients from many
// 127.0.0.x addresses — polling, upgrade, a worker's death, HTTPS, Node's
// request timeouts, a rolling reload, kernel steering — all run by the real
// Bun binary. CI installs @oven/bun-linux-x64 from the npm registry and names
// it in STICKY_BUN; elsewhere `bun` on PATH is used. What Bun does
// differently, and how lib/runtime.js deals with it: fixtures/bun-repros/.

const { execFileSync, spawn } = require('child_process')
const fs = require('fs')
const path = require('path')
const { requireProgram, startApp, stopAll, request, ioClient, once, emitWithAck, freePort, rawConnection, waitUntil, clientIp, sleep } = require('./helpers')

const bun = requireProgram('bun', 'npm install -g bun, or unpack the npm package @oven/bun-linux-x64 and set STICKY_BUN to its bin/bun', {
  envVariable: 'STICKY_BUN',
})
const bunVersion = bun ? execFileSync(bun, ['--version']).toString().trim() : null
const describeWith = bun ? describe : describe.skip

afterAll(stopAll)

/** True if process `pid` runs the Bun binary. */
function runsBun(pid) {
  return fs.realpathSync(`/proc/${pid}/exe`) === fs.realpathSync(bun)
}

/** Runs `rounds` acknowledged emits on a connected client; returns the identities seen. */
async function whoamiRounds(socket, rounds) {
  const seen = []
  for (let i = 0; i < rounds; i++) seen.push(await emitWithAck(socket, 'whoami'))
  return seen
}

describeWith(`Bun ${bunVersion}`, () => {
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
    const verdicts = JSON.parse(execFileSync(bun, ['-e', script], { cwd: path.join(__dirname, '..') }).toString())
    expect(verdicts).toEqual({
      http: 'accepted',
      https: 'accepted',
      net: 'accepted',
      express: 'ERR_STICKY_INVALID_SERVER',
      object: 'ERR_STICKY_INVALID_SERVER',
      none: 'ERR_STICKY_INVALID_SERVER',
    })
  })

  describe("sticky-session 1.1.2's README example (examples/sticky-session-readme.js)", () => {
    let child
    let file
    afterAll(() => {
      if (child) {
        try {
          process.kill(-child.pid, 'SIGKILL')
        } catch {}
      }
      if (file) fs.rmSync(file, { force: true })
    })

    test('runs unchanged but for the port, and keeps every client address on one worker', async () => {
      const port = await freePort()
      const source = fs.readFileSync(path.join(__dirname, '..', 'examples', 'sticky-session-readme.js'), 'utf8')
      // Inside the package, so that require('sticky-session-rs') resolves to it.
      file = path.join(__dirname, `.tmp-${process.pid}-bun-sticky-session-readme.js`)
      fs.writeFileSync(file, source.replace(/3000/g, String(port)))
      child = spawn(bun, [file], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
      let output = ''
      child.stdout.on('data', (chunk) => (output += chunk))
      child.stderr.on('data', (chunk) => (output += chunk))
      await waitUntil(() => output.includes(`server started on ${port} port`), { what: `the example to start (output: ${output})` })

      const workerOf = new Map()
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 12; i++) {
          const reply = await waitUntil(async () => (await request(port, { path: '/', localAddress: clientIp(i) })).text)
          expect(reply).toMatch(/^worker: \d+$/)
          if (round === 0) workerOf.set(clientIp(i), reply)
          else expect({ client: clientIp(i), reply }).toEqual({ client: clientIp(i), reply: workerOf.get(clientIp(i)) })
        }
      }
      expect(new Set(workerOf.values()).size).toBeGreaterThanOrEqual(2)
      expect(runsBun(child.pid)).toBe(true)
      expect(output).not.toMatch(/error|warn/i)
    })
  })

  describe('a socket.io app, 3 workers', () => {
    let app
    beforeAll(async () => {
      app = await startApp({ options: { workers: 3 } }, { runtime: bun })
    })

    test('the primary and every worker are Bun processes', () => {
      expect(app.workerPids()).toHaveLength(3)
      for (const pid of [app.pid, ...app.workerPids()]) expect(runsBun(pid)).toBe(true)
    })

    test('polling clients from 12 addresses complete the handshake and acknowledged emits, each on one worker; a new connection from the same address reaches the same worker', async () => {
      const clients = Array.from({ length: 12 }, (_, i) => ioClient(app.port, clientIp(i)))
      try {
        await Promise.all(clients.map((socket) => once(socket, 'connect')))
        const perClient = await Promise.all(clients.map((socket) => whoamiRounds(socket, 5)))
        const workersUsed = new Set()
        for (const [i, seen] of perClient.entries()) {
          expect({ client: clientIp(i), pids: [...new Set(seen.map((s) => s.pid))] }).toEqual({ client: clientIp(i), pids: [seen[0].pid] })
          expect(seen[0].remoteAddress).toMatch(new RegExp(`${clientIp(i).replace(/\./g, '\\.')}$`))
          workersUsed.add(seen[0].pid)
          const again = await request(app.port, { localAddress: clientIp(i) })
          expect(again.json.pid).toBe(seen[0].pid)
        }
        expect(workersUsed.size).toBeGreaterThanOrEqual(2)
        for (const socket of clients) expect(socket.io.engine.transport.name).toBe('polling')
      } finally {
        clients.forEach((socket) => socket.close())
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

    test("a killed worker is respawned into its slot and its clients are served there again; the other workers' clients keep their sessions and workers", async () => {
      const clients = Array.from({ length: 24 }, (_, i) => ioClient(app.port, clientIp(i)))
      const reconnected = []
      try {
        await Promise.all(clients.map((socket) => once(socket, 'connect')))
        const before = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami')))
        const victim = before[0]
        const victimIndexes = before.flatMap((who, i) => (who.pid === victim.pid ? [i] : []))
        const survivors = clients.filter((_, i) => before[i].pid !== victim.pid)
        expect(survivors.length).toBeGreaterThan(0)
        let survivorDisconnects = 0
        survivors.forEach((socket) => socket.on('disconnect', () => survivorDisconnects++))

        const victimDisconnected = once(clients[0], 'disconnect')
        process.kill(victim.pid, 'SIGKILL')
        await app.waitFor('exit', (e) => e.pid === victim.pid)
        await victimDisconnected
        const replacement = await waitUntil(
          async () => {
            const { json } = await request(app.port, { localAddress: clientIp(0) })
            return json.pid !== victim.pid && json.slot === victim.slot ? json : null
          },
          { what: `the replacement worker to serve slot ${victim.slot}` },
        )
        expect(runsBun(replacement.pid)).toBe(true)

        // The victim's clients connect again and land on the replacement.
        for (const i of victimIndexes) reconnected.push(ioClient(app.port, clientIp(i)))
        await Promise.all(reconnected.map((socket) => once(socket, 'connect')))
        for (const socket of reconnected) {
          const seen = await whoamiRounds(socket, 3)
          expect(seen.map((who) => [who.slot, who.pid])).toEqual(Array(3).fill([victim.slot, replacement.pid]))
        }
        // Nobody else noticed.
        const after = await Promise.all(survivors.map((socket) => emitWithAck(socket, 'whoami')))
        survivors.forEach((socket, i) => expect(after[i].pid).toBe(before[clients.indexOf(socket)].pid))
        expect(survivorDisconnects).toBe(0)
        const stats = await app.stats()
        expect(stats.slots[Number(victim.slot)].respawns).toBe(1)
        expect(stats.slots.map((slot) => slot.state)).toEqual(['live', 'live', 'live'])
      } finally {
        clients.forEach((socket) => socket.close())
        reconnected.forEach((socket) => socket.close())
      }
    })
  })

  test('https: plain requests and socket.io over TLS (polling, then websocket) are served by the client address\'s worker', async () => {
    const app = await startApp({ https: true, options: { workers: 2 } }, { runtime: bun })
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
      await app.stop()
    }
  })

  test("Node's server timeouts hold in the workers: a slowloris gets its 408 after headersTimeout, an idle kept-alive connection is closed after keepAliveTimeout", async () => {
    const config = { options: { workers: 2 }, headersTimeout: 1000, requestTimeout: 2000, keepAliveTimeout: 1000, connectionsCheckingInterval: 100 }
    const app = await startApp(config, { runtime: bun })
    try {
      const slow = await rawConnection(app.port, clientIp(9))
      slow.write('GET /whoami HTTP/1.1\r\nHost: x\r\n')
      let reply = ''
      slow.on('data', (chunk) => (reply += chunk))
      const started = Date.now()
      await once(slow, 'close', 8000)
      expect(reply).toMatch(/^HTTP\/1\.1 408/)
      expect(Date.now() - started).toBeLessThan(6000)

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
    const app = await startApp({ options: { workers: 2 } }, { runtime: bun })
    try {
      const slotOf = new Map()
      for (let i = 0; i < 20; i++) slotOf.set(clientIp(i), (await request(app.port, { localAddress: clientIp(i) })).json.slot)
      const oldPids = app.workerPids()
      const results = []
      let running = true
      const deadline = Date.now() + 20000
      const loop = async (offset) => {
        for (let n = offset; running && Date.now() < deadline; n += 4) {
          const localAddress = clientIp(n % 20)
          results.push(await request(app.port, { localAddress }).then((reply) => ({ ok: reply.status === 200, localAddress }), (error) => ({ ok: false, error: error.code || error.message, localAddress })))
        }
      }
      const loops = [0, 1, 2, 3].map(loop)
      await sleep(300)
      app.child.stdin.write('reload\n')
      const reloaded = await app.waitFor('reloaded', () => true, 20000)
      await sleep(300)
      running = false
      await Promise.all(loops)
      expect(reloaded.error).toBeNull()
      expect(results.filter((r) => !r.ok)).toEqual([])
      expect(results.length).toBeGreaterThan(50)
      expect(app.workerPids().some((pid) => oldPids.includes(pid))).toBe(false)
      for (const [localAddress, slot] of slotOf) expect((await request(app.port, { localAddress })).json.slot).toBe(slot)
      expect(app.find('exit').every((e) => e.code === 0)).toBe(true)
    } finally {
      await app.stop()
    }
  })

  test('kernel: true steers in the kernel under Bun too: clients stay on their worker and the primary handles no connection', async () => {
    const app = await startApp({ options: { workers: 3, kernel: true } }, { runtime: bun })
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


'use strict'
// The drop-in under Deno (`deno run -A app.js`: node:cluster, Node-API addons):
// the three API shapes (sticky-session's README example, socketio-sticky-session's
// and @socket.io/sticky's), a socket.io app (fixtures/app.js) with real
// socket.io clients from many 127.0.0.x addresses — polling, upgrade, a
// worker's death, a rolling reload, HTTPS, Node's request timeouts, kernel
// steering — and the portable path, all run by the real Deno binary. CI
// installs @deno/linux-x64-glibc from the npm registry and names it in
// STICKY_DENO; elsewhere `deno` on PATH is used. What Deno does differently,
// and how lib/runtime.js deals with it: fixtures/deno-repros/.

const { execFileSync, spawn } = require('child_process')
const fs = require('fs')
const path = require('path')
const { requireProgram, startApp, stopAll, request, ioClient, once, emitWithAck, freePort, rawConnection, waitUntil, clientIp, sleep, startLoad, failuresOf } = require('./helpers')

const deno = requireProgram('deno', 'npm install -g deno, or unpack the npm package @deno/linux-x64-glibc and set STICKY_DENO to its deno binary', {
  envVariable: 'STICKY_DENO',
})
const denoVersion = deno ? execFileSync(deno, ['--version']).toString().split('\n')[0].trim() : null
const describeWith = deno ? describe : describe.skip
/** How the tests start an app under Deno: `deno run -A <script>` (addons need --allow-ffi, cluster needs --allow-run). */
const underDeno = { runtime: deno, nodeOptions: ['run', '-A'], env: { NO_COLOR: '1' } }

afterAll(stopAll)

const spawned = []
afterAll(() => {
  for (const { child, file } of spawned) {
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {}
    if (file) fs.rmSync(file, { force: true })
  }
})

/** True if process `pid` runs the Deno binary. */
function runsDeno(pid) {
  return fs.realpathSync(`/proc/${pid}/exe`) === fs.realpathSync(deno)
}

/** Runs an example's source under Deno, inside the package (so `require('sticky-session-rs')` resolves to it), with a free port for 3000. */
async function runExample(source, ready) {
  const port = await freePort()
  const file = path.join(__dirname, `.tmp-${process.pid}-deno-${spawned.length}.js`)
  fs.writeFileSync(file, source.replace(/3000/g, String(port)))
  const child = spawn(deno, ['run', '-A', file], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } })
  spawned.push({ child, file })
  const run = { port, output: '', child }
  child.stdout.on('data', (chunk) => (run.output += chunk))
  child.stderr.on('data', (chunk) => (run.output += chunk))
  await waitUntil(() => ready.test(run.output), { what: `the example to start under Deno (output: ${run.output})` })
  return run
}

async function whoamiRounds(socket, rounds) {
  const seen = []
  for (let i = 0; i < rounds; i++) seen.push(await emitWithAck(socket, 'whoami'))
  return seen
}

describeWith(`Deno (${denoVersion})`, () => {
  describe('the three API shapes', () => {
    test("sticky-session's README example runs unchanged but for the port, and keeps every client address on one worker", async () => {
      const { port, output, child } = await runExample(fs.readFileSync(path.join(__dirname, '..', 'examples', 'sticky-session-readme.js'), 'utf8'), /server started on \d+ port/)
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
      expect(runsDeno(child.pid)).toBe(true)
      expect(output).not.toMatch(/error|warn/i)
    })

    test("socketio-sticky-session's README example (sticky(options, server)): socket.io clients behind one proxy address, routed by X-Forwarded-For", async () => {
      const { port } = await runExample(fs.readFileSync(path.join(__dirname, 'fixtures', 'peers', 'socketio-sticky-session-proxy.js'), 'utf8'), /server started on \d+ port/)
      const clients = Array.from({ length: 8 }, (_, i) => ioClient(port, '127.0.0.1', { extraHeaders: { 'x-forwarded-for': `198.51.100.${i + 1}` } }))
      try {
        await Promise.all(clients.map((socket) => once(socket, 'connect')))
        expect(clients.every((socket) => socket.connected)).toBe(true)
      } finally {
        clients.forEach((socket) => socket.close())
      }
    })

    test("@socket.io/sticky's shape (setupMaster / setupWorker, the user forks): sessions spread by least-connection and stay on their worker", async () => {
      const app = await startApp({ workers: 2 }, { ...underDeno, script: path.join(__dirname, 'fixtures', 'app-setup-master.js') })
      await waitUntil(async () => (await app.stats()).slots.filter((slot) => slot.state === 'live').length === 2, { what: 'two live slots' })
      const clients = Array.from({ length: 8 }, () => ioClient(app.port, '127.0.0.1'))
      try {
        await Promise.all(clients.map((socket) => once(socket, 'connect')))
        const counts = new Map()
        for (const socket of clients) {
          const replies = await whoamiRounds(socket, 3)
          expect(new Set(replies.map((reply) => reply.pid)).size).toBe(1)
          counts.set(replies[0].pid, (counts.get(replies[0].pid) || 0) + 1)
        }
        expect([...counts.values()]).toEqual([4, 4])
        for (const pid of [app.pid, ...counts.keys()]) expect(runsDeno(pid)).toBe(true)
      } finally {
        clients.forEach((socket) => socket.close())
        await app.stop()
      }
    })
  })

  // Kernel steering is not used under Deno (fixtures/deno-repros/kernel-listen-handle.js): 'ip' routing takes the native accept loop.
  describe.each([
    ['the defaults', {}],
    ['kernel: true', { kernel: true }],
  ])('a socket.io app, 3 workers, %s', (_, mode) => {
    let app
    beforeAll(async () => {
      app = await startApp({ options: { workers: 3, ...mode } }, underDeno)
    })
    afterAll(() => app && app.stop())

    test('the primary and every worker are Deno processes; IP routing runs in the native accept loop (kernel: true says why, once)', async () => {
      expect(app.workerPids()).toHaveLength(3)
      for (const pid of [app.pid, ...app.workerPids()]) expect(runsDeno(pid)).toBe(true)
      const stats = await app.stats()
      expect(stats.kernel).toBeUndefined()
      expect(stats.slots.map((slot) => slot.state)).toEqual(['live', 'live', 'live'])
      if (mode.kernel) {
        const warning = await app.waitFor('warning', (w) => w.code === 'ERR_STICKY_KERNEL_UNSUPPORTED')
        expect(warning.message).toMatch(/kernel steering is not used under Deno.*deno-repros\/kernel-listen-handle\.js/)
      }
      expect(app.find('warning')).toHaveLength(mode.kernel ? 1 : 0)
    })

    test('polling clients from 12 addresses keep their worker; clients that upgrade to websocket keep it too', async () => {
      const clients = Array.from({ length: 12 }, (_, i) => ioClient(app.port, clientIp(i), { transports: ['polling', 'websocket'], upgrade: i % 2 === 1 }))
      try {
        await Promise.all(clients.map((socket) => once(socket, 'connect')))
        const perClient = await Promise.all(clients.map((socket) => whoamiRounds(socket, 4)))
        const workersUsed = new Set()
        for (const [i, seen] of perClient.entries()) {
          expect({ client: clientIp(i), pids: [...new Set(seen.map((s) => s.pid))] }).toEqual({ client: clientIp(i), pids: [seen[0].pid] })
          expect(seen[0].remoteAddress).toMatch(new RegExp(`${clientIp(i).replace(/\./g, '\\.')}$`))
          expect((await request(app.port, { localAddress: clientIp(i) })).json.pid).toBe(seen[0].pid)
          workersUsed.add(seen[0].pid)
        }
        expect(workersUsed.size).toBeGreaterThanOrEqual(2)
        const upgraded = clients.filter((_, i) => i % 2 === 1)
        await Promise.all(upgraded.map((socket) => (socket.io.engine.transport.name === 'websocket' ? null : once(socket.io.engine, 'upgrade'))))
        const after = await Promise.all(upgraded.map((socket) => emitWithAck(socket, 'whoami')))
        upgraded.forEach((socket, i) => {
          expect(socket.io.engine.transport.name).toBe('websocket')
          expect(after[i].pid).toBe(perClient[2 * i + 1][0].pid)
        })
      } finally {
        clients.forEach((socket) => socket.close())
      }
    })

    test("a killed worker is respawned into its slot and serves its clients again; the other workers' clients keep their sessions", async () => {
      const clients = Array.from({ length: 18 }, (_, i) => ioClient(app.port, clientIp(20 + i)))
      try {
        await Promise.all(clients.map((socket) => once(socket, 'connect')))
        const before = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami')))
        const victim = before[0]
        const survivors = clients.filter((_, i) => before[i].pid !== victim.pid)
        let survivorDisconnects = 0
        survivors.forEach((socket) => socket.on('disconnect', () => survivorDisconnects++))
        process.kill(victim.pid, 'SIGKILL')
        await app.waitFor('exit', (e) => e.pid === victim.pid)
        const replacement = await waitUntil(
          async () => {
            const { json } = await request(app.port, { localAddress: clientIp(20) })
            return json.pid !== victim.pid && json.slot === victim.slot ? json : null
          },
          { what: `the replacement worker to serve slot ${victim.slot}` },
        )
        expect(runsDeno(replacement.pid)).toBe(true)
        const after = await Promise.all(survivors.map((socket) => emitWithAck(socket, 'whoami')))
        survivors.forEach((socket, i) => expect(after[i].pid).toBe(before[clients.indexOf(socket)].pid))
        expect(survivorDisconnects).toBe(0)
        const stats = await app.stats()
        expect(stats.slots[Number(victim.slot)].respawns).toBe(1)
        expect(stats.slots.map((slot) => slot.state)).toEqual(['live', 'live', 'live'])
      } finally {
        clients.forEach((socket) => socket.close())
      }
    })

    test('sticky.reload() under load replaces every worker with zero failed requests, and every client address keeps its slot', async () => {
      const slotOf = new Map()
      for (let i = 0; i < 20; i++) slotOf.set(clientIp(i), (await request(app.port, { localAddress: clientIp(i) })).json.slot)
      const oldPids = app.workerPids()
      const load = startLoad(app.port, { concurrency: 4, clients: 20, maxMs: 30000 })
      await sleep(300)
      app.child.stdin.write('reload\n')
      const reloaded = await app.waitFor('reloaded', () => true, 30000)
      await sleep(300)
      const results = await load.stop()
      expect(reloaded.error).toBeNull()
      expect(failuresOf(results)).toEqual([])
      expect(results.length).toBeGreaterThan(50)
      expect(app.workerPids().some((pid) => oldPids.includes(pid))).toBe(false)
      for (const [localAddress, slot] of slotOf) expect((await request(app.port, { localAddress })).json.slot).toBe(slot)
    })
  })

  test("https: plain requests and socket.io over TLS (polling, then websocket) are served by the client address's worker", async () => {
    const app = await startApp({ https: true, options: { workers: 2 } }, underDeno)
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

  test("Node's server timeouts hold in the workers: a slowloris gets its 408 after headersTimeout", async () => {
    const app = await startApp({ options: { workers: 2, kernel: false }, headersTimeout: 1000, requestTimeout: 2000, connectionsCheckingInterval: 100 }, underDeno)
    try {
      const slow = await rawConnection(app.port, clientIp(9))
      slow.write('GET /whoami HTTP/1.1\r\nHost: x\r\n')
      let reply = ''
      slow.on('data', (chunk) => (reply += chunk))
      const started = Date.now()
      await once(slow, 'close', 8000)
      expect(reply).toMatch(/^HTTP\/1\.1 408/)
      expect(Date.now() - started).toBeLessThan(6000)
    } finally {
      await app.stop()
    }
  })

  test('the portable path (STICKY_SESSION_PORTABLE=1) runs under Deno too: clients keep their worker through a worker\'s death', async () => {
    const app = await startApp({ options: { workers: 2 } }, { ...underDeno, env: { ...underDeno.env, STICKY_SESSION_PORTABLE: '1' } })
    try {
      const slots = []
      for (let i = 0; i < 12; i++) {
        const first = (await request(app.port, { localAddress: clientIp(i) })).json
        expect((await request(app.port, { localAddress: clientIp(i) })).json.pid).toBe(first.pid)
        slots.push(first.slot)
      }
      expect(new Set(slots).size).toBe(2)
      const [victim] = app.workerPids()
      process.kill(victim, 'SIGKILL')
      await app.waitFor('exit', (e) => e.pid === victim)
      await waitUntil(async () => (await app.stats()).slots.every((slot) => slot.state === 'live'), { what: 'the respawned worker' })
      for (let i = 0; i < 12; i++) expect((await request(app.port, { localAddress: clientIp(i) })).json.slot).toBe(slots[i])
      expect((await app.stats()).dropped).toBe(0)
    } finally {
      await app.stop()
    }
  })
})

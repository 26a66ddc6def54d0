'use strict'
// Specs that run under every runtime the package supports: Node (ip-routing,
// faults, api-shapes, lifecycle), Bun (bun.spec.js) and Deno (deno.spec.js).
// Each behaviour has one body here; a spec file calls the definer in its own
// describe block with the runtime to run it under, so what is checked is the
// same everywhere and only how a process is started differs.

const { execFileSync } = require('child_process')
const fs = require('fs')
const path = require('path')
const { requireProgram, startApp, stopAll, request, ioClient, once, emitWithAck, freePort, rawConnection, waitUntil, clientIp, startLoad, failuresOf, whoamiRounds } = require('./helpers')

/**
 * A runtime: `name` for the specs' titles, `binary`, the `args` before the
 * script, and the `env` it needs.
 */
const NODE = { name: `Node ${process.version}`, binary: process.execPath, args: [], env: {} }

/** Bun (STICKY_BUN, else `bun` on PATH), or null with one line saying what is missing (fails under CI=true). */
function bunRuntime() {
  const binary = requireProgram('bun', 'npm install -g bun, or unpack the npm package @oven/bun-linux-x64 and set STICKY_BUN to its bin/bun', { envVariable: 'STICKY_BUN' })
  return binary && { name: `Bun ${execFileSync(binary, ['--version']).toString().trim()}`, binary, args: [], env: {} }
}

/** This Node and Bun (when there is one, as `bunRuntime`), as `[name, binary]` rows for `describe.each`. */
function nodeAndBun() {
  const bun = bunRuntime()
  return [NODE, ...(bun ? [bun] : [])].map((runtime) => [runtime.name, runtime.binary])
}

/**
 * Deno (STICKY_DENO, else `deno` on PATH), or null as `bunRuntime`. Scripts run
 * as `deno run -A <script>`: addons need --allow-ffi, cluster needs --allow-run.
 */
function denoRuntime() {
  const binary = requireProgram('deno', 'npm install -g deno, or unpack the npm package @deno/linux-x64-glibc and set STICKY_DENO to its deno binary', { envVariable: 'STICKY_DENO' })
  const version = binary && execFileSync(binary, ['--version']).toString().split('\n')[0].trim()
  return binary && { name: `Deno (${version})`, binary, args: ['run', '-A'], env: { NO_COLOR: '1' } }
}

/** `startApp` under `runtime`. */
function startOn(runtime, config, options = {}) {
  return startApp(config, { ...options, runtime: runtime.binary, nodeOptions: runtime.args, env: { ...runtime.env, ...options.env } })
}

/** True if process `pid` runs `runtime`'s binary. */
function runsOn(runtime, pid) {
  return fs.realpathSync(`/proc/${pid}/exe`) === fs.realpathSync(runtime.binary)
}

const exampleCopies = []

/**
 * Runs an example (`file`, a README's code with `require('sticky-session-rs')`)
 * under `runtime`, with a free port for its 3000: a copy inside the package, so
 * that the require resolves to it. Resolves once its output matches `ready`.
 */
async function runExample(runtime, file, ready) {
  const port = await freePort()
  const source = fs.readFileSync(file, 'utf8')
  expect(source).toMatch(/require\(["']sticky-session-rs["']\)/)
  const copy = path.join(__dirname, `.tmp-${process.pid}-${exampleCopies.length}-${path.basename(file)}`)
  exampleCopies.push(copy)
  fs.writeFileSync(copy, source.replace(/3000/g, String(port)))
  const app = await startOn(runtime, {}, { script: copy, waitForListening: false })
  const output = () => app.events.map((e) => (e.event === 'text' ? e.line : JSON.stringify(e))).join('\n') + app.stderr
  await waitUntil(() => ready.test(output()), { what: `${path.basename(file)} to start under ${runtime.name} (output: ${output()})` })
  return { port, pid: app.pid, output: output() }
}

/** For a spec file's afterAll: stops what it started and removes the examples' copies. */
async function cleanUp() {
  await stopAll()
  for (const copy of exampleCopies.splice(0)) fs.rmSync(copy, { force: true })
}

/** `count` socket.io clients made by `make(i)`, connected; closed after `body(clients)`. */
async function withClients(count, make, body) {
  const clients = Array.from({ length: count }, (_, i) => make(i))
  try {
    await Promise.all(clients.map((socket) => once(socket, 'connect', 15000)))
    return await body(clients)
  } finally {
    clients.forEach((socket) => socket.close())
  }
}

/** sticky-session 1.1.2's README example: runs unchanged but for the port, and keeps every client address on one worker. */
function stickySessionReadmeSpec(runtime) {
  test("sticky-session's README example (examples/sticky-session-readme.js) runs unchanged but for the port, and keeps every client address on one worker", async () => {
    const { port, pid, output } = await runExample(runtime, path.join(__dirname, '..', 'examples', 'sticky-session-readme.js'), /server started on \d+ port/)
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
    expect(runsOn(runtime, pid)).toBe(true)
    expect(output).not.toMatch(/error|warn/i)
  })
}

const PEERS = path.join(__dirname, 'fixtures', 'peers')
const STARTED = /server started on \d+ port/
/** socket.io clients behind one proxy address, each naming its own client in X-Forwarded-For. */
const behindOneProxy = (port) => (i) => ioClient(port, '127.0.0.1', { extraHeaders: { 'x-forwarded-for': `198.51.100.${i + 1}` } })

/** socketio-sticky-session's README examples (fixtures/peers/), by title. */
const SOCKETIO_STICKY_SESSION_EXAMPLES = {
  plain: {
    title: 'README "Without proxied connections": sticky(server).listen(port, cb) runs and serves',
    async check(runtime) {
      const { port, output } = await runExample(runtime, path.join(PEERS, 'socketio-sticky-session-plain.js'), STARTED)
      expect(output).toContain(`server started on ${port} port`)
      // Its handler prints process.env.NODE_WORKER_ID, which Node no longer sets,
      // so replies cannot tell workers apart; routing itself is covered elsewhere.
      for (let i = 0; i < 6; i++) {
        const reply = await waitUntil(async () => (await request(port, { path: '/', localAddress: clientIp(i) })).text)
        expect(reply).toMatch(/^worker: /)
      }
    },
  },
  proxy: {
    title: 'README "With proxied connections": socket.io clients behind one proxy address connect, routed by X-Forwarded-For',
    file: 'socketio-sticky-session-proxy.js',
    clients: behindOneProxy,
  },
  factory: {
    title: 'README "Without proxied connections", socket.io: sticky(factory).listen(port, cb); clients from many addresses connect',
    file: 'socketio-sticky-session-factory.js',
    clients: (port) => (i) => ioClient(port, clientIp(i)),
  },
  sync: {
    title: 'README "With proxied connections", synchronized: its `sync` option and the sync event it emits on connection change nothing; clients connect',
    file: 'socketio-sticky-session-sync.js',
    clients: behindOneProxy,
    quiet: true,
  },
}

/** The examples above whose socket.io clients (8) must all connect. */
async function clientsConnect(runtime, { file, clients, quiet }) {
  const { port, output } = await runExample(runtime, path.join(PEERS, file), STARTED)
  await withClients(8, clients(port), async (connected) => expect(connected.every((socket) => socket.connected)).toBe(true))
  if (quiet) expect(output).not.toMatch(/Error/)
}

/** socketio-sticky-session's README examples under `runtime`; `names`: which of SOCKETIO_STICKY_SESSION_EXAMPLES. */
function socketioStickySessionSpecs(runtime, names = Object.keys(SOCKETIO_STICKY_SESSION_EXAMPLES)) {
  test.each(names.map((name) => SOCKETIO_STICKY_SESSION_EXAMPLES[name]))('$title', (example) => (example.check ? example.check(runtime) : clientsConnect(runtime, example)))
}

/**
 * @socket.io/sticky's shape (fixtures/app-setup-master.js: setupMaster /
 * setupWorker, the user forks 2 workers): 8 sessions from one address spread
 * by least-connection, 4 on each worker, and each stays on its worker.
 */
async function leastConnectionSessions(runtime, app) {
  await withClients(8, () => ioClient(app.port, '127.0.0.1'), async (clients) => {
    const counts = new Map()
    for (const socket of clients) {
      const replies = await whoamiRounds(socket, 3)
      expect(new Set(replies.map((reply) => reply.pid)).size).toBe(1)
      counts.set(replies[0].pid, (counts.get(replies[0].pid) || 0) + 1)
    }
    expect([...counts.values()]).toEqual([4, 4])
    for (const pid of [app.pid, ...counts.keys()]) expect(runsOn(runtime, pid)).toBe(true)
  })
}

/** Starts fixtures/app-setup-master.js under `runtime` and waits for its two live slots. */
async function startSetupMasterApp(runtime) {
  const app = await startOn(runtime, { workers: 2 }, { script: path.join(__dirname, 'fixtures', 'app-setup-master.js') })
  await waitUntil(async () => (await app.stats()).slots.filter((slot) => slot.state === 'live').length === 2, { what: 'two live slots' })
  return app
}

/**
 * socket.io clients of an app of 3 workers that `app()` returns (started in
 * the describe block that calls this): polling from many addresses, and
 * upgrades to websocket.
 */
function pollingAndUpgradeSpecs(app) {
  test('polling clients from 12 addresses complete the handshake and acknowledged emits, each on one worker; a new connection from the same address reaches the same worker', async () => {
    await withClients(12, (i) => ioClient(app().port, clientIp(i)), async (clients) => {
      const perClient = await Promise.all(clients.map((socket) => whoamiRounds(socket, 5)))
      const workersUsed = new Set()
      for (const [i, seen] of perClient.entries()) {
        expect({ client: clientIp(i), pids: [...new Set(seen.map((s) => s.pid))] }).toEqual({ client: clientIp(i), pids: [seen[0].pid] })
        expect(seen[0].remoteAddress).toMatch(new RegExp(`${clientIp(i).replace(/\./g, '\\.')}$`))
        workersUsed.add(seen[0].pid)
        expect((await request(app().port, { localAddress: clientIp(i) })).json.pid).toBe(seen[0].pid)
      }
      expect(workersUsed.size).toBeGreaterThanOrEqual(2)
      for (const socket of clients) expect(socket.io.engine.transport.name).toBe('polling')
    })
  })

  test('clients upgrade from polling to websocket and keep their worker', async () => {
    await withClients(6, (i) => ioClient(app().port, clientIp(40 + i), { transports: ['polling', 'websocket'], upgrade: true }), async (clients) => {
      const before = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami')))
      await Promise.all(clients.map((socket) => (socket.io.engine.transport.name === 'websocket' ? null : once(socket.io.engine, 'upgrade'))))
      const after = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami')))
      clients.forEach((socket, i) => {
        expect(socket.io.engine.transport.name).toBe('websocket')
        expect(after[i].pid).toBe(before[i].pid)
      })
    })
  })

}

/** A worker's death in an app of 3 workers under `runtime` that `app()` returns. */
function killedWorkerSpec(runtime, app) {
  test("a killed worker (SIGKILL) is respawned into its slot and its clients are served there again; the other workers' clients keep their sessions and workers", async () => {
    const { port } = app()
    const reconnected = []
    try {
      await withClients(24, (i) => ioClient(port, clientIp(i)), async (clients) => {
        const before = await Promise.all(clients.map((socket) => emitWithAck(socket, 'whoami')))
        const victim = before[0]
        const victimIndexes = before.flatMap((who, i) => (who.pid === victim.pid ? [i] : []))
        const survivors = clients.filter((_, i) => before[i].pid !== victim.pid)
        expect(survivors.length).toBeGreaterThan(0)
        let survivorDisconnects = 0
        survivors.forEach((socket) => socket.on('disconnect', () => survivorDisconnects++))

        const victimDisconnected = once(clients[0], 'disconnect')
        process.kill(victim.pid, 'SIGKILL')
        await app().waitFor('exit', (e) => e.pid === victim.pid)
        await victimDisconnected
        // The respawned worker takes the victim's slot, and with it the victim's clients.
        const replacement = await waitUntil(
          async () => {
            const { json } = await request(port, { localAddress: clientIp(0) })
            return json.pid !== victim.pid && json.slot === victim.slot ? json : null
          },
          { what: `the replacement worker to serve slot ${victim.slot}` },
        )
        expect(app().workerPids()).toContain(replacement.pid)
        expect(runsOn(runtime, replacement.pid)).toBe(true)

        // The victim's clients connect again and land on the replacement.
        for (const i of victimIndexes) reconnected.push(ioClient(port, clientIp(i)))
        await Promise.all(reconnected.map((socket) => once(socket, 'connect')))
        for (const socket of reconnected) {
          const seen = await whoamiRounds(socket, 3)
          expect(seen.map((who) => [who.slot, who.pid])).toEqual(Array(3).fill([victim.slot, replacement.pid]))
        }
        // Nobody else noticed.
        const after = await Promise.all(survivors.map((socket) => emitWithAck(socket, 'whoami')))
        survivors.forEach((socket, i) => expect(after[i].pid).toBe(before[clients.indexOf(socket)].pid))
        expect(survivorDisconnects).toBe(0)
        // Every client address is back on its original slot.
        for (let i = 0; i < clients.length; i++) expect((await request(port, { localAddress: clientIp(i) })).json.slot).toBe(before[i].slot)
        const stats = await app().stats()
        expect(stats.slots[Number(victim.slot)].respawns).toBe(1)
        expect(stats.slots.map((slot) => slot.state)).toEqual(['live', 'live', 'live'])
      })
    } finally {
      reconnected.forEach((socket) => socket.close())
    }
  })
}

/**
 * A socket.io app of `workers` workers under `runtime` with `options`, for the
 * tests of the calling describe block: returns a function that gives it.
 */
function socketIoApp(runtime, options = {}, config = {}) {
  let app
  beforeAll(async () => {
    app = await startOn(runtime, { ...config, options: { workers: 3, ...options } })
  })
  afterAll(() => app && app.stop())
  return () => app
}

function httpsSpec(runtime) {
  test("https: plain requests and socket.io over TLS (polling, then websocket) are served by the client address's worker", async () => {
    const app = await startOn(runtime, { https: true, options: { workers: 2 } })
    try {
      const reply = await request(app.port, { tls: true, localAddress: clientIp(3) })
      expect(reply.status).toBe(200)
      await withClients(1, () => ioClient(app.port, clientIp(3), { tls: true, transports: ['polling', 'websocket'], upgrade: true }), async ([socket]) => {
        const first = await emitWithAck(socket, 'whoami')
        expect(first.pid).toBe(reply.json.pid)
        if (socket.io.engine.transport.name !== 'websocket') await once(socket.io.engine, 'upgrade')
        expect((await emitWithAck(socket, 'whoami')).pid).toBe(first.pid)
      })
    } finally {
      await app.stop()
    }
  })
}

/**
 * Server timeouts for a slowloris spec: the workers' Node servers get them
 * from fixtures/app.js's config.
 */
const SLOWLORIS_TIMEOUTS = { headersTimeout: 1000, requestTimeout: 2000, connectionsCheckingInterval: 100 }

/** A client that sends half a request head gets its 408 once headersTimeout (SLOWLORIS_TIMEOUTS) has passed. */
async function expectSlowloris408(port, localAddress) {
  const socket = await rawConnection(port, localAddress)
  socket.write('GET /whoami HTTP/1.1\r\nHost: x\r\n')
  let reply = ''
  socket.on('data', (chunk) => (reply += chunk))
  const started = Date.now()
  await once(socket, 'close', 8000)
  expect(reply).toMatch(/^HTTP\/1\.1 408/)
  expect(Date.now() - started).toBeLessThan(6000)
}

/**
 * Rolling reload under load (`how`: 'api', sticky.reload(); 'signal', SIGHUP
 * to the primary) of an app of 3 workers under `runtime` with `options`: every
 * worker replaced, zero failed requests, every client address keeps its slot,
 * every worker exits 0.
 */
async function reloadUnderLoad(runtime, options, how) {
  const app = await startOn(runtime, { options: { workers: 3, ...options } })
  try {
    const slotOf = new Map()
    for (let i = 0; i < 40; i++) slotOf.set(clientIp(i), (await request(app.port, { localAddress: clientIp(i) })).json.slot)
    const before = new Set(app.workerPids())
    // Counts, not time, so that it holds on a slow machine; 60 s is a safety stop.
    const load = startLoad(app.port, { maxMs: 60000 })
    let results
    try {
      await load.completed(50, { what: 'the load to get going' })
      if (how === 'api') app.child.stdin.write('reload\n')
      else process.kill(app.pid, 'SIGHUP')
      await waitUntil(() => app.workerPids().length === 3 && app.workerPids().every((pid) => !before.has(pid)), { what: 'every worker replaced', timeout: 60000 })
      if (how === 'api') expect((await app.waitFor('reloaded', () => true, 60000)).error).toBeNull()
      await load.completed(100, { since: Date.now(), what: '100 requests sent after the reload' })
    } finally {
      results = await load.stop()
    }
    expect(failuresOf(results)).toEqual([])
    for (const [localAddress, slot] of slotOf) expect((await request(app.port, { localAddress })).json.slot).toBe(slot)
    expect(app.find('exit').every((e) => e.code === 0)).toBe(true)
    return results
  } finally {
    await app.stop()
  }
}

module.exports = {
  NODE,
  bunRuntime,
  nodeAndBun,
  denoRuntime,
  startOn,
  runsOn,
  runExample,
  cleanUp,
  withClients,
  stickySessionReadmeSpec,
  socketioStickySessionSpecs,
  leastConnectionSessions,
  startSetupMasterApp,
  socketIoApp,
  pollingAndUpgradeSpecs,
  killedWorkerSpec,
  httpsSpec,
  SLOWLORIS_TIMEOUTS,
  expectSlowloris408,
  reloadUnderLoad,
}

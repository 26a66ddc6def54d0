'use strict'
// Nothing lost: a worker killed under load, rolling reload under load and
// graceful shutdown under load, in both ways of routing by IP (the accept
// loop and kernel steering); then the accept loop's own limits (a burst
// beyond a worker's queue, running out of file descriptors, a closing
// worker). What only kernel steering has is in kernel.spec.js.

const { execFileSync } = require('child_process')
const net = require('net')
const { startApp, request, rawConnection, waitUntil, clientIp, sleep, startLoad, failuresOf, freeze, nativeTest, PORTABLE } = require('./helpers')
const { NODE, cleanUp, reloadUnderLoad } = require('./runtime-specs')

afterAll(cleanUp)

/**
 * The two ways the primary routes by IP, each lifecycle spec runs in both:
 * the accept loop in the primary, and kernel steering (the native path's
 * only: skipped in the portable pass, which has the accept loop alone).
 * `killed`: what becomes of the connections a killed worker had not taken;
 * `queuedFor(stats, slot)`: whether the primary counts connections handed to
 * the slot's worker that it has not read (kernel steering: the primary sees
 * none, they wait in the slot's socket).
 */
const MODES = [
  {
    name: 'the accept loop (kernel: false)',
    kernel: false,
    killed: "connections it had not taken are re-dispatched to the clients' next choice",
    queuedFor: (stats, slot) => stats.slots[slot].pending > 0,
    expectAfterKill(stats) {
      expect(stats.slots.reduce((sum, slot) => sum + slot.redispatched, 0)).toBeGreaterThan(0)
      expect(stats.dropped).toBe(0)
    },
  },
  {
    name: 'kernel steering (kernel: true)',
    kernel: true,
    killed: "connections queued on its slot's socket are served by its replacement",
    queuedFor: () => true,
    expectAfterKill() {},
  },
]
const testIn = (mode) => (PORTABLE && mode.kernel ? test.skip : test)

/**
 * How long a load may run before a spec gives up waiting for its counts: a
 * safety stop only, far beyond what any count needs on a loaded machine.
 */
const LOAD_SAFETY_STOP = 60000
/** Requests that must complete after an event (a kill, a signal) before a spec stops its load. */
const AFTER_EVENT = 100

describe.each(MODES)('a worker killed under load, $name', (mode) => {
  testIn(mode)(`${mode.killed}: no request sent after it stopped fails; its slot is respawned once and its clients are back on it`, async () => {
    const app = await startApp({ options: { kernel: mode.kernel, workers: 3 } })
    const victim = app.workerPids()[0]
    // The load's clients the victim serves (routing by IP is sticky), and its slot.
    const ofVictim = []
    let slotOfVictim
    for (let i = 0; i < 40; i++) {
      const { pid, slot } = (await request(app.port, { localAddress: clientIp(i) })).json
      if (pid !== victim) continue
      ofVictim.push(clientIp(i))
      slotOfVictim = Number(slot)
    }
    expect(ofVictim.length).toBeGreaterThan(0)
    const load = startLoad(app.port, { maxMs: LOAD_SAFETY_STOP })
    let results, stoppedAt, queuedAtKill
    try {
      await load.completed(50, { what: 'the load to get going' })
      // Freeze it first, so connections queue for it without being taken...
      await freeze(victim)
      stoppedAt = Date.now()
      const queued = () => load.inFlight().filter((r) => r.connected && r.started > stoppedAt && ofVictim.includes(r.localAddress))
      await waitUntil(async () => queued().length > 0 && mode.queuedFor(await app.stats(), slotOfVictim), { what: 'a connection queued for the frozen worker', timeout: LOAD_SAFETY_STOP })
      queuedAtKill = queued()
      // ...then kill it.
      process.kill(victim, 'SIGKILL')
      await app.waitFor('exit', (e) => e.pid === victim)
      const killedAt = Date.now()
      // The load goes on: its clients' too (their next choice, or the replacement).
      await load.completed(AFTER_EVENT, { since: killedAt, what: `${AFTER_EVENT} requests sent after the kill` })
      await load.completed(10, { since: killedAt, where: (r) => ofVictim.includes(r.localAddress), what: "10 requests of the victim's clients sent after the kill" })
    } finally {
      results = await load.stop()
    }
    // Strictly later: Date.now() counts milliseconds, and a request started in
    // the millisecond the stop was seen may have been taken just before it.
    const afterStop = results.filter((r) => r.started > stoppedAt)
    // Requests the victim took before it was frozen die with it (at most one per load loop).
    expect(failuresOf(results).length).toBeLessThanOrEqual(8)
    expect(failuresOf(afterStop)).toEqual([])
    // Those queued for it when it was killed were served.
    expect(queuedAtKill.length).toBeGreaterThan(0)
    const queuedIds = new Set(queuedAtKill.map((r) => r.id))
    expect(results.filter((r) => queuedIds.has(r.id)).map((r) => r.ok)).toEqual(queuedAtKill.map(() => true))
    mode.expectAfterKill(await app.stats())
    // Respawned exactly once, and its clients are back on its slot.
    const respawned = await waitUntil(async () => {
      const slot = (await app.stats()).slots[slotOfVictim]
      return slot.state === 'live' && slot.pid !== victim && slot
    }, { what: 'the slot to be respawned' })
    expect(respawned.respawns).toBe(1)
    expect(app.find('exit', (e) => e.pid === victim)).toHaveLength(1)
    for (const localAddress of ofVictim) expect((await request(app.port, { localAddress })).json.pid).toBe(respawned.pid)
    console.log(`${mode.name}: kill under load: ${results.length} requests, ${failuresOf(results).length} failed (taken by the victim), ${queuedAtKill.length} queued for it at the kill`)
  }, 4 * LOAD_SAFETY_STOP)
})

describe('a burst beyond a worker\'s queue limit', () => {
  test('is held, not reset: every client of a frozen worker is served once it resumes, and the other slot\'s clients are not held up', async () => {
    const app = await startApp({ options: { kernel: false, workers: 2, maxPendingPerSlot: 2, maxParked: 1 } })
    const slotOf = new Map()
    for (let i = 0; i < 40; i++) slotOf.set(clientIp(i), (await request(app.port, { localAddress: clientIp(i) })).json.slot)
    const frozenSlot = '0'
    const victim = (await request(app.port, { localAddress: [...slotOf].find(([, slot]) => slot === frozenSlot)[0] })).json.pid
    const ofFrozen = [...slotOf].filter(([, slot]) => slot === frozenSlot).map(([ip]) => ip)
    const ofOther = [...slotOf].filter(([, slot]) => slot !== frozenSlot).map(([ip]) => ip)
    expect(ofFrozen.length).toBeGreaterThan(5)
    expect(ofOther.length).toBeGreaterThan(5)
    await freeze(victim)
    try {
      // Ten times the limit for the frozen worker at once...
      const burst = Array.from({ length: 20 }, (_, i) => request(app.port, { localAddress: ofFrozen[i % ofFrozen.length] }))
      await waitUntil(async () => (await app.stats()).slots[Number(frozenSlot)].pending >= 20, { what: 'the burst to queue for the frozen worker' })
      // ...while the other worker's clients are served at once.
      for (const ip of ofOther) expect((await request(app.port, { localAddress: ip, timeout: 3000 })).json.slot).not.toBe(frozenSlot)
      const during = await app.stats()
      expect(during.slots[Number(frozenSlot)].pending).toBeGreaterThanOrEqual(20)
      process.kill(victim, 'SIGCONT')
      const results = await Promise.all(burst)
      expect(results.map((r) => r.status)).toEqual(Array(20).fill(200))
      expect(results.every((r) => r.json.pid === victim)).toBe(true)
    } finally {
      process.kill(victim, 'SIGCONT')
    }
    const stats = await app.stats()
    expect(stats.dropped).toBe(0)
    expect(stats.slots.map((slot) => slot.droppedQueueFull)).toEqual([0, 0])
  })
})

// The native accept loop's descriptor budget (the portable path cannot read the open-file limit: it holds every connection).
describe('descriptors running out', () => {
  nativeTest('only then is a frozen worker\'s new client reset — counted and reported — while the other worker\'s clients are served', async () => {
    // 320 open files: a descriptor budget of 64 (the floor; 3/4 of the limit
    // less a reserve of 256 would be less).
    const app = await startApp(
      { options: { kernel: false, workers: 2, maxPendingPerSlot: 4 } },
      // prlimit sets the soft and hard limit and execs node in place (same pid).
      { launcher: (file, args) => ['prlimit', ['--nofile=320:320', '--', file, ...args]] },
    )
    const slotOf = new Map()
    for (let i = 0; i < 40; i++) slotOf.set(clientIp(i), (await request(app.port, { localAddress: clientIp(i) })).json.slot)
    const ofFrozen = [...slotOf].filter(([, slot]) => slot === '0').map(([ip]) => ip)
    const ofOther = [...slotOf].filter(([, slot]) => slot !== '0').map(([ip]) => ip)
    const victim = (await request(app.port, { localAddress: ofFrozen[0] })).json.pid
    await freeze(victim)
    let outcomes
    try {
      const burst = Array.from({ length: 100 }, (_, i) =>
        request(app.port, { localAddress: ofFrozen[i % ofFrozen.length], timeout: 20000 }).then(
          (response) => response.status,
          (error) => error.code || error.message,
        ),
      )
      const warning = await app.waitFor('warning', (w) => w.code === 'ERR_STICKY_OVERLOAD', 10000)
      expect(warning.message).toMatch(/ulimit -n/)
      for (const ip of ofOther) expect((await request(app.port, { localAddress: ip, timeout: 3000 })).json.slot).not.toBe('0')
      process.kill(victim, 'SIGCONT')
      outcomes = await Promise.all(burst)
    } finally {
      process.kill(victim, 'SIGCONT')
    }
    const served = outcomes.filter((outcome) => outcome === 200).length
    const reset = outcomes.filter((outcome) => outcome === 'ECONNRESET').length
    expect(served + reset).toBe(100)
    const stats = await app.stats()
    // Held up to the budget (64; nothing else was held meanwhile), the rest reset and counted.
    expect(served).toBe(64)
    expect(reset).toBe(36)
    expect(stats.slots[0].droppedQueueFull).toBe(reset)
    expect(stats.dropped).toBe(reset)
  })
})

describe.each(MODES)('rolling reload under load, $name', (mode) => {
  testIn(mode).each([['sticky.reload()', 'api'], ['SIGHUP', 'signal']])('%s replaces every worker one at a time with zero failed requests; every client keeps its slot', async (_, how) => {
    const results = await reloadUnderLoad(NODE, { kernel: mode.kernel }, how)
    console.log(`${mode.name}: reload (${how}) under load: ${results.length} requests, 0 failed`)
  }, 3 * LOAD_SAFETY_STOP)
})

/**
 * One HTTP/1.1 request on a raw connection that says nothing about keep-alive
 * (so it is kept alive unless the server says otherwise). `head` resolves with
 * the response head; `done` with the head, the body as text, and whether the
 * server ended the connection within `timeout`.
 */
function keepAliveRequest(port, localAddress, { path = '/whoami', timeout = 15000 } = {}) {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress }, () => socket.write(`GET ${path} HTTP/1.1\r\nHost: sticky.test\r\n\r\n`))
  let text = ''
  let headArrived
  const head = new Promise((resolve) => (headArrived = resolve))
  const done = new Promise((resolve) => {
    const settle = (outcome) => {
      clearTimeout(timer)
      socket.destroy()
      const split = text.indexOf('\r\n\r\n')
      resolve({ head: text.slice(0, split), body: text.slice(split + 4), ...outcome })
    }
    const timer = setTimeout(() => settle({ ended: false }), timeout)
    socket.on('end', () => settle({ ended: true }))
    socket.on('error', (error) => settle({ ended: false, error: error.code }))
  })
  socket.setEncoding('latin1')
  socket.on('data', (chunk) => {
    text += chunk
    if (text.includes('\r\n\r\n')) headArrived(text.slice(0, text.indexOf('\r\n\r\n')))
  })
  return { head, done }
}

describe('a closing worker', () => {
  test('answers every connection of its last delivery (none read yet when it starts closing), each response ending its connection; a silent one is closed by the shutdown timeout', async () => {
    // The first worker holds what it takes until the reload closes its channel, then adopts it all and closes at once.
    const shutdownTimeout = 2000
    const app = await startApp({ options: { kernel: false, workers: 1, shutdownTimeout }, firstWorkerHoldsConnectionsUntilReplaced: true })
    const [old] = app.workerPids()
    const closing = Array.from({ length: 6 }, (_, i) => request(app.port, { localAddress: clientIp(i) }).catch((error) => ({ error: error.code })))
    const keepAlive = Array.from({ length: 4 }, (_, i) => keepAliveRequest(app.port, clientIp(6 + i)).done)
    // A client that connects and never sends a request must not keep the worker for ever.
    const silent = await rawConnection(app.port, clientIp(10))
    const silentClosed = new Promise((resolve) => silent.on('close', resolve))
    silent.on('error', () => {})
    await waitUntil(async () => (await app.stats()).slots[0].taken >= 11, { what: 'the first worker to hold 11 connections' })
    app.child.stdin.write('reload\n')
    expect((await app.waitFor('reloaded', () => true, shutdownTimeout + 5000)).error).toBeNull()
    await silentClosed
    const answers = await Promise.all(closing)
    expect(answers.map((a) => a.error ?? a.status)).toEqual(Array(6).fill(200))
    expect(answers.map((a) => a.json.pid)).toEqual(Array(6).fill(old))
    for (const answer of await Promise.all(keepAlive)) {
      expect(answer).toEqual(expect.objectContaining({ ended: true }))
      expect(answer.head).toMatch(/^HTTP\/1\.1 200 /)
      expect(JSON.parse(answer.body).pid).toBe(old)
      // A client must not reuse a connection of a worker that is going away.
      expect(answer.head).toMatch(/\r\nConnection: close(\r\n|$)/i)
    }
    expect(app.find('exit', (e) => e.pid === old)).toEqual([expect.objectContaining({ code: 0 })])
  })

  test('ends each kept-alive connection once the response it had under way is sent, not after keepAliveTimeout', async () => {
    // Kept-alive connections would otherwise hold the closing worker for a minute, or until the shutdown timeout.
    const app = await startApp({ options: { kernel: false, workers: 1, shutdownTimeout: 30000 }, keepAliveTimeout: 60000 })
    const [worker] = app.workerPids()
    const slow = keepAliveRequest(app.port, clientIp(0), { path: '/slow?ms=1000', timeout: 5000 })
    await waitUntil(async () => (await app.stats()).slots[0].taken >= 1, { what: 'the worker to take the slow request' })
    const streaming = keepAliveRequest(app.port, clientIp(1), { path: '/stream?ms=1000', timeout: 5000 })
    // This head promised keep-alive before the worker started closing; the slow one's is not written yet.
    expect(await streaming.head).toMatch(/\r\nConnection: keep-alive\r\n/i)
    expect((await request(app.port, { localAddress: clientIp(2), path: '/close' })).json.pid).toBe(worker)
    const [slowed, streamed] = await Promise.all([slow.done, streaming.done])
    expect(slowed).toEqual(expect.objectContaining({ ended: true, head: expect.stringMatching(/\r\nConnection: close(\r\n|$)/i) }))
    expect(JSON.parse(slowed.body).pid).toBe(worker)
    expect(streamed.body).toContain(`"pid":${worker}`)
    expect(streamed.body.endsWith('0\r\n\r\n')).toBe(true)
    expect(streamed.ended).toBe(true)
    await app.waitFor('exit', (e) => e.pid === worker, 5000)
  })
})

describe.each(MODES)('graceful shutdown under load, $name', (mode) => {
  testIn(mode)('SIGTERM: no accepted connection is dropped, in-flight requests finish, the primary and every worker exit 0', async () => {
    const app = await startApp({ options: { kernel: mode.kernel, workers: 2 } })
    const load = startLoad(app.port, { path: '/slow?ms=300', concurrency: 16, maxMs: LOAD_SAFETY_STOP })
    let results, underWayAtSignal
    try {
      await load.completed(16, { what: 'the load to get going' })
      // Requests whose connection is established when the signal comes: each must be answered.
      const underWay = () => load.inFlight().filter((r) => r.connected)
      await waitUntil(() => underWay().length >= 8, { what: '8 requests under way', timeout: LOAD_SAFETY_STOP })
      underWayAtSignal = underWay()
      process.kill(app.pid, 'SIGTERM')
      await waitUntil(() => app.exited, { what: 'the primary to exit', timeout: LOAD_SAFETY_STOP })
    } finally {
      results = await load.stop()
    }
    expect(app.exited).toEqual({ code: 0, signal: null })
    const failures = failuresOf(results)
    // After the listening sockets close, new connections are refused; nothing else may fail.
    expect(failures.filter((r) => r.error !== 'ECONNREFUSED')).toEqual([])
    const underWayIds = new Set(underWayAtSignal.map((r) => r.id))
    expect(results.filter((r) => underWayIds.has(r.id)).map((r) => r.ok)).toEqual(underWayAtSignal.map(() => true))
    expect(app.find('exit').every((e) => e.code === 0)).toBe(true)
    console.log(`${mode.name}: shutdown under load: ${results.filter((r) => r.ok).length} completed (${underWayAtSignal.length} under way at SIGTERM), ${failures.length} refused after close, 0 dropped`)
  }, 3 * LOAD_SAFETY_STOP)
})

/**
 * New connections as fast as they are answered, in `loops` loops from
 * `clients` addresses: each connects, sends a request and reads the answer,
 * until its connect is refused (or `stop()`). `outcomes` (live): `ok`
 * (answered), `refused` (the connect was refused), `reset` (connected, then
 * reset or closed unanswered: what a listening socket that closes with a
 * connection queued or half-open does to its client) and `timeout`.
 */
function streamOfConnections(port, { loops = 96, clients = 40 } = {}) {
  const outcomes = { ok: 0, refused: 0, reset: 0, timeout: 0 }
  let running = true
  let counter = 0
  const one = () =>
    new Promise((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress: clientIp(counter++ % clients) })
      let connected = false
      let settled = false
      let answer = ''
      const end = (outcome) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        socket.destroy()
        outcomes[outcome]++
        resolve(outcome)
      }
      const timer = setTimeout(() => end('timeout'), 10000)
      socket.on('connect', () => {
        connected = true
        socket.end('GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
      })
      socket.on('data', (chunk) => (answer += chunk))
      socket.on('error', (error) => end(!connected && error.code === 'ECONNREFUSED' ? 'refused' : 'reset'))
      socket.on('close', () => end(answer.startsWith('HTTP/1.1 200') ? 'ok' : 'reset'))
    })
  const done = Promise.all(Array.from({ length: loops }, async () => {
    while (running && (await one()) !== 'refused');
  }))
  return {
    outcomes,
    async stop() {
      running = false
      await done
      return outcomes
    },
  }
}

// The listening socket stops taking new connections before its last look at
// the queue (a socket filter drops new SYNs; handshakes under way complete
// and are served), so no connection is queued or half-open when it closes:
// none is reset. Without that, a handshake that completes between the last
// empty accept and the close is reset: a window of microseconds, which
// `STICKY_FAULT_INJECTION=slow-close` widens to 200 ms so that a stream of
// new connections meets it every time.
describe('shutdown in the middle of a stream of new connections', () => {
  (PORTABLE ? test.skip : test).each([['the accept loop', false], ['kernel steering', true]])('%s: close() resets no connection, even with 200 ms between the last look at the queue and the close; each is served or refused', async (_, kernel) => {
    const app = await startApp({ options: { workers: 2, kernel } }, { env: { STICKY_FAULT_INJECTION: 'slow-close' } })
    const loops = 96
    const stream = streamOfConnections(app.port, { loops })
    let outcomes
    try {
      // In full flow when the close comes...
      await waitUntil(() => stream.outcomes.ok >= 100, { what: '100 connections served', timeout: LOAD_SAFETY_STOP })
      app.child.stdin.write('close\n')
      await app.waitFor('closed', () => true, LOAD_SAFETY_STOP)
      // ...and each loop goes on until its connect is refused: the socket is closed for every one.
      await waitUntil(() => stream.outcomes.refused === loops, { what: `each of the ${loops} loops to be refused`, timeout: LOAD_SAFETY_STOP })
    } finally {
      outcomes = await stream.stop()
    }
    console.log(`${kernel ? 'kernel steering' : 'accept loop'}: shutdown in a stream of new connections: ${JSON.stringify(outcomes)}`)
    expect(outcomes.ok).toBeGreaterThanOrEqual(100)
    expect(outcomes).toEqual(expect.objectContaining({ refused: loops, reset: 0, timeout: 0 }))
  }, 3 * LOAD_SAFETY_STOP)
})

// The native accept loop's back-off (libuv, under the portable path's net.Server, resets what it cannot accept).
describe('file descriptors exhausted in the primary', () => {
  nativeTest('accept backs off (no spin), the error is counted and reported, and serving resumes', async () => {
    const app = await startApp({ options: { kernel: false, workers: 2 } })
    const fds = require('fs').readdirSync(`/proc/${app.pid}/fd`).length
    const softLimit = execFileSync('prlimit', [`--pid=${app.pid}`, '--nofile', '--output=SOFT', '--noheadings']).toString().trim()
    // Leave the primary a handful of descriptors above what it uses now (soft limit only).
    execFileSync('prlimit', [`--pid=${app.pid}`, `--nofile=${fds + 2}:`])
    const load = startLoad(app.port, { concurrency: 24, path: '/slow?ms=400', maxMs: 2500 })
    await sleep(1500)
    const during = await app.stats()
    execFileSync('prlimit', [`--pid=${app.pid}`, `--nofile=${softLimit}:`])
    const results = await load.stop()
    expect(during.acceptErrors).toBeGreaterThan(0)
    // Backing off 100 ms per failure: a spinning loop would count thousands.
    expect(during.acceptErrors).toBeLessThan(100)
    const warning = await app.waitFor('warning', (w) => w.code === 'EMFILE')
    expect(warning.message).toMatch(/retrying/)
    expect(failuresOf(results)).toEqual([])
    expect((await request(app.port)).status).toBe(200)
  })
})

// Fault injection in the native accept loop.
describe('a failure inside the accept loop', () => {
  nativeTest('a panic reaches the user as an error event on the server (code, fatal) instead of dying silently; the primary does not abort', async () => {
    const app = await startApp({ options: { kernel: false, workers: 2 } }, { env: { STICKY_FAULT_INJECTION: 'accept-panic' } })
    expect((await request(app.port)).status).toBe(200)
    await expect(request(app.port, { timeout: 3000 })).rejects.toThrow()
    const error = await app.waitFor('error', (e) => e.code === 'ERR_STICKY_ACCEPT_LOOP')
    expect(error.message).toMatch(/accept loop panicked: fault injection/)
    expect(app.exited).toBeNull()
    expect(app.workerPids()).toHaveLength(2)
  })
})

'use strict'
// Socket takeover (`takeover: true`): a second primary of the same app takes
// the running primary's listening socket(s), starts its workers, and only then
// tells the old primary to stop accepting; the old one drains and exits 0.
// Under load from 40 client addresses, no request may fail or be refused, and
// every client keeps its slot.

const fs = require('fs')
const net = require('net')
const path = require('path')
const { spawnSync } = require('child_process')
const { startApp, stopAll, request, waitUntil, clientIp, sleep, startLoad, failuresOf, freePort, runtimeForUser, packageCopyFor } = require('./helpers')
const { takeoverName } = require('../lib/takeover')

afterAll(stopAll)

const CLIENTS = 40

/** The slot each of the load's client addresses reaches now. */
async function slotTable(port) {
  const table = new Map()
  for (let i = 0; i < CLIENTS; i++) table.set(clientIp(i), (await request(port, { localAddress: clientIp(i) })).json.slot)
  return table
}

/** True while `pid` is a running (not zombie) process. */
function alive(pid) {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

const workerPidsOf = (app) => new Set(app.find('online').map((e) => e.pid))

/**
 * Starts a primary that takes over from `old` under the load already running,
 * waits for `old` to exit by itself, and checks the operator's view: exit
 * code 0, every old worker gone with code 0, one line each on stderr.
 */
async function takeOver(old, config) {
  const fresh = await startApp({ port: old.port, ...config }, { env: { DEBUG: 'sticky-session-rs' } })
  expect(fresh.port).toBe(old.port)
  await waitUntil(() => old.exited, { timeout: 20000, what: `the old primary ${old.pid} to exit by itself` })
  // The new primary released the old one only once every one of its workers was ready.
  const tookOver = fresh.stderr.indexOf(`sticky-session-rs: primary ${fresh.pid} took over`)
  const readyBefore = fresh.stderr.slice(0, tookOver).match(/sticky-session-rs slot \d+ ready/g) || []
  expect(readyBefore.length).toBeGreaterThanOrEqual(config.options.workers)
  expect(old.exited).toEqual({ code: 0, signal: null })
  expect(old.find('error')).toEqual([])
  const oldWorkers = [...workerPidsOf(old)]
  expect(oldWorkers.filter(alive)).toEqual([])
  expect(old.find('exit').every((e) => e.code === 0)).toBe(true)
  expect(old.stderr).toMatch(new RegExp(`sticky-session-rs: primary ${old.pid} handed \\[.*\\]:${old.port} over to primary ${fresh.pid}; draining, then exiting with code 0`))
  expect(fresh.stderr).toMatch(new RegExp(`sticky-session-rs: primary ${fresh.pid} took over \\[.*\\]:${old.port} from primary ${old.pid}`))
  return fresh
}

/** Figures of a load run across swaps, checked: nothing failed, every answer from the client's slot. */
function checkLoad(results, slotBefore, primaries) {
  const failed = failuresOf(results)
  const refused = failed.filter((r) => r.error === 'ECONNREFUSED')
  expect(failed).toEqual([])
  const wrongSlot = results.filter((r) => r.slot !== slotBefore.get(r.localAddress))
  expect(wrongSlot).toEqual([])
  const servedBy = primaries.map((app) => {
    const pids = workerPidsOf(app)
    return results.filter((r) => pids.has(r.pid)).length
  })
  // Each primary's workers answered part of the load: the swap happened under it.
  for (const count of servedBy) expect(count).toBeGreaterThan(0)
  expect(servedBy.reduce((a, b) => a + b, 0)).toBe(results.length)
  return { requests: results.length, failed: failed.length, refused: refused.length, servedBy }
}

/** Waits until `count` requests started after `since` were answered by `app`'s workers (not for a time: a slow machine serves fewer a second). */
function servedBy(load, app, { count = 20, since = -Infinity } = {}) {
  const pids = workerPidsOf(app)
  return load.completed(count, { since, where: (r) => pids.has(r.pid), what: `${count} requests answered by process ${app.pid}'s workers` })
}

describe('takeover: true, accept loop', () => {
  test('under load a second primary takes the socket over: nothing refused, nothing failed, every client keeps its slot', async () => {
    const options = { workers: 3, takeover: true }
    const old = await startApp({ options })
    const slotBefore = await slotTable(old.port)
    const load = startLoad(old.port, { clients: CLIENTS })
    await servedBy(load, old)
    const swapStarted = Date.now()
    const fresh = await takeOver(old, { options })
    const swapEnded = Date.now()
    await servedBy(load, fresh, { since: swapEnded })
    const results = await load.stop()
    const figures = checkLoad(results, slotBefore, [old, fresh])
    const duringSwap = results.filter((r) => r.started >= swapStarted && r.started <= swapEnded)
    expect(duringSwap.length).toBeGreaterThan(10)
    // After the swap, each client reaches its old slot, now in the new primary's workers.
    const freshWorkers = workerPidsOf(fresh)
    for (let i = 0; i < CLIENTS; i++) {
      const after = (await request(fresh.port, { localAddress: clientIp(i) })).json
      expect(after.slot).toBe(slotBefore.get(clientIp(i)))
      expect(freshWorkers.has(after.pid)).toBe(true)
    }
    const stats = await fresh.stats()
    expect(stats.dropped).toBe(0)
    console.log(
      `takeover under load: ${figures.requests} requests (${duringSwap.length} sent during the ${swapEnded - swapStarted} ms swap), ` +
        `${figures.failed} failed, ${figures.refused} refused; old primary served ${figures.servedBy[0]}, new ${figures.servedBy[1]}; ` +
        `${CLIENTS} client addresses, each on its slot before, during and after`,
    )
  })

  test('two takeovers in a row, under load: the second takes over from the first successor', async () => {
    const options = { workers: 2, takeover: true }
    const first = await startApp({ options })
    const slotBefore = await slotTable(first.port)
    const load = startLoad(first.port, { clients: CLIENTS })
    await servedBy(load, first)
    const second = await takeOver(first, { options })
    await servedBy(load, second, { since: Date.now() })
    const third = await takeOver(second, { options })
    await servedBy(load, third, { since: Date.now() })
    const results = await load.stop()
    const figures = checkLoad(results, slotBefore, [first, second, third])
    expect(third.find('warning')).toEqual([])
    console.log(`two takeovers under load: ${figures.requests} requests, ${figures.failed} failed, ${figures.refused} refused; served ${figures.servedBy.join(' / ')}`)
  })

  test('a takeover while the old primary is in the middle of a rolling reload: the reload stops, and the worker it was replacing finishes its request', async () => {
    const options = { workers: 3, takeover: true }
    const old = await startApp({ options })
    const slotBefore = await slotTable(old.port)
    const load = startLoad(old.port, { clients: CLIENTS })
    await servedBy(load, old)
    const firstWorkers = workerPidsOf(old)
    // A slow request holds slot 0's worker: the reload, which replaces slot 0
    // first, waits for it to finish before it goes on to slot 1.
    const slowClient = [...slotBefore].find(([, slot]) => slot === '0')[0]
    const slow = request(old.port, { localAddress: slowClient, path: '/slow?ms=4000' })
    await sleep(200)
    old.child.stdin.write('reload\n')
    await waitUntil(() => old.find('online').some((e) => !firstWorkers.has(e.pid)), { what: 'the reload to fork a replacement' })
    const fresh = await takeOver(old, { options })
    await servedBy(load, fresh, { since: Date.now() })
    const results = await load.stop()
    const figures = checkLoad(results, slotBefore, [old, fresh])
    // The reload did not finish: the takeover closed the old primary under it...
    const reloaded = old.find('reloaded')
    expect(reloaded).toHaveLength(1)
    expect(reloaded[0].error).toMatch(/started closing .* before every worker was replaced/)
    // ...and the old primary waited for the worker it was replacing.
    const answer = await slow
    expect(answer.status).toBe(200)
    expect(firstWorkers.has(answer.json.pid)).toBe(true)
    console.log(`takeover mid-reload: ${figures.requests} requests, ${figures.failed} failed, ${figures.refused} refused; the slow request of the worker being replaced answered`)
  })

  test('an old primary without takeover keeps its port: the new one gets EADDRINUSE as an error event and forks nothing', async () => {
    const old = await startApp({ options: { workers: 2 } })
    const fresh = await startApp({ port: old.port, options: { workers: 2, takeover: true } }, { waitForListening: false })
    const error = await fresh.waitFor('error')
    expect(error.code).toBe('EADDRINUSE')
    expect(error.message).toMatch(/no primary offered it for takeover/)
    expect(fresh.find('online')).toEqual([])
    expect(fresh.find('listening')).toEqual([])
    expect((await request(old.port)).status).toBe(200)
    expect(old.exited).toBeNull()
  })

  test('a takeover whose workers never get ready leaves the old primary serving, and the new one fails with ERR_STICKY_TAKEOVER_TIMEOUT', async () => {
    const old = await startApp({ options: { workers: 2, takeover: true } })
    const slotBefore = await slotTable(old.port)
    const load = startLoad(old.port, { clients: CLIENTS })
    // The new primary's workers crash at start (a bad release): they are never ready.
    const fresh = await startApp(
      { port: old.port, options: { workers: 2, takeover: true, startupWait: 1500, env: { STICKY_TEST_CRASH_WORKER: '1' } } },
      { waitForWorkers: false },
    )
    const error = await fresh.waitFor('error', (e) => e.code === 'ERR_STICKY_TAKEOVER_TIMEOUT', 10000)
    expect(error.message).toMatch(/0 of 2 workers were ready .* goes on serving/)
    const abandoned = await old.waitFor('warning', (w) => w.code === 'ERR_STICKY_TAKEOVER_ABANDONED')
    expect(abandoned.message).toMatch(new RegExp(`process ${fresh.pid} gave up taking over`))
    await servedBy(load, old, { since: Date.now() })
    // The failed primary took no connection from the shared queue: the old one served every request.
    const results = await load.stop()
    expect(failuresOf(results)).toEqual([])
    expect(results.filter((r) => !workerPidsOf(old).has(r.pid))).toEqual([])
    expect(results.filter((r) => r.slot !== slotBefore.get(r.localAddress))).toEqual([])
    expect(old.exited).toBeNull()
    // The offer stands: a good primary takes over afterwards.
    await takeOver(old, { options: { workers: 2, takeover: true } })
    console.log(`takeover that timed out: ${results.length} requests meanwhile, all answered by the old primary`)
  })
})

describe('takeover: true, kernel-steered (kernel: true)', () => {
  test('the whole SO_REUSEPORT group moves, socket by socket in slot order: nothing fails under load and every client keeps its slot', async () => {
    const options = { workers: 3, kernel: true, takeover: true }
    const old = await startApp({ options })
    expect((await old.stats()).kernel).toBe(true)
    const slotBefore = await slotTable(old.port)
    const load = startLoad(old.port, { clients: CLIENTS })
    await servedBy(load, old)
    const fresh = await takeOver(old, { options })
    await servedBy(load, fresh, { since: Date.now() })
    const results = await load.stop()
    const figures = checkLoad(results, slotBefore, [old, fresh])
    expect((await fresh.stats()).kernel).toBe(true)
    for (let i = 0; i < CLIENTS; i++) expect((await request(fresh.port, { localAddress: clientIp(i) })).json.slot).toBe(slotBefore.get(clientIp(i)))
    console.log(`kernel-mode takeover under load: ${figures.requests} requests, ${figures.failed} failed, ${figures.refused} refused; old served ${figures.servedBy[0]}, new ${figures.servedBy[1]}`)
  })

  test('a new primary that cannot use the group (kernel: false, or other workers) is refused with ERR_STICKY_TAKEOVER_MISMATCH; the old one goes on', async () => {
    const old = await startApp({ options: { workers: 2, kernel: true, takeover: true } })
    for (const options of [{ workers: 2, kernel: false, takeover: true }, { workers: 3, kernel: true, takeover: true }]) {
      const fresh = await startApp({ port: old.port, options }, { waitForListening: false })
      const error = await fresh.waitFor('error')
      expect(error.code).toBe('ERR_STICKY_TAKEOVER_MISMATCH')
      expect(error.message).toMatch(/start this primary with the same kernel, workers and seed options/)
      expect(fresh.find('online')).toEqual([])
      await fresh.stop()
    }
    expect((await request(old.port)).status).toBe(200)
    expect(old.exited).toBeNull()
  })
})

/** Runs as root? Switching users needs it; under CI=true its absence fails. */
function canSwitchUsers() {
  if (process.geteuid() === 0) return true
  const missing = 'not running as root: the takeover specs for a process of another user need to start one'
  if (process.env.CI === 'true') throw new Error(`${missing}; with CI=true they fail instead of skipping`)
  process.stderr.write(`${missing}: skipping them\n`)
  return false
}
const NOBODY = 65534
/** This runtime, as user nobody can run it (a temporary copy if need be, removed after the specs). */
let nobodysCopy
const nobodysRuntime = () => (nobodysCopy = nobodysCopy || runtimeForUser(NOBODY))
afterAll(() => nobodysCopy && nobodysCopy !== process.execPath && fs.rmSync(path.dirname(nobodysCopy), { recursive: true, force: true }))
/** This package, where nobody can read it (the checkout may be in a home directory closed to other users). */
let nobodysPackage
const nobodysPackageDir = () => (nobodysPackage = nobodysPackage || packageCopyFor(['app-plain.js']))
afterAll(() => nobodysPackage && fs.rmSync(nobodysPackage, { recursive: true, force: true }))

;(canSwitchUsers() ? describe : describe.skip)('takeover and a process of another user', () => {
  test('asking for the socket as another user gets nothing: the connection closes before any record, and the old primary warns', async () => {
    const old = await startApp({ options: { workers: 2, takeover: true } })
    const name = takeoverName('::', old.port)
    // What an attacker would run: it trusts the root-owned offer and asks for the socket.
    const attacker = `
      const { connectTakeover } = require(${JSON.stringify(path.join(nobodysPackageDir(), 'binding.js'))})
      const client = connectTakeover(${JSON.stringify(name)})
      const report = { uid: process.geteuid(), peerUid: client && client.peerUid }
      try {
        report.offer = client.receiveOffer(client.peerUid)
        report.sockets = client.takeSockets()
      } catch (error) {
        report.code = error.code
        report.message = error.message
      }
      console.log(JSON.stringify(report))`
    const run = spawnSync(nobodysRuntime(), ['-e', attacker], { uid: NOBODY, gid: NOBODY, cwd: nobodysPackageDir(), encoding: 'utf8', timeout: 20000 })
    expect(run.stderr).toBe('')
    const report = JSON.parse(run.stdout)
    expect(report).toEqual({ uid: NOBODY, peerUid: 0, code: 'ERR_STICKY_TAKEOVER_FAILED', message: 'the running primary closed the takeover connection' })
    const warning = await old.waitFor('warning', (w) => w.code === 'ERR_STICKY_TAKEOVER_REFUSED')
    expect(warning.message).toMatch(new RegExp(`process \\d+ of uid ${NOBODY}: only a process of this user \\(uid 0\\) may take over`))
    expect((await request(old.port)).status).toBe(200)
    expect(old.exited).toBeNull()
  })

  test("a new primary does not take sockets from another user's process squatting its name: it warns and binds as usual", async () => {
    const { TakeoverOffer, resolveOptions } = require('../binding.js')
    const port = await freePort()
    const decoy = net.createServer()
    await new Promise((resolve) => decoy.listen(0, '127.0.0.1', resolve))
    // Root squats the name a primary of user nobody on 127.0.0.1:port looks for, offering a decoy socket.
    const events = []
    const squatter = new TakeoverOffer(`sticky-session-rs/takeover/uid=${NOBODY}/[127.0.0.1]:${port}`, 'accept-loop', resolveOptions({ workers: 2, seed: '1' }, 2).config, [decoy._handle.fd], (event) => events.push(event))
    try {
      const dir = nobodysPackageDir()
      const app = await startApp(
        { port, options: { host: '127.0.0.1', workers: 2, takeover: true } },
        { uid: NOBODY, gid: NOBODY, runtime: nobodysRuntime(), script: path.join(dir, '__test__', 'fixtures', 'app-plain.js'), cwd: dir },
      )
      expect(app.port).toBe(port)
      const warning = app.find('warning', (w) => w.code === 'ERR_STICKY_TAKEOVER_FOREIGN')[0]
      expect(warning.message).toMatch(/held by process \d+ of uid 0, not by this user \(uid 65534\).*binding as usual/)
      const reply = (await request(port, { localAddress: clientIp(1) })).json
      expect(workerPidsOf(app).has(reply.pid)).toBe(true)
      // The squatter's own check refused the other user too.
      await waitUntil(() => events.some((e) => e.kind === 'refused' && e.uid === NOBODY), { what: 'the squatter to see the refused request' })
      await app.stop()
    } finally {
      squatter.close()
      decoy.close()
    }
  })
})

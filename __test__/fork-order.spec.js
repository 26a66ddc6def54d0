'use strict'
// The @socket.io/sticky shape in any order: workers forked before
// setupMaster (as its own test fixtures do), between setupMaster and
// listen, after listen (its README), or setupMaster given an httpServer that
// listens already; each time the user's own 'exit' handler respawns a
// killed worker. A worker finds its primary by the primary's pid
// (lib/rendezvous.js). A worker whose primary never calls setupMaster gets
// a clear error, and that primary stays controllable.

const path = require('path')
const { startApp, stopAll, ioClientsClosedAfterEach, once, emitWithAck, waitUntil, nativeTest } = require('./helpers')
const { nodeAndBun } = require('./runtime-specs')

const runtimes = nodeAndBun()

const APP = path.join(__dirname, 'fixtures', 'app-setup-master.js')
const ioClient = ioClientsClosedAfterEach()
afterAll(stopAll)

const liveSlots = async (app) => (await app.stats()).slots.filter((slot) => slot.state === 'live').length

/** Six socket.io sessions from one address: each stays on its worker, and they use both workers. */
async function sessionsStayOnTheirWorker(app) {
  const clients = Array.from({ length: 6 }, () => ioClient(app.port, '127.0.0.1'))
  await Promise.all(clients.map((socket) => once(socket, 'connect')))
  const owners = new Set()
  for (const socket of clients) {
    const first = await emitWithAck(socket, 'whoami')
    expect((await emitWithAck(socket, 'whoami')).pid).toBe(first.pid)
    expect(app.workerPids()).toContain(first.pid)
    owners.add(first.pid)
  }
  expect(owners.size).toBe(2)
}

describe.each(runtimes)('%s', (_, runtime) => {
  test.each([
    ['before setupMaster', 'before'],
    ['between setupMaster and listen', 'between'],
    ['after listen', 'after'],
    ['after listen, setupMaster given a listening httpServer', 'listening-first'],
  ])('workers forked %s serve sessions, and a worker the user respawns on exit takes its place', async (_, order) => {
    const app = await startApp({ workers: 2, order }, { script: APP, runtime })
    await waitUntil(async () => (await liveSlots(app)) === 2, { what: 'two live slots' })
    expect(app.find('error')).toEqual([])
    await sessionsStayOnTheirWorker(app)
    const [victim] = app.workerPids()
    process.kill(victim, 'SIGKILL')
    await app.waitFor('exit', (e) => e.pid === victim)
    await waitUntil(() => app.workerPids().length === 2, { what: 'the user to respawn a worker' })
    await waitUntil(async () => (await liveSlots(app)) === 2, { what: 'two live slots again' })
    await sessionsStayOnTheirWorker(app)
    await app.stop()
  })

  test('a worker whose primary never calls setupMaster gets a clear error, and the primary stays controllable', async () => {
    const app = await startApp({ workers: 1, noSetupMaster: true }, { script: APP, waitForWorkers: false, runtime })
    await waitUntil(() => /did not call setupMaster\(httpServer\) within 10000 ms/.test(app.stderr), { timeout: 20000, what: "the worker's error" })
    // Node prints the error's code with it (Bun prints the message only).
    if (runtime === process.execPath) expect(app.stderr).toMatch(/ERR_STICKY_NO_CHANNEL/)
    await app.waitFor('exit', (e) => e.code !== 0)
    const signalled = Date.now()
    process.kill(app.pid, 'SIGTERM')
    await waitUntil(() => app.exited, { timeout: 5000, what: 'the primary to end on SIGTERM' })
    expect(Date.now() - signalled).toBeLessThan(2000)
    await app.stop()
  })
})

// The native path's rendezvous socket (on the portable path a worker's channel is its cluster IPC channel).
nativeTest("a worker takes connections only from its own primary's socket: one held by another process is refused, an unbound name is waited for", () => {
  const { RendezvousSocket, connectChannel } = require('../lib/native')
  const { rendezvousName } = require('../lib/rendezvous')
  // This process squats the name of a primary that is not it.
  const name = rendezvousName(`squatted-${process.pid}`)
  const squatter = new RendezvousSocket(name)
  try {
    expect(() => connectChannel(name, process.pid + 1)).toThrow(
      expect.objectContaining({ code: 'ERR_STICKY_NO_CHANNEL', message: expect.stringContaining(`held by process ${process.pid} of uid ${process.geteuid()}, not by this worker's primary`) }),
    )
    // Held by the process named: connected (the primary then checks the worker in turn).
    const channel = connectChannel(name, process.pid)
    expect(channel.setupState()).toBe('waiting')
    channel.close()
  } finally {
    squatter.close()
  }
  expect(connectChannel(name, process.pid)).toBeNull()
})

'use strict'
// The drop-in under Deno (`deno run -A app.js`: node:cluster, Node-API addons):
// the three API shapes (sticky-session's README example, socketio-sticky-session's
// and @socket.io/sticky's), a socket.io app (fixtures/app.js) with real
// socket.io clients from many 127.0.0.x addresses — polling, upgrade, a
// worker's death, a rolling reload, HTTPS, Node's request timeouts, kernel
// steering — and the portable path, all run by the real Deno binary. CI
// installs @deno/linux-x64-glibc from the npm registry and names it in
// STICKY_DENO; elsewhere `deno` on PATH is used. The specs every runtime runs
// are runtime-specs.js's. What Deno does differently, and how lib/runtime.js
// deals with it: fixtures/deno-repros/.

const { request, waitUntil, clientIp } = require('./helpers')
const {
  denoRuntime, startOn, runsOn, cleanUp, stickySessionReadmeSpec, socketioStickySessionSpecs, leastConnectionSessions, startSetupMasterApp,
  socketIoApp, pollingAndUpgradeSpecs, killedWorkerSpec, httpsSpec, SLOWLORIS_TIMEOUTS, expectSlowloris408, reloadUnderLoad,
} = require('./runtime-specs')

const deno = denoRuntime()
const describeWith = deno ? describe : describe.skip

afterAll(cleanUp)

describeWith(deno ? deno.name : 'Deno', () => {
  describe('the three API shapes', () => {
    stickySessionReadmeSpec(deno)
    socketioStickySessionSpecs(deno, ['proxy'])

    test("@socket.io/sticky's shape (setupMaster / setupWorker, the user forks): sessions spread by least-connection and stay on their worker", async () => {
      const app = await startSetupMasterApp(deno)
      try {
        await leastConnectionSessions(deno, app)
      } finally {
        await app.stop()
      }
    })
  })

  // Kernel steering is not used under Deno (fixtures/deno-repros/kernel-listen-handle.js): 'ip' routing takes the native accept loop.
  describe.each([
    ['the defaults', {}],
    ['kernel: true', { kernel: true }],
  ])('a socket.io app, 3 workers, %s', (_, mode) => {
    const app = socketIoApp(deno, mode)

    test('the primary and every worker are Deno processes; IP routing runs in the native accept loop (kernel: true says why, once)', async () => {
      expect(app().workerPids()).toHaveLength(3)
      for (const pid of [app().pid, ...app().workerPids()]) expect(runsOn(deno, pid)).toBe(true)
      const stats = await app().stats()
      expect(stats.kernel).toBeUndefined()
      expect(stats.slots.map((slot) => slot.state)).toEqual(['live', 'live', 'live'])
      if (mode.kernel) {
        const warning = await app().waitFor('warning', (w) => w.code === 'ERR_STICKY_KERNEL_UNSUPPORTED')
        expect(warning.message).toMatch(/kernel steering is not used under Deno.*deno-repros\/kernel-listen-handle\.js/)
      }
      expect(app().find('warning')).toHaveLength(mode.kernel ? 1 : 0)
    })

    pollingAndUpgradeSpecs(app)
    killedWorkerSpec(deno, app)

    test('sticky.reload() under load replaces every worker with zero failed requests, and every client address keeps its slot', async () => {
      await reloadUnderLoad(deno, mode, 'api')
    })
  })

  httpsSpec(deno)

  test("Node's server timeouts hold in the workers: a slowloris gets its 408 after headersTimeout", async () => {
    const app = await startOn(deno, { options: { workers: 2, kernel: false }, ...SLOWLORIS_TIMEOUTS })
    try {
      await expectSlowloris408(app.port, clientIp(9))
    } finally {
      await app.stop()
    }
  })

  test('the portable path (STICKY_SESSION_PORTABLE=1) runs under Deno too: clients keep their worker through a worker\'s death', async () => {
    const app = await startOn(deno, { options: { workers: 2 } }, { env: { STICKY_SESSION_PORTABLE: '1' } })
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

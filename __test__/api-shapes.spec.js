'use strict'
// The socketio-sticky-session and @socket.io/sticky API shapes: their README
// examples, run with only the require swapped (and a free port for 3000).

const { spawn } = require('child_process')
const fs = require('fs')
const path = require('path')
const sticky = require('..')
const { request, ioClient, once, emitWithAck, waitUntil, nativeTest } = require('./helpers')
const { NODE, bunRuntime, runExample, cleanUp, withClients, socketioStickySessionSpecs, leastConnectionSessions, startSetupMasterApp } = require('./runtime-specs')

const bun = bunRuntime()
/** The README examples run under this Node and under Bun. */
const runtimes = [NODE, ...(bun ? [bun] : [])]

afterAll(cleanUp)

describe.each(runtimes)("socketio-sticky-session's README examples under $name", (runtime) => {
  socketioStickySessionSpecs(runtime)
})

describe('socketio-sticky-session shape', () => {
  test('sticky(num, factory) and sticky(options, server) shapes, and their errors', () => {
    // In this (primary) process the factory is not called and nothing listens until .listen().
    const factory = jest.fn()
    const facade = sticky(2, factory)
    expect(typeof facade.listen).toBe('function')
    expect(factory).not.toHaveBeenCalled()
    expect(() => sticky({ num: 0 }, factory)).toThrow(expect.objectContaining({ code: 'ERR_STICKY_INVALID_OPTION' }))
    expect(() => sticky({ proxy: true, header: 'bad header' }, factory)).toThrow(expect.objectContaining({ code: 'ERR_STICKY_INVALID_OPTION' }))
    expect(() => facade.listen(70000)).toThrow(expect.objectContaining({ code: 'ERR_STICKY_INVALID_PORT' }))
  })
})

describe('@socket.io/sticky shape', () => {
  test.each(runtimes)('README usage example runs under $name; socket.io clients from one address connect through sid routing', async (runtime) => {
    const { port } = await runExample(runtime, path.join(__dirname, 'fixtures', 'peers', 'socket.io-sticky.js'), /Worker \d+ started[\s\S]*Worker \d+ started/)
    await withClients(10, () => ioClient(port, '127.0.0.1'), async (clients) => expect(clients.every((socket) => socket.connected)).toBe(true))
  })

  describe('with user-forked workers', () => {
    let app
    beforeAll(async () => {
      app = await startSetupMasterApp(NODE)
    })

    test('new sessions spread by least-connection and stay on their worker, from one source address', async () => {
      await leastConnectionSessions(NODE, app)
    })

    test('a worker the user respawns after a crash takes a slot and serves new sessions', async () => {
      const [victim] = app.workerPids()
      process.kill(victim, 'SIGKILL')
      await app.waitFor('exit', (e) => e.pid === victim)
      await waitUntil(() => app.workerPids().length === 2, { what: 'the user to respawn a worker' })
      await waitUntil(async () => (await app.stats()).slots.filter((slot) => slot.state === 'live').length === 2, { what: 'two live slots again' })
      const socket = ioClient(app.port, '127.0.0.1')
      try {
        await once(socket, 'connect')
        expect(app.workerPids()).toContain((await emitWithAck(socket, 'whoami')).pid)
      } finally {
        socket.close()
      }
    })

    // The native path's abstract channel socket (the portable path's channel is cluster IPC, which only the cluster's workers have).
    nativeTest('no process outside the cluster can obtain a client connection through the channel socket', async () => {
      const unixTable = fs.readFileSync('/proc/net/unix', 'utf8')
      const name = unixTable.split('\n').map((line) => line.trim().split(/\s+/).pop()).find((entry) => entry && entry.startsWith(`@sticky-session-rs-${app.pid}-`))
      expect(name).toBeDefined()
      const before = (await app.stats()).rejectedChannels
      // A foreign process (not forked by the cluster) connects and waits for connections.
      const intruder = spawn(process.execPath, ['-e', `
        const { connectChannel } = require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'native'))})
        // It names the primary as its own, to look like one of its workers.
        const channel = connectChannel(${JSON.stringify(name.slice(1))}, ${app.pid})
        try {
          channel.start((connections) => {
            if (connections.length > 0) { console.log('GOT ' + connections.length); process.exit(3) }
          })
        } catch (error) {
          console.log('REFUSED ' + error.code)
        }
        setTimeout(() => process.exit(0), 3000)
      `], { stdio: ['ignore', 'pipe', 'pipe'] })
      const exited = once(intruder, 'exit', 10000)
      let intruderOutput = ''
      intruder.stdout.on('data', (chunk) => (intruderOutput += chunk))
      intruder.stderr.on('data', (chunk) => (intruderOutput += chunk))
      await waitUntil(async () => (await app.stats()).rejectedChannels === before + 1, { what: 'the foreign channel to be refused' })
      // Clients keep being served while it waits; it receives none of them.
      for (let i = 0; i < 20; i++) {
        const { status } = await request(app.port, { path: '/socket.io/?EIO=4&transport=polling' })
        expect(status).toBe(200)
      }
      const [code] = await exited
      expect(intruderOutput).not.toContain('GOT')
      expect(intruderOutput).toContain('REFUSED ERR_STICKY_NO_CHANNEL')
      expect(code).toBe(0)
      const warning = await app.waitFor('warning', (w) => w.code === 'ERR_STICKY_FOREIGN_CHANNEL')
      expect(warning.message).toMatch(/not a worker of this cluster/)
    })
  })
})

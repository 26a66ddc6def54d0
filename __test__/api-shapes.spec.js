'use strict'
// The socketio-sticky-session and @socket.io/sticky API shapes: their README
// examples, run with only the require swapped (and a free port for 3000).

const { spawn } = require('child_process')
const fs = require('fs')
const path = require('path')
const sticky = require('..')
const { startApp, stopAll, request, ioClient, once, emitWithAck, freePort, waitUntil, clientIp, requireProgram, nativeTest } = require('./helpers')

const bun = requireProgram('bun', 'npm install -g bun, or unpack the npm package @oven/bun-linux-x64 and set STICKY_BUN to its bin/bun', { envVariable: 'STICKY_BUN' })
/** The README examples run under this Node and under Bun. */
const runtimes = [[`Node ${process.version}`, process.execPath], ...(bun ? [['Bun', bun]] : [])]

afterAll(stopAll)

const running = []
afterAll(() => {
  for (const { child, file } of running) {
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {}
    fs.rmSync(file, { force: true })
  }
})

/** Runs a README example (inside the package, so `require('sticky-session-rs')` resolves to it) under `runtime`. */
async function runExample(name, waitFor, runtime = process.execPath) {
  const port = await freePort()
  const source = fs.readFileSync(path.join(__dirname, 'fixtures', 'peers', name), 'utf8')
  expect(source).toMatch(/require\(["']sticky-session-rs["']\)/)
  const file = path.join(__dirname, `.tmp-${process.pid}-${name}`)
  fs.writeFileSync(file, source.replace(/3000/g, String(port)))
  const child = spawn(runtime, [file], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  running.push({ child, file })
  const run = { port, output: '' }
  child.stdout.on('data', (chunk) => (run.output += chunk))
  child.stderr.on('data', (chunk) => (run.output += chunk))
  await waitUntil(() => waitFor.test(run.output), { what: `${name} to start (output: ${run.output})` })
  return run
}

describe.each(runtimes)("socketio-sticky-session's README examples under %s", (_, runtime) => {
  test('README "Without proxied connections": sticky(server).listen(port, cb) runs and serves', async () => {
    const { port, output } = await runExample('socketio-sticky-session-plain.js', /server started on \d+ port/, runtime)
    expect(output).toContain(`server started on ${port} port`)
    // Its handler prints process.env.NODE_WORKER_ID, which Node no longer sets,
    // so replies cannot tell workers apart; routing itself is covered elsewhere.
    for (let i = 0; i < 6; i++) {
      const reply = await waitUntil(async () => (await request(port, { path: '/', localAddress: clientIp(i) })).text)
      expect(reply).toMatch(/^worker: /)
    }
  })

  test('README "With proxied connections": socket.io clients behind one proxy address connect, routed by X-Forwarded-For', async () => {
    const { port } = await runExample('socketio-sticky-session-proxy.js', /server started on \d+ port/, runtime)
    const clients = Array.from({ length: 8 }, (_, i) => ioClient(port, '127.0.0.1', { extraHeaders: { 'x-forwarded-for': `198.51.100.${i + 1}` } }))
    try {
      await Promise.all(clients.map((socket) => once(socket, 'connect')))
      expect(clients.every((socket) => socket.connected)).toBe(true)
    } finally {
      clients.forEach((socket) => socket.close())
    }
  })

  test('README "Without proxied connections", socket.io: sticky(factory).listen(port, cb); clients from many addresses connect', async () => {
    const { port } = await runExample('socketio-sticky-session-factory.js', /server started on \d+ port/, runtime)
    const clients = Array.from({ length: 8 }, (_, i) => ioClient(port, clientIp(i)))
    try {
      await Promise.all(clients.map((socket) => once(socket, 'connect')))
      expect(clients.every((socket) => socket.connected)).toBe(true)
    } finally {
      clients.forEach((socket) => socket.close())
    }
  })

  test('README "With proxied connections", synchronized: its `sync` option and the sync event it emits on connection change nothing; clients connect', async () => {
    const { port, output } = await runExample('socketio-sticky-session-sync.js', /server started on \d+ port/, runtime)
    const clients = Array.from({ length: 8 }, (_, i) => ioClient(port, '127.0.0.1', { extraHeaders: { 'x-forwarded-for': `198.51.100.${i + 1}` } }))
    try {
      await Promise.all(clients.map((socket) => once(socket, 'connect')))
      expect(clients.every((socket) => socket.connected)).toBe(true)
    } finally {
      clients.forEach((socket) => socket.close())
    }
    expect(output).not.toMatch(/Error/)
  })
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
  test.each(runtimes)('README usage example runs under %s; socket.io clients from one address connect through sid routing', async (_, runtime) => {
    const { port } = await runExample('socket.io-sticky.js', /Worker \d+ started[\s\S]*Worker \d+ started/, runtime)
    const clients = Array.from({ length: 10 }, () => ioClient(port, '127.0.0.1'))
    try {
      await Promise.all(clients.map((socket) => once(socket, 'connect', 15000)))
      expect(clients.every((socket) => socket.connected)).toBe(true)
    } finally {
      clients.forEach((socket) => socket.close())
    }
  })

  describe('with user-forked workers', () => {
    let app
    beforeAll(async () => {
      app = await startApp({ workers: 2 }, { script: path.join(__dirname, 'fixtures', 'app-setup-master.js') })
      await waitUntil(async () => (await app.stats()).slots.filter((slot) => slot.state === 'live').length === 2, { what: 'two live slots' })
    })

    test('new sessions spread by least-connection and stay on their worker, from one source address', async () => {
      const clients = Array.from({ length: 8 }, () => ioClient(app.port, '127.0.0.1'))
      try {
        await Promise.all(clients.map((socket) => once(socket, 'connect')))
        const counts = new Map()
        for (const socket of clients) {
          const replies = [await emitWithAck(socket, 'whoami'), await emitWithAck(socket, 'whoami')]
          expect(replies[1].pid).toBe(replies[0].pid)
          counts.set(replies[0].pid, (counts.get(replies[0].pid) || 0) + 1)
        }
        expect([...counts.values()]).toEqual([4, 4])
      } finally {
        clients.forEach((socket) => socket.close())
      }
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

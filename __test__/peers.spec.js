'use strict'
// What the peers' own test suites check, as our specs (written for this
// package, not copied): @socket.io/sticky 1.0.4's connection fixture under
// each load-balancing method, websocket-only, polling-only, with CORS and a
// 1 MB binary payload, its 503 with no worker (polling and websocket, run in
// the test runner's own process, as its suite does), and what happens when a
// keep-alive connection is reused by a second session; sticky-session
// 1.1.2's 100 connections, `env` reaching the worker, and a worker's
// graceful close. Each fixture app runs with `require('sticky-session-rs')`
// and exits by itself, under this Node and under Bun.

const { spawn } = require('child_process')
const http = require('http')
const path = require('path')
const { io } = require('socket.io-client')
const sticky = require('..')
const { freePort, childrenKilledAfterAll, killProcessGroup } = require('./helpers')
const { nodeAndBun } = require('./runtime-specs')

const FIXTURES = path.join(__dirname, 'fixtures', 'peers')
const runtimes = nodeAndBun()

const running = childrenKilledAfterAll()

/** Runs a fixture (inside the package, so `require('sticky-session-rs')` is this one) until it exits by itself. */
function runFixture(runtime, file, env, timeout = 30000) {
  return new Promise((resolve) => {
    const child = spawn(runtime, [path.join(FIXTURES, file)], { env: { ...process.env, ...env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    running.add(child)
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    const timer = setTimeout(() => {
      killProcessGroup(child.pid)
    }, timeout)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      running.delete(child)
      resolve({ code, signal, output })
    })
  })
}

describe.each(runtimes)('%s', (_, runtime) => {
  describe("@socket.io/sticky 1.0.4's tested behaviours: workers forked before setupMaster, listen(callback), then killed and the server closed", () => {
    test.each([
      ['least-connection', { PEER_CHECK: 'connection', LB_METHOD: 'least-connection' }],
      ['round-robin', { PEER_CHECK: 'connection', LB_METHOD: 'round-robin' }],
      ['random', { PEER_CHECK: 'connection', LB_METHOD: 'random' }],
      ['websocket only', { PEER_CHECK: 'connection', TRANSPORT: 'websocket' }],
      ['polling only', { PEER_CHECK: 'connection', TRANSPORT: 'polling' }],
      ['CORS', { PEER_CHECK: 'cors' }],
      ['a keep-alive connection reused by a second session: its request reaches its own session (200, not 400)', { PEER_CHECK: 'keep-alive' }],
    ])('%s', async (_, env) => {
      const { code, signal, output } = await runFixture(runtime, 'socket.io-sticky-behaviours.js', env)
      expect({ code, signal, output }).toEqual({ code: 0, signal: null, output: expect.stringContaining(`ok ${env.PEER_CHECK}`) })
    })
  })

  describe("sticky-session 1.1.2's tested behaviours", () => {
    test.each([
      ['100 connections sent as listen() returns are all answered by workers', '100-connections'],
      ['options.env reaches the worker, heard through cluster.workers read right after listen()', 'env'],
      ["a worker's graceful close: the answer is finished, its close callback runs, the next request reaches its replacement", 'graceful-close'],
    ])('%s', async (_, check) => {
      const { code, signal, output } = await runFixture(runtime, 'sticky-session-behaviours.js', { PEER_CHECK: check, PORT: String(await freePort()) })
      expect({ code, signal, output }).toEqual({ code: 0, signal: null, output: expect.stringContaining(`ok ${check}`) })
    })
  })
})

describe("@socket.io/sticky's 503 with no worker, in the test runner's own process (as its mocha suite runs it)", () => {
  test.each(['polling', 'websocket'])('%s', async (transport) => {
    const httpServer = http.createServer()
    sticky.setupMaster(httpServer, { loadBalancingMethod: 'least-connection' })
    await new Promise((resolve) => httpServer.listen(resolve))
    const socket = io(`http://localhost:${httpServer.address().port}`, { transports: [transport], reconnection: false })
    try {
      const error = await new Promise((resolve) => socket.once('connect_error', resolve))
      const description = error.description
      expect(String(description && description.message ? description.message : description)).toMatch(/503/)
    } finally {
      socket.disconnect()
      await new Promise((resolve) => httpServer.close(resolve))
    }
    expect(httpServer.listening).toBe(false)
    expect(sticky.stats()).toBeNull()
  })
})

'use strict'
// Shutdown as Node users expect it. SIGTERM and SIGINT end the primary,
// with code 0, within shutdownTimeout + 1 s whatever state it is in: workers
// crashing as they start, workers that never take their channel (clients
// waiting for them), no worker forked at all (setupMaster), a reload under
// way. And a primary run inside a test runner's own process, closed with
// server.close(callback), leaves nothing that keeps the runner alive: a
// nested Jest finishes by itself, without --forceExit. (Every listen form
// closed one after another in one process that then exits by itself:
// listen-forms.spec.js.)

const { spawn } = require('child_process')
const path = require('path')
const { startApp, stopAll, rawConnection, waitUntil } = require('./helpers')
const { nodeAndBun } = require('./runtime-specs')

const runtimes = nodeAndBun()

afterAll(stopAll)

const SHUTDOWN_TIMEOUT = 2000
const BOUND = SHUTDOWN_TIMEOUT + 1000

/** Sends `signal` to the primary; resolves with how long it took to exit, and how. */
async function signalAndTime(app, signal = 'SIGTERM') {
  const sent = Date.now()
  process.kill(app.pid, signal)
  await waitUntil(() => app.exited, { timeout: BOUND + 5000, interval: 5, what: `the primary to exit after ${signal}` })
  return { took: Date.now() - sent, exited: app.exited }
}

describe.each(runtimes)(`%s: SIGTERM and SIGINT end the primary within shutdownTimeout + 1 s (${SHUTDOWN_TIMEOUT} + 1000 ms)`, (_, runtime) => {
  test.each([
    ['kernel steering', {}],
    ['the accept loop', { kernel: false }],
  ])('workers that crash as they start (%s)', async (__, mode) => {
    const app = await startApp({ options: { workers: 2, shutdownTimeout: SHUTDOWN_TIMEOUT, ...mode } }, { waitForWorkers: false, runtime, env: { STICKY_TEST_CRASH_WORKER: '1' } })
    await waitUntil(() => app.find('exit').length >= 4, { what: 'workers crashing and being respawned' })
    const { took, exited } = await signalAndTime(app)
    expect(exited).toEqual({ code: 0, signal: null })
    expect(took).toBeLessThan(BOUND)
  })

  test('workers that never take their channel, with clients waiting for them (SIGINT)', async () => {
    const app = await startApp({ options: { workers: 2, kernel: false, shutdownTimeout: SHUTDOWN_TIMEOUT } }, { runtime, env: { STICKY_TEST_HANG_WORKER: '1' } })
    const waiting = await Promise.all([2, 3, 4].map((n) => rawConnection(app.port, `127.0.0.${n}`)))
    const ended = waiting.map((socket) => new Promise((resolve) => socket.on('close', resolve).on('error', () => {})))
    // Each is connected (in the kernel's queue until a worker is ready, or held by the portable primary).
    const { took, exited } = await signalAndTime(app, 'SIGINT')
    expect(exited).toEqual({ code: 0, signal: null })
    expect(took).toBeLessThan(BOUND)
    // Never left open: closed when the primary gave up on them.
    await Promise.all(ended)
  })

  test('setupMaster, and no worker forked: clients are answered 503 meanwhile', async () => {
    const app = await startApp({ workers: 0 }, { script: path.join(__dirname, 'fixtures', 'app-setup-master.js'), waitForWorkers: false, runtime })
    const socket = await rawConnection(app.port)
    const answer = await new Promise((resolve) => {
      let text = ''
      socket.on('data', (chunk) => (text += chunk))
      socket.on('end', () => resolve(text))
      socket.write('GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n')
    })
    expect(answer).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/)
    expect((await app.stats()).droppedNoWorker).toBe(1)
    const { took, exited } = await signalAndTime(app)
    expect(exited).toEqual({ code: 0, signal: null })
    expect(took).toBeLessThan(1000)
  })

  test('a rolling reload under way', async () => {
    const app = await startApp({ options: { workers: 2, kernel: false, shutdownTimeout: SHUTDOWN_TIMEOUT } }, { runtime })
    const firstWorkers = new Set(app.workerPids())
    app.child.stdin.write('reload\n')
    await waitUntil(() => app.find('online').some((e) => !firstWorkers.has(e.pid)), { what: 'the reload to fork a replacement' })
    const { took, exited } = await signalAndTime(app)
    expect(exited).toEqual({ code: 0, signal: null })
    expect(took).toBeLessThan(BOUND)
  })
})

test('a test runner (Jest, without --forceExit) that runs primaries in its own process and closes them finishes by itself', async () => {
  const root = path.join(__dirname, 'fixtures', 'in-process')
  const config = JSON.stringify({ rootDir: root, testMatch: ['**/*.test.js'], testEnvironment: 'node' })
  const jest = spawn(process.execPath, [require.resolve('jest/bin/jest'), '--config', config, '--runInBand', '--ci'], {
    cwd: path.join(__dirname, '..'),
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  jest.stdout.on('data', (chunk) => (output += chunk))
  jest.stderr.on('data', (chunk) => (output += chunk))
  const exited = await new Promise((resolve) => {
    const timer = setTimeout(() => {
      try {
        process.kill(-jest.pid, 'SIGKILL')
      } catch {}
      resolve({ code: 'still running after 60 s' })
    }, 60000)
    jest.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code })
    })
  })
  expect({ ...exited, output }).toEqual({ code: 0, output: expect.stringMatching(/Tests:\s+3 passed, 3 total/) })
  expect(output).not.toMatch(/did not exit one second after/)
})

'use strict'
// Every form of listen() Node's net.Server takes, in each API shape
// (sticky.listen, sticky(...).listen, setupMaster + httpServer.listen), run
// one after another in one process the way a test runner runs them: each
// balances and answers a request, `close(callback)` (or an AbortSignal)
// ends it, and after the last one the process exits by itself.

const { spawn } = require('child_process')
const path = require('path')
const { childrenKilledAfterAll } = require('./helpers')
const { nodeAndBun } = require('./runtime-specs')

const runtimes = nodeAndBun()

const FIXTURE = path.join(__dirname, 'fixtures', 'listen-forms.js')
const running = childrenKilledAfterAll()

/** Runs the fixture for `shape` under `runtime`; resolves with its lines and how it exited. */
function runShape(runtime, shape, { timeout = 90000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(runtime, [FIXTURE], { env: { ...process.env, LISTEN_FORMS_SHAPE: shape }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    running.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    const timer = setTimeout(() => reject(new Error(`${shape}: did not exit by itself within ${timeout} ms (stdout: ${stdout}; stderr: ${stderr.slice(-2000)})`)), timeout)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      running.delete(child)
      resolve({ code, signal, stderr, lines: stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line)) })
    })
  })
}

function checkForm(result, shape) {
  const aborted = result.form.endsWith('aborted already')
  // The workers are there when listen() returns (the user forks them in setupMaster's shape).
  if (shape !== 'setupMaster') expect(result.workersAtReturn).toBe(aborted ? 0 : 2)
  if (aborted) {
    // As Node: the server closes, 'listening' never comes.
    expect(result).toMatchObject({ outcome: 'close', callbackCalls: 0, listeningAfterClose: false, addressAfterClose: null })
    return
  }
  expect(result).toMatchObject({ outcome: 'listening', answeredByAWorker: true, listeningAfterClose: false, addressAfterClose: null })
  expect(result.callbackCalls).toBe(/callback/.test(result.form) ? 1 : 0)
  if (result.closedBy === 'close') expect(result.closeError).toBeNull()
  if (/ipv6Only/.test(result.form)) {
    expect(result.address).toBe('::')
    expect(result.ipv4Client).toBe('ECONNREFUSED')
  } else if (/host|localhost/.test(result.form)) {
    expect(['127.0.0.1', '::1']).toContain(result.address)
  } else {
    // The default host, as Node's: dual-stack `::`, IPv4 clients welcome.
    expect(result.address).toBe('::')
    expect(typeof result.ipv4Client).toBe('number')
  }
}

describe.each(runtimes)('%s', (_, runtime) => {
  test.each(['listen', 'sticky', 'setupMaster'])('%s shape: every listen form balances and closes, one after another in one process, which then exits by itself', async (shape) => {
    const { code, signal, lines, stderr } = await runShape(runtime, shape)
    expect({ code, signal, stderr: stderr.replace(/\(node:\d+\) .*\n(.*--trace.*\n)?/g, '') }).toEqual({ code: 0, signal: null, stderr: '' })
    expect(lines[lines.length - 1]).toEqual({ done: true })
    const results = lines.slice(0, -1)
    expect(results.length).toBeGreaterThanOrEqual(8)
    for (const result of results) checkForm(result, shape)
  })
})

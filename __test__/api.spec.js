'use strict'
// The drop-in API: argument errors, listen errors, and sticky-session's own
// README example running with only the require changed.

const { execFileSync, spawn } = require('child_process')
const fs = require('fs')
const http = require('http')
const net = require('net')
const os = require('os')
const path = require('path')
const sticky = require('..')
const { startApp, stopAll, request, freePort, waitUntil, clientIp, nativeTest, killProcessGroup } = require('./helpers')

afterAll(stopAll)

describe('argument errors throw with a code and say what to pass', () => {
  const server = http.createServer()
  test.each([
    ['a server that is not a net.Server', () => sticky.listen({}, 3000), 'ERR_STICKY_INVALID_SERVER', /net\.Server/],
    ['a missing server', () => sticky.listen(undefined, 3000), 'ERR_STICKY_INVALID_SERVER', /http\.createServer/],
    ['a port above 65535', () => sticky.listen(server, 70000), 'ERR_STICKY_INVALID_PORT', /0 to 65535/],
    ['a negative port', () => sticky.listen(server, -1), 'ERR_STICKY_INVALID_PORT', /integer/],
    ['a port that is not a number (Node takes it for a pipe path)', () => sticky.listen(server, 'http'), 'ERR_STICKY_UNSUPPORTED_LISTEN', /"http"/],
    ['zero workers', () => sticky.listen(server, 0, { workers: 0 }), 'ERR_STICKY_INVALID_OPTION', /workers must be an integer from 1/],
    ['fractional workers', () => sticky.listen(server, 0, { workers: 1.5 }), 'ERR_STICKY_INVALID_OPTION', /workers/],
    ['an env that is not an object', () => sticky.listen(server, 0, { env: 'x' }), 'ERR_STICKY_INVALID_OPTION', /env/],
    ['a negative seed', () => sticky.listen(server, 0, { seed: -1 }), 'ERR_STICKY_INVALID_OPTION', /seed/],
    ['an empty host', () => sticky.listen(server, 0, { host: '' }), 'ERR_STICKY_INVALID_OPTION', /host/],
    ['a takeover that is not a boolean', () => sticky.listen(server, 0, { takeover: 'yes' }), 'ERR_STICKY_INVALID_OPTION', /options.takeover must be true or false/],
    ['takeover with setupMaster, whose workers the user forks', () => sticky.setupMaster(server, { takeover: true }), 'ERR_STICKY_INVALID_OPTION', /with setupMaster you fork them yourself/],
    ['a trusted proxy that is no address or network', () => sticky.listen(server, 0, { trustedProxies: ['10.0.0.0/33'] }), 'ERR_STICKY_INVALID_OPTION', /trustedProxies: trusted proxy entry 0 \("10\.0\.0\.0\/33"\) is not recognised; expected an IP address/],
    ['kernel steering with another routing', () => sticky.listen(server, 0, { kernel: true, routing: 'sid' }), 'ERR_STICKY_INVALID_OPTION', /routing 'ip' only, not 'sid'/],
  ])('%s', (_, call, code, message) => {
    expect(call).toThrow(expect.objectContaining({ code, message: expect.stringMatching(message) }))
  })

  test('stats() is null before listen and in processes that do not balance', () => {
    expect(sticky.stats()).toBeNull()
  })
})

describe('listen failures reach the user as an error event on the server, as with net', () => {
  test('EADDRINUSE: error event with code, syscall and port; no worker is forked; the primary does not abort', async () => {
    const blocker = net.createServer()
    await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const { port } = blocker.address()
    try {
      const app = await startApp({ port, options: { workers: 2, host: '127.0.0.1' } }, { waitForListening: false })
      const error = await app.waitFor('error')
      expect(error).toEqual(expect.objectContaining({ code: 'EADDRINUSE', message: expect.stringContaining(String(port)) }))
      expect(app.find('listening')).toHaveLength(0)
      expect(app.find('online')).toHaveLength(0)
      expect(app.exited).toBeNull()
      await app.stop()
    } finally {
      blocker.close()
    }
  })

  test('an unresolvable host name is an error event too', async () => {
    const app = await startApp({ options: { workers: 1, host: 'no-such-host.invalid' } }, { waitForListening: false })
    const error = await app.waitFor('error')
    expect(error.code).toMatch(/^(ENOTFOUND|EAI_AGAIN)$/)
    await app.stop()
  })
})

describe('options', () => {
  test('workers defaults to the CPU count, and env reaches every worker', async () => {
    const app = await startApp({ options: { env: { STICKY_TEST_MARK: 'from-env' } } }, { waitForWorkers: false })
    await waitUntil(() => app.workerPids().length === os.cpus().length, { what: 'one worker per CPU' })
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(app.workerPids()).toHaveLength(os.cpus().length)
    const seen = new Map()
    for (let i = 0; i < 40 && seen.size < os.cpus().length; i++) {
      const { json } = await request(app.port, { localAddress: clientIp(i) })
      seen.set(json.pid, json.mark)
    }
    expect(seen.size).toBe(os.cpus().length)
    expect([...seen.values()].every((mark) => mark === 'from-env')).toBe(true)
    await app.stop()
  })

  test('host and backlog are honoured: a server on 127.0.0.1 only is not reachable on ::1', async () => {
    const app = await startApp({ options: { workers: 1, host: '127.0.0.1', backlog: 16 } })
    expect(app.find('listening')[0].address).toBe('127.0.0.1')
    expect((await request(app.port)).status).toBe(200)
    await expect(request(app.port, { host: '::1', localAddress: '::1' })).rejects.toThrow(/ECONNREFUSED/)
    await app.stop()
  })
})

test('DEBUG=sticky-session-rs logs forks, ready slots and accepts through the debug convention', async () => {
  const app = await startApp({ options: { workers: 2 } }, { env: { DEBUG: 'sticky-session-rs' } })
  await request(app.port)
  await waitUntil(() => /sticky-session-rs forked worker \d+ \(pid \d+\) into slot 1/.test(app.stderr) && /slot \d ready/.test(app.stderr), {
    what: 'debug lines on stderr',
  })
  expect(app.stderr).toMatch(/listening on .* with 2 workers/)
  await app.stop()
})

describe("sticky-session's README example", () => {
  test('runs unchanged with only the require swapped (port substituted by a free one)', async () => {
    // Install the package into a fresh app directory the way npm would link it.
    const appDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-readme-'))
    fs.mkdirSync(path.join(appDir, 'node_modules'))
    fs.symlinkSync(path.resolve(__dirname, '..'), path.join(appDir, 'node_modules', 'sticky-session-rs'))
    const port = await freePort()
    const source = fs.readFileSync(path.join(__dirname, '..', 'examples', 'sticky-session-readme.js'), 'utf8')
    expect(source).toContain("require('sticky-session-rs')")
    fs.writeFileSync(path.join(appDir, 'server.js'), source.replace(/3000/g, String(port)))
    const child = spawn(process.execPath, ['server.js'], { cwd: appDir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (chunk) => (out += chunk))
    child.stderr.on('data', (chunk) => (out += chunk))
    try {
      await waitUntil(() => out.includes(`server started on ${port} port`), { what: 'the example to start' })
      const reply = await waitUntil(async () => {
        const { text } = await request(port, { path: '/' })
        return /^worker: \d+$/.test(text) ? text : null
      }, { what: 'a worker reply' })
      expect(reply).toMatch(/^worker: [12]$/)
    } finally {
      killProcessGroup(child.pid)
      fs.rmSync(appDir, { recursive: true, force: true })
    }
  })
})

test('a process that was not forked by sticky.listen gets ERR_STICKY_NO_CHANNEL in a worker', () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-nochannel-')), 'app.js')
  fs.writeFileSync(file, `
    const cluster = require('cluster')
    if (cluster.isPrimary) { cluster.fork().on('exit', (code) => process.exit(code)) }
    else {
      try { require(${JSON.stringify(path.resolve(__dirname, '..'))}).listen(require('http').createServer(), 0); process.exit(1) }
      catch (e) { console.log(e.code); process.exit(e.code === 'ERR_STICKY_NO_CHANNEL' ? 0 : 1) }
    }`)
  try {
    expect(execFileSync(process.execPath, [file]).toString().trim()).toBe('ERR_STICKY_NO_CHANNEL')
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true })
  }
})

// The native path's channel and kernel-mode descriptors (the portable path has neither).
describe('a worker checks the descriptor it is told about before it takes it', () => {
  const { claimChannel, claimListeningFd } = require('../lib/native')

  nativeTest('a descriptor that is not a channel is refused with ERR_STICKY_NO_CHANNEL, and left open', () => {
    const fd = fs.openSync('/dev/null', 'r')
    try {
      expect(() => claimChannel(fd)).toThrow(expect.objectContaining({ code: 'ERR_STICKY_NO_CHANNEL', message: expect.stringMatching(/start workers through sticky\.listen\(\)/) }))
      expect(fs.fstatSync(fd).isCharacterDevice()).toBe(true)
    } finally {
      fs.closeSync(fd)
    }
  })

  nativeTest('a kernel-mode worker\'s descriptor that is not a listening TCP socket is refused with ERR_STICKY_NO_LISTENING_SOCKET', async () => {
    const fd = fs.openSync('/dev/null', 'r')
    try {
      expect(() => claimListeningFd(fd)).toThrow(expect.objectContaining({ code: 'ERR_STICKY_NO_LISTENING_SOCKET', message: expect.stringMatching(/kernel: true/) }))
    } finally {
      fs.closeSync(fd)
    }
    const listening = net.createServer()
    await new Promise((resolve) => listening.listen(0, '127.0.0.1', resolve))
    try {
      // The worker's own reference to the socket: a duplicate, so letting go
      // of it leaves the listener (the runtime's) listening.
      const held = claimListeningFd(listening._handle.fd)
      expect(held.drain()).toEqual([])
      expect(held.drainAndClose()).toEqual([])
      expect(held.drain()).toEqual([])
      const connected = await new Promise((resolve, reject) => {
        const socket = net.connect(listening.address().port, '127.0.0.1', () => resolve(socket))
        socket.on('error', reject)
      })
      connected.destroy()
    } finally {
      listening.close()
    }
  })
})

test('without a native binary and with the portable path refused (STICKY_SESSION_PORTABLE=0) the error names what was tried and how to build from source', () => {
  const script = `try { require(${JSON.stringify(path.resolve(__dirname, '..'))}) } catch (error) { console.log(JSON.stringify({ code: error.code, message: error.message })) }`
  const output = execFileSync(process.execPath, ['-e', script], { env: { ...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: '/nonexistent/sticky.node', STICKY_SESSION_PORTABLE: '0' } })
  const { code, message } = JSON.parse(output.toString())
  expect(code).toBe('ERR_STICKY_NO_BINDING')
  expect(message).toMatch(new RegExp(`sticky-session-rs-${process.platform}-${process.arch}`))
  expect(message).toMatch(/npm run build/)
  expect(message).toMatch(/Rust toolchain/)
})

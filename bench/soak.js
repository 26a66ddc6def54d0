#!/usr/bin/env node
'use strict'
// Soak: many connections mixing good requests, garbage, resets and silent
// clients against the test fixture app (__test__/fixtures/app.js), measuring
// every process's fd count, RSS and retained memory (RSS less V8's free heap
// pages, after a full GC) at intervals, before and after. `--target plain`
// runs the same fixture as one plain Node http server with no balancer: the
// baseline. See bench/SOAK.md.
//
//   node bench/soak.js [--connections 100000] [--concurrency 64] [--target sticky|plain]
//                      [--routing ip|header|proxy-protocol|sid] [--workers 2] [--seconds 600]
//
// Exit status: 0 every check passed; 1 a check failed (printed, and in the
// JSON under `failures`); 2 bad arguments; 3 the harness itself broke (the app
// did not start, the watchdog fired, a signal).

const { spawn } = require('child_process')
const fs = require('fs')
const net = require('net')
const os = require('os')
const path = require('path')
const readline = require('readline')
const { statsFields } = require('../lib/native')

const ROOT = path.resolve(__dirname, '..')
const APP = path.join(ROOT, '__test__', 'fixtures', 'app.js')
const DEFAULT_OUT = path.join(__dirname, 'results', 'soak-latest.json')
const ROUTINGS = ['ip', 'header', 'proxy-protocol', 'sid']
const TARGETS = ['sticky', 'plain']
const PEEKING = new Set(['header', 'proxy-protocol', 'sid'])

// ---------------------------------------------------------------- options

const USAGE = `usage: node bench/soak.js [--connections N] [--concurrency N] [--target sticky|plain]
       [--routing ip|header|proxy-protocol|sid] [--workers N] [--seconds S] [--warmup N]
       [--max-silent N] [--silent-max-ms MS] [--header-timeout MS] [--settle S] [--fd-slack N]
       [--rss-slack-mb MB] [--retained-slack-mb MB] [--report-every S] [--seed N] [--out FILE] [--quiet]`

function parseArgs(argv) {
  const o = {
    connections: 100000, concurrency: 64, target: 'sticky', routing: 'ip', workers: 2, seconds: 600, warmup: 2000,
    maxSilent: 200, silentMaxMs: 2000, headerTimeout: 1000, settle: 30, fdSlack: 2, rssSlackMb: 20,
    retainedSlackMb: 10, reportEvery: 30, seed: 1, out: DEFAULT_OUT, quiet: false,
  }
  const bad = (msg) => {
    console.error(`soak.js: ${msg}\n${USAGE}`)
    process.exit(2)
  }
  const numeric = { '--connections': 'connections', '--concurrency': 'concurrency', '--workers': 'workers', '--seconds': 'seconds',
    '--warmup': 'warmup', '--max-silent': 'maxSilent', '--silent-max-ms': 'silentMaxMs', '--header-timeout': 'headerTimeout',
    '--settle': 'settle', '--fd-slack': 'fdSlack', '--rss-slack-mb': 'rssSlackMb', '--retained-slack-mb': 'retainedSlackMb',
    '--report-every': 'reportEvery', '--seed': 'seed' }
  for (let i = 0; i < argv.length; i++) {
    let [arg, inline] = argv[i].split(/=(.*)/s)
    const value = () => (inline !== undefined ? inline : i + 1 < argv.length ? argv[++i] : bad(`${arg} needs a value`))
    if (numeric[arg]) {
      const v = Number(value())
      if (!Number.isFinite(v) || v < 0) bad(`bad value for ${arg}`)
      o[numeric[arg]] = v
    } else if (arg === '--routing') o.routing = value()
    else if (arg === '--target') o.target = value()
    else if (arg === '--out') o.out = path.resolve(value())
    else if (arg === '-q' || arg === '--quiet') o.quiet = true
    else if (arg === '-h' || arg === '--help') {
      console.log(USAGE)
      process.exit(0)
    } else bad(`unknown argument ${arg}`)
  }
  if (!ROUTINGS.includes(o.routing)) bad(`--routing must be one of ${ROUTINGS.join(', ')}`)
  if (!TARGETS.includes(o.target)) bad(`--target must be one of ${TARGETS.join(', ')}`)
  if (o.target === 'plain' && o.routing !== 'ip') bad('--target plain serves clients directly: only --routing ip applies')
  if (o.reportEvery < 1) bad('--report-every must be >= 1')
  if (o.connections < 1 || o.connections > 1e7) bad('--connections must be in [1, 1e7]')
  if (o.concurrency < 1 || o.concurrency > 4096) bad('--concurrency must be in [1, 4096]')
  if (o.workers < 1 || o.workers > 64) bad('--workers must be in [1, 64]')
  if (o.seconds <= 0) bad('--seconds must be > 0')
  for (const k of ['connections', 'concurrency', 'workers', 'warmup', 'maxSilent']) o[k] = Math.floor(o[k])
  o.maxSilent = Math.max(1, o.maxSilent)
  return o
}

const opts = parseArgs(process.argv.slice(2))
const log = (...args) => {
  if (!opts.quiet) console.error('[soak]', ...args)
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------- process group of the app

let app = null
let cleanedUp = false

function killGroupSync(signal = 'SIGKILL') {
  if (!app || app.exited) return
  try {
    process.kill(-app.pid, signal)
  } catch {}
}

async function stopApp() {
  if (!app || cleanedUp) return
  cleanedUp = true
  killGroupSync('SIGTERM')
  const deadline = Date.now() + 3000
  while (!app.exited && Date.now() < deadline) await sleep(50)
  killGroupSync('SIGKILL') // the workers too, whatever the primary did
  try {
    process.kill(-app.pid, 'SIGKILL')
  } catch {}
}

process.on('exit', () => {
  if (app) {
    try {
      process.kill(-app.pid, 'SIGKILL')
    } catch {}
  }
})
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    console.error(`[soak] got ${signal}: killing the app's process group`)
    if (app) {
      try {
        process.kill(-app.pid, 'SIGKILL')
      } catch {}
    }
    process.exit(3)
  })
}

function startApp(config) {
  return new Promise((resolve, reject) => {
    // --expose-gc (the workers inherit it): memory is measured after a full GC.
    const child = spawn(process.execPath, ['--expose-gc', APP], {
      cwd: ROOT,
      env: { ...process.env, STICKY_TEST_CONFIG: JSON.stringify(config) },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    })
    app = { child, pid: child.pid, events: [], stderr: '', exited: null, waiters: [], port: null, replies: { stats: [], memory: [] } }
    child.stderr.on('data', (chunk) => {
      app.stderr = (app.stderr + chunk).slice(-20000)
    })
    child.stdin.on('error', () => {})
    child.on('exit', (code, signal) => {
      app.exited = { code, signal }
      for (const queue of Object.values(app.replies)) for (const w of queue.splice(0)) w.reject(new Error(`the app exited (${code ?? signal})`))
      if (!app.port) reject(new Error(`the app exited before listening (${code ?? signal}): ${app.stderr.slice(-1000)}`))
    })
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      let event
      try {
        event = JSON.parse(line)
      } catch {
        event = { event: 'text', line }
      }
      if (event.event === 'stats' || event.event === 'memory') {
        const w = app.replies[event.event].shift()
        if (w) w.resolve(event.event === 'stats' ? event.stats : event.processes)
        return
      }
      event.at = Date.now()
      app.events.push(event)
      if (event.event === 'listening') {
        app.port = event.port
        app.primaryPid = event.pid
        resolve(app)
      } else if (event.event === 'error' && !app.port) {
        reject(new Error(`the app failed to listen: ${event.code} ${event.message}`))
      }
    })
    setTimeout(() => reject(new Error(`the app did not print listening within 20 s: ${app.stderr.slice(-1000)}`)), 20000).unref()
  })
}

/** Asks the app for `what` ('stats' or 'memory') on its stdin; resolves with its reply. */
function askApp(what, timeout = 15000) {
  return new Promise((resolve, reject) => {
    if (app.exited) return reject(new Error('the app has exited'))
    const waiter = { resolve, reject }
    const queue = app.replies[what]
    queue.push(waiter)
    const timer = setTimeout(() => {
      const i = queue.indexOf(waiter)
      if (i >= 0) queue.splice(i, 1)
      reject(new Error(`no ${what} reply within ${timeout / 1000} s`))
    }, timeout)
    timer.unref()
    const settle = (fn) => (value) => {
      clearTimeout(timer)
      fn(value)
    }
    waiter.resolve = settle(resolve)
    waiter.reject = settle(reject)
    app.child.stdin.write(`${what}\n`)
  })
}

/** `sticky.stats()` of the primary (null for the plain server). */
const appStats = () => askApp('stats')

/** Every process's memory after a full GC (see __test__/fixtures/memory.js). */
const appMemory = () => askApp('memory')

function liveWorkers() {
  const exited = new Set(app.events.filter((e) => e.event === 'exit').map((e) => e.pid))
  return app.events.filter((e) => e.event === 'online' && !exited.has(e.pid)).map((e) => e.pid)
}

// ---------------------------------------------------------------- /proc

function fdCount(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return null
  }
}

function rssKb(pid) {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : null
  } catch {
    return null
  }
}

function threadCount(pid) {
  try {
    const m = /^Threads:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : null
  } catch {
    return null
  }
}

const KB = 1024

/**
 * Each process's fds and RSS (from /proc) and its memory after a full GC (it
 * reports that itself): `retainedKb` is RSS less V8's resident heap pages
 * that hold no live object.
 */
async function measureProcesses() {
  // Raw RSS first: measuring the rest starts with a memory-reducing GC.
  const pids = [app.primaryPid, ...liveWorkers()]
  const raw = new Map(pids.map((pid) => [pid, { fds: fdCount(pid), rssKb: rssKb(pid) }]))
  const measured = new Map((await appMemory()).map((m) => [m.pid, m]))
  const one = (pid) => {
    const m = measured.get(pid)
    return {
      pid,
      ...raw.get(pid),
      retainedKb: m ? Math.round(m.retained / KB) : null,
      rssAfterGcKb: m ? Math.round(m.rssAfterGc / KB) : null,
      heapUsedKb: m ? Math.round(m.heapUsed / KB) : null,
      heapUnusedKb: m ? Math.round(m.heapUnused / KB) : null,
      externalKb: m ? Math.round(m.external / KB) : null,
      mallocedKb: m ? Math.round(m.malloced / KB) : null,
      rssAnonKb: m && m.rssAnon !== null ? Math.round(m.rssAnon / KB) : null,
      rssFileKb: m && m.rssFile !== null ? Math.round(m.rssFile / KB) : null,
      slot: m && m.slot !== undefined ? m.slot : undefined,
    }
  }
  const primary = { ...one(app.primaryPid), threads: threadCount(app.primaryPid) }
  return { primary, workers: pids.slice(1).map(one) }
}

async function snapshot(stats) {
  return { at: new Date().toISOString(), ...(await measureProcesses()), stats }
}

// ---------------------------------------------------------------- the client mix

/** mulberry32: a small seeded PRNG so that a run's mix is reproducible. */
function prng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const random = prng(opts.seed)

const sourceIp = (i) => `127.0.0.${2 + (i % 249)}` // 127.0.0.2 .. 127.0.0.250
const CLIENTS = 1000 // synthetic client addresses behind the "proxy" in header / proxy-protocol modes
const syntheticClient = (i) => {
  const k = i % CLIENTS
  return `198.51.${100 + (k >> 8)}.${k & 255}`
}
const normalise = (address) => (typeof address === 'string' && address.startsWith('::ffff:') ? address.slice(7) : address)

const GOOD_TIMEOUT = 10000
const OTHER_TIMEOUT = 10000

const totals = {
  good: { started: 0, ok: 0, failed: 0 },
  garbage: { started: 0, done: 0, answered: 0, timedOut: 0, connectErrors: 0 },
  reset: { started: 0, done: 0, connectErrors: 0 },
  silent: { started: 0, done: 0, closedByServerFirst: 0, connectErrors: 0, maxHeld: 0 },
}
const failures = { byReason: {}, samples: [] }
const stickiness = new Map() // client key -> worker pid
let stickyViolations = 0
const stickySamples = []
const workerHits = {}
const errorCodes = {}

function countError(kind, error) {
  const code = `${kind}:${(error && (error.code || error.message)) || 'unknown'}`
  errorCodes[code] = (errorCodes[code] || 0) + 1
}

function goodFailure(index, reason, detail) {
  totals.good.failed++
  failures.byReason[reason] = (failures.byReason[reason] || 0) + 1
  if (failures.samples.length < 20) failures.samples.push({ index, reason, detail: String(detail || '').slice(0, 300) })
}

/** One good request: GET /whoami on a new connection; must answer 200 with the worker's JSON. */
function goodRequest(index, port, { measured = true } = {}) {
  if (measured) totals.good.started++
  const routing = opts.routing
  let localAddress = sourceIp(index)
  let prefix = ''
  let headers = ''
  let clientKey = localAddress
  let expectAddress = localAddress
  let expectPort = null
  if (routing === 'header') {
    localAddress = '127.0.0.1' // the trusted proxy
    clientKey = syntheticClient(index)
    headers = `X-Forwarded-For: ${clientKey}\r\n`
    expectAddress = null // the socket's address stays the proxy's in header mode
  } else if (routing === 'proxy-protocol') {
    clientKey = syntheticClient(index)
    expectPort = 1024 + (index % 60000)
    prefix = `PROXY TCP4 ${clientKey} 127.0.0.1 ${expectPort} ${port}\r\n`
    expectAddress = clientKey
  }
  const head = `${prefix}GET /whoami HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n${headers}\r\n`
  return new Promise((resolve) => {
    const chunks = []
    let finished = false
    let connected = false
    let socketError = null
    const socket = net.connect({ host: '127.0.0.1', port, localAddress })
    const timer = setTimeout(() => {
      socketError = socketError || new Error(`no complete reply within ${GOOD_TIMEOUT} ms`)
      socketError.code = socketError.code || 'TIMEOUT'
      socket.destroy()
    }, GOOD_TIMEOUT)
    socket.on('connect', () => {
      connected = true
      socket.write(head)
    })
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('error', (error) => (socketError = socketError || error))
    socket.on('close', () => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString('latin1')
      const fail = (reason, detail) => {
        if (measured) goodFailure(index, reason, detail)
        resolve(false)
      }
      const statusMatch = /^HTTP\/1\.[01] (\d{3})/.exec(text)
      if (!statusMatch) {
        const why = socketError ? (connected ? '' : 'connect:') + (socketError.code || socketError.message) : 'closed without reply'
        return fail(text.length ? 'malformed reply' : why, text.length ? text.slice(0, 200) : socketError && socketError.message)
      }
      if (statusMatch[1] !== '200') return fail(`status ${statusMatch[1]}`, text.slice(0, 200))
      const bodyAt = text.indexOf('\r\n\r\n')
      let json
      try {
        json = JSON.parse(text.slice(bodyAt + 4))
      } catch {
        return fail('body is not JSON', `${socketError ? socketError.code + ' ' : ''}${text.slice(0, 300)}`)
      }
      if (!json || !(json.pid > 0)) return fail('JSON without worker pid', text.slice(bodyAt + 4, bodyAt + 200))
      if (expectAddress && normalise(json.remoteAddress) !== expectAddress) {
        return fail('worker saw the wrong client address', `expected ${expectAddress}, got ${json.remoteAddress}`)
      }
      if (expectPort !== null && json.remotePort !== expectPort) {
        return fail('worker saw the wrong client port', `expected ${expectPort}, got ${json.remotePort}`)
      }
      if (measured) {
        totals.good.ok++
        workerHits[json.pid] = (workerHits[json.pid] || 0) + 1
        if (routing !== 'sid') {
          const owner = stickiness.get(clientKey)
          if (owner === undefined) stickiness.set(clientKey, json.pid)
          else if (owner !== json.pid) {
            stickyViolations++
            if (stickySamples.length < 10) stickySamples.push({ client: clientKey, first: owner, now: json.pid })
          }
        }
      }
      resolve(true)
    })
  })
}

/** Garbage: connect, write junk, half-close; wait for the server to close (bounded). */
function garbage(index, port) {
  totals.garbage.started++
  let bytes
  if (random() < 0.5) {
    bytes = Buffer.alloc(1 + Math.floor(random() * 512))
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256)
    bytes[0] = 0x01 + (bytes[0] % 0x0c) // never the start of a method, "PROXY" or the PROXY v2 signature
  } else {
    bytes = Buffer.from(`\x7fsoak garbage ${index} ${'#'.repeat(Math.floor(random() * 200))}\r\n\r\n`)
  }
  return new Promise((resolve) => {
    let finished = false
    let connected = false
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: sourceIp(index) })
    const timer = setTimeout(() => {
      totals.garbage.timedOut++
      socket.destroy()
    }, OTHER_TIMEOUT)
    socket.on('connect', () => {
      connected = true
      socket.end(bytes)
    })
    socket.on('data', () => {
      if (!socket.answered) {
        socket.answered = true
        totals.garbage.answered++
      }
    })
    socket.on('error', (error) => {
      if (!connected) totals.garbage.connectErrors++
      countError('garbage', error)
    })
    socket.on('close', () => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      totals.garbage.done++
      resolve()
    })
  })
}

/** Reset: connect, then RST at once. */
function reset(index, port) {
  totals.reset.started++
  return new Promise((resolve) => {
    let connected = false
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: sourceIp(index) })
    socket.on('connect', () => {
      connected = true
      socket.resetAndDestroy()
    })
    socket.on('error', (error) => {
      if (!connected) totals.reset.connectErrors++
      countError('reset', error)
    })
    socket.on('close', () => {
      totals.reset.done++
      resolve()
    })
  })
}

/** Silent: connect, send nothing, close after 0..silentMaxMs (unless the server closes first). */
function silent(index, port) {
  totals.silent.started++
  const holdMs = Math.floor(random() * opts.silentMaxMs)
  return new Promise((resolve) => {
    let connected = false
    let ourClose = false
    let timer = null
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: sourceIp(index) })
    socket.on('connect', () => {
      connected = true
      timer = setTimeout(() => {
        ourClose = true
        socket.destroy()
      }, holdMs)
    })
    socket.on('end', () => {
      if (!ourClose) totals.silent.closedByServerFirst++
    })
    socket.on('error', (error) => {
      if (!connected) totals.silent.connectErrors++
      else if (!ourClose) totals.silent.closedByServerFirst++
      countError('silent', error)
    })
    socket.on('close', () => {
      clearTimeout(timer)
      totals.silent.done++
      resolve()
    })
  })
}

/** The mix: ~70 % good, ~10 % garbage, ~10 % reset, ~10 % silent (seeded). */
function kindOf() {
  const r = random()
  return r < 0.7 ? 'good' : r < 0.8 ? 'garbage' : r < 0.9 ? 'reset' : 'silent'
}

// ---------------------------------------------------------------- phases

/** Zeroes the mix's counters (after the warm-up, which runs the same mix). */
function resetMixCounters() {
  for (const kind of Object.values(totals)) for (const key of Object.keys(kind)) kind[key] = 0
  for (const key of Object.keys(errorCodes)) delete errorCodes[key]
}

/**
 * Runs the mix over connection indices `first`..`first + count - 1` until
 * `deadline`; resolves with how many were launched and how many good
 * requests failed. Unmeasured (the warm-up), good requests do not count in
 * the totals nor in the stickiness check.
 */
async function drive(port, { first = 0, count, deadline, measured = true, reporter = null }) {
  let next = 0
  let held = 0
  let goodFailed = 0
  let releaseWaiters = []
  const silentDone = new Set()
  const release = () => {
    held--
    const w = releaseWaiters
    releaseWaiters = []
    w.forEach((fn) => fn())
  }
  let lastReport = Date.now()
  const startedAt = Date.now()
  const runner = async () => {
    while (next < count && Date.now() < deadline && !app.exited) {
      const i = first + next++
      const kind = kindOf()
      if (kind === 'good') {
        if (!(await goodRequest(i, port, { measured }))) goodFailed++
      } else if (kind === 'garbage') await garbage(i, port)
      else if (kind === 'reset') await reset(i, port)
      else {
        while (held >= opts.maxSilent) await new Promise((resolve) => releaseWaiters.push(resolve))
        held++
        totals.silent.maxHeld = Math.max(totals.silent.maxHeld, held)
        const p = silent(i, port).then(release)
        silentDone.add(p)
        p.then(() => silentDone.delete(p))
      }
      if (measured && !opts.quiet && Date.now() - lastReport >= 5000) {
        lastReport = Date.now()
        const s = (Date.now() - startedAt) / 1000
        log(`${next}/${count} started, ${Math.round(next / s)} conn/s, good ok ${totals.good.ok} failed ${totals.good.failed}, silent held ${held}, primary fds ${fdCount(app.primaryPid)} rss ${Math.round(rssKb(app.primaryPid) / 1024)} MB`)
      }
      if (reporter) reporter.maybeReport(next)
    }
  }
  await Promise.all(Array.from({ length: opts.concurrency }, runner))
  await Promise.all([...silentDone])
  return { launched: next, goodFailed }
}

/**
 * Every `--report-every` seconds while the mix runs: each process's fds, RSS
 * and retained memory (after a full GC), printed and kept for the JSON.
 */
function startReporter() {
  const samples = []
  let last = Date.now()
  let inFlight = null
  const t0 = Date.now()
  const take = (connections) => {
    last = Date.now()
    inFlight = measureProcesses().then(
      (measured) => {
        const sample = { seconds: Math.round((Date.now() - t0) / 1000), connections, ...measured }
        samples.push(sample)
        log(`memory at ${sample.connections} connections: ${describeProcesses(sample)}`)
      },
      (error) => log(`memory sample failed: ${error.message}`),
    ).finally(() => (inFlight = null))
    return inFlight
  }
  return {
    samples,
    maybeReport(connections) {
      if (!inFlight && Date.now() - last >= opts.reportEvery * 1000) take(connections)
    },
    /** The last sample, at the end of the mix (so that every run has one). */
    async finish(connections) {
      if (inFlight) await inFlight
      await take(connections)
    },
  }
}

/** "primary 123: rss 50.1 MB, retained 40.2 MB, 29 fds; worker ..." */
function describeProcesses({ primary, workers }) {
  const mb = (kb) => (kb === null ? '?' : (kb / 1024).toFixed(1))
  const one = (role, p) => `${role} ${p.pid}: rss ${mb(p.rssKb)} MB, retained ${mb(p.retainedKb)} MB, ${p.fds} fds`
  return [one(opts.target === 'plain' ? 'server' : 'primary', primary), ...workers.map((w) => one(`worker ${w.slot}`, w))].join('; ')
}

/** Samples every process's fds, RSS and threads once a second while the mix runs: their peaks. */
function startSampler() {
  const peaks = new Map()
  const timer = setInterval(() => {
    for (const pid of [app.primaryPid, ...liveWorkers()]) {
      const peak = peaks.get(pid) || { fds: 0, rssKb: 0, threads: 0 }
      peak.fds = Math.max(peak.fds, fdCount(pid) || 0)
      peak.rssKb = Math.max(peak.rssKb, rssKb(pid) || 0)
      peak.threads = Math.max(peak.threads, threadCount(pid) || 0)
      peaks.set(pid, peak)
    }
  }, 1000)
  timer.unref()
  const none = { fds: 0, rssKb: 0, threads: 0 }
  return { peakOf: (pid) => peaks.get(pid) || none, stop: () => clearInterval(timer) }
}

/**
 * Waits until the primary is quiet (every slot's pending 0, readingHeader 0,
 * parked 0) and the fd counts are back within the slack, or the timeout.
 */
async function settle(before, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  let stats
  for (;;) {
    stats = await appStats()
    // The plain server has no balancer to wait for.
    const quiet = !stats || (stats.readingHeader === 0 && stats.parked === 0 && stats.slots.every((s) => s.pending === 0))
    const primaryBack = fdCount(app.primaryPid) <= before.primary.fds + opts.fdSlack
    const workersBack = before.workers.every((w) => {
      const now = fdCount(w.pid)
      return now === null || now <= w.fds + opts.fdSlack
    })
    if ((quiet && primaryBack && workersBack) || Date.now() > deadline) return { stats, quiet, timedOut: !(quiet && primaryBack && workersBack) }
    await sleep(250)
  }
}

// The counters of stats() and of each slot, from the one list of stats fields.
const counterNames = (scope) => statsFields().filter((field) => field.scope === scope && field.kind === 'counter').map((field) => field.name)
const COUNTERS = counterNames('primary')
const SLOT_COUNTERS = counterNames('slot')

function statsDelta(a, b) {
  const d = {}
  for (const k of COUNTERS) d[k] = (b[k] || 0) - (a[k] || 0)
  // A slot counter named as a primary one (`accepted`: what kernel-mode workers took) is kept apart.
  for (const k of SLOT_COUNTERS) {
    const key = COUNTERS.includes(k) ? `slots.${k}` : k
    d[key] = b.slots.reduce((sum, s) => sum + (s[k] || 0), 0) - a.slots.reduce((sum, s) => sum + (s[k] || 0), 0)
  }
  return d
}

// ---------------------------------------------------------------- main

async function main() {
  const started = Date.now()
  const watchdogMs = (opts.seconds * 2 + opts.settle + 60) * 1000
  const watchdog = setTimeout(() => {
    console.error(`[soak] watchdog: still running after ${watchdogMs / 1000} s, giving up`)
    try {
      process.kill(-app.pid, 'SIGKILL')
    } catch {}
    process.exit(3)
  }, watchdogMs)
  watchdog.unref()

  const plain = opts.target === 'plain'
  // The accept loop, also for 'ip': the soak checks what the primary does
  // with every connection (in kernel steering it sees none).
  const options = { workers: opts.workers, routing: opts.routing, kernel: false }
  if (PEEKING.has(opts.routing)) options.headerTimeout = opts.headerTimeout
  const config = {
    ...(plain ? { plain: true } : { options }),
    // The workers clean up slow and silent clients themselves.
    headersTimeout: 1000,
    requestTimeout: 2000,
    connectionsCheckingInterval: 250,
  }
  log(`starting ${path.relative(process.cwd(), APP)} with ${JSON.stringify(config)}`)
  await startApp(config)
  const expectedWorkers = plain ? 0 : opts.workers
  const workersDeadline = Date.now() + 20000
  while (liveWorkers().length < expectedWorkers) {
    if (app.exited || Date.now() > workersDeadline) throw new Error(`${opts.workers} workers did not come online: ${app.stderr.slice(-1000)}`)
    await sleep(50)
  }
  // Ready means the primary accepts: wait for one good request to be answered.
  const readyDeadline = Date.now() + 20000
  while (!(await goodRequest(0, app.port, { measured: false }))) {
    if (app.exited || Date.now() > readyDeadline) throw new Error(`the app never answered a request: ${app.stderr.slice(-1000)}`)
    await sleep(100)
  }
  const role = plain ? 'plain server' : 'primary'
  log(`${role} pid ${app.primaryPid} on port ${app.port}, workers ${liveWorkers().join(', ') || 'none'}; warm-up: ${opts.warmup} connections of the mix`)
  // The warm-up runs the same mix (every code path runs, V8 compiles it and
  // sizes its heap) on indices after the measured ones: the measured mix is
  // the same sequence whatever the warm-up.
  const warmup = await drive(app.port, { first: opts.connections, count: opts.warmup, deadline: Infinity, measured: false })
  resetMixCounters()
  const warm = await settle({ primary: { fds: Infinity }, workers: [] }, 10000)
  await sleep(500)
  const before = await snapshot(await appStats())
  const exitsBefore = app.events.filter((e) => e.event === 'exit').length
  log(`before: ${describeProcesses(before)}`)

  log(`driving ${opts.connections} connections (concurrency ${opts.concurrency}, ${plain ? 'plain server' : `routing ${opts.routing}`}, at most ${opts.maxSilent} silent at once, ${opts.seconds} s max)`)
  const sampler = startSampler()
  const reporter = startReporter()
  const t0 = Date.now()
  const { launched } = await drive(app.port, { count: opts.connections, deadline: t0 + opts.seconds * 1000, reporter })
  const driveSeconds = (Date.now() - t0) / 1000
  await reporter.finish(launched)
  sampler.stop()
  log(`mix done: ${launched} connections in ${driveSeconds.toFixed(1)} s; settling (up to ${opts.settle} s)`)
  const t1 = Date.now()
  const settled = await settle(before, opts.settle * 1000)
  const settleSeconds = (Date.now() - t1) / 1000
  const after = await snapshot(settled.stats)
  log(`after: ${describeProcesses(after)}`)
  const delta = plain ? null : statsDelta(before.stats, after.stats)
  const workerExits = app.events.filter((e) => e.event === 'exit').slice(exitsBefore)

  // One row per process that lived through the run.
  // Raw RSS "after" is the end-of-mix sample's, read before its GC (on Node
  // 22+ the memory-reducing GC of a sample gives V8's free pages back).
  const endOfMix = reporter.samples[reporter.samples.length - 1]
  const rawAfterKb = (pid) => {
    const found = endOfMix && [endOfMix.primary, ...endOfMix.workers].find((p) => p.pid === pid)
    return found ? found.rssKb : null
  }
  const rowOf = (roleName, b, a) => ({
    role: roleName,
    pid: b.pid,
    slot: b.slot,
    fdBefore: b.fds, fdAfter: a ? a.fds : null, fdPeak: sampler.peakOf(b.pid).fds,
    rssBeforeKb: b.rssKb, rssAfterKb: rawAfterKb(b.pid), rssPeakKb: sampler.peakOf(b.pid).rssKb,
    retainedBeforeKb: b.retainedKb, retainedAfterKb: a ? a.retainedKb : null,
    heapUsedBeforeKb: b.heapUsedKb, heapUsedAfterKb: a ? a.heapUsedKb : null,
    heapUnusedBeforeKb: b.heapUnusedKb, heapUnusedAfterKb: a ? a.heapUnusedKb : null,
    mallocedBeforeKb: b.mallocedKb, mallocedAfterKb: a ? a.mallocedKb : null,
    rssAfterGcBeforeKb: b.rssAfterGcKb, rssAfterGcAfterKb: a ? a.rssAfterGcKb : null,
    rssAnonBeforeKb: b.rssAnonKb, rssAnonAfterKb: a ? a.rssAnonKb : null,
    rssFileBeforeKb: b.rssFileKb, rssFileAfterKb: a ? a.rssFileKb : null,
  })
  const processes = [
    rowOf(plain ? 'server' : 'primary', before.primary, after.primary),
    ...before.workers.map((w) => rowOf('worker', w, after.workers.find((x) => x.pid === w.pid))),
  ]

  // ------------------------------------------------------------ checks
  const checks = []
  const check = (name, ok, detail) => checks.push({ name, ok: !!ok, detail })
  const mb = (kb) => (kb / 1024).toFixed(1)
  const signed = (n, digits = 0) => `${n >= 0 ? '+' : ''}${n.toFixed(digits)}`
  check('good requests all answered 200 + JSON', totals.good.failed === 0, `${totals.good.failed} of ${totals.good.started} failed${totals.good.failed ? ': ' + JSON.stringify(failures.byReason) : ''}`)
  check('warm-up requests all answered', warmup.goodFailed === 0, `${warmup.goodFailed} failed of the warm-up's good requests`)
  for (const p of processes) {
    const name = p.role === 'worker' ? `worker ${p.slot} (pid ${p.pid})` : `${p.role} (pid ${p.pid})`
    const fdGrowth = p.fdAfter - p.fdBefore
    check(`${name} fd count after <= before + ${opts.fdSlack}`, p.fdAfter !== null && fdGrowth <= opts.fdSlack, `before ${p.fdBefore}, after ${p.fdAfter} (${signed(fdGrowth)}), peak ${p.fdPeak}`)
    const retainedGrowthMb = (p.retainedAfterKb - p.retainedBeforeKb) / 1024
    check(`${name} retained memory growth <= ${opts.retainedSlackMb} MB`, p.retainedAfterKb !== null && retainedGrowthMb <= opts.retainedSlackMb,
      `retained ${mb(p.retainedBeforeKb)} -> ${mb(p.retainedAfterKb)} MB (${signed(retainedGrowthMb, 1)}); raw RSS ${mb(p.rssBeforeKb)} -> ${mb(p.rssAfterKb)} MB, peak ${mb(p.rssPeakKb)}`)
  }
  // The primary's JavaScript does nothing per connection: even its raw RSS
  // stays put. (A server's grows with V8's young generation: see SOAK.md.)
  if (!plain) {
    const { rssBeforeKb, rssAfterKb, rssPeakKb } = processes[0]
    const rssGrowthMb = (rssAfterKb - rssBeforeKb) / 1024
    check(`primary raw RSS growth <= ${opts.rssSlackMb} MB`, rssGrowthMb <= opts.rssSlackMb, `before ${mb(rssBeforeKb)} MB, after ${mb(rssAfterKb)} MB (${signed(rssGrowthMb, 1)} MB), peak ${mb(rssPeakKb)} MB`)
  }
  check('every connection was launched within --seconds', launched === opts.connections, `${launched} of ${opts.connections}`)
  check('no worker exited', workerExits.length === 0, workerExits.length ? JSON.stringify(workerExits) : 'none')
  check(`${role} settled (${plain ? '' : 'pending 0, readingHeader 0, '}fds back)`, !settled.timedOut, `${settled.timedOut ? 'not within' : 'in'} ${settleSeconds.toFixed(1)} s${plain ? '' : `; readingHeader ${after.stats.readingHeader}, pending ${after.stats.slots.map((s) => s.pending).join('/')}`}`)
  if (opts.routing !== 'sid' && !plain) check('each client stayed on one worker', stickyViolations === 0, stickyViolations ? `${stickyViolations} moves, e.g. ${JSON.stringify(stickySamples.slice(0, 3))}` : `${stickiness.size} clients`)
  if (!plain) {
    check('nothing dropped for queue limits or lack of workers', delta.droppedQueueFull === 0 && delta.droppedNoWorker === 0 && delta.acceptErrors === 0, `droppedQueueFull ${delta.droppedQueueFull}, droppedNoWorker ${delta.droppedNoWorker}, acceptErrors ${delta.acceptErrors}`)
    const connectErrors = totals.garbage.connectErrors + totals.reset.connectErrors + totals.silent.connectErrors +
      Object.entries(failures.byReason).filter(([reason]) => reason.startsWith('connect:')).reduce((sum, [, n]) => sum + n, 0)
    const connected = launched - connectErrors
    // Every accepted connection ends up dispatched to a worker, dropped by the primary, or closed by its client first.
    const accounted = delta.dispatched - delta.redispatched + delta.dropped + delta.closedBeforeHeader
    check('accepted = connections made (and = dispatched + dropped + closedBeforeHeader)', delta.accepted === connected && accounted === delta.accepted,
      `accepted ${delta.accepted}, connections made ${connected}, dispatched ${delta.dispatched} - redispatched ${delta.redispatched} + dropped ${delta.dropped} + closedBeforeHeader ${delta.closedBeforeHeader} = ${accounted}`)
    check('every dispatched connection taken', delta.dispatched === delta.taken, `dispatched ${delta.dispatched}, taken ${delta.taken}`)
    if (opts.routing === 'ip') {
      check("ip routing: the primary dropped nothing (garbage, resets and silent clients are the workers' business)", delta.dropped === 0 && delta.closedBeforeHeader === 0, `dropped ${delta.dropped}, closedBeforeHeader ${delta.closedBeforeHeader}`)
    } else if (opts.routing === 'proxy-protocol') {
      check('proxy-protocol: every garbage connection counted as droppedInvalidHeader', delta.droppedInvalidHeader === totals.garbage.started, `droppedInvalidHeader ${delta.droppedInvalidHeader}, garbage sent ${totals.garbage.started}`)
      check('proxy-protocol: nothing dropped as untrusted or overflow', delta.droppedUntrustedProxy === 0 && delta.droppedHeaderOverflow === 0, `droppedUntrustedProxy ${delta.droppedUntrustedProxy}, droppedHeaderOverflow ${delta.droppedHeaderOverflow}`)
    }
  }

  const failed = checks.filter((c) => !c.ok)
  const primaryRow = processes[0]
  const result = {
    ok: failed.length === 0,
    failures: failed.map((c) => `${c.name}: ${c.detail}`),
    date: new Date().toISOString(),
    machine: { node: process.version, platform: `${process.platform}-${process.arch}`, cpus: os.cpus().length, cpuModel: (os.cpus()[0] || {}).model, loadavg: os.loadavg() },
    options: { ...opts, out: undefined },
    appConfig: config,
    port: app.port,
    warmup: { connections: warmup.launched, goodFailed: warmup.goodFailed, settled: !warm.timedOut },
    elapsed: { driveSeconds, settleSeconds, totalSeconds: (Date.now() - started) / 1000 },
    connectionsPerSecond: Math.round(launched / driveSeconds),
    goodRequestsPerSecond: Math.round(totals.good.ok / driveSeconds),
    launched,
    mix: totals,
    goodFailures: { count: totals.good.failed, byReason: failures.byReason, samples: failures.samples },
    clientErrors: errorCodes,
    stickiness: opts.routing === 'sid' ? null : { clients: stickiness.size, violations: stickyViolations, samples: stickySamples },
    workerHits,
    processes,
    primary: {
      ...primaryRow,
      threadsBefore: before.primary.threads, threadsAfter: after.primary.threads, threadsPeak: sampler.peakOf(app.primaryPid).threads,
    },
    workers: processes.slice(1),
    memorySamples: reporter.samples,
    statsDelta: delta,
    statsBefore: before.stats,
    statsAfter: after.stats,
    workerExits,
    primaryWarnings: app.events.filter((e) => e.event === 'warning'),
    checks,
  }
  printSummary(result)
  fs.mkdirSync(path.dirname(opts.out), { recursive: true })
  fs.writeFileSync(opts.out, JSON.stringify(result, null, 2) + '\n')
  console.log(`written ${path.relative(process.cwd(), opts.out) || opts.out}`)
  await stopApp()
  clearTimeout(watchdog)
  return result.ok ? 0 : 1
}

function printSummary(r) {
  const mb = (kb) => (kb === null ? '?' : (kb / 1024).toFixed(1))
  const m = r.mix
  const target = r.options.target === 'plain' ? 'plain Node http server (no balancer)' : `sticky-session-rs, routing ${r.options.routing}, ${r.options.workers} workers`
  const lines = [
    `soak: ${target}, ${r.launched} connections, concurrency ${r.options.concurrency}`,
    `  elapsed      ${r.elapsed.driveSeconds.toFixed(1)} s driving (+${r.elapsed.settleSeconds.toFixed(1)} s settling), ${r.connectionsPerSecond} conn/s (${r.goodRequestsPerSecond} good req/s)`,
    `  mix          good ${m.good.started} (ok ${m.good.ok}, failed ${m.good.failed}), garbage ${m.garbage.started} (answered ${m.garbage.answered}), reset ${m.reset.started}, silent ${m.silent.started} (closed by server first ${m.silent.closedByServerFirst}, max held ${m.silent.maxHeld})`,
    '  process      fds before -> after (peak)   RSS MB before -> after (peak)   retained MB before -> after',
    ...r.processes.map((p) =>
      `  ${`${p.role}${p.role === 'worker' ? ' ' + p.slot : ''}`.padEnd(12)} ${`${p.fdBefore} -> ${p.fdAfter} (${p.fdPeak})`.padEnd(28)} ${`${mb(p.rssBeforeKb)} -> ${mb(p.rssAfterKb)} (${mb(p.rssPeakKb)})`.padEnd(31)} ${mb(p.retainedBeforeKb)} -> ${mb(p.retainedAfterKb)}`),
  ]
  if (r.statsDelta) lines.push(`  stats delta  ${Object.entries(r.statsDelta).filter(([, v]) => v !== 0).map(([k, v]) => `${k} ${v}`).join(', ') || '(none)'}`)
  if (r.goodFailures.count) lines.push(`  good failures ${JSON.stringify(r.goodFailures.byReason)}; e.g. ${JSON.stringify(r.goodFailures.samples.slice(0, 3))}`)
  if (r.primaryWarnings.length) lines.push(`  primary process warnings ${JSON.stringify(r.primaryWarnings.slice(0, 5))}`)
  if (Object.keys(r.clientErrors).length) lines.push(`  client-side errors ${JSON.stringify(r.clientErrors)}`)
  for (const c of r.checks) lines.push(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}`)
  lines.push(r.ok ? 'PASS' : `FAIL (${r.failures.length}): ${r.failures.join('; ')}`)
  console.log(lines.join('\n'))
}

main().then(
  (code) => process.exit(code),
  async (error) => {
    console.error(`[soak] harness error: ${error && error.stack ? error.stack : error}`)
    if (app && app.stderr) console.error(`[soak] app stderr (tail):\n${app.stderr.slice(-2000)}`)
    await stopApp().catch(() => {})
    process.exit(3)
  },
)

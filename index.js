'use strict'

// sticky-session-rs: the drop-in API, in the three shapes people already use,
// as thin adapters over one core (lib/primary.js, lib/worker.js):
//   1. sticky-session 1.1.2:        sticky.listen(server, port[, options])
//   2. socketio-sticky-session:     sticky([num | options, ] serverOrFactory).listen(port[, host][, cb])
//   3. @socket.io/sticky:           sticky.setupMaster(httpServer, options) / sticky.setupWorker(io)

const cluster = require('cluster')
const crypto = require('crypto')
const net = require('net')
const { listenOptions, validateServer } = require('./lib/options')
const { stickyError } = require('./lib/errors')
const { isServer } = require('./lib/runtime')
const { pm2ClusterModeError } = require('./lib/pm2')
const worker = require('./lib/worker')
const { startPrimary } = require('./lib/primary')
const { checkPort, connectChannel } = require('./lib/native')

// A worker's channel leaves the environment as soon as the module loads.
worker.claimFromEnvironment()

let primary = null

function startBalancing(server, port, options) {
  if (primary) {
    throw stickyError('ERR_STICKY_ALREADY_LISTENING', 'sticky-session-rs balances one server per primary and listen was already called: call listen() once, in the primary')
  }
  primary = startPrimary(server, port, options)
  return primary
}

// ---- 1. sticky-session 1.1.2 -------------------------------------------

/**
 * In the primary, starts balancing on `port` and returns `false` (`server`
 * emits `'listening'`, or `'error'`); in a worker, attaches `server` to the
 * primary's connections and returns `true`.
 */
function listen(server, port, options) {
  validateServer(server)
  const checkedPort = checkPort(port)
  const checkedOptions = listenOptions(options)
  if (cluster.isPrimary) {
    startBalancing(server, checkedPort, checkedOptions)
    return false
  }
  worker.startWorker(server)
  return true
}

// ---- 2. socketio-sticky-session ----------------------------------------

/** `listen(port[, host][, callback])` arguments. */
function listenArguments(args) {
  const callback = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined
  if (args[0] !== null && typeof args[0] === 'object') {
    return { port: args[0].port ?? 0, host: args[0].host, backlog: args[0].backlog, callback }
  }
  return { port: args[0] ?? 0, host: typeof args[1] === 'string' ? args[1] : undefined, backlog: typeof args[2] === 'number' ? args[2] : undefined, callback }
}

/**
 * The shape's options with the host and backlog given to its `listen()`
 * (when given), checked again: they are options like the others.
 */
function withListenArguments(options, { host, backlog }) {
  return listenOptions({ ...options, ...(host === undefined ? {} : { host }), ...(backlog ? { backlog } : {}) })
}

/**
 * socketio-sticky-session's `sticky(server)`, `sticky(num, server)`,
 * `sticky(options, serverOrFactory)`: options `num`, `proxy` (route by the
 * `header`, default `x-forwarded-for`), `ignoreMissingHeader` (default false,
 * as there), `sync` (accepted and not needed: the primary never reads the
 * request, so there is no first packet to replay), plus any option of
 * `listen`. Returns, in the primary, a server whose `.listen(port[, host][, cb])`
 * starts balancing; in a worker, the user's server (the factory runs only
 * there), whose `.listen` binds nothing public.
 */
function sticky(first, second) {
  const [options, serverOrFactory] =
    second === undefined ? [{}, first] : typeof first === 'number' ? [{ num: first }, second] : [first || {}, second]
  const { num, proxy, sync, ...rest } = options
  const stickyOptions = {
    workers: num,
    ...rest,
    routing: rest.routing || (proxy ? 'header' : undefined),
    ignoreMissingHeader: rest.ignoreMissingHeader ?? false,
  }
  listenOptions(stickyOptions)
  if (cluster.isPrimary) {
    const facade = new net.Server()
    facade.listen = function listenSticky(...args) {
      const { port, callback, ...given } = listenArguments(args)
      if (callback) facade.once('listening', callback)
      startBalancing(facade, checkPort(port), withListenArguments(stickyOptions, given))
      return facade
    }
    return facade
  }
  const server = typeof serverOrFactory === 'function' ? serverOrFactory() : serverOrFactory
  validateServer(server)
  worker.startWorker(server)
  // The worker's server is fed by the primary: its listen() binds nothing.
  server.listen = function listenInWorker(...args) {
    const { callback } = listenArguments(args)
    if (callback) process.nextTick(callback)
    return server
  }
  return server
}

// ---- 3. @socket.io/sticky ----------------------------------------------

/**
 * @socket.io/sticky's primary half: the user calls `httpServer.listen(port)`
 * and forks the workers with `cluster.fork()`. Routing is by engine.io `sid`;
 * new sessions by `loadBalancingMethod`. Workers get their channel from an
 * abstract socket that only this cluster's worker processes may use.
 */
function setupMaster(httpServer, options = {}) {
  validateServer(httpServer)
  if (!cluster.isPrimary) {
    throw pm2ClusterModeError() || stickyError('ERR_STICKY_NOT_PRIMARY', 'setupMaster() belongs in the cluster primary; call setupWorker(io) in workers')
  }
  const { maxWorkers, ...rest } = options || {}
  if (rest.takeover) {
    throw stickyError('ERR_STICKY_INVALID_OPTION', 'options.takeover needs workers that sticky-session-rs forks (listen() or sticky()); with setupMaster you fork them yourself')
  }
  // The slots are a capacity for the workers the user forks, who need not
  // wait for one another: accept as soon as any is there.
  const masterOptions = { ...rest, routing: 'sid', workers: maxWorkers ?? 64, startupWait: 1 }
  listenOptions(masterOptions)
  const rendezvous = `sticky-session-rs-${process.pid}-${crypto.randomBytes(8).toString('hex')}`
  // Every cluster.fork() after this inherits the name.
  process.env.STICKY_RENDEZVOUS = rendezvous
  httpServer.listen = function listenSticky(...args) {
    const { port, callback, ...given } = listenArguments(args)
    if (callback) httpServer.once('listening', callback)
    startBalancing(httpServer, checkPort(port), { ...withListenArguments(masterOptions, given), rendezvous })
    return httpServer
  }
}

/** @socket.io/sticky's worker half: `io` is a socket.io server attached to an http server. */
function setupWorker(io) {
  const server = io && io.httpServer
  if (!isServer(server)) {
    throw stickyError('ERR_STICKY_INVALID_SERVER', 'setupWorker(io) needs a socket.io server attached to an http server: new Server(httpServer)')
  }
  const rendezvous = process.env.STICKY_RENDEZVOUS
  if (!cluster.isWorker || !rendezvous) {
    throw pm2ClusterModeError() || stickyError('ERR_STICKY_NO_CHANNEL', 'setupWorker(io) runs in a worker forked after setupMaster(httpServer) in the primary')
  }
  const channel = connectChannel(rendezvous)
  worker.startWorker(server, { routing: 'sid', channel })
  // Exact session accounting for least-connection (handshakes are also
  // reported, earlier, from their responses).
  io.engine.on('connection', (socket) => {
    channel.reportSession(socket.id, true)
    socket.once('close', () => channel.reportSession(socket.id, false))
  })
}

// ---- common ---------------------------------------------------------------

/**
 * The upstream block for a proxy in front (`'haproxy'` or `'nginx'`) over
 * the slot ports (`slotPorts`): in the primary once it listens; `null`
 * before, or in a worker. `settings`: `name`, `key` (lib/slot-ports.js).
 */
function proxyConfig(proxy, settings) {
  return primary ? primary.proxyConfig(proxy, settings) : null
}

/** Where each slot port listens (`[{ slot, address, family, port }]`), or `null`. */
function slotAddresses() {
  return primary ? primary.slotAddresses() : null
}

/** Counters of the primary's accept loop (`null` in a worker or before listening). */
function stats() {
  return primary ? primary.stats() : null
}

/**
 * Prometheus metrics over `stats()` on a prom-client registry (call it in
 * the primary): one counter or gauge per stats field, per slot with a `slot`
 * label. Options: `client` (the prom-client module; default
 * `require('prom-client')`), `register` (default prom-client's global
 * registry), `prefix` (default `'sticky_session_'`). Returns the metrics by name.
 */
function registerMetrics(options) {
  return require('./lib/metrics').registerMetrics(stats, options)
}

/**
 * In the primary: stops accepting, lets each worker finish its in-flight
 * requests and exit, then calls `callback`. Workers are not respawned.
 */
function close(callback) {
  if (!primary) {
    if (callback) process.nextTick(callback)
    return
  }
  primary.close(callback)
}

/**
 * In the primary: replaces the workers one at a time (each new worker is
 * ready before the old one leaves its slot); `callback(error)` when done.
 * Returns a promise. SIGHUP does the same.
 */
function reload(callback) {
  if (!primary) {
    const error = stickyError('ERR_STICKY_NOT_LISTENING', 'reload() needs a primary that is balancing: call listen() first')
    if (callback) return process.nextTick(callback, error)
    return Promise.reject(error)
  }
  return primary.reload(callback)
}

// The export list, written once, in the form Node's CommonJS export detection
// reads (`module.exports.name = ...`): ESM `import { listen } from` derives
// its named exports from these lines, so the two faces cannot drift.
// (`Object.assign(module.exports, ...)` would hide them from ESM.)
module.exports = sticky
module.exports.listen = listen
module.exports.stats = stats
module.exports.proxyConfig = proxyConfig
module.exports.slotAddresses = slotAddresses
module.exports.registerMetrics = registerMetrics
module.exports.close = close
module.exports.reload = reload
module.exports.setupMaster = setupMaster
module.exports.setupPrimary = setupMaster
module.exports.setupWorker = setupWorker

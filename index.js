'use strict'

// sticky-session-rs: the drop-in API, in the three shapes people already use,
// as thin adapters over one core (lib/primary.js, lib/worker.js):
//   1. sticky-session 1.1.2:        sticky.listen(server, port[, options])
//   2. socketio-sticky-session:     sticky([num | options, ] serverOrFactory).listen(port[, host][, cb])
//   3. @socket.io/sticky:           sticky.setupMaster(httpServer, options) / sticky.setupWorker(io)

const cluster = require('cluster')
const { listenOptions, setupMasterDefaults, validateServer } = require('./lib/options')
const { parseListenArguments } = require('./lib/listen-arguments')
const { codes, stickyError } = require('./lib/errors')
const { isServer } = require('./lib/runtime')
const { pm2ClusterModeError } = require('./lib/pm2')
const worker = require('./lib/worker')
const { startPrimary } = require('./lib/primary')
const rendezvous = require('./lib/rendezvous')

// A worker's channel leaves the environment as soon as the module loads.
worker.claimFromEnvironment()

/** The primary balancing now, or the last one (closing or closed). */
let primary = null

/**
 * Starts balancing `server` where `listen` (lib/listen-arguments.js) says.
 * One server at a time: a primary that is closing no longer counts, so
 * servers may be listened and closed one after another (as test runners do).
 */
function startBalancing(server, listen, options) {
  if (primary && !primary.closing) {
    throw stickyError(codes.ALREADY_LISTENING, 'sticky-session-rs balances one server per primary and listen was already called: call listen() once, in the primary (or close() first)')
  }
  primary = startPrimary(server, listen, options)
  return primary
}

/**
 * The shape's options with what its `listen()` call said about where to
 * listen (host, backlog), checked again: they are options like the others.
 */
function withListenArguments(options, { host, backlog }) {
  return listenOptions({ ...options, ...(host === undefined ? {} : { host }), ...(backlog ? { backlog } : {}) })
}

// ---- 1. sticky-session 1.1.2 -------------------------------------------

/**
 * In the primary, starts balancing on `port` and returns `false` (`server`
 * emits `'listening'`, or `'error'`; `cluster.workers` holds the workers
 * already); in a worker, attaches `server` to the primary's connections and
 * returns `true`. `port` is what sticky-session passed to `net.Server#listen`:
 * a port (number or numeric string), or `{ port, host, backlog, ipv6Only, signal }`.
 */
function listen(server, port, options) {
  validateServer(server)
  const where = parseListenArguments([port])
  const checkedOptions = withListenArguments(options, where)
  if (cluster.isPrimary) {
    startBalancing(server, where, checkedOptions)
    return false
  }
  worker.startWorker(server)
  return true
}

// ---- 2. socketio-sticky-session ----------------------------------------

/**
 * socketio-sticky-session's `sticky(server)`, `sticky(num, server)`,
 * `sticky(options, serverOrFactory)`: options `num`, `proxy` (route by the
 * `header`, default `x-forwarded-for`), `ignoreMissingHeader` (default false,
 * as there), `sync` (accepted and not needed: the primary never reads the
 * request, so there is no first packet to replay), plus any option of
 * `listen`. Returns, in the primary, a server whose `.listen(...)` (every
 * form of `net.Server#listen`) starts balancing; in a worker, the user's
 * server (the factory runs only there), whose `.listen` binds nothing public.
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
    const facade = new (require('net').Server)()
    facade.listen = function listenSticky(...args) {
      const where = parseListenArguments(args)
      startBalancing(facade, where, withListenArguments(stickyOptions, where))
      return facade
    }
    return facade
  }
  const server = typeof serverOrFactory === 'function' ? serverOrFactory() : serverOrFactory
  validateServer(server)
  worker.startWorker(server)
  // The worker's server is fed by the primary: its listen() binds nothing.
  server.listen = function listenInWorker(...args) {
    const { callback } = parseListenArguments(args)
    if (callback) process.nextTick(callback)
    return server
  }
  return server
}

// ---- 3. @socket.io/sticky ----------------------------------------------

/**
 * @socket.io/sticky's primary half: the user calls `httpServer.listen(...)`
 * (any form of `net.Server#listen`; already listening works too) and forks
 * the workers with `cluster.fork()`, before or after this call. Routing is by
 * engine.io `sid`; new sessions by `loadBalancingMethod`. Workers get their
 * channel from an abstract socket that only this cluster's worker processes
 * may use (lib/rendezvous.js).
 */
function setupMaster(httpServer, options = {}) {
  validateServer(httpServer)
  if (!cluster.isPrimary) {
    throw pm2ClusterModeError() || stickyError(codes.NOT_PRIMARY, 'setupMaster() belongs in the cluster primary; call setupWorker(io) in workers')
  }
  const { maxWorkers, ...rest } = options || {}
  if (rest.takeover) {
    throw stickyError(codes.INVALID_OPTION, 'options.takeover needs workers that sticky-session-rs forks (listen() or sticky()); with setupMaster you fork them yourself')
  }
  // The slots are a capacity for the workers the user forks, who need not
  // wait for one another: accept as soon as any is there.
  const masterOptions = { ...rest, routing: 'sid', workers: maxWorkers ?? setupMasterDefaults().maxWorkers, startupWait: 1 }
  listenOptions(masterOptions)
  // Workers forked from now on (and those forked already) can find the primary.
  let reference = rendezvous.acquire()
  const balance = (where) => {
    const options = withListenArguments(masterOptions, where)
    const held = reference || rendezvous.acquire()
    reference = null
    try {
      startBalancing(httpServer, where, { ...options, rendezvous: held })
    } catch (error) {
      held.release()
      throw error
    }
  }
  const alreadyListening = httpServer.listening ? httpServer.address() : null
  httpServer.listen = function listenSticky(...args) {
    balance(parseListenArguments(args))
    return httpServer
  }
  if (alreadyListening) {
    // httpServer.listen() came first: the primary takes the address over.
    closeQuietly(httpServer)
    balance({ ...parseListenArguments([{ port: alreadyListening.port, host: alreadyListening.address }]), alreadyListening: true })
  }
}

/** Closes a listening server's own socket without telling its 'close' listeners (the server goes on, balanced). */
function closeQuietly(server) {
  const emit = server.emit
  server.emit = function withoutClose(event, ...args) {
    return event === 'close' ? false : emit.call(this, event, ...args)
  }
  server.close()
  // Node reports 'close' on the next tick.
  process.nextTick(() => process.nextTick(() => (server.emit = emit)))
}

/** @socket.io/sticky's worker half: `io` is a socket.io server attached to an http server. */
function setupWorker(io) {
  const server = io && io.httpServer
  if (!isServer(server)) {
    throw stickyError(codes.INVALID_SERVER, 'setupWorker(io) needs a socket.io server attached to an http server: new Server(httpServer)')
  }
  if (!cluster.isWorker) {
    throw pm2ClusterModeError() || stickyError(codes.NO_CHANNEL, 'setupWorker(io) runs in a cluster worker (cluster.fork() in the primary that calls setupMaster(httpServer))')
  }
  const channel = rendezvous.channelFromPrimary((error) => server.emit('error', error))
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

/** Counters of the primary's accept loop (`null` in a worker, before listening, or once closed). */
function stats() {
  return primary && !primary.closed ? primary.stats() : null
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
 * requests and exit, then calls `callback`. Workers are not respawned. The
 * same as `server.close(callback)` on the balanced server.
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
    const error = stickyError(codes.NOT_LISTENING, 'reload() needs a primary that is balancing: call listen() first')
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

'use strict'

// The primary: listens on the public port (lib/listeners.js: the native accept
// loop, or a kernel-steered group), forks one worker per slot with what the
// listener gives it in its stdio (its channel, or its slot's socket), and
// respawns a worker into the same slot when it exits. The primary's
// JavaScript never handles a connection.
//
// As `net.Server#listen` does, the port is bound before `listen()` returns
// (a host name is resolved first: lib/native resolveHost), and so are the
// workers forked: `cluster.workers` holds them at once. 'listening' and
// 'error' come on a later tick. The user's server then answers `address()`,
// `listening` and `close([callback])` for the balancer (`serverFace`).

const cluster = require('cluster')
const { EventEmitter } = require('events')
const debug = require('debug')('sticky-session-rs')
const { chooseListener } = require('./primary/listener-choice')
const { listenError, stickyError } = require('./errors')
const { TAKEOVER_RETRY_MS, describeSource, systemdSource, resolveAddress, listenSource, lookAgainForOffer, Takeover } = require('./primary/socket-source')
const { SlotSupervisor } = require('./primary/slots')
const { relayListenerEvent, shapeStats } = require('./primary/report')
const { openSlotPorts } = require('./slot-ports')

/**
 * Closing: workers still running this long after `shutdownTimeout` are
 * killed (each has had its own `shutdownTimeout` to finish), and this long
 * after it the primary is closed whatever still runs: within
 * `shutdownTimeout` + 1 s in every state.
 */
const KILL_AFTER_TIMEOUT_MS = 400
const GIVE_UP_AFTER_TIMEOUT_MS = 600

class Primary extends EventEmitter {
  /**
   * `listen` is what the `listen()` call said (lib/listen-arguments.js: port,
   * ipv6Only, signal, callback; its host and backlog are in `options`).
   */
  constructor(server, listen, options) {
    super()
    this.server = server
    this.listenArguments = listen
    this.port = listen.port
    this.options = options
    /** The resolved listening address (set by `bind`). */
    this.address = null
    /** How this primary listens, chosen once by `bind` (lib/listeners.js). */
    this.listener = null
    this.closing = false
    this.closed = false
    /** The workers, by slot: forked, respawned, reloaded (lib/primary/slots.js). */
    this.supervisor = new SlotSupervisor(this)
    /** Both sides of a takeover (lib/primary/socket-source.js). */
    this.takeover = new Takeover(this)
    /** What closing must undo: timers, signal handlers, the abort signal's listener, the server's face. */
    this.timers = new Set()
    this.undo = []
    /** With `slotPorts`: each slot's own listening socket, for a proxy in front (lib/slot-ports.js). */
    this.slotPorts = null
  }

  /** Binds (or adopts) and forks now; 'listening' or 'error' follows on a later tick. */
  start() {
    const { host } = this.options
    const { callback, signal } = this.listenArguments
    this.serverFace()
    if (callback) this.server.once('listening', callback)
    if (signal) {
      // As Node: an aborted signal closes the server, one aborted already at once.
      if (signal.aborted) return this.close()
      const onAbort = () => this.close()
      signal.addEventListener('abort', onAbort, { once: true })
      this.undo.push(() => signal.removeEventListener('abort', onAbort))
    }
    // systemd's variables are consumed at once, before anything can fork.
    let systemd
    try {
      systemd = systemdSource(this.port)
    } catch (error) {
      return this.failToListen(error, host)
    }
    if (systemd) return this.bind(systemd.address, systemd.source)
    let address
    try {
      address = resolveAddress(host)
    } catch (error) {
      return this.failToListen(error, host)
    }
    this.bind(address)
  }

  /** Listening failed: 'error' on the next tick, as `net` reports it; this primary is done (listen may be called again). */
  failToListen(error, host, port = this.port) {
    const reported = listenError(error, { host, port })
    process.nextTick(() => this.server.emit('error', reported))
    this.finish({ listened: false })
  }

  /**
   * The user's server never listens in the primary: it answers for the
   * balancer instead — `address()` (so port 0 works), `listening`, and
   * `close([callback])`, which closes the balancer (workers finish what they
   * have and exit), then calls back and emits 'close', as `net` does. Undone
   * once closed.
   */
  serverFace() {
    const { server } = this
    const own = (name) => Object.getOwnPropertyDescriptor(server, name)
    const before = { address: own('address'), close: own('close'), listening: own('listening') }
    server.address = () => (this.listener && !this.closed ? this.listener.address() : null)
    server.close = (callback) => {
      if (callback) this.whenClosed(callback)
      this.close()
      return server
    }
    // (A portable listener still binding is not listening yet, as with `net`.)
    Object.defineProperty(server, 'listening', { configurable: true, enumerable: true, get: () => Boolean(this.listener) && !this.listener.pending && !this.closing })
    this.undo.push(() => {
      for (const [name, descriptor] of Object.entries(before)) {
        if (descriptor) Object.defineProperty(server, name, descriptor)
        else delete server[name]
      }
    })
  }

  /** `callback()` once closed; `callback(error)` (ERR_SERVER_NOT_RUNNING, as `net`) if this primary never listened. */
  whenClosed(callback) {
    const call = () => {
      if (this.listened === false) {
        const error = new Error('Server is not running.')
        error.code = 'ERR_SERVER_NOT_RUNNING'
        return callback(error)
      }
      callback()
    }
    if (this.closed) process.nextTick(call)
    else this.once('closed', call)
  }

  /** A timer closing clears. */
  later(ms, action) {
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      action()
    }, ms)
    this.timers.add(timer)
    return timer
  }

  bind(address, source = null, attempt = 0) {
    const { options, server } = this
    if (this.closing) return
    this.address = address
    try {
      source = source || listenSource(address, this.port, options)
    } catch (error) {
      return this.failToListen(error, address)
    }
    const listener = this.listen(address, source, attempt)
    if (!listener) return
    try {
      this.slotPorts = openSlotPorts(options)
    } catch (error) {
      listener.stopAccepting(false)
      listener.close()
      return this.failToListen(error, options.slotHost, options.firstSlotPort)
    }
    this.listener = listener
    // The user's server object never listens in the primary; make it report
    // the listener's address so `server.address().port` works with port 0.
    server.address = () => listener.address()
    if (!options.rendezvous) for (let slot = 0; slot < options.workers; slot++) this.supervisor.fork(slot)
    debug('primary %d listening on %o with %d workers (%s, %s)', process.pid, listener.address(), options.workers, listener.mode, describeSource(source))
    // The portable listener binds asynchronously where the runtime does (a
    // host name to look up; Bun, Deno): its workers are forked already, as
    // above, and 'listening' (or 'error') comes once it is bound.
    this.listening(source, listener.pending)
  }

  /**
   * Chooses how to listen, once (lib/primary/listener-choice.js). Returns
   * null when listening failed: an 'error' was emitted, or a retry scheduled.
   */
  listen(address, source, attempt) {
    const spec = { address, port: this.port, adopt: source.adopt, ipv6Only: this.listenArguments.ipv6Only }
    const onEvent = (event) => relayListenerEvent(event, this, this.server)
    const failed = (error) => {
      if (source.client) source.client.close()
      if (!this.retryTakeover(error, address, source, attempt)) this.failToListen(error, address)
      return null
    }
    return chooseListener(spec, source, this.options, { onEvent, failed })
  }

  /**
   * What every way of listening does once the socket is there (or, with
   * `bound`, a promise, once it settles: the portable listener binding).
   */
  listening(source, bound = null) {
    this.listened = true
    if (this.options.handleSignals) this.handleSignals()
    if (source.kind === 'takeover') this.takeover.complete(source)
    else if (this.options.takeover) this.takeover.offerToSuccessor()
    // As `net`: on a later tick (the caller attaches its listener after listen() returns).
    const emitListening = () => !this.closing && !this.listenArguments.alreadyListening && this.server.emit('listening')
    if (bound) bound.then(emitListening, (error) => this.failedToBind(error))
    else process.nextTick(emitListening)
  }

  /** The portable listener could not bind: the workers forked for it leave, and listening failed. */
  failedToBind(error) {
    if (this.closing) return
    for (const worker of this.supervisor.workers()) worker.kill()
    this.failToListen(error, this.address)
  }

  /**
   * With `takeover: true`, the port may be held by a primary between two
   * takeovers (it has just handed it over and its successor does not offer
   * it yet): look again for a short while before reporting EADDRINUSE.
   */
  retryTakeover(error, address, source, attempt) {
    if (!lookAgainForOffer(error, source, attempt, this.options)) return false
    debug('takeover: [%s]:%d is in use and nobody offers it yet; looking again', address, this.port)
    this.later(TAKEOVER_RETRY_MS, () => this.bind(address, null, attempt + 1))
    return true
  }

  /** The upstream block for a proxy over the slot ports (lib/slot-ports.js); null before listening. */
  proxyConfig(proxy, settings) {
    if (!this.listener) return null
    if (!this.slotPorts) {
      throw stickyError('ERR_STICKY_INVALID_OPTION', 'proxyConfig() writes the upstream block over the slot ports: listen with slotPorts (and routing: \'header\' or \'sid\')')
    }
    return this.slotPorts.proxyConfig(proxy, settings)
  }

  /** Where each slot port listens, or null (no slot ports, or before listening). */
  slotAddresses() {
    return this.slotPorts ? this.slotPorts.addresses() : null
  }

  stats() {
    if (!this.listener) return null
    return shapeStats(this.listener, this.supervisor.slots, this.options)
  }

  /**
   * Shutdown (`close()`, `server.close()`, SIGTERM/SIGINT, an aborted
   * signal, a takeover), in order:
   *
   * 1. stop taking new connections: those already in the kernel's queue are
   *    still taken and served, and every accepted one reaches a worker
   *    ('drained');
   * 2. every worker finishes what it has in flight (`server.close()` in the
   *    worker, within `shutdownTimeout`) and exits; none is respawned;
   * 3. everything this primary holds is released — the accept loop's thread
   *    and its descriptors (or the kernel-steered group), timers, signal
   *    handlers, the rendezvous — `callback` runs, and the server emits
   *    'close'. The process exits by itself once the user's own handles are
   *    gone.
   *
   * Whatever the state (workers crashing at start, none connected, a reload
   * under way), this ends within `shutdownTimeout` + 1 s: workers still
   * running `KILL_AFTER_TIMEOUT_MS` after `shutdownTimeout` are killed, and
   * at `GIVE_UP_AFTER_TIMEOUT_MS` step 3 runs whatever remains (connections
   * still waiting for a worker are refused and counted as `droppedNoWorker`).
   */
  close(callback) {
    if (callback) this.whenClosed(callback)
    if (this.closing) return
    this.closing = true
    this.emit('closing')
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    const client = this.takeover.stop()
    const { shutdownTimeout } = this.options
    this.later(shutdownTimeout + KILL_AFTER_TIMEOUT_MS, () => this.killWorkers())
    this.later(shutdownTimeout + GIVE_UP_AFTER_TIMEOUT_MS, () => this.finish())
    this.stopAccepting(client, () => this.retireWorkers(() => this.finish()))
  }

  /** Step 1: `then()` once nothing accepted waits for a worker. */
  stopAccepting(takingOver, then) {
    const { listener } = this
    // The slot ports' last copies are the workers': each takes what is
    // queued on its socket before closing it.
    if (this.slotPorts) this.slotPorts.close()
    if (!listener) return then()
    this.once('drained', then)
    // Refusing new connections is for a shutdown: sockets handed over (or
    // still the old primary's, taking over) go on serving.
    listener.stopAccepting(!takingOver, { refuseNew: !takingOver && !this.takeover.handedOver })
  }

  /** Step 2: each worker finishes what it has and exits; `then()` once all have. */
  retireWorkers(then) {
    const remaining = this.supervisor.workers()
    let left = remaining.length
    if (left === 0) return then()
    for (const worker of remaining) {
      // A worker that exits as it is told (killed by the user meanwhile, say)
      // makes the message fail with EPIPE: nothing to report, it is leaving.
      const leaving = (error) => debug('worker %d: %s while disconnecting it', worker.process.pid, error.code || error.message)
      worker.on('error', leaving)
      worker.once('exit', () => {
        worker.off('error', leaving)
        if (--left === 0) then()
      })
      if (worker.isConnected() && !worker.exitedAfterDisconnect) worker.disconnect()
    }
  }

  killWorkers() {
    const remaining = this.supervisor.workers()
    if (remaining.length) debug('shutdown timeout: killing %d workers', remaining.length)
    for (const worker of remaining) worker.process.kill('SIGKILL')
  }

  /**
   * Step 3 (also what a failed listen ends with): releases everything this
   * primary holds; then 'closed', the callbacks, and the server's 'close'.
   */
  finish({ listened = true } = {}) {
    if (this.closed) return
    this.closing = true
    this.closed = true
    if (!listened) this.listened = false
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    if (this.listener) this.listener.close()
    if (this.options.rendezvous) this.options.rendezvous.release()
    for (const undo of this.undo.splice(0)) undo()
    debug('primary %d closed', process.pid)
    this.emit('closed')
    if (listened) process.nextTick(() => this.server.emit('close'))
  }

  /** Rolling reload (lib/primary/slots.js). */
  reload(callback) {
    return this.supervisor.reload(callback)
  }

  /**
   * SIGTERM / SIGINT: graceful shutdown, then exit 0. SIGHUP: rolling reload.
   * The handlers leave when this primary has closed.
   */
  handleSignals() {
    const shutdown = (signal) => {
      debug('primary got %s: shutting down', signal)
      // Also when already closing (by close()): exit once closed.
      this.close()
      this.whenClosed(() => process.exit(0))
    }
    const reload = () => {
      debug('primary got SIGHUP: rolling reload')
      this.reload((error) => {
        if (error && error.code === 'ERR_STICKY_RELOAD_INTERRUPTED') debug(error.message)
        else if (error) this.server.emit('error', error)
      })
    }
    const handlers = { SIGTERM: shutdown, SIGINT: shutdown, SIGHUP: reload }
    for (const [signal, handler] of Object.entries(handlers)) process.on(signal, handler)
    this.undo.push(() => {
      for (const [signal, handler] of Object.entries(handlers)) process.off(signal, handler)
    })
  }
}

/** Starts balancing `server` where `listen` (lib/listen-arguments.js) says, with `options` (lib/options.js). */
function startPrimary(server, listen, options) {
  if (!cluster.isPrimary) throw stickyError('ERR_STICKY_NOT_PRIMARY', 'startPrimary must run in the cluster primary')
  const primary = new Primary(server, listen, options)
  primary.start()
  return primary
}

module.exports = { startPrimary }

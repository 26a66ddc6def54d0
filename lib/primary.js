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
//
// `Primary` wires the parts together, in the order a primary runs:
//   lib/primary/socket-source.js    where the socket comes from (systemd, a
//                                   host name, a takeover, a bind), and both
//                                   sides of a takeover
//   lib/primary/listener-choice.js  how to listen: kernel group, accept loop
//                                   (the fallback), or the portable listener
//   lib/primary/slots.js            the workers: fork, respawn, rolling reload
//   lib/primary/report.js           the listener's events relayed, stats()
//   lib/primary/shutdown.js         close (its three steps, the deadline) and
//                                   the signals
// It holds what they share: the options, the server, the listener, the slot
// ports, the lifecycle (closing, closed), its timers (`later`) and what
// closing undoes, and its events ('slot-ready', 'drained', 'closing',
// 'closed').

const cluster = require('cluster')
const { EventEmitter } = require('events')
const debug = require('debug')('sticky-session-rs')
const { chooseListener } = require('./primary/listener-choice')
const { codes, listenError, stickyError } = require('./errors')
const { TAKEOVER_RETRY_MS, describeSource, systemdSource, resolveAddress, listenSource, lookAgainForOffer, Takeover } = require('./primary/socket-source')
const { SlotSupervisor } = require('./primary/slots')
const { relayListenerEvent, shapeStats } = require('./primary/report')
const shutdown = require('./primary/shutdown')
const { openSlotPorts } = require('./slot-ports')

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
    shutdown.finish(this, { listened: false })
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
    if (this.options.handleSignals) shutdown.handleSignals(this)
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
      throw stickyError(codes.INVALID_OPTION, 'proxyConfig() writes the upstream block over the slot ports: listen with slotPorts (and routing: \'header\' or \'sid\')')
    }
    return this.slotPorts.proxyConfig(proxy, settings)
  }

  /** Where each slot port listens, or null (no slot ports, or before listening). */
  slotAddresses() {
    return this.slotPorts ? this.slotPorts.addresses() : null
  }

  stats() {
    if (!this.listener) return null
    return shapeStats(this.listener, this.options)
  }

  /** Shuts down (lib/primary/shutdown.js); `callback` once closed. */
  close(callback) {
    shutdown.close(this, callback)
  }

  /** Rolling reload (lib/primary/slots.js). */
  reload(callback) {
    return this.supervisor.reload(callback)
  }
}

/** Starts balancing `server` where `listen` (lib/listen-arguments.js) says, with `options` (lib/options.js). */
function startPrimary(server, listen, options) {
  if (!cluster.isPrimary) throw stickyError(codes.NOT_PRIMARY, 'startPrimary must run in the cluster primary')
  const primary = new Primary(server, listen, options)
  primary.start()
  return primary
}

module.exports = { startPrimary }

'use strict'

// The portable path's primary, for where there is no native binding (macOS,
// Windows, an unsupported libc or CPU) or STICKY_SESSION_PORTABLE=1 asks
// for it. It has the interface of lib/listeners.js, so lib/primary.js forks,
// respawns, reloads and shuts down exactly as it does for the native accept
// loop. What differs is how a connection travels: the primary's net.Server
// accepts it (paused: nothing is read in 'ip' routing), the JavaScript
// copies of the Rust router and rendezvous hash (lib/portable/) choose the
// slot, and Node's cluster IPC hands the socket to the worker
// (`worker.send(message, socket)`, as sticky-session does). In the other
// routing modes the primary reads the head (or the PROXY header) first and
// sends the bytes it read along; the worker puts them back in front of the
// socket (a PROXY header is consumed).
//
// The primary keeps its copy of each socket until the worker reports it
// taken, so what a worker that died or left never took goes to each
// client's next choice (lib/portable/ledger.js). Workers speak on their
// cluster IPC channel, in internal messages the user's 'message' listeners
// never see (lib/portable/channel.js: the messages, and the worker's end).
//
// Workers the user forks (setupMaster, `options.rendezvous`): any worker of
// this cluster that says 'ready' gets a free slot, whenever it was forked
// (those forked before are asked to say it again when this listener
// starts). While no worker exists at all, connections are answered 503.

const cluster = require('cluster')
const net = require('net')
const debug = require('debug')('sticky-session-rs')
const { Router } = require('./routing')
const { Ledger } = require('./ledger')
const { SessionTable } = require('./sessions')
const { parsePeer, formatIp } = require('./address')
const { statsFields } = require('./options')
const { noWorkerGraceMs, eventKinds } = require('./contract')
const { codes } = require('../errors')
const { stopReading, lateBytes, resetSocket, answerUnavailable } = require('../runtime')
const { hearWorkers, tellWorker, helloToEveryWorker } = require('./channel')

const EMPTY = Buffer.alloc(0)
/** How often idle engine.io sessions are forgotten (as the native accept loop does). */
const SESSION_SWEEP_MS = 5000

/** Every field the stats fields name, at 0: `{ ...primary counters, slots: [{ ...slot fields }] }` (a slot's `state` by its number). */
function zeroStats(slots) {
  const zeros = (scope) => Object.fromEntries(statsFields().filter((field) => field.scope === scope && !field.aliasOf).map((field) => [field.name, 0]))
  return { ...zeros('primary'), slots: Array.from({ length: slots }, () => zeros('slot')) }
}

class PortableListener {
  /**
   * Binds `spec.address`:`spec.port` (synchronously where the runtime does:
   * Node in a cluster primary, an IP address; else `pending` settles once
   * bound, and is null from then on) and takes connections for the workers
   * `watch`ed or (setupMaster) saying 'ready'.
   */
  constructor(spec, options, onEvent) {
    this.mode = 'portable'
    this.options = options
    /** Every option resolved (lib/portable/options.js). */
    const { config } = options
    this.config = config
    this.onEvent = onEvent
    this.router = new Router(config)
    this.counters = zeroStats(options.workers)
    const sessions = options.routing === 'sid' ? new SessionTable(options.workers, config.loadBalancingMethod, config.sessionTtl, config.maxSessions, config.seed) : null
    this.ledger = new Ledger({ slots: options.workers, hrw: this.router.hrw, sessions, stats: this.counters })
    this.maxHeaderBytes = config.maxHeaderBytes
    this.nextId = 0
    /** channel id (cluster worker id) -> worker */
    this.workers = new Map()
    /** Sockets reading their header -> the function that abandons them (shutdown). */
    this.reading = new Map()
    this.stopping = false
    this.closed = false
    this.drainedReported = false
    this.timers = new Set()

    this.server = net.createServer({ pauseOnConnect: true }, (socket) => this.onConnection(socket))
    /** While `pending`: the address being bound, when it is an IP address and a port (else null). */
    this.bindingAddress = null
    this.pending = this.bind(spec, options)

    this.stopHearing = hearWorkers((worker, message) => this.onWorkerMessage(worker, message))
    this.stopWatchingWorkers = options.rendezvous ? this.watchWorkersExist() : () => {}
    // Workers the user forked before this listener said 'ready' to nobody: ask again.
    if (options.rendezvous) helloToEveryWorker()
    // Until every worker is ready, or startupWait: connections wait (parked).
    this.later(() => this.apply(this.ledger.startAccepting(Date.now())), options.startupWait)
    if (sessions) {
      const sweep = setInterval(() => this.apply(this.ledger.expire(Date.now())), SESSION_SWEEP_MS)
      sweep.unref()
      this.timers.add(sweep)
    }
  }

  /** Listens; returns null when bound already, else a promise that settles when bound. */
  bind(spec, options) {
    const { server } = this
    const { config } = options
    const listenOptions = { port: spec.port, backlog: config.backlog, exclusive: true, ipv6Only: Boolean(spec.ipv6Only), ...(config.hostIsDefault ? {} : { host: spec.address }) }
    let bindError = null
    const onBindError = (error) => (bindError = error)
    server.once('error', onBindError)
    server.listen(listenOptions)
    const listening = () => {
      server.removeListener('error', onBindError)
      server.on('error', (error) => this.onAcceptError(error))
    }
    if (server.listening) {
      listening()
      return null
    }
    // `net` looks even an IP address up (a tick) before it binds; the native
    // path binds at once. Meanwhile the address is known when the port is:
    // setupMaster given a listening httpServer takes its address over, and
    // the user's code asks for it in the same turn.
    const family = net.isIP(spec.address)
    if (family !== 0 && spec.port !== 0) this.bindingAddress = { address: spec.address, family: `IPv${family}`, port: spec.port }
    return new Promise((resolve, reject) => {
      if (bindError) return reject(bindError)
      server.removeListener('error', onBindError)
      server.once('error', reject)
      server.once('listening', () => {
        server.removeListener('error', reject)
        this.pending = null
        // Closed while binding (a host name being looked up): nothing may listen now.
        if (this.closed) server.close()
        listening()
        resolve()
      })
    })
  }

  /**
   * Workers the user forks: tells the ledger whether any exists (at once
   * when one does, after `noWorkerGraceMs` when none does, as the native
   * accept loop's NO_WORKER_GRACE: a worker's 'fork' event comes a tick
   * after fork(), and one that exits may be replaced at once by the user's
   * 'exit' handler). Returns the function that stops.
   */
  watchWorkersExist() {
    let grace = null
    const update = () => {
      const exist = Object.values(cluster.workers || {}).some((worker) => !worker.isDead())
      if (exist) {
        clearTimeout(grace)
        grace = null
        if (!this.ledger.workersExist) this.apply(this.ledger.setWorkersExist(true))
      } else if (this.ledger.workersExist && !grace) {
        grace = setTimeout(() => {
          grace = null
          if (!Object.values(cluster.workers || {}).some((worker) => !worker.isDead())) this.apply(this.ledger.setWorkersExist(false))
        }, noWorkerGraceMs)
        grace.unref()
      }
    }
    // An exiting worker is dead once its 'exit' has been emitted.
    const onExit = () => process.nextTick(update)
    cluster.on('fork', update)
    cluster.on('exit', onExit)
    update()
    return () => {
      clearTimeout(grace)
      cluster.off('fork', update)
      cluster.off('exit', onExit)
    }
  }

  address() {
    if (this.pending) return this.bindingAddress || null
    return this.server.address()
  }

  /** The worker's channel is its cluster IPC channel: nothing goes in its stdio. */
  workerEnd() {
    return { fd: null, variable: 'STICKY_CHANNEL_FD', afterFork: () => {} }
  }

  watch(worker, slot) {
    this.track(worker)
    this.ledger.open(worker.id, slot, worker.process.pid)
  }

  /**
   * Its channel ends when the worker disconnects, or, when it died, once
   * its process closed: after its exit and every message it sent (a worker
   * killed with sockets queued for it never disconnects: Node waits for
   * their acknowledgements first). Either way after its last 'taken'.
   */
  track(worker) {
    if (this.workers.has(worker.id)) return
    this.workers.set(worker.id, worker)
    const closed = (reason) => () => {
      this.workers.delete(worker.id)
      this.apply(this.ledger.closed(Date.now(), worker.id, reason))
    }
    worker.once('disconnect', closed('its worker closed the channel'))
    worker.process.once('close', closed('its worker exited'))
  }

  /** Nothing to do: the replaced worker was told when its replacement said it was ready. */
  retire() {}

  /** Workers the user forks (setupMaster) talk over cluster IPC, which only this cluster's workers have. */
  allowWorker() {}

  forgetWorker() {}

  listeningFds() {
    return []
  }

  stats() {
    const { slots, ...counters } = this.counters
    const fields = statsFields()
    const primary = {}
    for (const field of fields.filter((f) => f.scope === 'primary')) primary[field.name] = counters[field.name] || 0
    primary.dropped = fields.filter((field) => field.dropped).reduce((sum, field) => sum + (field.scope === 'primary' ? primary[field.name] : slots.reduce((total, slot) => total + (slot[field.name] || 0), 0)), 0)
    const slotStats = slots.map((slot, index) => {
      const values = { ...slot, sessions: this.ledger.sessionsOf(index) }
      const entry = { slot: index }
      // A renamed field's old name (`aliasOf`) carries the field's value; a
      // field whose values have names (`state`) shows the name, as the
      // binding's stats() does.
      for (const field of fields.filter((f) => f.scope === 'slot')) {
        entry[field.name] = field.aliasOf ? (values[field.aliasOf] ?? 0) : field.values ? field.values[values[field.name]] : (values[field.name] ?? 0)
      }
      return entry
    })
    return { ...primary, slots: slotStats }
  }

  /**
   * Stops accepting (new connections are refused; the native path's
   * `drainQueue` and `refuseNew` mean nothing here: there is no takeover);
   * 'drained' follows once every accepted connection is with a worker.
   */
  stopAccepting() {
    this.stopping = true
    this.server.close()
    this.apply(this.ledger.abandonParked())
    this.checkDrained()
  }

  /**
   * Once every worker has exited, or the shutdown ran out of time: what
   * still waits for a worker is reset (counted), the primary's copies of
   * what was sent are closed, and nothing of this listener is left running.
   */
  close() {
    if (this.closed) return
    this.closed = true
    this.stopping = true
    for (const abandon of this.reading.values()) abandon()
    this.apply(this.ledger.terminate())
    this.stopHearing()
    this.stopWatchingWorkers()
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    if (this.server.listening) this.server.close()
  }

  // ---- connections --------------------------------------------------------------------

  onConnection(socket) {
    this.counters.accepted++
    // The primary's copy is released by hand once the worker has the socket:
    // it must not count as a connection of the listening server (whose
    // close would wait for it), nor be tracked as sent to a worker.
    if (typeof this.server._connections === 'number') this.server._connections--
    socket.server = null
    socket._server = null
    socket.on('error', () => {})
    const peer = parsePeer(socket.remoteAddress)
    if (!peer) {
      // Gone before it could be looked at (reset by the client).
      this.counters.closedBeforeHeader++
      socket.destroy()
      return
    }
    if (this.stopping) {
      resetSocket(socket)
      return
    }
    const decision = this.router.decide(peer, EMPTY)
    if (decision.incomplete) this.readHeader(socket, peer)
    else this.decided(socket, decision, EMPTY)
  }

  /** Reads until the router decides, within headerTimeout and maxHeaderBytes. */
  readHeader(socket, peer) {
    this.counters.readingHeader++
    let bytes = EMPTY
    let settled = false
    const settle = () => {
      settled = true
      this.counters.readingHeader--
      clearTimeout(timer)
      this.timers.delete(timer)
      this.reading.delete(socket)
      socket.removeListener('data', onData)
      socket.removeListener('end', onEnd)
      socket.removeListener('close', onEnd)
    }
    const refuse = (counter) => {
      settle()
      this.counters[counter]++
      resetSocket(socket)
      this.checkDrained()
    }
    const onData = (chunk) => {
      if (settled) return
      bytes = bytes.length === 0 ? chunk : Buffer.concat([bytes, chunk])
      const decision = this.router.decide(peer, bytes.subarray(0, this.maxHeaderBytes))
      if (decision.incomplete) {
        if (bytes.length >= this.maxHeaderBytes) refuse('droppedInvalidHeader')
        return
      }
      settle()
      if (decision.invalid) {
        this.counters[decision.invalid === 'untrusted-proxy' ? 'droppedUntrustedProxy' : 'droppedInvalidHeader']++
        resetSocket(socket)
        this.checkDrained()
        return
      }
      const rest = stopReading(socket)
      lateBytes(socket, (late) => this.decided(socket, decision, Buffer.concat([bytes, rest, late])))
    }
    const onEnd = () => {
      if (settled) return
      settle()
      this.counters.closedBeforeHeader++
      socket.destroy()
      this.checkDrained()
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      if (settled) return
      // Node runs its timers before it polls for I/O: after a turn that ran
      // late (a storm, a starved CPU) this fires ahead of bytes that arrived
      // in time and wait unread. The poll phase comes before setImmediate's:
      // the bytes are read first, and a client that sent its header within
      // headerTimeout keeps it, as the native reader's does.
      setImmediate(() => !settled && refuse('droppedHeaderTimeout'))
    }, this.config.headerTimeout)
    this.timers.add(timer)
    this.reading.set(socket, () => !settled && refuse('droppedHeaderTimeout'))
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.once('close', onEnd)
    socket.resume()
  }

  /** The router decided from `bytes` (what was read of the socket). */
  decided(socket, decision, bytes) {
    if (decision.invalid) {
      this.counters[decision.invalid === 'untrusted-proxy' ? 'droppedUntrustedProxy' : 'droppedInvalidHeader']++
      resetSocket(socket)
      return
    }
    const { route, client, consume } = decision.complete
    const connection = { id: ++this.nextId, socket, head: bytes.length > consume ? bytes.subarray(consume) : null, client }
    // A request naming a session not reported yet: its report may be
    // waiting unread on the worker's channel (it leaves before the handshake
    // response); one turn of the event loop reads it.
    if (route.sid !== undefined && !this.ledger.knowsSession(route.sid)) {
      setImmediate(() => this.apply(this.ledger.accept(Date.now(), route, connection)))
      return
    }
    this.apply(this.ledger.accept(Date.now(), route, connection))
  }

  onAcceptError(error) {
    this.counters.acceptErrors++
    this.onEvent({ kind: eventKinds.Error, code: error.code || codes.LISTEN, message: `accept failed: ${error.message}; retrying`, fatal: false })
  }

  // ---- workers ------------------------------------------------------------------------

  onWorkerMessage(worker, message) {
    // Forking its workers itself, this listener hears only those.
    if (!this.options.rendezvous && !this.workers.has(worker.id)) return
    const now = Date.now()
    switch (message.act) {
      case 'ready':
        if (this.stopping) return
        this.track(worker)
        this.apply(this.ledger.hello(now, worker.id, worker.process.pid))
        if (this.ledger.live.length === this.options.workers) this.apply(this.ledger.startAccepting(now))
        break
      case 'taken':
        if (Array.isArray(message.ids)) this.apply(this.ledger.taken(worker.id, message.ids))
        break
      case 'leaving':
        this.apply(this.ledger.leaving(worker.id))
        break
      case 'session':
        if (typeof message.sid === 'string') this.apply(this.ledger.session(now, worker.id, message.sid, Boolean(message.opened)))
        break
    }
  }

  /** Carries out what the ledger decided. */
  apply(actions) {
    for (const action of actions) {
      if (action.send) this.send(action.send.channel, action.send.connection)
      else if (action.release) action.release.socket.destroy()
      else if (action.reset) resetSocket(action.reset.socket)
      else if (action.unavailable) answerUnavailable(action.unavailable.socket)
      else if (action.replace) this.tell(action.replace, { act: 'replaced' })
      else if (action.notify) this.notify(action.notify)
    }
    this.checkDrained()
  }

  send(channel, connection) {
    const worker = this.workers.get(channel)
    const { id, socket, head, client } = connection
    const message = { act: 'connection', id }
    // The bytes read go first, on their own: a message that carries a socket
    // must be small, for Node reads its descriptor with the message's first
    // bytes, and a long one would arrive in several reads, its descriptor
    // with the wrong one.
    if (head) this.tell(channel, { act: 'head', id, head: head.toString('base64') })
    if (client) Object.assign(message, { remoteAddress: formatIp(client.ip), remotePort: client.port, remoteFamily: client.ip.v4 ? 'IPv4' : 'IPv6' })
    // Failing, the channel is closing: its 'disconnect' re-dispatches what was not taken.
    const callback = (error) => error && debug('sending connection %d to worker %d failed: %s', id, channel, error.message)
    tellWorker(worker, message, { socket, options: { keepOpen: true }, callback })
  }

  tell(channel, message) {
    const worker = this.workers.get(channel)
    if (worker) tellWorker(worker, message, { callback: (error) => error && debug('telling worker %d failed: %s', channel, error.message) })
  }

  notify(notice) {
    if (notice.kind === 'rejected') {
      const message = `process ${notice.pid} is not a worker of this cluster or every worker slot is taken (maxWorkers): it gets no connections`
      this.onEvent({ kind: eventKinds.Error, code: codes.FOREIGN_CHANNEL, message, fatal: false })
      return
    }
    this.onEvent(notice)
  }

  checkDrained() {
    if (!this.stopping || this.drainedReported || this.reading.size > 0 || !this.ledger.isDrained()) return
    this.drainedReported = true
    process.nextTick(() => this.onEvent({ kind: eventKinds.Drained }))
  }

  later(callback, ms) {
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      callback()
    }, ms)
    timer.unref()
    this.timers.add(timer)
  }
}

module.exports = { PortableListener }

'use strict'

// The primary: binds the public port through the native accept loop, forks one
// worker per slot with the slot's channel in its stdio, and respawns a worker
// into the same slot when it exits. The primary's JavaScript never handles a
// connection.

const cluster = require('cluster')
const { EventEmitter } = require('events')
const dns = require('dns')
const fs = require('fs')
const net = require('net')
const debug = require('debug')('sticky-session-rs')
const { Balancer, ReuseportGroup, statsFields } = require('./native')
const { listenError, stickyError } = require('./errors')
const { kernelModeObstacle } = require('./worker')
const { pm2WorkerEnvironment } = require('./pm2')

/** Respawns of a worker that lived shorter than this back off (crash loops). */
const QUICK_EXIT_MS = 1000
const MAX_RESPAWN_DELAY_MS = 5000

class Primary extends EventEmitter {
  constructor(server, port, options) {
    super()
    this.server = server
    this.port = port
    this.options = options
    this.balancer = null
    this.closing = false
    this.reloading = null
    /** slot -> { worker, startedAt, quickExits } */
    this.slots = new Map()
  }

  start() {
    const { host } = this.options
    if (net.isIP(host)) {
      process.nextTick(() => this.bind(host))
      return
    }
    dns.lookup(host, (error, address) => {
      if (error) return this.server.emit('error', listenError(error, { host, port: this.port }))
      this.bind(address)
    })
  }

  bind(address) {
    const { options, server } = this
    if (options.kernel && this.bindKernelGroup(address)) return
    try {
      this.balancer = new Balancer(
        this.listenSpec(address),
        {
          maxPendingPerSlot: options.maxPendingPerSlot,
          maxParked: options.maxParked,
          startupWait: options.startupWait,
          routing: options.routing,
          header: options.header,
          trustedProxies: options.trustedProxies,
          ignoreMissingHeader: options.ignoreMissingHeader,
          headerTimeout: options.headerTimeout,
          maxHeaderBytes: options.maxHeaderBytes,
          maxPendingHeaders: options.maxPendingHeaders,
          loadBalancingMethod: options.loadBalancingMethod,
          sessionTtl: options.sessionTtl,
          maxSessions: options.maxSessions,
          rendezvous: options.rendezvous,
        },
        (event) => this.onBalancerEvent(event),
      )
    } catch (error) {
      server.emit('error', listenError(error, { host: address, port: this.port }))
      return
    }
    // The user's server object never listens in the primary; make it report
    // the balancer's address so `server.address().port` works with port 0.
    const balancer = this.balancer
    server.address = () => balancer.address()
    if (options.rendezvous) this.admitUserForkedWorkers()
    else for (let slot = 0; slot < options.workers; slot++) this.fork(slot)
    debug('primary %d listening on %o with %d workers', process.pid, balancer.address(), options.workers)
    if (options.handleSignals) this.handleSignals()
    server.emit('listening')
  }

  /** Where and how to listen: what the accept loop and the kernel group share. */
  listenSpec(address) {
    const { options } = this
    return { host: address, hostIsDefault: options.hostIsDefault, port: this.port, backlog: options.backlog, workers: options.workers, seed: options.seed }
  }

  /**
   * Kernel-steered mode: one SO_REUSEPORT listener per slot, steered by a
   * BPF program; the primary only forks. Returns false to fall back to the
   * accept loop where the kernel refuses.
   */
  bindKernelGroup(address) {
    const { options, server } = this
    try {
      const obstacle = kernelModeObstacle()
      if (obstacle) throw stickyError('ERR_STICKY_KERNEL_UNSUPPORTED', obstacle)
      this.group = new ReuseportGroup(this.listenSpec(address))
    } catch (error) {
      if (error.code === 'ERR_STICKY_KERNEL_UNSUPPORTED') {
        process.emitWarning(`${error.message}; falling back to the accept loop`, { code: error.code, type: 'StickySessionWarning' })
        return false
      }
      server.emit('error', listenError(error, { host: address, port: this.port }))
      return true
    }
    const group = this.group
    server.address = () => group.address()
    for (let slot = 0; slot < options.workers; slot++) this.fork(slot)
    debug('primary %d: kernel-steered group on %o with %d workers', process.pid, group.address(), options.workers)
    if (options.handleSignals) this.handleSignals()
    server.emit('listening')
    return true
  }

  /**
   * Forks a worker into `slot`, giving it the slot's channel as an extra
   * stdio entry. Cluster settings are global: they are restored at once so a
   * later `cluster.fork()` by the user does not pass a closed descriptor.
   */
  fork(slot) {
    const kernel = Boolean(this.group)
    // The kernel group's socket stays the primary's (and open); a channel's
    // worker end is the child's alone.
    const channelFd = kernel ? this.group.fd(slot) : this.balancer.openSlot(slot)
    const previousStdio = cluster.settings.stdio
    const stdio = previousStdio
      ? previousStdio.slice()
      : cluster.settings.silent
        ? ['pipe', 'pipe', 'pipe', 'ipc']
        : ['inherit', 'inherit', 'inherit', 'ipc']
    while (stdio.length < 4) stdio.push('ignore')
    const channelIndex = stdio.length
    stdio.push(channelFd)
    let worker
    try {
      cluster.setupPrimary({ stdio })
      worker = cluster.fork({
        ...pm2WorkerEnvironment(),
        ...this.options.env,
        STICKY_WORKER_SLOT: String(slot),
        [kernel ? 'STICKY_LISTEN_FD' : 'STICKY_CHANNEL_FD']: String(channelIndex),
        STICKY_ROUTING: this.options.routing,
        STICKY_SHUTDOWN_TIMEOUT: String(this.options.shutdownTimeout),
        STICKY_HANDLE_SIGNALS: this.options.handleSignals ? '1' : '0',
      })
    } finally {
      cluster.setupPrimary({ stdio: previousStdio })
      if (!kernel) fs.closeSync(channelFd)
    }
    const state = this.slots.get(slot) || { quickExits: 0, forks: 0 }
    state.worker = worker
    state.pid = worker.process.pid
    state.forks++
    if (kernel) {
      worker.on('message', (message) => {
        if (message && message.stickySessionRs === 'ready') this.emit('slot-ready', slot, worker.process.pid)
      })
    }
    state.startedAt = Date.now()
    this.slots.set(slot, state)
    debug('forked worker %d (pid %d) into slot %d', worker.id, worker.process.pid, slot)
    worker.once('exit', (code, signal) => this.onWorkerExit(slot, worker, code, signal))
  }

  /**
   * The user forks the workers (@socket.io/sticky shape): tell the accept
   * loop which pids are this cluster's workers, the only processes that may
   * take a channel.
   */
  admitUserForkedWorkers() {
    const balancer = this.balancer
    const admit = (worker) => worker.process && worker.process.pid && balancer.allowWorker(worker.process.pid)
    Object.values(cluster.workers || {}).forEach(admit)
    cluster.on('fork', admit)
    cluster.on('exit', (worker) => worker.process && worker.process.pid && balancer.forgetWorker(worker.process.pid))
  }

  onWorkerExit(slot, worker, code, signal) {
    const state = this.slots.get(slot)
    if (!state || state.worker !== worker) return
    state.worker = null
    if (this.closing) return
    const lived = Date.now() - state.startedAt
    state.quickExits = lived < QUICK_EXIT_MS ? state.quickExits + 1 : 0
    const delay = state.quickExits === 0 ? 0 : Math.min(100 * 2 ** (state.quickExits - 1), MAX_RESPAWN_DELAY_MS)
    debug('worker %d of slot %d exited (code %s, signal %s); respawning in %d ms', worker.id, slot, code, signal, delay)
    const respawn = () => {
      if (this.closing || this.slots.get(slot).worker) return
      try {
        this.fork(slot)
      } catch (error) {
        this.server.emit('error', error)
      }
    }
    if (delay === 0) respawn()
    else setTimeout(respawn, delay)
  }

  onBalancerEvent(event) {
    switch (event.kind) {
      case 'slot-ready':
        debug('slot %d ready (pid %d)', event.slot, event.pid)
        this.emit('slot-ready', event.slot, event.pid)
        break
      case 'drained':
        debug('accept queue drained; every accepted connection is with a worker')
        this.emit('drained')
        break
      case 'slot-closed':
        debug('slot %d closed: %s; %d connections re-dispatched', event.slot, event.reason, event.requeued)
        break
      case 'error': {
        const error = stickyError(event.code, event.message, { fatal: event.fatal })
        debug('accept loop error %s: %s', event.code, event.message)
        // A fatal error stopped the accept loop: the user must hear of it, as
        // `net` reports errors. A passing one (EMFILE, retried) is a warning.
        if (event.fatal) this.server.emit('error', error)
        else process.emitWarning(error.message, { code: error.code, type: 'StickySessionWarning' })
        break
      }
    }
  }

  stats() {
    if (this.group) return this.kernelStats()
    if (!this.balancer) return null
    const stats = this.balancer.stats()
    // With user-forked workers the slots are a capacity: list the ones used.
    if (this.options.rendezvous) stats.slots = stats.slots.filter((slot) => slot.pid !== 0 || slot.dispatched > 0)
    return stats
  }

  /**
   * Stops accepting (connections already in the kernel's queue are still
   * served), waits until every accepted connection is with a worker, then
   * lets every worker finish what it has in flight (`server.close()` in the
   * worker) and exit; `callback` runs when all have. Workers still running
   * after `shutdownTimeout` are killed.
   */
  close(callback) {
    const done = () => callback && process.nextTick(callback)
    if (this.closing) {
      if (this.closed) done()
      else this.once('closed', done)
      return
    }
    this.closing = true
    this.once('closed', done)
    const workers = () =>
      this.options.rendezvous
        ? Object.values(cluster.workers || {})
        : [...this.slots.values()].map((state) => state.worker).filter(Boolean)
    const finish = () => {
      if (this.closed) return
      this.closed = true
      clearTimeout(killTimer)
      this.emit('closed')
    }
    const killTimer = setTimeout(() => {
      debug('shutdown timeout: killing %d workers', workers().length)
      for (const worker of workers()) worker.process.kill('SIGKILL')
    }, this.options.shutdownTimeout + 1000)
    const disconnectWorkers = () => {
      const remaining = workers().filter((worker) => !worker.isDead())
      let left = remaining.length
      if (left === 0) return finish()
      for (const worker of remaining) {
        worker.once('exit', () => --left === 0 && finish())
        if (worker.isConnected()) worker.disconnect()
      }
    }
    if (this.group) {
      this.once('closed', () => this.group.close())
      return disconnectWorkers()
    }
    if (!this.balancer) return disconnectWorkers()
    this.once('drained', disconnectWorkers)
    this.balancer.close()
  }

  /** Kernel mode: the primary sees no connection; only the slots. */
  kernelStats() {
    const zeros = (scope) => Object.fromEntries(statsFields().filter((field) => field.scope === scope).map((field) => [field.name, 0]))
    const slots = [...this.slots.entries()].map(([slot, state]) => {
      const live = Boolean(state.worker && !state.worker.isDead())
      return { slot, ...zeros('slot'), pid: live ? state.worker.process.pid : 0, state: live ? 'live' : 'down', respawns: state.forks - 1 }
    })
    return { ...zeros('primary'), kernel: true, slots }
  }

  /**
   * Rolling reload: for each slot in turn, starts a new worker, waits until it
   * is ready (it then takes the slot, and what the old worker had not taken),
   * then lets the old worker finish and exit before the next slot. The slot
   * is never without a worker; clients keep their slot.
   */
  reload(callback) {
    if (this.options.rendezvous) {
      const error = stickyError('ERR_STICKY_RELOAD_UNSUPPORTED', 'reload() restarts workers sticky-session-rs forked; with setupMaster you fork them yourself')
      if (callback) return process.nextTick(callback, error)
      throw error
    }
    if (this.reloading) return this.reloading.then(() => this.reload(callback))
    const replaceSlot = (slot) =>
      new Promise((resolve, reject) => {
        const old = this.slots.get(slot) && this.slots.get(slot).worker
        const timer = setTimeout(() => reject(stickyError('ERR_STICKY_RELOAD_TIMEOUT', `the new worker for slot ${slot} was not ready within ${this.options.shutdownTimeout} ms`)), this.options.shutdownTimeout)
        this.fork(slot)
        const fresh = this.slots.get(slot).worker
        const onReady = (readySlot, pid) => {
          if (readySlot !== slot || pid !== fresh.process.pid) return
          this.off('slot-ready', onReady)
          clearTimeout(timer)
          // The old worker was told its channel closed (kernel mode: it is
          // disconnected here): it drains and exits.
          if (!old || old.isDead()) return resolve()
          if (this.group && old.isConnected()) old.disconnect()
          old.once('exit', () => resolve())
        }
        this.on('slot-ready', onReady)
      })
    this.reloading = (async () => {
      for (let slot = 0; slot < this.options.workers && !this.closing; slot++) await replaceSlot(slot)
    })()
    const settle = this.reloading.finally(() => (this.reloading = null))
    if (callback) settle.then(() => callback(null), callback)
    return settle
  }

  /** SIGTERM / SIGINT: graceful shutdown, then exit 0. SIGHUP: rolling reload. */
  handleSignals() {
    const shutdown = (signal) => {
      debug('primary got %s: shutting down', signal)
      this.close(() => process.exit(0))
    }
    process.once('SIGTERM', shutdown)
    process.once('SIGINT', shutdown)
    process.on('SIGHUP', () => {
      debug('primary got SIGHUP: rolling reload')
      this.reload((error) => error && this.server.emit('error', error))
    })
  }
}

function startPrimary(server, port, options) {
  if (!cluster.isPrimary) throw stickyError('ERR_STICKY_NOT_PRIMARY', 'startPrimary must run in the cluster primary')
  const primary = new Primary(server, port, options)
  primary.start()
  return primary
}

module.exports = { startPrimary }

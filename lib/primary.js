'use strict'

// The primary: binds the public port through the native accept loop, forks one
// worker per slot with the slot's channel in its stdio, and respawns a worker
// into the same slot when it exits. The primary's JavaScript never handles a
// connection.

const cluster = require('cluster')
const dns = require('dns')
const fs = require('fs')
const net = require('net')
const debug = require('debug')('sticky-session-rs')
const { Balancer } = require('./native')
const { listenError, stickyError } = require('./errors')

/** Respawns of a worker that lived shorter than this back off (crash loops). */
const QUICK_EXIT_MS = 1000
const MAX_RESPAWN_DELAY_MS = 5000

class Primary {
  constructor(server, port, options) {
    this.server = server
    this.port = port
    this.options = options
    this.balancer = null
    this.closing = false
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
    try {
      this.balancer = new Balancer(
        {
          host: address,
          hostIsDefault: options.hostIsDefault,
          port: this.port,
          backlog: options.backlog,
          workers: options.workers,
          seed: options.seed,
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
    server.emit('listening')
  }

  /**
   * Forks a worker into `slot`, giving it the slot's channel as an extra
   * stdio entry. Cluster settings are global: they are restored at once so a
   * later `cluster.fork()` by the user does not pass a closed descriptor.
   */
  fork(slot) {
    const channelFd = this.balancer.openSlot(slot)
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
        ...this.options.env,
        STICKY_WORKER_SLOT: String(slot),
        STICKY_CHANNEL_FD: String(channelIndex),
        STICKY_ROUTING: this.options.routing,
      })
    } finally {
      cluster.setupPrimary({ stdio: previousStdio })
      fs.closeSync(channelFd)
    }
    const state = this.slots.get(slot) || { quickExits: 0 }
    state.worker = worker
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
    if (!this.balancer) return null
    const stats = this.balancer.stats()
    // With user-forked workers the slots are a capacity: list the ones used.
    if (this.options.rendezvous) stats.slots = stats.slots.filter((slot) => slot.pid !== 0 || slot.dispatched > 0)
    return stats
  }

  /**
   * Stops accepting, then lets every worker finish what it has in flight
   * (`server.close()` in the worker) and exit; `callback` runs when all have.
   */
  close(callback) {
    if (!this.closing) {
      this.closing = true
      if (this.balancer) this.balancer.close()
    }
    const workers = this.options.rendezvous
      ? Object.values(cluster.workers || {})
      : [...this.slots.values()].map((state) => state.worker).filter(Boolean)
    let remaining = workers.length
    const done = () => callback && process.nextTick(callback)
    if (remaining === 0) return done()
    for (const worker of workers) {
      worker.once('exit', () => --remaining === 0 && done())
      if (worker.isConnected()) worker.disconnect()
    }
  }
}

function startPrimary(server, port, options) {
  if (!cluster.isPrimary) throw stickyError('ERR_STICKY_NOT_PRIMARY', 'startPrimary must run in the cluster primary')
  const primary = new Primary(server, port, options)
  primary.start()
  return primary
}

module.exports = { startPrimary }

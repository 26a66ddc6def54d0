'use strict'

// Slot supervision: one worker per slot, forked with what the listener (and
// the slot ports) give it in its stdio; respawned into the same slot when it
// exits, with a growing delay when it keeps exiting at once (a crash loop);
// replaced slot by slot in a rolling reload. With setupMaster the user forks
// the workers (`options.rendezvous`): then only `workers()` applies.

const cluster = require('cluster')
const debug = require('debug')('sticky-session-rs')
const { codes, stickyError } = require('../errors')
const { eventKinds } = require('../listeners')
const { pm2WorkerEnvironment } = require('../pm2')

/** Respawns of a worker that lived shorter than this back off (crash loops). */
const QUICK_EXIT_MS = 1000
const MAX_RESPAWN_DELAY_MS = 5000

/**
 * Forks a worker into `slot`, giving it the slot's channel (or socket) as an
 * extra stdio entry: each descriptor of `workerEnd` (lib/listeners.js) and
 * `slotPortEnd` (lib/slot-ports.js), named by its variable. Cluster settings
 * are global: they are restored at once so a later `cluster.fork()` by the
 * user does not pass a closed descriptor.
 */
function forkWithDescriptors(slot, workerEnd, slotPortEnd, options) {
  const previousStdio = cluster.settings.stdio
  const stdio = previousStdio
    ? previousStdio.slice()
    : cluster.settings.silent
      ? ['pipe', 'pipe', 'pipe', 'ipc']
      : ['inherit', 'inherit', 'inherit', 'ipc']
  while (stdio.length < 4) stdio.push('ignore')
  // Each descriptor the listener (and the slot ports) give the worker, and the variable naming its place in the worker's stdio.
  // No fd: the portable path's channel is cluster IPC itself ('ipc').
  const descriptors = {}
  for (const { fd, variable } of [workerEnd, ...(workerEnd.more || []), ...(slotPortEnd ? [slotPortEnd] : [])]) {
    if (fd === null) {
      descriptors[variable] = 'ipc'
      continue
    }
    descriptors[variable] = String(stdio.length)
    stdio.push(fd)
  }
  try {
    cluster.setupPrimary({ stdio })
    return cluster.fork({
      ...pm2WorkerEnvironment(),
      ...options.env,
      STICKY_WORKER_SLOT: String(slot),
      ...descriptors,
      ...workerEnd.env,
      STICKY_ROUTING: options.routing,
      STICKY_SHUTDOWN_TIMEOUT: String(options.shutdownTimeout),
      STICKY_HANDLE_SIGNALS: options.handleSignals ? '1' : '0',
    })
  } finally {
    cluster.setupPrimary({ stdio: previousStdio })
    workerEnd.afterFork()
  }
}

/**
 * The workers of one primary, by slot. `primary` (lib/primary.js) gives the
 * options, the listener and slot ports, its timers (`later`), `closing`,
 * 'slot-ready' and 'closing', and the server errors are reported on.
 */
class SlotSupervisor {
  constructor(primary) {
    this.primary = primary
    /** slot -> { worker, pid, startedAt, quickExits } */
    this.slots = new Map()
    /** Every worker forked and not yet exited, including one a reload is replacing. */
    this.forked = new Set()
    /** The rolling reload under way, or null. */
    this.reloading = null
  }

  /** Forks a worker into `slot` and watches it: it is respawned when it exits. */
  fork(slot) {
    const { listener, slotPorts, options } = this.primary
    const workerEnd = listener.workerEnd(slot)
    const slotPortEnd = slotPorts ? slotPorts.workerEnd(slot) : null
    const worker = forkWithDescriptors(slot, workerEnd, slotPortEnd, options)
    const state = this.slots.get(slot) || { quickExits: 0 }
    state.worker = worker
    state.pid = worker.process.pid
    listener.watch(worker, slot, workerEnd)
    state.startedAt = Date.now()
    this.slots.set(slot, state)
    debug('forked worker %d (pid %d) into slot %d', worker.id, worker.process.pid, slot)
    this.forked.add(worker)
    worker.once('exit', (code, signal) => {
      this.forked.delete(worker)
      this.onWorkerExit(slot, worker, code, signal)
    })
  }

  onWorkerExit(slot, worker, code, signal) {
    const { primary } = this
    const state = this.slots.get(slot)
    if (!state || state.worker !== worker) return
    state.worker = null
    if (primary.closing) return
    const lived = Date.now() - state.startedAt
    state.quickExits = lived < QUICK_EXIT_MS ? state.quickExits + 1 : 0
    const delay = state.quickExits === 0 ? 0 : Math.min(100 * 2 ** (state.quickExits - 1), MAX_RESPAWN_DELAY_MS)
    debug('worker %d of slot %d exited (code %s, signal %s); respawning in %d ms', worker.id, slot, code, signal, delay)
    const respawn = () => {
      if (primary.closing || this.slots.get(slot).worker) return
      try {
        this.fork(slot)
      } catch (error) {
        primary.server.emit('error', error)
      }
    }
    if (delay === 0) respawn()
    else primary.later(delay, respawn)
  }

  /** Every worker of this primary: those it forked (also one a reload is replacing), or the user's (setupMaster). */
  workers() {
    return (this.primary.options.rendezvous ? Object.values(cluster.workers || {}) : [...this.forked]).filter((worker) => !worker.isDead())
  }

  /**
   * Rolling reload: for each slot in turn, starts a new worker, waits until it
   * is ready (it then takes the slot, and what the old worker had not taken),
   * then lets the old worker finish and exit before the next slot. The slot
   * is never without a worker; clients keep their slot.
   */
  reload(callback) {
    const { primary } = this
    if (primary.options.rendezvous) {
      const error = stickyError(codes.RELOAD_UNSUPPORTED, 'reload() restarts workers sticky-session-rs forked; with setupMaster you fork them yourself')
      if (callback) return process.nextTick(callback, error)
      throw error
    }
    if (this.reloading) return this.reloading.then(() => this.reload(callback))
    // Closing (close(), a signal, a takeover) ends a reload: the slot being
    // replaced keeps both workers, and close() drains both.
    const interrupted = () =>
      stickyError(codes.RELOAD_INTERRUPTED, 'the primary started closing (close(), SIGTERM/SIGINT or a takeover) before every worker was replaced; nothing to do')
    const replaceSlot = (slot) =>
      new Promise((resolve, reject) => {
        if (primary.closing) return reject(interrupted())
        const old = this.slots.get(slot) && this.slots.get(slot).worker
        const settle = (error) => {
          clearTimeout(timer)
          primary.off(eventKinds.SlotReady, onReady)
          primary.off('closing', onClosing)
          if (error) reject(error)
          else resolve()
        }
        const timer = setTimeout(() => settle(stickyError(codes.RELOAD_TIMEOUT, `the new worker for slot ${slot} was not ready within ${primary.options.shutdownTimeout} ms (shutdownTimeout): see its output for why it does not start, or raise shutdownTimeout; the old worker goes on serving`)), primary.options.shutdownTimeout)
        const onClosing = () => settle(interrupted())
        this.fork(slot)
        const fresh = this.slots.get(slot).worker
        const onReady = ({ slot: readySlot, pid }) => {
          if (readySlot !== slot || pid !== fresh.process.pid) return
          primary.off(eventKinds.SlotReady, onReady)
          clearTimeout(timer)
          // The old worker drains and exits (lib/listeners.js: retire).
          if (!old || old.isDead()) return settle()
          primary.listener.retire(old)
          old.once('exit', () => settle())
        }
        primary.on(eventKinds.SlotReady, onReady)
        primary.on('closing', onClosing)
      })
    this.reloading = (async () => {
      for (let slot = 0; slot < primary.options.workers; slot++) await replaceSlot(slot)
    })()
    const settle = this.reloading.finally(() => (this.reloading = null))
    if (callback) settle.then(() => callback(null), callback)
    return settle
  }
}

module.exports = { SlotSupervisor }

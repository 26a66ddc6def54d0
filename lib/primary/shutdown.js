'use strict'

// How a primary shuts down, in three steps with a deadline (`close`, then
// `finish`), and the signals it handles (`handleSignals`). `primary` is
// lib/primary.js's: its listener, slot ports, workers (lib/primary/slots.js),
// takeover (lib/primary/socket-source.js), timers (`later`) and what closing
// undoes.

const debug = require('debug')('sticky-session-rs')
const { codes } = require('../errors')
const { eventKinds } = require('../listeners')

/**
 * Closing: workers still running this long after `shutdownTimeout` are
 * killed (each has had its own `shutdownTimeout` to finish), and this long
 * after it the primary is closed whatever still runs: within
 * `shutdownTimeout` + 1 s in every state.
 */
const KILL_AFTER_TIMEOUT_MS = 400
const GIVE_UP_AFTER_TIMEOUT_MS = 600

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
function close(primary, callback) {
  if (callback) primary.whenClosed(callback)
  if (primary.closing) return
  primary.closing = true
  primary.emit('closing')
  for (const timer of primary.timers) clearTimeout(timer)
  primary.timers.clear()
  const client = primary.takeover.stop()
  const { shutdownTimeout } = primary.options
  primary.later(shutdownTimeout + KILL_AFTER_TIMEOUT_MS, () => killWorkers(primary.supervisor.workers()))
  primary.later(shutdownTimeout + GIVE_UP_AFTER_TIMEOUT_MS, () => finish(primary))
  stopAccepting(primary, client, () => retireWorkers(primary.supervisor.workers(), () => finish(primary)))
}

/** Step 1: `then()` once nothing accepted waits for a worker. */
function stopAccepting(primary, takingOver, then) {
  const { listener } = primary
  // The slot ports' last copies are the workers': each takes what is
  // queued on its socket before closing it.
  if (primary.slotPorts) primary.slotPorts.close()
  if (!listener) return then()
  primary.once(eventKinds.Drained, then)
  // Refusing new connections is for a shutdown: sockets handed over (or
  // still the old primary's, taking over) go on serving.
  listener.stopAccepting(!takingOver, { refuseNew: !takingOver && !primary.takeover.handedOver })
}

/** Step 2: each worker finishes what it has and exits; `then()` once all have. */
function retireWorkers(workers, then) {
  let left = workers.length
  if (left === 0) return then()
  for (const worker of workers) {
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

/** Past the deadline: the workers still running are killed. */
function killWorkers(workers) {
  if (workers.length) debug('shutdown timeout: killing %d workers', workers.length)
  for (const worker of workers) worker.process.kill('SIGKILL')
}

/**
 * Step 3 (also what a failed listen ends with): releases everything this
 * primary holds; then 'closed', the callbacks, and the server's 'close'.
 */
function finish(primary, { listened = true } = {}) {
  if (primary.closed) return
  primary.closing = true
  primary.closed = true
  if (!listened) primary.listened = false
  for (const timer of primary.timers) clearTimeout(timer)
  primary.timers.clear()
  if (primary.listener) primary.listener.close()
  if (primary.options.rendezvous) primary.options.rendezvous.release()
  for (const undo of primary.undo.splice(0)) undo()
  debug('primary %d closed', process.pid)
  primary.emit('closed')
  if (listened) process.nextTick(() => primary.server.emit('close'))
}

/**
 * SIGTERM / SIGINT: graceful shutdown, then exit 0. SIGHUP: rolling reload.
 * The handlers leave when this primary has closed.
 */
function handleSignals(primary) {
  const shutdown = (signal) => {
    debug('primary got %s: shutting down', signal)
    // Also when already closing (by close()): exit once closed.
    primary.close()
    primary.whenClosed(() => process.exit(0))
  }
  const reload = () => {
    debug('primary got SIGHUP: rolling reload')
    primary.reload((error) => {
      if (error && error.code === codes.RELOAD_INTERRUPTED) debug(error.message)
      else if (error) primary.server.emit('error', error)
    })
  }
  const handlers = { SIGTERM: shutdown, SIGINT: shutdown, SIGHUP: reload }
  for (const [signal, handler] of Object.entries(handlers)) process.on(signal, handler)
  primary.undo.push(() => {
    for (const [signal, handler] of Object.entries(handlers)) process.off(signal, handler)
  })
}

module.exports = { close, finish, handleSignals }

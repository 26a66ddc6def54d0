'use strict'

// What the primary tells its user of the listener: its events, relayed (the
// primary's own 'slot-ready' and 'drained', the server's 'error', a warning),
// and its counters, shaped for `sticky.stats()`.

const debug = require('debug')('sticky-session-rs')
const { stickyError } = require('../errors')
const { eventKinds } = require('../listeners')

/**
 * Relays one event of the listener (lib/listeners.js: 'slot-ready',
 * 'drained', 'slot-closed', 'error') to `primary`'s events or `server`.
 */
function relayListenerEvent(event, primary, server) {
  switch (event.kind) {
    case eventKinds.SlotReady:
      debug('slot %d ready (pid %d)', event.slot, event.pid)
      primary.emit(event.kind, event)
      break
    case eventKinds.Drained:
      debug('accept queue drained; every accepted connection is with a worker')
      primary.emit(event.kind, event)
      break
    case eventKinds.SlotClosed:
      debug('slot %d closed: %s; %d connections re-dispatched', event.slot, event.reason, event.requeued)
      break
    case eventKinds.Error: {
      const error = stickyError(event.code, event.message, { fatal: event.fatal })
      debug('accept loop error %s: %s', event.code, event.message)
      // A fatal error stopped the accept loop: the user must hear of it, as
      // `net` reports errors. A passing one (EMFILE, retried) is a warning.
      if (event.fatal) server.emit('error', error)
      else process.emitWarning(error.message, { code: error.code, type: 'StickySessionWarning' })
      break
    }
  }
}

/** `sticky.stats()`: the listener's counters (its slots included). */
function shapeStats(listener, options) {
  const stats = listener.stats()
  // With user-forked workers the slots are a capacity: list the ones used.
  if (options.rendezvous) stats.slots = stats.slots.filter((slot) => slot.pid !== 0 || slot.dispatched > 0)
  return stats
}

module.exports = { relayListenerEvent, shapeStats }

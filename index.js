'use strict'

// sticky-session-rs: the drop-in API. One core (lib/primary.js, lib/worker.js),
// exposed in the shape of sticky-session 1.1.2: `sticky.listen(server, port[, options])`.

const cluster = require('cluster')
const { listenOptions, validatePort, validateServer } = require('./lib/options')
const worker = require('./lib/worker')
const { startPrimary } = require('./lib/primary')

// A worker's channel leaves the environment as soon as the module loads.
worker.claimFromEnvironment()

let primary = null

/**
 * sticky-session's `listen`: in the primary, starts balancing on `port` and
 * returns `false` (`server` emits `'listening'`, or `'error'`); in a worker,
 * attaches `server` to the primary's connections and returns `true`.
 */
function listen(server, port, options) {
  validateServer(server)
  const checkedPort = validatePort(port)
  const checkedOptions = listenOptions(options)
  if (cluster.isPrimary) {
    primary = startPrimary(server, checkedPort, checkedOptions)
    return false
  }
  worker.startWorker(server)
  return true
}

/** Counters of the primary's accept loop (`null` in a worker or before `listen`). */
function stats() {
  return primary ? primary.stats() : null
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

module.exports = { listen, stats, close }

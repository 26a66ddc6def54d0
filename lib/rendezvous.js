'use strict'

// Where workers the user forks (the @socket.io/sticky shape: `setupMaster`
// in the primary, `setupWorker(io)` in each worker, `cluster.fork()` by the
// user) get their channel: an abstract Unix socket named after what both
// sides know without being told — the primary's pid (a worker's
// `process.ppid`) and the user id. So a worker finds it whatever the order of
// `cluster.fork()`, `setupMaster` and `httpServer.listen`, and also when the
// user's own 'exit' handler respawns it.
//
// Who may connect is checked on both sides: the primary gives a channel only
// to a process of this user whose pid is one of its cluster's workers
// (SO_PEERCRED, src/primary/rendezvous.rs), and a worker takes connections
// only from a socket held by its own parent process of its own user.
//
// Primary: `acquire()` (at setupMaster, and at a later listen) holds the
// socket for this process, however many servers are set up one after
// another; `release()` frees it with the last holder.
// Worker: `channelFromPrimary(onError)` connects, waiting (asynchronously,
// bounded) for a primary that has not called setupMaster yet.
//
// On the portable path (lib/native.js: no binding) there is no socket to
// find: a worker's channel is its cluster IPC channel, which only this
// cluster's workers have (lib/portable/channel.js). Holding the rendezvous
// then means answering each worker that says it is ready with a 'welcome'
// (so it knows its primary called setupMaster), and asking those forked
// before to say it again; the listener admits them once it balances.

const cluster = require('cluster')
const debug = require('debug')('sticky-session-rs')
const native = require('./native')
const { codes, stickyError } = require('./errors')
const portableChannel = require('./portable/channel')

/** A worker started before its primary called setupMaster waits this long for it. */
const PRIMARY_WAIT_MS = 10000
/** How often a waiting worker looks for its primary's socket. */
const CONNECT_RETRY_MS = 50
/** How often a connected worker looks for its channel (the primary sends it once it listens): from the first to the last, doubling. */
const SETUP_POLL_FIRST_MS = 5
const SETUP_POLL_LAST_MS = 500

/** The abstract socket name of primary `pid`'s rendezvous (for user `uid`). */
function rendezvousName(pid, uid = process.geteuid()) {
  return `sticky-session-rs-${pid}-${uid}`
}

// ---- primary ----------------------------------------------------------------

let held = null

/**
 * Holds this process's rendezvous socket (binding it on first use) and
 * admits its cluster workers, those forked already and every later one.
 * Returns `{ socket, release() }`; throws as listening does (EADDRINUSE
 * when another process holds the name).
 */
function acquire() {
  if (!held) held = open()
  held.holders++
  let released = false
  return {
    socket: held.socket,
    release() {
      if (released) return
      released = true
      if (--held.holders === 0) close()
    },
  }
}

function open() {
  if (native.portable) return openPortable()
  const name = rendezvousName(process.pid)
  const socket = new native.RendezvousSocket(name)
  const admit = (worker) => worker.process && worker.process.pid && socket.allowWorker(worker.process.pid)
  const forget = (worker) => worker.process && worker.process.pid && socket.forgetWorker(worker.process.pid)
  Object.values(cluster.workers || {}).forEach(admit)
  cluster.on('fork', admit)
  cluster.on('exit', forget)
  debug('rendezvous for user-forked workers open under @%s', name)
  const stop = () => {
    cluster.off('fork', admit)
    cluster.off('exit', forget)
    socket.close()
  }
  return { socket, holders: 0, stop }
}

/** The portable path's rendezvous: a 'welcome' to every worker that says it is ready. */
function openPortable() {
  const { hearWorkers, tellWorker, helloToEveryWorker } = portableChannel
  const stop = hearWorkers((worker, message) => message.act === 'ready' && tellWorker(worker, { act: 'welcome' }))
  // Workers forked before setupMaster said it to nobody.
  helloToEveryWorker()
  debug('rendezvous for user-forked workers open (portable path: cluster IPC)')
  return { socket: null, holders: 0, stop }
}

function close() {
  const { stop } = held
  held = null
  stop()
  debug('rendezvous closed')
}

// ---- worker -----------------------------------------------------------------

/**
 * This worker's channel from its primary, as a channel `startWorker` can
 * use: it connects in the background, retrying while the primary has not
 * called setupMaster (up to PRIMARY_WAIT_MS), and starts receiving once the
 * primary balances. `onError(error)` hears what makes that impossible.
 */
function channelFromPrimary(onError) {
  if (native.portable) {
    const onTimeout = () => {
      // The primary went away meanwhile: cluster is ending this process.
      if (cluster.worker && !cluster.worker.isConnected()) return
      onError(noPrimaryError(process.ppid))
    }
    return portableChannel.ipcChannel({ waitForPrimary: { ms: PRIMARY_WAIT_MS, onTimeout } })
  }
  return new ChannelFromPrimary(onError)
}

/** A worker's primary did not call setupMaster in time. */
function noPrimaryError(primary) {
  return stickyError(
    codes.NO_CHANNEL,
    `setupWorker(io): this worker's primary (process ${primary}) did not call setupMaster(httpServer) within ${PRIMARY_WAIT_MS} ms: ` +
      'call setupMaster(httpServer) in the cluster primary (before or after cluster.fork()), then httpServer.listen()',
  )
}

class ChannelFromPrimary {
  constructor(onError) {
    this.onError = onError
    this.primary = process.ppid
    this.name = rendezvousName(this.primary)
    this.channel = null
    this.receiving = null
    this.ready = false
    this.started = false
    this.closed = false
    this.timer = null
    this.connect(Date.now())
  }

  connect(since) {
    if (this.closed) return
    let channel
    try {
      channel = native.connectChannel(this.name, this.primary)
    } catch (error) {
      return this.fail(error)
    }
    if (channel) {
      this.channel = channel
      return this.waitForSetup(SETUP_POLL_FIRST_MS)
    }
    if (Date.now() - since >= PRIMARY_WAIT_MS) return this.fail(noPrimaryError(this.primary))
    this.timer = setTimeout(() => this.connect(since), CONNECT_RETRY_MS)
  }

  /**
   * The primary sends the channel once it balances: poll, backing off. A
   * connection reset before that (the primary closed, and may listen again:
   * servers one after another) connects again.
   */
  waitForSetup(delay) {
    if (this.closed) return
    const state = this.channel.setupState()
    if (state === 'reset') {
      this.channel.close()
      this.channel = null
      return this.connect(Date.now())
    }
    if (state !== 'waiting') {
      this.ready = true
      return this.begin()
    }
    this.timer = setTimeout(() => this.waitForSetup(Math.min(delay * 2, SETUP_POLL_LAST_MS)), delay)
  }

  begin() {
    if (!this.ready || !this.receiving || this.started || this.closed) return
    this.started = true
    const { method, receive } = this.receiving
    try {
      this.channel[method](receive)
      debug('worker %d took its channel from primary %d', process.pid, this.primary)
    } catch (error) {
      this.fail(error)
    }
  }

  fail(error) {
    if (this.closed) return
    this.close()
    // The primary went away meanwhile: cluster is ending this process.
    if (cluster.worker && !cluster.worker.isConnected()) return
    this.onError(error)
  }

  /** As WorkerChannel#startOnLoop: receives once the channel is there. */
  startOnLoop(receive) {
    this.receiving = { method: 'startOnLoop', receive }
    this.begin()
  }

  /** As WorkerChannel#start. */
  start(receive) {
    this.receiving = { method: 'start', receive }
    this.begin()
  }

  close() {
    this.closed = true
    clearTimeout(this.timer)
    if (this.channel) this.channel.close()
  }

  reportSession(sid, opened) {
    return this.started ? this.channel.reportSession(sid, opened) : false
  }
}

module.exports = { rendezvousName, acquire, channelFromPrimary, PRIMARY_WAIT_MS }

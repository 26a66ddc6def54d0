'use strict'

// Both ends of the portable path's conversation between the primary and its
// workers (lib/portable/listener.js is the primary's user of it): messages
// on the worker's cluster IPC channel, and the connections themselves as
// handles sent with them.
//
// Every message is an internal one: its `cmd` starts with `NODE_`, so Node
// (and Bun, and Deno) deliver it to 'internalMessage' listeners only, as
// they do cluster's own. The user's 'message' listeners — on a worker
// object, on `cluster`, on `process` in the worker — never see them (code
// that expects only its own messages there, as sticky-session's tests do,
// works unchanged). `act` says what it is:
//
//   worker -> primary  'ready'    the worker takes connections (again, after a 'hello')
//                      'taken'    { ids }: it has these connections (the primary closes its copies)
//                      'leaving'  its server is closing: send it nothing more
//                      'session'  { sid, opened }: an engine.io session it opened or closed ('sid' routing)
//   primary -> worker  'welcome'  a primary that will balance for this worker is there (setupMaster was called)
//                      'hello'    a primary (set up, or balancing) just started: say 'ready' again
//                      'head'     { id, head }: the bytes the primary read of connection `id`
//                      'connection' { id, remoteAddress?, … } with the socket
//                      'replaced' a new worker took this worker's slot (a rolling reload)
//
// The worker's end (`IpcChannel`) has the interface of the binding's
// WorkerChannel, so lib/worker.js serves it as it serves the native one:
// `start(receive)` / `startOnLoop(receive)`, `close()`, `reportSession()`.
// `receive(connections, primaryClosed)` gets `{ socket, head, remoteAddress,
// remotePort, remoteFamily }` for each connection, and `primaryClosed` once
// a new worker took this worker's slot.

const cluster = require('cluster')
const { codes } = require('../errors')

/** The `cmd` of every message: a `NODE_` prefix makes it internal (the one kernel mode's readiness uses too). */
const MESSAGE_CMD = 'NODE_STICKY_SESSION_RS'

function isMessage(message) {
  return message !== null && typeof message === 'object' && message.cmd === MESSAGE_CMD && typeof message.act === 'string'
}

// ---- the worker's end --------------------------------------------------------------

class IpcChannel {
  /**
   * `waitForPrimary` (setupWorker: the user forks, and the primary may not
   * have called setupMaster yet): `{ ms, onTimeout }`, called when no
   * primary said 'welcome' within `ms` of `start`.
   */
  constructor({ waitForPrimary = null } = {}) {
    /** connection id -> what the primary read of it, sent just before the socket. */
    this.heads = new Map()
    this.receive = null
    this.closed = false
    this.welcomed = false
    this.waitForPrimary = waitForPrimary
    this.timer = null
    this.onMessage = (message, socket) => isMessage(message) && this.onPrimaryMessage(message, socket)
  }

  /** Starts taking connections: the primary counts this worker's slot ready. */
  start(receive) {
    if (this.receive || this.closed) {
      const error = new Error('the channel was already started or closed: start() it once')
      error.code = codes.CHANNEL_STATE
      throw error
    }
    this.receive = receive
    process.on('internalMessage', this.onMessage)
    if (this.waitForPrimary) {
      const { ms, onTimeout } = this.waitForPrimary
      this.timer = setTimeout(() => {
        if (this.welcomed || this.closed) return
        this.stopHearing()
        onTimeout()
      }, ms)
    }
    this.tell({ act: 'ready' })
  }

  startOnLoop(receive) {
    this.start(receive)
  }

  /**
   * Stops taking connections (the server is closing): the primary sends this
   * worker's clients elsewhere. What is already on its way is still served.
   */
  close() {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.timer)
    if (this.receive) this.tell({ act: 'leaving' })
  }

  /** Tells the primary of an engine.io session this worker opened (or closed), for 'sid' routing. */
  reportSession(sid, opened) {
    if (!this.receive) return false
    this.tell({ act: 'session', sid, opened })
    return true
  }

  onPrimaryMessage(message, socket) {
    switch (message.act) {
      case 'welcome':
        this.welcomed = true
        clearTimeout(this.timer)
        break
      case 'hello':
        if (!this.closed) this.tell({ act: 'ready' })
        break
      case 'head':
        this.heads.set(message.id, Buffer.from(message.head, 'base64'))
        break
      case 'connection': {
        if (!socket) break
        // Taken, in the turn it arrives, before a byte of it is read: the
        // primary then closes its copy (and would otherwise send it to another
        // worker if this one died now).
        this.tell({ act: 'taken', ids: [message.id] })
        const connection = { socket, head: this.heads.get(message.id) || null }
        this.heads.delete(message.id)
        if (message.remoteAddress !== undefined) Object.assign(connection, { remoteAddress: message.remoteAddress, remotePort: message.remotePort, remoteFamily: message.remoteFamily })
        this.receive([connection], false)
        break
      }
      case 'replaced':
        this.receive([], true)
        break
    }
  }

  stopHearing() {
    process.off('internalMessage', this.onMessage)
  }

  tell(message) {
    // A failed send means the primary is gone: cluster ends this worker.
    if (process.connected) process.send({ cmd: MESSAGE_CMD, ...message }, () => {})
  }
}

/** This worker's channel to a primary on the portable path. */
function ipcChannel(options) {
  return new IpcChannel(options)
}

// ---- the primary's end -------------------------------------------------------------

/**
 * Calls `onMessage(worker, message)` for each message of this protocol from
 * any cluster worker, those forked already and every later one. Returns the
 * function that stops.
 */
function hearWorkers(onMessage) {
  const heard = new Map()
  const hear = (worker) => {
    if (heard.has(worker) || !worker.process) return
    const listener = (message) => isMessage(message) && onMessage(worker, message)
    worker.process.on('internalMessage', listener)
    heard.set(worker, listener)
    worker.once('exit', () => {
      worker.process.off('internalMessage', listener)
      heard.delete(worker)
    })
  }
  Object.values(cluster.workers || {}).forEach(hear)
  cluster.on('fork', hear)
  return () => {
    cluster.off('fork', hear)
    for (const [worker, listener] of heard) worker.process.off('internalMessage', listener)
    heard.clear()
  }
}

/** Sends `message` (and `socket`, with `options`) to `worker`; `callback(error)` hears a failure. */
function tellWorker(worker, message, { socket, options, callback } = {}) {
  const done = callback || (() => {})
  if (!worker.isConnected()) return done(new Error('the worker is not connected'))
  try {
    if (socket) worker.send({ cmd: MESSAGE_CMD, ...message }, socket, options, done)
    else worker.send({ cmd: MESSAGE_CMD, ...message }, done)
  } catch (error) {
    done(error)
  }
}

/** Asks every connected worker to say 'ready' again (a primary set up for them, or balancing, is there now). */
function helloToEveryWorker() {
  for (const worker of Object.values(cluster.workers || {})) tellWorker(worker, { act: 'hello' })
}

module.exports = { ipcChannel, hearWorkers, tellWorker, helloToEveryWorker, MESSAGE_CMD }

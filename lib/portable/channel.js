'use strict'

// A worker's end of the portable path (lib/portable/listener.js is the
// primary's): connections arrive as sockets over the worker's cluster IPC
// channel. It has the interface of the binding's WorkerChannel, so
// lib/worker.js serves them as it serves the native channel's:
// `start(receive)` / `startOnLoop(receive)`, `close()`, `reportSession()`.
// `receive(connections, primaryClosed)` gets `{ socket, head, remoteAddress,
// remotePort, remoteFamily }` for each connection, and `primaryClosed` once a
// new worker took this worker's slot (a rolling reload).

class IpcChannel {
  constructor() {
    /** connection id -> what the primary read of it, sent just before the socket. */
    this.heads = new Map()
    this.receive = null
    this.closed = false
    this.onMessage = (message, socket) => this.onPrimaryMessage(message, socket)
  }

  /** Starts taking connections: the primary counts this worker's slot ready. */
  start(receive) {
    if (this.receive || this.closed) {
      const error = new Error('the channel was already started or closed: start() it once')
      error.code = 'ERR_STICKY_CHANNEL_STATE'
      throw error
    }
    this.receive = receive
    process.on('message', this.onMessage)
    this.tell({ stickySessionRs: 'ready' })
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
    this.tell({ stickySessionRs: 'leaving' })
  }

  /** Tells the primary of an engine.io session this worker opened (or closed), for 'sid' routing. */
  reportSession(sid, opened) {
    this.tell({ stickySessionRs: 'session', sid, opened })
  }

  onPrimaryMessage(message, socket) {
    if (!message || typeof message !== 'object') return
    if (message.stickySessionRs === 'head') {
      this.heads.set(message.id, Buffer.from(message.head, 'base64'))
    } else if (message.stickySessionRs === 'connection' && socket) {
      // Taken, in the turn it arrives, before a byte of it is read: the
      // primary then closes its copy (and would otherwise send it to another
      // worker if this one died now).
      this.tell({ stickySessionRs: 'taken', ids: [message.id] })
      const connection = { socket, head: this.heads.get(message.id) || null }
      this.heads.delete(message.id)
      if (message.remoteAddress !== undefined) Object.assign(connection, { remoteAddress: message.remoteAddress, remotePort: message.remotePort, remoteFamily: message.remoteFamily })
      this.receive([connection], false)
    } else if (message.stickySessionRs === 'replaced') {
      this.receive([], true)
    }
  }

  tell(message) {
    // A failed send means the primary is gone: cluster ends this worker.
    if (process.connected) process.send(message, () => {})
  }
}

/** This worker's channel to a primary on the portable path. */
function ipcChannel() {
  return new IpcChannel()
}

module.exports = { ipcChannel }

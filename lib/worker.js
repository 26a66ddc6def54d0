'use strict'

// A worker: receives connections from the primary (on its event loop) and
// turns each into a `net.Socket` on the user's server, exactly as Node's own
// accept path would, so timeouts, `close()` and `getConnections()` behave.

const cluster = require('cluster')
const os = require('os')
const path = require('path')
const tls = require('tls')
const debug = require('debug')('sticky-session-rs')
const { claimChannel, claimListeningFd } = require('./native')
const { codes, stickyError } = require('./errors')
const { optionDefault } = require('./options')
const { acceptOnInheritedSocket, adoptingServer, closeDescriptor, socketFromFd, startReceiving } = require('./runtime')
const { ipcChannel } = require('./portable/channel')
const { pm2ClusterModeError } = require('./pm2')
const slotPorts = require('./slot-ports')

/** After the server has drained, leave this long for a natural exit, then exit. */
const EXIT_GRACE_MS = 2000

let claimed = null

/**
 * Takes this worker's channel out of the environment, once, as early as
 * possible (at require time): the fd becomes close-on-exec so this worker's
 * own children never inherit it, and its number leaves `process.env`.
 */
function claimFromEnvironment() {
  if (claimed || !cluster.isWorker || process.env.STICKY_CHANNEL_FD === undefined) return claimed
  const value = process.env.STICKY_CHANNEL_FD
  delete process.env.STICKY_CHANNEL_FD
  // 'ipc': a primary on the portable path sends connections over cluster IPC.
  claimed = value === 'ipc' ? ipcChannel() : claimChannel(Number(value))
  return claimed
}

function takeChannel() {
  const channel = claimFromEnvironment()
  if (!channel) {
    throw pm2ClusterModeError() || stickyError(
      codes.NO_CHANNEL,
      'this worker has no sticky-session-rs channel: workers must be forked by sticky.listen() in the primary ' +
        '(do not call cluster.fork() yourself for this server)',
    )
  }
  claimed = null
  return channel
}

/**
 * A listening address nobody else uses, so the server has a real handle: an
 * abstract Unix socket on Linux, a named pipe on Windows, a Unix socket in
 * the temporary directory elsewhere.
 */
function privateAddress() {
  const name = `sticky-session-rs-${process.pid}-${Math.random().toString(36).slice(2)}`
  if (process.platform === 'linux') return `\0${name}`
  if (process.platform === 'win32') return `\\\\.\\pipe\\${name}`
  return path.join(os.tmpdir(), `${name}.sock`)
}

/** Node's private per-server socket options, read once per server. */
function socketOptionsOf(server) {
  const symbols = Object.getOwnPropertySymbols(server)
  const read = (description) => {
    const symbol = symbols.find((s) => s.description === description)
    return symbol ? server[symbol] : undefined
  }
  return {
    noDelay: Boolean(read('kSetNoDelay') ?? server.noDelay),
    keepAlive: Boolean(read('kSetKeepAlive') ?? server.keepAlive),
    keepAliveInitialDelay: read('kSetKeepAliveInitialDelay') ?? server.keepAliveInitialDelay ?? 0,
  }
}

/**
 * What Node's `onconnection` does for an accepted handle, for a received fd
 * (or, on the portable path, a received socket and the bytes the primary read
 * of it).
 */
function adopt(server, socketOptions, connection) {
  if (server.maxConnections != null && server._connections >= server.maxConnections) {
    closeConnection(connection)
    return
  }
  const socket = connection.socket ? receivedSocket(server, connection) : socketFromFd(connection.fd, {
    allowHalfOpen: server.allowHalfOpen,
    paused: server.pauseOnConnect,
  })
  if (connection.remoteAddress !== undefined) {
    socket._peername = { address: connection.remoteAddress, port: connection.remotePort, family: connection.remoteFamily }
  }
  adoptSocket(server, socketOptions, socket)
  return socket
}

/** The part of `adopt` for a socket already made (one accepted on the slot port). */
function adoptSocket(server, socketOptions, socket) {
  if (socketOptions.noDelay) socket.setNoDelay(true)
  if (socketOptions.keepAlive) socket.setKeepAlive(true, socketOptions.keepAliveInitialDelay)
  server._connections++
  socket.server = server
  socket._server = server
  server.emit('connection', socket)
}

/** A socket the portable path's primary sent, with what it read of it put back in front. */
function receivedSocket(server, { socket, head }) {
  socket.allowHalfOpen = Boolean(server.allowHalfOpen)
  if (head) socket.unshift(head)
  if (server.pauseOnConnect) socket.pause()
  return socket
}

function closeConnection(connection) {
  if (connection.socket) connection.socket.destroy()
  else closeDescriptor(connection.fd)
}

/** `adopt`, or close the connection when that fails: a connection is never left open with nobody serving it. */
function adoptOrClose(server, socketOptions, connection) {
  try {
    return adopt(server, socketOptions, connection)
  } catch (error) {
    debug('worker %d could not adopt connection %s: %s', process.pid, connection.socket ? 'socket' : `fd ${connection.fd}`, error.message)
    try {
      closeConnection(connection)
    } catch {}
  }
}

/** True for an engine.io polling handshake: `EIO=`, `transport=polling`, no `sid`. */
function isPollingHandshake(url) {
  // Most requests are not: two substring checks before the exact ones.
  if (!url.includes('EIO=') || url.includes('sid=')) return false
  const query = url.slice(url.indexOf('?') + 1)
  return /(^|&)EIO=/.test(query) && /(^|&)transport=polling(&|$)/.test(query) && !/(^|&)sid=/.test(query)
}

/** The sid in an engine.io handshake response body (`0{"sid":"..."` , EIO 4; `97:0{...` , EIO 3). */
function sidOfHandshake(chunk) {
  const head = typeof chunk === 'string' ? chunk.slice(0, 512) : Buffer.isBuffer(chunk) ? chunk.toString('latin1', 0, 512) : ''
  if (!/^(\d+:)?0\{/.test(head)) return null
  const match = /"sid":"([^"\\]{1,255})"/.exec(head)
  return match ? match[1] : null
}

/**
 * Routing by `sid` or by a forwarding header assumes one client per
 * connection: `Connection: close` keeps a proxy or a client from reusing a
 * connection (routed for one session or client) for another. In `sid` mode,
 * each polling handshake's new sid is reported to the primary before the
 * response leaves, so the client's next request is already routable.
 *
 * Connections from the slot port (`viaSlotPort`) stay open: the proxy in
 * front routes each of their requests itself (lib/slot-ports.js). With slot
 * ports in `sid` mode, every new sid leaves with this slot appended, for the
 * proxy to route by, and comes back without it before engine.io sees it.
 */
function routeAwareResponses(server, channel, routing, { viaSlotPort = null, slot = null } = {}) {
  if (routing !== 'sid' && routing !== 'header') return
  const tagging = routing === 'sid' && viaSlotPort !== null
  observeRequests(server, (req, res) => {
    if (!viaSlotPort || !viaSlotPort.has(req.socket)) res.setHeader('Connection', 'close')
    if (tagging) req.url = slotPorts.untagUrl(req.url, slot)
    // A session opened through the slot port needs no report: its tag routes it.
    if (routing === 'sid' && isPollingHandshake(req.url)) reportHandshake(res, channel, tagging ? slot : null, !viaSlotPort || !viaSlotPort.has(req.socket))
  }, tagging ? (req) => (req.url = slotPorts.untagUrl(req.url, slot)) : null)
}

/**
 * Reports the sid a polling handshake response carries to the primary before
 * the response leaves (unless `report` is false); with `slot` (slot ports),
 * tags it first: the head waits for the body, whose length the tag changes.
 */
function reportHandshake(res, channel, slot, report = true) {
  const { end, writeHead } = res
  let head = null
  if (slot !== null) {
    res.writeHead = function deferHead(...args) {
      head = args
      return this
    }
  }
  res.end = function endReportingSession(chunk, ...rest) {
    res.end = end
    res.writeHead = writeHead
    const sid = sidOfHandshake(chunk)
    if (sid && slot !== null) {
      const tagged = slotPorts.tagSid(sid, slot)
      chunk = slotPorts.tagHandshakeBody(chunk, sid, tagged)
      const length = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length
      const headers = head && head.find((arg, index) => index > 0 && arg !== null && typeof arg === 'object')
      if (headers) for (const name of Object.keys(headers)) if (name.toLowerCase() === 'content-length') headers[name] = length
      if (res.hasHeader('content-length')) res.setHeader('content-length', length)
      if (report) channel.reportSession(tagged, true)
    } else if (sid) {
      channel.reportSession(sid, true)
    }
    if (head) writeHead.apply(this, head)
    return end.call(this, chunk, ...rest)
  }
}

/**
 * A TLS server wraps each socket in a TLSSocket with its own peer name: give
 * it the client address the primary read from a PROXY header too.
 */
function tlsPeerNames(server) {
  if (!(server instanceof tls.Server)) return
  server.prependListener('secureConnection', (tlsSocket) => {
    if (tlsSocket._parent && tlsSocket._parent._peername) tlsSocket._peername = tlsSocket._parent._peername
  })
}

/**
 * Calls `observer(req, res)` for every request the server emits, before its
 * listeners run. Hooked on `emit`, not as a 'request' listener: engine.io's
 * attach() removes the server's request listeners and calls them only for
 * requests that are not its own.
 */
function observeRequests(server, observer, upgradeObserver = null) {
  const emit = server.emit
  server.emit = function emitObserved(event, req, res) {
    if (event === 'request') observer(req, res)
    else if (event === 'upgrade' && upgradeObserver) upgradeObserver(req)
    return emit.apply(this, arguments)
  }
}

/**
 * How an http(s) server of a worker treats its connections when it closes;
 * returns `beginClosing()`, to call as `server.close()` starts.
 *
 * `server.close()` destroys the connections Node calls idle, at once. Node >=
 * 26.4 (nodejs/node#63470) counts a connection that has not begun its first
 * request as idle; 20 to 24 count it as busy. A worker adopts connections
 * before their requests are read, and closes in the very tick it adopts the
 * last ones the primary sent it (its channel closed: reload, shutdown), so on
 * 26 close() would reset them (__test__/fixtures/repros/node26-close-after-emit.js).
 * Here idle means "between two requests" on every version, kept from public
 * events: a connection that never sends a request is closed by the shutdown
 * timeout instead, as on 20 to 24.
 *
 * Once closing, every response ends its connection: a client must not send
 * more requests to a worker that is going away, and a kept-alive connection
 * must not hold it for `keepAliveTimeout`. A response whose head is not sent
 * yet says `Connection: close`; a connection whose head already promised
 * keep-alive is ended once nothing is under way on it.
 */
function closeBetweenRequests(server) {
  // A plain net.Server: close() destroys no connection.
  if (typeof server.closeIdleConnections !== 'function') return () => {}
  /**
   * socket -> its latest response; a socket is here from its first request
   * until it closes. A connection's responses finish in order, so its latest
   * says whether anything is under way on it. Per request this is all the
   * work done until closing starts: a 'close' listener on every response
   * cost about 7 of the ~145 µs a worker spends on an engine.io polling
   * request behind HAProxy (bench --proxied, 'sid' slot ports).
   */
  const latest = new Map()
  let closing = false
  const isBetweenRequests = (socket) => {
    const res = latest.get(socket)
    return res !== undefined && (res.writableFinished || res.destroyed)
  }
  // After Node's own 'finish' handling (registered before 'request' was
  // emitted), which keeps the connection alive or ends it.
  const endWhenDone = (socket, res) => {
    res.once('close', () => {
      if (isBetweenRequests(socket) && !socket.destroyed) socket.end()
    })
  }
  observeRequests(server, (req, res) => {
    const socket = req.socket
    if (!latest.has(socket)) socket.once('close', () => latest.delete(socket))
    latest.set(socket, res)
    if (!closing) return
    res.setHeader('Connection', 'close')
    endWhenDone(socket, res)
  })
  server.closeIdleConnections = function closeConnectionsBetweenRequests() {
    for (const socket of latest.keys()) if (isBetweenRequests(socket)) socket.destroy()
  }
  return function beginClosing() {
    closing = true
    for (const [socket, res] of latest) {
      if (isBetweenRequests(socket)) continue
      if (!res.headersSent) res.setHeader('Connection', 'close')
      endWhenDone(socket, res)
    }
  }
}

/**
 * What every worker does whichever way it gets connections: `stopTaking()`
 * runs once, the moment the server starts closing (user `server.close()`,
 * primary disconnect, SIGTERM, or the primary closing the channel), and
 * `lastLook()`, when given, right after the server's own listener closed,
 * for connections to serve before the server may report 'close'; the worker
 * exits once drained, or after the shutdown timeout.
 */
function manageLifecycle(server, stopTaking, lastLook = null) {
  let closing = false
  // Workers the user forks (setupMaster) have no STICKY_SHUTDOWN_TIMEOUT: the option's default.
  const shutdownTimeout = Number(process.env.STICKY_SHUTDOWN_TIMEOUT) || optionDefault('shutdownTimeout')
  const close = server.close
  const beginClosing = closeBetweenRequests(server)
  server.close = function closeStickyServer(...args) {
    if (closing) return close.apply(this, args)
    closing = true
    beginClosing()
    stopTaking()
    // Connections that never end (websockets, long polls) must not keep a
    // closing worker alive for ever.
    setTimeout(() => {
      debug('worker %d: shutdown timeout; closing remaining connections', process.pid)
      if (typeof server.closeAllConnections === 'function') server.closeAllConnections()
      setTimeout(() => process.exit(0), 100).unref()
    }, shutdownTimeout).unref()
    if (!lastLook) return close.apply(this, args)
    // Node reports 'close' as soon as the listener is closed with no
    // connection counted: count one until the last look has adopted what it
    // found (Bun's adopting server holds 'close' for adopted connections).
    const holdsClose = typeof server._emitCloseIfDrained === 'function'
    if (holdsClose) server._connections++
    try {
      return close.apply(this, args)
    } finally {
      lastLook()
      if (holdsClose) {
        server._connections--
        server._emitCloseIfDrained()
      }
    }
  }
  server.once('close', () => {
    debug('worker %d drained; exiting', process.pid)
    if (cluster.worker && cluster.worker.isConnected()) {
      // The primary may be gone already (EPIPE): this worker is leaving anyway.
      cluster.worker.on('error', (error) => debug('worker %d: %s while disconnecting', process.pid, error.code || error.message))
      cluster.worker.disconnect()
    }
    setTimeout(() => process.exit(0), EXIT_GRACE_MS).unref()
  })
  // The primary disconnecting this worker (graceful shutdown, reload) closes
  // the server like the user would: finish what is in flight, then exit.
  if (cluster.worker) cluster.worker.once('disconnect', () => server.close())
  // Signals: the primary coordinates shutdown. A SIGINT from the terminal
  // reaches the whole process group, so a worker leaves it to the primary;
  // SIGTERM to one worker closes it gracefully (and the primary replaces it).
  if (process.env.STICKY_HANDLE_SIGNALS === '1') {
    process.on('SIGINT', () => {})
    process.on('SIGTERM', () => server.close())
  }
  return () => closing
}

function startWorker(server, options = {}) {
  if (!options.channel && process.env.STICKY_LISTEN_FD !== undefined) return startKernelWorker(server)
  const { routing = process.env.STICKY_ROUTING || optionDefault('routing'), channel = takeChannel() } = options
  const socketOptions = socketOptionsOf(server)
  const slotPort = slotPorts.claimSlotPort()
  /** Sockets accepted on the slot port: their proxy routes each request, so they stay open. */
  const viaSlotPort = slotPort ? new WeakSet() : null
  let stopSlotPort = () => {}
  const serveQueued = (fds) => {
    for (const fd of fds) {
      const socket = adoptOrClose(server, socketOptions, { fd })
      if (socket) viaSlotPort.add(socket)
    }
  }
  adoptingServer(server)
  routeAwareResponses(server, channel, routing, { viaSlotPort, slot: process.env.STICKY_WORKER_SLOT })
  if (routing === 'proxy-protocol') tlsPeerNames(server)
  // Stop taking connections the moment the server starts closing: the
  // primary sends new clients of this slot elsewhere until the replacement
  // worker is up, and re-dispatches what this worker had not read. What it
  // did read it serves: `receive` adopts every connection, closing or not.
  // The slot port's queue is served, then left to the primary's copy of the
  // socket (the next worker of the slot takes it), or, when the primary has
  // closed its copy (shutdown), taken and closed in one native step.
  const isClosing = manageLifecycle(
    server,
    () => {
      channel.close()
      if (!slotPort) return
      serveQueued(slotPort.hold.drain())
      stopSlotPort()
    },
    slotPort ? () => serveQueued(slotPort.hold.drainAndClose()) : null,
  )

  const receive = (connections, primaryClosed) => {
    for (const connection of connections) adoptOrClose(server, socketOptions, connection)
    // Replaced by a new worker (rolling reload), or the primary is gone:
    // finish what is in flight, then exit.
    if (primaryClosed && !isClosing()) server.close()
  }

  server.listen({ path: privateAddress(), exclusive: true }, () => {
    if (isClosing()) return
    try {
      startReceiving(channel, receive)
      if (slotPort) {
        stopSlotPort = slotPorts.acceptOnSlotPort(
          slotPort.fd,
          { allowHalfOpen: Boolean(server.allowHalfOpen), paused: Boolean(server.pauseOnConnect), backlog: slotPort.hold.queueLimit() },
          (socket) => {
            if (server.maxConnections != null && server._connections >= server.maxConnections) return socket.destroy()
            viaSlotPort.add(socket)
            adoptSocket(server, socketOptions, socket)
          },
          (error) => server.emit('error', error),
        )
      }
    } catch (error) {
      // The primary went away while this worker started: cluster is already
      // ending this process. Anything else is the user's to handle.
      if (cluster.worker && !cluster.worker.isConnected()) return
      server.emit('error', error)
      return
    }
    debug('worker %d (slot %s) receiving', process.pid, process.env.STICKY_WORKER_SLOT)
  })
}

/**
 * Kernel-steered routing: this worker accepts on its slot's socket of the
 * primary's SO_REUSEPORT group, as an ordinary listening socket (how depends
 * on the runtime: lib/runtime.js).
 */
function startKernelWorker(server) {
  const fd = Number(process.env.STICKY_LISTEN_FD)
  // The counters this worker shares with the primary, and its seat there (absent when the primary has none).
  const statsFd = process.env.STICKY_STATS_FD === undefined ? null : Number(process.env.STICKY_STATS_FD)
  const seat = process.env.STICKY_STATS_SEAT === undefined ? null : Number(process.env.STICKY_STATS_SEAT)
  delete process.env.STICKY_LISTEN_FD
  delete process.env.STICKY_STATS_FD
  delete process.env.STICKY_STATS_SEAT
  const socket = claimListeningFd(fd, statsFd, seat)
  const socketOptions = socketOptionsOf(server)
  const serveQueued = (connections) => {
    for (const connection of connections) adoptOrClose(server, socketOptions, { fd: connection })
  }
  // Closing the server closes this process's copies: while the primary holds
  // the socket (a reload, a respawn), its queue waits for the replacement.
  // When the primary shuts down it closes its copies first, so the socket
  // closes with this worker's: what the kernel queued for this worker is
  // taken and served instead of being reset with the socket.
  const accepting = { backlog: socket.queueLimit(), onAccepted: () => socket.countAccepted() }
  const stopAccepting = acceptOnInheritedSocket(server, fd, privateAddress(), () => {
    debug('worker %d (slot %s) accepting on its kernel-steered socket', process.pid, process.env.STICKY_WORKER_SLOT)
    // While this thread runs JavaScript it accepts nothing: the relief
    // thread keeps the socket's queue from filling (src/core/relief.rs), and
    // hands what it takes to `serveQueued` on this event loop.
    try {
      socket.startRelief(serveQueued)
    } catch (error) {
      process.emitWarning(error.message, { code: error.code, type: 'StickySessionWarning' })
    }
    // An internal message (`cmd: 'NODE_…'`): the user's 'message' listeners never see it.
    if (process.send) process.send({ cmd: 'NODE_STICKY_SESSION_RS', ready: true })
  }, accepting)
  manageLifecycle(
    server,
    () => {
      // What the relief thread held, then what is queued now.
      serveQueued(socket.drain())
      stopAccepting()
    },
    // The runtime's listener has closed; this worker's own reference takes
    // what arrived meanwhile and closes the socket in one native step.
    () => serveQueued(socket.drainAndClose()),
  )
}

module.exports = { startWorker, claimFromEnvironment, takeChannel }

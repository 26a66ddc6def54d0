'use strict'

// The primitives sticky-session-rs takes from its JavaScript runtime where
// Node, Bun and Deno differ, in one place. Node is the reference; Bun is
// detected by `process.versions.bun`, Deno by `process.versions.deno`. Each
// difference has a standalone repro in __test__/fixtures/bun-repros/ and
// __test__/fixtures/deno-repros/ (what each prints next to what Node prints).
// Deno differs in three: closing a bare descriptor, a poll handle on its
// loop, and accepting in a worker on an inherited listening socket (kernel
// steering, which is therefore not used under Deno). Bun's:
// which objects are servers, opening a socket on a received fd, what an
// http.Server does with connections it did not accept (close, timeouts, TLS),
// and accepting on an inherited listening socket (kernel mode). The rest of
// the design (the addon, an extra fd in a worker's stdio, the private
// abstract-socket listen, cluster IPC) behaves the same in both; a worker
// receives on its event loop in Node and on a thread in Bun (`startReceiving`).

const http = require('http')
const https = require('https')
const net = require('net')
const tls = require('tls')
const { codes, stickyError } = require('./errors')

const isBun = typeof process.versions.bun === 'string'
const isDeno = typeof process.versions.deno === 'string'

/**
 * True for a server sticky-session-rs can feed connections to. Node's
 * http/https servers are `net.Server`s; Bun's `http.Server` (and
 * `https.Server`, a subclass of it) is a separate class
 * (bun-repros/server-classes.js).
 */
function isServer(value) {
  return value instanceof net.Server || value instanceof http.Server
}

/**
 * A `net.Socket` on a connected TCP socket this process received as a bare
 * fd. Node: as its own accept path makes one, from a TCP handle opened on the
 * fd (one `ioctl`); `new net.Socket({ fd })` first asks what the fd is
 * (`isatty`, `fstat`, `getsockopt`, `getsockname`: four more system calls a
 * connection), and is the fallback where `process.binding` is denied (the
 * permission model). Bun's constructor leaves a readable socket fd unopened
 * (no handle: writes fail with ERR_SOCKET_CLOSED, nothing is ever read) and
 * adopts it in `connect({ fd })` instead, which Node rejects
 * (bun-repros/socket-from-fd.js).
 */
function socketFromFd(fd, { allowHalfOpen, paused }) {
  if (isBun) {
    const socket = new net.Socket({ allowHalfOpen })
    socket.connect({ fd, pauseOnConnect: paused })
    return socket
  }
  const { binding: tcp } = tcpWrap()
  if (tcp) {
    const handle = new tcp.TCP(tcp.constants.SOCKET)
    if (handle.open(fd) === 0) return new net.Socket({ handle, readable: true, writable: true, allowHalfOpen, pauseOnCreate: paused })
    handle.close()
  }
  return new net.Socket({ fd, readable: true, writable: true, allowHalfOpen, pauseOnCreate: paused })
}

/**
 * Starts delivering the connections of a worker's channel to `receive`.
 * Node: on the event loop itself (a libuv poll handle on the channel): no
 * receiver thread, one wake-up a batch. Bun: its libuv functions abort the
 * process; Deno: a poll handle on the loop it gives the addon reports the
 * first readiness only (deno-repros/loop-poll.js). There a receiver thread
 * hands the batches over.
 */
function startReceiving(channel, receive) {
  if (isBun || isDeno) channel.start(receive)
  else channel.startOnLoop(receive)
}

/**
 * Makes `server` serve the connections a worker hands it with
 * `emit('connection')` as Node's servers do. Node: nothing to do (the private
 * listen gives the server a real handle). A Bun http.Server serves them
 * through its HTTP/1 fallback parser, which its `Bun.serve` listener knows
 * nothing about: see `adoptIntoBunServer`.
 */
function adoptingServer(server) {
  if (isBun && server instanceof http.Server) adoptIntoBunServer(server)
}

/**
 * Closes a descriptor this process holds as a bare number (a worker's end of
 * a channel after the fork, a connection a worker cannot adopt). Deno's
 * `fs.closeSync` closes only descriptors Deno opened (EBADF otherwise:
 * deno-repros/close-raw-fd.js): there the binding closes it.
 */
function closeDescriptor(fd) {
  if (isDeno) require('./native').closeDescriptor(fd)
  else require('fs').closeSync(fd)
}

// ---- the portable path: sockets over cluster IPC ------------------------------

/**
 * Stops `socket` reading for good (the primary has read its routing key and
 * hands the socket to a worker, which reads the rest); returns what was read
 * and not yet seen. `pause()` alone stops the stream, not the handle, and a
 * paused stream below its high-water mark starts the handle again on the
 * next tick (`maybeReadMore`): the socket's `_read` becomes a no-op first.
 */
function stopReading(socket) {
  socket.pause()
  const buffered = []
  while (socket.readableLength > 0) {
    const chunk = socket.read()
    if (chunk === null) break
    buffered.push(chunk)
  }
  socket._read = function readNothing() {}
  const handle = socket._handle
  if (handle && typeof handle.readStop === 'function') {
    handle.reading = false
    handle.readStop()
  }
  return buffered.length === 0 ? Buffer.alloc(0) : Buffer.concat(buffered)
}

/**
 * Calls `then(bytes)` with what `socket` delivers after `stopReading`, which
 * must go to the worker after what was read. Node: nothing (readStop stops
 * the handle at once). Bun read on to the end of its loop turn and delivers
 * that chunk on a later task, before a timer's turn
 * (bun-repros/paused-socket-late-chunk.js): it is taken from the paused
 * stream's buffer then.
 */
function lateBytes(socket, then) {
  if (!isBun) return then(Buffer.alloc(0))
  setTimeout(() => {
    const late = []
    while (socket.readableLength > 0) {
      const chunk = socket.read()
      if (chunk === null) break
      late.push(chunk)
    }
    // Reading the buffer empty resumes Bun's handle: stop it again in this turn.
    if (socket._handle && typeof socket._handle.pause === 'function') socket._handle.pause()
    then(Buffer.concat(late))
  }, 0)
}

/** Closes a connection with a reset (RST), as the native path refuses one. */
function resetSocket(socket) {
  if (typeof socket.resetAndDestroy === 'function' && socket._handle) socket.resetAndDestroy()
  else socket.destroy()
}

/** What a client is told when no worker exists to serve it (the native path's: src/primary/connection.rs). */
const UNAVAILABLE_RESPONSE = 'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'
/** How long a client answered 503 has to close its end before the primary closes the connection. */
const UNAVAILABLE_LINGER_MS = 5000

/**
 * Answers `503 Service Unavailable` on a socket whose request head was read
 * (`stopReading`), then closes it. Reading resumes and what else the client
 * sends is discarded: closing with bytes unread would reset the connection
 * before the client reads the answer.
 */
function answerUnavailable(socket) {
  delete socket._read
  // stopReading's no-op `_read` never pushed: the stream still counts a read
  // under way and would never ask for another (nor see the client's FIN).
  if (socket._readableState) socket._readableState.reading = false
  socket.on('data', () => {})
  socket.setTimeout(UNAVAILABLE_LINGER_MS, () => socket.destroy())
  socket.resume()
  socket.end(UNAVAILABLE_RESPONSE)
}

// ---- kernel mode: accepting on a listening socket from the primary ----------

let tcpWrapLookup
/**
 * Node's TCP handle class, through which a worker accepts on the listening
 * socket it inherited. Node has no public API for this: `listen({ fd })` in a
 * cluster worker is routed through the primary, `listen({ reusePort })` and
 * `net.BoundSocket` make new sockets (whose index in the reuseport group moves
 * when a worker leaves), and passing a server handle over IPC makes the
 * primary accept on it. `process.binding` is denied under the permission
 * model (`--permission`). Looked up once: `{ binding }`, or `{ error }` why
 * it cannot be had.
 */
function tcpWrap() {
  if (!tcpWrapLookup) {
    try {
      tcpWrapLookup = { binding: process.binding('tcp_wrap') }
    } catch (error) {
      tcpWrapLookup = { error }
    }
  }
  return tcpWrapLookup
}

/**
 * Why workers forked with this process's flags could not accept on inherited
 * listening sockets (kernel mode), or null when they can. The primary asks
 * before it chooses kernel mode: workers inherit its runtime and `execArgv`.
 * Bun needs no `tcp_wrap` (it has none): see `acceptOnInheritedSocket`.
 */
function kernelModeObstacle() {
  if (isBun) return null
  if (isDeno) {
    return (
      "kernel steering is not used under Deno: a cluster worker's listen(handle) is sent to the primary, whose round-robin handle throws " +
      '(deno-repros/kernel-listen-handle.js); accepting on the handle in the worker instead (server._listen2) left a worker replaced under load ' +
      'holding its listening socket and connections it never read'
    )
  }
  const { error } = tcpWrap()
  if (!error) return null
  const why = error.code === 'ERR_ACCESS_DENIED' ? 'the permission model (--permission) denies it' : `it failed (${error.code || error.message})`
  return `kernel: true needs process.binding('tcp_wrap') in each worker to accept on its slot's socket, and ${why}; no public Node API lets a cluster worker do this`
}

/**
 * Makes `server` accept on the listening socket `fd` this cluster worker
 * inherited; `onListening()` once it does, `onAccepted()` for each
 * connection accepted; `backlog`: the socket's queue limit, which the
 * runtime's listener keeps (Node calls listen() again, with 511 unless
 * told). Returns the function that stops accepting (closes this process's
 * copy of the socket).
 * Node: a TCP handle opened on the fd becomes the server's own listening
 * handle (`server.close()` closes it).
 * Bun has no `tcp_wrap` and its http.Server ignores `listen({ fd })`, but a
 * net.Server's `listen({ fd, exclusive: true })` opens the fd in the worker
 * itself (bun-repros/kernel-listen.js): it accepts, and hands each connection
 * to `server`, which listens on `privateAddress` so that its close() works,
 * as in the accept-loop mode.
 */
function acceptOnInheritedSocket(server, fd, privateAddress, onListening, { backlog, onAccepted = () => {} } = {}) {
  if (isBun) {
    adoptingServer(server)
    const acceptor = net.createServer({ allowHalfOpen: Boolean(server.allowHalfOpen), pauseOnConnect: Boolean(server.pauseOnConnect) }, (socket) => {
      onAccepted()
      server.emit('connection', socket)
    })
    acceptor.on('error', (error) => server.emit('error', error))
    server.listen({ path: privateAddress, exclusive: true }, () => acceptor.listen({ fd, exclusive: true, backlog: backlog ?? undefined }, onListening))
    return () => acceptor.close()
  }
  const { binding, error: unavailable } = tcpWrap()
  if (unavailable) throw unavailable
  const { TCP, constants } = binding
  const handle = new TCP(constants.SERVER)
  const error = handle.open(fd)
  if (error) {
    throw stickyError(
      codes.NO_LISTENING_SOCKET,
      `cannot accept on this worker's listening socket (fd ${fd}): libuv error ${error}; kernel-mode workers are forked by sticky.listen(server, port, { kernel: true }) in the primary`,
    )
  }
  server.listen(handle, backlog ?? undefined, onListening)
  // net.Server's own connection callback, found on the handle at each call.
  const onconnection = handle.onconnection
  handle.onconnection = function countAccepted(error, clientHandle) {
    if (!error) onAccepted()
    return onconnection.call(this, error, clientHandle)
  }
  return () => {}
}

// ---- Bun ------------------------------------------------------------------

const REQUEST_TIMEOUT_RESPONSE = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n'

/** A property of a Bun server keyed by a symbol Bun keeps private, found by the symbol's description. */
function bunInternal(object, description) {
  const symbol = Object.getOwnPropertySymbols(object).find((s) => s.description === description)
  return symbol === undefined ? undefined : object[symbol]
}

/**
 * What Bun's http.Server does not do for connections it did not accept:
 * - an `https.Server` parses them as plain HTTP (bun-repros/https-adopted.js):
 *   each is wrapped in a server-side TLSSocket made from the server's options;
 * - `close()` resets every one with no request under way, including one whose
 *   first request is still unread in the socket (a worker closes in the same
 *   tick it adopts its last connections, during a rolling reload): those are
 *   left to finish, as on Node 20 to 24 (bun-repros/http-adopted-close.js);
 * - `'close'` comes as soon as the listener stops: it is held back until the
 *   adopted connections have closed (the worker's shutdown timeout still ends
 *   them), so the worker does not exit under in-flight requests; and
 *   `getConnections()` does not count them;
 * - `headersTimeout`, `requestTimeout` and `keepAliveTimeout` are not enforced
 *   (bun-repros/http-adopted-timeouts.js): `AdoptedConnection` does it.
 */
function adoptIntoBunServer(server) {
  const connections = new Map()
  let closing = false
  let closeHeld = false
  const secure = tlsWrapper(server)
  const emit = server.emit
  server.emit = function emitAdopting(event, ...args) {
    if (event === 'connection' && args[0] instanceof net.Socket && !(args[0] instanceof tls.TLSSocket)) {
      const socket = secure ? secure(args[0]) : args[0]
      connections.set(socket, new AdoptedConnection(server, socket, () => closing))
      socket.once('close', () => {
        connections.delete(socket)
        if (closeHeld && connections.size === 0) {
          closeHeld = false
          emit.call(server, 'close')
        }
      })
      return emit.call(this, event, socket, ...args.slice(1))
    }
    if (event === 'request') {
      const connection = connections.get(args[0].socket)
      if (connection) connection.onRequest(args[0], args[1])
    } else if (event === 'upgrade' || event === 'connect') {
      const connection = connections.get(args[1])
      if (connection) connection.upgraded()
    } else if (event === 'close' && connections.size > 0) {
      closeHeld = true
      return true
    }
    return emit.apply(this, [event, ...args])
  }

  const close = server.close
  server.close = function closeKeepingUnread(...args) {
    closing = true
    const fallbackConnections = bunInternal(server, 'http1Connections')
    const unread = fallbackConnections ? [...fallbackConnections].filter((socket) => socket.bytesRead === 0 && !socket.destroyed) : []
    for (const socket of unread) fallbackConnections.delete(socket)
    try {
      return close.apply(this, args)
    } finally {
      for (const socket of unread) fallbackConnections.add(socket)
    }
  }

  const getConnections = server.getConnections
  server.getConnections = function getConnectionsWithAdopted(callback) {
    return getConnections.call(this, (error, count) => callback(error, error ? count : count + connections.size))
  }

  // Node checks the request timeouts of its connections on this interval.
  server.once('listening', () => {
    const interval = server.connectionsCheckingInterval ?? 30000
    const timer = setInterval(() => {
      const now = Date.now()
      for (const connection of connections.values()) connection.checkRequestTimeouts(now)
    }, interval)
    timer.unref()
    server.prependOnceListener('close', () => clearInterval(timer))
  })
}

/** For a Bun `https.Server`: a function wrapping a plain socket in a server-side TLSSocket; otherwise null. */
function tlsWrapper(server) {
  if (!(server instanceof https.Server)) return null
  const options = bunInternal(server, 'options')
  if (!options || !(options.key || options.pfx)) {
    throw stickyError(
      codes.INVALID_SERVER,
      'sticky-session-rs cannot read the key of this https.Server under Bun: create it with https.createServer({ key, cert }, handler)',
    )
  }
  const secureContext = tls.createSecureContext(options)
  const { requestCert, rejectUnauthorized, ALPNProtocols, SNICallback } = options
  return (socket) => {
    const secureSocket = new tls.TLSSocket(socket, { isServer: true, secureContext, requestCert, rejectUnauthorized, ALPNProtocols, SNICallback })
    // The client address a PROXY header named is on the plain socket.
    if (socket._peername) secureSocket._peername = socket._peername
    return secureSocket
  }
}

/**
 * Node's server timeouts for one adopted connection: from the start of each
 * request, its headers within `headersTimeout` and all of it within
 * `requestTimeout` (else a 408 and the connection closes); between requests,
 * `keepAliveTimeout` (and Bun's `keepAliveTimeoutBuffer`) of idleness, or none
 * once the server is closing.
 */
class AdoptedConnection {
  constructor(server, socket, isClosing) {
    this.server = server
    this.socket = socket
    this.isClosing = isClosing
    this.idleTimer = null
    this.startRequest()
    // A request begins with its first bytes after an idle time.
    this.onData = () => this.phase === 'idle' && this.startRequest()
    socket.on('data', this.onData)
    socket.once('close', () => clearTimeout(this.idleTimer))
  }

  startRequest() {
    clearTimeout(this.idleTimer)
    this.phase = 'headers'
    this.startedAt = Date.now()
    this.request = null
  }

  onRequest(request, response) {
    this.phase = 'body'
    this.request = request
    response.once('finish', () => this.phase === 'body' && this.request === request && this.idle())
  }

  /** The socket now belongs to whoever took the upgrade (a websocket): no HTTP timeouts apply. */
  upgraded() {
    this.phase = 'upgraded'
    this.socket.removeListener('data', this.onData)
  }

  idle() {
    this.phase = 'idle'
    const { socket, server } = this
    if (socket.destroyed || !socket.writable) return
    if (this.isClosing()) {
      socket.destroySoon()
      return
    }
    if (!(server.keepAliveTimeout > 0)) return
    this.idleTimer = setTimeout(() => this.phase === 'idle' && socket.destroy(), server.keepAliveTimeout + (server.keepAliveTimeoutBuffer || 0))
    this.idleTimer.unref()
  }

  checkRequestTimeouts(now) {
    const { headersTimeout, requestTimeout } = this.server
    const elapsed = now - this.startedAt
    const headersLate = this.phase === 'headers' && headersTimeout > 0 && elapsed > headersTimeout
    const requestLate = (this.phase === 'headers' || (this.phase === 'body' && !this.request.complete)) && requestTimeout > 0 && elapsed > requestTimeout
    if (!headersLate && !requestLate) return
    this.phase = 'timed-out'
    const { socket, server } = this
    const error = Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' })
    if (server.emit('clientError', error, socket)) return
    if (!socket.writable) return socket.destroy()
    socket.write(REQUEST_TIMEOUT_RESPONSE, () => socket.destroy())
    setTimeout(() => socket.destroy(), 1000).unref()
  }
}

module.exports = { isBun, isDeno, isServer, socketFromFd, startReceiving, adoptingServer, kernelModeObstacle, acceptOnInheritedSocket, tcpWrap, closeDescriptor, stopReading, lateBytes, resetSocket, answerUnavailable }

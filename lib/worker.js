'use strict'

// A worker: receives connections from the primary (native thread) and turns
// each into a `net.Socket` on the user's server, exactly as Node's own accept
// path would, so timeouts, `close()` and `getConnections()` behave.

const cluster = require('cluster')
const net = require('net')
const os = require('os')
const path = require('path')
const tls = require('tls')
const debug = require('debug')('sticky-session-rs')
const { claimChannel, claimListeningFd } = require('./native')
const { stickyError } = require('./errors')

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
  const fd = Number(process.env.STICKY_CHANNEL_FD)
  delete process.env.STICKY_CHANNEL_FD
  claimed = claimChannel(fd)
  return claimed
}

function takeChannel() {
  const channel = claimFromEnvironment()
  if (!channel) {
    throw stickyError(
      'ERR_STICKY_NO_CHANNEL',
      'this worker has no sticky-session-rs channel: workers must be forked by sticky.listen() in the primary ' +
        '(do not call cluster.fork() yourself for this server)',
    )
  }
  claimed = null
  return channel
}

/** A listening address nobody else uses, so the server has a real handle. */
function privateAddress() {
  const name = `sticky-session-rs-${process.pid}-${Math.random().toString(36).slice(2)}`
  return process.platform === 'linux' ? `\0${name}` : path.join(os.tmpdir(), `${name}.sock`)
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

/** What Node's `onconnection` does for an accepted handle, for a received fd. */
function adopt(server, socketOptions, connection) {
  if (server.maxConnections != null && server._connections >= server.maxConnections) {
    require('fs').closeSync(connection.fd)
    return
  }
  const socket = new net.Socket({
    fd: connection.fd,
    readable: true,
    writable: true,
    allowHalfOpen: server.allowHalfOpen,
    pauseOnCreate: server.pauseOnConnect,
  })
  if (connection.remoteAddress !== undefined) {
    socket._peername = { address: connection.remoteAddress, port: connection.remotePort, family: connection.remoteFamily }
  }
  if (socketOptions.noDelay) socket.setNoDelay(true)
  if (socketOptions.keepAlive) socket.setKeepAlive(true, socketOptions.keepAliveInitialDelay)
  server._connections++
  socket.server = server
  socket._server = server
  server.emit('connection', socket)
}

/** True for an engine.io polling handshake: `EIO=`, `transport=polling`, no `sid`. */
function isPollingHandshake(url) {
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
 */
function routeAwareResponses(server, channel, routing) {
  if (routing !== 'sid' && routing !== 'header') return
  // Hooked on `emit`, not as a 'request' listener: engine.io's attach()
  // removes the server's request listeners and calls them only for requests
  // that are not its own.
  const emit = server.emit
  server.emit = function emitRouteAware(event, req, res) {
    if (event === 'request') {
      res.setHeader('Connection', 'close')
      if (routing === 'sid' && isPollingHandshake(req.url)) {
        const end = res.end
        res.end = function endReportingSession(chunk, ...rest) {
          const sid = sidOfHandshake(chunk)
          if (sid) channel.reportSession(sid, true)
          return end.call(this, chunk, ...rest)
        }
      }
    }
    return emit.apply(this, arguments)
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
 * What every worker does whichever way it gets connections: `stopTaking()`
 * runs once, the moment the server starts closing (user `server.close()`,
 * primary disconnect, SIGTERM, or the primary closing the channel); the
 * worker exits once drained, or after the shutdown timeout.
 */
function manageLifecycle(server, stopTaking) {
  let closing = false
  const shutdownTimeout = Number(process.env.STICKY_SHUTDOWN_TIMEOUT) || 10000
  const close = server.close
  server.close = function closeStickyServer(...args) {
    if (!closing) {
      closing = true
      stopTaking()
      // Connections that never end (websockets, long polls) must not keep a
      // closing worker alive for ever.
      setTimeout(() => {
        debug('worker %d: shutdown timeout; closing remaining connections', process.pid)
        if (typeof server.closeAllConnections === 'function') server.closeAllConnections()
        setTimeout(() => process.exit(0), 100).unref()
      }, shutdownTimeout).unref()
    }
    return close.apply(this, args)
  }
  server.once('close', () => {
    debug('worker %d drained; exiting', process.pid)
    if (cluster.worker && cluster.worker.isConnected()) cluster.worker.disconnect()
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
  const { routing = process.env.STICKY_ROUTING || 'ip', channel = takeChannel() } = options
  const socketOptions = socketOptionsOf(server)
  routeAwareResponses(server, channel, routing)
  if (routing === 'proxy-protocol') tlsPeerNames(server)
  // Stop taking connections the moment the server starts closing: the
  // primary sends new clients of this slot elsewhere until the replacement
  // worker is up, and re-dispatches what this worker had not taken.
  const isClosing = manageLifecycle(server, () => channel.close())

  const receive = (connections, primaryClosed) => {
    for (const connection of connections) {
      try {
        adopt(server, socketOptions, connection)
      } catch (error) {
        debug('worker %d could not adopt fd %d: %s', process.pid, connection.fd, error.message)
        try {
          require('fs').closeSync(connection.fd)
        } catch {}
      }
    }
    // Replaced by a new worker (rolling reload), or the primary is gone:
    // finish what is in flight, then exit.
    if (primaryClosed && !isClosing()) server.close()
  }

  server.listen({ path: privateAddress(), exclusive: true }, () => {
    if (isClosing()) return
    try {
      channel.start(receive)
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
 * Node's TCP handle class, through which a worker accepts on the listening
 * socket it inherited. Node has no public API for this: `listen({ fd })` in a
 * cluster worker is routed through the primary, `listen({ reusePort })` and
 * `net.BoundSocket` make new sockets (whose index in the reuseport group moves
 * when a worker leaves), and passing a server handle over IPC makes the
 * primary accept on it. `process.binding` is denied under the permission
 * model (`--permission`).
 */
function tcpWrap() {
  return process.binding('tcp_wrap')
}

/**
 * Why workers forked with this process's flags could not accept on inherited
 * listening sockets (kernel mode), or null when they can. The primary asks
 * before it chooses kernel mode: workers inherit its `execArgv`.
 */
function kernelModeObstacle() {
  try {
    tcpWrap()
    return null
  } catch (error) {
    const why = error.code === 'ERR_ACCESS_DENIED' ? 'the permission model (--permission) denies it' : `it failed (${error.code || error.message})`
    return `kernel: true needs process.binding('tcp_wrap') in each worker to accept on its slot's socket, and ${why}; no public Node API lets a cluster worker do this`
  }
}

/**
 * Kernel-steered routing: this worker accepts on its slot's socket of the
 * primary's SO_REUSEPORT group, as an ordinary listening handle (a TCP handle
 * opened on the fd; `listen({ fd })` would be routed through the primary).
 */
function startKernelWorker(server) {
  const fd = Number(process.env.STICKY_LISTEN_FD)
  delete process.env.STICKY_LISTEN_FD
  claimListeningFd(fd)
  const { TCP, constants } = tcpWrap()
  const handle = new TCP(constants.SERVER)
  const error = handle.open(fd)
  if (error) throw stickyError('ERR_STICKY_NO_CHANNEL', `cannot open the listening socket fd ${fd} (libuv error ${error})`)
  // Closing the server closes this process's copy only: the socket stays in
  // the group (the primary holds it) so its queue waits for the replacement.
  manageLifecycle(server, () => {})
  server.listen(handle, () => {
    debug('worker %d (slot %s) accepting on its kernel-steered socket', process.pid, process.env.STICKY_WORKER_SLOT)
    if (process.send) process.send({ stickySessionRs: 'ready' })
  })
}

module.exports = { startWorker, claimFromEnvironment, takeChannel, kernelModeObstacle }

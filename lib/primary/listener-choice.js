'use strict'

// How a primary listens, chosen once when it binds (lib/listeners.js has the
// two native ways, lib/portable/listener.js the portable path's): the
// kernel-steered group when asked for (or taken over) and the kernel allows
// it, else the native accept loop; without the native binding, the portable
// listener. Where the socket comes from (a bind, systemd, a takeover) was
// decided before: lib/primary/socket-source.js.

const debug = require('debug')('sticky-session-rs')
const { AcceptLoopListener, KernelGroupListener } = require('../listeners')
const { PortableListener } = require('../portable/listener')
const { portable } = require('../native')
const { codes, stickyError } = require('../errors')
const { kernelModeObstacle } = require('../runtime')
const { slotPortsUnsupported } = require('../slot-ports')

/** The accept loop's start-up wait that never ends by itself (2^31 - 1 ms). */
const UNTIL_READY_MS = 2 ** 31 - 1

/**
 * The listener for `spec` ({ address, port, adopt, ipv6Only }) from `source`
 * (lib/primary/socket-source.js), reporting to `onEvent`. Returns what
 * `failed(error)` returns when listening failed (a group taken over cannot
 * fall back).
 */
function chooseListener(spec, source, options, { onEvent, failed }) {
  // Kernel steering where it can work; the accept loop is the fallback,
  // worth a warning only when `kernel: true` was asked for.
  const fallBack = (why) => {
    if (options.kernelAsked) process.emitWarning(`${why}: using the accept loop (leave kernel unset to use it without this warning)`, { code: codes.KERNEL_UNSUPPORTED, type: 'StickySessionWarning' })
    else debug('kernel steering unavailable (%s): using the accept loop', why)
  }
  // Without the binding (lib/native.js decides), the portable path: sockets over cluster IPC.
  if (portable) {
    // Slot ports are the native path's: a proxy set up over them (proxyConfig) would find nothing there.
    if (options.slotPorts) return failed(slotPortsUnsupported())
    if (options.kernelAsked) {
      process.emitWarning(`kernel steering needs the native binding, and ${portable}: routing by the same hash in JavaScript (the portable path)`, { code: codes.KERNEL_UNSUPPORTED, type: 'StickySessionWarning' })
    }
    try {
      return new PortableListener(spec, options, onEvent)
    } catch (error) {
      return failed(error)
    }
  }
  const kernel = source.kind === 'takeover' ? source.kernel : options.kernel
  if (kernel && source.kind === 'systemd') {
    fallBack('kernel steering needs one listening socket per worker and systemd passed one')
  } else if (kernel && options.rendezvous) {
    fallBack('kernel steering needs workers that sticky-session-rs forks, and setupMaster() lets you fork them')
  } else if (kernel) {
    try {
      const obstacle = kernelModeObstacle()
      if (obstacle) throw stickyError(codes.KERNEL_UNSUPPORTED, obstacle)
      return new KernelGroupListener(spec, options, onEvent)
    } catch (error) {
      if (error.code !== codes.KERNEL_UNSUPPORTED || source.adopt) return failed(error)
      fallBack(error.message)
    }
  }
  // Taking over, the old primary serves until every worker here is ready:
  // accept only then (lib/primary/socket-source.js: Takeover#complete gives up at startupWait).
  const startupWait = source.kind === 'takeover' ? UNTIL_READY_MS : options.startupWait
  try {
    return new AcceptLoopListener(spec, { ...options, startupWait }, onEvent)
  } catch (error) {
    return failed(error)
  }
}

module.exports = { chooseListener }

'use strict'

// Where a primary's listening socket comes from, and where it goes: systemd
// passed it (lib/systemd.js), the primary this one takes over offers it
// (`takeover: true`, lib/takeover.js: the protocol), or the port is bound
// anew. With `takeover: true` a primary then offers its socket(s) to a later
// one and, once that one's workers are ready, hands them over: both sides of
// a takeover are here (`Takeover`), in the order a takeover runs.

const net = require('net')
const debug = require('debug')('sticky-session-rs')
const { portable, resolveHost } = require('../native')
const { codes, stickyError } = require('../errors')
const { kernelModeObstacle } = require('../runtime')
const { systemdListener } = require('../systemd')
const { eventKinds } = require('../listeners')
const { takeoverName, takeoverObstacle, requestSockets, checkOffer, offerSockets, takeoverEventKinds } = require('../takeover')

/** With `takeover: true`, how often and how long to look for an offer while the port is in use. */
const TAKEOVER_RETRIES = 10
const TAKEOVER_RETRY_MS = 100

/** One line on stderr for what an operator must know happened (a takeover), whatever DEBUG says. */
function announce(line) {
  debug(line)
  process.stderr.write(`sticky-session-rs: ${line}\n`)
}

/** Where the listening socket came from, for logs. */
function describeSource(source) {
  if (source.kind === 'systemd') return `socket passed by systemd as fd ${source.adopt[0]}`
  if (source.kind === 'takeover') return `taken over from primary ${source.offer.pid}`
  return 'bound'
}

// ---- systemd, a host name ----------------------------------------------------

/**
 * The socket systemd passed for `port`, as `{ address, source }`, or null
 * when it passed none; throws as lib/systemd.js does. systemd's variables are
 * consumed at once: call this before anything can fork.
 */
function systemdSource(port) {
  const systemd = systemdListener(port)
  if (!systemd) return null
  debug('systemd passed fd %d%s, listening on %s port %d: using it', systemd.fd, systemd.name ? ` (${systemd.name})` : '', systemd.address, systemd.port)
  return { address: systemd.address, source: { kind: 'systemd', adopt: [systemd.fd] } }
}

/**
 * The address to listen on for `host`: a host name is resolved first
 * (lib/native resolveHost), as `net.Server#listen` does. Throws the lookup's
 * error, with what `net` puts on it.
 */
function resolveAddress(host) {
  // The portable path has no resolveHost: its net.Server looks the name up (as `net` does).
  if (net.isIP(host) || portable) return host
  try {
    return resolveHost(host).address
  } catch (error) {
    throw Object.assign(error, { syscall: 'getaddrinfo', hostname: host })
  }
}

// ---- the new primary's side of a takeover ----------------------------------

/**
 * Where the listening socket comes from when systemd passed none: the
 * primary this one takes over (`takeover: true`), or a new bind.
 */
function listenSource(address, port, options) {
  // Where takeover cannot work, the port is bound as usual (Takeover#offerToSuccessor warns, once).
  if (!options.takeover || port === 0 || takeoverObstacle()) return { kind: 'bind' }
  let requested
  try {
    requested = requestSockets(address, port)
  } catch (error) {
    if (error.code !== codes.TAKEOVER_FOREIGN) throw error
    // Another user's process holds the name: it is not this app's primary.
    process.emitWarning(`${error.message}; binding as usual`, { code: error.code, type: 'StickySessionWarning' })
    return { kind: 'bind' }
  }
  if (!requested) {
    debug('takeover: no primary offers [%s]:%d; binding', address, port)
    return { kind: 'bind' }
  }
  const { client, offer } = requested
  let kernel
  try {
    kernel = checkOffer(offer, options).kernel
    const obstacle = kernel && kernelModeObstacle()
    if (obstacle) throw stickyError(codes.KERNEL_UNSUPPORTED, `${obstacle}: this primary cannot take over the kernel-steered group of primary ${offer.pid}`)
  } catch (error) {
    client.close()
    throw error
  }
  debug('takeover: primary %d offers %d %s socket(s) (workers %d)', offer.pid, offer.sockets, offer.mode, offer.workers)
  if (options.kernelAsked && !kernel) {
    process.emitWarning(`primary ${offer.pid}, taken over, uses the accept loop: so does this one (restart without takeover to switch to kernel steering)`, { code: codes.KERNEL_UNSUPPORTED, type: 'StickySessionWarning' })
  }
  return { kind: 'takeover', client, offer, kernel, adopt: client.takeSockets() }
}

/**
 * With `takeover: true`, the port may be held by a primary between two
 * takeovers (it has just handed it over and its successor does not offer
 * it yet): whether to look again (after `TAKEOVER_RETRY_MS`) before
 * reporting EADDRINUSE, which then says why no offer was found.
 */
function lookAgainForOffer(error, source, attempt, options) {
  if (!options.takeover || source.kind !== 'bind' || error.code !== 'EADDRINUSE') return false
  if (attempt >= TAKEOVER_RETRIES) {
    error.message += ` (and no primary offered it for takeover: one started with takeover: true by this user, uid ${process.geteuid()}, for the same host and port would have)`
    return false
  }
  return true
}

/**
 * A primary's part in takeovers, once it listens: as the new primary, waiting
 * for its workers before releasing the old one (`complete`); with `takeover:
 * true`, offering its socket(s) to a later primary and handing them over
 * (`offerToSuccessor`). `primary` (lib/primary.js) gives the options, the server, the
 * listener, the slots, its timers (`later`), 'slot-ready', and `close()`.
 */
class Takeover {
  constructor(primary) {
    this.primary = primary
    /** With `takeover: true`: the offer of this primary's sockets to a later primary. */
    this.offering = null
    /** Set once a takeover took this primary's sockets: closing then leaves them taking connections. */
    this.handedOver = false
    /** While taking over: waiting for this primary's workers. */
    this.wait = null
  }

  /**
   * The new primary's side: once every worker is ready, tells the old
   * primary to stop accepting (it drains and exits), then offers the sockets
   * in turn. If the workers are not all ready within `startupWait`, the old
   * primary goes on serving and this one closes, with an 'error'.
   */
  complete({ client, offer }) {
    const { primary } = this
    const { options, server } = primary
    const ready = new Set()
    const onReady = ({ slot, pid }) => {
      const state = primary.supervisor.slots.get(slot)
      if (!state || state.pid !== pid) return
      ready.add(slot)
      if (ready.size < options.workers) return
      this.endWait()
      let oldPid = offer.pid
      try {
        oldPid = client.release()
      } catch (error) {
        process.emitWarning(`primary ${offer.pid} did not confirm the takeover (${error.message}); if it still runs, it accepts too until it exits`, { code: codes.TAKEOVER_FAILED, type: 'StickySessionWarning' })
      } finally {
        client.close()
      }
      announce(`primary ${process.pid} took over ${this.where()} from primary ${oldPid} (${offer.mode === 'kernel' ? `its kernel-steered group of ${offer.sockets} sockets` : 'its listening socket'}); primary ${oldPid} drains and exits`)
      if (options.takeover) this.offerToSuccessor()
    }
    const timer = setTimeout(() => {
      const error = stickyError(
        codes.TAKEOVER_TIMEOUT,
        `${ready.size} of ${options.workers} workers were ready within startupWait (${options.startupWait} ms): primary ${offer.pid} goes on serving and this primary closes. ` +
          'Find out why the workers do not start (their output above), then start this primary again',
      )
      // close() ends the takeover (the old primary goes on) and leaves it the listen queue.
      primary.close()
      server.emit('error', error)
    }, options.startupWait)
    primary.on(eventKinds.SlotReady, onReady)
    this.wait = { client, timer, onReady }
  }

  /** Stops waiting for the workers of a takeover (ready, timed out, or closing); returns its client. */
  endWait() {
    if (!this.wait) return
    const { client, timer, onReady } = this.wait
    this.wait = null
    clearTimeout(timer)
    this.primary.off(eventKinds.SlotReady, onReady)
    return client
  }

  // ---- the old primary's side ------------------------------------------------

  /** The old primary's side: offers its listening socket(s) to a later primary. */
  offerToSuccessor(attempt = 0) {
    const { primary } = this
    const { options } = primary
    if (primary.closing || this.offering) return
    const obstacle = takeoverObstacle()
    if (obstacle) return process.emitWarning(`${obstacle}: takeover is off`, { code: codes.TAKEOVER_UNSUPPORTED, type: 'StickySessionWarning' })
    const port = primary.server.address().port
    const { listener } = primary
    try {
      this.offering = offerSockets(primary.address, port, listener.mode, options.config, listener.listeningFds(), (event) => this.onEvent(event))
    } catch (error) {
      // The primary just taken over releases the name an instant before it confirms.
      if (error.code === 'EADDRINUSE' && attempt < TAKEOVER_RETRIES) {
        primary.later(TAKEOVER_RETRY_MS, () => this.offerToSuccessor(attempt + 1))
        return
      }
      process.emitWarning(`${error.message}; a later primary cannot take over from this one`, { code: codes.TAKEOVER_UNAVAILABLE, type: 'StickySessionWarning' })
      return
    }
    debug('takeover: offering %s under %s', this.where(), takeoverName(primary.address, port))
  }

  onEvent(event) {
    const warn = (code, message) => process.emitWarning(message, { code, type: 'StickySessionWarning' })
    switch (event.kind) {
      case takeoverEventKinds.Offered:
        debug('takeover: sent the listening socket(s) to primary %d; accepting until its workers are ready', event.pid)
        break
      case takeoverEventKinds.Busy:
        debug('takeover: refused process %d: another takeover is under way', event.pid)
        break
      case takeoverEventKinds.Refused:
        warn(codes.TAKEOVER_REFUSED, `refused to hand ${this.where()} to process ${event.pid} of uid ${event.uid}: only a process of this user (uid ${process.geteuid()}) may take over`)
        break
      case takeoverEventKinds.Abandoned:
        warn(codes.TAKEOVER_ABANDONED, `process ${event.pid} gave up taking over ${this.where()} (${event.message}); this primary goes on serving`)
        break
      case takeoverEventKinds.Failed:
        this.offering = null
        warn(codes.TAKEOVER_UNAVAILABLE, `the takeover offer stopped (${event.message}); a later primary cannot take over from this one`)
        break
      case takeoverEventKinds.Released:
        if (this.offering) this.offering.close()
        this.offering = null
        announce(`primary ${process.pid} handed ${this.where()} over to primary ${event.pid}; draining, then exiting with code 0`)
        this.handedOver = true
        this.primary.close(() => process.exit(0))
        break
    }
  }

  // ---- closing ---------------------------------------------------------------

  /** Ends both sides of a takeover; returns the client of one this primary was taking (its listen queue is the old primary's). */
  stop() {
    // A later primary can no longer take over, and one taking over from this
    // one stops waiting (its predecessor goes on serving).
    if (this.offering) this.offering.close()
    this.offering = null
    const client = this.endWait()
    if (client) client.close()
    return client
  }

  /** `[address]:port` as listened on, for logs. */
  where() {
    const { primary } = this
    const address = primary.server.address()
    return address ? `[${address.address}]:${address.port}` : `[${primary.address}]:${primary.port}`
  }
}

module.exports = { TAKEOVER_RETRY_MS, describeSource, systemdSource, resolveAddress, listenSource, lookAgainForOffer, Takeover }

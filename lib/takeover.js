'use strict'

// Socket takeover (`listen(server, port, { takeover: true })`): a new primary
// of the same app, started by the same user for the same host and port while
// the old one runs, receives the old one's listening socket(s) over a private
// Unix socket instead of binding, starts its workers, and once every one is
// ready tells the old primary to stop accepting; the old one drains and exits 0.
// The kernel never stops accepting on the port, so no client is refused.
//
// The private socket is an abstract Unix socket (Linux) named after the user,
// host and port: it has no file to clean up after a crash, lives exactly as
// long as the primary, and needs no writable directory. Abstract names carry
// no permissions, so each side checks the other's uid (SO_PEERCRED) and a
// process of another user gets nothing.

const native = require('./native')
const { codes, stickyError } = require('./errors')

/** The kinds of an offer's events (written once, in src/binding/takeover.rs): `takeoverEventKinds.Released` is 'released'. */
const takeoverEventKinds = Object.freeze({ ...require('./portable/contract').takeoverEventKinds })

/** The abstract socket name a primary on `address`:`port` offers its sockets under. */
function takeoverName(address, port) {
  return `sticky-session-rs/takeover/uid=${process.geteuid()}/[${address}]:${port}`
}

/** Why takeover cannot work here, or null. */
function takeoverObstacle() {
  if (typeof native.connectTakeover === 'function') return null
  if (native.portable) return `takeover needs the native binding (Linux), and ${native.portable}`
  return `takeover needs Linux (abstract Unix sockets and SO_PEERCRED); this is ${process.platform}`
}

/**
 * Asks the primary of this user offering `address`:`port` for its listening
 * sockets. Returns `{ client, offer }` (the sockets wait in `client` until
 * `client.takeSockets()`), or null when no primary offers them. Throws
 * `ERR_STICKY_TAKEOVER_BUSY` while another takeover of it is under way, and
 * `ERR_STICKY_TAKEOVER_FOREIGN` when the name is held by another user's process.
 */
function requestSockets(address, port) {
  const client = native.connectTakeover(takeoverName(address, port))
  if (!client) return null
  try {
    return { client, offer: client.receiveOffer(process.geteuid()) }
  } catch (error) {
    client.close()
    throw error
  }
}

/**
 * Whether this primary can use what `offer` carries, given its own options:
 * `{ kernel }` says how it listens then. A kernel-steered group moves whole,
 * so it needs the same `workers` and `seed` (the group's BPF program hashes
 * `% workers` with the seed); the accept loop's socket suits any options.
 * Throws `ERR_STICKY_TAKEOVER_MISMATCH` otherwise.
 */
function checkOffer(offer, options) {
  if (offer.mode !== 'kernel') return { kernel: false }
  const mismatch = (what) =>
    stickyError(
      codes.TAKEOVER_MISMATCH,
      `primary ${offer.pid} steers connections in the kernel (kernel: true, workers: ${offer.workers}, its seed); ${what}. ` +
        `Its group of ${offer.sockets} sockets moves whole: start this primary with the same kernel, workers and seed options, ` +
        'or stop the old primary first (clients are refused meanwhile)',
    )
  if (!options.kernel) throw mismatch('this primary has kernel: false')
  if (offer.workers !== options.workers) throw mismatch(`this primary has workers: ${options.workers}`)
  if (offer.seed !== options.seed) throw mismatch('this primary has another seed')
  return { kernel: true }
}

/**
 * Offers this primary's listening sockets (`fds`, duplicated: a listener of
 * `mode`, 'accept-loop' or 'kernel', with `config` from `resolveOptions`)
 * under its name; `onEvent` receives the offer's events (`'released'`: stop
 * accepting and drain). Throws `EADDRINUSE` when a process holds the name.
 */
function offerSockets(address, port, mode, config, fds, onEvent) {
  return new native.TakeoverOffer(takeoverName(address, port), mode, config, fds, onEvent)
}

module.exports = { takeoverName, takeoverObstacle, requestSockets, checkOffer, offerSockets, takeoverEventKinds }

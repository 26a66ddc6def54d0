'use strict'

// The arguments of `listen`, in every form Node's `net.Server#listen` takes,
// read as Node reads them (lib/net.js: `normalizeArgs`, then
// `Server.prototype.listen`), into one description of where to listen. Every
// API shape's `listen` goes through here. Pure: no I/O, no native binding.
//
//   listen()                                   a free port
//   listen(callback)                           a free port
//   listen(port[, host][, backlog][, callback])   port: a number or a numeric string
//   listen(options[, callback])                options: port, host, backlog,
//                                              ipv6Only, exclusive, signal
//
// Node's rules kept here: a missing, `undefined` or `null` port is 0 (a free
// port; so is `{ port: undefined }`, but `{}` names no port and throws); a
// port is validated as Node's `validatePort` does (`'3000'`, `' 80 '` and
// `'0x50'` are ports; `''`, `-1`, `1.5` and `65536` are not); the host is
// the second argument only when it is a string, and an empty host means the
// default; a numeric second or third argument is the backlog
// (`listen(3000, 511)`); only `ipv6Only: true` turns dual-stack off.
//
// The forms that cannot be balanced — a Unix socket or pipe path
// (`listen('/tmp/app.sock')`, `{ path }`), a handle (`{ handle }`, a server
// or socket object) or a descriptor (`{ fd }`) — throw
// ERR_STICKY_UNSUPPORTED_LISTEN.

const { codes, stickyError } = require('./errors')

const SUPPORTED =
  'listen(port[, host][, backlog][, callback]), listen([callback]) or ' +
  'listen({ port, host, backlog, ipv6Only, exclusive, signal }[, callback])'

/**
 * @typedef {object} ListenArguments
 * @property {number} port 0 to 65535 (0: a free port)
 * @property {string | undefined} host undefined: the default (dual-stack `::`)
 * @property {number | undefined} backlog undefined: the default
 * @property {boolean} ipv6Only
 * @property {boolean} exclusive accepted as Node does; a primary shares its socket with nobody anyway
 * @property {AbortSignal | undefined} signal aborting it closes the server, as `server.close()`
 * @property {Function | undefined} callback a `'listening'` listener
 */

/** Node's `toNumber`: a number 0 or more, or false. */
function toNumber(value) {
  const number = Number(value)
  return number >= 0 ? number : false
}

/** A string Node takes for a Unix socket or pipe path: any that is not a number. */
function isPipeName(value) {
  return typeof value === 'string' && toNumber(value) === false
}

/** Node's `validatePort` (port 0 allowed): the port as a number, or undefined. */
function validPort(port) {
  const valid =
    (typeof port === 'number' || (typeof port === 'string' && port.trim().length > 0)) &&
    +port === +port >>> 0 &&
    port <= 0xffff
  return valid ? +port | 0 : undefined
}

function describe(value) {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return 'a function'
  if (value !== null && typeof value === 'object') return 'an object'
  return String(value)
}

function unsupported(what) {
  return stickyError(
    codes.UNSUPPORTED_LISTEN,
    `sticky-session-rs balances TCP connections on a port, so it cannot listen on ${what}: call ${SUPPORTED}`,
  )
}

/**
 * The arguments of one `listen(...)` call, as `net.Server#listen` reads
 * them. Throws ERR_STICKY_INVALID_PORT for a port Node refuses,
 * ERR_STICKY_INVALID_OPTION for a `signal` that is not an AbortSignal, and
 * ERR_STICKY_UNSUPPORTED_LISTEN for a path, handle or descriptor.
 * @param {unknown[]} args
 * @returns {ListenArguments}
 */
function parseListenArguments(args) {
  const last = args[args.length - 1]
  const callback = typeof last === 'function' ? last : undefined
  const first = args[0]
  let options
  if (typeof first === 'object' && first !== null) options = first
  else if (isPipeName(first)) options = { path: first }
  else options = { port: first, ...(typeof args[1] === 'string' ? { host: args[1] } : {}) }

  if (options._handle || options.handle) throw unsupported('a handle (a server, socket or { handle } object)')
  const signal = options.signal
  if (signal !== undefined && (signal === null || typeof signal !== 'object' || !('aborted' in signal))) {
    throw stickyError(codes.INVALID_OPTION, `options.signal must be an AbortSignal, got ${describe(signal)}`)
  }
  if (typeof options.fd === 'number' && options.fd >= 0) throw unsupported(`a file descriptor ({ fd: ${options.fd} })`)

  let port = options.port
  if (args.length === 0 || typeof first === 'function' || (port === undefined && 'port' in options) || port === null) port = 0
  if (typeof port === 'number' || typeof port === 'string') {
    const checked = validPort(port)
    if (checked === undefined) {
      throw stickyError(codes.INVALID_PORT, `port must be an integer from 0 to 65535 (0 picks a free port), got ${describe(port)}`)
    }
    const backlogFromArguments = toNumber(args.length > 1 && args[1]) || toNumber(args.length > 2 && args[2])
    const backlog = options.backlog || backlogFromArguments || undefined
    return {
      port: checked,
      host: options.host || undefined,
      backlog,
      ipv6Only: options.ipv6Only === true,
      exclusive: Boolean(options.exclusive),
      signal,
      callback,
    }
  }
  if (options.path && isPipeName(options.path)) throw unsupported(`a path (${JSON.stringify(options.path)}: a Unix socket or pipe)`)
  throw stickyError(
    codes.INVALID_PORT,
    'port' in options
      ? `port must be an integer from 0 to 65535 (0 picks a free port), got ${describe(port)}`
      : `listen options must have a port (0 picks a free port): call ${SUPPORTED}`,
  )
}

module.exports = { parseListenArguments }

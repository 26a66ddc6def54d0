'use strict'

// Every error sticky-session-rs throws, emits or warns of has a stable
// `code`, and a message that says what to pass or do instead. The codes are
// written once, in Rust (src/binding/error.rs, with those only JavaScript
// gives); `codes` has them by name (`codes.INVALID_OPTION` is
// `ERR_STICKY_INVALID_OPTION`), from the contract generated from the
// binding, on both paths: the portable path has no binding, and
// ERR_STICKY_NO_BINDING is for when it does not load
// (__test__/portable-contract.spec.js keeps the file equal to the binding).

const { errorCodes } = require('./portable/contract')

const codes = Object.freeze({ ...errorCodes })

/** An Error with `code` (one of `codes`, or an errno name the binding reported). */
function stickyError(code, message, extra) {
  // A name missing from `codes` reads as undefined: fail where it is written.
  if (typeof code !== 'string' || code === '') throw new TypeError(`stickyError: no such code (${code})`)
  const error = new Error(message)
  error.code = code
  if (extra) Object.assign(error, extra)
  return error
}

/**
 * Errors from the native binding already carry a `code` (an errno name such as
 * `EADDRINUSE`, or `ERR_STICKY_*`); this adds what `net` puts on listen errors.
 */
function listenError(error, { host, port }) {
  if (typeof error.code !== 'string' || error.code === '') error.code = codes.LISTEN
  error.syscall = error.syscall || 'listen'
  error.address = host
  error.port = port
  if (/^E[A-Z]+$/.test(error.code)) error.errno = require('os').constants.errno[error.code]
  return error
}

module.exports = { codes, stickyError, listenError }

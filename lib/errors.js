'use strict'

/**
 * Every error sticky-session-rs throws or emits has a stable `code`, and a
 * message that says what to pass or do instead.
 */
function stickyError(code, message, extra) {
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
  if (typeof error.code !== 'string' || error.code === '') error.code = 'ERR_STICKY_LISTEN'
  error.syscall = error.syscall || 'listen'
  error.address = host
  error.port = port
  if (/^E[A-Z]+$/.test(error.code)) error.errno = require('os').constants.errno[error.code]
  return error
}

module.exports = { stickyError, listenError }

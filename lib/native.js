'use strict'

// Loads the generated binding, with an error that says how to get one.
try {
  module.exports = require('../binding.js')
} catch (cause) {
  const error = new Error(
    `sticky-session-rs: no native binding could be loaded for ${process.platform}-${process.arch} (${cause.message}). ` +
      'Install the package for your platform (npm installs it from optionalDependencies unless they were omitted), ' +
      'or build from source: a Rust toolchain, then `npm run build` in the sticky-session-rs directory.',
  )
  error.code = 'ERR_STICKY_NO_BINDING'
  error.cause = cause
  throw error
}

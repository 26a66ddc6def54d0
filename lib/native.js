'use strict'

// Loads the generated binding, with an error that says how to get one.
try {
  module.exports = require('../binding.js')
} catch (cause) {
  const libc = process.platform === 'linux' ? (process.report.getReport().header.glibcVersionRuntime ? '-gnu' : '-musl') : ''
  const platformPackage = `sticky-session-rs-${process.platform}-${process.arch}${libc}`
  const error = new Error(
    `sticky-session-rs: no native binding for ${process.platform}-${process.arch}${libc}. ` +
      `Tried ./sticky-session-rs.${process.platform}-${process.arch}${libc}.node and the package ${platformPackage} ` +
      `(${cause.message.split('\n')[0]}). ` +
      `Install ${platformPackage} (npm installs it from optionalDependencies unless they were omitted: ` +
      'do not use --no-optional / --omit=optional), or build from source: install a Rust toolchain (rustup.rs), ' +
      'then run `npm run build` in node_modules/sticky-session-rs (from a git checkout: `npm install`). ' +
      'Supported: Linux x64/arm64 (glibc, musl); macOS builds are configured but untested; Windows is not supported.',
  )
  error.code = 'ERR_STICKY_NO_BINDING'
  error.cause = cause
  throw error
}

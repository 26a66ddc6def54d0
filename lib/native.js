'use strict'

// The one place that decides which path runs. The native path: the
// generated binding (binding.js tries ./sticky-session-rs.<platform>.node,
// then the package sticky-session-rs-<platform>). The portable path
// (lib/portable/: JavaScript over Node's cluster handle passing, on every
// platform Node runs on) when the binding does not load, or when
// STICKY_SESSION_PORTABLE=1 asks for it; STICKY_SESSION_PORTABLE=0 refuses
// it (require then throws ERR_STICKY_NO_BINDING, naming the package to install).
//
// Either way this module exports the binding's names that JavaScript uses
// on both paths — `resolveOptions`, `statsFields`, `sidTagSeparator`,
// `systemdSockets` — (on the portable path their JavaScript stand-ins), and
// `portable`: null on the native path, else why the portable path runs.
// What only the binding has (the accept loop, kernel steering, takeover,
// slot ports, `resolveHost`, the setupMaster rendezvous socket) is absent on
// the portable path; the modules that use it ask `portable` first.

const cluster = require('cluster')
const pkg = require('../package.json')
const { currentPlatform, platformOfTarget } = require('./platform')
const { codes, stickyError } = require('./errors')

const choice = process.env.STICKY_SESSION_PORTABLE
let binding = null
let cause = null
if (choice !== '1') {
  try {
    binding = require('../binding.js')
  } catch (error) {
    cause = error
  }
}
if (!binding && choice === '0') throw noBindingError(cause)

if (binding) {
  module.exports = { ...binding, portable: null }
} else {
  const { resolveOptions, optionRules, setupMasterDefaults, statsFields, sidTagSeparator } = require('./portable/options')
  const portable = choice === '1' ? 'STICKY_SESSION_PORTABLE=1 asks for it' : noBindingError(cause).message
  if (cluster.isPrimary) require('debug')('sticky-session-rs')('portable path (JavaScript, cluster IPC): %s', portable)
  module.exports = {
    resolveOptions,
    optionRules,
    setupMasterDefaults,
    statsFields,
    sidTagSeparator,
    /** systemd socket activation needs the binding: refused when systemd passed sockets to this process. */
    systemdSockets(listenFds, listenPid) {
      if (listenFds === undefined || listenPid === undefined || Number(listenPid) !== process.pid) return null
      throw stickyError(
        codes.SYSTEMD_UNSUPPORTED,
        `systemd passed listening sockets (LISTEN_FDS=${listenFds}) but the portable path cannot use them (${portable}): ` +
          'install the native binding, or start the app without socket activation',
      )
    },
    portable,
  }
}

/** Why the binding did not load, and what to install; `code` ERR_STICKY_NO_BINDING. */
function noBindingError(cause) {
  const platform = currentPlatform()
  const platformPackage = `${pkg.name}-${platform}`
  const supported = pkg.napi.targets.map(platformOfTarget)
  // binding.js chains what each attempt threw; its own message only blames an npm bug.
  const attempts = []
  for (let error = cause && cause.cause; error && attempts.length < 8; error = error.cause) {
    const attempt = String(error.message).split('\n')[0]
    // Its WebAssembly fallback: no such package is published.
    if (!/wasi/.test(attempt)) attempts.unshift(attempt)
  }
  const tried = attempts.length ? ` Tried: ${attempts.join('; ')}.` : ` (${String(cause && cause.message).split('\n')[0]})`
  const fromSource =
    'or build from source: install a Rust toolchain (rustup.rs), then run `npm run build` in node_modules/sticky-session-rs ' +
    '(from a git checkout: `npm install`).'
  const message = supported.includes(platform)
    ? `${pkg.name}: the native binding for ${platform} did not load.${tried} ` +
      `Install ${platformPackage}@${pkg.version} (\`npm install ${platformPackage}@${pkg.version}\`; npm installs it with ${pkg.name} ` +
      'unless optional dependencies are omitted: no --omit=optional / --no-optional), ' +
      fromSource
    : `${pkg.name}: no prebuilt binding for ${platform}; prebuilt packages exist for ${supported.join(', ')}.${tried} ` +
      'The portable path serves this platform (unset STICKY_SESSION_PORTABLE=0 to let it); ' +
      'the native one needs Linux: see Platforms in the README.'
  const error = new Error(message)
  error.code = codes.NO_BINDING
  error.platformPackage = supported.includes(platform) ? platformPackage : null
  error.cause = cause
  return error
}

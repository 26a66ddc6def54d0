'use strict'

// Loads the generated binding (binding.js tries ./sticky-session-rs.<platform>.node,
// then the package sticky-session-rs-<platform>), with an error that names the
// package to install when neither loads.
const pkg = require('../package.json')
const { currentPlatform, platformOfTarget } = require('./platform')

try {
  module.exports = require('../binding.js')
} catch (cause) {
  throw noBindingError(cause)
}

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
      'Build from source: install a Rust toolchain (rustup.rs), then run `npm run build` in node_modules/sticky-session-rs. ' +
      'Windows is not supported (no SCM_RIGHTS).'
  const error = new Error(message)
  error.code = 'ERR_STICKY_NO_BINDING'
  error.platformPackage = supported.includes(platform) ? platformPackage : null
  error.cause = cause
  return error
}

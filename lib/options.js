'use strict'

// What the user passes, checked. The options' types, defaults and checks are
// in Rust (src/binding/options.rs: `resolveOptions`, `optionRules`,
// `setupMasterDefaults`); only what is JavaScript's own is checked here: the
// server object and `env`. Where to
// listen (port, host, backlog) as `listen(...)` gives it: lib/listen-arguments.js.

const os = require('os')
const { resolveOptions, optionRules, setupMasterDefaults } = require('./native')
const { codes, stickyError } = require('./errors')
const { isServer } = require('./runtime')

/**
 * The options of `sticky.listen(server, port, options)`, checked, with every
 * default filled in: `resolveOptions` returns the fields JavaScript uses and
 * `config`, the rest, for the binding's classes. Plus `env`
 * (sticky-session's: extra environment for the workers, passed to `cluster.fork`).
 */
function listenOptions(options) {
  const resolved = resolveOptions(options, os.cpus().length)
  const env = options ? options.env : undefined
  if (env !== undefined && !isPlainObject(env)) {
    throw stickyError(codes.INVALID_OPTION, `options.env must be an object of environment variables, got ${describe(env)}`)
  }
  return { ...resolved, env: env || {} }
}

/** The default of option `name` (`shutdownTimeout`), where one is read outside `resolveOptions`: a worker's environment. */
function optionDefault(name) {
  const rule = optionRules().find((option) => option.name === name)
  if (!rule || rule.defaultValue === undefined) throw new Error(`${name} is no option with a default value`)
  return rule.defaultValue
}

function validateServer(server) {
  if (!isServer(server)) {
    throw stickyError(
      codes.INVALID_SERVER,
      `server must be a net.Server or http.Server (http.createServer(), https.createServer(), net.createServer()), got ${describe(server)}`,
    )
  }
  return server
}

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function describe(value) {
  if (value === null) return 'null'
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'object') return value.constructor ? `an instance of ${value.constructor.name}` : 'an object'
  return `${typeof value} ${String(value)}`
}

module.exports = { listenOptions, optionDefault, setupMasterDefaults, validateServer }

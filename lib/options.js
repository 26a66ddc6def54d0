'use strict'

const os = require('os')
const { stickyError } = require('./errors')
const { isServer } = require('./runtime')

/** Fixed by default so that a client reaches the same slot after a restart of the primary. */
const DEFAULT_SEED = '6274051578553076311'

const DEFAULTS = {
  host: '::',
  backlog: 511,
  maxPendingPerSlot: 1024,
  maxParked: 4096,
  startupWait: 10000,
  routing: 'ip',
  header: 'x-forwarded-for',
  trustedProxies: ['loopback'],
  ignoreMissingHeader: true,
  headerTimeout: 5000,
  maxHeaderBytes: 16384,
  maxPendingHeaders: 1024,
  loadBalancingMethod: 'least-connection',
  sessionTtl: 120000,
  maxSessions: 100000,
  shutdownTimeout: 10000,
  handleSignals: true,
  kernel: false,
  takeover: false,
}

const ROUTING_MODES = ['ip', 'header', 'proxy-protocol', 'sid']
const BALANCING_METHODS = ['least-connection', 'round-robin', 'random']

function oneOf(name, value, allowed, fallback) {
  if (value === undefined || value === null) return fallback
  if (!allowed.includes(value)) {
    throw stickyError(
      'ERR_STICKY_INVALID_OPTION',
      `options.${name} must be one of ${allowed.map((v) => `'${v}'`).join(', ')}, got ${describe(value)}`,
    )
  }
  return value
}

function booleanOption(name, value, fallback) {
  if (value === undefined || value === null) return fallback
  if (typeof value !== 'boolean') {
    throw stickyError('ERR_STICKY_INVALID_OPTION', `options.${name} must be true or false, got ${describe(value)}`)
  }
  return value
}

function headerName(value) {
  if (value === undefined || value === null) return DEFAULTS.header
  if (typeof value !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(value)) {
    throw stickyError(
      'ERR_STICKY_INVALID_OPTION',
      `options.header must be an HTTP header name such as 'x-forwarded-for', 'x-real-ip' or 'forwarded', got ${describe(value)}`,
    )
  }
  return value.toLowerCase()
}

function trustedProxies(value) {
  if (value === undefined || value === null) return DEFAULTS.trustedProxies
  const list = typeof value === 'string' ? value.split(',').map((entry) => entry.trim()) : value
  if (!Array.isArray(list) || list.length === 0 || !list.every((entry) => typeof entry === 'string' && entry !== '')) {
    throw stickyError(
      'ERR_STICKY_INVALID_OPTION',
      `options.trustedProxies must be a non-empty array of IP addresses, CIDR ranges or 'loopback' / 'linklocal' / 'uniquelocal', got ${describe(value)}`,
    )
  }
  return list
}

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function validatePort(port) {
  const number = typeof port === 'string' && /^\d+$/.test(port.trim()) ? Number(port) : port
  if (!Number.isInteger(number) || number < 0 || number > 65535) {
    throw stickyError(
      'ERR_STICKY_INVALID_PORT',
      `port must be an integer from 0 to 65535 (0 picks a free port), got ${describe(port)}`,
    )
  }
  return number
}

function validateServer(server) {
  if (!isServer(server)) {
    throw stickyError(
      'ERR_STICKY_INVALID_SERVER',
      `server must be a net.Server or http.Server (http.createServer(), https.createServer(), net.createServer()), got ${describe(server)}`,
    )
  }
  return server
}

function positiveInteger(name, value, fallback, max = 2 ** 31 - 1) {
  if (value === undefined || value === null) return fallback
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw stickyError('ERR_STICKY_INVALID_OPTION', `options.${name} must be an integer from 1 to ${max}, got ${describe(value)}`)
  }
  return value
}

function seedString(seed) {
  if (seed === undefined || seed === null) return DEFAULT_SEED
  let big
  try {
    if (typeof seed === 'bigint') big = seed
    else if (Number.isSafeInteger(seed) && seed >= 0) big = BigInt(seed)
    else if (typeof seed === 'string' && /^\d+$/.test(seed)) big = BigInt(seed)
  } catch {}
  if (big === undefined || big < 0n || big >= 2n ** 64n) {
    throw stickyError(
      'ERR_STICKY_INVALID_OPTION',
      `options.seed must be an unsigned 64-bit integer (number, bigint or decimal string), got ${describe(seed)}`,
    )
  }
  return big.toString()
}

/**
 * The options of `sticky.listen(server, port, options)` (sticky-session 1.1.2's
 * `workers` and `env`, plus ours), validated, with defaults filled in.
 */
function listenOptions(options) {
  if (options === undefined || options === null) options = {}
  if (!isPlainObject(options)) {
    throw stickyError('ERR_STICKY_INVALID_OPTION', `options must be an object, got ${describe(options)}`)
  }
  const host = options.host === undefined || options.host === null ? DEFAULTS.host : options.host
  if (typeof host !== 'string' || host === '') {
    throw stickyError('ERR_STICKY_INVALID_OPTION', `options.host must be a host name or IP address, got ${describe(options.host)}`)
  }
  if (options.env !== undefined && !isPlainObject(options.env)) {
    throw stickyError('ERR_STICKY_INVALID_OPTION', `options.env must be an object of environment variables, got ${describe(options.env)}`)
  }
  const routing = routingOptions(options)
  const kernel = booleanOption('kernel', options.kernel, DEFAULTS.kernel)
  if (kernel && routing.routing !== 'ip') {
    throw stickyError('ERR_STICKY_INVALID_OPTION', `options.kernel steers by source address: it works with routing 'ip' only, not '${routing.routing}'`)
  }
  return {
    workers: positiveInteger('workers', options.workers, os.cpus().length || 1, 1024),
    env: options.env || {},
    host,
    hostIsDefault: options.host === undefined || options.host === null,
    backlog: positiveInteger('backlog', options.backlog, DEFAULTS.backlog),
    seed: seedString(options.seed),
    maxPendingPerSlot: positiveInteger('maxPendingPerSlot', options.maxPendingPerSlot, DEFAULTS.maxPendingPerSlot),
    maxParked: positiveInteger('maxParked', options.maxParked, DEFAULTS.maxParked),
    startupWait: positiveInteger('startupWait', options.startupWait, DEFAULTS.startupWait),
    shutdownTimeout: positiveInteger('shutdownTimeout', options.shutdownTimeout, DEFAULTS.shutdownTimeout),
    handleSignals: booleanOption('handleSignals', options.handleSignals, DEFAULTS.handleSignals),
    ...routing,
    kernel,
    takeover: booleanOption('takeover', options.takeover, DEFAULTS.takeover),
  }
}

/** The routing options, shared by every API shape. */
function routingOptions(options) {
  return {
    routing: oneOf('routing', options.routing, ROUTING_MODES, DEFAULTS.routing),
    header: headerName(options.header),
    trustedProxies: trustedProxies(options.trustedProxies),
    ignoreMissingHeader: booleanOption('ignoreMissingHeader', options.ignoreMissingHeader, DEFAULTS.ignoreMissingHeader),
    headerTimeout: positiveInteger('headerTimeout', options.headerTimeout, DEFAULTS.headerTimeout),
    maxHeaderBytes: positiveInteger('maxHeaderBytes', options.maxHeaderBytes, DEFAULTS.maxHeaderBytes, 1024 * 1024),
    maxPendingHeaders: positiveInteger('maxPendingHeaders', options.maxPendingHeaders, DEFAULTS.maxPendingHeaders),
    loadBalancingMethod: oneOf('loadBalancingMethod', options.loadBalancingMethod, BALANCING_METHODS, DEFAULTS.loadBalancingMethod),
    sessionTtl: positiveInteger('sessionTtl', options.sessionTtl, DEFAULTS.sessionTtl),
    maxSessions: positiveInteger('maxSessions', options.maxSessions, DEFAULTS.maxSessions),
  }
}

function describe(value) {
  if (value === null) return 'null'
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'object') return value.constructor ? `an instance of ${value.constructor.name}` : 'an object'
  return `${typeof value} ${String(value)}`
}

module.exports = { listenOptions, validatePort, validateServer, DEFAULT_SEED }

'use strict'

// The binding's pure functions that JavaScript needs whichever path runs
// (`resolveOptions`, `optionRules`, `setupMasterDefaults`, `statsFields`,
// `sidTagSeparator`), for when there is no binding. Every fact comes from contract.js, which
// `npm run generate:contract` writes from the binding (the option rules and
// defaults of src/binding/options.rs, the stats fields of
// src/core/stats.rs); __test__/portable-contract.spec.js fails when the
// committed file differs from what the binding reports, and runs random
// options through both this and the binding, demanding the same result or
// the same error.

const contract = require('./contract')
const { codes } = require('../errors')
const { TrustedProxies } = require('./trusted')
const { rustTrim, parseIp } = require('./address')

const RULES = contract.optionRules
/** Every option's default where it is a value (`workers` and `kernel` are derived). */
const DEFAULTS = Object.fromEntries(RULES.filter((rule) => rule.defaultValue !== undefined).map((rule) => [rule.name, rule.defaultValue]))
const MAX_SAFE_SEED = 2 ** 53 - 1
const U64_MAX = (1n << 64n) - 1n

function invalidOption(message) {
  const error = new Error(message)
  error.code = codes.INVALID_OPTION
  return error
}

/** A value as the binding's error messages show it: `"text"`, `-1n`, `number 1.5`, `an instance of Array`, `null`. */
function describe(value) {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  switch (typeof value) {
    case 'string':
      return quoted(value)
    case 'bigint':
      return `${value}n`
    case 'symbol':
      return 'a symbol'
    case 'object': {
      const constructor = value.constructor
      const name = typeof constructor === 'function' && typeof constructor.name === 'string' ? constructor.name : null
      return name === null ? 'an object' : `an instance of ${name}`
    }
    default:
      return `${typeof value} ${wellFormed(String(value))}`
  }
}

/** Lone surrogates become U+FFFD, as they do on their way into Rust. */
function wellFormed(text) {
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd')
}

/** `text` as `JSON.stringify` writes a string (the binding's `quoted`). */
function quoted(text) {
  let out = '"'
  for (const char of wellFormed(text)) {
    const code = char.codePointAt(0)
    if (char === '"') out += '\\"'
    else if (char === '\\') out += '\\\\'
    else if (char === '\n') out += '\\n'
    else if (char === '\r') out += '\\r'
    else if (char === '\t') out += '\\t'
    else if (char === '\b') out += '\\b'
    else if (char === '\f') out += '\\f'
    else if (code < 0x20) out += `\\u${code.toString(16).padStart(4, '0')}`
    else out += char
  }
  return `${out}"`
}

const isTokenChar = (code) => code < 0x80 && /[A-Za-z0-9!#$%&'*+\-.^_`|~]/.test(String.fromCharCode(code))

/** The value of one option as the rule `rule` reads it; throws the binding's refusal. */
function readOption(rule, value) {
  const refuse = () => invalidOption(`options.${rule.name} must be ${rule.expected}, got ${describe(value)}`)
  switch (rule.kind) {
    case 'count':
      if (typeof value === 'number' && Number.isInteger(value) && value >= rule.min && value <= rule.max) return value
      throw refuse()
    case 'flag':
      if (typeof value === 'boolean') return value
      throw refuse()
    case 'one-of':
      if (typeof value === 'string' && rule.values.includes(value)) return value
      throw refuse()
    case 'host':
      if (typeof value === 'string' && value !== '') return value
      throw refuse()
    case 'header':
      if (typeof value === 'string' && value !== '' && [...value].every((char) => isTokenChar(char.charCodeAt(0)) && char.length === 1)) return value
      throw refuse()
    case 'trusted-proxies': {
      let entries = null
      if (typeof value === 'string') entries = value.split(',').map(rustTrim)
      else if (Array.isArray(value)) {
        entries = []
        for (let index = 0; index < value.length; index++) {
          if (typeof value[index] !== 'string') throw refuse()
          entries.push(value[index])
        }
      }
      if (entries && entries.length > 0 && entries.every((entry) => entry !== '')) return entries
      throw refuse()
    }
    case 'seed': {
      let seed = null
      if (typeof value === 'number') {
        if (Number.isInteger(value) && value >= 0 && value <= MAX_SAFE_SEED) seed = BigInt(value)
      } else if (typeof value === 'bigint' || typeof value === 'string') {
        const text = String(value)
        if (/^[0-9]+$/.test(text) && BigInt(text) <= U64_MAX) seed = BigInt(text)
      }
      if (seed === null) throw refuse()
      return seed
    }
    case 'slot-ports':
      // The first port; 0: the system picks each; null: none.
      if (typeof value === 'boolean') return value ? 0 : null
      if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535) return value
      throw refuse()
    case 'ip-address':
      // Read as a string here; resolveOptions checks it is an address.
      if (typeof value === 'string') return value
      throw refuse()
    default:
      throw new Error(`contract.js names an option rule this version does not know: ${rule.kind}`)
  }
}

/**
 * Checks `options` (as the user passed them) and fills in their defaults;
 * `cpuCount` is the default number of workers. Returns what the binding's
 * returns (the fields JavaScript uses), with `config`: here every option
 * resolved, for the portable listener. Throws `ERR_STICKY_INVALID_OPTION`,
 * with the binding's message.
 */
function resolveOptions(options, cpuCount) {
  if (options !== undefined && options !== null && (typeof options !== 'object' || Array.isArray(options))) {
    throw invalidOption(`options must be an object, got ${describe(options)}`)
  }
  const given = {}
  for (const rule of RULES) {
    const value = options == null ? undefined : options[rule.name]
    if (value !== undefined && value !== null) given[rule.name] = readOption(rule, value)
  }
  const routing = given.routing ?? DEFAULTS.routing
  const kernel = given.kernel ?? routing === 'ip'
  if (kernel && routing !== 'ip') {
    throw invalidOption(`options.kernel steers by source address: it works with routing 'ip' only, not '${routing}'`)
  }
  const trustedProxies = given.trustedProxies ?? DEFAULTS.trustedProxies
  try {
    TrustedProxies.parse(trustedProxies)
  } catch (error) {
    throw invalidOption(`options.trustedProxies: ${error.message}`)
  }
  const workers = given.workers ?? Math.max(cpuCount, 1)
  const firstSlotPort = given.slotPorts ?? null
  if (firstSlotPort !== null && routing !== 'header' && routing !== 'sid') {
    throw invalidOption(`options.slotPorts are for a proxy that routes each request itself: they work with routing 'header' or 'sid', not '${routing}'`)
  }
  if (firstSlotPort > 0 && firstSlotPort + workers - 1 > 65535) {
    throw invalidOption(`options.slotPorts: ${workers} slots from port ${firstSlotPort} go past 65535: choose a lower first port`)
  }
  const slotHost = given.slotHost ?? DEFAULTS.slotHost
  if (!parseIp(slotHost)) throw invalidOption(`options.slotHost must be ${RULES.find((rule) => rule.name === 'slotHost').expected}, got ${quoted(slotHost)}`)
  const resolved = { ...DEFAULTS, ...given }
  const config = {
    ...resolved,
    workers,
    seed: given.seed ?? BigInt(DEFAULTS.seed),
    slotPorts: firstSlotPort !== null,
    firstSlotPort: firstSlotPort ?? 0,
    slotHost,
    hostIsDefault: given.host === undefined,
    kernel,
    kernelAsked: given.kernel === true,
    trustedProxies: [...trustedProxies],
    header: resolved.header.toLowerCase(),
  }
  // The binding's `ResolvedOptions` (__test__/portable-contract.spec.js compares them).
  const { host, seed, startupWait, shutdownTimeout, handleSignals, kernelAsked, takeover, slotPorts } = config
  return { host, workers, seed, startupWait, shutdownTimeout, handleSignals, kernel, kernelAsked, takeover, routing, slotPorts, firstSlotPort: config.firstSlotPort, slotHost, config }
}

/** Every option's rule and default, as the binding's `optionRules()` reports them. */
function optionRules() {
  return RULES.map((rule) => ({ ...rule }))
}

/** The defaults of `setupMaster`'s own options, as the binding's `setupMasterDefaults()` reports them. */
function setupMasterDefaults() {
  return { ...contract.setupMasterDefaults }
}

/** Every numeric field of `stats()` and of each slot, with its kind and meaning. */
function statsFields() {
  return contract.statsFields.map((field) => ({ ...field }))
}

/** What separates a sid from the slot appended to it (src/core/sessions.rs): lib/slot-ports.js reads it. */
function sidTagSeparator() {
  return contract.sidTagSeparator
}

module.exports = { resolveOptions, optionRules, setupMasterDefaults, statsFields, sidTagSeparator, describe }

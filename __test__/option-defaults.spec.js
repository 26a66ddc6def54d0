'use strict'
// The options, their types, rules and defaults are defined once, in Rust
// (src/binding/options.rs): `optionRules()` reports each option's rule and
// default, `resolveOptions` applies them, the doc comments become
// binding.d.ts, which index.d.ts reuses. The README's option table and every
// `@defaultValue` must say what the table's default is, and every option the
// types declare must be one resolveOptions checks. setupMaster's own
// default (`maxWorkers`) likewise comes from `setupMasterDefaults()`.

const fs = require('fs')
const path = require('path')
const { resolveOptions, optionRules, setupMasterDefaults } = require('../lib/native')

const ROOT = path.join(__dirname, '..')
const read = (file) => fs.readFileSync(path.join(ROOT, file), 'utf8')

/** `{ name: { defaultValue, type } }` of the properties of `interface <name> { ... }` in a .d.ts text. */
function interfaceProperties(text, name) {
  const body = new RegExp(`export interface ${name}\\b[^{]*\\{([\\s\\S]*?)\\n\\s*\\}\\n`).exec(text)[1]
  const properties = {}
  for (const match of body.matchAll(/(?:\/\*\*([\s\S]*?)\*\/\s*)?\n\s*(\w+)\?: ([^\n]+)/g)) {
    const defaultValue = /@defaultValue (.+)/.exec(match[1] || '')
    properties[match[2]] = { defaultValue: defaultValue ? defaultValue[1].trim() : null, type: match[3].trim() }
  }
  return properties
}

/** A default as the docs write it: `'::'`, `511`, `['loopback']`, `true`. */
function literal(value) {
  if (typeof value === 'string') return `\`'${value}'\``
  if (Array.isArray(value)) return `\`[${value.map((item) => `'${item}'`).join(', ')}]\``
  return `\`${value}\``
}

const bindingTypes = read('binding.d.ts')
const options = interfaceProperties(bindingTypes, 'ListenOptions')
const names = Object.keys(options)
const rules = Object.fromEntries(optionRules().map((rule) => [rule.name, rule]))
const defaults = Object.fromEntries(Object.values(rules).map((rule) => [rule.name, rule.defaultValue]))

/** Options whose default is a rule rather than a value, as the docs state it. */
const RULES = { workers: '`os.cpus().length`', kernel: "`true` with `routing: 'ip'`, else `false`" }

test("binding.d.ts declares every option with the table's default", () => {
  expect(names.length).toBeGreaterThan(15)
  for (const name of names) {
    expect({ name, defaultValue: options[name].defaultValue }).toEqual({ name, defaultValue: RULES[name] || literal(defaults[name]) })
  }
  // The derived defaults are no value in the table.
  expect(Object.keys(defaults).filter((name) => defaults[name] === undefined)).toEqual(Object.keys(RULES))
  // The rule: the CPU count JavaScript passes.
  expect(resolveOptions({}, 3).workers).toBe(3)
  expect(resolveOptions({}, 7).workers).toBe(7)
  // The rule: kernel steering by default for IP routing only.
  expect(resolveOptions({}, 3)).toEqual(expect.objectContaining({ kernel: true, kernelAsked: false }))
  for (const routing of ['header', 'proxy-protocol', 'sid']) expect(resolveOptions({ routing }, 3)).toEqual(expect.objectContaining({ kernel: false, kernelAsked: false }))
  expect(resolveOptions({ kernel: true }, 3)).toEqual(expect.objectContaining({ kernel: true, kernelAsked: true }))
  expect(resolveOptions({ kernel: false }, 3)).toEqual(expect.objectContaining({ kernel: false, kernelAsked: false }))
})

test('the table has a row for exactly the declared options, and resolveOptions fills in its defaults', () => {
  expect(Object.keys(rules)).toEqual(names)
  // What JavaScript receives: the options it uses, and `config` for the binding's classes.
  const resolved = resolveOptions(undefined, 3)
  expect(Object.keys(resolved).sort()).toEqual(
    ['host', 'workers', 'seed', 'startupWait', 'shutdownTimeout', 'handleSignals', 'kernel', 'kernelAsked', 'takeover', 'routing', 'slotPorts', 'firstSlotPort', 'slotHost', 'config'].sort(),
  )
  for (const name of Object.keys(resolved).filter((name) => name in defaults && !(name in RULES))) {
    expect({ name, value: name === 'seed' ? String(resolved[name]) : resolved[name] }).toEqual({ name, value: defaults[name] })
  }
  expect(typeof resolved.seed).toBe('bigint')
})

test('a value out of range is refused with the range, never clamped', () => {
  const { min, max } = rules.maxHeaderBytes
  expect([min, max]).toEqual([64, 1048576])
  for (const value of [min - 1, 1, max + 1]) {
    expect(() => resolveOptions({ maxHeaderBytes: value }, 2)).toThrow(
      expect.objectContaining({ code: 'ERR_STICKY_INVALID_OPTION', message: `options.maxHeaderBytes must be an integer from 64 to 1048576, got number ${value}` }),
    )
  }
  expect(() => resolveOptions({ maxHeaderBytes: min }, 2)).not.toThrow()
  for (const rule of Object.values(rules).filter((rule) => rule.kind === 'count')) {
    expect(() => resolveOptions({ [rule.name]: rule.min - 1 }, 2)).toThrow(expect.objectContaining({ message: expect.stringContaining(`from ${rule.min} to ${rule.max}`) }))
    expect(() => resolveOptions({ [rule.name]: rule.max + 1 }, 2)).toThrow(expect.objectContaining({ message: expect.stringContaining(`from ${rule.min} to ${rule.max}`) }))
  }
})

test("the README's option table lists every option of listen (and env) with the same default", () => {
  const readme = read('README.md')
  const section = /### `sticky\.listen\(server, port\[, options\]\)[\s\S]*?\n### /.exec(readme)[0]
  const rows = Object.fromEntries([...section.matchAll(/^\| `(\w+)` \| ([^|]+) \|/gm)].map((match) => [match[1], match[2].trim()]))
  expect(Object.keys(rows).sort()).toEqual([...names, 'env'].sort())
  for (const name of names) expect({ name, readme: rows[name] }).toEqual({ name, readme: options[name].defaultValue })
  expect(rows.env).toBe('`{}`')
})

test("the README states each count's range: the common one once, and every narrower one in its option's row", () => {
  const readme = read('README.md')
  const section = /### `sticky\.listen\(server, port\[, options\]\)[\s\S]*?\n### /.exec(readme)[0]
  const counts = Object.values(rules).filter((rule) => rule.max !== undefined)
  const widest = Math.max(...counts.map((rule) => rule.max))
  const range = (rule) => `${rule.min.toLocaleString('en-US')} to ${rule.max.toLocaleString('en-US')}`
  expect(section).toContain(`whole numbers from ${range({ min: 1, max: widest })} unless their row\ngives a range`)
  const narrower = counts.filter((rule) => rule.min !== 1 || rule.max !== widest)
  expect(narrower.map((rule) => rule.name).sort()).toEqual(['maxHeaderBytes', 'workers'])
  for (const rule of narrower) {
    const row = new RegExp(`^\\| \`${rule.name}\` \\|.*$`, 'm').exec(section)[0]
    expect({ name: rule.name, row }).toEqual({ name: rule.name, row: expect.stringContaining(`(${range(rule)})`) })
  }
})

test('index.d.ts reuses the generated option types and restates no default, but for its API shapes', () => {
  const types = read('index.d.ts')
  expect(types).toMatch(/export interface ListenOptions extends native\.ListenOptions \{/)
  expect(types).toMatch(/export type Routing = native\.Routing/)
  expect(types).toMatch(/export type LoadBalancingMethod = native\.LoadBalancingMethod/)
  // The defaults index.d.ts states are those of what only JavaScript has
  // (env, the metrics options, proxyConfig's settings) or of an API shape's own option.
  const stated = {}
  for (const match of types.matchAll(/export interface (\w+)[^{]*\{(?!\})([\s\S]*?)\n {2}\}/g)) {
    for (const [property, { defaultValue }] of Object.entries(interfaceProperties(`export interface X {${match[2]}\n}\n`, 'X'))) {
      if (defaultValue) stated[`${match[1]}.${property}`] = defaultValue
    }
  }
  expect(stated).toEqual({
    'ListenOptions.env': '`{}`',
    'MetricsOptions.client': "`require('prom-client')`",
    'MetricsOptions.register': "`client.register`, prom-client's global registry",
    'MetricsOptions.prefix': "`'sticky_session_'`",
    'ProxyConfigSettings.name': "`'sticky_session_rs'`",
    'ProxyConfigSettings.key': "`'address'`",
    // socketio-sticky-session's own: `num` is its name for workers, and its
    // ignoreMissingHeader defaulted to false.
    'SocketioStickySessionOptions.num': RULES.workers,
    'SocketioStickySessionOptions.ignoreMissingHeader': '`false`',
    // @socket.io/sticky's: the slots available to the workers the user forks.
    'SetupMasterOptions.maxWorkers': literal(setupMasterDefaults().maxWorkers),
  })
})

test("setupMaster's maxWorkers default is the binding's, as index.d.ts and the README state it", () => {
  const { maxWorkers } = setupMasterDefaults()
  expect(maxWorkers).toBeLessThanOrEqual(rules.workers.max)
  expect(read('README.md')).toContain(`\`maxWorkers\`, default ${maxWorkers},`)
})

test('every declared option is checked: a value of the wrong type is refused with its name and what to pass', () => {
  for (const name of names) {
    expect(() => resolveOptions({ [name]: Symbol('wrong') }, 2)).toThrow(
      expect.objectContaining({ code: 'ERR_STICKY_INVALID_OPTION', message: expect.stringMatching(new RegExp(`^options\\.${name} must be .+, got a symbol$`)) }),
    )
  }
})

test.each([
  ['Routing', 'routing'],
  ['LoadBalancingMethod', 'loadBalancingMethod'],
])('the %s union of binding.d.ts is exactly what %s accepts', (type, name) => {
  const spellings = [.../export type \w+ = (.+)/.exec(bindingTypes.split('\n').find((line) => line.startsWith(`export type ${type} =`)))[1].matchAll(/'([^']+)'/g)].map(
    (match) => match[1],
  )
  expect(spellings.length).toBeGreaterThan(2)
  for (const spelling of spellings) expect(() => resolveOptions({ [name]: spelling }, 1)).not.toThrow()
  if (name === 'routing') for (const spelling of spellings) expect(resolveOptions({ routing: spelling }, 1).routing).toBe(spelling)
  expect(rules[name].values).toEqual(spellings)
  const refused = () => resolveOptions({ [name]: 'none-of-these' }, 1)
  expect(refused).toThrow(expect.objectContaining({ message: `options.${name} must be one of ${spellings.map((s) => `'${s}'`).join(', ')}, got "none-of-these"` }))
})

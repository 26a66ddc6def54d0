'use strict'
// The portable path (lib/portable/) copies what the native binding defines:
// the option rules and defaults, the stats fields, the no-worker grace, and
// (for both paths) the error codes and event kinds (generated into
// lib/portable/contract.js), and the pure Rust it re-implements in
// JavaScript (the router with its parsers, the rendezvous hash, address
// parsing, option checks). Here the generated file must be what the binding
// reports, the shared vectors (src/binding/contract_vectors.tsv, which a
// cargo test pins the Rust to) must hold for both, and random inputs must get
// the same answer from both. A failure prints the seed: STICKY_FUZZ_SEED=<seed>
// replays it.

const fs = require('fs')
const path = require('path')
const binding = require('../binding.js')
const { contractText, FILE } = require('../scripts/generate-contract')
const portable = require('../lib/portable/options')
const { Router } = require('../lib/portable/routing')
const { Rendezvous } = require('../lib/portable/hrw')
const { parseIpLiteral, parsePeer, clientKey, formatIp } = require('../lib/portable/address')
const { FUZZ_SEED: SEED, seededRandom } = require('./helpers')

const ROOT = path.join(__dirname, '..')
const ROUNDS = Number(process.env.STICKY_FUZZ_ROUNDS) || 3000

/** Sorts object keys (the two sides build their objects in different orders). */
function canonical(value) {
  if (Array.isArray(value)) return value.map(canonical)
  if (value && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((key) => [key, canonical(value[key])]))
  return value
}

/** `{ ok: value }` or `{ code, message }`. */
function outcomeOf(call) {
  try {
    return { ok: canonical(call()) }
  } catch (error) {
    return { code: error.code, message: error.message }
  }
}

/** What the JavaScript router says, in the binding's `routeDecision` form. */
function portableDecision(options, peerAddress, bytes) {
  const decision = new Router(portable.resolveOptions(options, 1).config).decide(parsePeer(peerAddress), bytes)
  if (decision.incomplete) return { outcome: 'incomplete', consume: 0 }
  if (decision.invalid) return { outcome: 'invalid', consume: 0, refusal: decision.invalid }
  const { route, client, consume } = decision.complete
  const result = { outcome: 'complete', consume }
  if (route.hash !== undefined) Object.assign(result, { route: 'hash', hash: route.hash.toString() })
  else if (route.sid !== undefined) Object.assign(result, { route: 'session', sid: route.sid })
  else Object.assign(result, { route: 'new-session', handshake: route.newSession.handshake })
  if (client) Object.assign(result, { clientAddress: formatIp(client.ip), clientPort: client.port })
  return result
}

/** The binding's `routeDecision`, without the absent fields. */
function nativeDecision(options, peerAddress, bytes) {
  const decision = binding.routeDecision(options, peerAddress, 40000, bytes)
  return Object.fromEntries(Object.entries(decision).filter(([, value]) => value !== undefined && value !== null))
}

/** Runs `rounds` random cases; `compare(rng, round)` returns null or a description of the disagreement. */
function fuzz(name, compare, rounds = ROUNDS) {
  const rng = seededRandom(SEED ^ [...name].reduce((hash, char) => Math.imul(hash, 31) + char.charCodeAt(0), 7))
  const disagreements = []
  for (let round = 0; round < rounds && disagreements.length < 5; round++) {
    const disagreement = compare(rng, round)
    if (disagreement) disagreements.push(disagreement)
  }
  if (disagreements.length) throw new Error(`${name}: the JavaScript copy and the binding disagree (STICKY_FUZZ_SEED=${SEED}):\n${disagreements.map((d) => JSON.stringify(d, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))).join('\n')}`)
}

describe('the generated contract (lib/portable/contract.js)', () => {
  test('is what the binding reports: regenerate it with `npm run generate:contract` after changing options, stats fields, error codes or event kinds in Rust', () => {
    expect(fs.readFileSync(FILE, 'utf8')).toBe(contractText(binding))
  })

  test('has every kind JavaScript names: listener events (eventKinds.X) and takeover events (takeoverEventKinds.X)', () => {
    const contract = require('../lib/portable/contract')
    const inDirectory = (directory) => fs.readdirSync(path.join(ROOT, 'lib', directory)).map((name) => `lib/${directory}/${name}`)
    const sources = ['index.js', 'lib/primary.js', 'lib/listeners.js', 'lib/takeover.js', ...inDirectory('primary'), ...inDirectory('portable')]
    const text = sources.map((file) => fs.readFileSync(path.join(ROOT, file), 'utf8')).join('\n')
    for (const map of ['eventKinds', 'takeoverEventKinds']) {
      const named = [...text.matchAll(new RegExp(`\\b${map}\\.(\\w+)`, 'g'))].map((match) => match[1])
      expect(named.length).toBeGreaterThan(2)
      expect(named.filter((name) => !(name in contract[map]))).toEqual([])
    }
    // None is written as a string of its own (as `kind: '…'`, or a `case '…':`).
    const kinds = [...Object.values(contract.eventKinds), ...Object.values(contract.takeoverEventKinds)]
    const written = [...text.matchAll(/(?:kind: |case )'([a-z-]+)'/g)].map((match) => match[1])
    expect(written.filter((kind) => kinds.includes(kind))).toEqual([])
  })

  test('names every option binding.d.ts declares, in the same order', () => {
    const declared = [.../export interface ListenOptions \{([\s\S]*?)\n\}/.exec(fs.readFileSync(path.join(ROOT, 'binding.d.ts'), 'utf8'))[1].matchAll(/^ {2}(\w+)\?:/gm)].map((match) => match[1])
    expect(require('../lib/portable/contract').optionRules.map((rule) => rule.name)).toEqual(declared)
  })
})

describe('the shared vectors (src/binding/contract_vectors.tsv)', () => {
  const vectors = fs.readFileSync(path.join(ROOT, 'src', 'binding', 'contract_vectors.tsv'), 'utf8').split('\n').filter(Boolean).map((line) => line.split('\t'))
  const unescape = (text) => (text === '-' ? Buffer.alloc(0) : Buffer.from(text.replace(/%([0-9a-f]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16))), 'latin1'))
  const optionsOf = (text) =>
    Object.fromEntries(
      text === '-'
        ? []
        : text.split(';').map((pair) => {
            const [name, value] = pair.split('=')
            return [name, name === 'trustedProxies' ? value.split('|') : value === 'true' ? true : value === 'false' ? false : value]
          }),
    )
  const outcomeText = (d) =>
    d.outcome === 'incomplete'
      ? 'incomplete'
      : d.outcome === 'invalid'
        ? `invalid ${d.refusal}`
        : `complete ${d.route === 'hash' ? `hash=${d.hash}` : d.route === 'session' ? `sid=${d.sid}` : `new-session handshake=${d.handshake}`} consume=${d.consume}${d.clientAddress ? ` client=${d.clientAddress}:${d.clientPort}` : ''}`

  test('there are vectors of every routing mode and of the hash', () => {
    const kinds = new Set(vectors.map(([kind, options]) => (kind === 'rank' ? 'rank' : optionsOf(options).routing || 'ip')))
    expect([...kinds].sort()).toEqual(['header', 'ip', 'proxy-protocol', 'rank', 'sid'])
  })

  test.each([
    ['the JavaScript copies', portableDecision, (seed, key, slots) => {
      const hrw = new Rendezvous(BigInt(seed))
      const hash = hrw.keyHash(key)
      return { hash: hash.toString(), ranked: hrw.ranked(hash, slots) }
    }],
    ['the binding', nativeDecision, (seed, key, slots) => binding.rendezvousRanked(key, slots, seed)],
  ])('hold for %s', (_, decide, rank) => {
    for (const [kind, ...fields] of vectors) {
      if (kind === 'rank') {
        const [seed, keyHex, slotText, hash, ranked] = fields
        const got = rank(seed, Buffer.from(keyHex === '-' ? '' : keyHex, 'hex'), slotText.split(',').map(Number))
        expect({ vector: fields, hash: got.hash, ranked: got.ranked.join(',') }).toEqual({ vector: fields, hash, ranked })
      } else {
        const [options, peer, bytes, expected] = fields
        expect({ vector: fields, got: outcomeText(decide(optionsOf(options), peer, unescape(bytes))) }).toEqual({ vector: fields, got: expected })
      }
    }
  })
})

// ---- random inputs through both ----------------------------------------------------

const ADDRESS_PARTS = ['1', '0', '00', '01', '255', '256', '10', '127', '.', '.', ':', ':', '::', 'ffff', 'FFFF', 'fe80', 'db8', '2001', 'g', '%', '%eth0', '%25', '[', ']', ' ', '\t', '1.2.3.4', '::ffff:', '/', '8', '96', '0000', '12345', 'a', 'x']
function randomAddress(rng) {
  if (rng.chance(0.3)) {
    const v4 = Array.from({ length: 4 }, () => rng.int(256)).join('.')
    return rng.pick([v4, `::ffff:${v4}`, `[::ffff:${v4}]`, `${v4}:${rng.int(70000)}`, ` ${v4} `])
  }
  if (rng.chance(0.3)) {
    const groups = Array.from({ length: 8 }, () => rng.int(0x10000).toString(16))
    const cut = rng.int(8)
    // `::` standing for none, one or two groups (std refuses none; ipnet, for networks, allows it).
    const text = rng.chance(0.4) ? groups.join(':') : `${groups.slice(0, cut).join(':')}::${groups.slice(cut + rng.int(3)).join(':')}`
    return rng.pick([text, `[${text}]`, `${text}%eth${rng.int(3)}`, `[${text}]:${rng.int(70000)}`, text.toUpperCase()])
  }
  return Array.from({ length: 1 + rng.int(8) }, () => rng.pick(ADDRESS_PARTS)).join('')
}

const VALUES = [undefined, null, 0, -0, 1, 2, 3, 1.5, -1, 1024, 1025, 2 ** 31 - 1, 2 ** 31, 2 ** 53 - 1, 2 ** 53, NaN, Infinity, '', 'x', '1', '007', ' 8 ', 'ip', 'IP', 'header', 'sid', 'proxy-protocol', 'round-robin', 'random', 'least-connection', 'X-Real-IP', 'bad header', 'forwarded', '::', '127.0.0.1', true, false, 0n, 10n, -1n, 2n ** 64n, 2n ** 64n - 1n, [], ['loopback'], [1], {}, new Date(0), Object.create(null), () => 1, Symbol('s'), '18446744073709551615', '18446744073709551616', 'é']
function randomOptions(rng, rules) {
  if (rng.chance(0.05)) return rng.pick([undefined, null, [], 'x', 3, () => 1, true])
  const options = {}
  for (const rule of rules) {
    if (!rng.chance(0.25)) continue
    if (rule.name === 'trustedProxies' && rng.chance(0.7)) {
      const entries = Array.from({ length: 1 + rng.int(3) }, () => (rng.chance(0.3) ? rng.pick(['loopback', 'LinkLocal', 'uniquelocal', '*', '', ' ', 'all']) : `${randomAddress(rng)}${rng.chance(0.5) ? `/${rng.int(140)}` : ''}`))
      options.trustedProxies = rng.chance(0.5) ? entries : entries.join(',')
    } else if (rule.name === 'slotPorts' && rng.chance(0.7)) {
      // Ports near the top, so that some run past 65535 with the workers; routing that takes them, mostly.
      options.slotPorts = rng.pick([true, false, 3100, 65535 - rng.int(10), 65536, 0, -1, 1.5, '3100'])
      if (rng.chance(0.6)) options.routing = rng.pick(['header', 'sid'])
    } else if (rule.name === 'slotHost' && rng.chance(0.7)) {
      options.slotHost = randomAddress(rng)
    } else {
      options[rule.name] = rng.pick(VALUES)
    }
  }
  if (rng.chance(0.1)) options.unknownOption = rng.pick(VALUES)
  return options
}

/** A connection's first bytes: a valid head of the mode, then cut, mutated or padded. */
function randomBytes(rng, routing) {
  const client = Array.from({ length: 4 }, () => rng.int(256)).join('.')
  const templates = {
    'proxy-protocol': () =>
      rng.pick([
        `PROXY TCP4 ${client} 127.0.0.1 ${rng.int(70000)} 80\r\n`,
        `PROXY TCP6 2001:db8::${rng.int(0x10000).toString(16)} ::1 ${rng.int(65536)} 443\r\n`,
        'PROXY UNKNOWN\r\n',
        Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a', 'hex'), Buffer.from([rng.pick([0x20, 0x21, 0x22, 0x11]), rng.pick([0x00, 0x11, 0x12, 0x21, 0x31, 0x13]), 0, rng.pick([0, 12, 36, 11, 216])]), Buffer.from(Array.from({ length: 40 }, () => rng.int(256)))]),
      ]),
    header: () => {
      const value = () => rng.pick([`${client}, 127.0.0.1`, `for="[2001:db8::${rng.int(99)}]:${rng.int(70000)}";proto=http`, `for=${client}, for=_hidden`, 'unknown', `${randomAddress(rng)}, ${randomAddress(rng)}`, '"unterminated', `for=${client};for=1.1.1.1`, ` ${client}\t`, ''])
      const lines = Array.from({ length: rng.int(5) }, () => `${rng.pick(['X-Forwarded-For', 'x-forwarded-for', 'Forwarded', 'X-Real-IP', 'Host', 'Cookie', 'X Bad', ''])}${rng.pick([': ', ':', ' : '])}${value()}${rng.pick(['\r\n', '\n', '\r\n'])}`)
      // Mostly a valid request naming a client, so that one wrong byte elsewhere decides.
      if (rng.chance(0.6)) lines.splice(rng.int(lines.length + 1), 0, `X-Forwarded-For: ${client}\r\n`, `Forwarded: for=${client}\r\n`)
      const requestLine = rng.chance(0.7) ? 'GET /socket.io/?EIO=4 HTTP/1.1' : `${rng.pick(['GET', 'POST', 'G@T', ''])} ${rng.pick(['/', '/x?y=1', '*', '', '/é'])} ${rng.pick(['HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0'])}`
      return `${rng.pick(['', '', '\r\n', '\n'])}${requestLine}${rng.pick(['\r\n', '\n'])}${lines.join('')}\r\n`
    },
    sid: () => `${rng.pick(['', '\r\n'])}GET /socket.io/?${rng.pick(['EIO=4&', '', 'EIO=3&'])}transport=polling${rng.pick(['', `&sid=${rng.pick(['abc', 'a%20', 'A-z_0.~', 'x'.repeat(130), ''])}`, '&sid=a&sid=b', '&xsid=1'])}${rng.pick(['', '#frag', '#?sid=q'])} ${rng.pick(['HTTP/1.1', 'HTTP/1.0', 'HTTP/1.2'])}\r\n`,
    ip: () => '',
  }
  let bytes = Buffer.from(templates[routing]())
  if (rng.chance(0.4)) bytes = bytes.subarray(0, rng.int(bytes.length + 1))
  if (rng.chance(0.4)) {
    bytes = Buffer.from(bytes)
    for (let flips = 1 + rng.int(3); flips > 0 && bytes.length > 0; flips--) bytes[rng.int(bytes.length)] = rng.pick([0x00, 0x09, 0x0a, 0x0d, 0x20, 0x3a, 0x2c, 0x3b, 0x22, 0x5c, 0x7f, 0x80, 0xc3, 0xff, rng.int(256)])
  }
  if (rng.chance(0.3) && bytes.length > 0) {
    // A byte that only some grammars allow, inserted anywhere (most often in a header line).
    const at = rng.int(bytes.length)
    bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from([rng.pick([0x00, 0x01, 0x09, 0x0b, 0x7f, 0x80, 0xe9, 0xff, 0x20])]), bytes.subarray(at)])
  }
  if (rng.chance(0.2)) bytes = Buffer.concat([bytes, Buffer.from(Array.from({ length: rng.int(64) }, () => rng.int(256)))])
  return bytes
}

describe(`random inputs get the same answer from the JavaScript copies and the binding (STICKY_FUZZ_SEED=${SEED})`, () => {
  const rules = require('../lib/portable/contract').optionRules

  test('address literals: the client key, or none', () => {
    fuzz('address', (rng) => {
      const text = randomAddress(rng)
      const native = binding.clientKey(text)
      const ip = parseIpLiteral(text)
      const copy = ip && Buffer.from(clientKey(ip))
      return (native === null) === (copy === null) && (native === null || native.equals(copy)) ? null : { text, native, copy }
    })
  })

  test('resolveOptions: the same options, or the same error', () => {
    fuzz('options', (rng) => {
      const options = randomOptions(rng, rules)
      const cpus = 1 + rng.int(8)
      // What JavaScript receives; `config` is the binding's own (opaque) and the portable listener's.
      const jsFields = (resolve) => () => {
        const { config, ...fields } = resolve(options, cpus)
        return { ...fields, seed: `${fields.seed}n`, configIsAnObject: typeof config === 'object' && config !== null }
      }
      const native = outcomeOf(jsFields(binding.resolveOptions))
      const copy = outcomeOf(jsFields(portable.resolveOptions))
      return JSON.stringify(native) === JSON.stringify(copy) ? null : { options: String(JSON.stringify(options, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))), native, copy }
    })
  })

  test('the rendezvous hash and ranking, for any key, slots and seed', () => {
    fuzz('rank', (rng) => {
      const key = Buffer.from(Array.from({ length: rng.int(40) }, () => rng.int(256)))
      const slots = [...new Set(Array.from({ length: 1 + rng.int(12) }, () => rng.int(1024)))]
      const seed = rng.chance(0.2) ? rng.pick(['0', '1', '18446744073709551615']) : (BigInt(rng.int(2 ** 32)) * 4294967296n + BigInt(rng.int(2 ** 32))).toString()
      const native = binding.rendezvousRanked(key, slots, seed)
      const hrw = new Rendezvous(BigInt(seed))
      const hash = hrw.keyHash(key)
      const copy = { hash: hash.toString(), ranked: hrw.ranked(hash, slots) }
      return JSON.stringify(native) === JSON.stringify(copy) && hrw.pick(hash, slots) === copy.ranked[0] ? null : { key: key.toString('hex'), slots, seed, native, copy }
    })
  })

  test.each(['ip', 'header', 'proxy-protocol', 'sid'])("routing '%s': the same decision for any peer and first bytes", (routing) => {
    fuzz(`route-${routing}`, (rng) => {
      const options = { routing, ...(rng.chance(0.3) ? { ignoreMissingHeader: false } : {}), ...(rng.chance(0.3) ? { header: rng.pick(['forwarded', 'x-real-ip', 'X-Forwarded-For']) } : {}) }
      if (rng.chance(0.3)) options.trustedProxies = rng.pick([['10.0.0.0/8', '::1'], ['0.0.0.0/0'], ['loopback', 'fd00::/8'], ['::ffff:127.0.0.0/104']])
      if (rng.chance(0.2)) options.seed = String(rng.int(2 ** 31))
      const peer = rng.pick(['127.0.0.1', '127.0.0.1', '::1', '::ffff:127.0.0.1', '10.1.2.3', '203.0.113.9', '2001:db8::9', 'fd00::1'])
      const bytes = randomBytes(rng, routing)
      const native = nativeDecision(options, peer, bytes)
      const copy = portableDecision(options, peer, bytes)
      return JSON.stringify(canonical(native)) === JSON.stringify(canonical(copy)) ? null : { options, peer, bytes: bytes.toString('latin1'), native, copy }
    })
  })
})

'use strict'

// IP addresses for the portable path: the JavaScript copy of src/core/address.rs
// and of the two address grammars the Rust uses (the standard library's,
// strict, and the `ipnet` crate's for networks, which allows leading zeros in
// IPv4 octets and a `::` that stands for no group). No I/O.
//
// An address is `{ v4: true, bytes }` (4 bytes) or `{ v4: false, bytes }`
// (16 bytes). Text is read code unit by code unit: only ASCII can match, as
// in the Rust, which reads bytes.

/** A cursor over text, with the Rust parsers' atomic steps (a failed step moves nothing). */
class Cursor {
  constructor(text) {
    this.text = text
    this.position = 0
  }

  atEnd() {
    return this.position >= this.text.length
  }

  peek() {
    return this.position < this.text.length ? this.text.charCodeAt(this.position) : -1
  }

  /** `step()`'s value, or null with the cursor where it was. */
  atomically(step) {
    const start = this.position
    const value = step()
    if (value === null) this.position = start
    return value
  }

  char(code) {
    if (this.peek() !== code) return null
    this.position++
    return code
  }

  digit(radix) {
    const code = this.peek()
    let value = -1
    if (code >= 0x30 && code <= 0x39) value = code - 0x30
    else if (radix === 16 && code >= 0x61 && code <= 0x66) value = code - 0x61 + 10
    else if (radix === 16 && code >= 0x41 && code <= 0x46) value = code - 0x41 + 10
    if (value < 0) return null
    this.position++
    return value
  }
}

const COLON = 0x3a
const DOT = 0x2e
const SLASH = 0x2f

/**
 * The two grammars. `strict`: Rust's `std::net` (no leading zero in an IPv4
 * octet; `::` stands for at least one group). `ipnet`: the `ipnet` crate's
 * parser (networks `a/len`), which allows both.
 */
function numberReader(grammar) {
  return function readNumber(cursor, radix, maxDigits, upto, allowLeadingZero) {
    return cursor.atomically(() => {
      let value = 0
      let digits = 0
      const leadingZero = cursor.peek() === 0x30
      for (let digit = cursor.digit(radix); digit !== null; digit = cursor.digit(radix)) {
        value = value * radix + digit
        digits++
        if (digits > maxDigits || value >= upto) return null
      }
      if (digits === 0) return null
      if (grammar === 'strict' && !allowLeadingZero && leadingZero && digits > 1) return null
      return value
    })
  }
}

function grammarOf(grammar) {
  const readNumber = numberReader(grammar)
  const readIpv4 = (cursor) =>
    cursor.atomically(() => {
      const bytes = new Uint8Array(4)
      for (let i = 0; i < 4; i++) {
        if (i > 0 && cursor.char(DOT) === null) return null
        const octet = readNumber(cursor, 10, 3, 0x100, false)
        if (octet === null) return null
        bytes[i] = octet
      }
      return bytes
    })
  /** Up to `limit` groups (an IPv4 tail counts two); `{ count, ipv4 }`. */
  const readGroups = (cursor, groups, limit) => {
    for (let i = 0; i < limit; i++) {
      const separated = (read) => cursor.atomically(() => (i === 0 || cursor.char(COLON) !== null ? read() : null))
      if (i < limit - 1) {
        const v4 = separated(() => readIpv4(cursor))
        if (v4 !== null) {
          groups[i] = (v4[0] << 8) | v4[1]
          groups[i + 1] = (v4[2] << 8) | v4[3]
          return { count: i + 2, ipv4: true }
        }
      }
      const group = separated(() => readNumber(cursor, 16, 4, 0x10000, true))
      if (group === null) return { count: i, ipv4: false }
      groups[i] = group
    }
    return { count: limit, ipv4: false }
  }
  const readIpv6 = (cursor) =>
    cursor.atomically(() => {
      const head = new Array(8).fill(0)
      const { count: headSize, ipv4 } = readGroups(cursor, head, 8)
      if (headSize === 8) return groupsToBytes(head)
      if (ipv4) return null
      if (cursor.char(COLON) === null || cursor.char(COLON) === null) return null
      // std: `::` is at least one group of zeros; ipnet lets it be none.
      const limit = grammar === 'strict' ? 8 - (headSize + 1) : 8 - headSize
      const tail = new Array(8).fill(0)
      const { count: tailSize } = readGroups(cursor, tail, limit)
      const all = head.slice(0, headSize).concat(new Array(8 - headSize - tailSize).fill(0), tail.slice(0, tailSize))
      return groupsToBytes(all)
    })
  return { readNumber, readIpv4, readIpv6 }
}

function groupsToBytes(groups) {
  const bytes = new Uint8Array(16)
  groups.forEach((group, i) => {
    bytes[2 * i] = group >> 8
    bytes[2 * i + 1] = group & 0xff
  })
  return bytes
}

const STRICT = grammarOf('strict')
const IPNET = grammarOf('ipnet')

/** The whole of `text` read by `read`, or null. */
function whole(text, read) {
  const cursor = new Cursor(text)
  const value = read(cursor)
  return value !== null && cursor.atEnd() ? value : null
}

/** `Ipv4Addr::from_str`. */
function parseIpv4(text) {
  const bytes = whole(text, STRICT.readIpv4)
  return bytes && { v4: true, bytes }
}

/** `Ipv6Addr::from_str`. */
function parseIpv6(text) {
  const bytes = whole(text, STRICT.readIpv6)
  return bytes && { v4: false, bytes }
}

/** `IpAddr::from_str`: IPv4, else IPv6. */
function parseIp(text) {
  return parseIpv4(text) || parseIpv6(text)
}

/** `IpNet::from_str` (the `ipnet` crate): `a.b.c.d/len` or `v6/len`, as `{ ip, prefix }`. */
function parseNetwork(text) {
  const read = (readAddress, v4, maxDigits, upto) => (cursor) =>
    cursor.atomically(() => {
      const bytes = readAddress(cursor)
      if (bytes === null || cursor.char(SLASH) === null) return null
      const prefix = IPNET.readNumber(cursor, 10, maxDigits, upto, true)
      return prefix === null ? null : { ip: { v4, bytes }, prefix }
    })
  return whole(text, read(IPNET.readIpv4, true, 2, 33)) || whole(text, read(IPNET.readIpv6, false, 3, 129))
}

/** `::ffff:a.b.c.d` as the IPv4 address it maps (`IpAddr::to_canonical`); anything else as it is. */
function canonical(ip) {
  if (ip.v4) return ip
  const { bytes } = ip
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return ip
  if (bytes[10] !== 0xff || bytes[11] !== 0xff) return ip
  return { v4: true, bytes: bytes.slice(12) }
}

/** An IPv6 address with an optional zone id, dropped (`address::parse_ipv6_with_zone`). */
function parseIpv6WithZone(text) {
  const percent = text.indexOf('%')
  if (percent >= 0) {
    const zone = text.slice(percent + 1)
    if (zone.length === 0) return null
    for (let i = 0; i < zone.length; i++) {
      const code = zone.charCodeAt(i)
      if (code < 0x21 || code > 0x7e) return null
    }
    return parseIpv6(text.slice(0, percent))
  }
  return parseIpv6(text)
}

/** Unicode White_Space, which Rust's `str::trim` strips (JavaScript's `trim` also strips U+FEFF). */
const WHITE_SPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g

function rustTrim(text) {
  return text.replace(WHITE_SPACE, '')
}

/**
 * An address as users and proxies write it (`address::parse_ip_literal`):
 * `1.2.3.4`, `::1`, `[::1]`, `::ffff:1.2.3.4`, `fe80::1%eth0`,
 * `[fe80::1%25eth0]`; canonical; null for anything else.
 */
function parseIpLiteral(text) {
  const trimmed = rustTrim(text)
  let unbracketed = trimmed
  if (trimmed.startsWith('[')) {
    if (!trimmed.endsWith(']') || trimmed.length < 2) return null
    unbracketed = trimmed.slice(1, -1)
  }
  const ip = parseIpv4(unbracketed) || parseIpv6WithZone(unbracketed)
  return ip && canonical(ip)
}

/**
 * The address a socket reports (`socket.remoteAddress`: `127.0.0.1`,
 * `::ffff:127.0.0.1`, `fe80::1%eth0`), canonical; null when it is none.
 */
function parsePeer(text) {
  if (typeof text !== 'string') return null
  const ip = parseIpv4(text) || parseIpv6WithZone(text)
  return ip && canonical(ip)
}

/** The bytes that identify a client for hashing (`address::ClientKey`): 4 for IPv4, 16 for IPv6. */
function clientKey(ip) {
  return canonical(ip).bytes
}

/** An address as Rust's `Display` writes it (IPv6: RFC 5952 compression, `::ffff:a.b.c.d` for mapped). */
function formatIp(ip) {
  const { bytes } = ip
  if (ip.v4) return Array.from(bytes).join('.')
  const mapped = canonical(ip)
  if (mapped.v4) return `::ffff:${formatIp(mapped)}`
  const groups = []
  for (let i = 0; i < 8; i++) groups.push((bytes[2 * i] << 8) | bytes[2 * i + 1])
  // The longest run of zero groups (the first of equals), if longer than one.
  let best = { start: 0, length: 0 }
  let run = { start: 0, length: 0 }
  groups.forEach((group, i) => {
    if (group !== 0) {
      run = { start: i + 1, length: 0 }
      return
    }
    run = { start: run.length === 0 ? i : run.start, length: run.length + 1 }
    if (run.length > best.length) best = run
  })
  const hex = (list) => list.map((group) => group.toString(16)).join(':')
  if (best.length <= 1) return hex(groups)
  return `${hex(groups.slice(0, best.start))}::${hex(groups.slice(best.start + best.length))}`
}

module.exports = { parseIp, parseIpv4, parseIpv6, parseIpv6WithZone, parseNetwork, parseIpLiteral, parsePeer, canonical, clientKey, formatIp, rustTrim }

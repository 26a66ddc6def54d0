'use strict'

// The PROXY protocol header parser, versions 1 and 2: the JavaScript copy of
// src/core/parsers/proxy_protocol.rs, for the portable path. No I/O. It decides
// as early as the Rust does: garbage is refused at its first wrong byte,
// every strict prefix of a valid header is incomplete.
//
// Returns `{ complete: { headerLength, source } }` (`source`: `{ ip, port }`,
// or null for UNKNOWN, LOCAL, UNSPEC and UNIX), `{ incomplete: true }` or
// `{ invalid: reason }`.

const { parseIpv4, parseIpv6 } = require('./address')

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const V1_MAX_HEADER_LEN = 107
const MAX_V2_HEADER_LEN = 4096
const V2_FIXED_LEN = 16
/** Address block length by v2 family byte (null: not a family the spec lists). */
const V2_ADDRESS_BLOCK = { 0x00: 0, 0x11: 12, 0x12: 12, 0x21: 36, 0x22: 36, 0x31: 216, 0x32: 216 }
const MAX_IPV4_TEXT_LEN = 15
const MAX_IPV6_TEXT_LEN = 45
const MAX_PORT_TEXT_LEN = 5

const INCOMPLETE = { incomplete: true }
const invalid = (reason) => ({ invalid: reason })

function parseProxyHeader(buf) {
  if (buf.length === 0) return INCOMPLETE
  if (buf[0] === 0x50) return parseV1(buf)
  if (buf[0] === 0x0d) return parseV2(buf)
  return invalid(`not a PROXY protocol header: first byte 0x${buf[0].toString(16).padStart(2, '0')}`)
}

// ---- version 2 ----------------------------------------------------------------

function parseV2(buf) {
  const compared = Math.min(buf.length, V2_SIGNATURE.length)
  for (let i = 0; i < compared; i++) if (buf[i] !== V2_SIGNATURE[i]) return invalid(`PROXY v2 signature does not match at offset ${i}`)
  if (buf.length <= 12) return INCOMPLETE
  const versionAndCommand = buf[12]
  if (versionAndCommand >> 4 !== 2) return invalid(`PROXY v2 version is ${versionAndCommand >> 4}, expected 2`)
  const command = versionAndCommand & 0x0f
  if (command > 1) return invalid(`PROXY v2 command is ${command}, expected 0 (LOCAL) or 1 (PROXY)`)
  const local = command === 0
  if (buf.length <= 13) return INCOMPLETE
  const familyByte = buf[13]
  // LOCAL: the family and the address block are ignored.
  const required = local ? 0 : V2_ADDRESS_BLOCK[familyByte]
  if (required === undefined) return invalid(`PROXY v2 family byte 0x${familyByte.toString(16)} is not one the spec lists`)
  if (buf.length <= 15) return INCOMPLETE
  const declared = buf.readUInt16BE(14)
  const headerLength = V2_FIXED_LEN + declared
  if (headerLength > MAX_V2_HEADER_LEN) return invalid(`PROXY v2 header of ${headerLength} bytes exceeds the ${MAX_V2_HEADER_LEN}-byte limit`)
  if (declared < required) return invalid(`PROXY v2 length ${declared} is shorter than the ${required}-byte address block`)
  if (buf.length < headerLength) return INCOMPLETE
  const family = local ? null : familyByte >> 4
  if (family !== 1 && family !== 2) return { complete: { headerLength, source: null } }
  const size = family === 1 ? 4 : 16
  const block = V2_FIXED_LEN
  const ip = { v4: family === 1, bytes: Uint8Array.from(buf.subarray(block, block + size)) }
  const port = buf.readUInt16BE(block + 2 * size)
  return { complete: { headerLength, source: { ip, port } } }
}

// ---- version 1 ----------------------------------------------------------------

const PREFIX = Buffer.from('PROXY ')
const UNKNOWN = Buffer.from('UNKNOWN')
const PROTOCOLS = [Buffer.from('TCP4'), Buffer.from('TCP6'), UNKNOWN]
const SPACE = 0x20
const CR = 0x0d
const LF = 0x0a

/** Thrown inside the v1 walk: how it stopped. */
class Stop {
  constructor(outcome) {
    this.outcome = outcome
  }
}

function parseV1(buf) {
  const window = buf.subarray(0, V1_MAX_HEADER_LEN)
  let position = 0
  const outOfBytes = () => new Stop(window.length >= V1_MAX_HEADER_LEN ? invalid(`PROXY v1 header has no CRLF within the first ${V1_MAX_HEADER_LEN} bytes`) : INCOMPLETE)
  const expectLiteral = (literal, what) => {
    for (const expected of literal) {
      if (position >= window.length) throw outOfBytes()
      if (window[position] !== expected) throw new Stop(invalid(`PROXY v1 header: ${what} expected at offset ${position}`))
      position++
    }
  }
  /** The bytes up to the next space or CR, and that separator (-1: the window ended). */
  const takeField = () => {
    let end = position
    while (end < window.length && window[end] !== SPACE && window[end] !== CR) end++
    const field = window.subarray(position, end)
    position = end
    return { field, separator: end < window.length ? window[end] : -1 }
  }
  const expectSeparator = (separator, expected) => {
    if (separator === -1) throw outOfBytes()
    if (separator !== expected) throw new Stop(invalid(`PROXY v1 header has byte 0x${separator.toString(16)} at offset ${position} where a separator was expected`))
    position++
  }
  const address = (tcp4, separator) => {
    const offset = position
    const { field, separator: found } = takeField()
    const text = field.toString('latin1')
    if (found === -1) throw isAddressPrefix(tcp4, field) ? outOfBytes() : new Stop(invalid(`PROXY v1 address at offset ${offset} is malformed`))
    const ip = isAscii(field) ? (tcp4 ? parseIpv4(text) : parseIpv6(text)) : null
    if (!ip) throw new Stop(invalid(`PROXY v1 address at offset ${offset} is malformed`))
    expectSeparator(found, separator)
    return ip
  }
  const port = (separator) => {
    const offset = position
    const { field, separator: found } = takeField()
    if (found === -1) throw field.length === 0 || parsePort(field) !== null ? outOfBytes() : new Stop(invalid(`PROXY v1 port at offset ${offset} is malformed`))
    const value = parsePort(field)
    if (value === null) throw new Stop(invalid(`PROXY v1 port at offset ${offset} is malformed`))
    expectSeparator(found, separator)
    return value
  }
  try {
    expectLiteral(PREFIX, '"PROXY "')
    if (startsWith(window.subarray(position), UNKNOWN)) {
      position += UNKNOWN.length
      const rest = window.subarray(position)
      const lineEnd = indexOfCrlf(rest)
      if (lineEnd < 0) throw outOfBytes()
      return { complete: { headerLength: position + lineEnd + 2, source: null } }
    }
    const protocolOffset = position
    const { field: protocol, separator } = takeField()
    if (separator === -1) {
      throw PROTOCOLS.some((known) => startsWith(known, protocol)) ? outOfBytes() : new Stop(invalid(`PROXY v1 protocol at offset ${protocolOffset} is not TCP4, TCP6 or UNKNOWN`))
    }
    const tcp4 = protocol.equals(PROTOCOLS[0])
    if (!tcp4 && !protocol.equals(PROTOCOLS[1])) throw new Stop(invalid(`PROXY v1 protocol at offset ${protocolOffset} is not TCP4, TCP6 or UNKNOWN`))
    expectSeparator(separator, SPACE)
    const sourceIp = address(tcp4, SPACE)
    address(tcp4, SPACE)
    const sourcePort = port(SPACE)
    port(CR)
    expectLiteral([LF], 'LF after CR')
    return { complete: { headerLength: position, source: { ip: sourceIp, port: sourcePort } } }
  } catch (stop) {
    if (stop instanceof Stop) return stop.outcome
    throw stop
  }
}

function startsWith(bytes, prefix) {
  return bytes.length >= prefix.length && bytes.subarray(0, prefix.length).equals(prefix)
}

function indexOfCrlf(bytes) {
  for (let i = 0; i + 1 < bytes.length; i++) if (bytes[i] === CR && bytes[i + 1] === LF) return i
  return -1
}

function isAscii(bytes) {
  for (const byte of bytes) if (byte > 0x7f) return false
  return true
}

function isAddressPrefix(tcp4, field) {
  return tcp4 ? isIpv4Prefix(field) : isIpv6Prefix(field)
}

/** Whether `text` can be extended into a dotted-quad IPv4 address (exact). */
function isIpv4Prefix(text) {
  if (text.length > MAX_IPV4_TEXT_LEN) return false
  const octets = splitBytes(text, DOT)
  if (octets.length - 1 > 3) return false
  return octets.every((octet, index) => (index === octets.length - 1 && octet.length === 0) || isIpv4Octet(octet))
}

const DOT = 0x2e
const COLON = 0x3a

function isIpv4Octet(text) {
  if (text.length === 0 || text.length > 3 || (text.length > 1 && text[0] === 0x30)) return false
  const value = parseDecimal(text)
  return value !== null && value <= 255
}

/** Whether `text` might be extended into an IPv6 address (sound, not exact). */
function isIpv6Prefix(text) {
  if (text.length > MAX_IPV6_TEXT_LEN) return false
  for (const byte of text) if (!isHexDigit(byte) && byte !== COLON && byte !== DOT) return false
  let doubleColons = 0
  for (let i = 0; i + 1 < text.length; i++) if (text[i] === COLON && text[i + 1] === COLON) doubleColons++
  if (doubleColons > 1) return false
  let groups = text
  let ipv4Tail = null
  const firstDot = text.indexOf(DOT)
  if (firstDot >= 0) {
    const lastColon = text.subarray(0, firstDot).lastIndexOf(COLON)
    if (lastColon < 0) return false
    groups = text.subarray(0, lastColon + 1)
    ipv4Tail = text.subarray(lastColon + 1)
  }
  const groupsFit = splitBytes(groups, COLON).every((group) => group.length <= 4 && !group.includes(DOT))
  return groupsFit && (ipv4Tail === null || isIpv4Prefix(ipv4Tail))
}

function isHexDigit(byte) {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
}

/** A decimal port in 0..=65535, without sign or leading zeros; null otherwise. */
function parsePort(text) {
  if (text.length === 0 || text.length > MAX_PORT_TEXT_LEN || (text.length > 1 && text[0] === 0x30)) return null
  const value = parseDecimal(text)
  return value !== null && value <= 65535 ? value : null
}

function parseDecimal(text) {
  let value = 0
  for (const byte of text) {
    if (byte < 0x30 || byte > 0x39) return null
    value = value * 10 + (byte - 0x30)
  }
  return value
}

function splitBytes(bytes, separator) {
  const parts = []
  let start = 0
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === separator) {
      parts.push(bytes.subarray(start, i))
      start = i + 1
    }
  }
  return parts
}

module.exports = { parseProxyHeader, V2_SIGNATURE }

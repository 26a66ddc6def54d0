'use strict'

// Client address chains from `X-Forwarded-For` and RFC 7239 `Forwarded`, and
// the policy that picks the client: the JavaScript copy of
// src/core/parsers/forwarded.rs, for the portable path. No I/O. A node is
// `{ ip }`, `UNKNOWN` or `OBFUSCATED`.

const { parseIp, parseIpv4, parseIpv6WithZone, canonical } = require('./address')
const { isTokenByte } = require('./http-head')

const UNKNOWN = Object.freeze({ unknown: true })
const OBFUSCATED = Object.freeze({ obfuscated: true })

const isOptionalWhitespace = (byte) => byte === 0x20 || byte === 0x09
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** `X-Forwarded-For` values (Buffers), leftmost first. */
function parseXForwardedFor(values) {
  const nodes = []
  for (const value of values) {
    let start = 0
    for (let i = 0; i <= value.length; i++) {
      if (i < value.length && value[i] !== 0x2c) continue
      const entry = trimOptionalWhitespace(value.subarray(start, i))
      start = i + 1
      if (entry.length > 0) nodes.push(classifyNode(entry))
    }
  }
  return nodes
}

/** RFC 7239 `Forwarded` values (Buffers): one node per element, from its `for=`. */
function parseForwarded(values) {
  const nodes = []
  for (const value of values) {
    let position = 0
    while (position < value.length) {
      const { node, next } = parseForwardedElement(value, position)
      if (node) nodes.push(node)
      position = Math.max(next, position + 1)
    }
  }
  return nodes
}

/**
 * The client of a connection from `peer` whose chain is `nodes`
 * (nginx's `real_ip_recursive on`): the rightmost address that is not a
 * trusted proxy; null when an unknown or obfuscated entry comes first.
 */
function pickClient(nodes, peer, trusted) {
  const peerIp = canonical(peer)
  if (!trusted.contains(peerIp)) return peerIp
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i]
    if (!node.ip) return null
    if (!trusted.contains(node.ip)) return canonical(node.ip)
  }
  if (nodes.length === 0) return peerIp
  return nodes[0].ip ? canonical(nodes[0].ip) : null
}

// ---- node syntax -------------------------------------------------------------------

function classifyNode(node) {
  const ip = parseNodeAddress(node)
  if (ip) return { ip: canonical(ip) }
  let name = node
  const colon = node.indexOf(0x3a)
  if (colon >= 0) {
    if (!isNodePort(node.subarray(colon + 1))) return UNKNOWN
    name = node.subarray(0, colon)
  }
  return isObfuscatedIdentifier(name) ? OBFUSCATED : UNKNOWN
}

function parseNodeAddress(node) {
  let text
  try {
    text = utf8.decode(node)
  } catch {
    return null
  }
  if (text.startsWith('[')) {
    const close = text.indexOf(']', 1)
    if (close < 0) return null
    const after = text.slice(close + 1)
    if (after.length > 0) {
      if (!after.startsWith(':') || !isNodePort(Buffer.from(after.slice(1), 'utf8'))) return null
    }
    return parseIpv6WithZone(text.slice(1, close))
  }
  const ip = parseIp(text) || parseIpv6WithZone(text)
  if (ip) return ip
  const colon = text.indexOf(':')
  if (colon < 0 || !isNodePort(Buffer.from(text.slice(colon + 1), 'utf8'))) return null
  return parseIpv4(text.slice(0, colon))
}

/** RFC 7239 `node-port`: 1 to 5 digits up to 65535, or an obfuscated port. */
function isNodePort(port) {
  const decimal = port.length > 0 && port.length <= 5 && port.every((byte) => byte >= 0x30 && byte <= 0x39) && Number(port.toString('latin1')) <= 65535
  return decimal || isObfuscatedIdentifier(port)
}

function isObfuscatedIdentifier(text) {
  if (text.length < 2 || text[0] !== 0x5f) return false
  for (let i = 1; i < text.length; i++) {
    const byte = text[i]
    const ok = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || byte === 0x2e || byte === 0x5f || byte === 0x2d
    if (!ok) return false
  }
  return true
}

function trimOptionalWhitespace(text) {
  let start = 0
  let end = text.length
  while (start < end && isOptionalWhitespace(text[start])) start++
  while (end > start && isOptionalWhitespace(text[end - 1])) end--
  return text.subarray(start, end)
}

function skipOptionalWhitespace(value, position) {
  while (position < value.length && isOptionalWhitespace(value[position])) position++
  return position
}

// ---- RFC 7239 elements ----------------------------------------------------------------

/** The element at `position`: `{ node (null for an empty element), next }`. */
function parseForwardedElement(value, position) {
  let hasPairs = false
  const forValues = []
  let malformed = false
  for (;;) {
    position = skipOptionalWhitespace(value, position)
    if (position >= value.length) break
    if (value[position] === 0x2c) {
      position++
      break
    }
    if (value[position] === 0x3b) {
      position++
      continue
    }
    hasPairs = true
    const pair = parseForwardedPair(value, position)
    if (!pair) {
      malformed = true
      break
    }
    if (pair.name.length === 3 && pair.name.toString('latin1').toLowerCase() === 'for') forValues.push(pair.value)
    position = skipOptionalWhitespace(value, pair.end)
    if (position < value.length && value[position] !== 0x2c && value[position] !== 0x3b) {
      malformed = true
      break
    }
  }
  if (malformed) return { node: UNKNOWN, next: skipPastElement(value, position) }
  if (!hasPairs) return { node: null, next: position }
  return { node: forValues.length === 1 ? classifyNode(forValues[0]) : UNKNOWN, next: position }
}

/** `token "=" ( token / quoted-string )` at `position`: `{ name, value, end }`, or null. */
function parseForwardedPair(value, position) {
  let nameEnd = position
  while (nameEnd < value.length && isTokenByte(value[nameEnd])) nameEnd++
  // A name running to the end of the value has no `=`.
  if (nameEnd >= value.length || nameEnd === position || value[nameEnd] !== 0x3d) return null
  const valueStart = nameEnd + 1
  if (value[valueStart] === 0x22) {
    const quoted = parseQuotedString(value, valueStart)
    return quoted && { name: value.subarray(position, nameEnd), value: quoted.content, end: valueStart + quoted.length }
  }
  let tokenEnd = valueStart
  while (tokenEnd < value.length && value[tokenEnd] !== 0x3b && value[tokenEnd] !== 0x2c && value[tokenEnd] !== 0x22 && !isOptionalWhitespace(value[tokenEnd])) tokenEnd++
  return { name: value.subarray(position, nameEnd), value: value.subarray(valueStart, tokenEnd), end: tokenEnd }
}

/** The quoted string at `start` (a `"`): `{ content, length }` (quotes included in the length), or null when unterminated. */
function parseQuotedString(value, start) {
  const content = []
  for (let i = start + 1; i < value.length; i++) {
    const byte = value[i]
    if (byte === 0x22) return { content: Buffer.from(content), length: i - start + 1 }
    if (byte === 0x5c) {
      if (i + 1 >= value.length) return null
      content.push(value[++i])
    } else {
      content.push(byte)
    }
  }
  return null
}

/** Just after the next `,` outside a quoted string, or the end. */
function skipPastElement(value, position) {
  let inQuotes = false
  while (position < value.length) {
    const byte = value[position++]
    if (byte === 0x5c && inQuotes) position++
    else if (byte === 0x22) inQuotes = !inQuotes
    else if (byte === 0x2c && !inQuotes) return position
  }
  return value.length
}

module.exports = { parseXForwardedFor, parseForwarded, pickClient, UNKNOWN, OBFUSCATED }

'use strict'

// The trusted proxy list, the JavaScript copy of src/core/parsers/trusted.rs: IP
// addresses, CIDR networks and the keywords `loopback`, `linklocal`,
// `uniquelocal`. No I/O; names are never resolved.

const { parseIp, parseNetwork, canonical, rustTrim } = require('./address')

const EXPECTED_FORMAT =
  'expected an IP address ("127.0.0.1", "::1"), a CIDR network ("10.0.0.0/8", "fd00::/8") or one of the keywords "loopback", "linklocal", "uniquelocal"'

const v4 = (a, b, c, d, prefix) => ({ ip: { v4: true, bytes: Uint8Array.of(a, b, c, d) }, prefix })
const v6 = (first, prefix, last = 0) => {
  const bytes = new Uint8Array(16)
  bytes[0] = first >> 8
  bytes[1] = first & 0xff
  bytes[15] = last
  return { ip: { v4: false, bytes }, prefix }
}
const KEYWORDS = {
  loopback: [v4(127, 0, 0, 0, 8), v6(0, 128, 1)],
  linklocal: [v4(169, 254, 0, 0, 16), v6(0xfe80, 10)],
  uniquelocal: [v4(10, 0, 0, 0, 8), v4(172, 16, 0, 0, 12), v4(192, 168, 0, 0, 16), v6(0xfc00, 7)],
}

/** The network's own address: host bits cleared (`IpNet::trunc`). */
function truncate({ ip, prefix }) {
  const bytes = ip.bytes.slice()
  for (let bit = prefix; bit < bytes.length * 8; bit++) bytes[bit >> 3] &= ~(0x80 >> (bit & 7))
  return { ip: { v4: ip.v4, bytes }, prefix }
}

/** A network inside `::ffff:0:0/96` as the IPv4 network it maps. */
function canonicalNetwork(network) {
  if (network.ip.v4 || network.prefix < 96) return network
  const mapped = canonical(network.ip)
  return mapped.v4 ? { ip: mapped, prefix: network.prefix - 96 } : network
}

function contains({ ip: net, prefix }, ip) {
  if (net.v4 !== ip.v4) return false
  for (let bit = 0; bit < prefix; bit++) {
    const mask = 0x80 >> (bit & 7)
    if ((net.bytes[bit >> 3] & mask) !== (ip.bytes[bit >> 3] & mask)) return false
  }
  return true
}

class TrustedProxies {
  constructor(networks) {
    this.networks = networks
  }

  /**
   * Parses configuration entries (`TrustedProxies::parse`): surrounding
   * white space ignored, keywords in any case, no wildcard. Throws an Error
   * whose message is the Rust one.
   */
  static parse(entries) {
    const networks = []
    entries.forEach((raw, index) => {
      const entry = rustTrim(raw)
      if (entry === '') throw new Error(`trusted proxy entry ${index} is empty; ${EXPECTED_FORMAT}`)
      if (entry === '*') {
        throw new Error(`trusted proxy entry ${index} is "*", but wildcards are not supported: trusting every peer lets any client forge its address; ${EXPECTED_FORMAT}`)
      }
      const keyword = KEYWORDS[entry.toLowerCase()]
      if (keyword && /^[a-z]+$/i.test(entry)) {
        networks.push(...keyword)
        return
      }
      const network = parseNetwork(entry)
      if (network) {
        networks.push(canonicalNetwork(truncate(network)))
        return
      }
      const ip = parseIp(entry)
      if (!ip) throw new Error(`trusted proxy entry ${index} (${rustDebugString(entry)}) is not recognised; ${EXPECTED_FORMAT}`)
      networks.push(canonicalNetwork({ ip, prefix: ip.v4 ? 32 : 128 }))
    })
    return new TrustedProxies(networks)
  }

  /** Whether `ip` belongs to a trusted network (an IPv4-mapped address as its IPv4 address). */
  contains(ip) {
    const address = canonical(ip)
    return this.networks.some((network) => contains(network, address))
  }
}

/** A string as Rust's `{:?}` writes it. */
function rustDebugString(text) {
  let out = '"'
  for (const char of text) {
    const code = char.codePointAt(0)
    if (char === '"') out += '\\"'
    else if (char === '\\') out += '\\\\'
    else if (char === '\n') out += '\\n'
    else if (char === '\r') out += '\\r'
    else if (char === '\t') out += '\\t'
    else if (char === '\0') out += '\\0'
    else if (isRustEscapedInDebug(code)) out += `\\u{${code.toString(16)}}`
    else out += char
  }
  return `${out}"`
}

/** Characters Rust's `Debug` escapes as `\u{..}`: control and other non-printable characters (the common ones). */
function isRustEscapedInDebug(code) {
  return code < 0x20 || (code >= 0x7f && code < 0xa0) || code === 0xad || (code >= 0xd800 && code <= 0xdfff)
}

module.exports = { TrustedProxies, EXPECTED_FORMAT, rustDebugString }

'use strict'

// What identifies a client, from its address and its connection's first
// bytes: the JavaScript copy of src/core/routing.rs (`Router::decide`), for the
// portable path. No I/O. `decide(peer, bytes)` returns
//   { complete: { route, client, consume } }  route: { hash } | { sid } | { newSession: { handshake } };
//                                             client: the PROXY header's { ip, port } or null;
//                                             consume: bytes that are the PROXY header
//   { incomplete: true }                      wait for more bytes
//   { invalid: refusal }                      'untrusted-proxy' | 'invalid-proxy-header' | 'missing-header'

const { clientKey } = require('./address')
const { Rendezvous } = require('./hrw')
const { TrustedProxies } = require('./trusted')
const { parseProxyHeader } = require('./proxy-protocol')
const { parseRequestHead, headerValues, requestLineSid, requestLineTarget, findQueryParam, MAX_REQUEST_HEAD_LEN } = require('./http-head')
const { parseXForwardedFor, parseForwarded, pickClient } = require('./forwarded')

const EIO = Buffer.from('EIO')

class Router {
  /** `options`: resolved options (`routing`, `header`, `trustedProxies`, `ignoreMissingHeader`, `seed`). */
  constructor({ routing, header, trustedProxies, ignoreMissingHeader, seed }) {
    this.routing = routing
    this.header = header
    this.trusted = TrustedProxies.parse(trustedProxies)
    this.ignoreMissingHeader = ignoreMissingHeader
    this.hrw = new Rendezvous(BigInt(seed))
  }

  /** Whether the first bytes are needed (every mode but 'ip'). */
  peeks() {
    return this.routing !== 'ip'
  }

  routeByIp(ip) {
    return { hash: this.hrw.keyHash(clientKey(ip)) }
  }

  /** `peer`: the connection's address (`{ v4, bytes }`); `bytes`: what arrived so far (a Buffer). */
  decide(peer, bytes) {
    const byPeer = () => ({ complete: { route: this.routeByIp(peer), client: null, consume: 0 } })
    switch (this.routing) {
      case 'ip':
        return byPeer()
      case 'proxy-protocol': {
        if (!this.trusted.contains(peer)) return { invalid: 'untrusted-proxy' }
        const parsed = parseProxyHeader(bytes)
        if (parsed.incomplete) return parsed
        if (parsed.invalid !== undefined) return { invalid: 'invalid-proxy-header', reason: parsed.invalid }
        const { headerLength, source } = parsed.complete
        return { complete: { route: this.routeByIp(source ? source.ip : peer), client: source, consume: headerLength } }
      }
      case 'header': {
        if (!this.trusted.contains(peer)) return byPeer()
        let parsed = parseRequestHead(bytes, 128)
        if (parsed.tooManyHeaders) parsed = parseRequestHead(bytes, MAX_REQUEST_HEAD_LEN)
        if (parsed.incomplete && bytes.length < MAX_REQUEST_HEAD_LEN) return parsed
        let client = null
        if (parsed.complete) {
          const nodes = this.header === 'forwarded' ? parseForwarded(headerValues(parsed.complete, 'forwarded')) : parseXForwardedFor(headerValues(parsed.complete, this.header))
          client = nodes.length === 0 ? null : pickClient(nodes, peer, this.trusted)
        }
        if (client) return { complete: { route: this.routeByIp(client), client: null, consume: 0 } }
        return this.ignoreMissingHeader ? byPeer() : { invalid: 'missing-header' }
      }
      case 'sid': {
        const sid = requestLineSid(bytes)
        if (sid.incomplete) return sid
        if (sid.complete) return { complete: { route: { sid: sid.complete.toString('latin1') }, client: null, consume: 0 } }
        if (sid.complete === null) {
          const target = requestLineTarget(bytes)
          const handshake = Boolean(target.complete && findQueryParam(target.complete, EIO) !== null)
          return { complete: { route: { newSession: { handshake } }, client: null, consume: 0 } }
        }
        return { complete: { route: { newSession: { handshake: false } }, client: null, consume: 0 } }
      }
      default:
        throw new Error(`unknown routing ${this.routing}`)
    }
  }
}

module.exports = { Router }

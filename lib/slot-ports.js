'use strict'

// Slot ports (`slotPorts`): for a proxy in front (HAProxy, nginx) that routes
// every request itself and keeps its upstream connections alive.
//
// Behind such a proxy, one public port cannot be both sticky and kept alive:
// the proxy reuses an upstream connection for whichever client comes next, so
// a balancer that routes connections (the accept loop) has to end each one
// after its response (`Connection: close`, lib/worker.js), and every proxied
// request pays for a new connection. With slot ports the proxy picks the slot
// per request, at its own speed, from the upstream block `proxyConfig`
// writes; each slot's connections stay open. The product keeps what is its
// own: the primary holds every slot's listening socket (as it holds a
// kernel-steered group), so a respawned or reloaded worker takes over its
// slot's port and what arrives meanwhile waits in the socket's queue.
//
// 'header' routing: the proxy hashes the client (its address, or a header)
// with its consistent hash. 'sid' routing: a handshake has no sid, so the
// proxy sends it to any slot; the worker that creates the session appends its
// slot to the sid it hands the client (`~<slot>`), and the proxy sends every
// later request of the session (polling, the websocket upgrade) to that slot.
// The worker takes the tag off again before engine.io sees the request, so
// the application's sids are the ones engine.io made. The primary reads the
// tags too, so a session opened through a slot port is routed to its worker
// when its client comes in through the public port, without a report.

const net = require('net')
const { SlotPortGroup, claimListeningFd, sidTagSeparator, portable } = require('./native')
const { codes, stickyError } = require('./errors')
const { isBun, tcpWrap } = require('./runtime')

/** The environment variable naming a worker's slot-port descriptor. */
const SLOT_PORT_FD = 'STICKY_SLOT_PORT_FD'
/** What separates a sid from the slot appended to it (src/core/sessions.rs, where the primary reads it too). */
const SID_TAG_SEPARATOR = sidTagSeparator()
/** The name of the backend / upstream `proxyConfig` writes, by default. */
const DEFAULT_UPSTREAM_NAME = 'sticky_session_rs'

// ---- the primary -------------------------------------------------------------

/**
 * The primary's slot ports, or null when `slotPorts` is off. Bound before the
 * workers fork; with `takeover: true` the ports are shared (`SO_REUSEPORT`)
 * so the primary taking over this one binds them too.
 */
function openSlotPorts(options) {
  if (!options.slotPorts) return null
  if (options.rendezvous) {
    throw stickyError(codes.INVALID_OPTION, 'options.slotPorts needs workers that sticky-session-rs forks: use sticky.listen(), not setupMaster()')
  }
  return new SlotPorts(new SlotPortGroup(options.config), options)
}

/**
 * Slot ports are the native binding's (the primary holds each slot's socket
 * for its worker): on the portable path asking for them fails the listen. Not
 * a warning and a fallback, as for kernel steering or takeover: a proxy set
 * up over the slot ports (`proxyConfig()`) would find nothing listening there.
 */
function slotPortsUnsupported() {
  return stickyError(
    codes.SLOT_PORTS_UNSUPPORTED,
    `options.slotPorts needs the native binding (Linux), and ${portable}: install the native binding, ` +
      'or leave slotPorts off and point the proxy at the one public port',
  )
}

class SlotPorts {
  constructor(group, options) {
    this.group = group
    this.options = options
    this.slots = group.addresses()
  }

  /** What a worker forked into `slot` gets in its stdio (the socket stays the primary's too). */
  workerEnd(slot) {
    return { fd: this.group.fd(slot), variable: SLOT_PORT_FD, afterFork: () => {} }
  }

  /**
   * Shutdown, or a takeover's hand-over: the primary's copies close first, so
   * each socket closes with its worker's, which takes what is queued on it
   * before (lib/worker.js): nothing queued is reset.
   */
  close() {
    this.group.close()
  }

  /** Where each slot listens: `[{ slot, address, family, port }]`. */
  addresses() {
    return this.slots.map((address, slot) => ({ slot, ...address }))
  }

  /** The upstream block for `proxy` over these slots (see `proxyConfig`). */
  proxyConfig(proxy, settings = {}) {
    return proxyConfig(proxy, { ...settings, routing: this.options.routing, slots: this.slots })
  }
}

/** `host:port` as proxies write a server's address. */
function hostPort({ address, family, port }) {
  return family === 'IPv6' ? `[${address}]:${port}` : `${address}:${port}`
}

/** `x-forwarded-for` -> `$http_x_forwarded_for`, nginx's variable for a request header. */
const nginxHeaderVariable = (header) => `$http_${header.toLowerCase().replace(/-/g, '_')}`

/**
 * The proxy's upstream block over the slot ports: `proxy` is `'haproxy'` (a
 * backend section) or `'nginx'` (upstream blocks, and for 'sid' the map that
 * picks one). `settings.name` names it; `settings.key` (header routing) is
 * what the proxy hashes: `'address'` (the default: the client's address as
 * the proxy knows it, HAProxy `balance source`, nginx `$remote_addr`) or a
 * header name (`'x-forwarded-for'`: HAProxy `balance hdr(...)`, nginx
 * `$http_x_forwarded_for`), for a proxy that is itself behind another.
 */
function proxyConfig(proxy, { routing, slots, name = DEFAULT_UPSTREAM_NAME, key = 'address' }) {
  if (proxy !== 'haproxy' && proxy !== 'nginx') {
    throw stickyError(codes.INVALID_OPTION, `proxyConfig(proxy): proxy must be 'haproxy' or 'nginx', got ${JSON.stringify(proxy)}`)
  }
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(name)) {
    throw stickyError(codes.INVALID_OPTION, `proxyConfig(proxy, { name }): name must be letters, digits, '_', '.' or '-', got ${JSON.stringify(name)}`)
  }
  if (typeof key !== 'string' || (key !== 'address' && !/^[A-Za-z0-9-]+$/.test(key))) {
    throw stickyError(codes.INVALID_OPTION, `proxyConfig(proxy, { key }): key must be 'address' or a header name such as 'x-forwarded-for', got ${JSON.stringify(key)}`)
  }
  const servers = slots.map((address, slot) => ({ slot, server: `slot${slot}`, at: hostPort(address) }))
  const head = `sticky-session-rs: ${slots.length} slot ports, routing '${routing}'`
  if (proxy === 'haproxy') {
    const lines = [`# ${head}. Point a frontend (mode http) at it: default_backend ${name}`]
    lines.push(`backend ${name}`, '  mode http', '  option forwardfor', '  timeout tunnel 1h')
    if (routing === 'sid') {
      lines.push(
        '  # New sessions (no sid) go to any slot; every later request of a session',
        `  # to the slot its sid names (the sid ends in ${SID_TAG_SEPARATOR}<slot>).`,
        '  balance roundrobin',
        ...servers.map(({ slot, server }) => `  use-server ${server} if { urlp(sid) -m end ${SID_TAG_SEPARATOR}${slot} }`),
      )
    } else {
      lines.push(key === 'address' ? '  balance source' : `  balance hdr(${key})`, '  hash-type consistent')
    }
    lines.push(...servers.map(({ server, at }) => `  server ${server} ${at}`))
    return lines.join('\n') + '\n'
  }
  const lines = [`# ${head}. In the location: proxy_pass http://${routing === 'sid' ? `$${name}_upstream` : name}; proxy_http_version 1.1;`]
  lines.push('# proxy_set_header Connection "" (or $connection_upgrade for websockets), to keep upstream connections alive.')
  const upstream = (upstreamName, entries, balance) => [
    `upstream ${upstreamName} {`,
    ...(balance ? [`  ${balance}`] : []),
    ...entries.map(({ at }) => `  server ${at};`),
    '  keepalive 32;',
    '}',
  ]
  if (routing === 'sid') {
    lines.push(
      `# New sessions (no sid) go to ${name} (any slot); every later request of a session`,
      `# to the slot its sid names (the sid ends in ${SID_TAG_SEPARATOR}<slot>).`,
      `map $arg_sid $${name}_upstream {`,
      `  default ${name};`,
      ...servers.map(({ slot }) => `  "~${SID_TAG_SEPARATOR}${slot}$" ${name}_slot${slot};`),
      '}',
      ...upstream(name, servers, null),
      ...servers.flatMap((entry) => upstream(`${name}_slot${entry.slot}`, [entry], null)),
    )
  } else {
    lines.push(...upstream(name, servers, `hash ${key === 'address' ? '$remote_addr' : nginxHeaderVariable(key)} consistent;`))
  }
  return lines.join('\n') + '\n'
}

// ---- a worker ----------------------------------------------------------------

/**
 * This worker's slot port, taken from its environment at once (like its
 * channel): null when the primary gave it none.
 */
function claimSlotPort() {
  if (process.env[SLOT_PORT_FD] === undefined) return null
  const fd = Number(process.env[SLOT_PORT_FD])
  delete process.env[SLOT_PORT_FD]
  return { fd, hold: claimListeningFd(fd) }
}

/**
 * Accepts on the slot port `fd` and hands each connection to `adoptSocket`.
 * Returns `stop()`, which closes this process's copy of the socket (the
 * primary holds its own). Node: a TCP handle opened on the fd, as Node's own
 * server accepts; Bun, which has no `tcp_wrap`: a `net.Server` opened on the fd.
 */
function acceptOnSlotPort(fd, { allowHalfOpen, paused, backlog }, adoptSocket, onError) {
  if (isBun) {
    const acceptor = net.createServer({ allowHalfOpen, pauseOnConnect: paused }, adoptSocket)
    acceptor.on('error', onError)
    acceptor.listen({ fd, exclusive: true, backlog: backlog ?? undefined })
    return () => acceptor.close()
  }
  const { binding, error: unavailable } = tcpWrap()
  if (unavailable) {
    throw stickyError(codes.NO_LISTENING_SOCKET, `slot ports need process.binding('tcp_wrap') in each worker, and it failed (${unavailable.code || unavailable.message}); leave slotPorts off`)
  }
  const handle = new binding.TCP(binding.constants.SERVER)
  const opened = handle.open(fd)
  if (opened) throw stickyError(codes.NO_LISTENING_SOCKET, `cannot accept on this worker's slot port (fd ${fd}): libuv error ${opened}`)
  handle.onconnection = (status, clientHandle) => {
    if (status < 0 || !clientHandle) return
    adoptSocket(new net.Socket({ handle: clientHandle, allowHalfOpen, pauseOnCreate: paused, readable: true, writable: true }))
  }
  // listen() again on a listening socket sets its queue limit anew: keep the
  // one the primary gave it (`backlog`, as the kernel reports it); Node's
  // 511 where the kernel does not say.
  const listened = handle.listen(backlog ?? 511)
  if (listened) {
    handle.close()
    throw stickyError(codes.NO_LISTENING_SOCKET, `cannot accept on this worker's slot port (fd ${fd}): libuv error ${listened}`)
  }
  let stopped = false
  return () => {
    if (stopped) return
    stopped = true
    handle.close()
  }
}

// ---- sid tags ----------------------------------------------------------------

/** `sid` with `slot` appended. */
const tagSid = (sid, slot) => `${sid}${SID_TAG_SEPARATOR}${slot}`

/**
 * `url` with this slot's tag taken off its `sid` parameter, or `url` itself
 * when its sid carries no tag of this slot (a sid made without slot ports, or
 * a request the proxy sent to the wrong slot: engine.io then answers
 * "Session ID unknown", as it would without tags).
 */
function untagUrl(url, slot) {
  // Every request of a session comes through here: string search, no regular
  // expression and no copy of the query, unless there is a tag to take off.
  const query = url.indexOf('?')
  if (query < 0 || !url.includes(SID_TAG_SEPARATOR, query)) return url
  // The parameter named exactly `sid`: first in the query or after '&'.
  let at = url.indexOf('sid=', query)
  while (at >= 0 && at !== query + 1 && url.charCodeAt(at - 1) !== 38 /* & */) at = url.indexOf('sid=', at + 4)
  if (at < 0) return url
  let end = at + 4
  while (end < url.length && url.charCodeAt(end) !== 38 /* & */ && url.charCodeAt(end) !== 35 /* # */) end++
  const tag = `${SID_TAG_SEPARATOR}${slot}`
  if (end - (at + 4) < tag.length || !url.startsWith(tag, end - tag.length)) return url
  return url.slice(0, end - tag.length) + url.slice(end)
}

/**
 * A handshake response body (`0{"sid":"..."...}`, EIO 4; `97:0{...}`, EIO 3
 * with its length prefix) with `sid` replaced by `tagged`. Returns the body
 * unchanged when it is not one.
 */
function tagHandshakeBody(body, sid, tagged) {
  const text = Buffer.isBuffer(body) ? body.toString('latin1') : String(body)
  const needle = `"sid":"${sid}"`
  const at = text.indexOf(needle)
  if (at < 0) return body
  let out = text.slice(0, at) + `"sid":"${tagged}"` + text.slice(at + needle.length)
  const prefix = /^(\d+):/.exec(out)
  if (prefix) out = `${Number(prefix[1]) + (tagged.length - sid.length)}${out.slice(prefix[1].length)}`
  return Buffer.isBuffer(body) ? Buffer.from(out, 'latin1') : out
}

module.exports = {
  SLOT_PORT_FD,
  openSlotPorts,
  slotPortsUnsupported,
  proxyConfig,
  claimSlotPort,
  acceptOnSlotPort,
  tagSid,
  untagUrl,
  tagHandshakeBody,
}

'use strict'
// Slot ports (`slotPorts`): each slot's own listening socket, held by the
// primary, for a proxy that routes every request itself. The sid tags, the
// proxy blocks (checked by the real haproxy and nginx where installed), the
// options, and the lifecycle: a reload or a dead worker never leaves a slot's
// port unserved.

const { spawnSync } = require('child_process')
const fs = require('fs')
const http = require('http')
const os = require('os')
const path = require('path')
const net = require('net')
const { startApp, stopAll, requireProgram, waitUntil, freePort, kernelQueueLimit } = require('./helpers')
const { resolveOptions } = require('../lib/native')
const { proxyConfig, tagSid, untagUrl, tagHandshakeBody } = require('../lib/slot-ports')
const { haproxyConfig, nginxConfig } = require('../bench/proxied/proxies')

jest.setTimeout(60000)
afterAll(() => stopAll())

describe('sid tags', () => {
  test('a sid leaves with its slot appended and comes back without it, wherever sid is in the query', () => {
    expect(tagSid('AbC-_9', 2)).toBe('AbC-_9~2')
    expect(untagUrl('/socket.io/?EIO=4&transport=polling&sid=AbC-_9~2', '2')).toBe('/socket.io/?EIO=4&transport=polling&sid=AbC-_9')
    expect(untagUrl('/socket.io/?sid=AbC~12&EIO=4', '12')).toBe('/socket.io/?sid=AbC&EIO=4')
    // Another slot's tag, no tag, a parameter that only ends in "sid", no query: unchanged.
    expect(untagUrl('/socket.io/?EIO=4&sid=AbC~1', '2')).toBe('/socket.io/?EIO=4&sid=AbC~1')
    expect(untagUrl('/socket.io/?EIO=4&sid=AbC~12', '2')).toBe('/socket.io/?EIO=4&sid=AbC~12')
    expect(untagUrl('/socket.io/?EIO=4&sid=AbC', '2')).toBe('/socket.io/?EIO=4&sid=AbC')
    expect(untagUrl('/x?notsid=AbC~2', '2')).toBe('/x?notsid=AbC~2')
    expect(untagUrl('/x', '2')).toBe('/x')
    // The sid parameter itself, after one that only ends in "sid", and its value ends at '&' or '#'.
    expect(untagUrl('/?a=b~2&xsid=c~2&sid=q~2&t=1', '2')).toBe('/?a=b~2&xsid=c~2&sid=q&t=1')
    expect(untagUrl('/?sid=q~2#f', '2')).toBe('/?sid=q#f')
    expect(untagUrl('/?sid=~', '2')).toBe('/?sid=~')
    // A user's sid that happens to end in a tag keeps it: only the last one is ours.
    expect(untagUrl(`/?sid=${tagSid('mine~2', 2)}`, '2')).toBe('/?sid=mine~2')
  })

  test('a handshake body gets the tagged sid; an EIO 3 length prefix grows with it; anything else is left alone', () => {
    const eio4 = '0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000}'
    expect(tagHandshakeBody(eio4, 'abc', 'abc~1')).toBe('0{"sid":"abc~1","upgrades":["websocket"],"pingInterval":25000}')
    const packet = '0{"sid":"abc","upgrades":[]}'
    const eio3 = `${packet.length}:${packet}2:40`
    const tagged = tagHandshakeBody(Buffer.from(eio3), 'abc', 'abc~10')
    expect(Buffer.isBuffer(tagged)).toBe(true)
    const text = tagged.toString()
    expect(text).toBe(`${packet.length + 3}:0{"sid":"abc~10","upgrades":[]}2:40`)
    expect(Number(text.split(':')[0])).toBe('0{"sid":"abc~10","upgrades":[]}'.length)
    expect(tagHandshakeBody('ok', 'abc', 'abc~1')).toBe('ok')
  })
})

describe('proxyConfig', () => {
  const slots = [
    { address: '127.0.0.1', family: 'IPv4', port: 3100 },
    { address: '::1', family: 'IPv6', port: 3101 },
  ]
  const haproxy = requireProgram('haproxy', 'Debian/Ubuntu: apt-get install haproxy')
  const nginx = requireProgram('nginx', 'Debian/Ubuntu: apt-get install nginx')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-proxy-config-'))
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  test("'header': a consistent hash of the client address by default, or of a header", () => {
    const text = proxyConfig('haproxy', { routing: 'header', slots })
    expect(text).toContain('backend sticky_session_rs\n')
    expect(text).toContain('  balance source\n  hash-type consistent\n')
    expect(text).toContain('  server slot0 127.0.0.1:3100\n  server slot1 [::1]:3101\n')
    expect(proxyConfig('haproxy', { routing: 'header', slots, key: 'X-Forwarded-For' })).toContain('  balance hdr(X-Forwarded-For)\n')
    expect(proxyConfig('nginx', { routing: 'header', slots })).toContain('  hash $remote_addr consistent;\n  server 127.0.0.1:3100;\n  server [::1]:3101;\n  keepalive 32;\n')
    expect(proxyConfig('nginx', { routing: 'header', slots, key: 'x-forwarded-for' })).toContain('hash $http_x_forwarded_for consistent;')
  })

  test("'sid': new sessions to any slot, every later request to the slot its sid names", () => {
    const text = proxyConfig('haproxy', { routing: 'sid', slots, name: 'app' })
    expect(text).toContain('  balance roundrobin\n  use-server slot0 if { urlp(sid) -m end ~0 }\n  use-server slot1 if { urlp(sid) -m end ~1 }\n')
    const nginxText = proxyConfig('nginx', { routing: 'sid', slots, name: 'app' })
    expect(nginxText).toContain('map $arg_sid $app_upstream {\n  default app;\n  "~~0$" app_slot0;\n  "~~1$" app_slot1;\n}\n')
    expect(nginxText).toContain('upstream app_slot1 {\n  server [::1]:3101;\n  keepalive 32;\n}\n')
  })

  test('a proxy, name or key it cannot write is refused with ERR_STICKY_INVALID_OPTION', () => {
    for (const [proxy, settings] of [['envoy', {}], ['haproxy', { name: 'two words' }], ['nginx', { key: 'x forwarded' }], ['nginx', { key: 3 }]]) {
      expect(() => proxyConfig(proxy, { routing: 'header', slots, ...settings })).toThrow(expect.objectContaining({ code: 'ERR_STICKY_INVALID_OPTION' }))
    }
  })

  const testHaproxy = haproxy ? test : test.skip
  testHaproxy.each(['header', 'sid'])("haproxy -c accepts the '%s' backend", (routing) => {
    const file = path.join(dir, `${routing}.cfg`)
    fs.writeFileSync(file, haproxyConfig({ port: 18999, backend: proxyConfig('haproxy', { routing, slots, name: 'be' }) }))
    const check = spawnSync(haproxy, ['-c', '-f', file], { encoding: 'utf8' })
    expect({ status: check.status, output: check.stdout + check.stderr }).toEqual({ status: 0, output: expect.stringContaining('valid') })
  })

  const testNginx = nginx ? test : test.skip
  testNginx.each(['header', 'sid'])("nginx -t accepts the '%s' upstream block", (routing) => {
    const file = path.join(dir, `nginx-${routing}.conf`)
    const http = proxyConfig('nginx', { routing, slots, name: 'app' })
    fs.writeFileSync(file, nginxConfig({ port: 18998, dir, http, passTo: routing === 'sid' ? '$app_upstream' : 'app' }))
    const check = spawnSync(nginx, ['-t', '-p', dir, '-c', file], { encoding: 'utf8' })
    expect({ status: check.status, output: check.stderr }).toEqual({ status: 0, output: expect.stringContaining('test is successful') })
  })
})

describe('options', () => {
  test("slotPorts works with 'header' and 'sid' routing, and its ports must fit", () => {
    expect(resolveOptions({ routing: 'header', slotPorts: true }, 2)).toEqual(expect.objectContaining({ slotPorts: true, firstSlotPort: 0, slotHost: '127.0.0.1' }))
    expect(resolveOptions({ routing: 'sid', slotPorts: 3100, slotHost: '::1' }, 2)).toEqual(expect.objectContaining({ slotPorts: true, firstSlotPort: 3100, slotHost: '::1' }))
    expect(resolveOptions({ routing: 'sid', slotPorts: false }, 2)).toEqual(expect.objectContaining({ slotPorts: false }))
    for (const options of [{ slotPorts: true }, { routing: 'proxy-protocol', slotPorts: true }, { routing: 'header', slotPorts: 0 }, { routing: 'header', slotPorts: 65535, workers: 2 }, { routing: 'header', slotPorts: '3100' }, { routing: 'header', slotPorts: true, slotHost: 'localhost' }]) {
      expect(() => resolveOptions(options, 2)).toThrow(expect.objectContaining({ code: 'ERR_STICKY_INVALID_OPTION' }))
    }
  })
})

/**
 * Requests to `port`, one per new connection, in two loops until `stop()`
 * (or a safety stop of 60 s); every outcome recorded with when it started.
 * `completed(count, since)` resolves once `count` requests started after
 * `since` have ended: specs wait for counts, not time, to hold on a slow machine.
 */
function loadOn(port) {
  const results = []
  let running = true
  const deadline = Date.now() + 60000
  const loop = async () => {
    while (running && Date.now() < deadline) {
      const started = Date.now()
      results.push(
        await new Promise((resolve) => {
          const req = http.get({ host: '127.0.0.1', port, path: '/whoami', agent: false, timeout: 10000 }, (res) => {
            let body = ''
            res.on('data', (chunk) => (body += chunk))
            res.on('end', () => resolve({ started, ok: res.statusCode === 200, pid: res.statusCode === 200 ? JSON.parse(body).pid : null }))
          })
          req.on('timeout', () => req.destroy(new Error('timeout')))
          req.on('error', (error) => resolve({ started, ok: false, error: error.code || error.message }))
        }),
      )
    }
  }
  const loops = [loop(), loop()]
  return {
    results,
    completed: (count, since = -Infinity) =>
      waitUntil(() => results.filter((r) => r.started > since).length >= count, { timeout: 60000, what: `${count} requests to port ${port}` }),
    stop: async () => {
      running = false
      await Promise.all(loops)
      return results
    },
  }
}

/** The first of `count` consecutive ports nothing listens on right now. */
async function consecutiveFreePorts(count) {
  const free = (port) =>
    new Promise((resolve) => {
      const probe = net.createServer()
      probe.once('error', () => resolve(false))
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)))
    })
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = await freePort()
    if (first + count - 1 > 65535) continue
    let all = true
    for (let port = first + 1; port < first + count && all; port++) all = await free(port)
    if (all) return first
  }
  throw new Error(`no ${count} consecutive free ports found`)
}

async function slotAddressesOf(app) {
  app.child.stdin.write(`proxy-config ${JSON.stringify({ proxy: 'haproxy' })}\n`)
  return (await app.waitFor('proxy-config')).slots
}

describe('lifecycle: the primary holds each slot port', () => {
  test('a rolling reload under load on every slot port: no request fails, and each port is served by its new worker after', async () => {
    const app = await startApp({ options: { workers: 2, routing: 'header', slotPorts: true, host: '127.0.0.1', shutdownTimeout: 3000 } })
    try {
      const slots = await slotAddressesOf(app)
      const before = app.workerPids()
      const loads = slots.map(({ port }) => loadOn(port))
      let results
      try {
        for (const load of loads) await load.completed(10)
        app.child.stdin.write('reload\n')
        const reloaded = await app.waitFor('reloaded', () => true, 60000)
        expect(reloaded.error).toBeNull()
        const reloadedAt = Date.now()
        for (const load of loads) await load.completed(10, reloadedAt)
      } finally {
        results = (await Promise.all(loads.map((load) => load.stop()))).flat()
      }
      expect(results.filter((r) => !r.ok)).toEqual([])
      const after = app.workerPids()
      for (const pid of before) expect(after).not.toContain(pid)
      for (const load of loads) expect(after).toContain(load.results[load.results.length - 1].pid)
    } finally {
      await app.stop()
    }
  }, 180000)

  test('a takeover (takeover: true) under load on every slot port: no request fails, and the new primary\'s workers serve the ports after', async () => {
    const port = await freePort()
    const firstSlotPort = await consecutiveFreePorts(2)
    const config = { port, options: { workers: 2, routing: 'header', slotPorts: firstSlotPort, host: '127.0.0.1', takeover: true, shutdownTimeout: 3000 } }
    const old = await startApp(config)
    const slots = await slotAddressesOf(old)
    expect(slots.map((slot) => slot.port)).toEqual([firstSlotPort, firstSlotPort + 1])
    const loads = slots.map((slot) => loadOn(slot.port))
    let results, fresh
    try {
      for (const load of loads) await load.completed(10)
      fresh = await startApp(config)
      await waitUntil(() => old.exited, { timeout: 60000, what: 'the old primary to hand over and exit' })
      const handedOverAt = Date.now()
      for (const load of loads) await load.completed(10, handedOverAt)
    } finally {
      results = (await Promise.all(loads.map((load) => load.stop()))).flat()
    }
    expect(old.exited.code).toBe(0)
    expect(results.filter((r) => !r.ok)).toEqual([])
    for (const load of loads) expect(fresh.workerPids()).toContain(load.results[load.results.length - 1].pid)
    await fresh.stop()
  }, 180000)

  test("each slot port keeps its backlog once its worker listens on it too (listen() again would set Node's 511)", async () => {
    const ss = requireProgram('ss', 'Debian/Ubuntu: apt-get install iproute2')
    if (!ss) return
    const backlog = 1000
    const app = await startApp({ options: { workers: 2, routing: 'header', slotPorts: true, host: '127.0.0.1', backlog } })
    try {
      for (const { port } of await slotAddressesOf(app)) {
        // Served: the slot's worker has called listen() on the port.
        const served = await loadOn(port).stop()
        expect(served.length).toBeGreaterThan(0)
        expect(served.every((r) => r.ok)).toBe(true)
        // A listening socket's Send-Q in ss is its queue limit.
        const listed = spawnSync(ss, ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).stdout.trim().split(/\s+/)
        expect(Number(listed[2])).toBe(kernelQueueLimit(backlog))
      }
    } finally {
      await app.stop()
    }
  })

  test('a worker killed: its slot port is never refused, and what arrives meanwhile is served by the worker respawned into the slot', async () => {
    const app = await startApp({ options: { workers: 2, routing: 'sid', slotPorts: true, host: '127.0.0.1' } })
    try {
      const slots = await slotAddressesOf(app)
      const first = await new Promise((resolve, reject) =>
        http.get({ host: '127.0.0.1', port: slots[0].port, path: '/whoami', agent: false }, (res) => {
          let body = ''
          res.on('data', (chunk) => (body += chunk))
          res.on('end', () => resolve(JSON.parse(body)))
        }).on('error', reject),
      )
      process.kill(first.pid, 'SIGKILL')
      // Sent while the slot has no worker: they wait in the port's queue.
      const load = loadOn(slots[0].port)
      await waitUntil(() => app.workerPids().length === 2 && !app.workerPids().includes(first.pid), { what: 'the respawned worker' })
      await waitUntil(() => load.results.filter((r) => r.ok).length >= 5, { what: 'requests served after the respawn' })
      const results = await load.stop()
      expect(results.filter((r) => !r.ok)).toEqual([])
      const servedBy = [...new Set(results.map((r) => r.pid))]
      expect(servedBy).toHaveLength(1)
      expect(servedBy[0]).not.toBe(first.pid)
      expect(app.workerPids()).toContain(servedBy[0])
    } finally {
      await app.stop()
    }
  })
})

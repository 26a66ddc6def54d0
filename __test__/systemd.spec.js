'use strict'
// systemd socket activation: the primary is started the way systemd starts a
// service (listening sockets from fd 3, LISTEN_FDS, LISTEN_PID = its own pid,
// LISTEN_FDNAMES) and uses the passed socket instead of binding one.

const fs = require('fs')
const net = require('net')
const path = require('path')
const { spawn } = require('child_process')
const { startApp, stopAll, request, clientIp, waitUntil, childrenKilledAfterAll } = require('./helpers')

afterAll(stopAll)
const spawned = childrenKilledAfterAll()

/** A listening TCP socket on loopback, and the kernel's name for it (`socket:[inode]`). */
async function listeningSocket() {
  const server = net.createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const fd = server._handle.fd
  return { server, fd, port: server.address().port, inode: fs.readlinkSync(`/proc/self/fd/${fd}`) }
}

/**
 * Starts the fixture app as systemd would: `sockets` at fds 3, 4, ...,
 * LISTEN_FDS and LISTEN_FDNAMES in the environment, and LISTEN_PID set by a
 * shell that then execs node, so it is the app's own pid (`listenPid` overrides it).
 */
async function startActivated(config, sockets, { listenPid = '$$', names, ...startOptions } = {}) {
  const env = { LISTEN_FDS: String(sockets.length) }
  if (names) env.LISTEN_FDNAMES = names.join(':')
  try {
    return await startApp(config, {
      env,
      extraStdio: sockets.map((socket) => socket.fd),
      launcher: (node, args) => ['sh', ['-c', `LISTEN_PID=${listenPid} exec "$@"`, 'sh', node, ...args]],
      ...startOptions,
    })
  } finally {
    // The app holds its copies now: this process lets go of the sockets.
    for (const socket of sockets) socket.server.close()
  }
}

/** The kernel's names of the primary's open descriptors. */
function descriptorsOf(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`)
    } catch {
      return null
    }
  })
}

describe('systemd socket activation', () => {
  test('listen(server, port) serves on the socket systemd passed, and the workers do not inherit the variables', async () => {
    const socket = await listeningSocket()
    const app = await startActivated({ port: socket.port, options: { workers: 2 } }, [socket], { names: ['web'] })
    expect(app.port).toBe(socket.port)
    // The very socket passed, not a new one bound on the same port.
    expect(descriptorsOf(app.pid)).toContain(socket.inode)
    const pids = new Map()
    for (let i = 0; i < 10; i++) {
      const first = (await request(app.port, { localAddress: clientIp(i) })).json
      const second = (await request(app.port, { localAddress: clientIp(i) })).json
      expect(second.pid).toBe(first.pid)
      expect(first.systemdVariables).toEqual([])
      pids.set(first.pid, true)
    }
    expect(pids.size).toBe(2)
    expect(app.find('error')).toEqual([])
  })

  test('port 0 takes the first listening socket passed', async () => {
    const socket = await listeningSocket()
    const app = await startActivated({ port: 0, options: { workers: 1 } }, [socket])
    expect(app.port).toBe(socket.port)
    expect((await request(app.port)).status).toBe(200)
  })

  test('of three sockets passed, the one on the port asked for is used', async () => {
    const sockets = [await listeningSocket(), await listeningSocket(), await listeningSocket()]
    const wanted = sockets[1]
    const app = await startActivated({ port: wanted.port, options: { workers: 1 } }, sockets, { names: ['admin', 'web', 'metrics'] })
    expect(app.port).toBe(wanted.port)
    expect((await request(wanted.port)).status).toBe(200)
    // The others are left alone: nobody accepts on them.
    const unused = net.connect({ host: '127.0.0.1', port: sockets[2].port })
    await new Promise((resolve) => unused.once('connect', resolve))
    const answered = await new Promise((resolve) => {
      unused.once('data', () => resolve(true))
      setTimeout(() => resolve(false), 300)
      unused.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    })
    unused.destroy()
    expect(answered).toBe(false)
  })

  test('variables meant for another process (LISTEN_PID is not ours) are ignored: the primary binds as usual', async () => {
    const socket = await listeningSocket()
    const app = await startActivated({ port: 0, options: { workers: 1 } }, [socket], { listenPid: '1' })
    expect(app.port).not.toBe(socket.port)
    expect((await request(app.port)).status).toBe(200)
  })

  test('no passed socket on the port asked for: an error event with ERR_STICKY_SYSTEMD_NO_SOCKET that names what was passed', async () => {
    const socket = await listeningSocket()
    const wrongPort = socket.port === 65535 ? socket.port - 1 : socket.port + 1
    const app = await startActivated({ port: wrongPort, options: { workers: 1 } }, [socket], { waitForListening: false, names: ['web'] })
    const error = await app.waitFor('error')
    expect(error.code).toBe('ERR_STICKY_SYSTEMD_NO_SOCKET')
    expect(error.message).toContain(`fd 3 (web): TCP port ${socket.port}`)
    expect(error.message).toContain(`ListenStream=${wrongPort}`)
    expect(app.find('online')).toEqual([])
  })

  test('kernel: true under socket activation warns and uses the accept loop on the passed socket', async () => {
    const socket = await listeningSocket()
    const app = await startActivated({ port: socket.port, options: { workers: 2, kernel: true } }, [socket])
    const warning = await app.waitFor('warning', (w) => w.code === 'ERR_STICKY_KERNEL_UNSUPPORTED')
    expect(warning.message).toMatch(/systemd passed one: using the accept loop/)
    expect((await request(app.port)).status).toBe(200)
    const stats = await app.stats()
    expect(stats.kernel).toBeUndefined()
    expect(stats.accepted).toBeGreaterThanOrEqual(1)
  })

  test('examples/systemd/app.js serves on the passed socket, and SIGTERM (systemctl stop) drains and exits 0', async () => {
    const socket = await listeningSocket()
    const child = spawn('sh', ['-c', 'LISTEN_PID=$$ exec "$@"', 'sh', process.execPath, path.join(__dirname, '..', 'examples', 'systemd', 'app.js')], {
      env: { ...process.env, LISTEN_FDS: '1', LISTEN_FDNAMES: 'web', PORT: String(socket.port), WORKERS: '2' },
      stdio: ['ignore', 'pipe', 'pipe', socket.fd],
      detached: true,
    })
    spawned.add(child)
    socket.server.close()
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
    await waitUntil(() => output.includes(`listening on ${socket.port}`), { what: `the example to listen (output: ${output})` })
    const replies = new Set()
    for (let i = 0; i < 6; i++) replies.add((await request(socket.port, { localAddress: clientIp(i) })).text)
    expect([...replies].every((reply) => /^hello from slot [01] \(pid \d+\)\n$/.test(reply))).toBe(true)
    process.kill(child.pid, 'SIGTERM')
    expect(await exited).toEqual({ code: 0, signal: null })
  })
})

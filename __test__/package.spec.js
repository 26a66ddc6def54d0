'use strict'
// The packages as published. The main package carries the JavaScript only;
// each binary ships in its platform package under npm/, which the main
// package names in optionalDependencies when it is published
// (`npm run publish:registry`; installing by name is tested in registry.spec.js).

const { execFile } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { platformOfTarget } = require('../lib/platform')

const ROOT = path.join(__dirname, '..')
const PKG = require('../package.json')
const NAPI = path.join(ROOT, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')

function run(command, args, { cwd = ROOT, timeout = 120000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, timeout, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stderr}`))
      resolve({ stdout, stderr })
    })
  })
}

test('the main tarball holds the JavaScript API, the types and the loader; no binary, sources, build output or tests', async () => {
  // --ignore-scripts: `prepare` would rebuild the addon, which the tarball does not carry.
  const { stdout } = await run('npm', ['pack', '--dry-run', '--ignore-scripts', '--json'])
  const files = JSON.parse(stdout)[0].files.map((file) => file.path)
  for (const file of ['package.json', 'index.js', 'index.d.ts', 'binding.js', 'binding.d.ts', 'README.md', 'lib/native.js', 'lib/platform.js']) {
    expect(files).toContain(file)
  }
  for (const file of files.filter((file) => file.startsWith('lib/'))) expect(file).toMatch(/\.js$/)
  expect(files.filter((file) => file.endsWith('.node'))).toEqual([])
  for (const dir of ['src/', 'target/', '__test__/', 'node_modules/', 'bench/', 'fuzz/', 'npm/', 'scripts/', 'examples/']) {
    expect(files.filter((file) => file.startsWith(dir))).toEqual([])
  }
  expect(files.filter((file) => /(^|\/)Cargo\.(toml|lock)$|\.rs$/.test(file))).toEqual([])
})

test('npm/ holds one platform package per napi target, as `napi create-npm-dirs` makes them from package.json', async () => {
  const platforms = PKG.napi.targets.map(platformOfTarget)
  expect(fs.readdirSync(path.join(ROOT, 'npm')).sort()).toEqual([...platforms].sort())
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-npm-dirs-'))
  try {
    fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(scratch, 'package.json'))
    await run(process.execPath, [NAPI, 'create-npm-dirs', '--cwd', scratch])
    for (const platform of platforms) {
      const committed = JSON.parse(fs.readFileSync(path.join(ROOT, 'npm', platform, 'package.json'), 'utf8'))
      expect(committed).toEqual(JSON.parse(fs.readFileSync(path.join(scratch, 'npm', platform, 'package.json'), 'utf8')))
      // What npm uses to pick the package, and what the loader requires.
      expect(committed).toEqual(expect.objectContaining({ name: `${PKG.name}-${platform}`, version: PKG.version, main: `${PKG.napi.binaryName}.${platform}.node` }))
      expect(committed.os).toEqual([platform.split('-')[0]])
      expect(committed.cpu).toEqual([platform.split('-')[1]])
      expect(committed.libc).toEqual([{ gnu: 'glibc', musl: 'musl' }[platform.split('-')[2]]])
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true })
  }
})

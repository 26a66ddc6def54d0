#!/usr/bin/env node
'use strict'
// Builds the addon for every target this machine can build and publishes the
// packages to a registry, with napi-rs's own steps:
//
//   1. build      `napi build --platform --release [--target T] [--cross-compile]`
//                 for each target in package.json "napi.targets" that a
//                 toolchain here can build (scripts/toolchains.js); the others
//                 are reported with the reason and skipped;
//   2. artifacts  `napi artifacts` puts each binary into its npm/<platform>/ package;
//   3. pre-publish `napi pre-publish -t npm` publishes every platform package
//                 and writes them, at the main package's version, into the
//                 main package's optionalDependencies;
//   4. publish    `npm publish` of the main package (it carries no .node file).
//
// Steps 2-4 run in a staging copy of the package, so the checkout is never
// changed. Credentials are npm's own: an auth token for the registry in an
// .npmrc (NPM_CONFIG_USERCONFIG names another one); this script never reads one.
//
//   npm run publish:registry -- --registry <url>             all four steps
//   npm run publish:registry -- --build-only [--target T]    step 1 into --artifacts-dir
//   npm run publish:registry -- --registry <url> --skip-build --all-targets
//                                                            steps 2-4 from --artifacts-dir
// The release workflow (.github/workflows/release.yml) runs the last two.

const { spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { parseTriple } = require('@napi-rs/cli')
const { planBuild, rustToolchains } = require('./toolchains')
const { platformOfTarget } = require('../lib/platform')

const ROOT = path.join(__dirname, '..')
const NAPI = path.join(ROOT, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')

function usage(message) {
  if (message) console.error(`publish: ${message}`)
  console.error(
    'usage: npm run publish:registry -- --registry <url> [--target <triple>]... [--artifacts-dir <dir>]\n' +
      '                                 [--build-only | --skip-build] [--all-targets]',
  )
  process.exit(2)
}

function parseArgs(argv) {
  const options = { targets: [], artifactsDir: path.join(ROOT, 'target', 'publish-artifacts'), buildOnly: false, skipBuild: false, allTargets: false }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const value = () => argv[++i] ?? usage(`${arg} needs a value`)
    if (arg === '--registry') options.registry = value()
    else if (arg === '--target') options.targets.push(value())
    else if (arg === '--artifacts-dir') options.artifactsDir = path.resolve(value())
    else if (arg === '--build-only') options.buildOnly = true
    else if (arg === '--skip-build') options.skipBuild = true
    else if (arg === '--all-targets') options.allTargets = true
    else if (arg === '--help' || arg === '-h') usage()
    else usage(`unknown argument ${arg}`)
  }
  if (options.buildOnly && options.skipBuild) usage('--build-only and --skip-build exclude each other')
  if (!options.buildOnly && !options.registry) usage('--registry <url> is required (the registry to publish to)')
  if (options.registry) {
    try {
      new URL(options.registry)
    } catch {
      usage(`--registry ${options.registry} is not a URL`)
    }
  }
  return options
}

function step(title) {
  console.log(`\n== ${title}`)
}

/** Runs a command with inherited output; throws with the command line when it fails. */
function run(command, args, { cwd = ROOT, env = {}, capture = false } = {}) {
  const result = spawnSync(command, args, { cwd, env: { ...process.env, ...env }, stdio: capture ? ['ignore', 'pipe', 'inherit'] : 'inherit', encoding: 'utf8' })
  if (result.error) throw result.error
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal} (in ${cwd})`)
  return result.stdout
}

const napi = (args, options) => run(process.execPath, [NAPI, ...args], options)

const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'))
const writeJson = (file, value) => fs.writeFileSync(file, JSON.stringify(value, null, 2) + '\n')

/** `sticky-session-rs.linux-x64-gnu.node` -> `linux-x64-gnu` */
const platformOf = (binaryName, file) => file.slice(binaryName.length + 1, -'.node'.length)

function artifactFiles(dir, binaryName) {
  if (!fs.existsSync(dir)) return []
  const found = []
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.startsWith(`${binaryName}.`) && entry.name.endsWith('.node')) found.push(path.join(entry.parentPath ?? entry.path, entry.name))
  }
  return found
}

/** Step 1: builds each target that can be built here into `artifactsDir`; returns [{target, skip?}]. */
function build(targets, { artifactsDir, binaryName }) {
  const toolchains = rustToolchains()
  const results = []
  for (const target of targets) {
    const plan = planBuild(target, toolchains)
    if (plan.skip) {
      console.log(`skip ${target}: ${plan.skip}`)
      results.push(plan)
      continue
    }
    step(`build ${target}: ${plan.toolchain.name} ${plan.toolchain.version}, standard library ${plan.stdlib}, linker ${plan.linker}`)
    const started = Date.now()
    const outputDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-publish-build-'))
    try {
      // The generated loader and types are the same for every target; they
      // go to the scratch directory and only the host build's are compared
      // with the checkout's below.
      const args = ['build', '--platform', '--release', '--output-dir', outputDir, '--js', 'binding.js', '--dts', 'binding.d.ts', ...plan.napiArgs]
      // The host build without --target reuses the cache of `npm run build`;
      // --dts-cache keeps napi from forcing a rebuild of the crate each time.
      if (!plan.native) args.push('--target', target, '--dts-cache')
      if (plan.targetDir) args.push('--target-dir', plan.targetDir)
      if (plan.cargoArgs.length) args.push('--', ...plan.cargoArgs)
      napi(args, { env: plan.env })
      const [binary] = artifactFiles(outputDir, binaryName)
      if (!binary) throw new Error(`napi build for ${target} wrote no ${binaryName}.*.node into ${outputDir}`)
      if (plan.native) {
        for (const generated of ['binding.js', 'binding.d.ts']) {
          if (!fs.readFileSync(path.join(outputDir, generated)).equals(fs.readFileSync(path.join(ROOT, generated)))) {
            throw new Error(`${generated} in the checkout differs from what napi build generates: run \`npm run build\` and commit ${generated}`)
          }
        }
      }
      fs.mkdirSync(artifactsDir, { recursive: true })
      fs.copyFileSync(binary, path.join(artifactsDir, path.basename(binary)))
      console.log(`built ${path.basename(binary)} (${fs.statSync(binary).size} bytes) in ${((Date.now() - started) / 1000).toFixed(0)} s`)
      results.push({ target, built: path.basename(binary) })
    } finally {
      fs.rmSync(outputDir, { recursive: true, force: true })
    }
  }
  return results
}

/** The files of the main package as `npm pack` would take them from `dir`. */
function packedFiles(dir) {
  const [packed] = JSON.parse(run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir, capture: true }))
  return packed.files.map((file) => file.path)
}

/** Steps 2-4 in a staging copy: napi artifacts, napi pre-publish (platform packages), npm publish (main). */
function publish({ registry, artifactsDir, binaryName, pkg, allTargets }) {
  const binaries = artifactFiles(artifactsDir, binaryName)
  const platforms = new Set(binaries.map((file) => platformOf(binaryName, path.basename(file))))
  // Triples whose binary is there, in the order of package.json.
  for (const triple of pkg.napi.targets) {
    // lib/native.js names the package to install with its own mapping.
    if (platformOfTarget(triple) !== parseTriple(triple).platformArchABI) throw new Error(`lib/platform.js maps ${triple} to ${platformOfTarget(triple)}, napi to ${parseTriple(triple).platformArchABI}`)
  }
  const shipped = pkg.napi.targets.filter((triple) => platforms.has(parseTriple(triple).platformArchABI))
  const missing = pkg.napi.targets.filter((triple) => !shipped.includes(triple))
  if (!shipped.length) throw new Error(`no ${binaryName}.<platform>.node in ${artifactsDir}: nothing to publish`)
  if (missing.length && allTargets) throw new Error(`--all-targets: no binary in ${artifactsDir} for ${missing.join(', ')}`)

  const staging = fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-publish-stage-'))
  try {
    step(`stage the package in ${staging}`)
    for (const file of [...packedFiles(ROOT), ...walk(path.join(ROOT, 'npm')).map((file) => path.relative(ROOT, file))]) {
      fs.mkdirSync(path.dirname(path.join(staging, file)), { recursive: true })
      fs.copyFileSync(path.join(ROOT, file), path.join(staging, file))
    }
    // Only the targets that were built are declared, so that the published
    // optionalDependencies name no package that is not in the registry.
    const staged = readJson(path.join(staging, 'package.json'))
    staged.napi.targets = shipped
    writeJson(path.join(staging, 'package.json'), staged)

    step('napi artifacts: each binary into its npm/<platform>/ package')
    napi(['artifacts', '--output-dir', artifactsDir, '--npm-dir', 'npm'], { cwd: staging })

    step(`napi pre-publish: publish ${shipped.length} platform package(s) to ${registry}, then declare them in optionalDependencies`)
    // npm publish (run by napi) takes the registry from npm_config_registry and
    // the credentials for it from npm's configuration.
    const npmEnv = { npm_config_registry: registry }
    // --no-gh-release: napi would otherwise read the git log to create a GitHub release.
    napi(['pre-publish', '-t', 'npm', '--npm-dir', 'npm', '--no-gh-release'], { cwd: staging, env: npmEnv })

    const main = readJson(path.join(staging, 'package.json'))
    const expected = Object.fromEntries(shipped.map((triple) => [`${pkg.name}-${parseTriple(triple).platformArchABI}`, pkg.version]))
    if (JSON.stringify(main.optionalDependencies) !== JSON.stringify(expected)) {
      throw new Error(`optionalDependencies after napi pre-publish are ${JSON.stringify(main.optionalDependencies)}, expected ${JSON.stringify(expected)}`)
    }
    const nodeFiles = packedFiles(staging).filter((file) => file.endsWith('.node'))
    if (nodeFiles.length) throw new Error(`the main package would carry ${nodeFiles.join(', ')}: remove them from "files"`)

    step(`npm publish ${pkg.name}@${pkg.version} to ${registry}`)
    // --ignore-scripts: "prepare" builds from source, and the staging copy has none.
    run('npm', ['publish', '--ignore-scripts', '--registry', registry], { cwd: staging, env: npmEnv })
    return { shipped, missing, optionalDependencies: main.optionalDependencies }
  } finally {
    fs.rmSync(staging, { recursive: true, force: true })
  }
}

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true, recursive: true }).filter((entry) => entry.isFile()).map((entry) => path.join(entry.parentPath ?? entry.path, entry.name))
}

function main() {
  const options = parseArgs(process.argv.slice(2))
  const pkg = readJson(path.join(ROOT, 'package.json'))
  const binaryName = pkg.napi.binaryName
  const unknown = options.targets.filter((target) => !pkg.napi.targets.includes(target))
  if (unknown.length) usage(`${unknown.join(', ')} not in package.json "napi.targets" (${pkg.napi.targets.join(', ')})`)
  const targets = options.targets.length ? options.targets : pkg.napi.targets

  let built = []
  if (!options.skipBuild) {
    // Binaries of an earlier run must not be published as if built now.
    for (const stale of artifactFiles(options.artifactsDir, binaryName)) fs.rmSync(stale)
    built = build(targets, { artifactsDir: options.artifactsDir, binaryName })
    if (!built.some((result) => result.built)) throw new Error('no target could be built here (reasons above)')
  }
  let published
  if (!options.buildOnly) published = publish({ ...options, binaryName, pkg })

  step('summary')
  for (const result of built) console.log(result.built ? `built    ${result.target}` : `skipped  ${result.target}: ${result.skip}`)
  if (published) {
    console.log(`published ${Object.keys(published.optionalDependencies).join(', ')} and ${pkg.name}@${pkg.version} to ${options.registry}`)
    if (published.missing.length) console.log(`not published (no binary): ${published.missing.join(', ')}`)
  }
}

try {
  main()
} catch (error) {
  console.error(`\npublish failed: ${error.message}`)
  process.exit(1)
}

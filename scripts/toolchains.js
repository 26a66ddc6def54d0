'use strict'
// Which Rust toolchain and linker can build a target on this machine, found
// by looking (no I/O beyond reading the file system and asking the compilers
// for their version). scripts/publish.js builds with what this returns.
//
// Sources, in the order they are tried:
// - Rust standard library for the target: the default toolchain (`rustup
//   target add`, as on GitHub runners), else Debian's rustc-web unpacked under
//   $STICKY_CROSS_HOME/debian-rust by .ci/cross-toolchains.sh (it ships the
//   x86_64 and, through multiarch, the aarch64-gnu standard library). Where a
//   toolchain has no prebuilt standard library but has its source (rust-src,
//   Debian's rust-web-src), the library is built from it with
//   `-Z build-std` (RUSTC_BOOTSTRAP=1: the source matches that compiler).
// - Linker: zig through cargo-zigbuild (napi's own `--cross-compile`), on PATH
//   or in $STICKY_CROSS_HOME/bin; else, for a glibc target, the Debian cross
//   gcc (`aarch64-linux-gnu-gcc`).

const { execFileSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const CROSS_HOME = process.env.STICKY_CROSS_HOME || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'sticky-session-rs', 'cross')
const HOW_TO_INSTALL = 'install the cross toolchains: bash .ci/cross-toolchains.sh (as root; README "Platforms")'

function onPath(name, extraDirs = []) {
  const dirs = [...(process.env.PATH || '').split(path.delimiter), ...extraDirs]
  for (const dir of dirs) {
    if (!dir) continue
    const file = path.join(dir, name)
    try {
      fs.accessSync(file, fs.constants.X_OK)
      return file
    } catch {}
  }
  return null
}

function tryRun(command, args, env = process.env) {
  try {
    return execFileSync(command, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
  } catch {
    return null
  }
}

/** The Rust toolchains on this machine: the default one, then Debian's unpacked rustc-web. */
function rustToolchains() {
  const toolchains = []
  const defaultInfo = tryRun('rustc', ['-vV'])
  if (defaultInfo) {
    toolchains.push({
      name: 'default rustc',
      version: defaultInfo.match(/^release: (.*)$/m)[1],
      host: defaultInfo.match(/^host: (.*)$/m)[1],
      sysroot: tryRun('rustc', ['--print', 'sysroot']).trim(),
      env: {},
      targetDir: null, // cargo's default: shares the cache of `npm run build`
    })
  }
  const debian = path.join(CROSS_HOME, 'debian-rust', 'usr')
  const debianRustc = path.join(debian, 'bin', 'rustc')
  if (fs.existsSync(debianRustc)) {
    // Unpacked, not installed: the compiler finds its driver library here.
    // Its cargo and rustc first on PATH (napi spawns `cargo`; cargo spawns `rustc`).
    const env = {
      PATH: [path.join(debian, 'bin'), process.env.PATH].join(path.delimiter),
      LD_LIBRARY_PATH: [path.join(debian, 'lib', 'x86_64-linux-gnu'), process.env.LD_LIBRARY_PATH].filter(Boolean).join(path.delimiter),
    }
    const info = tryRun(debianRustc, ['-vV'], { ...process.env, ...env })
    if (info) {
      toolchains.push({
        name: `Debian rustc-web (${CROSS_HOME}/debian-rust)`,
        version: info.match(/^release: (.*)$/m)[1],
        host: info.match(/^host: (.*)$/m)[1],
        sysroot: debian,
        env,
        // Its own cache: another compiler would invalidate the default one's.
        targetDir: path.join('target', 'debian-rust'),
      })
    }
  }
  return toolchains
}

/** How `toolchain` gets a standard library for `target`: 'prebuilt', 'build-std' or null. */
function standardLibrary(toolchain, target) {
  if (fs.existsSync(path.join(toolchain.sysroot, 'lib', 'rustlib', target, 'lib'))) return 'prebuilt'
  if (fs.existsSync(path.join(toolchain.sysroot, 'lib', 'rustlib', 'src', 'rust', 'library', 'std'))) return 'build-std'
  return null
}

function zigLinker() {
  const extra = [path.join(CROSS_HOME, 'bin')]
  const zig = onPath('zig', extra)
  const zigbuild = onPath('cargo-zigbuild', extra)
  return zig && zigbuild ? { zig, zigbuild, binDir: path.dirname(zigbuild) } : null
}

/**
 * How to build `target` here: { target, toolchain, stdlib, linker, env, napiArgs, cargoArgs }
 * or { target, skip: 'why' }.
 */
function planBuild(target, toolchains = rustToolchains()) {
  const host = toolchains[0] && toolchains[0].host
  if (!toolchains.length) return { target, skip: 'no Rust toolchain (install rustup: https://rustup.rs)' }
  if (target === host) {
    return { target, native: true, toolchain: toolchains[0], stdlib: 'prebuilt', linker: 'cc', env: {}, napiArgs: [], cargoArgs: [], targetDir: null }
  }
  const [, , system, abi] = target.split('-')
  if (system !== 'linux') return { target, skip: `cross-building for ${system} is not set up (its release job builds on a matching runner)` }

  const candidates = toolchains.map((toolchain) => ({ toolchain, stdlib: standardLibrary(toolchain, target) })).filter((c) => c.stdlib)
  // A prebuilt standard library first: building it from source costs about a minute.
  candidates.sort((a, b) => (a.stdlib === 'prebuilt' ? 0 : 1) - (b.stdlib === 'prebuilt' ? 0 : 1))
  if (!candidates.length) {
    return { target, skip: `no Rust standard library for it, prebuilt or as source: \`rustup target add ${target}\`, or where rustup cannot download one, ${HOW_TO_INSTALL}` }
  }
  const { toolchain, stdlib } = candidates[0]

  const zig = zigLinker()
  let linker
  const env = { ...toolchain.env }
  const napiArgs = []
  if (zig) {
    linker = `zig ${tryRun(zig.zig, ['version'])?.trim() || ''} (cargo-zigbuild)`.replace('  ', ' ')
    napiArgs.push('--cross-compile')
    env.PATH = [zig.binDir, path.dirname(zig.zig), env.PATH || process.env.PATH].join(path.delimiter)
  } else if (abi === 'gnu') {
    const gcc = onPath(`${target.split('-')[0]}-linux-gnu-gcc`)
    if (!gcc) return { target, skip: `no linker for it: neither zig with cargo-zigbuild nor ${target.split('-')[0]}-linux-gnu-gcc; ${HOW_TO_INSTALL}` }
    linker = path.basename(gcc)
    env[`CARGO_TARGET_${target.toUpperCase().replace(/-/g, '_')}_LINKER`] = gcc
  } else {
    return { target, skip: `no linker for it: needs zig with cargo-zigbuild; ${HOW_TO_INSTALL}` }
  }

  const cargoArgs = []
  let targetDir = toolchain.targetDir
  if (stdlib === 'build-std') {
    env.RUSTC_BOOTSTRAP = '1'
    cargoArgs.push('-Z', 'build-std=std,panic_abort')
    // A cache of its own per target, apart from the prebuilt-library builds:
    // proc-macro2 rebuilds whenever RUSTC_BOOTSTRAP changes.
    targetDir = path.join(targetDir || 'target', `build-std-${target}`)
  }
  return { target, toolchain, stdlib, linker, env, napiArgs, cargoArgs, targetDir }
}

module.exports = { planBuild, rustToolchains, CROSS_HOME, HOW_TO_INSTALL }

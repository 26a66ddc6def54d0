'use strict'

// Platform names as napi-rs uses them for the packages sticky-session-rs-<platform>
// (`linux-x64-gnu`, `linux-arm64-musl`, ...). No I/O but reading /usr/bin/ldd.
const { readFileSync } = require('fs')

// The same test, in the same order, as isMusl() in the generated binding.js, so
// that the package named here is the one the loader looks for.
function isMusl() {
  try {
    return readFileSync('/usr/bin/ldd', 'utf8').includes('musl')
  } catch {}
  const report = process.report && typeof process.report.getReport === 'function' ? process.report.getReport() : null
  if (!report) return false
  if (report.header && report.header.glibcVersionRuntime) return false
  return Array.isArray(report.sharedObjects) && report.sharedObjects.some((file) => file.includes('libc.musl-') || file.includes('ld-musl-'))
}

/** This process's platform: `linux-x64-gnu`. */
function currentPlatform() {
  return [process.platform, process.arch, process.platform === 'linux' ? (isMusl() ? 'musl' : 'gnu') : null].filter(Boolean).join('-')
}

/** `aarch64-unknown-linux-musl` -> `linux-arm64-musl` (scripts/publish.js checks this against napi's parseTriple). */
function platformOfTarget(triple) {
  const [cpu, , system, abi] = triple.split('-')
  const arch = { x86_64: 'x64', aarch64: 'arm64' }[cpu] || cpu
  return [system, arch, system === 'linux' ? abi : null].filter(Boolean).join('-')
}

module.exports = { currentPlatform, platformOfTarget }

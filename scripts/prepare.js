#!/usr/bin/env node
'use strict'

// `npm install` in a git checkout runs this (the `prepare` script). On Linux
// it builds the native addon (`npm run build`: Rust needed, and a failure
// fails the install, as it always did). Elsewhere (macOS, Windows) the crate
// does not build (Linux-only system calls: see Platforms in the README), so
// the install goes on without it and the checkout runs on the portable path;
// STICKY_BUILD_NATIVE=1 tries the build anyway.

const { spawnSync } = require('child_process')

/** What `prepare` does on `platform`: `{ build }`, or `{ skip }` saying why not. */
function plan(platform = process.platform, env = process.env) {
  if (platform === 'linux' || env.STICKY_BUILD_NATIVE === '1') return { build: true }
  return {
    skip:
      `sticky-session-rs: not building the native addon on ${platform} (it builds on Linux only); ` +
      'this checkout runs on the portable path (JavaScript over cluster IPC). Set STICKY_BUILD_NATIVE=1 to try the build anyway.',
  }
}

if (require.main === module) {
  const { build, skip } = plan()
  if (!build) {
    console.log(skip)
    process.exit(0)
  }
  const result = spawnSync('npm', ['run', 'build'], { stdio: 'inherit', shell: process.platform === 'win32' })
  process.exit(result.status === null ? 1 : result.status)
}

module.exports = { plan }

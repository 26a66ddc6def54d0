'use strict'
// scripts/check-module-cycles.js, which CI runs over src/: on small crates
// written here, it finds a cycle (also one made through a re-export or a
// path in the code) and names the lines that make it, and it does not call
// a facade's re-exports, a child's use of its parent, or a test module's
// `use super::*` a cycle. It also fails when the pure core (`core`) imports
// a module outside it, cycle or not.

const { execFileSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const SCRIPT = path.join(__dirname, '..', 'scripts', 'check-module-cycles.js')
const made = []

afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true })
})

/** A crate's src/ with these files; returns its path. */
function crate(files) {
  const src = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-cycles-')), 'src')
  made.push(path.dirname(src))
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(src, name)), { recursive: true })
    fs.writeFileSync(path.join(src, name), text)
  }
  return src
}

/** The script's exit code and output. */
function check(src, ...flags) {
  try {
    return { code: 0, output: execFileSync(process.execPath, [SCRIPT, '--src', src, ...flags], { encoding: 'utf8' }) }
  } catch (error) {
    return { code: error.status, output: error.stdout }
  }
}

const LIB = 'pub mod core;\npub mod io;\nmod binding;\npub use binding::*;\n'

test('a crate without cycles passes: facades, a child using its parent, tests using super::*', () => {
  const src = crate({
    'lib.rs': LIB,
    'core/mod.rs': '//! use crate::io::Loop; (a comment)\nmod hash;\npub use hash::Hasher;\npub(crate) const SEED: u64 = 1;\n',
    'core/hash.rs': 'use super::SEED;\npub struct Hasher;\n#[cfg(test)]\nmod tests {\n  use super::*;\n  use crate::io::Loop;\n}\n',
    'io.rs': 'use crate::core::Hasher;\npub struct Loop(Hasher);\nconst S: &str = "crate::binding::X";\n',
    'binding/mod.rs': 'mod worker;\npub use worker::Channel;\n',
    'binding/worker.rs': "use crate::io::Loop;\npub struct Channel<'a>(&'a Loop);\nconst C: char = '{';\n",
  })
  const { code, output } = check(src)
  expect(output).toContain('module cycles: none among 6 modules')
  expect(output).toContain('pure core (core): imports no module outside it')
  expect(code).toBe(0)
  // The edges it saw, through the re-export to the defining module.
  expect(check(src, '--graph').output).toMatch(/^io -> core::hash {4}\(.*io\.rs:1: use crate::core::Hasher;\)$/m)
})

test('a cycle through a re-export and a path in the code fails, naming both lines; --report-only reports it and passes', () => {
  const src = crate({
    'lib.rs': LIB,
    'core/mod.rs': 'mod hash;\npub use hash::Hasher;\n',
    'core/hash.rs': 'pub struct Hasher;\nfn on_loop() { crate::io::poll(); }\n',
    'io.rs': 'use crate::core::Hasher;\npub fn poll() {}\n',
    'binding/mod.rs': 'mod loop_poll;\nmod worker;\n',
    'binding/loop_poll.rs': 'use super::worker::{to_js, Connection};\npub struct LoopPoll;\n',
    'binding/worker.rs': 'use super::loop_poll::LoopPoll;\npub struct Connection;\npub fn to_js() {}\n',
  })
  const failed = check(src)
  expect(failed.code).toBe(1)
  expect(failed.output).toContain('module cycles: 2 among 7 modules')
  expect(failed.output).toContain('cycle: binding::loop_poll, binding::worker')
  expect(failed.output).toContain('binding::loop_poll -> binding::worker  (and back)')
  expect(failed.output).toMatch(/binding[/\\]worker\.rs:1: use super::loop_poll::LoopPoll;/)
  expect(failed.output).toContain('cycle: core::hash, io')
  expect(failed.output).toMatch(/core[/\\]hash\.rs:2: crate::io::poll/)
  const reported = check(src, '--report-only')
  expect(reported.code).toBe(0)
  expect(reported.output).toContain('module cycles: 2 among 7 modules of')
  expect(reported.output).toContain('(report only: not failing)')
})

test('the pure core importing an I/O module fails without a cycle, naming the line; --report-only reports it and passes', () => {
  const src = crate({
    'lib.rs': LIB,
    'core/mod.rs': 'mod hash;\npub use hash::Hasher;\n',
    'core/hash.rs': 'use crate::io::Loop;\npub struct Hasher(Loop);\n',
    'io.rs': 'pub struct Loop;\n',
    'binding/mod.rs': 'mod worker;\n',
    'binding/worker.rs': 'use crate::core::Hasher;\npub struct Channel(Hasher);\n',
  })
  const failed = check(src)
  expect(failed.code).toBe(1)
  expect(failed.output).toContain('module cycles: none among 6 modules')
  expect(failed.output).toContain('pure core (core): 1 import of modules outside it')
  expect(failed.output).toMatch(/core::hash -> io\n {6}.*core[/\\]hash\.rs:1: use crate::io::Loop;/)
  const reported = check(src, '--report-only')
  expect(reported.code).toBe(0)
  expect(reported.output).toContain('(report only: not failing)')
})

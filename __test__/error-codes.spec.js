'use strict'
// Every error code is written once, in Rust (src/binding/error.rs: those the
// binding gives and those the JavaScript gives its own errors), and the
// JavaScript takes them by name (lib/errors.js `codes`). Each is used where
// errors are thrown, emitted or warned of (lib/, index.js, src/), and
// README's "Errors" table lists exactly these codes.

const fs = require('fs')
const path = require('path')
const { errorCodes } = require('../binding.js')
const { codes } = require('../lib/errors')

const ROOT = path.join(__dirname, '..')
const GENERATED = path.join('lib', 'portable', 'contract.js')

function filesUnder(directory, extension) {
  return fs.readdirSync(path.join(ROOT, directory), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(directory, entry.name)
    if (entry.isDirectory()) return filesUnder(relative, extension)
    return entry.name.endsWith(extension) ? [relative] : []
  })
}

const read = (file) => fs.readFileSync(path.join(ROOT, file), 'utf8')
const javascript = ['index.js', ...filesUnder('lib', '.js')].filter((file) => file !== GENERATED)
const rust = filesUnder('src', '.rs')
const written = errorCodes()
const readme = read('README.md')
const section = /\n## Errors\n([\s\S]*?)\n## /.exec(readme)[1]
const listed = [...section.matchAll(/^\| `(ERR_STICKY_\w+)` \|/gm)].map((match) => match[1])

test('the binding writes a few dozen codes, each once, and lib/errors.js has every one by name', () => {
  expect(written.length).toBeGreaterThan(30)
  expect(new Set(written.map(({ code }) => code)).size).toBe(written.length)
  expect(codes).toEqual(Object.fromEntries(written.map(({ name, code }) => [name, code])))
  expect(Object.isFrozen(codes)).toBe(true)
})

test('every code is used where errors are made (codes.NAME in JavaScript, codes::NAME in Rust)', () => {
  const used = new Set([
    ...javascript.flatMap((file) => [...read(file).matchAll(/\bcodes\.([A-Z0-9_]+)/g)].map((match) => match[1])),
    ...rust.flatMap((file) => [...read(file).matchAll(/\bcodes::([A-Z0-9_]+)/g)].map((match) => match[1]).filter((name) => name !== 'ALL')),
  ])
  expect(written.map(({ name }) => name).filter((name) => !used.has(name))).toEqual([])
  // A name used and not written would be undefined at run time.
  expect([...used].filter((name) => !(name in codes))).toEqual([])
})

test('no JavaScript writes a code as a string of its own', () => {
  const literals = javascript.flatMap((file) => (read(file).match(/['"]ERR_STICKY_[A-Z0-9_]*['"]/g) || []).map((literal) => `${file}: ${literal}`))
  expect(literals).toEqual([])
})

test("README's Errors table lists exactly the codes written, each once", () => {
  expect(new Set(listed).size).toBe(listed.length)
  expect([...listed].sort()).toEqual(written.map(({ code }) => code).sort())
})

test('each row says when the error happens and what to do', () => {
  for (const row of section.split('\n').filter((line) => line.startsWith('| `ERR_STICKY_'))) {
    const [, code, when, todo] = row.split('|').map((cell) => cell.trim())
    expect({ code, when: when.length > 10, todo: todo.length > 5 }).toEqual({ code, when: true, todo: true })
  }
})

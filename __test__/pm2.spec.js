'use strict'
// Under the real pm2 (the npm package, a devDependency so that `npm install`
// brings it and the test needs no network), with a PM2_HOME of its own whose
// daemon is killed at the end whatever happened:
// - fork mode (examples/pm2/ecosystem.config.js): the app balances over its
//   own workers, and `pm2 sendSignal SIGHUP` is a rolling reload with zero
//   failed requests under load;
// - what `pm2 reload` and `pm2 restart` do to a fork-mode app (measured);
// - a graceful stop under pm2 lets in-flight requests finish;
// - cluster mode: listen() fails at once with ERR_STICKY_PM2_CLUSTER_MODE.

const { execFile } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { freePort, request, startLoad, failuresOf, waitUntil, clientIp, sleep } = require('./helpers')

const PM2 = path.join(path.dirname(require.resolve('pm2/package.json')), 'bin', 'pm2')
const ROOT = path.join(__dirname, '..')
const ECOSYSTEM = path.join(ROOT, 'examples', 'pm2', 'ecosystem.config.js')
const EXAMPLE_APP = path.join(ROOT, 'examples', 'pm2', 'app.js')
const FIXTURE_APP = path.join(__dirname, 'fixtures', 'app.js')

let pm2Home
/** Every pid pm2 or the apps had: killed at the end if still alive. */
const seenPids = new Set()

/** Runs the pm2 CLI against this spec's PM2_HOME; resolves with its output, rejects on a non-zero exit. */
function pm2(args, env = {}) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [PM2, ...args], { env: { ...process.env, PM2_HOME: pm2Home, ...env }, timeout: 30000 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`pm2 ${args.join(' ')} failed: ${error.message}\n${stdout}\n${stderr}`))
      resolve(stdout)
    })
  })
}

/** `pm2 jlist`: the processes pm2 manages. */
async function pm2List() {
  const list = JSON.parse(await pm2(['jlist']))
  for (const proc of list) if (proc.pid) seenPids.add(proc.pid)
  return list
}

function daemonPid() {
  try {
    return Number(fs.readFileSync(path.join(pm2Home, 'pm2.pid'), 'utf8'))
  } catch {
    return null
  }
}

/** True while `pid` runs (a zombie waiting for a parent that does not reap it has exited). */
const isAlive = (pid) => {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

/** What the app `name` wrote to `stream` ('out' or 'error'), over all its instances' log files. */
const logOf = (name, stream) => {
  const dir = path.join(pm2Home, 'logs')
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((file) => file.startsWith(`${name}-${stream}`)) : []
  return files.map((file) => fs.readFileSync(path.join(dir, file), 'utf8')).join('\n')
}

/** Waits until `port` answers a request (the pm2-started app is up and balancing). */
const waitForApp = (port, name) =>
  waitUntil(async () => (await request(port, { path: '/whoami', timeout: 2000 })).status === 200, {
    timeout: 20000,
    interval: 100,
    what: `${name} under pm2 to answer on ${port} (stderr: ${logOf(name, 'error').slice(-500)})`,
  })

beforeAll(() => {
  // Short: pm2 puts its Unix sockets here (sun_path holds 108 bytes).
  pm2Home = fs.mkdtempSync(path.join(os.tmpdir(), 'pm2-'))
})

afterAll(async () => {
  const daemon = daemonPid()
  if (daemon) seenPids.add(daemon)
  try {
    await pm2List()
  } catch {}
  try {
    await pm2(['kill'])
  } catch (error) {
    process.stderr.write(`pm2 kill failed: ${error.message}\n`)
  }
  // Whatever `pm2 kill` left (it should leave nothing): no orphans.
  await waitUntil(() => [...seenPids].every((pid) => !isAlive(pid)), { timeout: 5000, what: 'pm2 and its apps to exit' }).catch(() => {})
  const survivors = [...seenPids].filter(isAlive)
  for (const pid of survivors) process.kill(pid, 'SIGKILL')
  fs.rmSync(pm2Home, { recursive: true, force: true })
  expect(survivors).toEqual([])
}, 30000)

describe('pm2 fork mode (examples/pm2/ecosystem.config.js)', () => {
  let port

  beforeAll(async () => {
    port = await freePort()
    await pm2(['start', ECOSYSTEM], { PORT: String(port), WORKERS: '2' })
    await waitForApp(port, 'sticky-app')
  }, 40000)

  afterAll(() => pm2(['delete', 'sticky-app']).catch(() => {}))

  test('pm2 supervises one primary; the primary balances over its own 2 workers and each client IP keeps its worker', async () => {
    const [app, ...others] = await pm2List()
    expect(others).toEqual([])
    expect(app.pm2_env).toEqual(expect.objectContaining({ exec_mode: 'fork_mode', status: 'online' }))
    const ownerOf = new Map()
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 20; i++) {
        const { status, json } = await request(port, { path: '/', localAddress: clientIp(i) })
        expect(status).toBe(200)
        seenPids.add(json.pid)
        if (round === 0) ownerOf.set(clientIp(i), json)
        else expect(json).toEqual(ownerOf.get(clientIp(i)))
      }
    }
    const workers = new Map([...ownerOf.values()].map(({ pid, slot }) => [pid, slot]))
    expect([...workers.values()].sort()).toEqual([0, 1])
    // The workers are the primary's children, not pm2's.
    for (const pid of workers.keys()) {
      const parent = Number(/^PPid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1])
      expect(parent).toBe(app.pid)
    }
  })

  test('pm2 sendSignal SIGHUP: a rolling reload under a closed-loop load from 40 client IPs, zero failed requests; each IP keeps its slot', async () => {
    const slotOf = new Map()
    for (let i = 0; i < 40; i++) slotOf.set(clientIp(i), (await request(port, { path: '/', localAddress: clientIp(i) })).json.slot)
    const [{ pid: primary }] = await pm2List()
    const before = new Set((await Promise.all([0, 1, 2, 3].map((i) => request(port, { path: '/', localAddress: clientIp(i) })))).map((r) => r.json.pid))
    const load = startLoad(port, { path: '/', concurrency: 8, clients: 40 })
    await load.completed(20, { what: '20 requests before the reload' })
    await pm2(['sendSignal', 'SIGHUP', 'sticky-app'])
    // Done when every slot answers from a new worker.
    await waitUntil(
      async () => {
        const pids = await Promise.all([...slotOf.keys()].map(async (ip) => (await request(port, { path: '/', localAddress: ip })).json.pid))
        return pids.every((pid) => !before.has(pid))
      },
      { timeout: 30000, interval: 200, what: 'every worker replaced' },
    )
    await load.completed(20, { since: Date.now(), what: '20 requests after the reload' })
    const results = await load.stop()
    for (const r of results) if (r.pid) seenPids.add(r.pid)
    expect(failuresOf(results)).toEqual([])
    expect(results.length).toBeGreaterThan(100)
    expect(results.filter((r) => slotOf.get(r.localAddress) !== r.slot)).toEqual([])
    // The primary stayed: pm2 saw no restart.
    const [app] = await pm2List()
    expect({ pid: app.pid, restarts: app.pm2_env.restart_time }).toEqual({ pid: primary, restarts: 0 })
    console.log(`pm2 sendSignal SIGHUP under load: ${results.length} requests, 0 failed, every worker replaced, the primary (pid ${primary}) kept`)
  }, 45000)

  // pm2 reloads only cluster-mode apps gracefully: for a fork-mode app,
  // `reload` is `restart` (pm2 7 lib/God/Reload.js): SIGINT, wait for the
  // process tree to exit, start the script again. The app steers in the
  // kernel (the default): shutting down, the old group drops new connection
  // requests, whose clients send them again a second later, to the new
  // primary if it listens by then, else they are refused. Measured here so
  // that the README's account stays true.
  test.each([['restart'], ['reload']])('pm2 %s of a fork-mode app stops the primary, then starts a new one: a connection in between waits or is refused, none is reset', async (command) => {
    const [{ pid: oldPrimary, pm2_env: { restart_time: restartsBefore } }] = await pm2List()
    const load = startLoad(port, { path: '/', concurrency: 8, clients: 40 })
    await load.completed(20, { what: '20 requests before the command' })
    const issued = Date.now()
    await pm2([command, 'sticky-app'])
    await waitUntil(async () => (await pm2List())[0].pid !== oldPrimary, { timeout: 20000, what: 'a new primary' })
    await waitForApp(port, 'sticky-app')
    await load.completed(20, { since: Date.now(), where: (r) => r.ok, what: "20 requests answered by the new primary's workers" })
    const results = await load.stop()
    for (const r of results) if (r.pid) seenPids.add(r.pid)
    const failures = failuresOf(results)
    const byCode = {}
    for (const failure of failures) byCode[failure.error] = (byCode[failure.error] || 0) + 1
    const refused = failures.filter((f) => f.error === 'ECONNREFUSED')
    const window = refused.length ? refused[refused.length - 1].started - refused[0].started : 0
    console.log(`pm2 ${command} (fork mode) under load: ${results.length} requests, ${failures.length} failed ${JSON.stringify(byCode)}, refused during ${window} ms (from ${refused.length ? refused[0].started - issued : '-'} ms after the command)`)
    const [app] = await pm2List()
    expect(app.pm2_env.restart_time).toBe(restartsBefore + 1)
    expect(new Set(results.filter((r) => r.ok && r.started > issued).map((r) => r.pid)).size).toBeGreaterThan(0)
    // The old primary drained what it had accepted: nothing else failed.
    expect(failures.filter((f) => f.error !== 'ECONNREFUSED')).toEqual([])
  }, 45000)
})

describe('pm2 fork mode, a new primary by socket takeover (examples/pm2/blue-green.config.js)', () => {
  const BLUE_GREEN = path.join(ROOT, 'examples', 'pm2', 'blue-green.config.js')

  test('starting green while blue runs: zero failed or refused requests under load, blue exits 0 and pm2 does not restart it, each IP keeps its slot', async () => {
    const port = await freePort()
    const env = { PORT: String(port), WORKERS: '2' }
    try {
      await pm2(['start', BLUE_GREEN, '--only', 'sticky-app-blue'], env)
      await waitForApp(port, 'sticky-app-blue')
      const slotOf = new Map()
      for (let i = 0; i < 40; i++) slotOf.set(clientIp(i), (await request(port, { path: '/', localAddress: clientIp(i) })).json.slot)
      const [blue] = await pm2List()
      const load = startLoad(port, { path: '/', concurrency: 8, clients: 40 })
      await load.completed(20, { what: '20 requests before green starts' })
      await pm2(['start', BLUE_GREEN, '--only', 'sticky-app-green'], env)
      const green = await waitUntil(async () => (await pm2List()).find((app) => app.name === 'sticky-app-green' && app.pid), { what: 'green under pm2' })
      // Blue hands its socket over once green's workers are ready, drains, and exits 0.
      await waitUntil(() => !isAlive(blue.pid), { timeout: 30000, what: 'blue to exit' })
      await load.completed(20, { since: Date.now(), what: "20 requests after blue's exit" })
      const results = await load.stop()
      for (const r of results) if (r.pid) seenPids.add(r.pid)
      expect(failuresOf(results)).toEqual([])
      expect(results.length).toBeGreaterThan(100)
      expect(results.filter((r) => slotOf.get(r.localAddress) !== r.slot)).toEqual([])
      const list = await pm2List()
      const byName = Object.fromEntries(list.map((app) => [app.name, app]))
      expect(byName['sticky-app-blue'].pm2_env).toEqual(expect.objectContaining({ status: 'stopped', restart_time: 0, exit_code: 0 }))
      expect(byName['sticky-app-green'].pm2_env.status).toBe('online')
      expect(byName['sticky-app-green'].pid).toBe(green.pid)
      // Green's own workers answer now.
      const after = await request(port, { path: '/', localAddress: clientIp(0) })
      const parent = Number(/^PPid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${after.json.pid}/status`, 'utf8'))[1])
      expect(parent).toBe(green.pid)
      console.log(`pm2 blue-green takeover under load: ${results.length} requests, 0 failed, 0 refused; blue exited 0 and stayed stopped`)
    } finally {
      await pm2(['delete', 'sticky-app-blue']).catch(() => {})
      await pm2(['delete', 'sticky-app-green']).catch(() => {})
    }
  }, 60000)
})

describe('pm2 fork mode, graceful stop', () => {
  test("in-flight requests finish when pm2 stops the app (its workers do not load pm2's metrics agent, which exits a disconnected process)", async () => {
    const port = await freePort()
    const config = { port, options: { workers: 2 } }
    await pm2(['start', FIXTURE_APP, '--name', 'slow-app', '--kill-timeout', '15000'], { STICKY_TEST_CONFIG: JSON.stringify(config) })
    try {
      await waitForApp(port, 'slow-app')
      const [{ pid: primary }] = await pm2List()
      const slow = Array.from({ length: 6 }, (_, i) => request(port, { path: '/slow?ms=2500', localAddress: clientIp(i) }).catch((error) => ({ error: error.code || error.message })))
      await sleep(500)
      const stopping = pm2(['stop', 'slow-app'])
      const answers = await Promise.all(slow)
      await stopping
      for (const answer of answers) if (answer.json) seenPids.add(answer.json.pid)
      expect(answers.map((a) => a.status || a.error)).toEqual(answers.map(() => 200))
      const [app] = await pm2List()
      expect(app.pm2_env.status).toBe('stopped')
      expect(isAlive(primary)).toBe(false)
      expect(logOf('slow-app', 'error')).not.toMatch(/disconnected from parent/)
    } finally {
      await pm2(['delete', 'slow-app']).catch(() => {})
    }
  }, 45000)
})

describe('pm2 cluster mode', () => {
  test('listen() fails at once with ERR_STICKY_PM2_CLUSTER_MODE, whose message says to use fork mode; the port is never bound', async () => {
    const port = await freePort()
    await pm2(['start', EXAMPLE_APP, '--name', 'clustered', '-i', '2', '--max-restarts', '2'], { PORT: String(port) })
    try {
      const errors = await waitUntil(() => /ERR_STICKY_PM2_CLUSTER_MODE/.test(logOf('clustered', 'error')) && logOf('clustered', 'error'), {
        timeout: 20000,
        what: 'the error in pm2 error log',
      })
      expect(errors).toMatch(/pm2's cluster mode/)
      expect(errors).toMatch(/exec_mode: 'fork', instances: 1/)
      const list = await pm2List()
      expect(list.map((proc) => proc.pm2_env.exec_mode)).toEqual(['cluster_mode', 'cluster_mode'])
      await expect(request(port, { path: '/', timeout: 2000 })).rejects.toThrow(/ECONNREFUSED/)
    } finally {
      await pm2(['delete', 'clustered']).catch(() => {})
    }
  }, 45000)
})

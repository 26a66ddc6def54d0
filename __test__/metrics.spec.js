'use strict'
// Prometheus metrics (sticky.registerMetrics with the real prom-client):
// examples/metrics/app.js serves /metrics from the primary; the values follow
// the traffic sent from several client IPs, per slot, and a killed worker
// shows up as a respawn.

const http = require('http')
const path = require('path')
const client = require('prom-client')
const sticky = require('..')
const { statsFields } = require('../lib/native')
const { request, waitUntil, clientIp } = require('./helpers')
const { startExample, stopAllProcesses } = require('./fixtures/examples/processes')

afterAll(stopAllProcesses)

const EXAMPLE = path.join(__dirname, '..', 'examples', 'metrics', 'app.js')

/** GET `url` (plain text). */
function get(url) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk) => (text += chunk))
        res.on('end', () => resolve({ status: res.statusCode, contentType: res.headers['content-type'], text }))
      })
      .on('error', reject)
  })
}

/**
 * The Prometheus text format, read: `{ help, type, samples }` by metric
 * name; a sample's key is its label set as written (`slot="0"`, or '').
 */
function parseExposition(text) {
  const metrics = {}
  const metric = (name) => (metrics[name] = metrics[name] || { help: null, type: null, samples: {} })
  for (const line of text.split('\n')) {
    let match
    if ((match = /^# HELP (\S+) (.*)$/.exec(line))) metric(match[1]).help = match[2]
    else if ((match = /^# TYPE (\S+) (\S+)$/.exec(line))) metric(match[1]).type = match[2]
    else if ((match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line))) metric(match[1]).samples[match[2] || ''] = Number(match[3])
  }
  return metrics
}

describe('examples/metrics/app.js', () => {
  let app
  let metricsUrl

  const scrape = async () => {
    const { status, contentType, text } = await get(metricsUrl)
    expect(status).toBe(200)
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/)
    return parseExposition(text)
  }
  const value = (metrics, name, slot) => metrics[name].samples[slot === undefined ? '' : `slot="${slot}"`]

  beforeAll(async () => {
    app = await startExample(EXAMPLE, { METRICS_PORT: '0', WORKERS: '2' }, { ready: /listening on (\d+) .* metrics on (\S+)/ })
    metricsUrl = app.match[2]
  })

  test('every stats field is a metric with HELP and TYPE: counters end in _total, per-slot ones are labelled by slot', async () => {
    const metrics = await scrape()
    for (const field of statsFields()) {
      const snake = field.name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)
      const name = `sticky_session_${field.scope === 'slot' ? 'slot_' : ''}${snake}${field.kind === 'counter' ? '_total' : ''}`
      expect(metrics[name]).toEqual({ help: field.help, type: field.kind, samples: expect.any(Object) })
      expect(Object.keys(metrics[name].samples).sort()).toEqual(field.scope === 'slot' ? ['slot="0"', 'slot="1"'] : [''])
    }
    // The primary's own process metrics are there too (prom-client's defaults).
    expect(metrics.process_resident_memory_bytes.type).toBe('gauge')
  })

  test('after N requests from 12 client IPs: accepted and dispatched grew by N, each slot by what its worker answered; gauges are right', async () => {
    const before = await scrape()
    const N = 60
    const answeredBySlot = { 0: 0, 1: 0 }
    const pidOfSlot = {}
    for (let i = 0; i < N; i++) {
      const { status, json } = await request(app.port, { path: '/', localAddress: clientIp(i % 12) })
      expect(status).toBe(200)
      answeredBySlot[json.slot]++
      pidOfSlot[json.slot] = json.pid
    }
    // What each worker has taken is peeked after each accept batch or on a short timer.
    await waitUntil(
      async () => {
        const metrics = await scrape()
        return value(metrics, 'sticky_session_slot_pending', 0) + value(metrics, 'sticky_session_slot_pending', 1) === 0
      },
      { what: 'no pending hand-off' },
    )
    const after = await scrape()
    const grew = (name, slot) => value(after, name, slot) - value(before, name, slot)
    expect(grew('sticky_session_accepted_total')).toBe(N)
    expect(grew('sticky_session_slot_dispatched_total', 0) + grew('sticky_session_slot_dispatched_total', 1)).toBe(N)
    for (const slot of [0, 1]) {
      expect(grew('sticky_session_slot_dispatched_total', slot)).toBe(answeredBySlot[slot])
      expect(grew('sticky_session_slot_taken_total', slot)).toBe(answeredBySlot[slot])
      // The field's old name, kept until 0.2.0, is exported with the same value.
      expect(value(after, 'sticky_session_slot_acknowledged_total', slot)).toBe(value(after, 'sticky_session_slot_taken_total', slot))
      expect(value(after, 'sticky_session_slot_state', slot)).toBe(1)
      expect(value(after, 'sticky_session_slot_pending', slot)).toBe(0)
      if (pidOfSlot[slot]) expect(value(after, 'sticky_session_slot_pid', slot)).toBe(pidOfSlot[slot])
    }
    // 12 IPs over 2 slots: both got some.
    expect(answeredBySlot[0]).toBeGreaterThan(0)
    expect(answeredBySlot[1]).toBeGreaterThan(0)
    expect(grew('sticky_session_dropped_total')).toBe(0)
    expect(value(after, 'sticky_session_parked')).toBe(0)
  })

  test('a worker killed shows up as a respawn: its slot gets a new pid and respawns_total + 1; the other slot is untouched', async () => {
    const before = await scrape()
    const victim = value(before, 'sticky_session_slot_pid', 0)
    expect(victim).toBeGreaterThan(0)
    process.kill(victim, 'SIGKILL')
    const after = await waitUntil(
      async () => {
        const metrics = await scrape()
        const pid = value(metrics, 'sticky_session_slot_pid', 0)
        return pid !== victim && pid > 0 && value(metrics, 'sticky_session_slot_state', 0) === 1 && metrics
      },
      { what: 'slot 0 respawned', timeout: 15000 },
    )
    expect(value(after, 'sticky_session_slot_respawns_total', 0)).toBe(value(before, 'sticky_session_slot_respawns_total', 0) + 1)
    expect(value(after, 'sticky_session_slot_respawns_total', 1)).toBe(value(before, 'sticky_session_slot_respawns_total', 1))
    expect(value(after, 'sticky_session_slot_pid', 1)).toBe(value(before, 'sticky_session_slot_pid', 1))
    // The respawned worker serves its slot's clients.
    const served = await waitUntil(async () => {
      for (let i = 0; i < 12; i++) {
        const { json } = await request(app.port, { path: '/', localAddress: clientIp(i) })
        if (json.slot === 0) return json
      }
      return null
    }, { what: 'a client of slot 0 served' })
    expect(served.pid).toBe(value(after, 'sticky_session_slot_pid', 0))
  })
})

describe('registerMetrics', () => {
  test('takes a registry and a prefix; outside a balancing primary the metrics exist, per-slot ones with no sample', async () => {
    const register = new client.Registry()
    const metrics = sticky.registerMetrics({ client, register, prefix: 'app_lb_' })
    expect(Object.keys(metrics)).toContain('app_lb_slot_dispatched_total')
    const parsed = parseExposition(await register.metrics())
    expect(Object.keys(parsed)).toHaveLength(statsFields().length)
    // prom-client shows a metric without labels as 0 until it has a value.
    for (const [name, metric] of Object.entries(parsed)) expect(metric.samples).toEqual(name.startsWith('app_lb_slot_') ? {} : { '': 0 })
    // The same names twice on one registry is prom-client's error.
    expect(() => sticky.registerMetrics({ client, register, prefix: 'app_lb_' })).toThrow(/already been registered/)
  })

  test('without prom-client installed and none passed: ERR_STICKY_NO_PROM_CLIENT, which says to install or pass it', () => {
    // A process in which require('prom-client') fails as it does where it is not installed.
    const hideProm = "const M=require('module');const r=M._resolveFilename;M._resolveFilename=function(n,...a){if(n==='prom-client'){const e=new Error(\"Cannot find module 'prom-client'\");e.code='MODULE_NOT_FOUND';throw e}return r.call(this,n,...a)};"
    const probe = "try{require('.').registerMetrics();console.log('no error')}catch(e){console.log(JSON.stringify({code:e.code,message:e.message}))}"
    const output = require('child_process').execFileSync(process.execPath, ['-e', hideProm + probe], { cwd: path.join(__dirname, '..'), encoding: 'utf8' })
    const error = JSON.parse(output)
    expect(error.code).toBe('ERR_STICKY_NO_PROM_CLIENT')
    expect(error.message).toMatch(/npm install prom-client/)
    expect(error.message).toMatch(/registerMetrics\(\{ client: require\('prom-client'\) \}\)/)
  })

  test('something that is not prom-client: ERR_STICKY_INVALID_OPTION', () => {
    expect(() => sticky.registerMetrics({ client: {} })).toThrow(expect.objectContaining({ code: 'ERR_STICKY_INVALID_OPTION' }))
  })
})

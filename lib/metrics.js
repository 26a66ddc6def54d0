'use strict'

// Prometheus metrics over `stats()`, for prom-client's registry. The metric
// list comes from the stats fields themselves (`statsFields()`, generated from
// the one list in src/core/stats.rs, which gives each field's snake_case
// name too): a counter `acceptErrors` becomes
// `sticky_session_accept_errors_total`, a slot gauge `pending` becomes
// `sticky_session_slot_pending{slot="0"}`. prom-client is the application's
// dependency, not ours: it is passed in, or required only when this runs.

const { statsFields } = require('./native')
const { codes, stickyError } = require('./errors')

const DEFAULT_PREFIX = 'sticky_session_'

/** Prometheus' name for a stats field: base name, `slot_` for per-slot ones, `_total` for counters. */
function metricName(prefix, field) {
  return `${prefix}${field.scope === 'slot' ? 'slot_' : ''}${field.snakeName}${field.kind === 'counter' ? '_total' : ''}`
}

/** A stats value as a number: a field whose values have names (a slot's `state`) by the name's index. */
const numeric = (field, value) => (field.values ? field.values.indexOf(value) : value)

function loadPromClient() {
  try {
    return require('prom-client')
  } catch (cause) {
    const error = stickyError(
      codes.NO_PROM_CLIENT,
      "registerMetrics() needs prom-client: install it (npm install prom-client) or pass it: registerMetrics({ client: require('prom-client') })",
    )
    error.cause = cause
    throw error
  }
}

/**
 * Registers one metric per stats field on a prom-client registry; each
 * reads `readStats()` when the registry is scraped (nothing is read
 * otherwise). Returns the metrics, by name.
 */
function registerMetrics(readStats, { client = loadPromClient(), register = client.register, prefix = DEFAULT_PREFIX } = {}) {
  if (!client || typeof client.Counter !== 'function' || typeof client.Gauge !== 'function') {
    throw stickyError(codes.INVALID_OPTION, "registerMetrics({ client }) takes the prom-client module: { client: require('prom-client') }")
  }
  const metrics = {}
  for (const field of statsFields()) {
    const Metric = field.kind === 'counter' ? client.Counter : client.Gauge
    const name = metricName(prefix, field)
    const labelNames = field.scope === 'slot' ? ['slot'] : []
    metrics[name] = new Metric({
      name,
      help: field.help,
      labelNames,
      registers: [register],
      // On each scrape: the value now (a counter is set by resetting it and
      // adding its total; prom-client counters have no set()).
      collect() {
        this.reset()
        const stats = readStats()
        if (!stats) return
        const record = (labels, value) => (field.kind === 'counter' ? this.inc(labels, numeric(field, value)) : this.set(labels, numeric(field, value)))
        if (field.scope === 'primary') record({}, stats[field.name])
        else for (const slot of stats.slots) record({ slot: String(slot.slot) }, slot[field.name])
      },
    })
  }
  return metrics
}

module.exports = { registerMetrics, metricName }

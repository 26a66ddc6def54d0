'use strict'

// What sticky-session-rs needs to know about pm2, the process manager. pm2
// sets `pm_id` and `exec_mode` ('fork_mode' or 'cluster_mode') in the
// environment of every process it starts (checked against pm2 7.0.4;
// `NODE_APP_INSTANCE` is renamable with `instance_var`, so it is not used).

const fs = require('fs')
const { codes, stickyError } = require('./errors')

/** pm2's exec mode of this process, or null when pm2 did not start it. */
function pm2ExecMode(env = process.env) {
  return env.pm_id !== undefined && typeof env.exec_mode === 'string' ? env.exec_mode : null
}

/**
 * In pm2's cluster mode pm2 itself is the cluster primary: this process is
 * one of its cluster workers, with no channel from a sticky-session-rs
 * primary. Returns the error to throw there (also written to the app's pm2
 * error log), or null elsewhere.
 */
function pm2ClusterModeError(env = process.env) {
  if (pm2ExecMode(env) !== 'cluster_mode') return null
  const error = stickyError(
    codes.PM2_CLUSTER_MODE,
    "sticky-session-rs cannot run in pm2's cluster mode: there pm2 is the cluster primary and spreads connections " +
      'over the instances round-robin itself, so no client can be sticky. Start the app in fork mode with one ' +
      "instance (exec_mode: 'fork', instances: 1 in the ecosystem file, or `pm2 start app.js` without -i): " +
      'sticky-session-rs then forks and balances its own workers (the `workers` option). ' +
      'See examples/pm2/ecosystem.config.js.',
  )
  writeToPm2ErrorLog(error, env)
  return error
}

/**
 * pm2 (7.0.4) loses what a cluster-mode process writes before its log files
 * are open: an exception thrown while the app starts never reaches its error
 * log, and the process is reported as exiting with code 0. Written here
 * synchronously, so that `pm2 logs` says why the app stopped.
 */
function writeToPm2ErrorLog(error, env) {
  if (!env.pm_err_log_path) return
  try {
    fs.appendFileSync(env.pm_err_log_path, `sticky-session-rs: ${error.code}: ${error.message}\n`)
  } catch {}
}

/**
 * Environment for the workers a primary started by pm2 forks. They run pm2's
 * fork-mode container script too (it is the primary's `process.argv[1]`),
 * which loads pm2's metrics agent unless `pmx` is 'false'. That agent reports
 * over the process's IPC channel, which here leads to our primary, not to
 * pm2, and it exits the process (code 1) as soon as the channel is closed: a
 * worker disconnected for a graceful shutdown would die in the middle of its
 * in-flight requests.
 */
function pm2WorkerEnvironment(env = process.env) {
  return pm2ExecMode(env) === null ? {} : { pmx: 'false' }
}

module.exports = { pm2ExecMode, pm2ClusterModeError, pm2WorkerEnvironment }

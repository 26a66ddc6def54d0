// pm2 ecosystem file for a sticky-session-rs app: `pm2 start ecosystem.config.js`.
//
// Fork mode with one instance: pm2 supervises the primary, and the primary
// forks, balances and respawns its own workers (`WORKERS`). pm2's cluster mode
// cannot be sticky (pm2 would be the cluster primary and spread connections
// round-robin itself): listen() refuses to start there with
// ERR_STICKY_PM2_CLUSTER_MODE.
//
// Zero-downtime updates:
//   pm2 sendSignal SIGHUP sticky-app   replaces the workers one at a time (new code,
//                                      zero failed requests; the primary stays)
// `pm2 reload` and `pm2 restart` of a fork-mode app both stop the primary and
// start a new one: connections are refused in between. See README, "pm2".
module.exports = {
  apps: [
    {
      name: 'sticky-app',
      script: __dirname + '/app.js',
      exec_mode: 'fork',
      instances: 1,
      env: {
        PORT: process.env.PORT || 3000,
        WORKERS: process.env.WORKERS || 2,
      },
      // pm2 stops the app with SIGINT (to the primary and its workers): the
      // primary then drains and exits 0 within its `shutdownTimeout` (10 s by
      // default). pm2 sends SIGKILL after kill_timeout: leave it the time.
      kill_timeout: 12000,
    },
  ],
}

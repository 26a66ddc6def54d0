// Replacing the primary itself (a new sticky-session-rs version, new options)
// without refusing a connection, under pm2: two apps running the same script
// with socket takeover, used in turn.
//
//   pm2 start blue-green.config.js --only sticky-app-blue     # first start
//   # deploy: start the other colour while this one runs
//   pm2 start blue-green.config.js --only sticky-app-green
//   #   green takes blue's listening socket over once its workers are ready;
//   #   blue stops accepting, drains, and exits 0 by itself
//   pm2 delete sticky-app-blue                                # tidy up
//   # next deploy: the same with the colours swapped
//
// `stop_exit_codes: [0]`: a primary that handed its socket over exits 0, and
// pm2 must not start it again (it would take the socket back). A crash (any
// other exit) is still restarted. For new code in the workers only, a
// rolling reload is simpler: `pm2 sendSignal SIGHUP <app>`.
const colour = (name) => ({
  name,
  script: __dirname + '/app.js',
  exec_mode: 'fork',
  instances: 1,
  env: {
    PORT: process.env.PORT || 3000,
    WORKERS: process.env.WORKERS || 2,
    TAKEOVER: '1',
  },
  stop_exit_codes: [0],
  // More than the primary's shutdownTimeout (10 s by default).
  kill_timeout: 12000,
})

module.exports = { apps: [colour('sticky-app-blue'), colour('sticky-app-green')] }

'use strict'

// systemd socket activation: when systemd (or `systemd-socket-activate`)
// started this primary with listening sockets (LISTEN_FDS / LISTEN_PID /
// LISTEN_FDNAMES, see sd_listen_fds(3)), `listen` uses the one on its port
// instead of binding. systemd holds the socket while the service restarts,
// so clients queue instead of being refused.

const { systemdSockets } = require('./native')
const { codes, stickyError } = require('./errors')

const VARIABLES = ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES']

/**
 * The listening socket systemd passed to this process for `port` (port 0:
 * the first listening TCP socket passed), as `{ fd, name, address, family,
 * port }`; null when systemd passed none to this process. The variables are
 * consumed (removed from `process.env`, so workers do not inherit them) and
 * every passed descriptor becomes close-on-exec, as `sd_listen_fds(1)` does.
 * Throws `ERR_STICKY_SYSTEMD_NO_SOCKET` when sockets were passed but none
 * listens on `port`.
 */
function systemdListener(port) {
  const sockets = systemdSockets(process.env.LISTEN_FDS, process.env.LISTEN_PID, process.env.LISTEN_FDNAMES)
  if (sockets === null) return null
  for (const variable of VARIABLES) delete process.env[variable]
  if (sockets.length === 0) return null
  const usable = sockets.filter((socket) => socket.listeningTcp)
  const chosen = port === 0 ? usable[0] : usable.find((socket) => socket.port === port)
  if (chosen) return chosen
  const passed = sockets.map((socket) => `fd ${socket.fd}${socket.name ? ` (${socket.name})` : ''}: ${socket.listeningTcp ? `TCP port ${socket.port}` : 'not a listening TCP socket'}`)
  throw stickyError(
    codes.SYSTEMD_NO_SOCKET,
    `systemd passed ${sockets.length} socket(s) [${passed.join('; ')}] but none listens on port ${port}: ` +
      `listen on the port of the .socket unit's ListenStream= (or on port 0, which takes the first one), or add ListenStream=${port} to the unit`,
  )
}

module.exports = { systemdListener }

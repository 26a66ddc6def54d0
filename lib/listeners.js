'use strict'

// How a primary listens, chosen once when it binds
// (lib/primary/listener-choice.js). Both ways have one interface:
//
//   mode                   'accept-loop' | 'kernel' (what a takeover offer says)
//   address()              where it listens, as `net.Server#address()` says
//   workerEnd(slot)        what a worker forked into `slot` gets in its stdio:
//                          { fd, variable (the env variable naming it), afterFork(),
//                            more: further [{ fd, variable }], env: more variables }
//   watch(worker, slot, end)  a worker was forked into `slot` with `end` (workerEnd's)
//   retire(worker)         a reload replaced `worker`: make it drain and exit
//   listeningFds()         the listening socket(s), for a takeover offer
//   stats()                `sticky.stats()`
//   stopAccepting(drainQueue, { refuseNew })
//                          stop taking connections: `drainQueue` false leaves
//                          the listen queue to another process holding the
//                          socket (a takeover that gave up), `refuseNew` (a
//                          shutdown) refuses new ones first; then a 'drained'
//                          event once nothing accepted waits for a worker
//   close()                once every worker has exited (or the shutdown ran
//                          out of time): releases every descriptor and thread
//
// Events (`onEvent`): one shape from every listener, the binding's
// `ListenerEvent` (binding.d.ts): `kind` one of `eventKinds` (written once,
// in src/binding/primary.rs, and taken from the generated contract) —
// 'slot-ready' { slot, pid }, 'slot-closed' { slot, reason, requeued },
// 'drained', 'error' { code, message, fatal }.
//
// Where the listening socket(s) come from (a bind, systemd, a takeover) is
// the caller's business (lib/primary/socket-source.js): `spec.adopt` carries
// sockets to use instead of binding, for either way.

const debug = require('debug')('sticky-session-rs')
const { Balancer, ReuseportGroup } = require('./native')
const { closeDescriptor } = require('./runtime')

/** The kinds of a listener's events, by name: `eventKinds.SlotReady` is 'slot-ready'. */
const eventKinds = Object.freeze({ ...require('./portable/contract').eventKinds })

/**
 * The native accept loop: one listening socket; the primary accepts each
 * connection, reads its routing key and hands it to a worker over the
 * worker's channel (a socketpair created for each fork).
 */
class AcceptLoopListener {
  /**
   * Binds (or adopts `spec.adopt`) and starts accepting; throws as `new
   * Balancer` does. With `options.rendezvous` (lib/rendezvous.js), the user's
   * workers take their channels there.
   */
  constructor(spec, options, onEvent) {
    this.mode = 'accept-loop'
    this.balancer = new Balancer(spec, options.config, onEvent, options.rendezvous ? options.rendezvous.socket : null)
  }

  address() {
    return this.balancer.address()
  }

  /** The worker's end of a new channel for `slot`; the child keeps the only copy. */
  workerEnd(slot) {
    const fd = this.balancer.openSlot(slot)
    return { fd, variable: 'STICKY_CHANNEL_FD', afterFork: () => closeDescriptor(fd) }
  }

  /** The accept loop reports the worker's readiness itself, when it says hello on its channel. */
  watch() {}

  /** Nothing to do: the accept loop closed the old worker's channel when its replacement was ready, so it drains and exits. */
  retire() {}

  listeningFds() {
    return [this.balancer.listeningFd()]
  }

  stats() {
    return this.balancer.stats()
  }

  /**
   * `drainQueue` false leaves the listen queue to the other process that
   * holds the socket (a takeover that gave up); 'drained' follows once every
   * accepted connection is with a worker. `refuseNew` (a shutdown): the
   * socket first stops taking new connections (their SYNs are dropped;
   * handshakes under way complete and are served), as kernel steering's
   * does, so that none is queued, and reset, when it closes.
   */
  stopAccepting(drainQueue, { refuseNew = false } = {}) {
    this.balancer.close(drainQueue, refuseNew)
  }

  /** The accept loop refuses (and counts) what still waits for a worker, closes every channel, and its thread ends. */
  close() {
    this.balancer.terminate()
  }
}

/**
 * Kernel steering: one SO_REUSEPORT listening socket per slot, steered by a
 * BPF program on the client's address; each worker accepts on its slot's
 * socket and the primary sees no connection. The primary keeps every socket
 * open, so a slot's queue waits for its respawned worker.
 */
/** How long a shutting-down group lets handshakes under way complete before its sockets close. */
const HANDSHAKE_SETTLE_MS = 100

class KernelGroupListener {
  /** Binds (or adopts `spec.adopt`) the group; throws as `new ReuseportGroup` does. */
  constructor(spec, options, onEvent) {
    this.mode = 'kernel'
    this.onEvent = onEvent
    this.group = new ReuseportGroup(spec, options.config)
    this.slots = options.workers
  }

  address() {
    return this.group.address()
  }

  /**
   * The slot's listening socket, and a seat in the counters the group shares
   * with its workers (what each accepts and relieves, counted without a
   * message): both stay the primary's (and open) after the fork.
   */
  workerEnd(slot) {
    const statsFd = this.group.statsFd()
    const seat = statsFd === null ? null : this.group.takeSeat(slot)
    const counted = seat === null ? {} : { seat, more: [{ fd: statsFd, variable: 'STICKY_STATS_FD' }], env: { STICKY_STATS_SEAT: String(seat) } }
    return { fd: this.group.fd(slot), variable: 'STICKY_LISTEN_FD', afterFork: () => {}, ...counted }
  }

  /**
   * The group counts the slot's worker (its stats: `pid`, `state`,
   * `respawns`) from its fork to its exit. A kernel-mode worker says it
   * accepts with an internal cluster message (`cmd: 'NODE_…'`, as
   * cluster's own): the user's 'message' listeners on the worker never see
   * it. Its seat (`end.seat`) is freed when it exits.
   */
  watch(worker, slot, end = {}) {
    const { pid } = worker.process
    // A fork that failed to spawn has no pid: cluster reports its error and exit.
    if (pid !== undefined) this.group.workerForked(slot, pid)
    worker.once('exit', () => {
      if (pid !== undefined) this.group.workerExited(slot, pid)
      if (end.seat !== undefined) this.group.releaseSeat(end.seat)
    })
    worker.process.on('internalMessage', (message) => {
      if (!message || message.cmd !== 'NODE_STICKY_SESSION_RS' || !message.ready) return
      this.onEvent({ kind: eventKinds.SlotReady, slot, pid })
    })
  }

  /** The old worker still accepts on the slot's socket: disconnecting it makes it close its server, drain and exit. */
  retire(worker) {
    if (worker.isConnected()) worker.disconnect()
  }

  listeningFds() {
    return Array.from({ length: this.slots }, (_, slot) => this.group.fd(slot))
  }

  /**
   * The primary sees no connection, so the accept loop's counters stay 0;
   * each slot's queue and drops come from the kernel, what its workers
   * accepted and relieved from the counters they share with the group, its
   * worker from `watch`.
   */
  stats() {
    return { ...this.group.stats(), kernel: true }
  }

  /**
   * Shutdown (`refuseNew`): the group stops taking new connections (their
   * SYNs are dropped: the clients send them again a second later, and are
   * refused once the sockets are closed, or served by a primary started
   * meanwhile); handshakes under way get `HANDSHAKE_SETTLE_MS` to complete.
   * Then the primary's copies close, so each socket closes with its
   * worker's, which serves what is queued on it first (lib/worker.js): no
   * connection is queued or half-open when the last copy closes. Handing the
   * group over (a takeover), the sockets go on taking connections for the
   * new primary: the copies just close. Nothing accepted waits in the
   * primary.
   */
  stopAccepting(drainQueue, { refuseNew = false } = {}) {
    const closeCopies = () => {
      this.group.close()
      this.onEvent({ kind: eventKinds.Drained })
    }
    if (refuseNew && this.group.refuseNewConnections()) setTimeout(closeCopies, HANDSHAKE_SETTLE_MS)
    else process.nextTick(closeCopies)
  }

  /** Every worker has exited (the sockets are already closed). */
  close() {
    debug('closing the kernel-steered group')
    this.group.close()
  }
}

module.exports = { AcceptLoopListener, KernelGroupListener, eventKinds }

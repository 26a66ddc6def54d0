'use strict'

// The portable primary's ledger: which worker channels exist, which slots
// take connections, and where every accepted connection is until a worker
// has taken it. No I/O, no timers: the listener (lib/portable/listener.js)
// feeds it events with the time and carries out the actions it returns, as
// src/core/ledger.rs does for the native accept loop.
//
// Nothing lost. Every connection given to `accept` ends exactly once, as one of
//   - delivered: the worker it was sent to reported it `taken` (action
//     `release`: the primary closes its own copy);
//   - reset: only by `abandonParked`, when the primary shuts down with no
//     worker left to take what is parked, or by `terminate`, when its
//     shutdown ran out of time (action `reset`);
//   - refused: while no worker exists at all (workers the user forks, and
//     none is forked: `setWorkersExist(false)`), instead of being parked
//     (action `unavailable`: answered 503, as @socket.io/sticky does);
// resets and refusals counted in `droppedNoWorker`; or, at `terminate`, sent
// and not reported taken (`release`: the worker has its own copy, if it got
// one, as records sent and not read die with their channel natively). Until
// then it is in exactly one place: parked (no slot takes connections, or the
// start-up wait is not over), or sent on a channel and not yet taken.
// When a channel ends (its worker exited, or left after it was replaced),
// what it had not taken is re-dispatched to each client's next choice, in
// the order it was sent. That is safe: a worker reports a connection taken
// in the same turn of its event loop in which it receives it, before it can
// read a byte of it, so one it did not report was never read.
//
// Actions: { send: { channel, connection } }, { release: connection },
// { reset: connection }, { unavailable: connection }, { replace: channel }
// (tell that worker a new one took its slot), { notify: a listener event
// (lib/listeners.js: eventKinds.SlotReady { slot, pid }, eventKinds.SlotClosed
// { slot, requeued, reason }), or { kind: 'rejected', channel, pid } (the
// listener reports it as an error) }.

const { eventKinds } = require('./contract')

class Ledger {
  /**
   * `slots`: how many; `hrw`: a Rendezvous; `sessions`: a SessionTable
   * ('sid' routing) or null; `stats`: counters to keep (`{ slots: [...] }`).
   */
  constructor({ slots, hrw, sessions, stats }) {
    this.hrw = hrw
    this.sessions = sessions
    this.stats = stats
    /** slot -> its current channel (ready or not), or null */
    this.current = new Array(slots).fill(null)
    /** channel id -> { id, slot, pid, ready, taking, inFlight: Map(connection id -> { connection, route }) } */
    this.channels = new Map()
    /** Connections no slot takes yet, in arrival order: [{ connection, route }]. */
    this.parked = []
    /** Slots whose current channel is ready and taking, sorted. */
    this.live = []
    /** False during the start-up wait: connections are parked. */
    this.accepting = false
    /** False while no worker process exists that could ever take a connection (setupMaster, none forked). */
    this.workersExist = true
    /** Slots a worker was ever started in: the next one is a respawn. */
    this.started = new Set()
    /** Set by `terminate`: whatever comes after is reset. */
    this.terminated = false
    this.actions = []
  }

  // ---- events in -------------------------------------------------------------------

  /** A worker forked into `slot` (channel `id`); it takes connections once it says hello. */
  open(id, slot, pid) {
    this.channels.set(id, { id, slot, pid, ready: false, taking: true, inFlight: new Map() })
    // After the slot's first worker, a respawn (as SlotStats::worker_started).
    const slotStats = this.stats.slots[slot]
    if (this.started.has(slot)) slotStats.respawns++
    this.started.add(slot)
  }

  /**
   * Worker channel `id` says it takes connections. A channel not opened
   * (a worker the user forked) gets the lowest free slot, or is refused.
   * A channel that finds an older one in its slot replaces it.
   */
  hello(now, id, pid) {
    let channel = this.channels.get(id)
    if (!channel) {
      const slot = this.freeSlot()
      if (slot === null) {
        this.stats.rejectedChannels++
        return this.done({ notify: { kind: 'rejected', channel: id, pid } })
      }
      this.open(id, slot, pid)
      channel = this.channels.get(id)
    }
    if (channel.ready || !channel.taking) return this.done()
    channel.ready = true
    const previous = this.current[channel.slot]
    if (previous && previous !== channel) {
      // A rolling reload: the old worker takes nothing more, serves what it
      // has, and drains; its sessions are gone with it.
      previous.taking = false
      this.actions.push({ replace: previous.id })
      if (this.sessions) this.sessions.forgetSlot(channel.slot)
    }
    this.current[channel.slot] = channel
    const slotStats = this.stats.slots[channel.slot]
    slotStats.pid = pid
    this.rebuildLive()
    this.actions.push({ notify: { kind: eventKinds.SlotReady, slot: channel.slot, pid } })
    this.unpark(now)
    return this.done()
  }

  /** A new connection, routed by `route` (`{ hash }`, `{ sid }` or `{ newSession: { handshake } }`). */
  accept(now, route, connection) {
    this.dispatch(now, { connection, route })
    return this.done()
  }

  /** The worker of channel `id` took the connections `ids`. */
  taken(id, ids) {
    const channel = this.channels.get(id)
    if (!channel) return this.done()
    const slotStats = this.stats.slots[channel.slot]
    for (const connectionId of ids) {
      const held = channel.inFlight.get(connectionId)
      if (!held) continue
      channel.inFlight.delete(connectionId)
      slotStats.pending--
      slotStats.taken++
      this.actions.push({ release: held.connection })
    }
    return this.done()
  }

  /** The worker of channel `id` stops taking connections (it is closing); it still serves what it was sent. */
  leaving(id) {
    const channel = this.channels.get(id)
    if (channel && channel.taking) {
      channel.taking = false
      this.rebuildLive()
    }
    return this.done()
  }

  /** Channel `id` is gone (its worker disconnected or exited): what it had not taken goes elsewhere. */
  closed(now, id, reason) {
    const channel = this.channels.get(id)
    if (!channel) return this.done()
    this.channels.delete(id)
    const { slot } = channel
    const slotStats = this.stats.slots[slot]
    const requeue = [...channel.inFlight.values()]
    slotStats.pending -= requeue.length
    slotStats.redispatched += requeue.length
    if (this.current[slot] === channel) {
      this.current[slot] = null
      slotStats.pid = 0
      if (this.sessions) this.sessions.forgetSlot(slot)
    }
    this.rebuildLive()
    if (channel.ready) this.actions.push({ notify: { kind: eventKinds.SlotClosed, slot, requeued: requeue.length, reason } })
    for (const held of requeue) this.dispatch(now, held)
    return this.done()
  }

  /** A worker reports an engine.io session it opened (or closed). */
  session(now, id, sid, opened) {
    const channel = this.channels.get(id)
    if (!this.sessions || !channel) return this.done()
    if (!opened) this.sessions.close(sid)
    else if (!this.sessions.open(sid, channel.slot, now)) this.stats.sessionsRefused++
    return this.done()
  }

  /** The start-up wait is over: dispatch what was parked, and what comes. */
  startAccepting(now) {
    this.accepting = true
    this.unpark(now)
    return this.done()
  }

  /** Forgets idle sessions. */
  expire(now) {
    if (this.sessions) this.sessions.expire(now)
    return this.done()
  }

  /**
   * Whether any worker process exists that may yet take connections (the
   * user forks the workers). While none does, what is parked and every new
   * connection that would be parked are refused instead of waiting for a
   * worker nobody will fork.
   */
  setWorkersExist(exist) {
    this.workersExist = exist
    if (!exist) {
      for (const { connection } of this.parked.splice(0)) this.refuse(connection)
      this.stats.parked = 0
    }
    return this.done()
  }

  /**
   * The primary stops for good (its shutdown ran out of time): what is
   * parked is reset and counted; the primary's copies of what was sent and
   * not yet reported taken are closed (a worker that received one has its
   * own copy). Nothing is taken after this.
   */
  terminate() {
    for (const { connection } of this.parked.splice(0)) {
      this.stats.droppedNoWorker++
      this.actions.push({ reset: connection })
    }
    this.stats.parked = 0
    for (const channel of this.channels.values()) {
      this.stats.slots[channel.slot].pending -= channel.inFlight.size
      for (const { connection } of channel.inFlight.values()) this.actions.push({ release: connection })
      channel.inFlight.clear()
    }
    this.terminated = true
    return this.done()
  }

  /** Shutting down with no slot taking connections: what is parked is reset (and counted). */
  abandonParked() {
    if (this.live.length > 0) return this.done()
    for (const { connection } of this.parked.splice(0)) {
      this.stats.droppedNoWorker++
      this.actions.push({ reset: connection })
    }
    this.stats.parked = 0
    return this.done()
  }

  // ---- what the listener asks --------------------------------------------------------

  /** Whether the session table knows `sid` (true without a table). */
  knowsSession(sid) {
    return !this.sessions || this.sessions.has(sid)
  }

  /** Nothing accepted waits for a worker: nothing parked, nothing sent and not taken. */
  isDrained() {
    if (this.parked.length > 0) return false
    for (const channel of this.channels.values()) if (channel.inFlight.size > 0) return false
    return true
  }

  sessionsOf(slot) {
    return this.sessions ? this.sessions.sessionsOf(slot) : 0
  }

  // ---- internals -----------------------------------------------------------------------

  done(action) {
    if (action) this.actions.push(action)
    const actions = this.actions
    this.actions = []
    return actions
  }

  freeSlot() {
    const index = this.current.findIndex((channel, slot) => channel === null && ![...this.channels.values()].some((other) => other.slot === slot))
    return index < 0 ? null : index
  }

  rebuildLive() {
    this.live = []
    this.current.forEach((channel, slot) => {
      const live = Boolean(channel && channel.ready && channel.taking)
      // The stats field `state`: 1 live, 0 down (its names are the field's `values`).
      this.stats.slots[slot].state = Number(live)
      if (live) this.live.push(slot)
    })
  }

  choose(now, route) {
    if (route.hash !== undefined) return this.hrw.pick(route.hash, this.live)
    if (route.sid !== undefined) {
      const owner = this.sessions ? this.sessions.lookup(route.sid, now) : null
      // Unknown (expired, or its worker died): any worker answers "Session
      // ID unknown", and the client reconnects with a new handshake.
      return owner !== null && this.live.includes(owner) ? owner : this.pickNewSession(false)
    }
    return this.pickNewSession(route.newSession.handshake)
  }

  pickNewSession(handshake) {
    if (this.sessions) return this.sessions.pickNew(this.live, handshake)
    return this.live.length > 0 ? this.live[0] : null
  }

  dispatch(now, held) {
    if (this.terminated) {
      this.stats.droppedNoWorker++
      this.actions.push({ reset: held.connection })
      return
    }
    const slot = this.accepting ? this.choose(now, held.route) : null
    if (slot === null) {
      if (!this.workersExist) return this.refuse(held.connection)
      this.parked.push(held)
      this.stats.parked = this.parked.length
      return
    }
    const channel = this.current[slot]
    channel.inFlight.set(held.connection.id, held)
    const slotStats = this.stats.slots[slot]
    slotStats.dispatched++
    slotStats.pending++
    this.actions.push({ send: { channel: channel.id, connection: held.connection } })
  }

  /** No worker exists to serve `connection`: answered 503 and counted. */
  refuse(connection) {
    this.stats.droppedNoWorker++
    this.actions.push({ unavailable: connection })
  }

  unpark(now) {
    if (!this.accepting || this.live.length === 0 || this.parked.length === 0) return
    const parked = this.parked.splice(0)
    this.stats.parked = 0
    for (const held of parked) this.dispatch(now, held)
  }
}

module.exports = { Ledger }

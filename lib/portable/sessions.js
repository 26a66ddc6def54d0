'use strict'

// Which slot owns each engine.io session, and where new sessions go: the
// JavaScript copy of src/core/sessions.rs, for the portable path. No I/O; time is
// passed in (milliseconds from any fixed origin).

const U64 = (1n << 64n) - 1n

class SessionTable {
  /** `balance`: 'least-connection' | 'round-robin' | 'random'. */
  constructor(slots, balance, ttlMs, maxEntries, randomSeed) {
    /** sid -> { slot, lastSeen } */
    this.entries = new Map()
    /** Sessions per slot (entries owned). */
    this.owned = new Array(slots).fill(0)
    /**
     * Handshakes sent to each slot whose session has not been reported yet, in
     * two generations (as src/core/sessions.rs `Provisional`): a sweep ages
     * `current` into `previous` and drops the old `previous`.
     */
    this.provisional = Array.from({ length: slots }, () => ({ current: 0, previous: 0 }))
    this.maxEntries = maxEntries
    this.ttlMs = ttlMs
    this.balance = balance
    this.roundRobinNext = 0
    // xorshift must not start at zero.
    this.randomState = (BigInt(randomSeed) & U64) | 1n
  }

  get size() {
    return this.entries.size
  }

  sessionsOf(slot) {
    return this.owned[slot] || 0
  }

  /** Whether `sid` has an entry (without refreshing it). */
  has(sid) {
    return this.entries.has(sid)
  }

  /** The slot that owns `sid` (refreshing the entry), or null. */
  lookup(sid, now) {
    const entry = this.entries.get(sid)
    if (!entry) return null
    entry.lastSeen = now
    return entry.slot
  }

  /**
   * A worker reported a session it opened; false when the table is full (its
   * client reconnects). Only a session's first report settles an in-flight
   * handshake: `setupWorker` reports each session twice.
   */
  open(sid, slot, now) {
    if (slot >= this.owned.length) return false
    const entry = this.entries.get(sid)
    if (entry) {
      entry.lastSeen = now
      if (entry.slot === slot) return true
      this.release(entry.slot)
      entry.slot = slot
    } else {
      if (this.entries.size >= this.maxEntries) return false
      const inFlight = this.provisional[slot]
      if (inFlight.current > 0) inFlight.current--
      else inFlight.previous = Math.max(0, inFlight.previous - 1)
      this.entries.set(sid, { slot, lastSeen: now })
    }
    this.owned[slot]++
    return true
  }

  close(sid) {
    const entry = this.entries.get(sid)
    if (!entry) return
    this.entries.delete(sid)
    this.release(entry.slot)
  }

  release(slot) {
    if (slot < this.owned.length) this.owned[slot] = Math.max(0, this.owned[slot] - 1)
  }

  /** Forgets every session of a slot whose worker is gone. */
  forgetSlot(slot) {
    for (const [sid, entry] of this.entries) if (entry.slot === slot) this.entries.delete(sid)
    if (slot < this.owned.length) {
      this.owned[slot] = 0
      this.provisional[slot] = { current: 0, previous: 0 }
    }
  }

  /** Forgets entries idle for longer than the TTL, and ages the provisional counts. */
  expire(now) {
    for (const [sid, entry] of this.entries) {
      if (now - entry.lastSeen > this.ttlMs) {
        this.entries.delete(sid)
        this.release(entry.slot)
      }
    }
    for (const inFlight of this.provisional) {
      inFlight.previous = inFlight.current
      inFlight.current = 0
    }
  }

  /** The slot for a new session among `live` (sorted); a handshake counts provisionally. */
  pickNew(live, handshake) {
    if (live.length === 0) return null
    let slot
    if (this.balance === 'least-connection') {
      const load = (candidate) => this.owned[candidate] + this.provisional[candidate].current + this.provisional[candidate].previous
      const least = Math.min(...live.map(load))
      const tied = live.filter((candidate) => load(candidate) === least)
      slot = tied[this.roundRobinNext % tied.length]
      this.roundRobinNext++
    } else if (this.balance === 'round-robin') {
      slot = live[this.roundRobinNext % live.length]
      this.roundRobinNext++
    } else {
      let x = this.randomState
      x ^= (x << 13n) & U64
      x ^= x >> 7n
      x ^= (x << 17n) & U64
      this.randomState = x
      slot = live[Number(x % BigInt(live.length))]
    }
    if (handshake) this.provisional[slot].current++
    return slot
  }
}

module.exports = { SessionTable }

'use strict'
// The portable primary's ledger (lib/portable/ledger.js) keeps the native
// ledger's guarantees: every accepted connection ends exactly once
// (delivered to a worker, or reset only when the primary shuts down with no
// worker left), and until then is in exactly one place; a connection goes to
// its rendezvous first choice among the slots live when it is sent; a dead
// or replaced worker's untaken connections go to their next choice. Random
// event sequences (replay one with STICKY_FUZZ_SEED=<seed>), then fixed cases.

const { Ledger } = require('../lib/portable/ledger')
const { Rendezvous } = require('../lib/portable/hrw')
const { SessionTable } = require('../lib/portable/sessions')
const { FUZZ_SEED: SEED, seededRandom } = require('./helpers')

function counters(slots) {
  return { parked: 0, droppedNoWorker: 0, rejectedChannels: 0, sessionsRefused: 0, slots: Array.from({ length: slots }, () => ({ pid: 0, state: 0, respawns: 0, dispatched: 0, taken: 0, redispatched: 0, pending: 0 })) }
}

/** Runs a ledger, checking each action against a model of where every connection is. */
class Harness {
  constructor(slots, { sid = false } = {}) {
    this.hrw = new Rendezvous(6274051578553076311n)
    this.stats = counters(slots)
    this.ledger = new Ledger({ slots, hrw: this.hrw, sessions: sid ? new SessionTable(slots, 'least-connection', 1000, 100, 1n) : null, stats: this.stats })
    /** connection id -> 'parked' | channel id | 'released' | 'reset' */
    this.where = new Map()
    this.routeOf = new Map()
    this.nextId = 0
    this.now = 0
  }

  run(actions) {
    const live = [...this.ledger.live]
    for (const action of actions) {
      if (action.send) {
        const { channel, connection } = action.send
        const state = this.where.get(connection.id)
        if (state === 'released' || state === 'reset') throw new Error(`connection ${connection.id} sent after it ended (${state})`)
        const owner = this.ledger.channels.get(channel)
        if (!owner || !owner.ready || !owner.taking) throw new Error(`connection ${connection.id} sent to channel ${channel}, which does not take connections`)
        const route = this.routeOf.get(connection.id)
        if (route.hash !== undefined) {
          const first = this.hrw.pick(route.hash, this.ledger.live)
          if (first !== owner.slot) throw new Error(`connection ${connection.id} sent to slot ${owner.slot}, its first choice among ${this.ledger.live} is ${first}`)
        }
        this.where.set(connection.id, channel)
      } else if (action.release) {
        if (typeof this.where.get(action.release.id) !== 'number') throw new Error(`connection ${action.release.id} released from ${this.where.get(action.release.id)}`)
        this.where.set(action.release.id, 'released')
      } else if (action.reset) {
        if (this.where.get(action.reset.id) !== 'parked') throw new Error(`connection ${action.reset.id} reset from ${this.where.get(action.reset.id)}`)
        this.where.set(action.reset.id, 'reset')
      }
    }
    // Whatever was not sent by these actions is where the ledger says.
    for (const held of this.ledger.parked) this.where.set(held.connection.id, 'parked')
    this.checkPlaces(live)
  }

  checkPlaces() {
    const seen = new Map()
    for (const held of this.ledger.parked) seen.set(held.connection.id, 'parked')
    for (const channel of this.ledger.channels.values()) {
      for (const id of channel.inFlight.keys()) {
        if (seen.has(id)) throw new Error(`connection ${id} is in two places`)
        seen.set(id, channel.id)
      }
    }
    for (const [id, state] of this.where) {
      const ended = state === 'released' || state === 'reset'
      if (ended && seen.has(id)) throw new Error(`connection ${id} ended (${state}) but is still held`)
      if (!ended && seen.get(id) !== state) throw new Error(`connection ${id} should be at ${state}, the ledger has it at ${seen.get(id)}`)
    }
    const pending = this.stats.slots.reduce((sum, slot) => sum + slot.pending, 0)
    const inFlight = [...this.ledger.channels.values()].reduce((sum, channel) => sum + channel.inFlight.size, 0)
    if (pending !== inFlight) throw new Error(`pending counts ${pending}, ${inFlight} are in flight (not taken)`)
  }

  accept(route) {
    const id = ++this.nextId
    this.routeOf.set(id, route)
    this.where.set(id, 'parked')
    this.run(this.ledger.accept(this.now, route, { id }))
    return id
  }
}

test(`random event sequences: every connection ends exactly once, in one place until then, first choices only (STICKY_FUZZ_SEED=${SEED})`, () => {
  const rng = seededRandom(SEED)
  for (let sequence = 0; sequence < 300; sequence++) {
    const slots = 1 + rng.int(4)
    const harness = new Harness(slots, { sid: rng.chance(0.3) })
    let channelId = 0
    const opened = []
    for (let slot = 0; slot < slots; slot++) {
      harness.ledger.open(++channelId, slot, 1000 + channelId)
      opened.push(channelId)
    }
    for (let step = 0; step < 200; step++) {
      harness.now += rng.int(50)
      const channels = [...harness.ledger.channels.values()]
      const some = () => channels[rng.int(channels.length)]
      const roll = rng.int(100)
      if (roll < 40) {
        const kind = rng.int(3)
        harness.accept(kind === 0 ? { hash: BigInt(rng.int(2 ** 30)) * 7919n } : kind === 1 ? { sid: `s${rng.int(20)}` } : { newSession: { handshake: rng.chance(0.5) } })
      } else if (roll < 55 && channels.length) {
        const channel = some()
        harness.run(harness.ledger.hello(harness.now, channel.id, 1000 + channel.id))
      } else if (roll < 70 && channels.length) {
        const channel = some()
        const ids = [...channel.inFlight.keys()].filter(() => rng.chance(0.7))
        harness.run(harness.ledger.taken(channel.id, ids))
      } else if (roll < 75 && channels.length) {
        harness.run(harness.ledger.leaving(some().id))
      } else if (roll < 82 && channels.length) {
        harness.run(harness.ledger.closed(harness.now, some().id, 'test'))
      } else if (roll < 90) {
        // A worker forked into a slot (a respawn, or a reload's new worker).
        harness.ledger.open(++channelId, rng.int(slots), 1000 + channelId)
      } else if (roll < 95) {
        harness.run(harness.ledger.startAccepting(harness.now))
      } else if (channels.length) {
        harness.run(harness.ledger.session(harness.now, some().id, `s${rng.int(20)}`, rng.chance(0.8)))
      }
    }
    // The end: every worker goes; a fresh one per slot takes everything.
    for (const channel of [...harness.ledger.channels.values()]) harness.run(harness.ledger.closed(harness.now, channel.id, 'end'))
    harness.run(harness.ledger.startAccepting(harness.now))
    for (let slot = 0; slot < slots; slot++) {
      harness.ledger.open(++channelId, slot, 1)
      harness.run(harness.ledger.hello(harness.now, channelId, 1))
    }
    for (const channel of [...harness.ledger.channels.values()]) harness.run(harness.ledger.taken(channel.id, [...channel.inFlight.keys()]))
    expect(harness.ledger.isDrained()).toBe(true)
    const notEnded = [...harness.where].filter(([, state]) => state !== 'released')
    expect({ sequence, notEnded }).toEqual({ sequence, notEnded: [] })
  }
})

test("a dead worker's untaken connections go to each client's next choice, and come back to its slot once respawned", () => {
  const harness = new Harness(3)
  for (let slot = 0; slot < 3; slot++) harness.ledger.open(slot + 1, slot, 100 + slot)
  for (let slot = 0; slot < 3; slot++) harness.run(harness.ledger.hello(0, slot + 1, 100 + slot))
  harness.run(harness.ledger.startAccepting(0))
  const keys = Array.from({ length: 60 }, (_, i) => BigInt(i) * 0x9e3779b97f4a7c15n & ((1n << 64n) - 1n))
  const first = new Map(keys.map((hash) => [hash, harness.hrw.pick(hash, [0, 1, 2])]))
  const ids = keys.map((hash) => harness.accept({ hash }))
  const onSlotOne = ids.filter((id, i) => first.get(keys[i]) === 1)
  expect(onSlotOne.length).toBeGreaterThan(5)
  // Slot 1's worker dies having taken nothing: its connections move to their second choice.
  harness.run(harness.ledger.closed(1, 2, 'killed'))
  for (const id of onSlotOne) {
    const hash = keys[ids.indexOf(id)]
    expect(harness.ledger.channels.get(harness.where.get(id)).slot).toBe(harness.hrw.ranked(hash, [0, 1, 2])[1])
  }
  expect(harness.stats.slots[1].redispatched).toBe(onSlotOne.length)
  // Nobody else moved; the respawned worker takes slot 1's clients back.
  harness.ledger.open(4, 1, 104)
  harness.run(harness.ledger.hello(2, 4, 104))
  expect(harness.hrw.pick(keys[ids.indexOf(onSlotOne[0])], harness.ledger.live)).toBe(1)
  const again = harness.accept({ hash: keys[ids.indexOf(onSlotOne[0])] })
  expect(harness.where.get(again)).toBe(4)
})

test('a reload: the new worker takes the slot when it says hello, the old one is told it was replaced and keeps what it was sent', () => {
  const harness = new Harness(1)
  harness.ledger.open(1, 0, 100)
  harness.run(harness.ledger.hello(0, 1, 100))
  harness.run(harness.ledger.startAccepting(0))
  const before = harness.accept({ hash: 1n })
  expect(harness.where.get(before)).toBe(1)
  harness.ledger.open(2, 0, 200)
  const actions = harness.ledger.hello(1, 2, 200)
  expect(actions).toEqual(expect.arrayContaining([{ replace: 1 }, { notify: { kind: 'slot-ready', slot: 0, pid: 200 } }]))
  harness.run(actions)
  expect(harness.where.get(harness.accept({ hash: 2n }))).toBe(2)
  // The old worker still takes what it was sent before.
  harness.run(harness.ledger.taken(1, [before]))
  expect(harness.where.get(before)).toBe('released')
  expect(harness.stats.slots[0]).toEqual(expect.objectContaining({ pid: 200, respawns: 1, state: 1, dispatched: 2, taken: 1, pending: 1 }))
})

test('until every worker said hello (or the start-up wait ended), connections wait parked; shutting down with no worker resets them, counted', () => {
  const harness = new Harness(2)
  harness.ledger.open(1, 0, 100)
  harness.ledger.open(2, 1, 101)
  harness.run(harness.ledger.hello(0, 1, 100))
  const early = harness.accept({ hash: 5n })
  expect(harness.where.get(early)).toBe('parked')
  expect(harness.stats.parked).toBe(1)
  harness.run(harness.ledger.startAccepting(1))
  expect(harness.where.get(early)).toBe(1)
  harness.run(harness.ledger.closed(2, 1, 'killed'))
  expect(harness.where.get(early)).toBe('parked')
  expect(harness.ledger.isDrained()).toBe(false)
  harness.run(harness.ledger.abandonParked())
  expect(harness.where.get(early)).toBe('reset')
  expect(harness.stats).toEqual(expect.objectContaining({ parked: 0, droppedNoWorker: 1 }))
  expect(harness.ledger.isDrained()).toBe(true)
})

test('a worker the user forked gets the lowest free slot; one too many is refused and counted', () => {
  const harness = new Harness(2, { sid: true })
  harness.run(harness.ledger.hello(0, 7, 700))
  harness.run(harness.ledger.hello(0, 8, 800))
  expect([harness.ledger.channels.get(7).slot, harness.ledger.channels.get(8).slot]).toEqual([0, 1])
  expect(harness.ledger.hello(0, 9, 900)).toEqual([{ notify: { kind: 'rejected', channel: 9, pid: 900 } }])
  expect(harness.stats.rejectedChannels).toBe(1)
  // Sessions reported by slot 1's worker route there.
  harness.run(harness.ledger.startAccepting(0))
  harness.run(harness.ledger.session(0, 8, 'abc', true))
  expect(harness.where.get(harness.accept({ sid: 'abc' }))).toBe(8)
})

test(`least-connection: a burst of handshakes lands evenly whatever the order and number of their sessions' reports (setupWorker reports each twice) (STICKY_FUZZ_SEED=${SEED})`, () => {
  const rng = seededRandom(SEED)
  for (let sequence = 0; sequence < 300; sequence++) {
    const slots = 1 + rng.int(4)
    const live = Array.from({ length: slots }, (_, slot) => slot)
    const table = new SessionTable(slots, 'least-connection', 60000, 1000, 1n)
    const picked = []
    const handshakes = new Array(slots).fill(0)
    for (let step = 0; step < 120; step++) {
      if (picked.length === 0 || rng.chance(0.5)) {
        const slot = table.pickNew(live, true)
        if (handshakes[slot] !== Math.min(...handshakes)) throw new Error(`sequence ${sequence}: picked slot ${slot} with handshakes ${handshakes}`)
        handshakes[slot]++
        picked.push(slot)
      } else {
        const index = rng.int(picked.length)
        if (!table.open(`sid${index}`, picked[index], 0)) throw new Error(`sequence ${sequence}: report of sid${index} refused`)
      }
    }
  }
})

test('least-connection: a handshake in flight at a sweep still counts; one never reported is forgotten after the next sweep', () => {
  const table = new SessionTable(2, 'least-connection', 1000, 100, 1n)
  expect(table.pickNew([0, 1], true)).toBe(0)
  table.expire(10)
  expect(table.pickNew([0, 1], true)).toBe(1)
  expect(table.open('a', 0, 20)).toBe(true)
  table.expire(30)
  table.expire(40)
  expect(table.pickNew([0, 1], true)).toBe(1)
})

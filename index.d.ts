// Type definitions for sticky-session-rs (hand-written; the generated
// binding.d.ts describes the native layer underneath).

import type { Server } from 'net'

/** Options of {@link listen}. */
export interface ListenOptions {
  /**
   * Number of workers (slots), each a `cluster` worker.
   * @defaultValue `os.cpus().length`
   */
  workers?: number
  /**
   * Extra environment variables for every worker (passed to `cluster.fork(env)`).
   * Each worker also gets `STICKY_WORKER_SLOT`: its stable slot, `0..workers-1`.
   * @defaultValue `{}`
   */
  env?: NodeJS.ProcessEnv
  /**
   * Host or IP address to listen on. The default `'::'` is dual-stack: IPv4
   * clients connect too (falls back to `'0.0.0.0'` where IPv6 is unavailable).
   * @defaultValue `'::'`
   * @example `host: '127.0.0.1'`
   */
  host?: string
  /**
   * Length of the kernel's queue of connections not yet accepted.
   * @defaultValue `511`
   */
  backlog?: number
  /**
   * Seed of the rendezvous hash that maps clients to slots: an unsigned 64-bit
   * integer (number, bigint or decimal string). Fixed by default, so a client
   * reaches the same slot after the primary restarts; change it to reshuffle.
   * @defaultValue a fixed constant
   */
  seed?: number | bigint | string
  /**
   * Connections handed to one slot and not yet acknowledged by its worker.
   * Past this limit a new connection for that slot is reset and counted in
   * `stats().slots[n].droppedQueueFull`.
   * @defaultValue `1024`
   */
  maxPendingPerSlot?: number
  /**
   * Connections held by the primary while no worker at all is alive; past
   * this limit they are reset and counted in `stats().droppedNoWorker`.
   * @defaultValue `4096`
   */
  maxParked?: number
  /**
   * Milliseconds to wait, at start-up, for every worker to be ready before
   * accepting with the ones that are (connections wait in the kernel queue).
   * @defaultValue `10000`
   */
  startupWait?: number
}

/** Counters of one slot. */
export interface SlotStats {
  slot: number
  /** Pid of the slot's current worker, `0` while it has none. */
  pid: number
  /** `'live'`: the worker takes connections; `'down'`: its clients go to their next choice. */
  state: 'live' | 'down'
  /** Workers started in this slot after the first. */
  respawns: number
  /** Connections sent to this slot (including re-dispatched ones). */
  dispatched: number
  /** Connections the worker confirmed it took. */
  acknowledged: number
  /** Connections this slot's worker never took, sent to another slot when its channel closed. */
  redispatched: number
  /** Connections reset because `maxPendingPerSlot` was reached. */
  droppedQueueFull: number
  /** Connections handed off and not yet acknowledged. */
  pending: number
}

/** Counters of the primary's accept loop. */
export interface Stats {
  accepted: number
  /** Failed `accept` calls (EMFILE, ENFILE, ...), each retried after a pause. */
  acceptErrors: number
  /** Every connection the primary reset, whatever the reason. */
  dropped: number
  droppedNoWorker: number
  /** Connections waiting for any worker to come up. */
  parked: number
  slots: SlotStats[]
}

/**
 * sticky-session 1.1.2's API. In the cluster primary: binds `port`, forks the
 * workers, returns `false`; `server` then emits `'listening'` (and
 * `server.address()` reports the bound address), or `'error'` (e.g.
 * `EADDRINUSE`). In a worker: feeds `server` the connections the primary
 * routes to it and returns `true`.
 *
 * @throws an `Error` with `code` `ERR_STICKY_INVALID_SERVER`,
 *   `ERR_STICKY_INVALID_PORT` or `ERR_STICKY_INVALID_OPTION` for bad arguments,
 *   and `ERR_STICKY_NO_CHANNEL` in a worker not forked by `listen`.
 * @example
 * ```js
 * const sticky = require('sticky-session-rs')
 * const server = require('http').createServer((req, res) => res.end('hi'))
 * if (!sticky.listen(server, 3000)) {
 *   server.once('listening', () => console.log('server started on 3000'))
 * }
 * ```
 */
export declare function listen(server: Server, port: number | string, options?: ListenOptions): boolean

/** Counters of the primary's accept loop; `null` in a worker or before `listen`. */
export declare function stats(): Stats | null

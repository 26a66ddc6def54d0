// Type definitions for sticky-session-rs (hand-written; the generated
// binding.d.ts describes the native layer underneath).

import type { Server } from 'net'

/**
 * The socketio-sticky-session shape: `sticky(server)`, `sticky(num, server)`,
 * `sticky(options, serverOrFactory)`. In the primary it returns a server whose
 * `.listen(port[, host][, callback])` starts balancing; in a worker the factory
 * runs and its server is returned (its `listen` binds no public port).
 * @example
 * ```js
 * const sticky = require('sticky-session-rs')
 * sticky({ num: 2, proxy: true }, () => {
 *   const server = require('http').createServer()
 *   require('socket.io')(server)
 *   return server
 * }).listen(3000, () => console.log('server started on 3000 port'))
 * ```
 */
declare function sticky(serverOrFactory: Server | (() => Server)): sticky.StickyServer
declare function sticky(num: number, serverOrFactory: Server | (() => Server)): sticky.StickyServer
declare function sticky(options: sticky.SocketioStickySessionOptions, serverOrFactory: Server | (() => Server)): sticky.StickyServer

declare namespace sticky {

  /** What identifies a client. */
  export type Routing = 'ip' | 'header' | 'proxy-protocol' | 'sid'

  /** Where new engine.io sessions (requests without `sid`) go in `'sid'` routing. */
  export type LoadBalancingMethod = 'least-connection' | 'round-robin' | 'random'

  /** Routing options, accepted by every API shape. */
  export interface RoutingOptions {
    /**
     * What identifies a client:
     * - `'ip'`: the connection's peer address (`::ffff:a.b.c.d` counts as `a.b.c.d`).
     * - `'header'`: a forwarding header set by a trusted proxy ({@link RoutingOptions.header}).
     * - `'proxy-protocol'`: the source address of a PROXY protocol v1/v2 header
     *   sent by a trusted proxy (HAProxy `send-proxy[-v2]`, nginx stream
     *   `proxy_protocol on`, AWS NLB). Connections without a valid header are
     *   closed and counted. Workers see the client as `socket.remoteAddress`.
     * - `'sid'`: the engine.io session id in the request line; new sessions by
     *   {@link RoutingOptions.loadBalancingMethod}. Needs plain HTTP to the primary.
     * @defaultValue `'ip'`
     */
    routing?: Routing
    /**
     * `'header'` routing: the header naming the client, case-insensitive, in
     * `X-Forwarded-For` format (comma-separated addresses), or `'forwarded'` for
     * RFC 7239 `Forwarded: for=...`. The client is the rightmost address that is
     * not itself a trusted proxy.
     * @defaultValue `'x-forwarded-for'`
     * @example `header: 'x-real-ip'`
     */
    header?: string
    /**
     * Peers whose PROXY headers and forwarding headers are believed: IP
     * addresses, CIDR ranges, and the keywords `'loopback'` (127.0.0.0/8, ::1),
     * `'linklocal'`, `'uniquelocal'`. Headers from anyone else are ignored
     * (`'header'`: route by the peer) or refused (`'proxy-protocol'`).
     * @defaultValue `['loopback']`
     * @example `trustedProxies: ['10.0.0.0/8', 'loopback']`
     */
    trustedProxies?: string[] | string
    /**
     * `'header'` routing, when a trusted proxy sends no usable header: `true`
     * routes by the proxy's address, `false` closes the connection (counted in
     * `stats().droppedInvalidHeader`).
     * @defaultValue `true` (`false` in the socketio-sticky-session shape, as there)
     */
    ignoreMissingHeader?: boolean
    /**
     * Milliseconds a client has to send its PROXY header or request head
     * (modes other than `'ip'`); then it is closed and counted.
     * @defaultValue `5000`
     */
    headerTimeout?: number
    /**
     * The most bytes read to find the routing key.
     * @defaultValue `16384`
     */
    maxHeaderBytes?: number
    /**
     * Connections reading their header beyond which, once the primary's
     * descriptor budget is used up, the oldest is closed (counted in
     * `stats().droppedHeaderOverflow`).
     * @defaultValue `1024`
     */
    maxPendingHeaders?: number
    /**
     * `'sid'` routing: where new sessions go. `'least-connection'` counts
     * sessions per worker, and handshakes as they are dispatched, so a burst
     * spreads evenly.
     * @defaultValue `'least-connection'`
     */
    loadBalancingMethod?: LoadBalancingMethod
    /**
     * `'sid'` routing: milliseconds a session entry lives without a request
     * carrying its sid (polling clients send one at least every `pingInterval`).
     * @defaultValue `120000`
     */
    sessionTtl?: number
    /**
     * `'sid'` routing: the most sessions remembered.
     * @defaultValue `100000`
     */
    maxSessions?: number
  }

  /** Options of {@link listen}. */
  export interface ListenOptions extends RoutingOptions {
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
     * Connections handed to one slot and not yet taken by its worker,
     * beyond which the slot is over its share. The primary holds them anyway
     * (a burst is not reset); only once its descriptor budget (three quarters
     * of the open-file limit, at most 65,536) is used up does it pause
     * accepting for such a slot, and then reset its new connections (counted
     * in `stats().slots[n].droppedQueueFull`, reported as an
     * `ERR_STICKY_OVERLOAD` warning).
     * @defaultValue `1024`
     */
    maxPendingPerSlot?: number
    /**
     * Connections held by the primary while no worker at all is alive,
     * beyond which, once the descriptor budget is used up, new ones are
     * reset (counted in `stats().droppedNoWorker`).
     * @defaultValue `4096`
     */
    maxParked?: number
    /**
     * Milliseconds to wait, at start-up, for every worker to be ready before
     * accepting with the ones that are (connections wait in the kernel queue).
     * @defaultValue `10000`
     */
    startupWait?: number
    /**
     * Milliseconds a closing worker (shutdown, reload, `server.close()`) has to
     * finish its in-flight requests; then its remaining connections are closed
     * and it exits. The primary kills workers still running a second later.
     * @defaultValue `10000`
     */
    shutdownTimeout?: number
    /**
     * Install signal handlers: SIGTERM and SIGINT to the primary shut down
     * gracefully (stop accepting, drain, exit 0); SIGHUP reloads the workers
     * one at a time. Workers leave SIGINT to the primary and close gracefully
     * on SIGTERM.
     * @defaultValue `true`
     */
    handleSignals?: boolean
    /**
     * Kernel-steered IP routing: one `SO_REUSEPORT` listening socket per slot,
     * steered by a classic BPF program hashing the source address, so the
     * primary takes no part in connections at all (fastest). Only with
     * `routing: 'ip'`; the hash is `hash(ip) % workers` over stable slots, not
     * the rendezvous hash. When a worker dies its clients wait (queued on its
     * slot's socket) for the respawned worker instead of moving. Falls back to
     * the accept loop, with a warning, where the kernel refuses.
     * @defaultValue `false`
     */
    kernel?: boolean
    /**
     * Socket takeover, to replace the whole app (primary and workers) without
     * refusing a connection. A primary with `takeover: true` offers its
     * listening socket(s) to a later primary of the same app: started by the
     * same user for the same `host` and `port` while it runs, that one
     * receives the socket over a private Unix socket instead of binding (no
     * `EADDRINUSE`), starts its workers, and once every one is ready tells the
     * old primary to stop accepting; the old primary drains as {@link close}
     * does and exits 0. Clients keep their slot (same `workers` and `seed`).
     * Each side writes one line about the handover on stderr.
     *
     * With `kernel: true` the whole kernel-steered group moves, so the new
     * primary needs the same `kernel`, `workers` and `seed`, or it gets
     * `ERR_STICKY_TAKEOVER_MISMATCH`. If its workers are not all ready within
     * `startupWait`, the old primary goes on serving and the new one closes
     * with `ERR_STICKY_TAKEOVER_TIMEOUT`. A process of another user gets
     * nothing. Linux only (`ERR_STICKY_TAKEOVER_UNSUPPORTED` elsewhere);
     * not for port 0. With no primary to take over from, the port is bound
     * as usual.
     * @defaultValue `false`
     * @example
     * ```js
     * // Deploy: start the new release while the old one runs.
     * sticky.listen(server, 3000, { takeover: true })
     * ```
     */
    takeover?: boolean
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
    /** Connections the slot's workers took (read from their channel), as the primary last looked (every 10 ms while some are on their way). */
    acknowledged: number
    /** Connections this slot's worker never took, sent to another slot when its channel closed. */
    redispatched: number
    /** New connections reset because the descriptor budget was used up while this slot was over `maxPendingPerSlot`. */
    droppedQueueFull: number
    /** Connections waiting for the slot's channel, or handed off and not yet seen taken by its worker. */
    pending: number
    /** Engine.io sessions this slot owns (`'sid'` routing). */
    sessions: number
  }

  /** Counters of the primary's accept loop (with `kernel: true`: only the slots; the counters stay 0). */
  export interface Stats {
    /** True in kernel-steered mode, where the primary sees no connection. */
    kernel?: boolean
    accepted: number
    /** Failed `accept` calls (EMFILE, ENFILE, ...), each retried after a pause. */
    acceptErrors: number
    /** Every connection the primary reset, whatever the reason. */
    dropped: number
    droppedNoWorker: number
    /** Connections waiting for any worker to come up. */
    parked: number
    /** Connections whose PROXY header or request head is being read now. */
    readingHeader: number
    /** Closed: no complete header within `headerTimeout`. */
    droppedHeaderTimeout: number
    /** Closed: invalid PROXY header, header over `maxHeaderBytes`, or missing header with `ignoreMissingHeader: false`. */
    droppedInvalidHeader: number
    /** Closed: `'proxy-protocol'` connection from a peer not in `trustedProxies`. */
    droppedUntrustedProxy: number
    /** Closed: the oldest connection reading its header, past `maxPendingHeaders` with the descriptor budget used up. */
    droppedHeaderOverflow: number
    /** The client closed before its header was complete (not a drop). */
    closedBeforeHeader: number
    /** Session reports ignored because `maxSessions` was reached. */
    sessionsRefused: number
    /** Processes refused a worker channel (not a worker of this cluster, or no free slot). */
    rejectedChannels: number
    slots: SlotStats[]
  }

  /**
   * sticky-session 1.1.2's API. In the cluster primary: binds `port`, forks the
   * workers, returns `false`; `server` then emits `'listening'` (and
   * `server.address()` reports the bound address), or `'error'` (e.g.
   * `EADDRINUSE`). In a worker: feeds `server` the connections the primary
   * routes to it and returns `true`.
   *
   * Under systemd socket activation (`LISTEN_FDS` ≥ 1 and `LISTEN_PID` equal
   * to the primary's pid) the primary binds nothing: it uses the passed
   * listening TCP socket whose port is `port` (port `0`: the first one), or
   * emits `'error'` with `ERR_STICKY_SYSTEMD_NO_SOCKET`. The variables are
   * removed from `process.env`, so workers do not inherit them.
   *
   * @throws an `Error` with `code` `ERR_STICKY_INVALID_SERVER`,
   *   `ERR_STICKY_INVALID_PORT` or `ERR_STICKY_INVALID_OPTION` for bad arguments,
   *   and `ERR_STICKY_NO_CHANNEL` in a worker not forked by `listen`
   *   (`ERR_STICKY_PM2_CLUSTER_MODE` in pm2's cluster mode: run it in fork mode).
   * @example
   * ```js
   * const sticky = require('sticky-session-rs')
   * const server = require('http').createServer((req, res) => res.end('hi'))
   * if (!sticky.listen(server, 3000)) {
   *   server.once('listening', () => console.log('server started on 3000'))
   * }
   * ```
   */
  function listen(server: Server, port: number | string, options?: ListenOptions): boolean

  /** Counters of the primary's accept loop; `null` in a worker or before `listen`. */
  function stats(): Stats | null

  /** Options of {@link registerMetrics}. */
  export interface MetricsOptions {
    /**
     * The prom-client module (prom-client is your dependency, not this package's).
     * @defaultValue `require('prom-client')`
     */
    client?: { Counter: new (configuration: any) => unknown; Gauge: new (configuration: any) => unknown; register: unknown }
    /**
     * The prom-client `Registry` to register on.
     * @defaultValue `client.register`, prom-client's global registry
     */
    register?: unknown
    /**
     * Start of every metric's name.
     * @defaultValue `'sticky_session_'`
     */
    prefix?: string
  }

  /**
   * Prometheus metrics over {@link stats}, for prom-client (call it in the
   * primary): one metric per stats field, read when the registry is scraped.
   * Counters are `sticky_session_<field>_total`, gauges
   * `sticky_session_<field>`; per-slot fields are `sticky_session_slot_...`
   * with a `slot` label.
   * @returns the metrics, by name.
   * @throws `ERR_STICKY_NO_PROM_CLIENT` when prom-client is neither installed nor passed.
   * @example
   * ```js
   * const client = require('prom-client')
   * sticky.registerMetrics({ client })
   * // serve `await client.register.metrics()` on /metrics
   * ```
   */
  function registerMetrics(options?: MetricsOptions): Record<string, unknown>

  /**
   * In the primary: stops accepting (connections already in the kernel's
   * queue are still served), waits until every accepted connection is with a
   * worker, lets every worker finish its in-flight requests
   * (`server.close()` in the worker) and exit, then calls `callback`. Workers
   * are not respawned afterwards. SIGTERM/SIGINT do this, then exit 0.
   */
  function close(callback?: () => void): void

  /**
   * In the primary: rolling reload. Replaces the workers one at a time; each
   * new worker is ready before the old one leaves its slot (the old one gets
   * no new connection, finishes what it has, and exits). Clients keep their
   * slot. SIGHUP does the same.
   * @returns a promise that settles when every slot has a new worker.
   * @throws `ERR_STICKY_NOT_LISTENING` before `listen`; `ERR_STICKY_RELOAD_UNSUPPORTED` with {@link setupMaster}.
   */
  function reload(callback?: (error: Error | null) => void): Promise<void>

  /** Options of the socketio-sticky-session shape ({@link sticky}). */
  export interface SocketioStickySessionOptions extends Omit<ListenOptions, 'workers'> {
    /**
     * Number of workers.
     * @defaultValue `os.cpus().length`
     */
    num?: number
    /** `true`: route by {@link RoutingOptions.header} (same as `routing: 'header'`). */
    proxy?: boolean
    /**
     * Accepted for compatibility and not needed: the primary never reads the
     * request, so there is no first packet to replay in the worker.
     */
    sync?: { isSynced?: boolean; isSyncable?: boolean; event?: string }
  }

  /** What the socketio-sticky-session shape returns: a server whose `listen` starts balancing (primary) or binds nothing (worker). */
  export type StickyServer = Server


  /** Options of {@link setupMaster}. */
  export interface SetupMasterOptions extends Omit<RoutingOptions, 'routing'> {
    /**
     * Where new sessions go.
     * @defaultValue `'least-connection'`
     */
    loadBalancingMethod?: LoadBalancingMethod
    /**
     * The most workers that may connect at once (slots).
     * @defaultValue `64`
     */
    maxWorkers?: number
  }

  /**
   * The @socket.io/sticky shape, primary half. Call before forking: then
   * `httpServer.listen(port)` starts balancing by engine.io `sid`, and the
   * workers you fork with `cluster.fork()` connect with {@link setupWorker}.
   * Only processes of this cluster can connect.
   */
  function setupMaster(httpServer: Server, options?: SetupMasterOptions): void
  /** Alias of {@link setupMaster}. */
  function setupPrimary(httpServer: Server, options?: SetupMasterOptions): void

  /** A socket.io server attached to an http(s) server (`new Server(httpServer)`). */
  export interface SocketIoServerLike {
    httpServer: Server
    engine: { on(event: 'connection', listener: (socket: { id: string; once(event: 'close', listener: () => void): unknown }) => void): unknown }
  }

  /**
   * The @socket.io/sticky shape, worker half: takes this worker's connections
   * from the primary set up with {@link setupMaster}. Do not call
   * `httpServer.listen()` in the worker.
   */
  function setupWorker(io: SocketIoServerLike): void
}

export = sticky

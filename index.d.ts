// Type definitions for sticky-session-rs. The options' types and their
// documentation (with each default) are generated from the Rust that checks
// them (binding.d.ts, from src/binding/options.rs) and reused here, and so
// are the stats' (from src/core/stats.rs); the API shapes are written by
// hand.

import type { Server } from 'net'
import type * as native from './binding'

/**
 * The socketio-sticky-session shape: `sticky(server)`, `sticky(num, server)`,
 * `sticky(options, serverOrFactory)`. In the primary it returns a server whose
 * `.listen(...)` (every form of `net.Server#listen` but a path, handle or
 * descriptor) starts balancing, and whose `close([callback])` closes it; in a
 * worker the factory runs and its server is returned (its `listen` binds no
 * public port).
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

  /** What identifies a client (see {@link ListenOptions.routing}). */
  export type Routing = native.Routing

  /** Where new engine.io sessions (requests without `sid`) go in `'sid'` routing. */
  export type LoadBalancingMethod = native.LoadBalancingMethod

  /** Routing options, accepted by every API shape. */
  export interface RoutingOptions
    extends Pick<
      native.ListenOptions,
      | 'routing'
      | 'header'
      | 'trustedProxies'
      | 'ignoreMissingHeader'
      | 'headerTimeout'
      | 'maxHeaderBytes'
      | 'maxPendingHeaders'
      | 'loadBalancingMethod'
      | 'sessionTtl'
      | 'maxSessions'
    > {}

  /** Options of {@link listen}: every one is optional. */
  export interface ListenOptions extends native.ListenOptions {
    /**
     * Extra environment variables for every worker (passed to `cluster.fork(env)`).
     * Each worker also gets `STICKY_WORKER_SLOT`: its stable slot, `0..workers-1`.
     * @defaultValue `{}`
     */
    env?: NodeJS.ProcessEnv
  }

  /**
   * One slot of {@link Stats}: its worker and its counters. Generated, with
   * each field's meaning, from the one list of stats fields
   * (src/core/stats.rs), as `statsFields()` reports them (a renamed field's
   * old name, such as `acknowledged` for `taken`, is marked deprecated).
   */
  export type SlotStats = native.SlotStatsObject

  /**
   * `stats()` in the primary: the accept loop's counters (with kernel
   * steering, the default for IP routing, they stay 0 and the slots report
   * what the kernel and the workers count), and the host's listen counters.
   * Generated as {@link SlotStats} is.
   */
  export interface Stats extends native.StatsObject {
    /** True in kernel-steered mode, where the primary sees no connection. */
    kernel?: boolean
  }

  /**
   * Where to listen, as `net.Server#listen` takes it in an object (a path,
   * handle or descriptor cannot be balanced). An aborted `signal` closes the
   * balancer, as `server.close()`.
   */
  export interface ListenWhere {
    port?: number | string | null
    host?: string
    backlog?: number
    ipv6Only?: boolean
    exclusive?: boolean
    signal?: AbortSignal
  }

  /**
   * sticky-session 1.1.2's API. In the cluster primary: binds `port`, forks the
   * workers (both done when `listen` returns: `cluster.workers` holds them),
   * returns `false`; `server` then emits `'listening'` (and
   * `server.address()` reports the bound address), or `'error'` (e.g.
   * `EADDRINUSE`); `server.close([callback])` closes the balancer. `port` is
   * what `net.Server#listen` takes first: a port, a numeric string, nothing
   * (a free port) or a {@link ListenWhere}. In a worker: feeds `server` the
   * connections the primary routes to it and returns `true`.
   *
   * Under systemd socket activation (`LISTEN_FDS` ≥ 1 and `LISTEN_PID` equal
   * to the primary's pid) the primary binds nothing: it uses the passed
   * listening TCP socket whose port is `port` (port `0`: the first one), or
   * emits `'error'` with `ERR_STICKY_SYSTEMD_NO_SOCKET`. The variables are
   * removed from `process.env`, so workers do not inherit them.
   *
   * @throws an `Error` with `code` `ERR_STICKY_INVALID_SERVER`,
   *   `ERR_STICKY_INVALID_PORT`, `ERR_STICKY_UNSUPPORTED_LISTEN` (a path, handle
   *   or descriptor) or `ERR_STICKY_INVALID_OPTION` for bad arguments,
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
  function listen(server: Server, port?: number | string | null | ListenWhere, options?: ListenOptions): boolean

  /** Counters of the primary's accept loop; `null` in a worker or before `listen`. */
  function stats(): Stats | null

  /** Settings of {@link proxyConfig}. */
  export interface ProxyConfigSettings {
    /**
     * The name of the HAProxy backend or nginx upstream (letters, digits, `_`, `.`, `-`).
     * @defaultValue `'sticky_session_rs'`
     */
    name?: string
    /**
     * `'header'` routing: what the proxy hashes. `'address'`: the client's
     * address as the proxy knows it (HAProxy `balance source`, nginx
     * `$remote_addr`); a header name (`'x-forwarded-for'`): that header, for
     * a proxy that is itself behind another one or a CDN.
     * @defaultValue `'address'`
     */
    key?: 'address' | (string & {})
  }

  /**
   * The upstream block for a proxy in front, over the slot ports
   * (`slotPorts`): an HAProxy backend section (`'haproxy'`) or nginx
   * upstream blocks (`'nginx'`; in `'sid'` routing also the `map` that picks
   * one, `$<name>_upstream`). In the primary once it listens; `null` before,
   * and in a worker. Throws `ERR_STICKY_INVALID_OPTION` without slot ports.
   * @example
   * ```js
   * sticky.listen(server, 3000, { routing: 'header', slotPorts: 3100 })
   * server.once('listening', () => fs.writeFileSync('sticky.cfg', sticky.proxyConfig('haproxy')))
   * ```
   */
  function proxyConfig(proxy: 'haproxy' | 'nginx', settings?: ProxyConfigSettings): string | null

  /** Where a slot port listens. */
  export interface SlotAddress {
    slot: number
    address: string
    family: 'IPv4' | 'IPv6'
    port: number
  }

  /** Where each slot port listens, in slot order; `null` without slot ports, before `listen`, and in a worker. */
  function slotAddresses(): SlotAddress[] | null

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
    /** `true`: route by {@link ListenOptions.header} (same as `routing: 'header'`). */
    proxy?: boolean
    /**
     * `'header'` routing, when a trusted proxy sends no usable header: `true`
     * routes by the proxy's address, `false` closes the connection. As in
     * socketio-sticky-session, the default is `false` in this shape.
     * @defaultValue `false`
     */
    ignoreMissingHeader?: boolean
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
     * The most workers that may connect at once (slots).
     * @defaultValue `64`
     */
    maxWorkers?: number
  }

  /**
   * The @socket.io/sticky shape, primary half: then `httpServer.listen(...)`
   * (any form of `net.Server#listen` but a path, handle or descriptor; a
   * server listening already is taken over) starts balancing by engine.io
   * `sid`, and the workers you fork with `cluster.fork()`, before or after
   * this call, connect with {@link setupWorker}. Only processes of this
   * cluster can connect. `httpServer.close([callback])` closes the balancer
   * and lets the workers finish and exit.
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
   * from the primary set up with {@link setupMaster} (waiting up to 10 s for a
   * primary that has not called it yet; then `'error'` on the server with
   * `ERR_STICKY_NO_CHANNEL`). Do not call `httpServer.listen()` in the worker.
   */
  function setupWorker(io: SocketIoServerLike): void
}

export = sticky

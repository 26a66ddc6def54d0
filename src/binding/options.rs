//! The options of `sticky.listen(server, port, options)` (and of the other
//! API shapes, which map theirs onto these): their types, their defaults and
//! their checks, in one place. `resolveOptions` reads what the user passed,
//! refuses what is wrong with an `ERR_STICKY_INVALID_OPTION` that says what to
//! pass, and fills in the defaults; JavaScript checks only what is its own
//! (servers, callbacks, `env`, the API shapes' arguments).
//!
//! The doc comments below become the option types' documentation in
//! `binding.d.ts`, which `index.d.ts` reuses; `__test__/option-defaults.spec.js`
//! checks that every `@defaultValue` there and in README's option table
//! is what [`ListenOptions::resolve`] fills in.

use std::borrow::Cow;

use napi::bindgen_prelude::*;
use napi::{JsValue, ValueType};
use napi_derive::napi;

use super::error::{Result, StickyError};
use crate::core::hrw::DEFAULT_SEED;
use crate::core::parsers::trusted::TrustedProxies;

/// What identifies a client.
#[napi(string_enum = "kebab-case")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
  /// The connection's peer address.
  Ip,
  /// A forwarding header set by a trusted proxy.
  Header,
  /// The source address of a PROXY protocol v1/v2 header from a trusted proxy.
  ProxyProtocol,
  /// The engine.io session id in the request line.
  Sid,
}

/// Where new engine.io sessions (requests without `sid`) go in `'sid'` routing.
#[napi(string_enum = "kebab-case")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadBalancingMethod {
  /// The worker with the fewest sessions (handshakes count as they are dispatched).
  LeastConnection,
  RoundRobin,
  Random,
}

/// The JavaScript spellings, in the order the types list them.
trait Spelled: Sized + Copy + 'static {
  const ALL: &'static [(Self, &'static str)];

  fn parse(text: &str) -> Option<Self> {
    Self::ALL.iter().find(|(_, spelling)| *spelling == text).map(|(value, _)| *value)
  }

  /// `one of 'a', 'b', 'c'`.
  fn expected() -> String {
    let spellings: Vec<String> = Self::ALL.iter().map(|(_, spelling)| format!("'{spelling}'")).collect();
    format!("one of {}", spellings.join(", "))
  }
}

impl Spelled for Routing {
  const ALL: &'static [(Self, &'static str)] = &[
    (Routing::Ip, "ip"),
    (Routing::Header, "header"),
    (Routing::ProxyProtocol, "proxy-protocol"),
    (Routing::Sid, "sid"),
  ];
}

impl Spelled for LoadBalancingMethod {
  const ALL: &'static [(Self, &'static str)] = &[
    (LoadBalancingMethod::LeastConnection, "least-connection"),
    (LoadBalancingMethod::RoundRobin, "round-robin"),
    (LoadBalancingMethod::Random, "random"),
  ];
}

impl Routing {
  pub fn as_str(self) -> &'static str {
    Self::ALL.iter().find(|(value, _)| *value == self).map_or("ip", |(_, spelling)| spelling)
  }
}

/// The largest value of the options that are a count or milliseconds (2^31 - 1, as Node's timers take).
const MAX_COUNT: u32 = i32::MAX as u32;
/// The most workers one primary forks.
const MAX_WORKERS: u32 = 1024;
/// The most bytes of a header `maxHeaderBytes` may allow.
const MAX_HEADER_BYTES: u32 = 1024 * 1024;

/// What the value of an option must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
  /// An integer from 1 to `max`.
  Count { max: u32 },
  /// `true` or `false`.
  Flag,
  /// One of the spellings of [`Routing`].
  Routing,
  /// One of the spellings of [`LoadBalancingMethod`].
  LoadBalancingMethod,
  /// A non-empty string.
  Host,
  /// An HTTP header name (RFC 9110 token).
  Header,
  /// A non-empty array of non-empty strings, or one comma-separated string,
  /// each entry then parsed by `TrustedProxies::parse`.
  TrustedProxies,
  /// An unsigned 64-bit integer: a safe-integer number, a bigint, or a decimal string.
  Seed,
  /// `true`, `false`, or a first port from 1 to 65535 (`slotPorts`).
  SlotPorts,
  /// An IP address (`std::net::IpAddr`'s grammar).
  IpAddress,
}

/// Every option `resolveOptions` reads, with the rule its value must follow,
/// in the order the types list them. `ListenOptions::read` takes each rule
/// (and what a refusal says is expected) from here, and `optionRules()`
/// reports it to the portable path, whose copy
/// (`lib/portable/contract.js`) is generated from it.
pub const OPTION_RULES: &[(&str, Rule)] = &[
  ("workers", Rule::Count { max: MAX_WORKERS }),
  ("host", Rule::Host),
  ("backlog", Rule::Count { max: MAX_COUNT }),
  ("seed", Rule::Seed),
  ("maxPendingPerSlot", Rule::Count { max: MAX_COUNT }),
  ("maxParked", Rule::Count { max: MAX_COUNT }),
  ("startupWait", Rule::Count { max: MAX_COUNT }),
  ("shutdownTimeout", Rule::Count { max: MAX_COUNT }),
  ("handleSignals", Rule::Flag),
  ("kernel", Rule::Flag),
  ("takeover", Rule::Flag),
  ("routing", Rule::Routing),
  ("header", Rule::Header),
  ("trustedProxies", Rule::TrustedProxies),
  ("ignoreMissingHeader", Rule::Flag),
  ("headerTimeout", Rule::Count { max: MAX_COUNT }),
  ("maxHeaderBytes", Rule::Count { max: MAX_HEADER_BYTES }),
  ("maxPendingHeaders", Rule::Count { max: MAX_COUNT }),
  ("loadBalancingMethod", Rule::LoadBalancingMethod),
  ("sessionTtl", Rule::Count { max: MAX_COUNT }),
  ("maxSessions", Rule::Count { max: MAX_COUNT }),
  ("slotPorts", Rule::SlotPorts),
  ("slotHost", Rule::IpAddress),
];

impl Rule {
  /// The rule of option `name` (`None` for a name that is no option).
  pub fn of(name: &str) -> Option<Rule> {
    OPTION_RULES.iter().find(|(option, _)| *option == name).map(|(_, rule)| *rule)
  }

  /// What a value that breaks the rule is told it must be.
  pub fn expected(self) -> Cow<'static, str> {
    match self {
      Rule::Count { max } => format!("an integer from 1 to {max}").into(),
      Rule::Flag => "true or false".into(),
      Rule::Routing => Routing::expected().into(),
      Rule::LoadBalancingMethod => LoadBalancingMethod::expected().into(),
      Rule::Host => "a host name or IP address".into(),
      Rule::Header => "an HTTP header name such as 'x-forwarded-for', 'x-real-ip' or 'forwarded'".into(),
      Rule::TrustedProxies => TRUSTED_PROXIES_EXPECTED.into(),
      Rule::Seed => "an unsigned 64-bit integer (number, bigint or decimal string)".into(),
      Rule::SlotPorts => "true, false or the first port (an integer from 1 to 65535)".into(),
      Rule::IpAddress => "an IP address such as '127.0.0.1'".into(),
    }
  }

  /// The rule's kind as `optionRules()` names it.
  pub fn kind(self) -> &'static str {
    match self {
      Rule::Count { .. } => "count",
      Rule::Flag => "flag",
      Rule::Routing | Rule::LoadBalancingMethod => "one-of",
      Rule::Host => "host",
      Rule::Header => "header",
      Rule::TrustedProxies => "trusted-proxies",
      Rule::Seed => "seed",
      Rule::SlotPorts => "slot-ports",
      Rule::IpAddress => "ip-address",
    }
  }

  /// The accepted spellings of a `one-of` rule.
  pub fn spellings(self) -> Option<Vec<&'static str>> {
    fn all<T: Spelled>() -> Vec<&'static str> {
      T::ALL.iter().map(|(_, spelling)| *spelling).collect()
    }
    match self {
      Rule::Routing => Some(all::<Routing>()),
      Rule::LoadBalancingMethod => Some(all::<LoadBalancingMethod>()),
      _ => None,
    }
  }
}

/// Options of `sticky.listen(server, port, options)`: every one optional,
/// its default applied by `resolveOptions`.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Clone)]
pub struct ListenOptions {
  /// Number of workers (slots), each a `cluster` worker.
  /// @defaultValue `os.cpus().length`
  pub workers: Option<u32>,
  /// Host or IP address to listen on. The default `'::'` is dual-stack: IPv4
  /// clients connect too (falls back to `'0.0.0.0'` where IPv6 is unavailable).
  /// @defaultValue `'::'`
  /// @example `host: '127.0.0.1'`
  pub host: Option<String>,
  /// Length of the kernel's queue of connections not yet accepted.
  /// @defaultValue `511`
  pub backlog: Option<u32>,
  /// Seed of the rendezvous hash that maps clients to slots: an unsigned 64-bit
  /// integer (number, bigint or decimal string). Fixed by default, so a client
  /// reaches the same slot after the primary restarts; change it to reshuffle.
  /// @defaultValue `'6274051578553076311'`
  #[napi(ts_type = "number | bigint | string")]
  pub seed: Option<u64>,
  /// Connections handed to one slot and not yet taken by its worker,
  /// beyond which the slot is over its share. The primary holds them anyway
  /// (a burst is not reset); only once its descriptor budget (three quarters
  /// of the open-file limit, at most 65,536) is used up does it pause
  /// accepting for such a slot, and then reset its new connections (counted
  /// in `stats().slots[n].droppedQueueFull`, reported as an
  /// `ERR_STICKY_OVERLOAD` warning).
  /// @defaultValue `1024`
  pub max_pending_per_slot: Option<u32>,
  /// Connections held by the primary while no worker at all is alive,
  /// beyond which, once the descriptor budget is used up, new ones are
  /// reset (counted in `stats().droppedNoWorker`).
  /// @defaultValue `4096`
  pub max_parked: Option<u32>,
  /// Milliseconds to wait, at start-up, for every worker to be ready before
  /// accepting with the ones that are (connections wait in the kernel queue).
  /// @defaultValue `10000`
  pub startup_wait: Option<u32>,
  /// Milliseconds a closing worker (shutdown, reload, `server.close()`) has to
  /// finish its in-flight requests; then its remaining connections are closed
  /// and it exits. The primary kills workers still running a second later.
  /// @defaultValue `10000`
  pub shutdown_timeout: Option<u32>,
  /// Install signal handlers: SIGTERM and SIGINT to the primary shut down
  /// gracefully (stop accepting, drain, exit 0); SIGHUP reloads the workers
  /// one at a time. Workers leave SIGINT to the primary and close gracefully
  /// on SIGTERM.
  /// @defaultValue `true`
  pub handle_signals: Option<bool>,
  /// Kernel-steered IP routing: one `SO_REUSEPORT` listening socket per slot,
  /// steered by a classic BPF program hashing the source address, so the
  /// primary takes no part in connections at all (fastest). With
  /// `routing: 'ip'` only; the hash is `hash(ip) % workers` over stable
  /// slots, not the rendezvous hash. When a worker dies its clients wait
  /// (queued on its slot's socket) for the respawned worker instead of
  /// moving. `false` chooses the accept loop (rendezvous hashing: a dead
  /// worker's clients move to their next choice at once, and `stats()` counts
  /// every connection). Where kernel steering cannot work (not Linux, the
  /// kernel refuses the program, `node --permission`, systemd socket
  /// activation, workers forked by the user with `setupMaster`) the accept
  /// loop is used: silently by default, with a warning when `true` was asked for.
  /// @defaultValue `true` with `routing: 'ip'`, else `false`
  pub kernel: Option<bool>,
  /// Socket takeover, to replace the whole app (primary and workers) without
  /// refusing a connection. A primary with `takeover: true` offers its
  /// listening socket(s) to a later primary of the same app: started by the
  /// same user for the same `host` and `port` while it runs, that one
  /// receives the socket over a private Unix socket instead of binding (no
  /// `EADDRINUSE`), starts its workers, and once every one is ready tells the
  /// old primary to stop accepting; the old primary drains as `close()`
  /// does and exits 0. Clients keep their slot (same `workers` and `seed`).
  /// Each side writes one line about the handover on stderr.
  ///
  /// With `kernel: true` the whole kernel-steered group moves, so the new
  /// primary needs the same `kernel`, `workers` and `seed`, or it gets
  /// `ERR_STICKY_TAKEOVER_MISMATCH`. If its workers are not all ready within
  /// `startupWait`, the old primary goes on serving and the new one closes
  /// with `ERR_STICKY_TAKEOVER_TIMEOUT`. A process of another user gets
  /// nothing. Linux only (`ERR_STICKY_TAKEOVER_UNSUPPORTED` elsewhere);
  /// not for port 0. With no primary to take over from, the port is bound
  /// as usual.
  /// @defaultValue `false`
  /// @example
  /// ```js
  /// // Deploy: start the new release while the old one runs.
  /// sticky.listen(server, 3000, { takeover: true })
  /// ```
  pub takeover: Option<bool>,
  /// What identifies a client:
  /// - `'ip'`: the connection's peer address (`::ffff:a.b.c.d` counts as `a.b.c.d`).
  /// - `'header'`: a forwarding header set by a trusted proxy (`header`).
  /// - `'proxy-protocol'`: the source address of a PROXY protocol v1/v2 header
  ///   sent by a trusted proxy (HAProxy `send-proxy[-v2]`, nginx stream
  ///   `proxy_protocol on`, AWS NLB). Connections without a valid header are
  ///   closed and counted. Workers see the client as `socket.remoteAddress`.
  /// - `'sid'`: the engine.io session id in the request line; new sessions by
  ///   `loadBalancingMethod`. Needs plain HTTP to the primary.
  /// @defaultValue `'ip'`
  pub routing: Option<Routing>,
  /// `'header'` routing: the header naming the client, case-insensitive, in
  /// `X-Forwarded-For` format (comma-separated addresses), or `'forwarded'` for
  /// RFC 7239 `Forwarded: for=...`. The client is the rightmost address that is
  /// not itself a trusted proxy.
  /// @defaultValue `'x-forwarded-for'`
  /// @example `header: 'x-real-ip'`
  pub header: Option<String>,
  /// Peers whose PROXY headers and forwarding headers are believed: IP
  /// addresses, CIDR ranges, and the keywords `'loopback'` (127.0.0.0/8, ::1),
  /// `'linklocal'`, `'uniquelocal'` (as an array, or one comma-separated
  /// string). Headers from anyone else are ignored (`'header'`: route by the
  /// peer) or refused (`'proxy-protocol'`).
  /// @defaultValue `['loopback']`
  /// @example `trustedProxies: ['10.0.0.0/8', 'loopback']`
  #[napi(ts_type = "string[] | string")]
  pub trusted_proxies: Option<Vec<String>>,
  /// `'header'` routing, when a trusted proxy sends no usable header: `true`
  /// routes by the proxy's address, `false` closes the connection (counted in
  /// `stats().droppedInvalidHeader`).
  /// @defaultValue `true`
  pub ignore_missing_header: Option<bool>,
  /// Milliseconds a client has to send its PROXY header or request head
  /// (modes other than `'ip'`); then it is closed and counted.
  /// @defaultValue `5000`
  pub header_timeout: Option<u32>,
  /// The most bytes read to find the routing key.
  /// @defaultValue `16384`
  pub max_header_bytes: Option<u32>,
  /// Connections reading their header beyond which, once the primary's
  /// descriptor budget is used up, the oldest is closed (counted in
  /// `stats().droppedHeaderOverflow`).
  /// @defaultValue `1024`
  pub max_pending_headers: Option<u32>,
  /// `'sid'` routing: where new sessions go. `'least-connection'` counts
  /// sessions per worker, and handshakes as they are dispatched, so a burst
  /// spreads evenly.
  /// @defaultValue `'least-connection'`
  pub load_balancing_method: Option<LoadBalancingMethod>,
  /// `'sid'` routing: milliseconds a session entry lives without a request
  /// carrying its sid (polling clients send one at least every `pingInterval`).
  /// @defaultValue `120000`
  pub session_ttl: Option<u32>,
  /// `'sid'` routing: the most sessions remembered.
  /// @defaultValue `100000`
  pub max_sessions: Option<u32>,
  /// Slot ports, for a proxy in front (HAProxy, nginx) that routes each
  /// request itself and keeps its upstream connections alive: every slot
  /// also listens on a port of its own on `slotHost`, and
  /// `sticky.proxyConfig('haproxy' | 'nginx')` writes the proxy's upstream
  /// block over them (`'header'`: a consistent hash of the client address;
  /// `'sid'`: each session's slot, named in its sid). The primary holds these
  /// sockets, so a respawned or reloaded worker takes over its slot's port and
  /// nothing queued on it is lost. `true`: free ports the system picks; a
  /// number `P`: slot `n` listens on `P + n`. With `routing: 'header'` or
  /// `'sid'` only.
  /// @defaultValue `false`
  /// @example `slotPorts: 3100`
  #[napi(ts_type = "boolean | number")]
  pub slot_ports: Option<u32>,
  /// The address the slot ports listen on (an IP address).
  /// @defaultValue `'127.0.0.1'`
  pub slot_host: Option<String>,
}

/// Every option of `ListenOptions` with its default applied, as the primary
/// uses them.
#[napi(object)]
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedOptions {
  pub workers: u32,
  pub host: String,
  /// True when the user did not choose the host: `::` may then fall back to `0.0.0.0`.
  pub host_is_default: bool,
  pub backlog: u32,
  /// Decimal string of the unsigned 64-bit seed.
  pub seed: String,
  pub max_pending_per_slot: u32,
  pub max_parked: u32,
  pub startup_wait: u32,
  pub shutdown_timeout: u32,
  pub handle_signals: bool,
  /// Steer in the kernel where it can work (see `ListenOptions::kernel`).
  pub kernel: bool,
  /// The user asked for `kernel: true`: falling back is worth a warning.
  pub kernel_asked: bool,
  pub takeover: bool,
  pub routing: Routing,
  /// Lower case.
  pub header: String,
  pub trusted_proxies: Vec<String>,
  pub ignore_missing_header: bool,
  pub header_timeout: u32,
  pub max_header_bytes: u32,
  pub max_pending_headers: u32,
  pub load_balancing_method: LoadBalancingMethod,
  pub session_ttl: u32,
  pub max_sessions: u32,
  /// Slot ports on (`slotPorts: true` or a port).
  pub slot_ports: bool,
  /// The first slot port; `0`: the system picks each (`slotPorts: true`).
  pub first_slot_port: u32,
  pub slot_host: String,
}

impl ListenOptions {
  /// Fills in the defaults, and checks what involves more than one option or
  /// more than a value's type and range. `cpu_count` is the workers' default
  /// (the count Node reports: `os.cpus().length`).
  pub fn resolve(self, cpu_count: u32) -> std::result::Result<ResolvedOptions, StickyError> {
    let routing = self.routing.unwrap_or(Routing::Ip);
    let kernel_asked = self.kernel == Some(true);
    let kernel = self.kernel.unwrap_or(routing == Routing::Ip);
    if kernel && routing != Routing::Ip {
      return Err(StickyError::KernelNeedsIpRouting { routing: routing.as_str() });
    }
    let trusted_proxies = self.trusted_proxies.unwrap_or_else(|| vec!["loopback".into()]);
    let entries: Vec<&str> = trusted_proxies.iter().map(String::as_str).collect();
    TrustedProxies::parse(&entries)?;
    let workers = self.workers.unwrap_or(cpu_count.max(1));
    if self.slot_ports.is_some() && !matches!(routing, Routing::Header | Routing::Sid) {
      return Err(StickyError::SlotPortsNeedProxyRouting { routing: routing.as_str() });
    }
    if let Some(first) = self.slot_ports.filter(|&first| first > 0) {
      if u64::from(first) + u64::from(workers) - 1 > 65_535 {
        return Err(StickyError::SlotPortsOutOfRange { first, workers });
      }
    }
    let slot_host = self.slot_host.unwrap_or_else(|| "127.0.0.1".into());
    if slot_host.parse::<std::net::IpAddr>().is_err() {
      return Err(StickyError::InvalidOption {
        name: "slotHost",
        expected: Rule::IpAddress.expected(),
        got: quoted(&slot_host),
      });
    }
    Ok(ResolvedOptions {
      workers,
      host_is_default: self.host.is_none(),
      host: self.host.unwrap_or_else(|| "::".into()),
      backlog: self.backlog.unwrap_or(511),
      seed: self.seed.unwrap_or(DEFAULT_SEED).to_string(),
      max_pending_per_slot: self.max_pending_per_slot.unwrap_or(1024),
      max_parked: self.max_parked.unwrap_or(4096),
      startup_wait: self.startup_wait.unwrap_or(10_000),
      shutdown_timeout: self.shutdown_timeout.unwrap_or(10_000),
      handle_signals: self.handle_signals.unwrap_or(true),
      kernel,
      kernel_asked,
      takeover: self.takeover.unwrap_or(false),
      routing,
      header: self.header.map_or_else(|| "x-forwarded-for".into(), |header| header.to_ascii_lowercase()),
      trusted_proxies,
      ignore_missing_header: self.ignore_missing_header.unwrap_or(true),
      header_timeout: self.header_timeout.unwrap_or(5000),
      max_header_bytes: self.max_header_bytes.unwrap_or(16_384),
      max_pending_headers: self.max_pending_headers.unwrap_or(1024),
      load_balancing_method: self.load_balancing_method.unwrap_or(LoadBalancingMethod::LeastConnection),
      session_ttl: self.session_ttl.unwrap_or(120_000),
      max_sessions: self.max_sessions.unwrap_or(100_000),
      slot_ports: self.slot_ports.is_some(),
      first_slot_port: self.slot_ports.unwrap_or(0),
      slot_host,
    })
  }

  /// Reads the options from a JavaScript object; each value of the wrong type
  /// or out of range is refused with what to pass instead. `undefined` and
  /// `null` mean "the default", as they always have.
  fn read(object: &Object<'_>) -> std::result::Result<Self, StickyError> {
    let read = Reader(object);
    Ok(ListenOptions {
      workers: read.count("workers")?,
      host: read.host()?,
      backlog: read.count("backlog")?,
      seed: read.seed()?,
      max_pending_per_slot: read.count("maxPendingPerSlot")?,
      max_parked: read.count("maxParked")?,
      startup_wait: read.count("startupWait")?,
      shutdown_timeout: read.count("shutdownTimeout")?,
      handle_signals: read.flag("handleSignals")?,
      kernel: read.flag("kernel")?,
      takeover: read.flag("takeover")?,
      routing: read.spelled("routing")?,
      header: read.header()?,
      trusted_proxies: read.trusted_proxies()?,
      ignore_missing_header: read.flag("ignoreMissingHeader")?,
      header_timeout: read.count("headerTimeout")?,
      max_header_bytes: read.count("maxHeaderBytes")?,
      max_pending_headers: read.count("maxPendingHeaders")?,
      load_balancing_method: read.spelled("loadBalancingMethod")?,
      session_ttl: read.count("sessionTtl")?,
      max_sessions: read.count("maxSessions")?,
      slot_ports: read.slot_ports()?,
      slot_host: read.slot_host()?,
    })
  }
}

const TRUSTED_PROXIES_EXPECTED: &str =
  "a non-empty array of IP addresses, CIDR ranges or 'loopback' / 'linklocal' / 'uniquelocal'";

/// Checks `options` (the options of `sticky.listen`, as the user passed them)
/// and fills in their defaults; `cpuCount` (`os.cpus().length`) is the
/// default number of workers. Throws `ERR_STICKY_INVALID_OPTION`.
#[napi(ts_args_type = "options: ListenOptions | undefined | null, cpuCount: number")]
pub fn resolve_options(options: Option<Unknown<'_>>, cpu_count: u32) -> Result<ResolvedOptions> {
  Ok(read_options(options)?.resolve(cpu_count)?)
}

fn read_options(options: Option<Unknown<'_>>) -> std::result::Result<ListenOptions, StickyError> {
  let Some(value) = options else { return Ok(ListenOptions::default()) };
  if is_absent(&value)? {
    return Ok(ListenOptions::default());
  }
  if value.get_type()? != ValueType::Object || value.is_array()? {
    return Err(StickyError::OptionsNotAnObject { got: describe(&value)? });
  }
  ListenOptions::read(&value.coerce_to_object()?)
}

/// One option's rule, as `optionRules()` reports it.
#[napi(object)]
pub struct OptionRule {
  /// The option's name in the options object.
  pub name: String,
  /// `'count'`, `'flag'`, `'one-of'`, `'host'`, `'header'`, `'trusted-proxies'`, `'seed'`, `'slot-ports'` or `'ip-address'`.
  pub kind: String,
  /// A `count`'s largest value.
  pub max: Option<u32>,
  /// A `one-of`'s spellings.
  pub values: Option<Vec<String>>,
  /// What a refusal says the value must be.
  pub expected: String,
}

/// Every option `resolveOptions` checks and what its value must be, in the
/// order the types list them. The portable path (no binding) checks options
/// against a copy of this list generated into `lib/portable/contract.js`.
#[napi]
pub fn option_rules() -> Vec<OptionRule> {
  OPTION_RULES
    .iter()
    .map(|&(name, rule)| OptionRule {
      name: name.into(),
      kind: rule.kind().into(),
      max: match rule {
        Rule::Count { max } => Some(max),
        _ => None,
      },
      values: rule.spellings().map(|spellings| spellings.into_iter().map(String::from).collect()),
      expected: rule.expected().into_owned(),
    })
    .collect()
}

/// Reads one option after another from the user's object.
struct Reader<'a, 'env>(&'a Object<'env>);

impl<'env> Reader<'_, 'env> {
  /// The value of `name`; `None` when it is `undefined` or `null`.
  fn value(&self, name: &str) -> std::result::Result<Option<Unknown<'env>>, StickyError> {
    let value: Option<Unknown<'env>> = self.0.get(name)?;
    match value {
      Some(value) if !is_absent(&value)? => Ok(Some(value)),
      _ => Ok(None),
    }
  }

  /// The refusal of `value` for option `name`, saying what its rule expects.
  fn invalid(&self, name: &'static str, value: &Unknown<'_>) -> std::result::Result<StickyError, StickyError> {
    let expected = Rule::of(name).map_or(Cow::Borrowed("a valid value"), Rule::expected);
    Ok(StickyError::InvalidOption { name, expected, got: describe(value)? })
  }

  /// An integer from 1 to the `max` of the option's rule.
  fn count(&self, name: &'static str) -> std::result::Result<Option<u32>, StickyError> {
    let Some(value) = self.value(name)? else { return Ok(None) };
    let rule = Rule::of(name);
    if let (Some(Rule::Count { max }), ValueType::Number) = (rule, value.get_type()?) {
      let number = value.coerce_to_number()?.get_double()?;
      if number.fract() == 0.0 && number >= 1.0 && number <= f64::from(max) {
        return Ok(Some(number as u32));
      }
    }
    Err(self.invalid(name, &value)?)
  }

  fn flag(&self, name: &'static str) -> std::result::Result<Option<bool>, StickyError> {
    let Some(value) = self.value(name)? else { return Ok(None) };
    if value.get_type()? == ValueType::Boolean {
      return Ok(Some(value.coerce_to_bool()?));
    }
    Err(self.invalid(name, &value)?)
  }

  fn string(&self, value: &Unknown<'_>) -> std::result::Result<Option<String>, StickyError> {
    if value.get_type()? != ValueType::String {
      return Ok(None);
    }
    Ok(Some(value.coerce_to_string()?.into_utf8()?.into_owned()?))
  }

  fn spelled<T: Spelled>(&self, name: &'static str) -> std::result::Result<Option<T>, StickyError> {
    let Some(value) = self.value(name)? else { return Ok(None) };
    match self.string(&value)?.as_deref().and_then(T::parse) {
      Some(parsed) => Ok(Some(parsed)),
      None => Err(self.invalid(name, &value)?),
    }
  }

  fn host(&self) -> std::result::Result<Option<String>, StickyError> {
    let Some(value) = self.value("host")? else { return Ok(None) };
    match self.string(&value)? {
      Some(host) if !host.is_empty() => Ok(Some(host)),
      _ => Err(self.invalid("host", &value)?),
    }
  }

  /// `false` (none), `true` (the system picks each port: `Some(0)`), or the
  /// first port, from 1 to 65535.
  fn slot_ports(&self) -> std::result::Result<Option<u32>, StickyError> {
    let Some(value) = self.value("slotPorts")? else { return Ok(None) };
    match value.get_type()? {
      ValueType::Boolean => return Ok(value.coerce_to_bool()?.then_some(0)),
      ValueType::Number => {
        let number = value.coerce_to_number()?.get_double()?;
        if number.fract() == 0.0 && (1.0..=65535.0).contains(&number) {
          return Ok(Some(number as u32));
        }
      }
      _ => {}
    }
    Err(self.invalid("slotPorts", &value)?)
  }

  fn slot_host(&self) -> std::result::Result<Option<String>, StickyError> {
    let Some(value) = self.value("slotHost")? else { return Ok(None) };
    match self.string(&value)? {
      Some(host) => Ok(Some(host)),
      None => Err(self.invalid("slotHost", &value)?),
    }
  }

  /// An HTTP header name (RFC 9110 token).
  fn header(&self) -> std::result::Result<Option<String>, StickyError> {
    let Some(value) = self.value("header")? else { return Ok(None) };
    match self.string(&value)? {
      Some(name) if !name.is_empty() && name.bytes().all(crate::core::parsers::is_token_byte) => Ok(Some(name)),
      _ => Err(self.invalid("header", &value)?),
    }
  }

  /// A non-empty array of non-empty strings, or one comma-separated string.
  fn trusted_proxies(&self) -> std::result::Result<Option<Vec<String>>, StickyError> {
    let Some(value) = self.value("trustedProxies")? else { return Ok(None) };
    let entries = if let Some(list) = self.string(&value)? {
      Some(list.split(',').map(|entry| entry.trim().to_owned()).collect::<Vec<_>>())
    } else if value.is_array()? {
      let array = value.coerce_to_object()?;
      let mut entries = Vec::new();
      for index in 0..array.get_array_length()? {
        let entry: Unknown<'_> = array.get_element(index)?;
        match self.string(&entry)? {
          Some(entry) => entries.push(entry),
          None => return Err(self.invalid("trustedProxies", &value)?),
        }
      }
      Some(entries)
    } else {
      None
    };
    match entries {
      Some(entries) if !entries.is_empty() && entries.iter().all(|entry| !entry.is_empty()) => Ok(Some(entries)),
      _ => Err(self.invalid("trustedProxies", &value)?),
    }
  }

  /// An unsigned 64-bit integer: a safe-integer number, a bigint, or a decimal string.
  fn seed(&self) -> std::result::Result<Option<u64>, StickyError> {
    let Some(value) = self.value("seed")? else { return Ok(None) };
    let seed = match value.get_type()? {
      ValueType::Number => {
        let number = value.coerce_to_number()?.get_double()?;
        // Number.isSafeInteger: larger numbers are no longer exact.
        (number.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&number)).then_some(number as u64)
      }
      ValueType::BigInt | ValueType::String => {
        let text = value.coerce_to_string()?.into_utf8()?.into_owned()?;
        if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
          text.parse::<u64>().ok()
        } else {
          None
        }
      }
      _ => None,
    };
    match seed {
      Some(seed) => Ok(Some(seed)),
      None => Err(self.invalid("seed", &value)?),
    }
  }
}

fn is_absent(value: &Unknown<'_>) -> std::result::Result<bool, StickyError> {
  Ok(matches!(value.get_type()?, ValueType::Undefined | ValueType::Null))
}

/// A value as error messages show it: `"text"`, `-1n`, `number 1.5`,
/// `an instance of Array`, `null`.
fn describe(value: &Unknown<'_>) -> std::result::Result<String, StickyError> {
  let type_name = match value.get_type()? {
    ValueType::Null => return Ok("null".into()),
    ValueType::Undefined => return Ok("undefined".into()),
    ValueType::String => return Ok(quoted(&value.coerce_to_string()?.into_utf8()?.into_owned()?)),
    ValueType::BigInt => return Ok(format!("{}n", value.coerce_to_string()?.into_utf8()?.into_owned()?)),
    ValueType::Symbol => return Ok("a symbol".into()),
    ValueType::Object => {
      let constructor: Option<Unknown<'_>> = value.coerce_to_object()?.get("constructor")?;
      let name = match constructor {
        Some(constructor) if constructor.get_type()? == ValueType::Function => {
          constructor.coerce_to_object()?.get::<String>("name").ok().flatten()
        }
        _ => None,
      };
      return Ok(name.map_or_else(|| "an object".into(), |name| format!("an instance of {name}")));
    }
    ValueType::Boolean => "boolean",
    ValueType::Number => "number",
    ValueType::Function => "function",
    _ => "value",
  };
  Ok(format!("{type_name} {}", value.coerce_to_string()?.into_utf8()?.into_owned()?))
}

/// `text` as `JSON.stringify` writes a string.
fn quoted(text: &str) -> String {
  let mut out = String::with_capacity(text.len() + 2);
  out.push('"');
  for c in text.chars() {
    match c {
      '"' => out.push_str("\\\""),
      '\\' => out.push_str("\\\\"),
      '\n' => out.push_str("\\n"),
      '\r' => out.push_str("\\r"),
      '\t' => out.push_str("\\t"),
      '\u{8}' => out.push_str("\\b"),
      '\u{c}' => out.push_str("\\f"),
      c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
      c => out.push(c),
    }
  }
  out.push('"');
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn no_options_resolve_to_the_documented_defaults() {
    let resolved = ListenOptions::default().resolve(4).unwrap();
    assert_eq!(
      resolved,
      ResolvedOptions {
        workers: 4,
        host: "::".into(),
        host_is_default: true,
        backlog: 511,
        seed: "6274051578553076311".into(),
        max_pending_per_slot: 1024,
        max_parked: 4096,
        startup_wait: 10_000,
        shutdown_timeout: 10_000,
        handle_signals: true,
        kernel: true,
        kernel_asked: false,
        takeover: false,
        routing: Routing::Ip,
        header: "x-forwarded-for".into(),
        trusted_proxies: vec!["loopback".into()],
        ignore_missing_header: true,
        header_timeout: 5000,
        max_header_bytes: 16_384,
        max_pending_headers: 1024,
        load_balancing_method: LoadBalancingMethod::LeastConnection,
        session_ttl: 120_000,
        max_sessions: 100_000,
        slot_ports: false,
        first_slot_port: 0,
        slot_host: "127.0.0.1".into(),
      }
    );
  }

  #[test]
  fn slot_ports_work_with_header_and_sid_routing_only() {
    for routing in [Routing::Ip, Routing::ProxyProtocol] {
      let options =
        ListenOptions { slot_ports: Some(0), routing: Some(routing), kernel: Some(false), ..Default::default() };
      let error = options.resolve(2).unwrap_err();
      assert_eq!(error.code(), "ERR_STICKY_INVALID_OPTION");
      assert!(error.to_string().contains("'header' or 'sid'"), "{error}");
    }
    for routing in [Routing::Header, Routing::Sid] {
      let options = ListenOptions { slot_ports: Some(3100), routing: Some(routing), ..Default::default() };
      let resolved = options.resolve(2).unwrap();
      assert!(resolved.slot_ports);
      assert_eq!(resolved.first_slot_port, 3100);
    }
  }

  #[test]
  fn slot_ports_must_fit_below_65536_and_their_host_must_be_an_address() {
    let options =
      ListenOptions { slot_ports: Some(65_535), routing: Some(Routing::Sid), workers: Some(2), ..Default::default() };
    assert_eq!(options.resolve(2).unwrap_err().code(), "ERR_STICKY_INVALID_OPTION");
    let options =
      ListenOptions { slot_ports: Some(65_534), routing: Some(Routing::Sid), workers: Some(2), ..Default::default() };
    assert!(options.resolve(2).is_ok());
    let options = ListenOptions { slot_host: Some("localhost".into()), ..Default::default() };
    let error = options.resolve(2).unwrap_err();
    assert!(error.to_string().contains("slotHost"), "{error}");
  }

  #[test]
  fn the_default_seed_is_the_one_the_pinned_mapping_pins() {
    assert_eq!(ListenOptions::default().resolve(1).unwrap().seed, DEFAULT_SEED.to_string());
  }

  #[test]
  fn a_cpu_count_of_zero_still_forks_one_worker() {
    assert_eq!(ListenOptions::default().resolve(0).unwrap().workers, 1);
  }

  #[test]
  fn kernel_steering_works_with_ip_routing_only() {
    for routing in [Routing::Header, Routing::ProxyProtocol, Routing::Sid] {
      let options = ListenOptions { kernel: Some(true), routing: Some(routing), ..Default::default() };
      let error = options.resolve(2).unwrap_err();
      assert_eq!(error.code(), "ERR_STICKY_INVALID_OPTION");
      assert!(error.to_string().contains("routing 'ip' only"), "{error}");
    }
    assert!(ListenOptions { kernel: Some(true), ..Default::default() }.resolve(2).unwrap().kernel);
  }

  #[test]
  fn kernel_steering_is_the_default_for_ip_routing_only_and_asked_for_only_when_set() {
    let default = ListenOptions::default().resolve(2).unwrap();
    assert!(default.kernel && !default.kernel_asked);
    for routing in [Routing::Header, Routing::ProxyProtocol, Routing::Sid] {
      let resolved = ListenOptions { routing: Some(routing), ..Default::default() }.resolve(2).unwrap();
      assert!(!resolved.kernel && !resolved.kernel_asked, "{routing:?}");
    }
    let off = ListenOptions { kernel: Some(false), ..Default::default() }.resolve(2).unwrap();
    assert!(!off.kernel && !off.kernel_asked);
    let asked = ListenOptions { kernel: Some(true), ..Default::default() }.resolve(2).unwrap();
    assert!(asked.kernel && asked.kernel_asked);
  }

  #[test]
  fn trusted_proxies_that_do_not_parse_are_an_invalid_option() {
    let options = ListenOptions { trusted_proxies: Some(vec!["10.0.0.0/33".into()]), ..Default::default() };
    let error = options.resolve(2).unwrap_err();
    assert_eq!(error.code(), "ERR_STICKY_INVALID_OPTION");
    assert!(error.to_string().starts_with("options.trustedProxies: trusted proxy entry 0"), "{error}");
    assert!(error.to_string().contains("10.0.0.0/33"), "{error}");
  }

  #[test]
  fn the_header_name_is_kept_in_lower_case() {
    let options = ListenOptions { header: Some("X-Real-IP".into()), ..Default::default() };
    assert_eq!(options.resolve(2).unwrap().header, "x-real-ip");
  }

  #[test]
  fn spellings_parse_back_to_their_values_and_are_listed_in_the_expectation() {
    for (value, spelling) in Routing::ALL {
      assert_eq!(Routing::parse(spelling), Some(*value));
      assert_eq!(value.as_str(), *spelling);
    }
    assert_eq!(Routing::expected(), "one of 'ip', 'header', 'proxy-protocol', 'sid'");
    assert_eq!(LoadBalancingMethod::expected(), "one of 'least-connection', 'round-robin', 'random'");
    assert_eq!(Routing::parse("IP"), None);
  }

  #[test]
  fn each_option_has_one_rule_and_refusals_say_what_it_expects() {
    let mut names: Vec<&str> = OPTION_RULES.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), OPTION_RULES.len());
    assert_eq!(Rule::of("workers"), Some(Rule::Count { max: 1024 }));
    assert_eq!(Rule::of("maxHeaderBytes").map(Rule::expected).as_deref(), Some("an integer from 1 to 1048576"));
    assert_eq!(
      Rule::of("routing").map(Rule::expected).as_deref(),
      Some("one of 'ip', 'header', 'proxy-protocol', 'sid'")
    );
    assert_eq!(Rule::of("nope"), None);
    let rules = option_rules();
    assert_eq!(rules.len(), OPTION_RULES.len());
    let balance = rules.iter().find(|rule| rule.name == "loadBalancingMethod").unwrap();
    assert_eq!((balance.kind.as_str(), balance.values.clone().unwrap().len()), ("one-of", 3));
  }

  #[test]
  fn strings_are_quoted_as_json_does() {
    assert_eq!(quoted("http"), "\"http\"");
    assert_eq!(quoted("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
  }
}

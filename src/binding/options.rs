//! The options of `sticky.listen(server, port, options)` (and of the other
//! API shapes, which map theirs onto these). Each option is written once, in
//! the table `listen_options!` expands: its documentation (which becomes
//! `binding.d.ts`, reused by `index.d.ts`), its type, the rule its value
//! must follow and its default. From that one row come the `ListenOptions`
//! type, `OPTION_RULES` (reported by `optionRules()` and generated into
//! `lib/portable/contract.js` for the portable path), reading the value from
//! JavaScript and filling in the default.
//!
//! `resolveOptions` reads what the user passed, refuses what is wrong with an
//! `ERR_STICKY_INVALID_OPTION` that says what to pass (never a silent clamp),
//! and turns it into [`ListenConfig`]: the typed settings of the listening
//! socket(s), the accept loop and the slot ports, which stay in Rust
//! (`Balancer`, `ReuseportGroup`, `SlotPortGroup` and `TakeoverOffer` take
//! it). JavaScript receives [`ResolvedOptions`]: only the fields it uses, in
//! their final types. `__test__/option-defaults.spec.js` checks that every
//! `@defaultValue` below and in README's option table is the table's.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::{JsValue, ValueType};
use napi_derive::napi;

use super::error::{Result, StickyError};
use crate::core::hrw::{Rendezvous, DEFAULT_SEED};
use crate::core::parsers::trusted::TrustedProxies;
use crate::core::routing::{ForwardingHeader, Router, RoutingMode};
use crate::core::sessions::NewSessionBalance;
use crate::primary::HeaderLimits;

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
/// The most workers one primary forks (a slot is a `u16` everywhere else).
const MAX_WORKERS: u32 = 1024;
/// The fewest bytes `maxHeaderBytes` may allow: a PROXY v2 header and its
/// addresses, or the start of a request line, fit.
const MIN_HEADER_BYTES: u32 = 64;
/// The most bytes of a header `maxHeaderBytes` may allow.
const MAX_HEADER_BYTES: u32 = 1024 * 1024;
/// The slots `setupMaster` opens for the workers the user forks, unless
/// `maxWorkers` says otherwise (@socket.io/sticky has no such limit: its
/// primary tracks any number of workers).
const SETUP_MASTER_MAX_WORKERS: u32 = 64;

/// What the value of an option must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
  /// An integer from `min` to `max`.
  Count { min: u32, max: u32 },
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

/// What an option is when the user leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionDefault {
  Count(u32),
  Flag(bool),
  /// A string, or the spelling of a `one-of` value.
  Text(&'static str),
  List(&'static [&'static str]),
  Seed(u64),
  /// `workers`: the CPU count JavaScript passes (`os.cpus().length`), at least 1.
  CpuCount,
  /// `kernel`: `true` with `routing: 'ip'`, else `false`.
  KernelWithIpRouting,
}

/// One option: its name in the options object, its rule and its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionSpec {
  pub name: &'static str,
  pub rule: Rule,
  pub default: OptionDefault,
}

impl OptionSpec {
  /// The option named `name` (`None` for a name that is no option).
  pub fn of(name: &str) -> Option<&'static OptionSpec> {
    OPTION_RULES.iter().find(|option| option.name == name)
  }
}

impl Rule {
  /// What a value that breaks the rule is told it must be.
  pub fn expected(self) -> Cow<'static, str> {
    match self {
      Rule::Count { min, max } => format!("an integer from {min} to {max}").into(),
      Rule::Flag => "true or false".into(),
      Rule::Routing => Routing::expected().into(),
      Rule::LoadBalancingMethod => LoadBalancingMethod::expected().into(),
      Rule::Host => "a host name or IP address".into(),
      Rule::Header => "an HTTP header name such as 'x-forwarded-for', 'x-real-ip' or 'forwarded'".into(),
      Rule::TrustedProxies => {
        "a non-empty array of IP addresses, CIDR ranges or 'loopback' / 'linklocal' / 'uniquelocal'".into()
      }
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
  /// Length of the kernel's queue of connections not yet accepted (the kernel
  /// caps it at `net.core.somaxconn`). Larger than Node's 511: in a reconnect
  /// storm a full queue makes the kernel drop handshakes, which their clients
  /// send again only after 1 s, 3 s, 7 s; an unused place in the queue costs
  /// nothing.
  /// @defaultValue `4096`
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
  /// (modes other than `'ip'`); then it is closed and counted. As long as
  /// Node's own `server.headersTimeout`: a client on a lossy network, or
  /// one whose process is busy (a reconnect storm), can take seconds to send
  /// its first bytes; slowloris clients are bounded by `maxPendingHeaders`
  /// and the descriptor budget, oldest first.
  /// @defaultValue `60000`
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

/// The rule and default of every field of `ListenOptions`, one row each:
/// `field "jsName" => Rule, default Default;`. Expands to `OPTION_RULES`,
/// reading the options from a JavaScript object and filling in the
/// defaults; both build a whole `ListenOptions`, so a field without a row
/// (or a row without a field) does not compile.
macro_rules! option_table {
  ($(
    $field:ident $name:literal =>
      $rule:ident $({ $($rule_argument:tt)* })?,
      default $default:ident $(( $($default_argument:tt)* ))?;
  )*) => {
    /// Every option `resolveOptions` reads, with its rule and default, in the
    /// order the types list them. `optionRules()` reports it to the portable
    /// path, whose copy (`lib/portable/contract.js`) is generated from it.
    pub const OPTION_RULES: &[OptionSpec] = &[
      $( OptionSpec {
        name: $name,
        rule: Rule::$rule $({ $($rule_argument)* })?,
        default: OptionDefault::$default $(( $($default_argument)* ))?,
      }, )*
    ];

    impl ListenOptions {
      /// Reads the options from a JavaScript object; each value of the wrong
      /// type or out of range is refused with what to pass instead.
      /// `undefined` and `null` mean "the default", as they always have.
      fn read(object: &Object<'_>) -> std::result::Result<Self, StickyError> {
        let reader = Reader(object);
        Ok(ListenOptions {
          $( $field: OptionValue::read(&reader, $name, Rule::$rule $({ $($rule_argument)* })?)?, )*
        })
      }

      /// Every option the user left out set to its default, but for the
      /// defaults derived from other values (`OptionDefault::CpuCount`,
      /// `OptionDefault::KernelWithIpRouting`) and `slotPorts` (off: `None`).
      fn or_defaults(self) -> Self {
        ListenOptions {
          $( $field: self.$field.or_else(|| {
            OptionValue::from_default(OptionDefault::$default $(( $($default_argument)* ))?)
          }), )*
        }
      }

      /// The names of the options that have a value.
      #[cfg(test)]
      fn given(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        $( if self.$field.is_some() { names.push($name); } )*
        names
      }
    }
  };
}

option_table! {
  workers "workers" => Count { min: 1, max: MAX_WORKERS }, default CpuCount;
  host "host" => Host, default Text("::");
  backlog "backlog" => Count { min: 1, max: MAX_COUNT }, default Count(4096);
  seed "seed" => Seed, default Seed(DEFAULT_SEED);
  max_pending_per_slot "maxPendingPerSlot" => Count { min: 1, max: MAX_COUNT }, default Count(1024);
  max_parked "maxParked" => Count { min: 1, max: MAX_COUNT }, default Count(4096);
  startup_wait "startupWait" => Count { min: 1, max: MAX_COUNT }, default Count(10_000);
  shutdown_timeout "shutdownTimeout" => Count { min: 1, max: MAX_COUNT }, default Count(10_000);
  handle_signals "handleSignals" => Flag, default Flag(true);
  kernel "kernel" => Flag, default KernelWithIpRouting;
  takeover "takeover" => Flag, default Flag(false);
  routing "routing" => Routing, default Text("ip");
  header "header" => Header, default Text("x-forwarded-for");
  trusted_proxies "trustedProxies" => TrustedProxies, default List(&["loopback"]);
  ignore_missing_header "ignoreMissingHeader" => Flag, default Flag(true);
  header_timeout "headerTimeout" => Count { min: 1, max: MAX_COUNT }, default Count(60000);
  max_header_bytes "maxHeaderBytes" => Count { min: MIN_HEADER_BYTES, max: MAX_HEADER_BYTES }, default Count(16_384);
  max_pending_headers "maxPendingHeaders" => Count { min: 1, max: MAX_COUNT }, default Count(1024);
  load_balancing_method "loadBalancingMethod" => LoadBalancingMethod, default Text("least-connection");
  session_ttl "sessionTtl" => Count { min: 1, max: MAX_COUNT }, default Count(120_000);
  max_sessions "maxSessions" => Count { min: 1, max: MAX_COUNT }, default Count(100_000);
  slot_ports "slotPorts" => SlotPorts, default Flag(false);
  slot_host "slotHost" => IpAddress, default Text("127.0.0.1");
}

/// A type an option's value takes, read by its rule.
trait OptionValue: Sized {
  fn read(reader: &Reader<'_, '_>, name: &'static str, rule: Rule) -> std::result::Result<Option<Self>, StickyError>;
  /// `None` for a default derived from other values (or "off").
  fn from_default(default: OptionDefault) -> Option<Self>;
}

impl OptionValue for u32 {
  fn read(reader: &Reader<'_, '_>, name: &'static str, rule: Rule) -> std::result::Result<Option<Self>, StickyError> {
    match rule {
      Rule::SlotPorts => reader.slot_ports(name, rule),
      _ => reader.count(name, rule),
    }
  }
  fn from_default(default: OptionDefault) -> Option<Self> {
    match default {
      OptionDefault::Count(count) => Some(count),
      _ => None,
    }
  }
}

impl OptionValue for bool {
  fn read(reader: &Reader<'_, '_>, name: &'static str, rule: Rule) -> std::result::Result<Option<Self>, StickyError> {
    reader.flag(name, rule)
  }
  fn from_default(default: OptionDefault) -> Option<Self> {
    match default {
      OptionDefault::Flag(flag) => Some(flag),
      _ => None,
    }
  }
}

impl OptionValue for String {
  fn read(reader: &Reader<'_, '_>, name: &'static str, rule: Rule) -> std::result::Result<Option<Self>, StickyError> {
    reader.text(name, rule)
  }
  fn from_default(default: OptionDefault) -> Option<Self> {
    match default {
      OptionDefault::Text(text) => Some(text.into()),
      _ => None,
    }
  }
}

impl OptionValue for Vec<String> {
  fn read(reader: &Reader<'_, '_>, name: &'static str, rule: Rule) -> std::result::Result<Option<Self>, StickyError> {
    reader.trusted_proxies(name, rule)
  }
  fn from_default(default: OptionDefault) -> Option<Self> {
    match default {
      OptionDefault::List(entries) => Some(entries.iter().map(|&entry| entry.into()).collect()),
      _ => None,
    }
  }
}

impl OptionValue for u64 {
  fn read(reader: &Reader<'_, '_>, name: &'static str, rule: Rule) -> std::result::Result<Option<Self>, StickyError> {
    reader.seed(name, rule)
  }
  fn from_default(default: OptionDefault) -> Option<Self> {
    match default {
      OptionDefault::Seed(seed) => Some(seed),
      _ => None,
    }
  }
}

impl<T: Spelled> OptionValue for T {
  fn read(reader: &Reader<'_, '_>, name: &'static str, rule: Rule) -> std::result::Result<Option<Self>, StickyError> {
    reader.spelled(name, rule)
  }
  fn from_default(default: OptionDefault) -> Option<Self> {
    match default {
      OptionDefault::Text(text) => T::parse(text),
      _ => None,
    }
  }
}

/// Where and how the listening socket(s) are bound: the accept loop's one,
/// or a kernel-steered group's one per slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSettings {
  /// The user did not choose the host: `::` may then fall back to `0.0.0.0`.
  pub host_is_default: bool,
  pub backlog: i32,
  pub slots: u16,
  pub seed: u64,
}

/// How the accept loop routes and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptLoopSettings {
  pub mode: RoutingMode,
  pub trusted: TrustedProxies,
  pub ignore_missing_header: bool,
  pub header: HeaderLimits,
  /// `'sid'` routing only.
  pub sessions: Option<SessionSettings>,
  pub max_pending_per_slot: usize,
  pub max_parked: usize,
  pub startup_wait: Duration,
}

/// The session table of `'sid'` routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
  pub balance: NewSessionBalance,
  pub ttl_ms: u64,
  pub max_entries: usize,
  /// Behind slot ports the workers tag their sids, and report only the
  /// sessions opened through the primary's port.
  pub slot_tags: bool,
}

/// The slot ports (`slotPorts`), when on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotPortSettings {
  pub host: IpAddr,
  /// Slot `n` listens on `first_port + n`; `None`: the system picks each.
  pub first_port: Option<u16>,
  /// With `SO_REUSEPORT`, so that a primary taking over (`takeover: true`)
  /// binds the same ports while this one drains.
  pub share: bool,
}

/// The options as the core uses them, made by `resolveOptions`: JavaScript
/// holds it and passes it on to `Balancer`, `ReuseportGroup`,
/// `SlotPortGroup` and `TakeoverOffer`, but reads nothing in it.
#[napi]
#[derive(Debug, Clone, PartialEq)]
pub struct ListenConfig {
  pub(super) listen: ListenSettings,
  pub(super) accept_loop: AcceptLoopSettings,
  pub(super) slot_ports: Option<SlotPortSettings>,
}

impl AcceptLoopSettings {
  /// The router these settings describe, hashing with `seed`: the accept
  /// loop's, and `routeDecision`'s (src/binding/contract.rs).
  pub fn router(&self, seed: u64) -> Router {
    Router::new(self.mode.clone(), self.trusted.clone(), self.ignore_missing_header, Rendezvous::new(seed))
  }
}

/// What JavaScript uses of the options (lib/primary.js and lib/primary/,
/// lib/slot-ports.js, lib/takeover.js), in their final types, and `config`,
/// the rest, for the native classes.
#[napi(object, object_from_js = false)]
#[derive(Debug)]
pub struct ResolvedOptions {
  /// Resolved to an address by lib/primary/socket-source.js (`resolveHost`).
  pub host: String,
  pub workers: u32,
  /// Compared with a takeover offer's (`ReceivedOffer.seed`).
  pub seed: u64,
  pub startup_wait: u32,
  pub shutdown_timeout: u32,
  pub handle_signals: bool,
  /// Steer in the kernel where it can work (see `ListenOptions::kernel`).
  pub kernel: bool,
  /// The user asked for `kernel: true`: falling back is worth a warning.
  pub kernel_asked: bool,
  pub takeover: bool,
  pub routing: Routing,
  /// Slot ports on (`slotPorts: true` or a port).
  pub slot_ports: bool,
  /// The first slot port; `0`: the system picks each (`slotPorts: true`).
  pub first_slot_port: u32,
  pub slot_host: String,
  pub config: ListenConfig,
}

impl ListenOptions {
  /// Fills in the defaults, checks what involves more than one option, and
  /// makes the typed settings. `cpu_count` is the workers' default (the
  /// count Node reports: `os.cpus().length`).
  pub fn resolve(self, cpu_count: u32) -> std::result::Result<ResolvedOptions, StickyError> {
    let host_is_default = self.host.is_none();
    let kernel_asked = self.kernel == Some(true);
    let first_slot_port = self.slot_ports;
    let options = self.or_defaults();
    let routing = settled(options.routing, "routing")?;
    let kernel = options.kernel.unwrap_or(routing == Routing::Ip);
    if kernel && routing != Routing::Ip {
      return Err(StickyError::KernelNeedsIpRouting { routing: routing.as_str() });
    }
    let workers = options.workers.unwrap_or(cpu_count.max(1));
    let slots = in_range(workers, "workers")?;
    let trusted_entries = settled(options.trusted_proxies, "trustedProxies")?;
    let trusted = TrustedProxies::parse(&trusted_entries.iter().map(String::as_str).collect::<Vec<_>>())?;
    if first_slot_port.is_some() && !matches!(routing, Routing::Header | Routing::Sid) {
      return Err(StickyError::SlotPortsNeedProxyRouting { routing: routing.as_str() });
    }
    let first_port = match first_slot_port.filter(|&first| first > 0) {
      Some(first) => Some(
        first
          .checked_add(workers.saturating_sub(1))
          .and_then(|last| u16::try_from(last).ok())
          .and_then(|_| u16::try_from(first).ok())
          .ok_or(StickyError::SlotPortsOutOfRange { first, workers })?,
      ),
      None => None,
    };
    let slot_host = settled(options.slot_host, "slotHost")?;
    let slot_ip: IpAddr = slot_host.parse().map_err(|_| StickyError::InvalidOption {
      name: "slotHost",
      expected: Rule::IpAddress.expected(),
      got: quoted(&slot_host),
    })?;
    let takeover = settled(options.takeover, "takeover")?;
    let header = settled(options.header, "header")?.to_ascii_lowercase();
    let mode = match routing {
      Routing::Ip => RoutingMode::Ip,
      Routing::ProxyProtocol => RoutingMode::ProxyProtocol,
      Routing::Sid => RoutingMode::Sid,
      Routing::Header if header == "forwarded" => RoutingMode::Header(ForwardingHeader::Forwarded),
      Routing::Header => RoutingMode::Header(ForwardingHeader::AddressList(header)),
    };
    let sessions = match routing {
      Routing::Sid => Some(SessionSettings {
        balance: match settled(options.load_balancing_method, "loadBalancingMethod")? {
          LoadBalancingMethod::LeastConnection => NewSessionBalance::LeastConnection,
          LoadBalancingMethod::RoundRobin => NewSessionBalance::RoundRobin,
          LoadBalancingMethod::Random => NewSessionBalance::Random,
        },
        ttl_ms: u64::from(settled(options.session_ttl, "sessionTtl")?),
        max_entries: in_range(settled(options.max_sessions, "maxSessions")?, "maxSessions")?,
        slot_tags: first_slot_port.is_some(),
      }),
      _ => None,
    };
    let seed = settled(options.seed, "seed")?;
    let startup_wait = settled(options.startup_wait, "startupWait")?;
    let config = ListenConfig {
      listen: ListenSettings {
        host_is_default,
        backlog: in_range(settled(options.backlog, "backlog")?, "backlog")?,
        slots,
        seed,
      },
      accept_loop: AcceptLoopSettings {
        mode,
        trusted,
        ignore_missing_header: settled(options.ignore_missing_header, "ignoreMissingHeader")?,
        header: HeaderLimits {
          timeout: Duration::from_millis(u64::from(settled(options.header_timeout, "headerTimeout")?)),
          max_bytes: in_range(settled(options.max_header_bytes, "maxHeaderBytes")?, "maxHeaderBytes")?,
          max_waiting: in_range(settled(options.max_pending_headers, "maxPendingHeaders")?, "maxPendingHeaders")?,
        },
        sessions,
        max_pending_per_slot: in_range(
          settled(options.max_pending_per_slot, "maxPendingPerSlot")?,
          "maxPendingPerSlot",
        )?,
        max_parked: in_range(settled(options.max_parked, "maxParked")?, "maxParked")?,
        startup_wait: Duration::from_millis(u64::from(startup_wait)),
      },
      slot_ports: first_slot_port.map(|_| SlotPortSettings { host: slot_ip, first_port, share: takeover }),
    };
    Ok(ResolvedOptions {
      host: settled(options.host, "host")?,
      workers,
      seed,
      startup_wait,
      shutdown_timeout: settled(options.shutdown_timeout, "shutdownTimeout")?,
      handle_signals: settled(options.handle_signals, "handleSignals")?,
      kernel,
      kernel_asked,
      takeover,
      routing,
      slot_ports: first_slot_port.is_some(),
      first_slot_port: first_slot_port.unwrap_or(0),
      slot_host,
      config,
    })
  }
}

/// The value of an option `or_defaults` filled in. Every option whose
/// default is a value has one (`every_option_has_a_rule_and_a_default_or_a_derivation`
/// checks the table), so the error is for a table that lost one.
fn settled<T>(value: Option<T>, name: &'static str) -> std::result::Result<T, StickyError> {
  value.ok_or(StickyError::InvalidOption {
    name,
    expected: "a value (the option table gives it no default)".into(),
    got: "nothing".into(),
  })
}

/// `value` as the type the core takes. The option's rule already keeps it in
/// range, so a refusal here (with that rule's words) is for a rule that
/// allows more than the type holds.
fn in_range<T: TryFrom<u32>>(value: u32, name: &'static str) -> std::result::Result<T, StickyError> {
  T::try_from(value).map_err(|_| StickyError::InvalidOption {
    name,
    expected: OptionSpec::of(name).map_or(Cow::Borrowed("a smaller value"), |option| option.rule.expected()),
    got: format!("number {value}"),
  })
}

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

/// One option's rule and default, as `optionRules()` reports it.
#[napi(object)]
pub struct OptionRule {
  /// The option's name in the options object.
  pub name: String,
  /// `'count'`, `'flag'`, `'one-of'`, `'host'`, `'header'`, `'trusted-proxies'`, `'seed'`, `'slot-ports'` or `'ip-address'`.
  pub kind: String,
  /// A `count`'s smallest value.
  pub min: Option<u32>,
  /// A `count`'s largest value.
  pub max: Option<u32>,
  /// A `one-of`'s spellings.
  pub values: Option<Vec<String>>,
  /// What a refusal says the value must be.
  pub expected: String,
  /// The default, as JavaScript writes the value (the seed: a decimal
  /// string); absent when it is derived: `workers` (the CPU count) and
  /// `kernel` (`true` with `routing: 'ip'`).
  pub default_value: Option<Either4<u32, bool, String, Vec<String>>>,
}

/// Every option `resolveOptions` checks, what its value must be and its
/// default, in the order the types list them. The portable path (no
/// binding) checks options against a copy of this list generated into
/// `lib/portable/contract.js`.
#[napi]
pub fn option_rules() -> Vec<OptionRule> {
  OPTION_RULES
    .iter()
    .map(|&OptionSpec { name, rule, default }| OptionRule {
      name: name.into(),
      kind: rule.kind().into(),
      min: match rule {
        Rule::Count { min, .. } => Some(min),
        _ => None,
      },
      max: match rule {
        Rule::Count { max, .. } => Some(max),
        _ => None,
      },
      values: rule.spellings().map(|spellings| spellings.into_iter().map(String::from).collect()),
      expected: rule.expected().into_owned(),
      default_value: match default {
        OptionDefault::Count(count) => Some(Either4::A(count)),
        OptionDefault::Flag(flag) => Some(Either4::B(flag)),
        OptionDefault::Text(text) => Some(Either4::C(text.into())),
        OptionDefault::Seed(seed) => Some(Either4::C(seed.to_string())),
        OptionDefault::List(entries) => Some(Either4::D(entries.iter().map(|&entry| entry.into()).collect())),
        OptionDefault::CpuCount | OptionDefault::KernelWithIpRouting => None,
      },
    })
    .collect()
}

/// The defaults of the options only `setupMaster` (the @socket.io/sticky
/// shape) has.
#[napi(object)]
pub struct SetupMasterDefaults {
  /// The slots opened for the workers the user forks.
  pub max_workers: u32,
}

/// The defaults of `setupMaster`'s own options (index.js applies them;
/// `index.d.ts` and README state them, checked by `option-defaults.spec.js`).
#[napi]
pub fn setup_master_defaults() -> SetupMasterDefaults {
  SetupMasterDefaults { max_workers: SETUP_MASTER_MAX_WORKERS }
}

/// Reads one option after another from the user's object, each by its rule.
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
  fn invalid(name: &'static str, rule: Rule, value: &Unknown<'_>) -> std::result::Result<StickyError, StickyError> {
    Ok(StickyError::InvalidOption { name, expected: rule.expected(), got: describe(value)? })
  }

  /// An integer from the `min` to the `max` of a `Count` rule.
  fn count(&self, name: &'static str, rule: Rule) -> std::result::Result<Option<u32>, StickyError> {
    let Some(value) = self.value(name)? else { return Ok(None) };
    if let (Rule::Count { min, max }, ValueType::Number) = (rule, value.get_type()?) {
      let number = value.coerce_to_number()?.get_double()?;
      if number.fract() == 0.0 && number >= f64::from(min) && number <= f64::from(max) {
        return Ok(Some(number as u32));
      }
    }
    Err(Self::invalid(name, rule, &value)?)
  }

  fn flag(&self, name: &'static str, rule: Rule) -> std::result::Result<Option<bool>, StickyError> {
    let Some(value) = self.value(name)? else { return Ok(None) };
    if value.get_type()? == ValueType::Boolean {
      return Ok(Some(value.coerce_to_bool()?));
    }
    Err(Self::invalid(name, rule, &value)?)
  }

  fn string(value: &Unknown<'_>) -> std::result::Result<Option<String>, StickyError> {
    if value.get_type()? != ValueType::String {
      return Ok(None);
    }
    Ok(Some(value.coerce_to_string()?.into_utf8()?.into_owned()?))
  }

  fn spelled<T: Spelled>(&self, name: &'static str, rule: Rule) -> std::result::Result<Option<T>, StickyError> {
    let Some(value) = self.value(name)? else { return Ok(None) };
    match Self::string(&value)?.as_deref().and_then(T::parse) {
      Some(parsed) => Ok(Some(parsed)),
      None => Err(Self::invalid(name, rule, &value)?),
    }
  }

  /// A string as a `Host` (non-empty), `Header` (an RFC 9110 token) or
  /// `IpAddress` rule takes it (whether it is an address, `resolve` checks).
  fn text(&self, name: &'static str, rule: Rule) -> std::result::Result<Option<String>, StickyError> {
    let Some(value) = self.value(name)? else { return Ok(None) };
    let accepted = Self::string(&value)?.filter(|text| match rule {
      Rule::Host => !text.is_empty(),
      Rule::Header => !text.is_empty() && text.bytes().all(crate::core::parsers::is_token_byte),
      _ => true,
    });
    match accepted {
      Some(text) => Ok(Some(text)),
      None => Err(Self::invalid(name, rule, &value)?),
    }
  }

  /// `false` (none), `true` (the system picks each port: `Some(0)`), or the
  /// first port, from 1 to 65535.
  fn slot_ports(&self, name: &'static str, rule: Rule) -> std::result::Result<Option<u32>, StickyError> {
    let Some(value) = self.value(name)? else { return Ok(None) };
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
    Err(Self::invalid(name, rule, &value)?)
  }

  /// A non-empty array of non-empty strings, or one comma-separated string.
  fn trusted_proxies(&self, name: &'static str, rule: Rule) -> std::result::Result<Option<Vec<String>>, StickyError> {
    let Some(value) = self.value(name)? else { return Ok(None) };
    let entries = if let Some(list) = Self::string(&value)? {
      Some(list.split(',').map(|entry| entry.trim().to_owned()).collect::<Vec<_>>())
    } else if value.is_array()? {
      let array = value.coerce_to_object()?;
      let mut entries = Vec::new();
      for index in 0..array.get_array_length()? {
        let entry: Unknown<'_> = array.get_element(index)?;
        match Self::string(&entry)? {
          Some(entry) => entries.push(entry),
          None => return Err(Self::invalid(name, rule, &value)?),
        }
      }
      Some(entries)
    } else {
      None
    };
    match entries {
      Some(entries) if !entries.is_empty() && entries.iter().all(|entry| !entry.is_empty()) => Ok(Some(entries)),
      _ => Err(Self::invalid(name, rule, &value)?),
    }
  }

  /// An unsigned 64-bit integer: a safe-integer number, a bigint, or a decimal string.
  fn seed(&self, name: &'static str, rule: Rule) -> std::result::Result<Option<u64>, StickyError> {
    let Some(value) = self.value(name)? else { return Ok(None) };
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
      None => Err(Self::invalid(name, rule, &value)?),
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

  fn resolve(options: ListenOptions) -> ResolvedOptions {
    options.resolve(2).unwrap()
  }

  #[test]
  fn no_options_resolve_to_the_defaults_of_the_table() {
    let resolved = ListenOptions::default().resolve(4).unwrap();
    assert_eq!(
      (resolved.workers, resolved.seed, resolved.startup_wait, resolved.shutdown_timeout),
      (4, DEFAULT_SEED, 10_000, 10_000)
    );
    assert!(resolved.handle_signals && resolved.kernel && !resolved.kernel_asked && !resolved.takeover);
    assert_eq!(resolved.routing, Routing::Ip);
    assert!(!resolved.slot_ports);
    assert_eq!((resolved.first_slot_port, resolved.slot_host.as_str()), (0, "127.0.0.1"));
    let config = resolved.config;
    assert_eq!(config.listen, ListenSettings { host_is_default: true, backlog: 4096, slots: 4, seed: DEFAULT_SEED });
    assert_eq!(
      config.accept_loop,
      AcceptLoopSettings {
        mode: RoutingMode::Ip,
        trusted: TrustedProxies::parse(&["loopback"]).unwrap(),
        ignore_missing_header: true,
        header: config.accept_loop.header,
        sessions: None,
        max_pending_per_slot: 1024,
        max_parked: 4096,
        startup_wait: Duration::from_secs(10),
      }
    );
    let header = config.accept_loop.header;
    assert_eq!((header.timeout, header.max_bytes, header.max_waiting), (Duration::from_secs(60), 16_384, 1024));
    assert_eq!(config.slot_ports, None);
  }

  #[test]
  fn sid_routing_makes_session_settings_with_the_defaults() {
    let resolved = resolve(ListenOptions { routing: Some(Routing::Sid), ..Default::default() });
    assert_eq!(
      resolved.config.accept_loop.sessions,
      Some(SessionSettings {
        balance: NewSessionBalance::LeastConnection,
        ttl_ms: 120_000,
        max_entries: 100_000,
        slot_tags: false
      })
    );
    let tagged = resolve(ListenOptions {
      routing: Some(Routing::Sid),
      slot_ports: Some(0),
      load_balancing_method: Some(LoadBalancingMethod::Random),
      ..Default::default()
    });
    let sessions = tagged.config.accept_loop.sessions.unwrap();
    assert!(sessions.slot_tags);
    assert_eq!(sessions.balance, NewSessionBalance::Random);
  }

  #[test]
  fn every_option_has_a_rule_and_a_default_or_a_derivation() {
    let mut names: Vec<&str> = OPTION_RULES.iter().map(|option| option.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), OPTION_RULES.len());
    // Every value default fills its option in (the rest are derived, or "off").
    let filled = ListenOptions::default().or_defaults();
    let unfilled: Vec<&str> =
      OPTION_RULES.iter().map(|option| option.name).filter(|name| !filled.given().contains(name)).collect();
    assert_eq!(unfilled, ["workers", "kernel", "slotPorts"]);
    assert_eq!(OptionSpec::of("workers").unwrap().default, OptionDefault::CpuCount);
    assert_eq!(OptionSpec::of("kernel").unwrap().default, OptionDefault::KernelWithIpRouting);
    assert_eq!(OptionSpec::of("slotPorts").unwrap().default, OptionDefault::Flag(false));
    // A count's range fits the type the core takes it as.
    for option in OPTION_RULES {
      if let Rule::Count { min, max } = option.rule {
        assert!(1 <= min && min <= max && max <= MAX_COUNT, "{option:?}");
      }
    }
    assert!(u16::try_from(MAX_WORKERS).is_ok() && SETUP_MASTER_MAX_WORKERS <= MAX_WORKERS);
  }

  #[test]
  fn refusals_say_what_the_rule_expects() {
    let expected = |name| OptionSpec::of(name).map(|option| option.rule.expected());
    assert_eq!(expected("workers").as_deref(), Some("an integer from 1 to 1024"));
    assert_eq!(expected("maxHeaderBytes").as_deref(), Some("an integer from 64 to 1048576"));
    assert_eq!(expected("routing").as_deref(), Some("one of 'ip', 'header', 'proxy-protocol', 'sid'"));
    assert_eq!(OptionSpec::of("nope"), None);
    let rules = option_rules();
    assert_eq!(rules.len(), OPTION_RULES.len());
    let balance = rules.iter().find(|rule| rule.name == "loadBalancingMethod").unwrap();
    assert_eq!((balance.kind.as_str(), balance.values.clone().unwrap().len()), ("one-of", 3));
    let bytes = rules.iter().find(|rule| rule.name == "maxHeaderBytes").unwrap();
    assert_eq!((bytes.min, bytes.max), (Some(64), Some(1_048_576)));
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
      let resolved = resolve(ListenOptions { slot_ports: Some(3100), routing: Some(routing), ..Default::default() });
      assert!(resolved.slot_ports);
      assert_eq!(resolved.first_slot_port, 3100);
      assert_eq!(
        resolved.config.slot_ports,
        Some(SlotPortSettings { host: "127.0.0.1".parse().unwrap(), first_port: Some(3100), share: false })
      );
    }
    let system_picks = resolve(ListenOptions {
      slot_ports: Some(0),
      routing: Some(Routing::Sid),
      takeover: Some(true),
      ..Default::default()
    });
    assert_eq!(system_picks.config.slot_ports.map(|ports| (ports.first_port, ports.share)), Some((None, true)));
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
    assert_eq!(ListenOptions::default().resolve(1).unwrap().config.listen.seed, DEFAULT_SEED);
    assert_eq!(OptionSpec::of("seed").unwrap().default, OptionDefault::Seed(DEFAULT_SEED));
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
    assert!(resolve(ListenOptions { kernel: Some(true), ..Default::default() }).kernel);
  }

  #[test]
  fn kernel_steering_is_the_default_for_ip_routing_only_and_asked_for_only_when_set() {
    let default = resolve(ListenOptions::default());
    assert!(default.kernel && !default.kernel_asked);
    for routing in [Routing::Header, Routing::ProxyProtocol, Routing::Sid] {
      let resolved = resolve(ListenOptions { routing: Some(routing), ..Default::default() });
      assert!(!resolved.kernel && !resolved.kernel_asked, "{routing:?}");
    }
    let off = resolve(ListenOptions { kernel: Some(false), ..Default::default() });
    assert!(!off.kernel && !off.kernel_asked);
    let asked = resolve(ListenOptions { kernel: Some(true), ..Default::default() });
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
  fn the_header_name_is_matched_in_lower_case() {
    let options =
      ListenOptions { header: Some("X-Real-IP".into()), routing: Some(Routing::Header), ..Default::default() };
    assert_eq!(
      resolve(options).config.accept_loop.mode,
      RoutingMode::Header(ForwardingHeader::AddressList("x-real-ip".into()))
    );
    let options =
      ListenOptions { header: Some("Forwarded".into()), routing: Some(Routing::Header), ..Default::default() };
    assert_eq!(resolve(options).config.accept_loop.mode, RoutingMode::Header(ForwardingHeader::Forwarded));
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
  fn strings_are_quoted_as_json_does() {
    assert_eq!(quoted("http"), "\"http\"");
    assert_eq!(quoted("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
  }
}

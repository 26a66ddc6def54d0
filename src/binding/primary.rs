//! `Balancer`: the primary's accept loop, as JavaScript sees it.

use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;

use super::error::{from_napi, js_error, ErrorCode};
use super::listen::{inherited_socket_error, AddressInfo, Listen, ListenSpec};
use super::stats::{to_js_stats, StatsObject};
use crate::hrw::Rendezvous;
use crate::parsers::trusted::TrustedProxies;
use crate::primary::{
  adopt_listener, bind_listener, descriptor_budget, AllowedWorkers, Fault, HeaderLimits, PrimaryConfig, PrimaryEvent,
  PrimaryHandle,
};
use crate::routing::{ForwardingHeader, Router, RoutingMode};
use crate::sessions::{NewSessionBalance, SessionTable};

/// Options of `new Balancer(...)` beyond where to listen; `index.js`
/// validates and fills defaults.
#[napi(object)]
pub struct BalancerOptions {
  pub max_pending_per_slot: u32,
  pub max_parked: u32,
  /// Milliseconds to wait for every worker's first hello before accepting.
  pub startup_wait: u32,
  /// `'ip'`, `'header'`, `'proxy-protocol'` or `'sid'`.
  pub routing: String,
  /// Header routing: a header name (lower case) in `X-Forwarded-For` format, or `'forwarded'` (RFC 7239).
  pub header: String,
  /// IPs and CIDRs (and `loopback`, `linklocal`, `uniquelocal`) whose PROXY headers and forwarding headers are believed.
  pub trusted_proxies: Vec<String>,
  pub ignore_missing_header: bool,
  /// Milliseconds a client has to send its PROXY header or request head.
  pub header_timeout: u32,
  pub max_header_bytes: u32,
  /// Connections reading their header at once.
  pub max_pending_headers: u32,
  /// `'least-connection'`, `'round-robin'` or `'random'`: where new engine.io sessions go.
  pub load_balancing_method: String,
  /// Milliseconds an idle session entry is kept.
  pub session_ttl: u32,
  pub max_sessions: u32,
  /// When the user forks the workers: the abstract socket name they connect to.
  pub rendezvous: Option<String>,
}

/// An event from the accept loop: `kind` is `'slot-ready'`, `'slot-closed'`, `'drained'` or `'error'`.
#[napi(object)]
pub struct BalancerEvent {
  pub kind: String,
  pub slot: Option<u32>,
  pub pid: Option<u32>,
  pub requeued: Option<u32>,
  pub reason: Option<String>,
  pub code: Option<String>,
  pub message: Option<String>,
  pub fatal: Option<bool>,
}

#[napi]
pub struct Balancer {
  handle: PrimaryHandle,
  /// Pids that may take a channel from the rendezvous socket.
  allowed: AllowedWorkers,
  /// The listening socket's fd in this process, owned by the accept loop
  /// until `close`.
  listener_fd: RawFd,
}

#[napi]
impl Balancer {
  /// Binds the listening socket now (so listen errors are synchronous), or
  /// adopts the one in `listen.adopt`, and starts the accept loop.
  /// `on_event` receives `BalancerEvent`s.
  #[napi(constructor)]
  pub fn new(
    listen: ListenSpec,
    options: BalancerOptions,
    on_event: Function<'_, BalancerEvent, ()>,
  ) -> Result<Self, ErrorCode> {
    // Taken first, so they are closed whatever fails below.
    let adopted = listen.adopted()?;
    let Listen { host, host_is_default, port, backlog, slots, seed } = listen.check()?;
    let events = on_event
      .build_threadsafe_function::<BalancerEvent>()
      .callee_handled::<false>()
      .weak::<true>()
      .build_callback(|context| Ok(context.value))
      .map_err(from_napi)?;
    let listener = match adopted {
      Some(fds) => {
        let [fd]: [_; 1] = fds.try_into().map_err(|fds: Vec<_>| {
          inherited_socket_error(format!("{} sockets where the accept loop takes one", fds.len()))
        })?;
        adopt_listener(fd).map_err(inherited_socket_error)?
      }
      None => bind_listener(host, port, backlog, host_is_default).map_err(|error| {
        let mut js = js_error(error.code(), error.to_string());
        js.reason = format!("{} (syscall {})", error, error.syscall);
        js
      })?,
    };
    let listener_fd = listener.as_raw_fd();
    let invalid = |message: String| js_error("ERR_STICKY_INVALID_OPTION", message);
    let mode = match options.routing.as_str() {
      "ip" => RoutingMode::Ip,
      "proxy-protocol" => RoutingMode::ProxyProtocol,
      "sid" => RoutingMode::Sid,
      "header" if options.header.eq_ignore_ascii_case("forwarded") => RoutingMode::Header(ForwardingHeader::Forwarded),
      "header" => RoutingMode::Header(ForwardingHeader::AddressList(options.header.to_ascii_lowercase())),
      other => return Err(invalid(format!("routing {other:?} is not 'ip', 'header', 'proxy-protocol' or 'sid'"))),
    };
    let trusted_entries: Vec<&str> = options.trusted_proxies.iter().map(String::as_str).collect();
    let trusted =
      TrustedProxies::parse(&trusted_entries).map_err(|error| invalid(format!("trustedProxies: {error}")))?;
    let balance = match options.load_balancing_method.as_str() {
      "least-connection" => NewSessionBalance::LeastConnection,
      "round-robin" => NewSessionBalance::RoundRobin,
      "random" => NewSessionBalance::Random,
      other => {
        return Err(invalid(format!(
          "loadBalancingMethod {other:?} is not 'least-connection', 'round-robin' or 'random'"
        )))
      }
    };
    let sessions = (mode == RoutingMode::Sid)
      .then(|| SessionTable::new(slots, balance, u64::from(options.session_ttl), options.max_sessions as usize, seed));
    let hrw = Rendezvous::new(seed);
    let allowed = AllowedWorkers::default();
    let config = PrimaryConfig {
      slots,
      router: Router::new(mode, trusted, options.ignore_missing_header, hrw),
      header: HeaderLimits {
        timeout: Duration::from_millis(u64::from(options.header_timeout)),
        max_bytes: options.max_header_bytes.max(64) as usize,
        max_waiting: options.max_pending_headers.max(1) as usize,
      },
      sessions,
      rendezvous: options.rendezvous.as_ref().map(|name| (name.as_bytes().to_vec(), allowed.clone())),
      fault: match super::injected_fault().as_deref() {
        Some("accept-panic") => Some(Fault::AcceptPanic),
        _ => None,
      },
      max_pending_per_slot: options.max_pending_per_slot.max(1) as usize,
      max_parked: options.max_parked as usize,
      max_held: descriptor_budget(),
      startup_wait: Duration::from_millis(u64::from(options.startup_wait)),
    };
    let sink = Box::new(move |event: PrimaryEvent| {
      events.call(to_js_event(event), ThreadsafeFunctionCallMode::NonBlocking);
    });
    let handle = PrimaryHandle::start(config, listener, sink)
      .map_err(|error| js_error("ERR_STICKY_START", format!("cannot start the accept loop: {error}")))?;
    Ok(Balancer { handle, allowed, listener_fd })
  }

  #[napi]
  pub fn address(&self) -> AddressInfo {
    AddressInfo::from(self.handle.local_addr())
  }

  /// Creates the channel of a worker about to be forked into `slot`; returns
  /// the worker's end as a raw fd, which the caller places in the child's
  /// stdio and must then close (`fs.closeSync`).
  #[napi]
  pub fn open_slot(&self, slot: u32) -> Result<i32, ErrorCode> {
    let slot =
      u16::try_from(slot).map_err(|_| js_error("ERR_STICKY_INVALID_SLOT", format!("slot {slot} is out of range")))?;
    let worker_end = self
      .handle
      .open_slot(slot)
      .map_err(|error| js_error("ERR_STICKY_CHANNEL", format!("cannot create the channel for slot {slot}: {error}")))?;
    Ok(worker_end.into_raw_fd())
  }

  #[napi]
  pub fn stats(&self) -> StatsObject {
    to_js_stats(self.handle.stats().snapshot())
  }

  /// Lets the worker process `pid` (forked by the user) take a channel.
  #[napi]
  pub fn allow_worker(&self, pid: u32) {
    self.allowed.allow(pid);
  }

  #[napi]
  pub fn forget_worker(&self, pid: u32) {
    self.allowed.forget(pid);
  }

  /// The listening socket's fd, for a takeover offer to duplicate. Valid
  /// until `close`; do not close it.
  #[napi]
  pub fn listening_fd(&self) -> i32 {
    self.listener_fd
  }

  /// Stops accepting and closes the listening socket. `drainQueue` (default
  /// true): first take the connections already in the listen queue; false
  /// leaves them to the other process holding the socket (a takeover that
  /// gave up).
  #[napi]
  pub fn close(&self, drain_queue: Option<bool>) {
    if drain_queue.unwrap_or(true) {
      self.handle.close();
    } else {
      self.handle.close_leaving_queue();
    }
  }
}

fn to_js_event(event: PrimaryEvent) -> BalancerEvent {
  let empty = BalancerEvent {
    kind: String::new(),
    slot: None,
    pid: None,
    requeued: None,
    reason: None,
    code: None,
    message: None,
    fatal: None,
  };
  match event {
    PrimaryEvent::SlotReady { slot, pid } => {
      BalancerEvent { kind: "slot-ready".into(), slot: Some(u32::from(slot)), pid: Some(pid), ..empty }
    }
    PrimaryEvent::SlotClosed { slot, reason, requeued } => BalancerEvent {
      kind: "slot-closed".into(),
      slot: Some(u32::from(slot)),
      requeued: Some(u32::try_from(requeued).unwrap_or(u32::MAX)),
      reason: Some(reason.into()),
      ..empty
    },
    PrimaryEvent::Drained => BalancerEvent { kind: "drained".into(), ..empty },
    PrimaryEvent::Error { code, message, fatal } => {
      BalancerEvent { kind: "error".into(), code: Some(code), message: Some(message), fatal: Some(fatal), ..empty }
    }
  }
}

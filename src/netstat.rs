//! The host's listen counters from `/proc/net/netstat` (`TcpExt:
//! ListenOverflows`, `ListenDrops`): every listening socket of this network
//! namespace, not only this application's. Parsing is pure; [`read`] reads
//! the file.
//!
//! The file pairs lines: a header (`TcpExt: SyncookiesSent ...`) and the
//! values (`TcpExt: 0 ...`) in the same order.

/// The host-wide counters, as the kernel reports them (since boot, or since
/// the network namespace was created).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenCounters {
  /// Handshakes and connection requests dropped because an accept queue was full.
  pub overflows: u64,
  /// Connection requests and handshakes dropped at a listening socket for
  /// any reason (overflows included).
  pub drops: u64,
}

/// Finds the `TcpExt` counters in the text of `/proc/net/netstat`; `None`
/// when they are not there.
pub fn parse(text: &str) -> Option<ListenCounters> {
  let mut lines = text.lines().filter(|line| line.starts_with("TcpExt:"));
  let names = lines.next()?.split_whitespace().skip(1);
  let values = lines.next()?.split_whitespace().skip(1);
  let mut counters = ListenCounters::default();
  let (mut overflows, mut drops) = (false, false);
  for (name, value) in names.zip(values) {
    match name {
      "ListenOverflows" => (counters.overflows, overflows) = (value.parse().ok()?, true),
      "ListenDrops" => (counters.drops, drops) = (value.parse().ok()?, true),
      _ => {}
    }
  }
  (overflows && drops).then_some(counters)
}

/// The host's counters now; `None` where `/proc/net/netstat` cannot be read
/// or lacks them.
pub fn read() -> Option<ListenCounters> {
  parse(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn the_listen_counters_are_found_by_name() {
    let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPAbortOnData\n\
                TcpExt: 3 41 43 7\n\
                IpExt: InNoRoutes ListenOverflows\n\
                IpExt: 0 99\n";
    assert_eq!(parse(text), Some(ListenCounters { overflows: 41, drops: 43 }));
  }

  #[test]
  fn missing_or_garbled_counters_are_none() {
    assert_eq!(parse(""), None);
    assert_eq!(parse("TcpExt: ListenOverflows\nTcpExt: 1\n"), None, "no ListenDrops");
    assert_eq!(parse("TcpExt: ListenOverflows ListenDrops\nTcpExt: 1 x\n"), None);
    assert_eq!(parse("TcpExt: ListenOverflows ListenDrops\n"), None, "no values");
  }

  #[test]
  fn this_host_reports_them() {
    assert!(read().is_some(), "/proc/net/netstat has TcpExt ListenOverflows and ListenDrops");
  }
}

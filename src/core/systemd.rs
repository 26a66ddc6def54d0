//! systemd socket activation: which inherited descriptors are listening
//! sockets meant for this process. No I/O.
//!
//! The protocol (`sd_listen_fds(3)`): systemd starts the service with its
//! sockets at fds 3, 4, ... and sets `LISTEN_FDS` (how many), `LISTEN_PID`
//! (the pid they are meant for: a process that forks or execs before reading
//! them must not take another's), and optionally `LISTEN_FDNAMES` (their
//! `FileDescriptorName=`s, colon-separated).

use std::os::fd::RawFd;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedSocket {
  pub fd: RawFd,
  /// Its `FileDescriptorName=` (systemd defaults it to the socket unit's name).
  pub name: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SystemdError {
  #[error("LISTEN_FDS={0:?} is not a number of descriptors")]
  Count(String),
  #[error("LISTEN_PID={0:?} is not a process id")]
  Pid(String),
}

/// The sockets passed to process `our_pid`, from the three variables as
/// found in the environment. `Ok(None)`: the variables are absent, or meant
/// for another process (leave them alone). `Ok(Some(..))`: they are ours
/// (consume them). Names are attached only when there is one per descriptor,
/// as systemd writes them.
pub fn passed_sockets(
  listen_fds: Option<&str>,
  listen_pid: Option<&str>,
  listen_fdnames: Option<&str>,
  our_pid: u32,
) -> Result<Option<Vec<PassedSocket>>, SystemdError> {
  let (Some(listen_fds), Some(listen_pid)) = (listen_fds, listen_pid) else { return Ok(None) };
  let pid: u32 = listen_pid.trim().parse().map_err(|_| SystemdError::Pid(listen_pid.into()))?;
  if pid != our_pid {
    return Ok(None);
  }
  let count: RawFd = listen_fds.trim().parse().map_err(|_| SystemdError::Count(listen_fds.into()))?;
  let last =
    LISTEN_FDS_START.checked_add(count).filter(|_| count >= 0).ok_or(SystemdError::Count(listen_fds.into()))?;
  let names: Option<Vec<&str>> = listen_fdnames.map(|names| names.split(':').collect());
  let names = names.filter(|names| names.len() == count as usize);
  Ok(Some(
    (LISTEN_FDS_START..last)
      .enumerate()
      .map(|(i, fd)| PassedSocket {
        fd,
        name: names.as_ref().map(|names| names[i].to_string()).filter(|name| !name.is_empty()),
      })
      .collect(),
  ))
}

#[cfg(test)]
mod tests {
  use super::*;
  use proptest::prelude::*;

  #[test]
  fn two_named_sockets_for_this_process() {
    let passed = passed_sockets(Some("2"), Some("77"), Some("web:admin"), 77).unwrap().unwrap();
    assert_eq!(
      passed,
      vec![PassedSocket { fd: 3, name: Some("web".into()) }, PassedSocket { fd: 4, name: Some("admin".into()) }]
    );
  }

  #[test]
  fn sockets_meant_for_another_process_are_not_ours() {
    assert_eq!(passed_sockets(Some("1"), Some("76"), None, 77), Ok(None));
  }

  #[test]
  fn without_both_variables_nothing_was_passed() {
    assert_eq!(passed_sockets(None, Some("77"), None, 77), Ok(None));
    assert_eq!(passed_sockets(Some("1"), None, None, 77), Ok(None));
  }

  #[test]
  fn names_that_do_not_match_the_count_are_ignored() {
    let passed = passed_sockets(Some("2"), Some("77"), Some("web"), 77).unwrap().unwrap();
    assert!(passed.iter().all(|socket| socket.name.is_none()));
  }

  #[test]
  fn malformed_values_are_errors_that_quote_them() {
    assert_eq!(passed_sockets(Some("x"), Some("77"), None, 77), Err(SystemdError::Count("x".into())));
    assert_eq!(passed_sockets(Some("-1"), Some("77"), None, 77), Err(SystemdError::Count("-1".into())));
    assert_eq!(passed_sockets(Some("1"), Some("me"), None, 77), Err(SystemdError::Pid("me".into())));
    assert!(passed_sockets(Some(&i32::MAX.to_string()), Some("77"), None, 77).is_err());
  }

  #[test]
  fn zero_sockets_is_an_empty_list() {
    assert_eq!(passed_sockets(Some("0"), Some("77"), None, 77), Ok(Some(vec![])));
  }

  proptest! {
    #[test]
    fn any_count_gives_consecutive_fds_from_3(count in 0i32..512, pid in any::<u32>()) {
      let passed = passed_sockets(Some(&count.to_string()), Some(&pid.to_string()), None, pid).unwrap().unwrap();
      prop_assert_eq!(passed.len(), count as usize);
      for (i, socket) in passed.iter().enumerate() {
        prop_assert_eq!(socket.fd, 3 + i as i32);
      }
    }

    #[test]
    fn arbitrary_values_never_panic(fds in ".{0,12}", pid in ".{0,12}", names in proptest::option::of(".{0,40}")) {
      let _ = passed_sockets(Some(&fds), Some(&pid), names.as_deref(), 1);
    }
  }
}

//! Channels for workers the user forks (the @socket.io/sticky API shape):
//! they connect to an abstract `SOCK_SEQPACKET` socket, and only a process of
//! this cluster may get a channel — its pid must be a worker pid JavaScript
//! registered (`RendezvousSocket::allow_worker`) and its uid ours. No other
//! process may ever obtain a client connection from the primary.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::channels::attach_channel;
use super::driver::NewChannel;
use super::events::{PrimaryEvent, Problem};
use super::loop_state::{LoopState, ACCEPT_RETRY};

/// Pids of the cluster's workers, kept by JavaScript, read by the accept
/// loop; how many there are is watched (none: connections are refused).
#[derive(Clone)]
pub struct AllowedWorkers(Arc<(Mutex<HashSet<u32>>, watch::Sender<usize>)>);

impl Default for AllowedWorkers {
  fn default() -> Self {
    AllowedWorkers(Arc::new((Mutex::new(HashSet::new()), watch::Sender::new(0))))
  }
}

impl AllowedWorkers {
  fn update(&self, change: impl FnOnce(&mut HashSet<u32>)) {
    let (pids, count) = &*self.0;
    let mut pids = pids.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    change(&mut pids);
    count.send_replace(pids.len());
  }

  pub fn allow(&self, pid: u32) {
    self.update(|pids| {
      pids.insert(pid);
    });
  }

  pub fn forget(&self, pid: u32) {
    self.update(|pids| {
      pids.remove(&pid);
    });
  }

  pub fn contains(&self, pid: u32) -> bool {
    self.0 .0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(&pid)
  }

  /// How many workers exist, now and whenever it changes.
  pub fn watch_count(&self) -> watch::Receiver<usize> {
    self.0 .1.subscribe()
  }
}

/// How long no worker must exist before connections are refused: a
/// worker forked just now is known to JavaScript a tick later (cluster's
/// 'fork' event), and the one that exits may be replaced at once by the
/// user's 'exit' handler.
/// The portable path waits as long (`noWorkerGraceMs()`, in its generated contract).
pub const NO_WORKER_GRACE: Duration = Duration::from_millis(200);

/// Tells the ledger whether any worker exists, on every change, until the
/// loop ends: at once when one does, after `NO_WORKER_GRACE` when none does.
pub async fn watch_workers(state: Rc<LoopState>, allowed: AllowedWorkers) {
  let mut count = allowed.watch_count();
  loop {
    if *count.borrow_and_update() > 0 {
      state.driver.borrow_mut().set_workers_exist(true);
    } else {
      match tokio::time::timeout(NO_WORKER_GRACE, count.changed()).await {
        Err(_elapsed) => state.driver.borrow_mut().set_workers_exist(false),
        Ok(Ok(())) => continue,
        Ok(Err(_closed)) => return,
      }
    }
    if count.changed().await.is_err() {
      return;
    }
  }
}

/// A worker usually connects after JavaScript has seen its fork; one that
/// comes first is checked again this often, this many times.
const RECHECK_EVERY: Duration = Duration::from_millis(20);
const RECHECKS: u32 = 100;

/// Takes channels from workers the user forked, checks each, and gives it a
/// free slot.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub async fn accept_worker_channels(
  state: Rc<LoopState>,
  listener: AsyncFd<OwnedFd>,
  allowed: AllowedWorkers,
) -> io::Result<()> {
  let our_uid = nix::unistd::getuid().as_raw();
  take_each(
    &listener,
    crate::seqpacket::accept,
    |channel| {
      tokio::task::spawn_local(check_then_attach(state.clone(), channel, allowed.clone(), our_uid));
    },
    |error| state.report_accept_error("accepting a worker's channel", error),
  )
  .await
}

/// Takes each connection waiting on `listener` with `accept` and hands it to
/// `admit`. A failure other than an empty queue (EMFILE...) is reported and
/// retried after `ACCEPT_RETRY`: the listener stays readable meanwhile, and
/// retrying at once would spin.
async fn take_each(
  listener: &AsyncFd<OwnedFd>,
  mut accept: impl FnMut(BorrowedFd<'_>) -> io::Result<OwnedFd>,
  mut admit: impl FnMut(OwnedFd),
  mut report: impl FnMut(&io::Error),
) -> io::Result<()> {
  loop {
    let mut guard = listener.readable().await?;
    match accept(listener.get_ref().as_fd()) {
      Ok(channel) => admit(channel),
      Err(error) if error.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
      Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
      Err(error) => {
        drop(guard);
        report(&error);
        tokio::time::sleep(ACCEPT_RETRY).await;
      }
    }
  }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
/// Checks who connected; a worker of this cluster gets a new channel (and
/// its lifeline) over `connection`, which then closes.
async fn check_then_attach(state: Rc<LoopState>, connection: OwnedFd, allowed: AllowedWorkers, our_uid: u32) {
  let Ok((pid, uid)) = crate::seqpacket::peer_credentials(connection.as_fd()) else { return };
  let mut checks = 0;
  while uid == our_uid && !allowed.contains(pid) && checks < RECHECKS {
    tokio::time::sleep(RECHECK_EVERY).await;
    checks += 1;
  }
  let free_slot = state.driver.borrow().ledger().free_slot();
  let refusal = match free_slot {
    Some(slot) if uid == our_uid && allowed.contains(pid) => {
      match NewChannel::for_connection(connection.as_fd()).and_then(|new| attach_channel(&state, slot, new)) {
        Ok(()) => return,
        Err(source) => {
          (state.events)(PrimaryEvent::Problem(Problem::ChannelFailed { pid, slot, source }));
          return;
        }
      }
    }
    None => "every worker slot is taken",
    Some(_) => "not a worker of this cluster",
  };
  state.stats.rejected_channels.fetch_add(1, Relaxed);
  (state.events)(PrimaryEvent::Problem(Problem::ForeignChannel { pid, uid, reason: refusal }));
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::cell::Cell;

  #[tokio::test(flavor = "current_thread")]
  async fn a_failing_accept_on_a_readable_listener_backs_off_instead_of_spinning() {
    // A socket with a record nobody reads stays readable, like a listener
    // with a connection that cannot be accepted for want of descriptors.
    let (listener, peer) = crate::seqpacket::socketpair().unwrap();
    crate::seqpacket::send_record(peer.as_fd(), b"pending", &[]).unwrap();
    let listener = super::super::driver::register(listener, tokio::io::Interest::READABLE).unwrap();
    let attempts = Cell::new(0u32);
    let reports = Cell::new(0u32);
    let taking = take_each(
      &listener,
      |_| {
        attempts.set(attempts.get() + 1);
        // A spinning loop never yields to the timeout below: fail instead of hanging.
        assert!(attempts.get() < 50, "accept retried {} times at once: spinning", attempts.get());
        Err(io::Error::from_raw_os_error(libc::EMFILE))
      },
      |_| panic!("nothing is accepted"),
      |error| {
        assert_eq!(error.raw_os_error(), Some(libc::EMFILE));
        reports.set(reports.get() + 1);
      },
    );
    let _ = tokio::time::timeout(Duration::from_millis(350), taking).await;
    // One attempt per 100 ms retry: 4 in 350 ms; a spinning loop makes thousands.
    assert!((2..=5).contains(&attempts.get()), "{} attempts in 350 ms", attempts.get());
    assert_eq!(reports.get(), attempts.get(), "every failure is reported");
  }
}

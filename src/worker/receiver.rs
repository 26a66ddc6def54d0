//! Receives connections from the primary on a thread of its own and passes
//! them, in batches, to a delivery callback (JavaScript, through the binding).
//!
//! The acknowledgement protocol is what makes a worker's death lossless for
//! connections it never took: a batch is acknowledged *before* it is
//! delivered and never after `close`, both under one lock, so every
//! connection is either acknowledged and delivered here, or unacknowledged and
//! re-dispatched by the primary — never both, never neither.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::channel;
use crate::wire::{self, Reply};

/// At most this many connections per delivery: bounds the work one JavaScript
/// callback does, while a busy channel still costs one wake-up per batch.
const MAX_BATCH: usize = 64;

/// A connection now owned by this worker.
#[derive(Debug)]
pub struct Delivered {
  pub fd: OwnedFd,
  /// The client a PROXY header named (`proxy-protocol` routing).
  pub client: Option<SocketAddr>,
}

#[derive(Default)]
pub struct ReceiverStats {
  pub received: AtomicU64,
  /// Records whose descriptor never arrived (this process was out of fds).
  pub lost_descriptors: AtomicU64,
  pub invalid_records: AtomicU64,
}

struct Control {
  closing: bool,
}

pub struct Receiver {
  channel: Arc<OwnedFd>,
  control: Arc<Mutex<Control>>,
  stats: Arc<ReceiverStats>,
  thread: Option<JoinHandle<()>>,
}

impl Receiver {
  /// Says hello to the primary (which then starts sending) and receives until
  /// `close` or until the primary closes the channel. `deliver(batch,
  /// primary_closed)` returns false when nobody can take connections any
  /// more; `primary_closed` is true once, last, when the primary closed the
  /// channel (this worker was replaced, or the primary is gone): the worker
  /// should finish what it has and exit.
  pub fn start<F>(channel: OwnedFd, deliver: F) -> io::Result<Self>
  where
    F: FnMut(Vec<Delivered>, bool) -> bool + Send + 'static,
  {
    channel::set_nonblocking(&channel, false)?;
    let hello = wire::encode_reply(Reply::Hello { pid: std::process::id() });
    channel::send_record(channel.as_fd(), &hello, None)?;
    let channel = Arc::new(channel);
    let control = Arc::new(Mutex::new(Control { closing: false }));
    let stats = Arc::new(ReceiverStats::default());
    let thread = {
      let (channel, control, stats) = (channel.clone(), control.clone(), stats.clone());
      std::thread::Builder::new()
        .name("sticky-receiver".into())
        .spawn(move || receive_until_closed(&channel, &control, &stats, deliver))?
    };
    Ok(Receiver { channel, control, stats, thread: Some(thread) })
  }

  pub fn stats(&self) -> &ReceiverStats {
    &self.stats
  }

  /// Sends a reply other than an ack (a session report) from any thread.
  /// Returns false when the channel is closed or full (the report is lost:
  /// the primary then routes that session as unknown and its client reconnects).
  pub fn send_reply(&self, reply: Reply<'_>) -> bool {
    let control = self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if control.closing {
      return false;
    }
    channel::send_record(self.channel.as_fd(), &wire::encode_reply(reply), None).is_ok()
  }

  /// Stops taking connections: nothing is acknowledged from now on, and the
  /// primary sees the channel close at once and sends what this worker did
  /// not take to other workers.
  pub fn close(&mut self) {
    {
      let mut control = self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
      if control.closing {
        return;
      }
      control.closing = true;
      channel::shutdown(self.channel.as_fd());
    }
    if let Some(thread) = self.thread.take() {
      // The shutdown wakes the thread; it ends after at most one delivery.
      let _ = thread.join();
    }
    // Records still queued hold references to client connections that the
    // primary is re-dispatching; close them now rather than when this
    // channel's descriptor is finally dropped, or those clients would never
    // see their connection close.
    let mut buf = [0u8; wire::HANDOFF_LEN];
    while let Ok(received) = channel::recv_record(self.channel.as_fd(), &mut buf, false) {
      if received.len == 0 {
        break;
      }
    }
  }
}

impl Drop for Receiver {
  fn drop(&mut self) {
    let mut control = self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    control.closing = true;
    channel::shutdown(self.channel.as_fd());
  }
}

fn receive_until_closed<F>(channel: &OwnedFd, control: &Mutex<Control>, stats: &ReceiverStats, mut deliver: F)
where
  F: FnMut(Vec<Delivered>, bool) -> bool,
{
  let mut buf = [0u8; wire::HANDOFF_LEN];
  loop {
    let mut batch = Vec::new();
    let mut last_seq = None;
    let mut peer_closed = false;
    let mut wait = true;
    while batch.len() < MAX_BATCH {
      match channel::recv_record(channel.as_fd(), &mut buf, wait) {
        Ok(received) if received.len == 0 => {
          peer_closed = true;
          break;
        }
        Ok(received) => {
          wait = false;
          let Ok(handoff) = wire::decode_handoff(&buf[..received.len]) else {
            stats.invalid_records.fetch_add(1, Relaxed);
            continue;
          };
          last_seq = Some(handoff.seq);
          match received.fd {
            Some(fd) if !received.truncated => {
              stats.received.fetch_add(1, Relaxed);
              batch.push(Delivered { fd, client: handoff.client })
            }
            _ => {
              stats.lost_descriptors.fetch_add(1, Relaxed);
            }
          }
        }
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
        Err(_) => {
          peer_closed = true;
          break;
        }
      }
    }
    if let Some(up_to) = last_seq {
      let control = control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
      if control.closing {
        // This worker is closing: not acknowledged, so the primary
        // re-dispatches these. Dropping the batch closes our copies.
        return;
      }
      if !acknowledge(channel, up_to) {
        // The primary closed the channel: it re-dispatches everything
        // unacknowledged, so delivering this batch would serve a connection
        // twice. Drop it, and say the primary is gone.
        drop(control);
        drop(batch);
        deliver(Vec::new(), true);
        return;
      }
    }
    if peer_closed {
      // Told even with nothing to deliver, unless this worker closed first.
      let closing = control.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).closing;
      if !closing {
        deliver(batch, true);
      }
      return;
    }
    if !batch.is_empty() && !deliver(batch, false) {
      return;
    }
  }
}

/// Sends a cumulative ack; waits (briefly) for room rather than skip it, since
/// a later ack would cover these connections without their having been
/// acknowledged first. False when the channel is closed.
fn acknowledge(channel: &OwnedFd, up_to: u64) -> bool {
  let ack = wire::encode_reply(Reply::Ack { up_to });
  for _ in 0..1000 {
    match channel::send_record(channel.as_fd(), &ack, None) {
      Ok(()) => return true,
      Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
        std::thread::sleep(std::time::Duration::from_millis(1))
      }
      Err(_) => return false,
    }
  }
  false
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::wire::{decode_reply, encode_handoff, Handoff};
  use std::sync::mpsc;
  use std::time::Duration;

  fn handoff(primary: &OwnedFd, seq: u64) {
    let (payload, _other) = channel::socketpair().unwrap();
    let mut record = Vec::new();
    encode_handoff(&Handoff { seq, client: Some("10.1.2.3:4567".parse().unwrap()) }, &mut record);
    channel::send_record(primary.as_fd(), &record, Some(payload.as_fd())).unwrap();
  }

  fn read_reply(primary: &OwnedFd) -> Option<Reply<'static>> {
    let mut buf = [0u8; 64];
    channel::set_nonblocking(primary, false).unwrap();
    let received = channel::recv_record(primary.as_fd(), &mut buf, true).ok()?;
    if received.len == 0 {
      return None;
    }
    match decode_reply(&buf[..received.len]).unwrap() {
      Reply::Hello { pid } => Some(Reply::Hello { pid }),
      Reply::Ack { up_to } => Some(Reply::Ack { up_to }),
      other => panic!("unexpected reply {other:?}"),
    }
  }

  #[test]
  fn the_worker_says_hello_then_acknowledges_what_it_delivers() {
    let (primary, worker) = channel::socketpair().unwrap();
    let (delivered, deliveries) = mpsc::channel();
    let mut receiver = Receiver::start(worker, move |batch, _closed| delivered.send(batch).is_ok()).unwrap();
    assert_eq!(read_reply(&primary), Some(Reply::Hello { pid: std::process::id() }));
    handoff(&primary, 1);
    handoff(&primary, 2);
    let mut got = Vec::new();
    while got.len() < 2 {
      got.extend(deliveries.recv_timeout(Duration::from_secs(5)).unwrap());
    }
    assert_eq!(got[0].client, Some("10.1.2.3:4567".parse().unwrap()));
    let mut acked = 0;
    while acked < 2 {
      match read_reply(&primary) {
        Some(Reply::Ack { up_to }) => acked = up_to,
        other => panic!("expected an ack, got {other:?}"),
      }
    }
    receiver.close();
    assert_eq!(read_reply(&primary), None, "the primary sees the channel close");
    assert_eq!(receiver.stats().received.load(Relaxed), 2);
  }

  #[test]
  fn the_worker_is_told_when_the_primary_closes_its_channel() {
    let (primary, worker) = channel::socketpair().unwrap();
    let (told, telling) = mpsc::channel();
    let _receiver = Receiver::start(worker, move |batch, closed| told.send((batch.len(), closed)).is_ok()).unwrap();
    assert!(matches!(read_reply(&primary), Some(Reply::Hello { .. })));
    handoff(&primary, 1);
    assert_eq!(telling.recv_timeout(Duration::from_secs(5)).unwrap(), (1, false));
    drop(primary);
    assert_eq!(telling.recv_timeout(Duration::from_secs(5)).unwrap(), (0, true));
  }

  #[test]
  fn after_close_nothing_is_acknowledged_or_delivered() {
    let (primary, worker) = channel::socketpair().unwrap();
    let (delivered, deliveries) = mpsc::channel::<Vec<Delivered>>();
    let mut receiver = Receiver::start(worker, move |batch, _closed| delivered.send(batch).is_ok()).unwrap();
    assert!(matches!(read_reply(&primary), Some(Reply::Hello { .. })));
    receiver.close();
    let (payload, _other) = channel::socketpair().unwrap();
    let mut record = Vec::new();
    encode_handoff(&Handoff { seq: 1, client: None }, &mut record);
    let refused = channel::send_record(primary.as_fd(), &record, Some(payload.as_fd())).unwrap_err();
    assert_eq!(
      refused.raw_os_error(),
      Some(libc::EPIPE),
      "the primary learns at once that this worker takes nothing more"
    );
    assert_eq!(read_reply(&primary), None);
    assert!(deliveries.recv_timeout(Duration::from_millis(100)).is_err());
  }
}

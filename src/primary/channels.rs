//! Serving worker channels: one task per channel writes its queued
//! hand-offs when it is writable and polls its replies.
//!
//! Replies have no readiness wake-up of their own (the channel is registered
//! for writability only): they are read after every accept batch (see
//! [`acceptor`](super::acceptor)), before a request naming an unknown session
//! is routed, and at a deadline here — soon while the worker owes
//! acknowledgements or its hello, rarely when idle (to notice a worker that
//! closed; sending to it notices at once).

use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use tokio::time::{Duration, Instant};

use crate::hrw::SlotId;

use super::driver::{ChannelIo, Flush};
use super::handle::Shared;
use super::ledger::ChannelId;
use super::supervise::spawn_supervised;

/// How soon replies are read while a worker owes acknowledgements or its hello.
const REPLY_POLL_BUSY: Duration = Duration::from_millis(2);
/// How soon an idle channel is checked.
const REPLY_POLL_IDLE: Duration = Duration::from_millis(50);

/// Gives `slot` a new channel and starts serving it.
pub fn attach_channel(shared: &Rc<Shared>, slot: SlotId, fd: OwnedFd) -> io::Result<()> {
  let (channel, io) = shared.driver.borrow_mut().attach(slot, fd)?;
  let served = serve_channel(shared.clone(), channel, io);
  spawn_supervised(&shared.events, "a worker channel", async move {
    served.await;
    Ok(())
  });
  Ok(())
}

/// Serves one channel until the ledger is finished with it; then lets go of
/// the descriptor (the worker sees end-of-file once the driver has too).
async fn serve_channel(shared: Rc<Shared>, channel: ChannelId, io: Rc<ChannelIo>) {
  // The deadline survives the loop's other wake-ups (writability, queued
  // hand-offs): in a burst those come more often than it, and a worker left
  // unheard fills its side of the channel.
  let mut read_at = Instant::now() + REPLY_POLL_BUSY;
  loop {
    let (open, wants_write, busy) = {
      let driver = shared.driver.borrow();
      let ledger = driver.ledger();
      (ledger.is_open(channel), ledger.wants_write(channel), ledger.awaits_replies(channel))
    };
    if !open {
      return;
    }
    if busy {
      read_at = read_at.min(Instant::now() + REPLY_POLL_BUSY);
    }
    tokio::select! {
      ready = io.fd.writable(), if wants_write => {
        let Ok(mut guard) = ready else {
          // The reactor refused the descriptor: the channel is unusable, and
          // what it held goes elsewhere.
          shared.driver.borrow_mut().fail(channel);
          return;
        };
        let flush = shared.driver.borrow_mut().flush(channel);
        match flush {
          Flush::WouldBlock => guard.clear_ready(),
          Flush::Gone => return,
          Flush::Done => {}
        }
      }
      _ = tokio::time::sleep_until(read_at) => {
        shared.driver.borrow_mut().read_replies(channel);
        let busy = shared.driver.borrow().ledger().awaits_replies(channel);
        read_at = Instant::now() + if busy { REPLY_POLL_BUSY } else { REPLY_POLL_IDLE };
      }
      // Hand-offs queued behind a full channel, or the channel was closed.
      _ = io.wake.notified() => {}
    }
  }
}

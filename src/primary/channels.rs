//! Serving worker channels: one task per channel writes its queued
//! hand-offs when it is writable, reads the worker's replies when they
//! arrive, and notices when the worker leaves (its lifeline closes); one
//! task for all of them peeks now and then what each worker has taken,
//! while some records are in flight (not known to be taken) (for the statistics and the
//! memory they take; the budget and draining peek when they need to).

use std::io;
use std::rc::Rc;

use tokio::time::Duration;

use crate::core::hrw::SlotId;

use super::driver::{ChannelIo, Flush, NewChannel};
use super::loop_state::LoopState;
use super::supervise::spawn_supervised;
use crate::core::ledger::ChannelId;

/// How often the queues of workers with records in flight (not known to be
/// taken) are peeked.
const PEEK_EVERY: Duration = Duration::from_millis(10);

/// Peeks the queues every `PEEK_EVERY` while records are in flight, so the
/// ledger (and `stats()`) knows what each worker has taken; sleeps until the
/// driver sends some otherwise.
pub async fn update_taken_periodically(state: Rc<LoopState>) {
  loop {
    state.peek.wanted.notified().await;
    loop {
      tokio::time::sleep(PEEK_EVERY).await;
      state.driver.borrow_mut().update_taken();
      if state.driver.borrow().ledger().with_in_flight().is_empty() {
        state.peek.armed.set(false);
        break;
      }
    }
  }
}

/// Gives `slot` a new channel and starts serving it.
pub fn attach_channel(state: &Rc<LoopState>, slot: SlotId, new: NewChannel) -> io::Result<()> {
  let (channel, io) = state.driver.borrow_mut().attach(slot, new)?;
  let served = serve_channel(state.clone(), channel, io);
  spawn_supervised(&state.events, "a worker channel", async move {
    served.await;
    Ok(())
  });
  Ok(())
}

/// Serves one channel until the ledger is finished with it; then lets go of
/// the descriptor (the worker sees end-of-file once the driver has too).
async fn serve_channel(state: Rc<LoopState>, channel: ChannelId, io: Rc<ChannelIo>) {
  loop {
    let (open, wants_write) = {
      let driver = state.driver.borrow();
      let ledger = driver.ledger();
      (ledger.is_open(channel), ledger.wants_write(channel))
    };
    if !open {
      return;
    }
    tokio::select! {
      ready = io.fd.writable(), if wants_write => {
        let Ok(mut guard) = ready else {
          // The reactor refused the descriptor: the channel is unusable, and
          // what it held goes elsewhere.
          state.driver.borrow_mut().fail(channel);
          return;
        };
        let flush = state.driver.borrow_mut().flush(channel);
        match flush {
          Flush::WouldBlock => guard.clear_ready(),
          Flush::Gone => return,
          Flush::Done => {}
        }
      }
      ready = io.fd.readable() => {
        let Ok(mut guard) = ready else {
          state.driver.borrow_mut().fail(channel);
          return;
        };
        if state.driver.borrow_mut().read_replies(channel) {
          guard.clear_ready();
        }
      }
      _ = io.lifeline.readable() => state.driver.borrow_mut().worker_left(channel),
      // Hand-offs queued behind a full channel, or the channel was closed.
      _ = io.wake.notified() => {}
    }
  }
}

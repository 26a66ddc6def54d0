//! The accept task: takes connections off the listen queue while the ledger
//! admits them, routes each (at once by peer address, or through a header
//! read), and after `close` drains the queue before the listener closes.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use socket2::Socket;
use tokio::io::unix::AsyncFd;

use super::connection::Connection;
use super::events::{Fault, PrimaryEvent};
use super::header_reader::read_header_then_dispatch;
use super::loop_state::{LoopState, ACCEPT_RETRY};
use crate::core::ledger::Admission;

/// Connections taken per readiness wake-up, before other tasks get a turn.
const ACCEPTS_PER_WAKEUP: usize = 64;

/// Accepts connections while the ledger admits them, and routes each. After
/// `close`, takes every connection still in the listen queue (the kernel
/// accepted them: they are served, not reset) unless told to leave them to
/// the socket's other holder, then closes the listener. Shutting down
/// (`refuse_new_on_close`), it first makes the kernel drop new connection
/// requests and lets handshakes under way complete: a handshake completing
/// between the last empty `accept` and the close would be reset.
pub async fn accept_connections(state: Rc<LoopState>, listener: AsyncFd<Socket>) -> io::Result<()> {
  // Closing with new connections refused: until when handshakes under way may still complete.
  let mut settling_until: Option<Instant> = None;
  loop {
    let admission = state.driver.borrow_mut().admission();
    if let Admission::Paused(at_most) = admission {
      wait_for_gate(&state, at_most).await;
      continue;
    }
    let draining = state.driver.borrow().ledger().is_closed();
    if draining {
      if !state.drain_queue_on_close.get() {
        return Ok(());
      }
      if state.refuse_new_on_close.get() && settling_until.is_none() {
        // From here no new handshake completes; those under way get a
        // moment. Without the filter (the kernel refused it), no wait.
        let refused = crate::reuseport::refuse_new_connections(listener.get_ref()).is_ok();
        settling_until = Some(Instant::now() + if refused { HANDSHAKE_SETTLE } else { Duration::ZERO });
      }
      match accept_one(&state, &listener) {
        Some(Ok(())) => continue,
        Some(Err(error)) => {
          back_off(&state, "accept", &error).await;
          continue;
        }
        None => match settling_until {
          Some(until) if Instant::now() < until => {
            // Empty for now: wait for a handshake under way, or the end of the settling.
            tokio::select! {
              ready = listener.readable() => {
                let mut guard = ready?;
                match accept_one(&state, &listener) {
                  Some(Ok(())) => {}
                  Some(Err(error)) => {
                    drop(guard);
                    back_off(&state, "accept", &error).await;
                  }
                  None => guard.clear_ready(),
                }
              }
              _ = tokio::time::sleep_until(until.into()) => {}
            }
            continue;
          }
          _ => {
            if state.fault == Some(Fault::SlowClose) {
              tokio::time::sleep(super::events::SLOW_CLOSE).await;
            }
            return Ok(());
          }
        },
      }
    }
    tokio::select! {
      ready = listener.readable() => {
        let mut guard = ready?;
        // What this wake-up accepts leaves as one record per worker.
        state.driver.borrow_mut().begin_burst();
        let mut failed = None;
        let mut more = true;
        for _ in 0..ACCEPTS_PER_WAKEUP {
          match accept_one(&state, &listener) {
            Some(Ok(())) => {
              let admission = state.driver.borrow_mut().admission();
              if admission != Admission::Open {
                break;
              }
            }
            Some(Err(error)) => {
              failed = Some(error);
              break;
            }
            None => {
              guard.clear_ready();
              more = false;
              break;
            }
          }
        }
        state.driver.borrow_mut().end_burst();
        if more {
          // The queue may hold more: let the other tasks have a turn first.
          // (Otherwise the next wait for readiness yields anyway: an extra
          // turn would cost a look at the reactor, a system call.)
          tokio::task::yield_now().await;
        }
        if let Some(error) = failed {
          drop(guard);
          back_off(&state, "accept", &error).await;
        }
      }
      _ = state.gate.notify.notified() => {}
    }
  }
}

/// Waits until the ledger may admit again: woken by whoever relieves it, or
/// after `at_most` (a congested slot's hold running out).
async fn wait_for_gate(state: &Rc<LoopState>, at_most: Option<u64>) {
  state.gate.waiting.set(true);
  match at_most {
    Some(ms) => {
      tokio::select! {
        _ = state.gate.notify.notified() => {}
        _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
      }
    }
    None => state.gate.notify.notified().await,
  }
  state.gate.waiting.set(false);
}

/// After an `accept` that failed for want of resources (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM) the connection stays in the kernel's queue and the
/// listener stays readable: count it, tell the user, and wait instead of
/// spinning.
async fn back_off(state: &LoopState, what: &'static str, error: &io::Error) {
  state.report_accept_error(what, error);
  tokio::time::sleep(ACCEPT_RETRY).await;
}

/// Closing with new connections refused: how long handshakes already under
/// way get to complete (and be served) before the listener closes. A
/// handshake takes a round trip; as kernel steering's shutdown does.
pub const HANDSHAKE_SETTLE: Duration = Duration::from_millis(100);

/// Accepts and routes one connection: `None` when the queue is empty,
/// `Some(Err)` when accepting failed for want of resources.
fn accept_one(state: &Rc<LoopState>, listener: &AsyncFd<Socket>) -> Option<io::Result<()>> {
  loop {
    return match listener.get_ref().accept() {
      Ok((socket, peer)) => {
        let accepted = state.stats.accepted.fetch_add(1, Relaxed) + 1;
        if state.fault == Some(Fault::AcceptPanic) && accepted > 1 {
          panic!("fault injection (STICKY_FAULT_INJECTION=accept-panic) at connection {accepted}");
        }
        let Some(peer) = peer.as_socket() else { return Some(Ok(())) };
        route(state, socket, peer);
        Some(Ok(()))
      }
      Err(error) if error.kind() == io::ErrorKind::WouldBlock => None,
      Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
      Err(error) if error.raw_os_error() == Some(libc::ECONNABORTED) => continue,
      Err(error) => Some(Err(error)),
    };
  }
}

fn route(state: &Rc<LoopState>, socket: Socket, peer: SocketAddr) {
  if state.router.peeks() {
    read_header_then_dispatch(state, socket, peer);
  } else {
    let route = state.router.route_by_ip(peer.ip());
    state.driver.borrow_mut().accept(route, Connection { fd: OwnedFd::from(socket), client: None });
  }
}

/// After `close`: reports `Drained` once the accept task has emptied the
/// listen queue and no connection waits for a header or a worker.
pub async fn report_when_drained(state: Rc<LoopState>, acceptor: tokio::task::JoinHandle<()>) {
  let _ = acceptor.await;
  loop {
    // Idle means every worker read what was sent to it: peek to know.
    state.driver.borrow_mut().update_taken();
    let idle = state.waiting.borrow().len() == 0 && state.driver.borrow().ledger().is_idle();
    if idle {
      (state.events)(PrimaryEvent::Drained);
      return;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
  }
}

//! The new primary's side of a takeover: connect to the running primary's
//! takeover name, check who it is, receive its listening sockets, and, once
//! this primary's workers are ready, tell it to stop accepting.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::core::takeover_message::{self as message, Message, MessageError, Offer};
use nix::poll::PollFlags;

use super::offering::poll_one;
use super::PEER_TIMEOUT;
use crate::seqpacket;

#[derive(Debug, thiserror::Error)]
pub enum TakeError {
  #[error("the takeover socket is held by process {pid} of uid {uid}, not by this user (uid {trusted}): it is not this app's primary")]
  Foreign { pid: u32, uid: u32, trusted: u32 },
  #[error("primary {pid} is already being taken over by process {by}; try again once that has finished")]
  Busy { pid: u32, by: u32 },
  #[error("the running primary closed the takeover connection")]
  Closed,
  #[error("the running primary did not answer within {} s", PEER_TIMEOUT.as_secs())]
  Timeout,
  #[error(
    "listening socket {index} was lost in transit (this process ran out of file descriptors: raise `ulimit -n`)"
  )]
  LostSocket { index: u16 },
  #[error("the running primary sent {found} where {expected} was expected")]
  Unexpected { expected: &'static str, found: String },
  #[error(transparent)]
  Message(#[from] MessageError),
  #[error(transparent)]
  Io(#[from] io::Error),
}

/// A connection to a running primary's takeover name.
pub struct Taking {
  connection: OwnedFd,
  /// The offering primary, as the kernel recorded it when it listened.
  pub peer_pid: u32,
  pub peer_uid: u32,
}

impl Taking {
  /// Connects to `name`; `Ok(None)` when no process listens there.
  pub fn connect(name: &[u8]) -> io::Result<Option<Taking>> {
    let connection = match seqpacket::connect_abstract(name) {
      Ok(connection) => connection,
      Err(error) if error.raw_os_error() == Some(libc::ECONNREFUSED) => return Ok(None),
      Err(error) => return Err(error),
    };
    let (peer_pid, peer_uid) = seqpacket::peer_credentials(connection.as_fd())?;
    Ok(Some(Taking { connection, peer_pid, peer_uid }))
  }

  /// Receives the offer and its sockets, in index order, after checking that
  /// the offering process runs as `trusted_uid` (nothing is read otherwise).
  pub fn receive_offer(&self, trusted_uid: u32) -> Result<(Offer, Vec<OwnedFd>), TakeError> {
    if self.peer_uid != trusted_uid {
      return Err(TakeError::Foreign { pid: self.peer_pid, uid: self.peer_uid, trusted: trusted_uid });
    }
    let (offer, fd) = self.receive()?;
    drop(fd);
    let offer = match offer {
      Message::Offer(offer) => offer,
      Message::Busy { pid } => return Err(TakeError::Busy { pid: self.peer_pid, by: pid }),
      other => return Err(TakeError::Unexpected { expected: "an offer", found: format!("{other:?}") }),
    };
    let mut sockets = Vec::with_capacity(usize::from(offer.sockets));
    for expected in 0..offer.sockets {
      match self.receive()? {
        (Message::Socket { index }, Some(fd)) if index == expected => sockets.push(fd),
        (Message::Socket { index }, None) if index == expected => return Err(TakeError::LostSocket { index }),
        (other, _) => {
          return Err(TakeError::Unexpected { expected: "the next listening socket", found: format!("{other:?}") })
        }
      }
    }
    Ok((offer, sockets))
  }

  /// Tells the offering primary that this one's workers are ready, and waits
  /// for it to confirm that it gave up the name and is draining. Returns its pid.
  pub fn release(&self) -> Result<u32, TakeError> {
    let ready = message::encode(&Message::Ready { pid: std::process::id() });
    seqpacket::send_record(self.connection.as_fd(), &ready, &[])?;
    match self.receive()? {
      (Message::Released { pid }, _) => Ok(pid),
      (other, _) => Err(TakeError::Unexpected { expected: "Released", found: format!("{other:?}") }),
    }
  }

  fn receive(&self) -> Result<(Message, Option<OwnedFd>), TakeError> {
    if !poll_one(self.connection.as_fd(), PollFlags::POLLIN, PEER_TIMEOUT)? {
      return Err(TakeError::Timeout);
    }
    let mut buf = [0u8; message::MAX_RECORD_LEN];
    let received = seqpacket::recv_record(self.connection.as_fd(), &mut buf, false)?;
    if received.len == 0 {
      return Err(TakeError::Closed);
    }
    let decoded = message::decode(&buf[..received.len])?;
    // A record that came without the descriptor it should carry (MSG_CTRUNC):
    // the caller says which. More than one is not ours: those close here.
    let mut fds = received.fds;
    let fd = if received.truncated || fds.len() > 1 { None } else { fds.pop() };
    Ok((decoded, fd))
  }
}

#[cfg(test)]
mod tests {
  use super::super::offering::{Offering, OfferingEvent};
  use super::*;
  use crate::core::takeover_message::ListenMode;
  use std::net::{Ipv4Addr, TcpListener, TcpStream};
  use std::sync::mpsc;
  use std::time::Duration;

  fn unique_name(test: &str) -> Vec<u8> {
    format!("sticky-session-rs-test/{test}/{}", std::process::id()).into_bytes()
  }

  fn our_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
  }

  fn offering(name: &[u8], sockets: Vec<OwnedFd>) -> (Offering, mpsc::Receiver<OfferingEvent>) {
    let (events, log) = mpsc::channel();
    let count = u16::try_from(sockets.len()).unwrap();
    let offer = Offer { mode: ListenMode::Kernel, sockets: count, workers: count, seed: 5, pid: std::process::id() };
    let offering =
      Offering::start(name, offer, sockets, Box::new(move |event| drop(events.send(event)))).expect("offer");
    (offering, log)
  }

  #[test]
  fn nobody_listening_is_not_an_error() {
    assert!(Taking::connect(&unique_name("nobody")).unwrap().is_none());
  }

  #[test]
  fn the_listening_sockets_cross_in_order_and_the_offer_ends_on_ready() {
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap()).collect();
    let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
    let copies = listeners.iter().map(|l| OwnedFd::from(l.try_clone().unwrap())).collect();
    let name = unique_name("order");
    let (offering, events) = offering(&name, copies);

    let taking = Taking::connect(&name).unwrap().expect("the offer listens");
    assert_eq!(taking.peer_pid, std::process::id());
    let (offer, sockets) = taking.receive_offer(our_uid()).unwrap();
    assert_eq!((offer.mode, offer.sockets, offer.workers, offer.seed), (ListenMode::Kernel, 3, 3, 5));
    assert_eq!(
      events.recv_timeout(Duration::from_secs(5)).unwrap(),
      OfferingEvent::Offered { pid: std::process::id() }
    );
    for (socket, port) in sockets.into_iter().zip(ports) {
      // The received descriptor is the same listening socket: a client of that port is accepted on it.
      let adopted = TcpListener::from(socket);
      assert_eq!(adopted.local_addr().unwrap().port(), port);
      let _client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
      adopted.accept().unwrap();
    }

    // A second taker while this one is under way is told so.
    let second = Taking::connect(&name).unwrap().expect("still listening");
    assert!(matches!(second.receive_offer(our_uid()), Err(TakeError::Busy { by, .. }) if by == std::process::id()));

    assert_eq!(taking.release().unwrap(), std::process::id());
    let released = events.iter().find(|event| matches!(event, OfferingEvent::Released { .. }));
    assert_eq!(released, Some(OfferingEvent::Released { pid: std::process::id() }));
    drop(offering);
    assert!(Taking::connect(&name).unwrap().is_none(), "the name is free once released");
  }

  #[test]
  fn a_taker_that_leaves_before_ready_leaves_the_offer_standing() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let name = unique_name("abandon");
    let (mut offering, events) = offering(&name, vec![OwnedFd::from(listener.try_clone().unwrap())]);
    let first = Taking::connect(&name).unwrap().unwrap();
    first.receive_offer(our_uid()).unwrap();
    drop(first);
    let abandoned = events.iter().find(|event| matches!(event, OfferingEvent::Abandoned { .. })).unwrap();
    assert!(matches!(abandoned, OfferingEvent::Abandoned { reason, .. } if reason.contains("closed")));
    let again = Taking::connect(&name).unwrap().expect("the offer stands");
    assert_eq!(again.receive_offer(our_uid()).unwrap().1.len(), 1);
    offering.close();
    assert!(Taking::connect(&name).unwrap().is_none(), "close frees the name");
  }

  #[test]
  fn an_offer_from_another_uid_is_not_read() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let name = unique_name("foreign");
    let (_offering, _events) = offering(&name, vec![OwnedFd::from(listener)]);
    let taking = Taking::connect(&name).unwrap().unwrap();
    let error = taking.receive_offer(our_uid().wrapping_add(1)).unwrap_err();
    assert!(matches!(error, TakeError::Foreign { uid, .. } if uid == our_uid()));
  }
}

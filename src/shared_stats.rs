//! Counters a kernel-steered worker keeps in memory it shares with its
//! primary, so that `stats()` in the primary counts what the workers accept
//! without a message per connection.
//!
//! The primary creates the region (a `memfd`, mapped shared) with a few
//! *seats* per slot and gives each worker it forks a seat of its slot: the
//! region's descriptor in the worker's stdio, the seat's index in its
//! environment. The worker maps the region and adds to its seat's atomics;
//! the primary reads them. A slot's totals are those of its live seats plus
//! what the workers that left it had counted ([`SeatTable`], pure), so a
//! respawn or a reload neither loses nor double-counts, and a gauge (what
//! relief holds) leaves with the worker that held it.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One worker's counters. Each is written by that worker only (its
/// JavaScript thread or its relief thread) and read by the primary.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct SeatCounters {
  /// Connections the worker took off its slot's socket, whichever way.
  pub accepted: AtomicU64,
  /// Of those, the ones its relief thread took.
  pub relieved: AtomicU64,
  /// Of those, the ones its JavaScript has taken from the relief thread.
  pub delivered: AtomicU64,
}

/// A seat's counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeatTotals {
  pub accepted: u64,
  pub relieved: u64,
  pub delivered: u64,
}

impl SeatTotals {
  fn add(&mut self, other: SeatTotals) {
    self.accepted += other.accepted;
    self.relieved += other.relieved;
    self.delivered += other.delivered;
  }

  /// Relieved connections the worker's JavaScript has not taken yet.
  pub fn held(&self) -> u64 {
    self.relieved.saturating_sub(self.delivered)
  }
}

impl SeatCounters {
  pub fn totals(&self) -> SeatTotals {
    SeatTotals {
      accepted: self.accepted.load(Relaxed),
      relieved: self.relieved.load(Relaxed),
      delivered: self.delivered.load(Relaxed),
    }
  }

  fn reset(&self) {
    self.accepted.store(0, Relaxed);
    self.relieved.store(0, Relaxed);
    self.delivered.store(0, Relaxed);
  }
}

/// Which seat belongs to which slot, and what departed workers counted. No
/// I/O: the primary feeds it forks and exits, and reads totals through it.
#[derive(Debug)]
pub struct SeatTable {
  /// seat -> the slot of the worker sitting there.
  slot_of: Vec<Option<u16>>,
  /// slot -> what the workers that left it had counted.
  departed: Vec<SeatTotals>,
}

impl SeatTable {
  /// Seats for `slots` slots: two workers may share a slot (a reload's old
  /// and new), and a replacement may be forked before the one it replaces
  /// has been seen to exit, so four per slot.
  pub fn new(slots: usize) -> Self {
    SeatTable { slot_of: vec![None; Self::seats_for(slots)], departed: vec![SeatTotals::default(); slots] }
  }

  pub fn seats_for(slots: usize) -> usize {
    slots.max(1) * 4
  }

  pub fn seats(&self) -> usize {
    self.slot_of.len()
  }

  /// A free seat for a worker forked into `slot`; `None` when every seat is
  /// taken (the worker then counts nothing) or the slot is out of range.
  pub fn take(&mut self, slot: u16) -> Option<usize> {
    if usize::from(slot) >= self.departed.len() {
      return None;
    }
    let seat = self.slot_of.iter().position(Option::is_none)?;
    self.slot_of[seat] = Some(slot);
    Some(seat)
  }

  /// The worker on `seat` exited, having counted `last`: its counts join
  /// its slot's, except what it held (gone with it). Returns whether the
  /// seat was taken (the caller then clears the seat's counters).
  pub fn release(&mut self, seat: usize, last: SeatTotals) -> bool {
    let Some(slot) = self.slot_of.get_mut(seat).and_then(Option::take) else { return false };
    // What it held but never delivered died with it: count it delivered,
    // so that the slot holds nothing for it.
    let settled = SeatTotals { delivered: last.relieved, ..last };
    self.departed[usize::from(slot)].add(settled);
    true
  }

  /// The totals of `slot`: its departed workers' and its live seats' (read
  /// with `read`).
  pub fn totals(&self, slot: u16, read: impl Fn(usize) -> SeatTotals) -> SeatTotals {
    let mut totals = self.departed.get(usize::from(slot)).copied().unwrap_or_default();
    for (seat, owner) in self.slot_of.iter().enumerate() {
      if *owner == Some(slot) {
        totals.add(read(seat));
      }
    }
    totals
  }
}

/// The shared region: an array of [`SeatCounters`] in a `memfd`, mapped
/// shared. The primary creates it; each worker maps the descriptor it was
/// given.
#[derive(Debug)]
pub struct SharedRegion {
  base: NonNull<SeatCounters>,
  seats: usize,
}

// SAFETY: the region is an array of atomics: every access goes through
// `&SeatCounters`, whose fields are atomics, from any thread or process.
unsafe impl Send for SharedRegion {}
// SAFETY: as above.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
  /// Creates a region of `seats` seats (zeroed) and returns it with its
  /// descriptor (close-on-exec: only the stdio of a fork passes it on).
  pub fn create(seats: usize) -> io::Result<(SharedRegion, OwnedFd)> {
    let fd = nix::sys::memfd::memfd_create(c"sticky-session-rs-stats", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let len = Self::len_of(seats)?;
    nix::unistd::ftruncate(&fd, i64::try_from(len.get()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?)?;
    let region = Self::map_len(&fd, len)?;
    Ok((region, fd))
  }

  /// Maps a region a primary created (its size tells the seats).
  pub fn map(fd: impl AsFd) -> io::Result<SharedRegion> {
    let size = nix::sys::stat::fstat(fd.as_fd())?.st_size;
    let seats = usize::try_from(size).unwrap_or(0) / std::mem::size_of::<SeatCounters>();
    if seats == 0 {
      return Err(io::Error::new(io::ErrorKind::InvalidData, "not a sticky-session-rs stats region (empty)"));
    }
    Self::map_len(fd.as_fd(), Self::len_of(seats)?)
  }

  fn len_of(seats: usize) -> io::Result<NonZeroUsize> {
    seats
      .checked_mul(std::mem::size_of::<SeatCounters>())
      .and_then(NonZeroUsize::new)
      .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
  }

  fn map_len(fd: impl AsFd, len: NonZeroUsize) -> io::Result<SharedRegion> {
    use nix::sys::mman::{MapFlags, ProtFlags};
    // SAFETY: a fresh shared mapping of `len` bytes of the memfd (at least
    // that long: created so, or its size measured), at an address the
    // kernel picks; it is unmapped only in `drop`. Page-aligned, so aligned
    // for `SeatCounters`; zero bytes are valid atomics.
    let base = unsafe {
      nix::sys::mman::mmap(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, fd, 0)
    }?;
    Ok(SharedRegion { base: base.cast(), seats: len.get() / std::mem::size_of::<SeatCounters>() })
  }

  pub fn seats(&self) -> usize {
    self.seats
  }

  /// The counters of `seat`, or `None` out of range.
  pub fn seat(&self, seat: usize) -> Option<&SeatCounters> {
    // SAFETY: in range of the mapping, which lives as long as `self`.
    (seat < self.seats).then(|| unsafe { &*self.base.as_ptr().add(seat) })
  }

  /// Clears a seat for its next worker (the primary, once the last one exited).
  pub fn reset(&self, seat: usize) {
    if let Some(counters) = self.seat(seat) {
      counters.reset();
    }
  }
}

impl Drop for SharedRegion {
  fn drop(&mut self) {
    // SAFETY: the mapping made in `map_len`, of this length, unmapped once.
    let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), self.seats * std::mem::size_of::<SeatCounters>()) };
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_worker_and_its_primary_see_the_same_counters() {
    let (primary, fd) = SharedRegion::create(8).unwrap();
    let worker = SharedRegion::map(&fd).unwrap();
    assert_eq!(worker.seats(), 8);
    worker.seat(5).unwrap().accepted.fetch_add(3, Relaxed);
    worker.seat(5).unwrap().relieved.fetch_add(2, Relaxed);
    assert_eq!(primary.seat(5).unwrap().totals(), SeatTotals { accepted: 3, relieved: 2, delivered: 0 });
    assert!(primary.seat(8).is_none());
    primary.reset(5);
    assert_eq!(worker.seat(5).unwrap().totals(), SeatTotals::default());
  }

  #[test]
  fn an_empty_file_is_not_a_region() {
    let fd = nix::sys::memfd::memfd_create(c"empty", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
    assert_eq!(SharedRegion::map(&fd).unwrap_err().kind(), io::ErrorKind::InvalidData);
  }

  #[test]
  fn a_slot_keeps_what_its_departed_workers_counted_but_not_what_they_held() {
    let mut table = SeatTable::new(2);
    let first = table.take(1).unwrap();
    let live = |counts: Vec<(usize, SeatTotals)>| {
      move |seat: usize| counts.iter().find(|(s, _)| *s == seat).map(|(_, t)| *t).unwrap_or_default()
    };
    let counted = SeatTotals { accepted: 10, relieved: 4, delivered: 1 };
    assert_eq!(table.totals(1, live(vec![(first, counted)])).held(), 3);
    assert!(table.release(first, counted));
    assert!(!table.release(first, counted), "released once");
    let second = table.take(1).unwrap();
    let totals = table.totals(1, live(vec![(second, SeatTotals { accepted: 5, relieved: 0, delivered: 0 })]));
    assert_eq!(totals.accepted, 15);
    assert_eq!(totals.relieved, 4);
    assert_eq!(totals.held(), 0, "what the first worker held died with it");
    assert_eq!(table.totals(0, live(vec![])), SeatTotals::default());
  }

  #[test]
  fn seats_run_out_without_panicking_and_come_back_when_released() {
    let mut table = SeatTable::new(1);
    let seats: Vec<usize> = (0..table.seats()).map(|_| table.take(0).unwrap()).collect();
    assert_eq!(table.take(0), None);
    assert_eq!(table.take(7), None, "no such slot");
    table.release(seats[2], SeatTotals::default());
    assert_eq!(table.take(0), Some(seats[2]));
  }
}

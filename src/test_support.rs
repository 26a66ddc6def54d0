//! What several modules' tests need (compiled for tests only).

use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;

/// What each descriptor refers to (`socket:[inode]`), as `/proc` shows it.
pub fn referents(fds: &[BorrowedFd<'_>]) -> Vec<PathBuf> {
  fds.iter().map(|fd| std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()).collect()
}

/// How many of this process's descriptors refer to one of `referents`.
/// Counting every open descriptor instead would race with the tests running
/// beside the caller.
pub fn descriptors_referring_to(referents: &[PathBuf]) -> usize {
  std::fs::read_dir("/proc/self/fd")
    .unwrap()
    .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
    .filter(|link| referents.contains(link))
    .count()
}

//! Overflow relief for a kernel-steered worker: when to take connections off
//! its socket's accept queue on a thread of its own. No I/O.
//!
//! With kernel steering each worker accepts on its own `SO_REUSEPORT` socket,
//! on its JavaScript thread (libuv's accept). That thread accepts everything
//! queued each time it polls, but while it runs JavaScript (a burst of
//! socket.io handshakes, a long garbage collection) it accepts nothing, and
//! the socket's queue fills. A full queue makes the kernel drop handshakes
//! (`ListenOverflows`): a client whose SYN is dropped sends it again after
//! 1 s, 3 s, 7 s...; one whose final ACK is dropped believes it is connected,
//! and is reset if the queue stays full for long. Relief keeps the queue from
//! filling: a thread looks at the queue's length now and then (`TCP_INFO`, no
//! per-connection work) and, once it is past a quarter of its limit, takes
//! what is queued into the process, where it waits for the JavaScript thread
//! instead of in the kernel.
//!
//! # Guarantees
//!
//! - **The calm path is the kernel's.** While the queue holds at most a
//!   quarter of its limit (which it does whenever the JavaScript thread
//!   polls often enough), relief takes nothing: every connection is accepted
//!   by libuv, as without relief.
//! - **Within a budget.** Relief never holds more than `budget` connections
//!   its JavaScript has not taken yet; past that it leaves them in the queue,
//!   where the kernel's limit applies (and counts what it drops).
//! - **Never idle with room and a crowded queue.** Past the threshold, with
//!   room in the budget, relief takes what is queued (up to the room).

/// When relief takes connections, and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReliefPolicy {
  /// The most connections held at once (taken off the queue, not yet taken
  /// by the worker's JavaScript).
  pub budget: usize,
}

/// What to do after a look at the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
  /// Leave the queue to the JavaScript thread.
  Wait,
  /// Take up to `at_most` connections now (all that are queued, if fewer).
  Take { at_most: usize },
  /// The queue is crowded but the budget is used up: leave it (the kernel's
  /// limit applies).
  BudgetUsedUp,
}

/// The fewest connections held at once, whatever the open-file limit.
pub const MIN_BUDGET: usize = 64;
/// The most, whatever the open-file limit: a bound on memory (a held
/// connection costs a few KiB, mostly in the kernel).
pub const MAX_BUDGET: usize = 16_384;

impl ReliefPolicy {
  /// The budget of a worker whose open-file limit is `open_file_limit`: a
  /// quarter of it (the worker needs the rest for the connections it serves
  /// and the application's own files), within [`MIN_BUDGET`] and [`MAX_BUDGET`].
  pub fn for_open_file_limit(open_file_limit: usize) -> Self {
    ReliefPolicy { budget: (open_file_limit / 4).clamp(MIN_BUDGET, MAX_BUDGET) }
  }

  /// The queue length past which relief takes connections: a quarter of the
  /// limit (at least 1). The JavaScript thread empties the queue each time it
  /// polls, so a queue this long means it has not polled for a while.
  pub fn threshold(queue_limit: u32) -> u32 {
    (queue_limit / 4).max(1)
  }

  /// What to do with a queue of `queued` connections out of `queue_limit`,
  /// `held` being held already.
  pub fn decide(&self, queued: u32, queue_limit: u32, held: usize) -> Decision {
    if queued <= Self::threshold(queue_limit) {
      return Decision::Wait;
    }
    match self.budget.saturating_sub(held) {
      0 => Decision::BudgetUsedUp,
      room => Decision::Take { at_most: room },
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use proptest::prelude::*;

  #[test]
  fn a_queue_at_most_a_quarter_full_is_left_to_javascript() {
    let policy = ReliefPolicy { budget: 100 };
    assert_eq!(policy.decide(0, 511, 0), Decision::Wait);
    assert_eq!(policy.decide(127, 511, 0), Decision::Wait);
    assert_eq!(policy.decide(128, 511, 0), Decision::Take { at_most: 100 });
  }

  #[test]
  fn a_tiny_queue_is_relieved_from_its_second_connection() {
    let policy = ReliefPolicy { budget: 100 };
    assert_eq!(ReliefPolicy::threshold(0), 1);
    assert_eq!(ReliefPolicy::threshold(3), 1);
    assert_eq!(policy.decide(1, 3, 0), Decision::Wait);
    assert_eq!(policy.decide(2, 3, 0), Decision::Take { at_most: 100 });
  }

  #[test]
  fn the_budget_is_a_quarter_of_the_open_file_limit_within_bounds() {
    assert_eq!(ReliefPolicy::for_open_file_limit(20_000).budget, 5_000);
    assert_eq!(ReliefPolicy::for_open_file_limit(100).budget, MIN_BUDGET);
    assert_eq!(ReliefPolicy::for_open_file_limit(1 << 20).budget, MAX_BUDGET);
  }

  #[test]
  fn with_the_budget_used_up_nothing_more_is_taken() {
    let policy = ReliefPolicy { budget: 10 };
    assert_eq!(policy.decide(500, 511, 10), Decision::BudgetUsedUp);
    assert_eq!(policy.decide(500, 511, 11), Decision::BudgetUsedUp);
    assert_eq!(policy.decide(500, 511, 7), Decision::Take { at_most: 3 });
  }

  proptest! {
    #[test]
    fn never_takes_at_or_below_the_threshold_nor_beyond_the_budget(
      budget in 0usize..10_000, queued in 0u32..70_000, limit in 0u32..70_000, held in 0usize..12_000,
    ) {
      let policy = ReliefPolicy { budget };
      match policy.decide(queued, limit, held) {
        Decision::Wait => prop_assert!(queued <= ReliefPolicy::threshold(limit)),
        Decision::Take { at_most } => {
          prop_assert!(queued > ReliefPolicy::threshold(limit));
          prop_assert!(at_most > 0 && held + at_most <= budget);
        }
        Decision::BudgetUsedUp => prop_assert!(queued > ReliefPolicy::threshold(limit) && held >= budget),
      }
    }
  }
}

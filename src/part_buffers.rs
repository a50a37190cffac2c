//! Window-part buffers handed back by the writer once their lines are sent, so the
//! aggregator fills the same few buffers window after window.
//!
//! A part is about 144 KiB, above musl's mmap threshold: without this every part of every
//! window (31 per window at 1,000 queues, more with live updates) was mapped, faulted in
//! page by page and unmapped again. The pool keeps at most [`KEPT`] buffers, and only
//! buffers of a part's size, so what it holds is bounded (≤ 2 × 160 KiB).

use crossbeam_channel::{bounded, Receiver, Sender};

/// Buffers kept between windows: enough for the writer to hand one back while the
/// aggregator fills the next.
const KEPT: usize = 2;

/// Shared by the aggregator (takes) and the writer (gives back). Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct PartBuffers {
    give: Sender<String>,
    take: Receiver<String>,
    /// The capacity a part is given; only buffers of this size up to twice it are kept.
    part_capacity: usize,
}

impl PartBuffers {
    pub fn new(part_capacity: usize) -> PartBuffers {
        let (give, take) = bounded(KEPT);
        PartBuffers {
            give,
            take,
            part_capacity,
        }
    }

    /// An empty buffer with room for a part: a kept one when there is one.
    pub fn take(&self) -> String {
        self.take
            .try_recv()
            .unwrap_or_else(|_| String::with_capacity(self.part_capacity))
    }

    /// Hands `lines` back once sent; kept (emptied) when the pool has room and it is of a
    /// part's size, dropped otherwise.
    pub fn give_back(&self, mut lines: String) {
        let size = lines.capacity();
        if size >= self.part_capacity && size <= 2 * self.part_capacity {
            lines.clear();
            let _ = self.give.try_send(lines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_empty() {
        let pool = PartBuffers::new(1024);
        let mut first = pool.take();
        first.push_str("measurement f=1i 1\n");
        let at = first.as_ptr();
        pool.give_back(first);
        let again = pool.take();
        assert_eq!((again.as_ptr(), again.len()), (at, 0));
        assert!(again.capacity() >= 1024);
    }

    #[test]
    fn buffers_of_another_size_are_not_kept() {
        let pool = PartBuffers::new(1024);
        pool.give_back(String::with_capacity(16));
        pool.give_back(String::with_capacity(4096));
        assert!(pool.take.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever is taken and given back in any order: every buffer taken is empty and
        /// has a part's room, and the pool never holds more than it may.
        #[test]
        fn taken_buffers_are_empty_and_the_pool_stays_bounded(
            steps in proptest::collection::vec((any::<bool>(), 0usize..3000), 1..64),
        ) {
            let pool = PartBuffers::new(1024);
            let mut held: Vec<String> = Vec::new();
            for (take, fill) in steps {
                if take || held.is_empty() {
                    let buffer = pool.take();
                    prop_assert!(buffer.is_empty() && buffer.capacity() >= 1024);
                    held.push(buffer);
                } else {
                    let mut buffer = held.swap_remove(fill % held.len());
                    buffer.push_str(&"x".repeat(fill));
                    pool.give_back(buffer);
                }
                prop_assert!(pool.take.len() <= KEPT);
            }
        }
    }
}

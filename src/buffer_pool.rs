//! A few large buffers kept for reuse, shared by the threads that fill and empty them:
//! the Genesys answers read each poll, and the window parts the aggregator fills and the
//! writer sends.
//!
//! Both are above musl's mmap threshold (128 KiB): a fresh buffer for each was a new
//! mapping, faulted in page by page and unmapped again when dropped; together that was
//! most of the service's page faults. A pool keeps at most `kept` buffers, and only those
//! whose capacity is in its kept range, so what it holds is bounded, and one buffer grown
//! for an unusually large piece of data is freed instead of held for good.

use std::sync::{Mutex, MutexGuard};

/// What a pool can hold: a growable buffer that can be emptied in place.
pub trait Buffer {
    fn with_capacity(capacity: usize) -> Self;
    fn capacity(&self) -> usize;
    fn clear(&mut self);
}

impl Buffer for Vec<u8> {
    fn with_capacity(capacity: usize) -> Self {
        Vec::with_capacity(capacity)
    }
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
    fn clear(&mut self) {
        Vec::clear(self)
    }
}

impl Buffer for String {
    fn with_capacity(capacity: usize) -> Self {
        String::with_capacity(capacity)
    }
    fn capacity(&self) -> usize {
        String::capacity(self)
    }
    fn clear(&mut self) {
        String::clear(self)
    }
}

/// At most `kept` empty buffers, each with a capacity from `room` to `max_capacity`.
#[derive(Debug)]
pub struct BufferPool<B> {
    free: Mutex<Vec<B>>,
    kept: usize,
    room: usize,
    max_capacity: usize,
}

impl<B: Buffer> BufferPool<B> {
    /// A pool keeping up to `kept` buffers; a new buffer is given `room`, and a buffer
    /// given back is kept only if its capacity is between `room` and `max_capacity`.
    pub fn new(kept: usize, room: usize, max_capacity: usize) -> Self {
        BufferPool {
            free: Mutex::new(Vec::with_capacity(kept)),
            kept,
            room,
            max_capacity,
        }
    }

    /// An empty buffer with at least `room`: a kept one when there is one.
    pub fn take(&self) -> B {
        self.lock()
            .pop()
            .unwrap_or_else(|| B::with_capacity(self.room))
    }

    /// Hands `buffer` back once its contents are used: kept (emptied) when its capacity
    /// is in range and the pool has room, dropped otherwise.
    pub fn give_back(&self, mut buffer: B) {
        let capacity = buffer.capacity();
        if capacity < self.room || capacity > self.max_capacity {
            return;
        }
        buffer.clear();
        let mut free = self.lock();
        if free.len() < self.kept {
            free.push(buffer);
        }
    }

    /// How many buffers are kept now.
    #[cfg(test)]
    pub fn kept_now(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<B>> {
        // A thread that panicked while holding the lock left the list intact.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_empty() {
        let pool = BufferPool::<String>::new(2, 1024, 2048);
        let mut first = pool.take();
        first.push_str("measurement f=1i 1\n");
        let at = first.as_ptr();
        pool.give_back(first);
        let again = pool.take();
        assert_eq!((again.as_ptr(), again.len()), (at, 0));
        assert!(again.capacity() >= 1024);
    }

    #[test]
    fn buffers_outside_the_kept_range_are_dropped() {
        let pool = BufferPool::<String>::new(2, 1024, 2048);
        pool.give_back(String::with_capacity(16));
        pool.give_back(String::with_capacity(4096));
        assert_eq!(pool.kept_now(), 0);
        let answers = BufferPool::<Vec<u8>>::new(2, 0, 1024);
        answers.give_back(Vec::with_capacity(1025));
        assert_eq!(answers.kept_now(), 0);
    }

    #[test]
    fn at_most_kept_buffers_are_kept() {
        let pool = BufferPool::<Vec<u8>>::new(2, 0, 1024);
        let taken: Vec<_> = (0..3).map(|_| pool.take()).collect();
        taken.into_iter().for_each(|b| pool.give_back(b));
        assert_eq!(pool.kept_now(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever is taken, filled and given back in any order: every buffer taken is
        /// empty and has the pool's room, and the pool never holds more than it may.
        #[test]
        fn taken_buffers_are_empty_and_the_pool_stays_bounded(
            steps in proptest::collection::vec((any::<bool>(), 0usize..3000), 1..64),
        ) {
            let pool = BufferPool::<String>::new(2, 1024, 2048);
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
                let free = pool.lock();
                prop_assert!(free.len() <= 2);
                prop_assert!(free.iter().all(|b| (1024..=2048).contains(&b.capacity())));
            }
        }
    }
}

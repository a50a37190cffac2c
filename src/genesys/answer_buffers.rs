//! The buffers Genesys answers are read into, kept from one request to the next.
//!
//! An observation answer is about 240 KB, four of them in flight every poll. Read into a
//! fresh `String` each, every one grew by doubling past musl's mmap threshold: a new
//! mapping per step, its pages faulted in, copied, unmapped after parsing; that was a
//! third of the service's page faults. Here a request takes a buffer from a small
//! [`BufferPool`], reads the answer into it and hands it back when the answer has been
//! parsed, so the pages stay mapped. A buffer that grew past [`MAX_KEPT_CAPACITY`] for an
//! unusually large answer is freed instead of kept.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read};

use crate::buffer_pool::BufferPool;

/// The largest answer read: the bound `ureq`'s `read_to_string` applied before (10 MiB).
/// A poll's largest answer, 100 queues' observations, is about 240 KB.
pub const MAX_ANSWER_BYTES: usize = 10 * 1024 * 1024;
/// A buffer whose capacity grew beyond this is freed rather than kept.
pub const MAX_KEPT_CAPACITY: usize = 1024 * 1024;

/// Why an answer could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The answer is longer than [`MAX_ANSWER_BYTES`]; it was not read to its end.
    TooLarge,
    /// The connection failed while the answer was being read.
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::TooLarge => write!(
                f,
                "the answer is larger than {} MiB; refused",
                MAX_ANSWER_BYTES / (1024 * 1024)
            ),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// A pool of at most `kept` answer buffers, shared by the threads of one client.
#[derive(Debug)]
pub struct AnswerBuffers(BufferPool<Vec<u8>>);

/// One answer, read; its buffer goes back to the pool when it is dropped.
#[derive(Debug)]
pub struct Answer<'a> {
    bytes: Vec<u8>,
    home: &'a AnswerBuffers,
}

impl AnswerBuffers {
    /// A pool keeping at most `kept` buffers: as many as requests can be in flight.
    pub fn new(kept: usize) -> Self {
        AnswerBuffers(BufferPool::new(kept, 0, MAX_KEPT_CAPACITY))
    }

    /// Reads `body` to its end into a pooled buffer, refusing more than
    /// [`MAX_ANSWER_BYTES`].
    pub fn read(&self, body: impl Read) -> Result<Answer<'_>, ReadError> {
        let mut answer = Answer {
            bytes: self.0.take(),
            home: self,
        };
        // One byte past the limit tells a too-long answer from one exactly at it.
        body.take(MAX_ANSWER_BYTES as u64 + 1)
            .read_to_end(&mut answer.bytes)
            .map_err(ReadError::Io)?;
        if answer.bytes.len() > MAX_ANSWER_BYTES {
            return Err(ReadError::TooLarge);
        }
        Ok(answer)
    }
}

impl Answer<'_> {
    /// The answer as text. Genesys sends UTF-8 (docs/genesys-api.md#conventions); an
    /// invalid sequence is replaced rather than failing the whole answer, as before.
    pub fn text(&self) -> Cow<'_, str> {
        // `from_utf8` checks a word at a time; the lossy reader goes character by
        // character (8 % of the service's instructions when it read every answer).
        match std::str::from_utf8(&self.bytes) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&self.bytes),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl Drop for Answer<'_> {
    fn drop(&mut self) {
        self.home.0.give_back(std::mem::take(&mut self.bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pooled(pool: &AnswerBuffers) -> usize {
        pool.0.kept_now()
    }

    #[test]
    fn a_shorter_answer_after_a_longer_one_is_only_itself() {
        let pool = AnswerBuffers::new(1);
        let long = pool
            .read(&b"{\"results\":[1,2,3,4,5,6,7,8,9]}"[..])
            .unwrap();
        assert_eq!(long.len(), 31);
        drop(long);
        let short = pool.read(&b"{}"[..]).unwrap();
        assert_eq!(short.text(), "{}");
        assert!(short.bytes.capacity() >= 31, "the buffer was reused");
    }

    #[test]
    fn buffers_go_back_to_the_pool_up_to_its_size() {
        let pool = AnswerBuffers::new(2);
        let answers: Vec<_> = (0..3).map(|_| pool.read(&b"abc"[..]).unwrap()).collect();
        assert_eq!(pooled(&pool), 0);
        drop(answers);
        assert_eq!(pooled(&pool), 2);
    }

    #[test]
    fn a_buffer_grown_past_the_kept_capacity_is_freed() {
        let pool = AnswerBuffers::new(2);
        let big = vec![b' '; MAX_KEPT_CAPACITY + 1];
        drop(pool.read(&big[..]).unwrap());
        assert_eq!(pooled(&pool), 0);
    }

    #[test]
    fn an_answer_at_the_limit_is_read_and_one_byte_more_is_refused() {
        let pool = AnswerBuffers::new(1);
        let at_limit = vec![b' '; MAX_ANSWER_BYTES];
        assert_eq!(pool.read(&at_limit[..]).unwrap().len(), MAX_ANSWER_BYTES);
        let over = vec![b' '; MAX_ANSWER_BYTES + 1];
        let error = pool.read(&over[..]).unwrap_err();
        assert!(matches!(error, ReadError::TooLarge), "{error:?}");
        assert_eq!(
            error.to_string(),
            "the answer is larger than 10 MiB; refused"
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        let pool = AnswerBuffers::new(1);
        let answer = pool.read(&b"{\"name\":\"a\xffb\"}"[..]).unwrap();
        assert_eq!(answer.text(), "{\"name\":\"a\u{fffd}b\"}");
    }

    #[test]
    fn a_failed_read_is_an_io_error() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        let pool = AnswerBuffers::new(1);
        let error = pool.read(Broken).unwrap_err();
        assert!(matches!(&error, ReadError::Io(e) if e.kind() == io::ErrorKind::ConnectionReset));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the sizes and order, each answer read holds exactly its own bytes:
        /// nothing of an earlier, longer answer shows through a reused buffer.
        #[test]
        fn every_answer_is_exactly_its_bytes(
            bodies in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..4096), 1..12),
            held in 0usize..3,
        ) {
            let pool = AnswerBuffers::new(2);
            let mut holding = Vec::new();
            for body in &bodies {
                let answer = pool.read(&body[..]).unwrap();
                prop_assert_eq!(&answer.bytes, body);
                prop_assert_eq!(answer.text(), String::from_utf8_lossy(body));
                holding.push(answer);
                if holding.len() > held {
                    holding.remove(0);
                }
            }
        }
    }
}

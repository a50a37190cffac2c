//! Gzip of the request bodies with one deflate state kept for the writer's life.
//!
//! A fresh `GzEncoder` per request allocates and frees miniz_oxide's state (about 310 KB
//! in five boxes) every time; with musl's malloc each box is its own `mmap`/`munmap`, so
//! every request paid page faults for it. [`Gzip`] keeps one raw-deflate [`Compress`],
//! `reset()` between bodies, and writes the gzip framing (RFC 1952) itself: the same
//! 10-byte header `GzEncoder` writes at this level, then CRC-32 and length. The output
//! buffer comes back from the request thread and is used again, unless it grew large.

use std::io;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Deflate level of the request bodies. Measured on demo windows (miniz_oxide, one core):
/// level 1 shrinks 8× at 266 MB/s but only 5× on some windows, level 3 15× at 105 MB/s,
/// the default level 6 16× at 52 MB/s. Level 3 keeps a wide margin on the ratio for half
/// the CPU of the default.
const GZIP_LEVEL: u32 = 3;

/// Gzip header: magic, deflate, no flags, no time, no extra flags (levels 2–8), unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// An output buffer with more room than this is freed rather than kept: a 512 KiB request
/// of line protocol gzips to about 60 KB, so only an odd body (one large batch that does
/// not shrink) grows it past this.
const KEPT_MAX_BYTES: usize = 256 * 1024;

/// Room reserved for the compressed body at first: line protocol shrinks 8–15×.
fn first_guess(len: usize) -> usize {
    len / 8 + 64
}

/// One deflate state and one output buffer, reused for every body.
pub(crate) struct Gzip {
    deflate: Compress,
    /// The output buffer between requests (empty while one is out).
    kept: Vec<u8>,
}

impl Gzip {
    pub(crate) fn new() -> Gzip {
        Gzip {
            deflate: Compress::new(Compression::new(GZIP_LEVEL), false),
            kept: Vec::new(),
        }
    }

    /// `data` gzipped, in the kept buffer; hand it back with [`Gzip::give_back`] when sent.
    pub(crate) fn body(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = std::mem::take(&mut self.kept);
        self.compress(data, &mut out)?;
        Ok(out)
    }

    /// Takes a sent body's buffer back for the next one, unless it grew past
    /// [`KEPT_MAX_BYTES`].
    pub(crate) fn give_back(&mut self, buffer: Vec<u8>) {
        if buffer.capacity() <= KEPT_MAX_BYTES {
            self.kept = buffer;
        }
    }

    /// Replaces the contents of `out` with `data` gzipped; `out` keeps its capacity.
    fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        out.reserve(HEADER.len() + first_guess(data.len()));
        out.extend_from_slice(&HEADER);
        self.deflate.reset();
        let result = self.deflate_into(data, out);
        if result.is_err() {
            out.clear();
        }
        result?;
        out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952).
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        Ok(())
    }

    /// Deflates all of `data` onto the end of `out`, growing it as needed.
    fn deflate_into(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        // Bounded: each round consumes input or writes output, else it fails.
        loop {
            let (read, written) = (self.deflate.total_in(), self.deflate.total_out());
            let rest = usize::try_from(read)
                .ok()
                .and_then(|read| data.get(read..))
                .unwrap_or_default();
            if out.len() == out.capacity() {
                out.reserve(out.capacity() / 2 + 64);
            }
            let status = self
                .deflate
                .compress_vec(rest, out, FlushCompress::Finish)
                .map_err(io::Error::other)?;
            if status == Status::StreamEnd {
                return Ok(());
            }
            let stuck = self.deflate.total_in() == read && self.deflate.total_out() == written;
            if stuck && out.len() < out.capacity() {
                return Err(io::Error::other("deflate made no progress"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::bufread::GzDecoder;
    use proptest::prelude::*;
    use std::io::Read as _;

    /// The one gzip member in `body`, checked (CRC, length) and with no byte after it.
    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut decoder = GzDecoder::new(body);
        decoder.read_to_end(&mut out).unwrap();
        assert_eq!(decoder.into_inner(), b"", "bytes after the gzip member");
        out
    }

    #[test]
    fn the_header_is_the_one_gz_encoder_writes_at_this_level() {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::new(GZIP_LEVEL));
        encoder.write_all(b"m f=1i 1\n").unwrap();
        let theirs = encoder.finish().unwrap();
        let mut ours = Vec::new();
        Gzip::new().compress(b"m f=1i 1\n", &mut ours).unwrap();
        assert_eq!(ours[..HEADER.len()], theirs[..HEADER.len()]);
        assert_eq!(gunzip(&ours), b"m f=1i 1\n");
    }

    #[test]
    fn an_empty_body_and_one_that_does_not_shrink_round_trip() {
        let mut gzip = Gzip::new();
        let mut out = Vec::new();
        gzip.compress(b"", &mut out).unwrap();
        assert_eq!(gunzip(&out), b"");
        // Pseudo-random bytes: the output is longer than the first guess.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        gzip.compress(&noise, &mut out).unwrap();
        assert!(out.len() > first_guess(noise.len()));
        assert_eq!(gunzip(&out), noise);
        // A shorter body after a longer one in the same buffer.
        gzip.compress(b"m f=2i 2\n", &mut out).unwrap();
        assert_eq!(gunzip(&out), b"m f=2i 2\n");
    }

    #[test]
    fn the_output_buffer_is_kept_unless_it_grew_large() {
        let mut gzip = Gzip::new();
        let out = gzip.body(b"m f=1i 1\n").unwrap();
        let at = out.as_ptr();
        gzip.give_back(out);
        let again = gzip.body(b"m f=2i 2\n").unwrap();
        assert_eq!(again.as_ptr(), at, "the same buffer");
        assert_eq!(gunzip(&again), b"m f=2i 2\n");
        gzip.give_back(Vec::with_capacity(KEPT_MAX_BYTES + 1));
        assert_eq!(gzip.kept.capacity(), 0, "not kept");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any bodies, one after the other through the same state and the same output
        /// buffer (a shorter one after a longer one included): each decodes to exactly
        /// itself, with nothing of an earlier body left in it.
        #[test]
        fn reused_state_and_buffer_give_each_body_exactly(
            bodies in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..3000),
                    "(m,q=[a-c]{1,3} f=[0-9]{1,4}i [0-9]{1,3}\n){0,400}".prop_map(String::into_bytes),
                ],
                1..6,
            ),
        ) {
            let mut gzip = Gzip::new();
            for body in &bodies {
                let out = gzip.body(body).unwrap();
                prop_assert_eq!(&gunzip(&out), body);
                gzip.give_back(out);
            }
        }
    }
}

//! RFC 6455 frames (section 5.2): the bytes of one frame in, one frame out. Pure, so the
//! decoder can be fed any bytes by property tests: it never panics, never allocates more
//! than the payload limit, and says "need more bytes" rather than guessing.

/// The frame types of RFC 6455 section 5.2 this project sends or accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: at most 125 bytes, never fragmented.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One decoded frame, its payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: Opcode,
    pub payload: Vec<u8>,
}

/// Why bytes are not a frame this side accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Reserved bits set or a reserved opcode: no extension was negotiated.
    Reserved(u8),
    /// A control frame that is fragmented or longer than 125 bytes.
    BadControl,
    /// The payload is longer than the limit this side set.
    TooLarge(u64),
    /// A client must mask every frame it sends, a server none (section 5.1).
    WrongMasking,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Reserved(byte) => write!(f, "a frame uses reserved bits ({byte:#04x})"),
            FrameError::BadControl => f.write_str("a control frame is fragmented or too long"),
            FrameError::TooLarge(n) => write!(f, "a frame of {n} bytes is over the limit"),
            FrameError::WrongMasking => f.write_str("a frame is masked the wrong way"),
        }
    }
}

/// Reads the frame at the start of `buf`: `Ok(None)` when more bytes are needed, else the
/// frame and how many bytes it took. `masked` is whether the peer must mask (a server
/// reading a client); `max_payload` bounds the payload.
pub fn decode(
    buf: &[u8],
    masked: bool,
    max_payload: usize,
) -> Result<Option<(Frame, usize)>, FrameError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(FrameError::Reserved(first));
    }
    let opcode = Opcode::from_bits(first & 0x0F).ok_or(FrameError::Reserved(first))?;
    let fin = first & 0x80 != 0;
    if (second & 0x80 != 0) != masked {
        return Err(FrameError::WrongMasking);
    }
    let (length, mut at) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    if opcode.is_control() && (!fin || length > 125) {
        return Err(FrameError::BadControl);
    }
    let length = usize::try_from(length)
        .ok()
        .filter(|&n| n <= max_payload)
        .ok_or(FrameError::TooLarge(length))?;
    let mask = if masked {
        let Some(key) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    let Some(body) = buf.get(at..at + length) else {
        return Ok(None);
    };
    let mut payload = body.to_vec();
    if let Some(key) = mask {
        apply_mask(&mut payload, key);
    }
    Ok(Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        at + length,
    )))
}

/// Appends one final (unfragmented) frame; masked with `mask` when given (a client).
pub fn encode(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) {
    out.push(0x80 | opcode.bits());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    let body = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[body..], key);
    }
}

fn apply_mask(bytes: &mut [u8], key: [u8; 4]) {
    for (i, b) in bytes.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_rfc_examples_decode() {
        // RFC 6455 section 5.7: an unmasked and a masked "Hello".
        let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (frame, used) = decode(&unmasked, false, 100).unwrap().unwrap();
        assert_eq!((frame.payload.as_slice(), used), (&b"Hello"[..], 7));
        assert!(frame.fin && frame.opcode == Opcode::Text);
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (frame, used) = decode(&masked, true, 100).unwrap().unwrap();
        assert_eq!((frame.payload.as_slice(), used), (&b"Hello"[..], 11));
        // A fragmented first part.
        let (frame, _) = decode(&[0x01, 0x03, 0x48, 0x65, 0x6c], false, 100)
            .unwrap()
            .unwrap();
        assert!(!frame.fin);
    }

    #[test]
    fn masking_the_wrong_way_oversized_and_reserved_frames_are_refused() {
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f];
        assert_eq!(decode(&masked, false, 100), Err(FrameError::WrongMasking));
        let mut big = Vec::new();
        encode(&mut big, Opcode::Text, &[b'x'; 300], None);
        assert_eq!(decode(&big, false, 299), Err(FrameError::TooLarge(300)));
        assert_eq!(
            decode(&[0xC1, 0x00], false, 9),
            Err(FrameError::Reserved(0xC1))
        );
        assert_eq!(
            decode(&[0x83, 0x00], false, 9),
            Err(FrameError::Reserved(0x83))
        );
        assert_eq!(decode(&[0x09, 0x00], false, 9), Err(FrameError::BadControl));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// What is encoded decodes to the same, from any prefix on only "need more".
        #[test]
        fn frames_round_trip_and_prefixes_ask_for_more(
            payload in proptest::collection::vec(any::<u8>(), 0..70_000),
            mask in proptest::option::of(any::<[u8; 4]>()),
        ) {
            let mut bytes = Vec::new();
            encode(&mut bytes, Opcode::Binary, &payload, mask);
            let (frame, used) = decode(&bytes, mask.is_some(), 1 << 20).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(frame.payload, payload);
            for cut in [0, 1, 2, 3, 5, 9, bytes.len() - 1] {
                if cut < bytes.len() {
                    prop_assert_eq!(decode(&bytes[..cut], mask.is_some(), 1 << 20), Ok(None));
                }
            }
        }

        /// Any bytes: no panic, and a frame is never longer than the limit.
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), masked: bool) {
            if let Ok(Some((frame, used))) = decode(&bytes, masked, 16) {
                prop_assert!(frame.payload.len() <= 16 && used <= bytes.len());
            }
        }
    }
}

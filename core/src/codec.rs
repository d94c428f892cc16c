//! The one binary encoding of quorumlog: RPC frames ([`crate::rpc`]),
//! context tokens ([`crate::context`]) and stored rows
//! ([`crate::storage`]) are all [postcard](https://docs.rs/postcard) of
//! their serde types, behind a version marker each owner keeps:
//!
//! - an RPC frame starts with [`FRAME_MAGIC`] and [`PROTOCOL_VERSION`], so a
//!   node of another protocol version is told apart at its first frame;
//! - a context token starts with its format byte;
//! - a stored row starts with its row-format marker.
//!
//! **Upgrade rule.** A change to a type any of these carry (a field of
//! `Version`, a `Request` variant) is a new version of that encoding: bump
//! the marker, and keep reading every earlier marker of stored rows (rows
//! live for ever) — as rows of format 1 and 2, bincode from before this
//! codec, are still read ([`legacy`]), and format 3, this codec before
//! versions had timestamps. Tokens and frames are not stored: an
//! old token is refused with "read the key again", and a node refuses a
//! peer of another protocol version with an error naming both versions, so
//! a cluster is upgraded by replacing all its nodes (a mixed cluster
//! refuses, it never misreads).
//!
//! Decoding is bounded by the input: a length prefix inside a message can
//! never allocate more than the bytes received, and trailing bytes are an
//! error.
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// The first bytes of every RPC frame.
pub const FRAME_MAGIC: [u8; 2] = *b"QL";
/// The RPC protocol version this build speaks. 1 was bincode frames
/// without a header, before this codec; 2, this codec with versions
/// without timestamps.
pub const PROTOCOL_VERSION: u8 = 3;
/// Length of the frame header: magic and version.
pub const FRAME_HEADER_LEN: usize = FRAME_MAGIC.len() + 1;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("cannot encode: {0}")]
    Encode(String),
    #[error("cannot decode: {0}")]
    Decode(String),
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

/// Append the encoding of `value` to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: Vec<u8>) -> Result<Vec<u8>, CodecError> {
    postcard::serialize_with_flavor(value, Output(out))
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// postcard's output into a `Vec`, as `postcard::to_extend` writes it, but
/// for the one-byte pieces: postcard writes every integer as a varint
/// piece, nearly all of them one byte (a version vector's counters and
/// node ids), and `to_extend` copied each through a call to `memcpy`
/// (two in five of a simulated seed's calls to it).
struct Output(Vec<u8>);

impl postcard::ser_flavors::Flavor for Output {
    type Output = Vec<u8>;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        match bytes {
            [byte] => self.0.push(*byte),
            _ => self.0.extend_from_slice(bytes),
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    // Sized first (a pass that writes nothing), so the output is written
    // once instead of regrown and copied as it fills.
    encode_into(value, Vec::with_capacity(encoded_size(value)))
}

/// Bytes `value` encodes to (for budgets; 0 if it cannot be encoded).
pub fn encoded_size<T: Serialize + ?Sized>(value: &T) -> usize {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default()).unwrap_or(0)
}

/// Decode exactly one value from `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| CodecError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError::Trailing(rest.len()));
    }
    Ok(value)
}

/// A frame's header: which protocol version sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameHeader {
    /// This build's version: the payload follows.
    Current,
    /// A quorumlog frame of another protocol version.
    Other(u8),
    /// Not a quorumlog frame of any version this build knows to have a
    /// header (e.g. a bincode frame of protocol 1, or not quorumlog at all).
    Unknown,
}

/// Start a frame: the header, then (by [`encode_into`]) the payload of
/// `payload_capacity` bytes (its [`encoded_size`]) without growing: a
/// frame grown by doubling copies a large answer (a key's whole sibling
/// set) several times over.
pub fn frame_header(payload_capacity: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN.saturating_add(payload_capacity));
    frame.extend_from_slice(&FRAME_MAGIC);
    frame.push(PROTOCOL_VERSION);
    frame
}

/// Read a frame's header; the payload is `&frame[FRAME_HEADER_LEN..]`.
pub fn read_frame_header(frame: &[u8]) -> FrameHeader {
    match frame {
        [m0, m1, version, ..] if [*m0, *m1] == FRAME_MAGIC => {
            if *version == PROTOCOL_VERSION {
                FrameHeader::Current
            } else {
                FrameHeader::Other(*version)
            }
        }
        _ => FrameHeader::Unknown,
    }
}

/// Readers of the frozen bincode layouts stored rows had before this codec
/// (bincode 1 with fixed-width integers, little-endian; strings, sequences
/// and maps prefixed by a u64 length). They are written out here rather
/// than kept on the bincode crate, which is no longer maintained: these
/// layouts never change again, and only reading them is needed.
pub mod legacy {
    use thiserror::Error;

    #[derive(Debug, Clone, PartialEq, Eq, Error)]
    #[error("at byte {at}: {reason}")]
    pub struct LegacyError {
        pub at: usize,
        pub reason: String,
    }

    /// A cursor over fixed-width bincode.
    pub struct Reader<'a> {
        data: &'a [u8],
        at: usize,
    }

    impl<'a> Reader<'a> {
        pub fn new(data: &'a [u8]) -> Self {
            Reader { data, at: 0 }
        }

        fn fail(&self, reason: impl Into<String>) -> LegacyError {
            LegacyError {
                at: self.at,
                reason: reason.into(),
            }
        }

        fn take(&mut self, n: usize) -> Result<&'a [u8], LegacyError> {
            let end = self
                .at
                .checked_add(n)
                .filter(|&end| end <= self.data.len())
                .ok_or_else(|| self.fail(format!("{n} bytes needed, the row ends first")))?;
            let bytes = &self.data[self.at..end];
            self.at = end;
            Ok(bytes)
        }

        pub fn u32(&mut self) -> Result<u32, LegacyError> {
            let bytes = self.take(4)?;
            Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        }

        pub fn u64(&mut self) -> Result<u64, LegacyError> {
            let bytes = self.take(8)?;
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            Ok(u64::from_le_bytes(word))
        }

        /// A length prefix, bounded by what is left (each element takes
        /// at least `min_element` bytes), so it cannot make us allocate
        /// more than the row holds.
        pub fn len(&mut self, min_element: usize) -> Result<usize, LegacyError> {
            let len = self.u64()?;
            let left = (self.data.len() - self.at) as u64;
            if len.saturating_mul(min_element.max(1) as u64) > left {
                return Err(self.fail(format!("a length of {len} with {left} bytes left")));
            }
            usize::try_from(len).map_err(|_| self.fail("a length past usize"))
        }

        pub fn string(&mut self) -> Result<String, LegacyError> {
            let len = self.len(1)?;
            let bytes = self.take(len)?;
            String::from_utf8(bytes.to_vec()).map_err(|e| self.fail(e.to_string()))
        }

        /// Every byte was read.
        pub fn finish(&self) -> Result<(), LegacyError> {
            if self.at == self.data.len() {
                Ok(())
            } else {
                Err(self.fail(format!("{} trailing bytes", self.data.len() - self.at)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn values_round_trip_and_trailing_bytes_are_refused() {
        let value: (u64, String, BTreeMap<u32, u64>) =
            (7, "v".into(), [(1, 2), (3, 4)].into_iter().collect());
        let bytes = encode(&value).expect("encode");
        assert_eq!(encoded_size(&value), bytes.len());
        let back: (u64, String, BTreeMap<u32, u64>) = decode(&bytes).expect("decode");
        assert_eq!(back, value);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode::<(u64, String, BTreeMap<u32, u64>)>(&longer),
            Err(CodecError::Trailing(1))
        );
    }

    proptest::proptest! {
        /// The output writes exactly what postcard's own `Vec` output
        /// writes, after whatever the buffer held: varints of every
        /// length (one byte or more), strings, byte strings, options.
        #[test]
        fn the_output_writes_what_postcard_writes(
            prefix in proptest::collection::vec(proptest::num::u8::ANY, 0..4),
            counters in proptest::collection::vec((proptest::num::u8::ANY, proptest::num::u64::ANY), 0..8),
            small in proptest::collection::vec(0u32..128, 0..8),
            text in ".{0,40}",
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            flag in proptest::option::of(proptest::num::i64::ANY),
        ) {
            let value = (&counters, &small, &text, serde_bytes_like(&bytes), flag);
            let expected = postcard::to_stdvec(&value).expect("postcard encodes");
            proptest::prop_assert_eq!(encode(&value).expect("encode"), expected.clone());
            let appended = encode_into(&value, prefix.clone()).expect("encode");
            proptest::prop_assert_eq!(&appended[..prefix.len()], &prefix[..]);
            proptest::prop_assert_eq!(&appended[prefix.len()..], &expected[..]);
        }
    }

    /// A byte string as serde's `serialize_bytes` writes it (one piece),
    /// not as a sequence of `u8`s.
    fn serde_bytes_like(bytes: &[u8]) -> impl Serialize + '_ {
        struct Bytes<'a>(&'a [u8]);
        impl Serialize for Bytes<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        Bytes(bytes)
    }

    #[test]
    fn a_huge_length_prefix_allocates_nothing() {
        // A sequence claiming u64::MAX elements (varint), then nothing.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(decode::<Vec<String>>(&bytes).is_err());
        let mut reader = legacy::Reader::new(&[0xff; 8]);
        assert!(reader.len(1).is_err());
    }

    #[test]
    fn frame_headers_name_the_version() {
        let mut frame = frame_header(0);
        frame = encode_into(&5u8, frame).expect("encode");
        assert_eq!(read_frame_header(&frame), FrameHeader::Current);
        frame[2] = PROTOCOL_VERSION + 1;
        assert_eq!(
            read_frame_header(&frame),
            FrameHeader::Other(PROTOCOL_VERSION + 1)
        );
        // A protocol-1 frame (bincode, starting with a u64 request id).
        assert_eq!(read_frame_header(&[7, 0, 0, 0]), FrameHeader::Unknown);
        assert_eq!(read_frame_header(&[]), FrameHeader::Unknown);
    }

    #[test]
    fn both_magic_bytes_must_match_for_a_frame_to_be_quorumlog() {
        for magic in [*b"QX", *b"XL", *b"LQ"] {
            let frame = [magic[0], magic[1], PROTOCOL_VERSION, 0];
            assert_eq!(read_frame_header(&frame), FrameHeader::Unknown, "{magic:?}");
        }
    }

    #[test]
    fn a_legacy_length_whose_byte_count_overflows_is_refused() {
        // 2^60 elements of at least 16 bytes: 2^64 bytes, which wraps to 0
        // in u64 arithmetic and would pass a wrapping bound.
        let mut data = (1u64 << 60).to_le_bytes().to_vec();
        data.extend([0u8; 64]);
        assert!(legacy::Reader::new(&data).len(16).is_err());
    }

    #[test]
    fn a_legacy_reader_with_bytes_left_is_not_finished() {
        let data = [1, 0, 0, 0, 9];
        let mut reader = legacy::Reader::new(&data);
        assert_eq!(reader.u32(), Ok(1));
        assert!(reader.finish().is_err(), "one byte left unread");
    }

    #[test]
    fn a_legacy_string_must_be_utf8() {
        let mut data = 2u64.to_le_bytes().to_vec();
        data.extend([0xff, 0xfe]);
        assert!(legacy::Reader::new(&data).string().is_err());
        let mut data = 2u64.to_le_bytes().to_vec();
        data.extend(*b"ok");
        assert_eq!(legacy::Reader::new(&data).string(), Ok("ok".into()));
    }
}

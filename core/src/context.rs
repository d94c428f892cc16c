//! The causal context a client carries from a read to its next write, as an
//! opaque token: `base64url( format-byte || bincode((key-hash, VersionVector)) )`.
//!
//! The leading format byte lets the encoding change later without breaking
//! tokens clients already hold; the size bound keeps a hostile token from
//! costing memory. The token is bound to the key it was read from (a
//! 64-bit FNV-1a hash of the key), so a token sent with a write to another
//! key is refused instead of superseding versions its writer never saw.
//! The binding catches mistakes, not forgery: a forged context is caught by
//! the coordinator, which refuses any context covering dots the key never
//! had.
use crate::version::{VersionVector, MAX_COUNTER};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use thiserror::Error;

/// Format byte of the first encoding (no key binding, node ids without
/// incarnations): refused with a request to read again.
const FORMAT_V1: u8 = 1;
/// Format byte of the current token encoding.
const FORMAT_V2: u8 = 2;
/// Largest accepted token, in characters (about 190 vector entries).
pub const MAX_TOKEN_LEN: usize = 4096;
/// Largest accepted number of entries in a context.
pub const MAX_CONTEXT_ENTRIES: usize = 256;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ContextError {
    #[error("causal context is {len} characters long; the limit is {MAX_TOKEN_LEN}")]
    TooLong { len: usize },
    #[error("causal context is not base64url: {0}")]
    NotBase64(String),
    #[error("causal context is empty")]
    Empty,
    #[error("causal context has unknown format {0} (this server understands format {FORMAT_V2})")]
    UnknownFormat(u8),
    #[error("causal context is from an older version of quorumlog (format {FORMAT_V1}): read the key again and send the new context")]
    Outdated,
    #[error("causal context was returned by a read of another key: send the context a read of this key returned")]
    OtherKey,
    #[error(
        "causal context entry {entry} is beyond any counter a node mints (at most {MAX_COUNTER})"
    )]
    CounterTooLarge { entry: String },
    #[error("causal context is corrupt: {0}")]
    Corrupt(String),
    #[error("causal context has {0} entries; the limit is {MAX_CONTEXT_ENTRIES}")]
    TooManyEntries(usize),
}

/// The 64-bit FNV-1a hash of a key: stable across builds and platforms
/// (the standard library's hasher is not), and enough to tell keys apart
/// for the binding. Written out because it is five lines.
fn key_hash(key: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    key.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// Encode a context read from `key` as a client token.
pub fn encode(key: &str, context: &VersionVector) -> String {
    let mut bytes = vec![FORMAT_V2];
    bytes.extend(
        bincode::serialize(&(key_hash(key), context)).expect("a version vector always serialises"),
    );
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode a client token sent with a write to `key`, rejecting anything
/// malformed, oversized, out of range, or read from another key.
pub fn decode(key: &str, token: &str) -> Result<VersionVector, ContextError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(ContextError::TooLong { len: token.len() });
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|e| ContextError::NotBase64(e.to_string()))?;
    let (&format, body) = bytes.split_first().ok_or(ContextError::Empty)?;
    match format {
        FORMAT_V2 => {}
        FORMAT_V1 => return Err(ContextError::Outdated),
        other => return Err(ContextError::UnknownFormat(other)),
    }
    use bincode::Options;
    // fixint, like `bincode::serialize`; bounded by the token we hold, so a
    // length prefix inside cannot make us allocate more.
    let (hash, vv): (u64, VersionVector) = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(body.len() as u64)
        .deserialize(body)
        .map_err(|e| ContextError::Corrupt(e.to_string()))?;
    // bincode ignores trailing bytes; a token with extra bytes is not one we minted.
    let reencoded =
        bincode::serialized_size(&(hash, &vv)).map_err(|e| ContextError::Corrupt(e.to_string()))?;
    if reencoded as usize != body.len() {
        return Err(ContextError::Corrupt("trailing bytes".into()));
    }
    if vv.len() > MAX_CONTEXT_ENTRIES {
        return Err(ContextError::TooManyEntries(vv.len()));
    }
    if let Some((actor, counter)) = vv.entries().find(|&(_, c)| c > MAX_COUNTER) {
        return Err(ContextError::CounterTooLarge {
            entry: format!("{actor}:{counter}"),
        });
    }
    if hash != key_hash(key) {
        return Err(ContextError::OtherKey);
    }
    Ok(vv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Actor;

    #[test]
    fn round_trip() {
        let vv = VersionVector::from_entries([(Actor::new(1, 0), 3), (Actor::new(4, 9), 9)]);
        assert_eq!(decode("k", &encode("k", &vv)), Ok(vv));
        assert_eq!(
            decode("k", &encode("k", &VersionVector::new())),
            Ok(VersionVector::new())
        );
    }

    #[test]
    fn a_token_is_bound_to_its_key() {
        let vv = VersionVector::from_entries([(1, 3)]);
        assert_eq!(decode("b", &encode("a", &vv)), Err(ContextError::OtherKey));
        assert_eq!(decode("a", &encode("a", &vv)), Ok(vv));
    }

    #[test]
    fn overflowing_counters_are_refused() {
        let vv = VersionVector::from_entries([(1, u64::MAX)]);
        assert!(matches!(
            decode("k", &encode("k", &vv)),
            Err(ContextError::CounterTooLarge { .. })
        ));
        let edge = VersionVector::from_entries([(1, MAX_COUNTER)]);
        assert_eq!(decode("k", &encode("k", &edge)), Ok(edge));
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert!(matches!(
            decode("k", "!!!"),
            Err(ContextError::NotBase64(_))
        ));
        assert_eq!(decode("k", ""), Err(ContextError::Empty));
        assert_eq!(
            decode("k", &URL_SAFE_NO_PAD.encode([9u8, 0, 0])),
            Err(ContextError::UnknownFormat(9))
        );
        assert_eq!(
            decode(
                "k",
                &URL_SAFE_NO_PAD.encode([FORMAT_V1, 0, 0, 0, 0, 0, 0, 0, 0])
            ),
            Err(ContextError::Outdated)
        );
        assert!(matches!(
            decode("k", &URL_SAFE_NO_PAD.encode([FORMAT_V2, 5])),
            Err(ContextError::Corrupt(_))
        ));
        let long = "A".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            decode("k", &long),
            Err(ContextError::TooLong {
                len: MAX_TOKEN_LEN + 1
            })
        );
        let mut with_tail = URL_SAFE_NO_PAD
            .decode(encode("k", &VersionVector::from_entries([(1, 1)])))
            .unwrap();
        with_tail.push(0);
        assert!(matches!(
            decode("k", &URL_SAFE_NO_PAD.encode(with_tail)),
            Err(ContextError::Corrupt(_))
        ));
    }

    #[test]
    fn a_huge_length_prefix_does_not_allocate() {
        // format byte, key hash, then a map length of u64::MAX with no entries behind it.
        let mut bytes = vec![FORMAT_V2];
        bytes.extend(key_hash("k").to_le_bytes());
        bytes.extend(u64::MAX.to_le_bytes());
        assert!(matches!(
            decode("k", &URL_SAFE_NO_PAD.encode(bytes)),
            Err(ContextError::Corrupt(_))
        ));
    }
}

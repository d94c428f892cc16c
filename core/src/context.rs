//! The causal context a client carries from a read to its next write, as an
//! opaque token: `base64url( format-byte || bincode(VersionVector) )`.
//!
//! The leading format byte lets the encoding change later without breaking
//! tokens clients already hold; the size bound keeps a hostile token from
//! costing memory.
use crate::version::VersionVector;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use thiserror::Error;

/// Format byte of the current token encoding.
const FORMAT_V1: u8 = 1;
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
    #[error("causal context has unknown format {0} (this server understands format {FORMAT_V1})")]
    UnknownFormat(u8),
    #[error("causal context is corrupt: {0}")]
    Corrupt(String),
    #[error("causal context has {0} entries; the limit is {MAX_CONTEXT_ENTRIES}")]
    TooManyEntries(usize),
}

/// Encode a context as a client token.
pub fn encode(context: &VersionVector) -> String {
    let mut bytes = vec![FORMAT_V1];
    bytes.extend(bincode::serialize(context).expect("a version vector always serialises"));
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode a client token, rejecting anything malformed or oversized.
pub fn decode(token: &str) -> Result<VersionVector, ContextError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(ContextError::TooLong { len: token.len() });
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|e| ContextError::NotBase64(e.to_string()))?;
    let (&format, body) = bytes.split_first().ok_or(ContextError::Empty)?;
    if format != FORMAT_V1 {
        return Err(ContextError::UnknownFormat(format));
    }
    let vv: VersionVector =
        bincode::deserialize(body).map_err(|e| ContextError::Corrupt(e.to_string()))?;
    // bincode ignores trailing bytes; a token with extra bytes is not one we minted.
    let reencoded =
        bincode::serialized_size(&vv).map_err(|e| ContextError::Corrupt(e.to_string()))?;
    if reencoded as usize != body.len() {
        return Err(ContextError::Corrupt("trailing bytes".into()));
    }
    if vv.len() > MAX_CONTEXT_ENTRIES {
        return Err(ContextError::TooManyEntries(vv.len()));
    }
    Ok(vv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let vv = VersionVector::from_entries([(1, 3), (4, 9)]);
        assert_eq!(decode(&encode(&vv)), Ok(vv));
        assert_eq!(
            decode(&encode(&VersionVector::new())),
            Ok(VersionVector::new())
        );
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert!(matches!(decode("!!!"), Err(ContextError::NotBase64(_))));
        assert_eq!(decode(""), Err(ContextError::Empty));
        assert_eq!(
            decode(&URL_SAFE_NO_PAD.encode([9u8, 0, 0])),
            Err(ContextError::UnknownFormat(9))
        );
        assert!(matches!(
            decode(&URL_SAFE_NO_PAD.encode([1u8, 5])),
            Err(ContextError::Corrupt(_))
        ));
        let long = "A".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            decode(&long),
            Err(ContextError::TooLong {
                len: MAX_TOKEN_LEN + 1
            })
        );
        let mut with_tail = URL_SAFE_NO_PAD
            .decode(encode(&VersionVector::from_entries([(1, 1)])))
            .unwrap();
        with_tail.push(0);
        assert!(matches!(
            decode(&URL_SAFE_NO_PAD.encode(with_tail)),
            Err(ContextError::Corrupt(_))
        ));
    }

    #[test]
    fn a_huge_length_prefix_does_not_allocate() {
        // format byte, then a map length of u64::MAX with no entries behind it.
        let mut bytes = vec![FORMAT_V1];
        bytes.extend(u64::MAX.to_le_bytes());
        assert!(matches!(
            decode(&URL_SAFE_NO_PAD.encode(bytes)),
            Err(ContextError::Corrupt(_))
        ));
    }
}

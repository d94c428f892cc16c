//! The causal context a client carries from a read to its next write, as an
//! opaque token:
//! `base64url( 4 || codec((key-hash, VersionVector)) || tag )`, where
//! `tag` is the first 16 bytes of HMAC-SHA256 over everything before it,
//! keyed with the cluster's context secret. Coordinators sign the contexts
//! their reads and writes return and check the tokens writes bring back,
//! so every path into the cluster (the REST gateway, the internal RPC)
//! takes only contexts the cluster issued.
//!
//! The leading format byte lets the encoding change later without breaking
//! tokens clients already hold; the size bound keeps a hostile token from
//! costing memory. The token is bound to the key it was read from (a
//! 64-bit FNV-1a hash of the key), so a token sent with a write to another
//! key is refused instead of superseding versions its writer never saw.
//! The tag makes tokens unforgeable: only a context that a read returned
//! can make a write supersede anything, so no client can name a version it
//! never read. The checks run in an order that names the most useful
//! problem: format, shape, counters, key, then the tag.
use crate::version::{VersionVector, MAX_COUNTER};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use thiserror::Error;

/// Format bytes of earlier encodings (1: no key binding, node ids without
/// incarnations; 2: not signed; 3: bincode, before the project's codec):
/// refused with a request to read again.
const FORMAT_V1: u8 = 1;
const FORMAT_V2: u8 = 2;
const FORMAT_V3: u8 = 3;
/// Format byte of the current token encoding: the codec
/// ([`crate::codec`]) of (key hash, context), then the tag.
const FORMAT_V4: u8 = 4;
/// Bytes of the HMAC-SHA256 tag a token carries (truncated: 128 bits).
const TAG_BYTES: usize = 16;
/// Largest accepted token, in characters (about 190 vector entries).
pub const MAX_TOKEN_LEN: usize = 4096;
/// Largest accepted number of entries in a context.
pub const MAX_CONTEXT_ENTRIES: usize = 256;

/// The secret context tokens are signed with. Every node of a cluster must
/// hold the same one for a token read through one coordinator to be
/// accepted by another.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ContextSecret([u8; 32]);

impl ContextSecret {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        ContextSecret(bytes)
    }

    /// 64 hexadecimal digits.
    pub fn from_hex(text: &str) -> Result<Self, ContextSecretError> {
        use crate::input::{secret_from_hex, SecretHexError};
        secret_from_hex(text).map(ContextSecret).map_err(|e| {
            ContextSecretError(match e {
                SecretHexError::Length(len) => {
                    format!("{len} characters; expected 64 hexadecimal digits")
                }
                SecretHexError::NotHex(reason) => {
                    format!("not hexadecimal ({reason}); expected 64 hexadecimal digits")
                }
            })
        })
    }

    fn tag(&self, signed: &[u8]) -> Hmac<Sha256> {
        // The keyed state (both padded key blocks already hashed) is built
        // once per secret and thread and then cloned: building it was half
        // the hashing of every token.
        thread_local! {
            static KEYED: std::cell::RefCell<Option<([u8; 32], Hmac<Sha256>)>> =
                const { std::cell::RefCell::new(None) };
        }
        let mut mac = KEYED.with(|keyed| {
            let mut keyed = keyed.borrow_mut();
            match &*keyed {
                Some((key, mac)) if *key == self.0 => mac.clone(),
                _ => {
                    let mac = Hmac::<Sha256>::new_from_slice(&self.0)
                        .expect("HMAC takes a key of any length");
                    *keyed = Some((self.0, mac.clone()));
                    mac
                }
            }
        });
        mac.update(signed);
        mac
    }
}

/// Never print the secret.
impl fmt::Debug for ContextSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContextSecret(***)")
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("context secret: {0}")]
pub struct ContextSecretError(String);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ContextError {
    #[error("causal context is {len} characters long; the limit is {MAX_TOKEN_LEN}")]
    TooLong { len: usize },
    #[error("causal context is not base64url: {0}")]
    NotBase64(String),
    #[error("causal context is empty")]
    Empty,
    #[error("causal context has unknown format {0} (this server understands format {FORMAT_V4})")]
    UnknownFormat(u8),
    #[error("causal context is from an older version of quorumlog (format {0}): read the key again and send the new context")]
    Outdated(u8),
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
    #[error("causal context was not issued by this cluster (forged, altered, or signed by a cluster with another context secret): read the key again and send the context the read returned")]
    NotAuthentic,
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

/// Encode a context read from `key` as a client token signed with `secret`.
pub fn encode(secret: &ContextSecret, key: &str, context: &VersionVector) -> String {
    // A version vector always encodes (its types have no failing case);
    // were it ever not to, the token would fail to decode, never misread.
    let bytes = crate::codec::encode_into(&(key_hash(key), context), vec![FORMAT_V4])
        .unwrap_or_else(|_| vec![FORMAT_V4]);
    let mut bytes = bytes;
    let tag = secret.tag(&bytes).finalize().into_bytes();
    bytes.extend_from_slice(&tag[..TAG_BYTES]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode a client token sent with a write to `key`, rejecting anything
/// malformed, oversized, out of range, read from another key, or not
/// signed with `secret`.
pub fn decode(
    secret: &ContextSecret,
    key: &str,
    token: &str,
) -> Result<VersionVector, ContextError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(ContextError::TooLong { len: token.len() });
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|e| ContextError::NotBase64(e.to_string()))?;
    let format = *bytes.first().ok_or(ContextError::Empty)?;
    match format {
        FORMAT_V4 => {}
        FORMAT_V1 | FORMAT_V2 | FORMAT_V3 => return Err(ContextError::Outdated(format)),
        other => return Err(ContextError::UnknownFormat(other)),
    }
    let signed_len = bytes
        .len()
        .checked_sub(TAG_BYTES)
        .filter(|&n| n > 1)
        .ok_or_else(|| ContextError::Corrupt("too short to carry a signature".into()))?;
    let (signed, tag) = bytes.split_at(signed_len);
    let body = &signed[1..];
    // Bounded by the token we hold (a length prefix inside cannot make us
    // allocate more); trailing bytes are not a token we minted.
    let (hash, vv): (u64, VersionVector) =
        crate::codec::decode(body).map_err(|e| ContextError::Corrupt(e.to_string()))?;
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
    secret
        .tag(signed)
        .verify_truncated_left(tag)
        .map_err(|_| ContextError::NotAuthentic)?;
    Ok(vv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Actor;

    fn secret() -> ContextSecret {
        ContextSecret::from_bytes([7; 32])
    }

    fn enc(key: &str, vv: &VersionVector) -> String {
        encode(&secret(), key, vv)
    }

    fn dec(key: &str, token: &str) -> Result<VersionVector, ContextError> {
        decode(&secret(), key, token)
    }

    #[test]
    fn round_trip() {
        let vv = VersionVector::from_entries([(Actor::new(1, 0), 3), (Actor::new(4, 9), 9)]);
        assert_eq!(dec("k", &enc("k", &vv)), Ok(vv));
        assert_eq!(
            dec("k", &enc("k", &VersionVector::new())),
            Ok(VersionVector::new())
        );
    }

    #[test]
    fn a_token_is_bound_to_its_key() {
        let vv = VersionVector::from_entries([(1, 3)]);
        assert_eq!(dec("b", &enc("a", &vv)), Err(ContextError::OtherKey));
        assert_eq!(dec("a", &enc("a", &vv)), Ok(vv));
    }

    #[test]
    fn a_token_not_signed_with_the_secret_is_refused() {
        let vv = VersionVector::from_entries([(1, 3)]);
        let other = ContextSecret::from_bytes([8; 32]);
        assert_eq!(
            dec("k", &encode(&other, "k", &vv)),
            Err(ContextError::NotAuthentic)
        );
        // flip one bit of the vector: the tag no longer matches
        let mut bytes = URL_SAFE_NO_PAD.decode(enc("k", &vv)).unwrap();
        let last_counter = bytes.len() - TAG_BYTES - 1; // a one-byte varint
        bytes[last_counter] ^= 1;
        assert_eq!(
            dec("k", &URL_SAFE_NO_PAD.encode(bytes)),
            Err(ContextError::NotAuthentic)
        );
    }

    #[test]
    fn overflowing_counters_are_refused_and_named() {
        let vv = VersionVector::from_entries([(1, u64::MAX)]);
        let refused = dec("k", &enc("k", &vv)).unwrap_err();
        assert!(matches!(refused, ContextError::CounterTooLarge { .. }));
        assert!(
            refused.to_string().contains("n1:18446744073709551615"),
            "{refused}"
        );
        let edge = VersionVector::from_entries([(1, MAX_COUNTER)]);
        assert_eq!(dec("k", &enc("k", &edge)), Ok(edge));
    }

    #[test]
    fn secrets_parse_from_hex_and_never_print() {
        let hex = "00".repeat(31) + "ff";
        let secret = ContextSecret::from_hex(&hex).unwrap();
        let mut bytes = [0u8; 32];
        bytes[31] = 0xff;
        assert_eq!(secret, ContextSecret::from_bytes(bytes));
        assert!(ContextSecret::from_hex("abc").is_err());
        assert!(ContextSecret::from_hex(&"zz".repeat(32)).is_err());
        // 64 bytes but not 64 digits: refused, never sliced mid-character.
        assert!(ContextSecret::from_hex(&format!("{}é0", "0".repeat(61))).is_err());
        assert_eq!(format!("{secret:?}"), "ContextSecret(***)");
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert!(matches!(dec("k", "!!!"), Err(ContextError::NotBase64(_))));
        assert_eq!(dec("k", ""), Err(ContextError::Empty));
        assert_eq!(
            dec("k", &URL_SAFE_NO_PAD.encode([9u8, 0, 0])),
            Err(ContextError::UnknownFormat(9))
        );
        for old in [FORMAT_V1, FORMAT_V2, FORMAT_V3] {
            assert_eq!(
                dec("k", &URL_SAFE_NO_PAD.encode([old, 0, 0, 0, 0, 0, 0, 0, 0])),
                Err(ContextError::Outdated(old))
            );
        }
        assert!(matches!(
            dec("k", &URL_SAFE_NO_PAD.encode([FORMAT_V4, 5])),
            Err(ContextError::Corrupt(_))
        ));
        let long = "A".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            dec("k", &long),
            Err(ContextError::TooLong {
                len: MAX_TOKEN_LEN + 1
            })
        );
    }

    #[test]
    fn a_huge_length_prefix_does_not_allocate() {
        // format byte, key hash, a map length of u64::MAX with no entries
        // behind it, and a tag.
        let mut bytes = vec![FORMAT_V4];
        bytes.extend(crate::codec::encode(&key_hash("k")).expect("a u64 encodes"));
        // varint u64::MAX
        bytes.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        bytes.extend([0u8; TAG_BYTES]);
        assert!(matches!(
            dec("k", &URL_SAFE_NO_PAD.encode(bytes)),
            Err(ContextError::Corrupt(_))
        ));
    }

    #[test]
    fn a_token_of_exactly_the_length_limit_is_read_not_refused_as_too_long() {
        // 4096 'A's are 3072 zero bytes: read past the length check, they
        // are refused for their format byte, not their length.
        assert_eq!(
            dec("k", &"A".repeat(MAX_TOKEN_LEN)),
            Err(ContextError::UnknownFormat(0))
        );
    }

    #[test]
    fn a_token_with_space_around_it_reads_as_the_same_context() {
        // As pasted from a file, a header or a shell: trimmed, not refused.
        let vv = VersionVector::from_entries([(Actor::new(2, 1), 5)]);
        assert_eq!(dec("k", &format!("  {}\n", enc("k", &vv))), Ok(vv));
    }

    #[test]
    fn a_token_no_longer_than_a_tag_is_refused_not_panicked_on() {
        // The format byte and 15 bytes: nothing is left to sign once the
        // 16-byte tag is taken off the end.
        let mut bytes = vec![FORMAT_V4];
        bytes.extend([0u8; 15]);
        assert!(matches!(
            dec("k", &URL_SAFE_NO_PAD.encode(&bytes)),
            Err(ContextError::Corrupt(_))
        ));
        // The format byte and a tag, nothing signed behind the format byte.
        bytes.push(0);
        assert!(matches!(
            dec("k", &URL_SAFE_NO_PAD.encode(bytes)),
            Err(ContextError::Corrupt(_))
        ));
    }

    #[test]
    fn a_context_of_exactly_the_entry_limit_is_read_and_one_more_is_refused() {
        let entries =
            |n: u32| VersionVector::from_entries((1..=n).map(|node| (Actor::new(node, 0), 1)));
        let full = entries(MAX_CONTEXT_ENTRIES as u32);
        assert_eq!(dec("k", &enc("k", &full)), Ok(full));
        let over = entries(MAX_CONTEXT_ENTRIES as u32 + 1);
        let token = enc("k", &over);
        // Short enough to pass the length check: the entry limit refuses it.
        assert!(token.len() < MAX_TOKEN_LEN);
        assert_eq!(
            dec("k", &token),
            Err(ContextError::TooManyEntries(MAX_CONTEXT_ENTRIES + 1))
        );
    }

    #[test]
    fn a_token_read_from_another_key_is_refused_whatever_the_keys_share() {
        // Same bytes in another order, a prefix, one byte apart at the end.
        let vv = VersionVector::from_entries([(1, 3)]);
        for (read, written) in [("ab", "ba"), ("user", "user-1"), ("key-1", "key-2")] {
            assert_eq!(
                dec(written, &enc(read, &vv)),
                Err(ContextError::OtherKey),
                "read from {read:?}, sent with {written:?}"
            );
        }
    }

    #[test]
    fn every_byte_of_the_tag_is_checked() {
        let vv = VersionVector::from_entries([(1, 3)]);
        let bytes = URL_SAFE_NO_PAD.decode(enc("k", &vv)).unwrap();
        for back in 1..=TAG_BYTES {
            let mut altered = bytes.clone();
            let at = altered.len() - back;
            altered[at] ^= 0x80;
            assert_eq!(
                dec("k", &URL_SAFE_NO_PAD.encode(altered)),
                Err(ContextError::NotAuthentic),
                "tag byte {back} from the end altered"
            );
        }
    }

    #[test]
    fn a_token_is_signed_with_the_first_128_bits_of_hmac_sha256() {
        // As the module documents it, computed here without the module's
        // own code: the tag is 16 bytes (the literal, not TAG_BYTES), the
        // HMAC of everything before it under the secret.
        let vv = VersionVector::from_entries([(Actor::new(1, 2), 3)]);
        let bytes = URL_SAFE_NO_PAD.decode(enc("k", &vv)).unwrap();
        assert_eq!(
            bytes.len(),
            1 + crate::codec::encoded_size(&(key_hash("k"), &vv)) + 16
        );
        let (signed, tag) = bytes.split_at(bytes.len() - 16);
        let mut mac = Hmac::<Sha256>::new_from_slice(&[7; 32]).unwrap();
        mac.update(signed);
        assert_eq!(tag, &mac.finalize().into_bytes()[..16]);
    }
}

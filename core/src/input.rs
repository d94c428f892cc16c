//! The rules for keys and values, in one place: the coordinator applies
//! them to every request, whichever path it came by (the REST gateway, the
//! internal RPC), and the gateway applies the same functions so that a bad
//! request is answered before it costs a round trip.
//!
//! Keys are printable text: non-empty, at most [`MAX_KEY_LEN`] bytes of
//! UTF-8, and no control characters (U+0000–U+001F, U+007F–U+009F). A key
//! holding NUL cannot be stored faithfully by every backend (PostgreSQL's
//! `text` refuses it), and control characters in keys make logs, URLs and
//! metrics ambiguous; refusing them everywhere keeps every store the same.
//! Values are any non-empty UTF-8 text up to [`MAX_VALUE_LEN`] bytes.
//!
//! Secrets (the context secret, the cluster secret) are 32 bytes written as
//! 64 hexadecimal digits ([`secret_from_hex`]).
use thiserror::Error;

/// Largest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Largest accepted value, in bytes.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;

/// Why a text is not a 32-byte secret in hexadecimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretHexError {
    /// It is this many characters, not 64.
    Length(usize),
    /// It is 64 characters, not all hexadecimal digits.
    NotHex(String),
}

/// 32 bytes from 64 hexadecimal digits (either case); spaces and a newline
/// around them are ignored, as in a file or an environment variable.
pub fn secret_from_hex(text: &str) -> Result<[u8; 32], SecretHexError> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(SecretHexError::Length(text.chars().count()));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|e| SecretHexError::NotHex(e.to_string()))?;
    Ok(bytes)
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InputError {
    #[error("key is empty")]
    EmptyKey,
    #[error("key is {len} bytes; the limit is {limit}")]
    KeyTooLong { len: usize, limit: usize },
    #[error(
        "key contains the control character U+{code:04X} at byte {at}; keys are printable text"
    )]
    KeyControl { code: u32, at: usize },
    #[error("value is empty")]
    EmptyValue,
    #[error("value is {len} bytes; the limit is {limit}")]
    ValueTooLong { len: usize, limit: usize },
}

impl InputError {
    /// The limit a request went past, if it went past one.
    pub fn limit(&self) -> Option<usize> {
        match self {
            InputError::KeyTooLong { limit, .. } | InputError::ValueTooLong { limit, .. } => {
                Some(*limit)
            }
            _ => None,
        }
    }
}

pub fn check_key(key: &str) -> Result<(), InputError> {
    if key.is_empty() {
        return Err(InputError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(InputError::KeyTooLong {
            len: key.len(),
            limit: MAX_KEY_LEN,
        });
    }
    if let Some((at, c)) = key.char_indices().find(|(_, c)| c.is_control()) {
        return Err(InputError::KeyControl {
            code: u32::from(c),
            at,
        });
    }
    Ok(())
}

pub fn check_value(value: &str) -> Result<(), InputError> {
    if value.is_empty() {
        return Err(InputError::EmptyValue);
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(InputError::ValueTooLong {
            len: value.len(),
            limit: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_text_within_the_limit() {
        assert_eq!(check_key("user-456"), Ok(()));
        assert_eq!(check_key("é/ü ☃"), Ok(()), "any printable text");
        assert_eq!(check_key(""), Err(InputError::EmptyKey));
        assert_eq!(
            check_key(&"k".repeat(MAX_KEY_LEN + 1)),
            Err(InputError::KeyTooLong {
                len: MAX_KEY_LEN + 1,
                limit: MAX_KEY_LEN
            })
        );
        assert_eq!(check_key(&"k".repeat(MAX_KEY_LEN)), Ok(()));
        assert_eq!(
            check_key("a\0b"),
            Err(InputError::KeyControl { code: 0, at: 1 })
        );
        assert_eq!(
            check_key("ab\u{9f}"),
            Err(InputError::KeyControl { code: 0x9f, at: 2 })
        );
        let text = check_key("a\nb").expect_err("newline").to_string();
        assert!(text.contains("U+000A at byte 1"), "{text}");
    }

    #[test]
    fn values_are_non_empty_within_the_limit() {
        assert_eq!(check_value("v"), Ok(()));
        assert_eq!(check_value("a\0b"), Ok(()), "values are opaque text");
        assert_eq!(check_value(""), Err(InputError::EmptyValue));
        let e = check_value(&"v".repeat(MAX_VALUE_LEN + 1)).expect_err("too long");
        assert_eq!(e.limit(), Some(MAX_VALUE_LEN));
    }

    #[test]
    fn a_value_of_exactly_the_limit_is_accepted() {
        assert_eq!(check_value(&"v".repeat(MAX_VALUE_LEN)), Ok(()));
    }

    #[test]
    fn the_key_limit_counts_bytes_not_characters() {
        // 513 two-byte characters: within the limit as characters, past it
        // as bytes, which is what backends store and index.
        let key = "é".repeat(MAX_KEY_LEN / 2 + 1);
        assert_eq!(
            check_key(&key),
            Err(InputError::KeyTooLong {
                len: MAX_KEY_LEN + 2,
                limit: MAX_KEY_LEN
            })
        );
    }

    #[test]
    fn a_secret_of_more_than_64_digits_is_refused_for_its_length() {
        assert_eq!(
            secret_from_hex(&"0".repeat(66)),
            Err(SecretHexError::Length(66))
        );
        assert_eq!(secret_from_hex(&"0".repeat(64)), Ok([0; 32]));
    }
}

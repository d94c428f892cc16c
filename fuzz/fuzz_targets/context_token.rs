//! Any text as a context token sent with a write: refused with a reason
//! (or, for a real token, taken), never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use quorumlog_core::context::{decode, ContextSecret};

fuzz_target!(|token: &[u8]| {
    let secret = ContextSecret::from_bytes([7; 32]);
    let _ = decode(&secret, "k", &String::from_utf8_lossy(token));
});

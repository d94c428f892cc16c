//! Any bytes as a stored row (every format ever written): a sibling set
//! or "corrupt", never a panic, never more memory than the row.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|row: &[u8]| {
    let _ = quorumlog_core::storage::decode("k", row);
});

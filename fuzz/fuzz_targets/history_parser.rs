//! Any bytes as a history file (JSON lines): parsed, or refused with an
//! error naming the line, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use quorumlog_history::History;

fuzz_target!(|text: &[u8]| {
    if let Ok(history) = History::read_jsonl(text) {
        let _ = history.operations();
    }
});

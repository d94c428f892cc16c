//! Any bytes as an RPC frame, read as a server and as a client would:
//! an answer or an error, never a panic, never more memory than the frame.
#![no_main]
use libfuzzer_sys::fuzz_target;
use quorumlog_core::rpc::{decode_request_frame, decode_response_frame};

fuzz_target!(|frame: &[u8]| {
    let _ = decode_request_frame(frame);
    let _ = decode_response_frame(frame);
});

//! Any bytes where a secured node reads them: as the first frame of a
//! connection (the cluster handshake a listener checks), and as sealed
//! frames after a real handshake (the length-delimited stream the channel
//! codec opens). Refused or opened, never a panic, never more memory than
//! the frame limit allows.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use quorumlog_core::secure_channel::{self, ChannelCodec, ClusterSecret};
use tokio_util::codec::Decoder;

const SECRET: ClusterSecret = ClusterSecret::from_bytes([0x42; 32]);

fuzz_target!(|data: &[u8]| {
    if let Some(message) = secure_channel::handshake_message(data) {
        let _ = secure_channel::respond(&SECRET, message);
    }
    let _ = secure_channel::respond(&SECRET, data);

    let (initiator, hello) = secure_channel::initiate(&SECRET);
    let Some(message) = secure_channel::handshake_message(&hello) else {
        return;
    };
    let Ok((listener, answer)) = secure_channel::respond(&SECRET, message) else {
        return;
    };
    if let Some(answer) = secure_channel::handshake_message(&answer) {
        let _ = initiator.finish(answer);
    }
    let mut codec = ChannelCodec::new(1 << 20);
    codec.seal_with(listener);
    let mut stream = BytesMut::from(data);
    while let Ok(Some(_)) = codec.decode(&mut stream) {}
});

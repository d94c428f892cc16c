//! The decoders of bytes from outside — RPC frames, the cluster handshake
//! and sealed frames, context tokens, stored rows — given any bytes and
//! valid encodings with bytes flipped, cut or added: an answer or an
//! error, never a panic, and never one allocation over 64 MiB (no input
//! here is over 64 KiB). This is the suite's slice of what
//! `scripts/fuzz.sh` fuzzes at length with libFuzzer; the fuzz targets
//! there read the same decoders the same way.
use bytes::BytesMut;
use proptest::prelude::*;
use quorumlog_core::codec;
use quorumlog_core::context::{self, ContextSecret};
use quorumlog_core::protocol::{Request, Response};
use quorumlog_core::rpc::{decode_request_frame, decode_response_frame};
use quorumlog_core::secure_channel::{self, ChannelCodec, ClusterSecret};
use quorumlog_core::storage;
use quorumlog_core::version::{Actor, Dot, Siblings, Version, VersionVector};
use std::alloc::{GlobalAlloc, Layout, System};
use tokio_util::codec::Decoder;

/// libFuzzer's `-malloc_limit_mb=64` for these tests: an allocation this
/// large fails, which aborts the test binary with "memory allocation of N
/// bytes failed" naming the size.
const ALLOCATION_LIMIT: usize = 64 << 20;

struct RefuseHugeAllocations;

// SAFETY: every call goes to `System` unchanged, or returns null (an
// allocation failure, which `GlobalAlloc` allows) when the size is over
// the limit.
unsafe impl GlobalAlloc for RefuseHugeAllocations {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT {
            return std::ptr::null_mut();
        }
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_LIMIT {
            return std::ptr::null_mut();
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: RefuseHugeAllocations = RefuseHugeAllocations;

const CLUSTER_SECRET: ClusterSecret = ClusterSecret::from_bytes([0x42; 32]);

/// A valid encoding changed the ways a broken or hostile peer changes
/// one: bytes overwritten, the end cut off, bytes appended.
#[derive(Debug, Clone)]
enum Damage {
    Overwrite(Vec<(prop::sample::Index, u8)>),
    Truncate(prop::sample::Index),
    Append(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
            .prop_map(Damage::Overwrite),
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Append),
    ]
}

fn damaged(valid: &[u8], damage: &Damage) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    match damage {
        Damage::Overwrite(edits) if !bytes.is_empty() => {
            for (at, byte) in edits {
                let at = at.index(bytes.len());
                bytes[at] = *byte;
            }
        }
        Damage::Overwrite(_) => {}
        Damage::Truncate(at) => bytes.truncate(at.index(valid.len() + 1)),
        Damage::Append(tail) => bytes.extend_from_slice(tail),
    }
    bytes
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..2048)
}

fn siblings(values: &[String]) -> Siblings {
    Siblings::from_versions(values.iter().enumerate().map(|(i, value)| Version {
        dot: Dot::new(Actor::new(i as u32 + 1, 3), 1),
        context: VersionVector::from_entries([(Actor::new(9, 1), i as u64)]),
        value: value.clone(),
        timestamp_ms: 0,
    }))
    .expect("distinct dots make a sibling set")
}

/// An RPC frame as a peer sends it: the header, then the message id and
/// the body.
fn frame<T: serde::Serialize>(id: u64, body: &T) -> Vec<u8> {
    let mut frame = codec::frame_header(0);
    frame.extend(codec::encode(&(id, body)).expect("encodable"));
    frame
}

fn request() -> impl Strategy<Value = Request> {
    (
        "[a-z]{0,12}",
        prop::collection::vec("[ -~]{0,40}", 0..4),
        any::<bool>(),
    )
        .prop_map(|(key, values, fetch)| {
            if fetch {
                Request::Fetch { key }
            } else {
                Request::Apply {
                    key,
                    siblings: siblings(&values),
                }
            }
        })
}

fn response() -> impl Strategy<Value = Response> {
    prop::collection::vec("[ -~]{0,40}", 0..4)
        .prop_map(|values| Response::Siblings(siblings(&values)))
}

/// What a secured listener and an initiator do with bytes: read them as a
/// first frame (the handshake), then as sealed frames on a channel that
/// finished a real handshake.
fn read_as_a_secured_node(data: &[u8]) {
    if let Some(message) = secure_channel::handshake_message(data) {
        let _ = secure_channel::respond(&CLUSTER_SECRET, message);
    }
    let _ = secure_channel::respond(&CLUSTER_SECRET, data);
    let (initiator, hello) = secure_channel::initiate(&CLUSTER_SECRET);
    let message = secure_channel::handshake_message(&hello).expect("our own hello is a frame");
    let (listener, answer) =
        secure_channel::respond(&CLUSTER_SECRET, message).expect("our own hello is answered");
    let answer = secure_channel::handshake_message(&answer).expect("our own answer is a frame");
    assert!(initiator.finish(answer).is_ok(), "our own handshake failed");
    let mut codec = ChannelCodec::new(1 << 20);
    codec.seal_with(listener);
    let mut stream = BytesMut::from(data);
    while let Ok(Some(_)) = codec.decode(&mut stream) {}
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn rpc_frames_of_any_bytes_are_read_or_refused(bytes in any_bytes(), id in any::<u64>()) {
        let _ = decode_request_frame(&bytes);
        let _ = decode_response_frame(&bytes);
        // Past the header, so the message decoder itself reads them.
        let mut framed = codec::frame_header(0);
        framed.extend(codec::encode(&id).expect("an id encodes"));
        framed.extend(&bytes);
        let _ = decode_request_frame(&framed);
        let _ = decode_response_frame(&framed);
    }

    #[test]
    fn damaged_rpc_frames_are_read_or_refused(
        id in any::<u64>(),
        request in request(),
        response in response(),
        damage in damage(),
    ) {
        let valid_request = frame(id, &request);
        let valid_response = frame(id, &response);
        prop_assert_eq!(decode_request_frame(&valid_request).expect("a valid request frame").0, id);
        prop_assert_eq!(decode_response_frame(&valid_response).expect("a valid response frame").0, id);
        let _ = decode_request_frame(&damaged(&valid_request, &damage));
        let _ = decode_response_frame(&damaged(&valid_response, &damage));
    }

    #[test]
    fn stored_rows_of_any_bytes_or_damaged_are_read_or_corrupt(
        bytes in any_bytes(),
        values in prop::collection::vec("[ -~]{0,40}", 0..4),
        damage in damage(),
    ) {
        let _ = storage::decode("k", &bytes);
        let set = siblings(&values);
        let valid = storage::encode(&set).expect("a sibling set encodes");
        prop_assert_eq!(storage::decode("k", &valid).expect("a valid row"), set);
        let _ = storage::decode("k", &damaged(&valid, &damage));
    }

    #[test]
    fn context_tokens_of_any_bytes_or_damaged_are_refused(
        bytes in any_bytes(),
        counters in prop::collection::vec(1u64..1000, 0..5),
        damage in damage(),
    ) {
        let secret = ContextSecret::from_bytes([7; 32]);
        let _ = context::decode(&secret, "k", &String::from_utf8_lossy(&bytes));
        let clock = VersionVector::from_entries(
            counters.iter().enumerate().map(|(i, &c)| (Actor::new(i as u32 + 1, 0), c)),
        );
        let token = context::encode(&secret, "k", &clock);
        prop_assert_eq!(&context::decode(&secret, "k", &token).expect("a valid token"), &clock);
        // The token is sealed: a damaged one is refused, or (space around
        // it is trimmed) read as the same context, never as another.
        let broken = damaged(token.as_bytes(), &damage);
        if let Ok(read) = context::decode(&secret, "k", &String::from_utf8_lossy(&broken)) {
            prop_assert_eq!(read, clock);
        }
    }

    #[test]
    fn secured_nodes_read_any_bytes_or_refuse_them(bytes in any_bytes()) {
        read_as_a_secured_node(&bytes);
    }
}

//! What the project's copy of madsim (`vendor/madsim`) must still do after
//! its changes: a simulated TCP link delivers in order and no sooner than
//! its latency, every byte before the end of the stream, holds what is sent while it is down until it is back, a
//! sleep polled many times wakes its task once, a killed node's waiting
//! tasks are dropped however many tasks finished before, and the clocks
//! programs read are the simulated one. Judged on what the programs see
//! (bytes, times, wake-ups, drops), not on madsim's internals.
#![cfg(madsim)]

use madsim::task::NodeId;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// One message on the test link: its number and when it was sent, in
/// nanoseconds since the run started.
const RECORD: usize = 16;

fn record(seq: u64, sent_ns: u64) -> [u8; RECORD] {
    let mut bytes = [0u8; RECORD];
    bytes[..8].copy_from_slice(&seq.to_le_bytes());
    bytes[8..].copy_from_slice(&sent_ns.to_le_bytes());
    bytes
}

fn parse(bytes: &[u8; RECORD]) -> (u64, u64) {
    let (seq, sent) = bytes.split_at(8);
    (
        u64::from_le_bytes(seq.try_into().expect("8 bytes")),
        u64::from_le_bytes(sent.try_into().expect("8 bytes")),
    )
}

fn run<F: std::future::Future<Output = ()> + 'static>(seed: u64, body: F) {
    let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.block_on(body);
}

/// What the receiver saw: each message's number, when it was sent and
/// when it arrived (ns since `start`).
type Received = Vec<(u64, u64, u64)>;

/// A receiver node at 10.0.0.1 and a sender node at 10.0.0.2.
fn link_nodes() -> (madsim::runtime::NodeHandle, madsim::runtime::NodeHandle) {
    let handle = madsim::runtime::Handle::current();
    let receiver = handle.create_node().ip([10, 0, 0, 1].into()).build();
    let sender = handle.create_node().ip([10, 0, 0, 2].into()).build();
    (receiver, sender)
}

/// On the receiver: the one connection made to 10.0.0.1:1.
async fn accept_one() -> tokio::net::TcpStream {
    let listener = tokio::net::TcpListener::bind("10.0.0.1:1")
        .await
        .expect("bind");
    let (stream, _) = listener.accept().await.expect("accept");
    stream
}

/// A receiver at 10.0.0.1 reading `count` records, and a sender at
/// 10.0.0.2 running `send` on a connection to it (given the run's start and
/// the nodes, receiver first); the records as received.
async fn over_a_link<S, F>(count: usize, send: S) -> Received
where
    S: FnOnce(tokio::net::TcpStream, Instant, [NodeId; 2]) -> F + Send + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (receiver, sender) = link_nodes();
    let start = Instant::now();
    let nodes = [receiver.id(), sender.id()];
    let received = receiver.spawn(async move {
        let mut stream = accept_one().await;
        let mut seen = Vec::new();
        let mut bytes = [0u8; RECORD];
        for _ in 0..count {
            stream.read_exact(&mut bytes).await.expect("a whole record");
            let (seq, sent) = parse(&bytes);
            seen.push((seq, sent, start.elapsed().as_nanos() as u64));
        }
        seen
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    sender.spawn(async move {
        let stream = tokio::net::TcpStream::connect("10.0.0.1:1")
            .await
            .expect("connect");
        send(stream, start, nodes).await;
    });
    received.await.expect("the receiver runs to the end")
}

#[test]
fn a_link_delivers_in_order_and_no_sooner_than_its_latency() {
    for seed in 0..4 {
        run(seed, async {
            let messages = 300;
            let received = over_a_link(messages, move |mut stream, start, _| async move {
                for seq in 0..messages as u64 {
                    let sent = start.elapsed().as_nanos() as u64;
                    stream.write_all(&record(seq, sent)).await.expect("send");
                    // One payload per message; bursts of ten at one instant,
                    // then a pause shorter than the latency.
                    stream.flush().await.expect("flush");
                    if seq % 10 == 9 {
                        tokio::time::sleep(Duration::from_micros(300)).await;
                    }
                }
            })
            .await;
            let numbers: Vec<u64> = received.iter().map(|r| r.0).collect();
            assert_eq!(numbers, (0..messages as u64).collect::<Vec<_>>());
            // madsim's default latency: 1 to 10 ms per message.
            for (seq, sent, arrived) in &received {
                assert!(
                    arrived - sent >= 1_000_000,
                    "message {seq} took {} ns",
                    arrived - sent
                );
            }
        });
    }
}

/// Frames written in pieces, several to a flush, and the stream dropped at
/// once after the last flush, while its payloads still travel: the reader
/// gets every byte, in order, and only then the end of the stream.
#[test]
fn pieces_written_between_flushes_arrive_whole_and_the_end_comes_after_them() {
    for seed in 0..4 {
        run(seed, async {
            let (receiver, sender) = link_nodes();
            let messages = 60u64;
            let received = receiver.spawn(async move {
                let mut stream = accept_one().await;
                let mut bytes = Vec::new();
                // Returns at the end of the stream: the sender dropped it.
                stream.read_to_end(&mut bytes).await.expect("read");
                bytes
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
            sender.spawn(async move {
                let mut stream = tokio::net::TcpStream::connect("10.0.0.1:1")
                    .await
                    .expect("connect");
                for seq in 0..messages {
                    let bytes = record(seq, seq * 7);
                    // Each record in two writes, three records to a flush.
                    stream.write_all(&bytes[..5]).await.expect("send");
                    stream.write_all(&bytes[5..]).await.expect("send");
                    if seq % 3 == 2 || seq + 1 == messages {
                        stream.flush().await.expect("flush");
                    }
                }
                // Dropped here: the last payloads are still on their way.
            });
            let bytes = received.await.expect("the receiver runs to the end");
            let records: Vec<(u64, u64)> = bytes
                .chunks(RECORD)
                .map(|chunk| parse(chunk.try_into().expect("whole records")))
                .collect();
            let expected: Vec<(u64, u64)> = (0..messages).map(|seq| (seq, seq * 7)).collect();
            assert_eq!(records, expected);
        });
    }
}

#[test]
fn what_is_sent_while_a_link_is_down_waits_for_it_and_holds_back_the_rest() {
    run(1, async {
        let down = Duration::from_millis(200);
        let received = over_a_link(3, move |mut stream, start, [receiver, sender]| async move {
            let net = madsim::net::NetSim::current();
            stream.write_all(&record(0, 0)).await.expect("send");
            stream.flush().await.expect("flush");
            tokio::time::sleep(Duration::from_millis(20)).await;
            net.clog_link(sender, receiver);
            let cut = start.elapsed().as_nanos() as u64;
            stream.write_all(&record(1, cut)).await.expect("send");
            stream.flush().await.expect("flush");
            tokio::time::sleep(down).await;
            net.unclog_link(sender, receiver);
            // Sent once the link is back, after the held message.
            let back = start.elapsed().as_nanos() as u64;
            stream.write_all(&record(2, back)).await.expect("send");
            stream.flush().await.expect("flush");
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        let numbers: Vec<u64> = received.iter().map(|r| r.0).collect();
        assert_eq!(numbers, vec![0, 1, 2]);
        let (_, cut, held_arrived) = received[1];
        assert!(
            held_arrived >= cut + down.as_nanos() as u64,
            "the message sent while the link was down arrived {} ns after it was sent",
            held_arrived - cut
        );
        // It waited with a doubling backoff, so it may arrive a while
        // after the link is back, but not a backoff past 10 s.
        assert!(held_arrived < cut + 11_000_000_000);
    });
}

/// Counts how often it is woken.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_sleep_polled_many_times_wakes_its_task_once() {
    run(0, async {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut sleep = Box::pin(tokio::time::sleep(Duration::from_millis(5)));
        for _ in 0..10 {
            assert!(sleep.as_mut().poll(&mut cx).is_pending());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Ready(()));

        // Polled by another task (another waker), it wakes that one.
        let other = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let other_waker = Waker::from(other.clone());
        let mut sleep = Box::pin(tokio::time::sleep(Duration::from_millis(5)));
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert!(sleep
            .as_mut()
            .poll(&mut Context::from_waker(&other_waker))
            .is_pending());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(other.0.load(Ordering::SeqCst), 1);
    });
}

/// Counts the futures dropped while it was alive in them.
struct CountsDrop(Arc<AtomicUsize>);

impl Drop for CountsDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn killing_a_node_drops_every_task_still_waiting_however_many_have_finished() {
    run(3, async {
        let handle = madsim::runtime::Handle::current();
        let node = handle.create_node().ip([10, 0, 0, 3].into()).build();
        let dropped = Arc::new(AtomicUsize::new(0));
        let mut waiting = 0;
        for round in 0..40 {
            // Tasks that finish at once, thousands in all: the node's task
            // list is pruned of them again and again...
            for _ in 0..50 {
                node.spawn(async {});
            }
            // ...among tasks that wait for nothing that will ever come:
            // only the kill wakes them, to be dropped.
            if round % 4 == 0 {
                let guard = CountsDrop(dropped.clone());
                node.spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                });
                waiting += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        handle.kill(node.id());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(dropped.load(Ordering::SeqCst), waiting);
    });
}

#[test]
fn the_clock_programs_read_is_the_simulated_one() {
    run(5, async {
        let before = (Instant::now(), std::time::SystemTime::now());
        tokio::time::sleep(Duration::from_millis(5)).await;
        let waited = (
            Instant::now() - before.0,
            before.1.elapsed().expect("forward"),
        );
        for waited in [waited.0, waited.1] {
            // The sleep, and the executor's step of 50-100 ns a poll.
            assert!(waited >= Duration::from_millis(5), "{waited:?}");
            assert!(waited < Duration::from_micros(5_010), "{waited:?}");
        }
    });
}

//! Simulated seeds per second for the standard scenario: 5 nodes, 4
//! clients, 500 operations, partitions, crashes and pauses (the `all`
//! schedule) at QUORUM; what madsim's own primitives cost, the floor
//! under any scenario: a message, a task, a timer; and a ping through
//! the project's RPC client and server on top of them. Run with
//! `cargo simbench` (the `sim` profile `cargo sim` runs in).
#[cfg(madsim)]
mod bench {
    use criterion::{criterion_group, Criterion, Throughput};
    use quorumlog_core::Consistency;
    use quorumlog_sim::harness::run_seed;
    use quorumlog_sim::scenario::{FaultSchedule, Levels, Scenario};
    use quorumlog_sim::sweep::run_and_check;
    use std::cell::Cell;
    use std::future::Future;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn seeds_per_second(c: &mut Criterion) {
        let scenario = Scenario::standard(FaultSchedule::All, Levels::same(Consistency::Quorum));
        let mut group = c.benchmark_group("standard-scenario");
        group.throughput(Throughput::Elements(1));
        group.sample_size(30);
        let seed = Cell::new(0u64);
        group.bench_function("simulate one seed", |b| {
            b.iter(|| {
                seed.set(seed.get() + 1);
                run_seed(&scenario, seed.get())
            })
        });
        group.bench_function("simulate and check one seed", |b| {
            b.iter(|| {
                seed.set(seed.get() + 1);
                run_and_check(&scenario, seed.get())
            })
        });
        group.finish();
    }

    /// How long `body` takes in a fresh runtime, timed from outside it:
    /// inside, madsim's clock is the simulated one.
    fn in_runtime<F: Future<Output = ()> + 'static>(body: F) -> Duration {
        let mut runtime =
            madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        runtime.set_time_limit(Duration::from_secs(u64::from(u32::MAX)));
        let started = Instant::now();
        runtime.block_on(body);
        started.elapsed()
    }

    /// `iters` steps, one after the other, in a fresh runtime.
    fn steps<F, S>(iters: u64, step: S) -> Duration
    where
        F: Future<Output = ()>,
        S: Fn() -> F + 'static,
    {
        in_runtime(async move {
            for _ in 0..iters {
                step().await;
            }
        })
    }

    /// Two simulated nodes: a server at 10.0.0.1 and a client.
    fn server_and_client() -> (madsim::runtime::NodeHandle, madsim::runtime::NodeHandle) {
        let handle = madsim::runtime::Handle::current();
        let server = handle.create_node().ip([10, 0, 0, 1].into()).build();
        let client = handle.create_node().ip([10, 0, 0, 2].into()).build();
        (server, client)
    }

    /// A frame the size of a small request, echoed back.
    const FRAME: usize = 64;

    /// `rounds` round trips of one frame between two simulated nodes over
    /// madsim's TCP (each direction one message through its network); the
    /// connection's set-up is timed too, and shared by every round.
    async fn round_trips(rounds: u64) {
        let (server, client) = server_and_client();
        server.spawn(async {
            let listener = tokio::net::TcpListener::bind("10.0.0.1:1")
                .await
                .expect("bind");
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut frame = [0u8; FRAME];
            while stream.read_exact(&mut frame).await.is_ok() {
                stream.write_all(&frame).await.expect("echo");
                stream.flush().await.expect("flush");
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        client
            .spawn(async move {
                let mut stream = tokio::net::TcpStream::connect("10.0.0.1:1")
                    .await
                    .expect("connect");
                let mut frame = [7u8; FRAME];
                for _ in 0..rounds {
                    stream.write_all(&frame).await.expect("send");
                    stream.flush().await.expect("flush");
                    stream.read_exact(&mut frame).await.expect("answer");
                }
            })
            .await
            .expect("the client runs to the end");
    }

    /// Answers every request with `Pong`: what the RPC layer costs without
    /// any handler work.
    struct Pong;

    #[async_trait::async_trait]
    impl quorumlog_core::rpc::Handler for Pong {
        async fn handle(
            &self,
            _request: quorumlog_core::protocol::Request,
        ) -> quorumlog_core::protocol::Response {
            quorumlog_core::protocol::Response::Pong { node: 1 }
        }
    }

    /// `rounds` pings through the project's RPC client and server between
    /// two simulated nodes: encoding, framing, the connection's tasks and
    /// the server's task per request, over madsim's TCP.
    async fn rpc_pings(rounds: u64) {
        use quorumlog_core::protocol::Request;
        use quorumlog_core::rpc::{serve, CancellationToken, RpcClient};
        let (server, client) = server_and_client();
        server.spawn(async {
            let listener = tokio::net::TcpListener::bind("10.0.0.1:1")
                .await
                .expect("bind");
            serve(
                listener,
                std::sync::Arc::new(Pong),
                CancellationToken::new(),
            )
            .await
            .expect("serve");
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        client
            .spawn(async move {
                let rpc = RpcClient::new("10.0.0.1:1".parse().expect("address"));
                for _ in 0..rounds {
                    rpc.call(&Request::Ping, Duration::from_secs(1))
                        .await
                        .expect("pong");
                }
            })
            .await
            .expect("the client runs to the end");
    }

    fn madsim_primitives(c: &mut Criterion) {
        let mut group = c.benchmark_group("madsim-primitives");
        group.throughput(Throughput::Elements(1));
        group.bench_function("round trip over TCP (two messages)", |b| {
            b.iter_custom(|iters| in_runtime(round_trips(iters)))
        });
        group.bench_function("ping through the RPC client and server", |b| {
            b.iter_custom(|iters| in_runtime(rpc_pings(iters)))
        });
        group.bench_function("spawn and join a task", |b| {
            b.iter_custom(|iters| {
                steps(iters, || async {
                    tokio::spawn(async {}).await.expect("the task runs");
                })
            })
        });
        group.bench_function("sleep that fires", |b| {
            b.iter_custom(|iters| steps(iters, || tokio::time::sleep(Duration::from_micros(100))))
        });
        group.bench_function("timeout around a sleep, never firing", |b| {
            b.iter_custom(|iters| {
                steps(iters, || async {
                    let sleep = tokio::time::sleep(Duration::from_micros(100));
                    let _ = tokio::time::timeout(Duration::from_secs(1), sleep).await;
                })
            })
        });
        group.finish();
    }

    criterion_group!(benches, seeds_per_second, madsim_primitives);
}

#[cfg(madsim)]
criterion::criterion_main!(bench::benches);

#[cfg(not(madsim))]
fn main() {
    eprintln!("the simulation benchmark needs --cfg madsim: run `cargo simbench`");
}

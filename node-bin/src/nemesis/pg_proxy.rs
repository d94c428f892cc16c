//! A TCP relay between one node and the PostgreSQL server, so the nemesis
//! can do to that node alone what a restart of its database server does:
//! every session is cut at once (a commit in flight has an unknown
//! outcome) and new connections are refused until the "restart" is over.
//! The server itself keeps running for the other nodes, which share it.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

#[derive(Default)]
struct State {
    down: bool,
    sessions: Vec<AbortHandle>,
}

/// One relay; dropped, it stops listening and cuts its sessions.
pub struct PgProxy {
    pub listen: SocketAddr,
    state: Arc<Mutex<State>>,
    acceptor: AbortHandle,
}

impl PgProxy {
    /// Listen on `listen` and relay each connection to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<PgProxy> {
        let listener = TcpListener::bind(listen).await?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
                if state.down {
                    // Refused: the server is "restarting".
                    drop(client);
                    continue;
                }
                let session = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                state.sessions.retain(|s| !s.is_finished());
                state.sessions.push(session.abort_handle());
            }
        })
        .abort_handle();
        Ok(PgProxy {
            listen,
            state,
            acceptor,
        })
    }

    /// Cut every session and refuse new ones until [`PgProxy::restore`].
    pub fn cut(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.down = true;
        for session in state.sessions.drain(..) {
            session.abort();
        }
    }

    pub fn restore(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).down = false;
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}

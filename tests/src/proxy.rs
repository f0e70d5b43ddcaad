//! A TCP proxy the test controls, put between a service's pool and PostgreSQL so the test can
//! make the database unreachable for that service alone. [`TcpProxy::cut`] closes every
//! proxied connection and stops listening, so new connections are refused as if the server
//! were down; [`TcpProxy::cut_with_resets`] closes them too but accepts new ones and closes
//! them at once (what a pooler or load balancer in front of a dead server does);
//! [`TcpProxy::restore`] forwards again, on the same port.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Forwarding,
    /// Not listening: connections are refused by the kernel.
    Refusing,
    /// Listening, but every connection is closed as soon as it is accepted.
    Resetting,
}

pub struct TcpProxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    resets: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

/// The first port the kernel hands out to outgoing connections: the proxy listens below it,
/// so no connection of anyone's can take its port while it is closed during a cut.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// Binds a loopback port outside the ephemeral range.
async fn bind_free_port() -> TcpListener {
    let top = ephemeral_start().max(12_000);
    let span = u64::from(top - 10_000);
    let seed = uuid::Uuid::now_v7().as_u128() as u64;
    for i in 0..500u64 {
        let port = 10_000 + ((seed.wrapping_add(i * 7919)) % span) as u16;
        if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            return listener;
        }
    }
    panic!("no free loopback port below {top} for the proxy");
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = bind_free_port().await;
        let addr = listener.local_addr().expect("the proxy's address");
        let (state, _) = watch::channel(State::Forwarding);
        let resets = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn({
            let mut changes = state.subscribe();
            let state = state.clone();
            let resets = resets.clone();
            async move {
                // Dropping this set (the proxy dropped, this task aborted) closes every
                // connection.
                let mut connections = JoinSet::new();
                let mut listener = Some(listener);
                loop {
                    let now = *changes.borrow_and_update();
                    if now == State::Refusing {
                        listener = None;
                        if changes.changed().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let l = match &listener {
                        Some(l) => l,
                        None => {
                            let l = TcpListener::bind(addr).await.unwrap_or_else(|e| {
                                panic!("the proxy cannot listen on {addr} again: {e}")
                            });
                            listener.insert(l)
                        }
                    };
                    let accepted = tokio::select! {
                        accepted = l.accept() => accepted,
                        changed = changes.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            continue;
                        }
                    };
                    let Ok((client, _)) = accepted else { continue };
                    while connections.try_join_next().is_some() {}
                    if now == State::Resetting {
                        resets.fetch_add(1, Ordering::Relaxed);
                        drop(client);
                        continue;
                    }
                    let mut cut = state.subscribe();
                    connections.spawn(async move {
                        let Ok(mut server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let mut client = client;
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.wait_for(|s| *s != State::Forwarding) => {}
                        }
                        // Both sockets close here.
                    });
                }
            }
        });
        TcpProxy {
            addr,
            state,
            resets,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every proxied connection and stops listening: new connections are refused.
    pub fn cut(&self) {
        self.state.send_replace(State::Refusing);
    }

    /// Closes every proxied connection; new ones are accepted and closed at once.
    pub fn cut_with_resets(&self) {
        self.state.send_replace(State::Resetting);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.state.send_replace(State::Forwarding);
    }

    /// Connections accepted and closed at once while cut with resets.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// `url` (`scheme://user@host:port/db?query`) with its `host:port` replaced by `addr`.
pub fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (userinfo, hostpart) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let tail = hostpart.find(['/', '?']).map_or("", |i| &hostpart[i..]);
    match userinfo {
        Some(u) => format!("{scheme}://{u}@{addr}{tail}"),
        None => format!("{scheme}://{addr}{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::via;

    #[test]
    fn via_replaces_host_and_port_only() {
        let addr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            via("postgres://postgres@127.0.0.1:5432/t1_cart", addr),
            "postgres://postgres@127.0.0.1:4000/t1_cart"
        );
        assert_eq!(
            via("postgres://u:p@db/x?sslmode=disable", addr),
            "postgres://u:p@127.0.0.1:4000/x?sslmode=disable"
        );
    }
}

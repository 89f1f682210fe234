//! DCI (Digital Convergence Initiative) messages: the envelope, its signatures and the
//! bearer tokens, from the `dtks-dci` crate; and the listener the DCI endpoints serve on.

pub use dtks_dci::*;

/// A DCI listener whose connections have Nagle's algorithm off: an answer written in
/// two parts (head, then body) would otherwise wait for the caller's delayed ACK, 40 ms.
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
    })
}

//! The `Link` seam's stream types (LINK.md).
//!
//! Temporary copy on the `streams` branch: only the three items the stream
//! services need. The lead keeps `quic`'s full `link.rs` at merge.

/// Which transport carries a link; the bot report's `transport` field
/// prints it as "quic" or "tls".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Quic,
    Tls,
}

/// The write half of one reliable, ordered stream; `close()` (AsyncWriteExt)
/// finishes it (FIN), dropping it without close resets it.
pub type LinkSend = Box<dyn smol::io::AsyncWrite + Send + Unpin>;
/// The read half; EOF after the peer finished its side.
pub type LinkRecv = Box<dyn smol::io::AsyncRead + Send + Unpin>;

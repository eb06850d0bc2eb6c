//! The `Link` seam's shared types (issue 14, `/work/wt/LINK.md`).
//!
//! Temporary copy on the `tunnel` branch: helper `quic` writes the full
//! `link.rs` (the `Link` enum, `connect`, the host's accept loop); the lead
//! keeps that version at merge. These items are identical to it.

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

/// A link that passed admission, with its control stream.
pub struct Established<L> {
    pub link: L,
    pub control_send: LinkSend,
    pub control_recv: LinkRecv,
    pub admission: crate::transport::pake::Admission,
    /// The host's certificate fingerprint (client side; None on the host).
    pub fingerprint: Option<crate::transport::cert::Fingerprint>,
}

//! Framing over async byte streams, shared by the host and the client drivers.

use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::proto::{DecodeError, HEADER_LEN, Header, PROTOCOL_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the stream between two frames.
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] DecodeError),
}

/// Reads one frame: the header, then (after checking its length against `max`,
/// before allocating) the payload into `payload`. The header's version is not
/// checked here so that the caller can answer a wrong version clearly.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: u32,
    payload: &mut Vec<u8>,
) -> Result<Header, FrameError> {
    let mut head = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut head[got..]).await? {
            0 if got == 0 => return Err(FrameError::Closed),
            0 => return Err(DecodeError::UnexpectedEnd.into()),
            n => got += n,
        }
    }
    let header = Header::decode(&head)?;
    let len = header.check_len(max)?;
    payload.clear();
    payload.resize(len, 0);
    r.read_exact(payload).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Decode(DecodeError::UnexpectedEnd),
        _ => FrameError::Io(e),
    })?;
    Ok(header)
}

/// Reads whole control frames from a byte stream (the QUIC control stream)
/// with [`crate::proto::coding::Frame::decode_from`]: bytes are read in
/// chunks into one buffer, and a frame's length is checked against the limit
/// as soon as its header is in, before waiting for its payload.
pub struct FrameReader<R> {
    stream: R,
    buf: bytes::BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(stream: R) -> FrameReader<R> {
        FrameReader { stream, buf: bytes::BytesMut::with_capacity(16 * 1024) }
    }

    /// The next frame whose payload is at most `max` bytes. The header's
    /// version is not checked (the caller answers a wrong one clearly).
    /// [`FrameError::Closed`] at a clean end between two frames.
    pub async fn next(&mut self, max: u32) -> Result<crate::proto::coding::Frame, FrameError> {
        use crate::proto::coding::Frame;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(frame) = Frame::decode_from(&mut self.buf, max)? {
                return Ok(frame);
            }
            match self.stream.read(&mut chunk).await? {
                0 if self.buf.is_empty() => return Err(FrameError::Closed),
                0 => return Err(DecodeError::UnexpectedEnd.into()),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Writes header and payload with one `write_all`, so a frame is one segment
/// on a `TCP_NODELAY` socket.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u8,
    seq: u16,
    payload: &[u8],
    scratch: &mut Vec<u8>,
) -> std::io::Result<()> {
    scratch.clear();
    Header { version: PROTOCOL_VERSION, kind, len: payload.len() as u32, seq, flags: 0 }
        .encode(scratch);
    scratch.extend_from_slice(payload);
    w.write_all(scratch).await?;
    w.flush().await
}

/// A shared socket read through a `BufReader` while other code writes to it
/// (the file channel reads buffered, writes whole frames).
#[derive(Clone)]
pub struct ArcStream(pub std::sync::Arc<smol::Async<std::net::TcpStream>>);

impl AsyncRead for ArcStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut &*self.0).poll_read(cx, buf)
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A random u64 from the operating system (session tokens, host ids).
pub fn random_u64() -> u64 {
    // getrandom only fails on exotic platforms; fall back to clock and pid.
    getrandom::u64().unwrap_or_else(|_| unix_ms().rotate_left(17) ^ u64::from(std::process::id()))
}

/// Binds the shared discovery socket: UDP/IPv4 on 0.0.0.0:`port`, nonblocking.
///
/// The wildcard address is needed to receive broadcasts. SO_REUSEADDR and
/// SO_REUSEPORT let a host and any number of discovering clients on the same
/// machine bind the port at once; the kernel delivers every broadcast to all of
/// them (unicast to such a port reaches only one, which is why probe answers go
/// to the prober's own ephemeral socket instead). SO_BROADCAST lets the socket
/// send to a broadcast address.
pub fn bind_discovery_socket(port: u16) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_reuse_address(true)?;
    // Windows has no SO_REUSEPORT; there SO_REUSEADDR alone allows sharing.
    #[cfg(all(
        unix,
        not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
    ))]
    socket.set_reuse_port(true)?;
    socket.set_broadcast(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(
        &std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::UNSPECIFIED,
            port,
        ))
        .into(),
    )?;
    Ok(socket.into())
}

/// Binds a UDP media socket (the video relay and a video client) with 4 MiB
/// send and receive buffers (best effort): a frame's fragments arrive in a
/// burst, and a small receive buffer would drop the tail of it.
pub fn bind_media_socket(addr: std::net::SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_frames_and_rejects_hostile_streams() {
        smol::block_on(async {
            let mut buf = Vec::new();
            // Two frames back to back, then a clean end.
            let mut s = Vec::new();
            write_frame(&mut s, 0x02, 1, &[], &mut Vec::new()).await.unwrap();
            write_frame(&mut s, 0x10, 2, b"abc", &mut Vec::new()).await.unwrap();
            let mut r = &s[..];
            assert_eq!(read_frame(&mut r, 100, &mut buf).await.unwrap().kind, 0x02);
            let h = read_frame(&mut r, 100, &mut buf).await.unwrap();
            assert_eq!((h.kind, h.seq, &buf[..]), (0x10, 2, &b"abc"[..]));
            assert!(matches!(read_frame(&mut r, 100, &mut buf).await, Err(FrameError::Closed)));
            // Half a header, then the end.
            let mut r = &[1u8, 2, 0][..];
            assert!(matches!(
                read_frame(&mut r, 100, &mut buf).await,
                Err(FrameError::Decode(DecodeError::UnexpectedEnd))
            ));
            // A 4 GiB length prefix is refused without allocating it.
            let mut r = &[1u8, 0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0][..];
            assert!(matches!(
                read_frame(&mut r, 65536, &mut buf).await,
                Err(FrameError::Decode(DecodeError::TooLong { .. }))
            ));
            assert!(buf.capacity() < 65536);
            // A payload shorter than announced.
            let mut r = &[1u8, 0x10, 0, 0, 0, 5, 0, 0, 0, 0, 1, 2][..];
            assert!(matches!(
                read_frame(&mut r, 100, &mut buf).await,
                Err(FrameError::Decode(DecodeError::UnexpectedEnd))
            ));
        });
    }
}

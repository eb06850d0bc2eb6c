//! Small socket and clock helpers shared by the host and the client drivers
//! (stream framing is [`crate::transport::framed`]).

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

/// A UDP port for one test's socket, free when handed out and safe from
/// the usual race: binding port 0 and closing the socket lets any socket
/// bound to port 0 meanwhile (a discoverer's probe sockets, another test's
/// host) take the same number. These ports come from below Linux's
/// ephemeral range (32768-60999 by default), so no port-0 bind ever gets
/// them, and a process-wide counter hands each out once (tests run in
/// parallel threads of one process).
#[cfg(test)]
pub(crate) fn free_udp_port() -> u16 {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Processes running at once (other test binaries) start apart.
    let base = std::process::id() % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (base + n) % SPAN) as u16;
        // Free on every address, as a host binds it.
        if UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP port in {FIRST}..{}", FIRST + SPAN);
}

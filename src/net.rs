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

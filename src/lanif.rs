//! The machine's LAN interfaces as discovery sees them, and the per-interface
//! UDP sockets discovery sends from.
//!
//! Why per interface: a broadcast to 255.255.255.255 follows the default
//! route, so on a LAN with no gateway it fails ("Network is unreachable"), and
//! with a VPN or a second network card holding the default route it leaves by
//! the wrong interface. A directed broadcast (10.77.0.255 for 10.77.0.0/24)
//! always has a route while the interface is up, and a socket bound to the
//! interface's own address sends from that interface and is answered there.
//!
//! [`from_if_addrs`] and [`directed_broadcast`] are pure; [`Fanout`] owns
//! sockets and reader tasks (one per socket, each forwarding datagrams into
//! one channel), and is re-synchronised with the system by
//! [`Fanout::refresh`], so interfaces that appear later are used too.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;

use smol::channel::{Receiver, Sender};
use smol::{Async, Task};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info};

/// One up, broadcast-capable IPv4 interface address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LanInterface {
    /// The OS's name for it (`eth0`, `wlp3s0`, `Ethernet 2`).
    pub name: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// Its directed broadcast address (`10.77.0.255` for `10.77.0.1/24`).
    pub broadcast: Ipv4Addr,
}

impl LanInterface {
    /// Whether `ip` is on this interface's subnet (so a reply to it leaves here).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = prefix_mask(self.prefix_len);
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

fn prefix_mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n => u32::MAX << (32 - u32::from(n.min(32))),
    }
}

/// `ip` with every host bit set: the subnet's directed broadcast address.
pub fn directed_broadcast(ip: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) | !prefix_mask(prefix_len))
}

/// The interfaces discovery broadcasts on, from an `if_addrs` listing: IPv4,
/// not loopback, operationally up (on Linux `IFF_RUNNING`: up with a
/// carrier), broadcast-capable (so point-to-point
/// VPN tunnels are left out), and with a subnet that has a broadcast address
/// (not /31 or /32). An interface flagged broadcast-capable whose broadcast
/// address was never set gets the one computed from its netmask. Sorted by
/// name then address, without duplicates.
pub fn from_if_addrs(list: &[if_addrs::Interface]) -> Vec<LanInterface> {
    let mut out: Vec<LanInterface> = list
        .iter()
        .filter(|i| i.is_oper_up() && !i.is_p2p)
        .filter_map(|i| match &i.addr {
            if_addrs::IfAddr::V4(v4) if !v4.ip.is_loopback() && v4.prefixlen <= 30 => {
                let computed = directed_broadcast(v4.ip, v4.prefixlen);
                let broadcast = match v4.broadcast? {
                    b if b.is_unspecified() => computed,
                    b => b,
                };
                Some(LanInterface {
                    name: i.name.clone(),
                    addr: v4.ip,
                    prefix_len: v4.prefixlen,
                    broadcast,
                })
            }
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// This machine's broadcast-capable LAN interfaces now (empty if the OS will
/// not say).
pub fn lan_interfaces() -> Vec<LanInterface> {
    match if_addrs::get_if_addrs() {
        Ok(list) => from_if_addrs(&list),
        Err(e) => {
            debug!(error = %e, "cannot list network interfaces");
            Vec::new()
        }
    }
}

/// Every address others may join this machine at, with its interface name:
/// non-loopback, non-link-local IPv4 addresses of interfaces that are up,
/// LAN (broadcast-capable) ones first. Point-to-point ones (VPNs) are listed
/// last; they work only for people on the same VPN.
pub fn join_addresses() -> Vec<(String, Ipv4Addr)> {
    let Ok(list) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    let lan: Vec<(String, Ipv4Addr)> =
        from_if_addrs(&list).into_iter().map(|i| (i.name, i.addr)).collect();
    let mut others: Vec<(String, Ipv4Addr)> = list
        .iter()
        .filter(|i| i.is_oper_up())
        .filter_map(|i| match &i.addr {
            if_addrs::IfAddr::V4(v4)
                if !v4.ip.is_loopback()
                    && !v4.ip.is_link_local()
                    && !lan.iter().any(|(_, a)| *a == v4.ip) =>
            {
                Some((i.name.clone(), v4.ip))
            }
            _ => None,
        })
        .collect();
    others.sort();
    others.dedup();
    lan.into_iter().chain(others).collect()
}

/// `eth0 10.77.0.1, wlan0 192.168.1.20`; empty if none.
pub fn describe_addresses(list: &[(String, Ipv4Addr)]) -> String {
    list.iter().map(|(name, ip)| format!("{name} {ip}")).collect::<Vec<_>>().join(", ")
}

/// Where discovery datagrams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every LAN interface's directed broadcast, plus 255.255.255.255 where a
    /// route allows it (the default for users).
    EveryInterface,
    /// Only this address (`--discovery-addr`; tests use 127.255.255.255).
    Only(IpAddr),
}

impl Reach {
    /// 255.255.255.255 (the CLI default) means every interface; anything else
    /// is an explicit target that overrides interface discovery.
    pub fn from_target(target: IpAddr) -> Reach {
        if target == IpAddr::V4(Ipv4Addr::BROADCAST) {
            Reach::EveryInterface
        } else {
            Reach::Only(target)
        }
    }
}

/// Which socket a datagram arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The shared discovery-port socket (broadcasts from anyone).
    Shared,
    /// The unbound-address socket that sends to 255.255.255.255 or `Only`.
    Wildcard,
    /// The socket bound to this interface's address.
    Interface(Ipv4Addr),
}

/// One received datagram.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub bytes: Vec<u8>,
    pub src: SocketAddr,
    pub via: Via,
}

/// Datagrams waiting in the channel; beyond this, new ones are dropped
/// (discovery traffic is tiny; only a flood fills it).
const QUEUE: usize = 256;
/// Bigger than any valid discovery datagram, so oversized ones show as such.
const RECV_BUF: usize = 2048;

/// Per-interface discovery sockets and their reader tasks.
pub struct Fanout {
    reach: Reach,
    /// Bound to 0.0.0.0:0; sends to 255.255.255.255 and to `Only` targets.
    wildcard: Arc<Async<UdpSocket>>,
    ifaces: Vec<(LanInterface, Arc<Async<UdpSocket>>, Task<()>)>,
    tx: Sender<Datagram>,
    rx: Receiver<Datagram>,
    _wildcard_reader: Task<()>,
    _shared_reader: Option<Task<()>>,
    /// The last send error per destination was logged: say it once per outage.
    failing: std::collections::HashSet<SocketAddr>,
}

impl Fanout {
    /// Opens the wildcard socket and, for [`Reach::EveryInterface`], one
    /// socket per LAN interface. `shared`, if given, is also read (the
    /// reuse-port socket on the discovery port).
    pub fn open(reach: Reach, shared: Option<Async<UdpSocket>>) -> io::Result<Fanout> {
        let (tx, rx) = smol::channel::bounded(QUEUE);
        let any = match reach {
            Reach::Only(IpAddr::V6(_)) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let wildcard = Arc::new(Async::new(bind_sender(any)?)?);
        let wildcard_reader = spawn_reader(wildcard.clone(), Via::Wildcard, tx.clone());
        let shared_reader = shared.map(|s| spawn_reader(Arc::new(s), Via::Shared, tx.clone()));
        let mut fanout = Fanout {
            reach,
            wildcard,
            ifaces: Vec::new(),
            tx,
            rx,
            _wildcard_reader: wildcard_reader,
            _shared_reader: shared_reader,
            failing: Default::default(),
        };
        fanout.refresh();
        Ok(fanout)
    }

    /// Re-reads the interface list: opens sockets for new interfaces, drops
    /// those of vanished ones. Returns the interfaces that are new.
    pub fn refresh(&mut self) -> Vec<LanInterface> {
        if self.reach != Reach::EveryInterface {
            return Vec::new();
        }
        self.sync(lan_interfaces())
    }

    fn sync(&mut self, now: Vec<LanInterface>) -> Vec<LanInterface> {
        self.ifaces.retain(|(i, _, _)| {
            let keep = now.contains(i);
            if !keep {
                info!(interface = %i.name, addr = %i.addr, "discovery: interface gone");
            }
            keep
        });
        let mut added = Vec::new();
        for iface in now {
            if self.ifaces.iter().any(|(i, _, _)| *i == iface) {
                continue;
            }
            match bind_sender(IpAddr::V4(iface.addr)).and_then(Async::new) {
                Ok(sock) => {
                    let sock = Arc::new(sock);
                    let reader =
                        spawn_reader(sock.clone(), Via::Interface(iface.addr), self.tx.clone());
                    info!(interface = %iface.name, addr = %iface.addr,
                        broadcast = %iface.broadcast, "discovery: using interface");
                    added.push(iface.clone());
                    self.ifaces.push((iface, sock, reader));
                }
                // The address may vanish between listing and binding.
                Err(e) => debug!(interface = %iface.name, error = %e, "cannot bind"),
            }
        }
        added
    }

    /// The interfaces in use now.
    pub fn interfaces(&self) -> Vec<LanInterface> {
        self.ifaces.iter().map(|(i, _, _)| i.clone()).collect()
    }

    /// Received datagrams, from every socket.
    pub fn incoming(&self) -> &Receiver<Datagram> {
        &self.rx
    }

    /// Broadcasts `frame` to `port` everywhere [`Reach`] says. Returns how
    /// many sends succeeded; errors are logged once per destination and outage.
    pub async fn broadcast(&mut self, frame: &[u8], port: u16) -> usize {
        let mut sent = 0;
        let targets: Vec<(Arc<Async<UdpSocket>>, SocketAddr)> = match self.reach {
            Reach::Only(ip) => vec![(self.wildcard.clone(), SocketAddr::new(ip, port))],
            Reach::EveryInterface => self
                .ifaces
                .iter()
                .map(|(i, s, _)| (s.clone(), SocketAddr::from((i.broadcast, port))))
                .chain(std::iter::once((
                    self.wildcard.clone(),
                    SocketAddr::from((Ipv4Addr::BROADCAST, port)),
                )))
                .collect(),
        };
        for (sock, dest) in targets {
            if self.send_logged(&sock, frame, dest).await {
                sent += 1;
            }
        }
        sent
    }

    /// Sends `frame` to one address, from the socket of the interface whose
    /// subnet holds it (so the answer leaves where the question came in), or
    /// from the wildcard socket.
    pub async fn send_to(&mut self, frame: &[u8], dest: SocketAddr) -> bool {
        let sock = match dest.ip() {
            IpAddr::V4(v4) => self
                .ifaces
                .iter()
                .find(|(i, _, _)| i.contains(v4))
                .map(|(_, s, _)| s.clone())
                .unwrap_or_else(|| self.wildcard.clone()),
            IpAddr::V6(_) => self.wildcard.clone(),
        };
        self.send_logged(&sock, frame, dest).await
    }

    async fn send_logged(
        &mut self,
        sock: &Async<UdpSocket>,
        frame: &[u8],
        dest: SocketAddr,
    ) -> bool {
        match sock.send_to(frame, dest).await {
            Ok(_) => {
                if self.failing.remove(&dest) {
                    info!(%dest, "discovery datagrams are going out again");
                }
                true
            }
            Err(e) => {
                // 255.255.255.255 without a default route fails for as long as
                // there is none; that is expected, the directed broadcasts
                // cover the LAN.
                if self.failing.insert(dest) {
                    debug!(%dest, error = %e, "cannot send discovery datagram");
                }
                false
            }
        }
    }
}

/// A UDP socket bound to `addr`:0 that may broadcast (IPv4), nonblocking.
fn bind_sender(addr: IpAddr) -> io::Result<UdpSocket> {
    let socket = match addr {
        IpAddr::V4(v4) => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_broadcast(true)?;
            s.bind(&SocketAddr::V4(SocketAddrV4::new(v4, 0)).into())?;
            s
        }
        IpAddr::V6(v6) => {
            let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::new(IpAddr::V6(v6), 0).into())?;
            s
        }
    };
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn spawn_reader(sock: Arc<Async<UdpSocket>>, via: Via, tx: Sender<Datagram>) -> Task<()> {
    smol::spawn(async move {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, src)) => {
                    let d = Datagram { bytes: buf[..n].to_vec(), src, via: via.clone() };
                    // Full: drop it (a flood); closed: nobody listens.
                    if let Err(smol::channel::TrySendError::Closed(_)) = tx.try_send(d) {
                        return;
                    }
                }
                // E.g. an earlier send's ICMP "port unreachable"; pause so a
                // persistently failing socket cannot spin.
                Err(_) => {
                    smol::Timer::after(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use if_addrs::{IfAddr, IfOperStatus, Ifv4Addr, Interface};

    fn iface(name: &str, ip: [u8; 4], prefix: u8, brd: Option<[u8; 4]>, p2p: bool) -> Interface {
        let ip = Ipv4Addr::from(ip);
        Interface {
            name: name.into(),
            addr: IfAddr::V4(Ifv4Addr {
                ip,
                netmask: Ipv4Addr::from(prefix_mask(prefix)),
                prefixlen: prefix,
                broadcast: brd.map(Ipv4Addr::from),
            }),
            index: Some(1),
            #[cfg(windows)]
            adapter_name: String::new(),
            oper_status: IfOperStatus::Up,
            is_p2p: p2p,
        }
    }

    #[test]
    fn directed_broadcast_of_common_subnets() {
        let cases = [
            ([10, 77, 0, 1], 24, [10, 77, 0, 255]),
            ([192, 168, 1, 20], 16, [192, 168, 255, 255]),
            ([172, 16, 5, 9], 20, [172, 16, 15, 255]),
            ([10, 0, 0, 1], 8, [10, 255, 255, 255]),
            ([10, 0, 0, 1], 0, [255, 255, 255, 255]),
        ];
        for (ip, prefix, want) in cases {
            assert_eq!(
                directed_broadcast(ip.into(), prefix),
                Ipv4Addr::from(want),
                "{ip:?}/{prefix}"
            );
        }
    }

    #[test]
    fn picks_broadcast_capable_lan_interfaces() {
        let mut down = iface("eth9", [10, 9, 0, 1], 24, Some([10, 9, 0, 255]), false);
        down.oper_status = IfOperStatus::Down;
        // What Linux reports for an interface that is not running (no carrier).
        let mut no_carrier = iface("eth8", [10, 8, 0, 1], 24, Some([10, 8, 0, 255]), false);
        no_carrier.oper_status = IfOperStatus::Unknown;
        let list = vec![
            iface("lo", [127, 0, 0, 1], 8, None, false),
            iface("wlan0", [192, 168, 1, 20], 24, Some([192, 168, 1, 255]), false),
            iface("eth0", [10, 77, 0, 1], 24, Some([10, 77, 0, 255]), false),
            // Broadcast-capable, but its broadcast address was never set.
            iface("eth1", [10, 78, 0, 1], 24, Some([0, 0, 0, 0]), false),
            // A VPN tunnel: point-to-point, no broadcast.
            iface("tun0", [10, 8, 0, 2], 24, None, true),
            // A /32 has no broadcast address worth sending to.
            iface("eth2", [10, 1, 1, 1], 32, Some([10, 1, 1, 1]), false),
            down,
            no_carrier,
        ];
        let got: Vec<(String, Ipv4Addr)> =
            from_if_addrs(&list).into_iter().map(|i| (i.name, i.broadcast)).collect();
        assert_eq!(
            got,
            [
                ("eth0".to_string(), Ipv4Addr::new(10, 77, 0, 255)),
                ("eth1".to_string(), Ipv4Addr::new(10, 78, 0, 255)),
                ("wlan0".to_string(), Ipv4Addr::new(192, 168, 1, 255)),
            ]
        );
    }

    #[test]
    fn subnet_membership() {
        let i = LanInterface {
            name: "eth0".into(),
            addr: Ipv4Addr::new(10, 77, 0, 1),
            prefix_len: 24,
            broadcast: Ipv4Addr::new(10, 77, 0, 255),
        };
        assert!(i.contains(Ipv4Addr::new(10, 77, 0, 200)));
        assert!(!i.contains(Ipv4Addr::new(10, 78, 0, 2)));
    }

    #[test]
    fn reach_from_target() {
        assert_eq!(Reach::from_target(IpAddr::V4(Ipv4Addr::BROADCAST)), Reach::EveryInterface);
        let lo = IpAddr::V4(Ipv4Addr::new(127, 255, 255, 255));
        assert_eq!(Reach::from_target(lo), Reach::Only(lo));
    }
}

//! A userspace UDP impairment shim (the kernel here has no netem): a proxy on
//! 127.0.0.1 that forwards datagrams between clients and one upstream
//! address, dropping, delaying (jitter, hence reordering) and duplicating
//! them on the way, in both directions.
//!
//! Each client source address gets its own upstream socket, so the host sees
//! one distinct peer per client, exactly as without the shim.

use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// Probability that a datagram is dropped (0.0–1.0).
    pub loss: f64,
    /// Fixed delay added to every datagram.
    pub delay: Duration,
    /// Extra delay drawn uniformly from 0..=jitter (so datagrams reorder).
    pub jitter: Duration,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Seed for the shim's random choices: runs are repeatable.
    pub seed: u64,
}

impl Impairment {
    pub fn none() -> Impairment {
        Impairment {
            loss: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            duplicate: 0.0,
            seed: 1,
        }
    }
}

#[derive(Debug, Default)]
pub struct ShimStats {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
}

struct Pending {
    at: Instant,
    order: u64,
    from: Arc<UdpSocket>,
    to: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.order).cmp(&(self.at, self.order))
    }
}

struct Shared {
    imp: Impairment,
    rng: Mutex<u64>,
    queue: Mutex<BinaryHeap<Pending>>,
    order: AtomicU64,
    stats: ShimStats,
    stop: AtomicBool,
    /// Every datagram's bytes, both ways, when capturing ([`Shim::capture`]).
    captured: Option<Mutex<Vec<u8>>>,
}

impl Shared {
    fn random(&self) -> f64 {
        let mut s = self.rng.lock().unwrap();
        // xorshift64*: plenty for test impairment.
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn schedule(&self, from: &Arc<UdpSocket>, to: SocketAddr, data: &[u8]) {
        if let Some(c) = &self.captured {
            c.lock().unwrap().extend_from_slice(data);
        }
        if self.random() < self.imp.loss {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let copies = if self.random() < self.imp.duplicate {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = self.imp.jitter.mul_f64(self.random());
            let at = Instant::now() + self.imp.delay + jitter;
            let order = self.order.fetch_add(1, Ordering::Relaxed);
            let p = Pending { at, order, from: from.clone(), to, data: data.to_vec() };
            self.queue.lock().unwrap().push(p);
        }
    }
}

pub struct Shim {
    /// Clients send here instead of to the upstream address.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Shim {
    pub fn start(upstream: SocketAddr, imp: Impairment) -> Shim {
        Shim::start_with(upstream, imp, false)
    }

    /// A shim without impairment that keeps every byte it carries (what a
    /// packet capture on the path would see), for [`Shim::captured`].
    pub fn capture(upstream: SocketAddr) -> Shim {
        Shim::start_with(upstream, Impairment::none(), true)
    }

    /// Everything carried so far, both directions, datagrams concatenated.
    pub fn captured(&self) -> Vec<u8> {
        self.shared.captured.as_ref().map(|c| c.lock().unwrap().clone()).unwrap_or_default()
    }

    fn start_with(upstream: SocketAddr, imp: Impairment, capture: bool) -> Shim {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("shim binds loopback"));
        front.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let addr = front.local_addr().unwrap();
        let shared = Arc::new(Shared {
            imp,
            rng: Mutex::new(imp.seed.max(1)),
            queue: Mutex::new(BinaryHeap::new()),
            order: AtomicU64::new(0),
            stats: ShimStats::default(),
            stop: AtomicBool::new(false),
            captured: capture.then(|| Mutex::new(Vec::new())),
        });
        let mut threads = Vec::new();

        // Delivery: sends each datagram when its time comes.
        let s = shared.clone();
        threads.push(std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                let due = {
                    let mut q = s.queue.lock().unwrap();
                    match q.peek() {
                        Some(p) if p.at <= Instant::now() => q.pop(),
                        _ => None,
                    }
                };
                match due {
                    Some(p) => {
                        let _ = p.from.send_to(&p.data, p.to);
                        s.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                    None => std::thread::sleep(Duration::from_micros(200)),
                }
            }
        }));

        // Client → upstream, creating one upstream socket (and a thread that
        // carries its replies back) per client.
        let s = shared.clone();
        threads.push(std::thread::spawn(move || {
            let mut peers: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut back: Vec<JoinHandle<()>> = Vec::new();
            let mut buf = vec![0u8; 65536];
            while !s.stop.load(Ordering::Relaxed) {
                let Ok((n, client)) = front.recv_from(&mut buf) else { continue };
                let up = peers.entry(client).or_insert_with(|| {
                    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
                    sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                    let (sock2, front2, s2) = (sock.clone(), front.clone(), s.clone());
                    back.push(std::thread::spawn(move || {
                        let mut buf = vec![0u8; 65536];
                        while !s2.stop.load(Ordering::Relaxed) {
                            if let Ok((n, _)) = sock2.recv_from(&mut buf) {
                                s2.schedule(&front2, client, &buf[..n]);
                            }
                        }
                    }));
                    sock
                });
                let up = up.clone();
                s.schedule(&up, upstream, &buf[..n]);
            }
            for t in back {
                let _ = t.join();
            }
        }));
        Shim { addr, shared, threads }
    }

    pub fn stats(&self) -> &ShimStats {
        &self.shared.stats
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

//! The audio service's driver: one UDP socket and one named thread that
//! receives client frames between ticks and runs the mixer every frame
//! period. All mixing logic is in the sans-IO [`Mixer`].

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::core::SessionId;
use super::directory::Directory;
use super::mixer::{Mixer, MixerConfig, MixerStats, Sender};
use crate::media::audio::frame_us;
use crate::proto::{AUDIO_DATAGRAM_MAX, AudioUp};

/// Counters for an operator or a test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioStats {
    pub mixer: MixerStats,
    /// Datagrams whose session/token pair the directory does not know.
    pub bad_token: u64,
    /// Datagrams that are not audio packets at all.
    pub malformed: u64,
    /// Ticks that started more than one frame late (a starved host).
    pub late_ticks: u64,
}

/// Binds the audio socket (port 0 picks a free one).
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    // Room for a burst from many talkers between two ticks.
    let s = socket2::SockRef::from(&socket);
    let _ = s.set_recv_buffer_size(1 << 20);
    let _ = s.set_send_buffer_size(1 << 20);
    Ok(socket)
}

/// The running mixer. Dropping it stops the thread.
pub struct AudioService {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<AudioStats>>,
    thread: Option<JoinHandle<()>>,
}

impl AudioService {
    pub fn start(
        socket: UdpSocket,
        directory: Directory,
        cfg: MixerConfig,
    ) -> std::io::Result<AudioService> {
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(AudioStats::default()));
        let thread = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name("sapora-audio-mixer".into())
                .spawn(move || run(socket, directory, Mixer::new(cfg), &stop, &stats))?
        };
        Ok(AudioService { addr, stop, stats, thread: Some(thread) })
    }

    /// At most a second old.
    pub fn stats(&self) -> AudioStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AudioService {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    socket: UdpSocket,
    directory: Directory,
    mut mixer: Mixer,
    stop: &AtomicBool,
    shared: &Mutex<AudioStats>,
) {
    let start = Instant::now();
    let us = |t: Instant| t.duration_since(start).as_micros() as u64;
    let period = Duration::from_micros(frame_us(mixer.config().frame_samples));
    let mut next_tick = start + period;
    let mut buf = vec![0u8; AUDIO_DATAGRAM_MAX + 1];
    let mut stats = AudioStats::default();
    let mut ticks = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next_tick {
            mixer.tick(us(now), |to, data| {
                // A full send buffer or an unreachable listener loses one frame
                // for that listener only.
                let _ = socket.send_to(data, to);
            });
            next_tick += period;
            if now > next_tick {
                // Fell behind (machine stalled): skip rather than burst.
                stats.late_ticks += 1;
                next_tick = now + period;
            }
            ticks += 1;
            if ticks % 25 == 0 {
                mixer.retain(|s, room| directory.get(SessionId(s)).is_some_and(|e| e.room == room));
                stats.mixer = mixer.stats();
                *shared.lock().unwrap_or_else(|e| e.into_inner()) = stats;
            }
            continue;
        }
        let wait = (next_tick - now).max(Duration::from_micros(500));
        let _ = socket.set_read_timeout(Some(wait));
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                // E.g. an ICMP "port unreachable" from a listener that went
                // away, reported on some systems: keep serving the rest.
                tracing::debug!("audio socket: {e}");
                continue;
            }
        };
        let pkt = match AudioUp::decode(&buf[..n]) {
            Ok(p) => p,
            Err(_) => {
                stats.malformed += 1;
                continue;
            }
        };
        let Some(entry) = directory.authenticate(pkt.session, pkt.token) else {
            stats.bad_token += 1;
            continue;
        };
        let who = Sender { session: pkt.session, name: &entry.name, room: &entry.room };
        mixer.receive(us(Instant::now()), who, from, &pkt);
    }
    stats.mixer = mixer.stats();
    *shared.lock().unwrap_or_else(|e| e.into_inner()) = stats;
}

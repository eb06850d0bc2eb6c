//! The audio service's driver: one UDP socket, a thread that receives
//! client frames and a thread that runs the mixer every frame period. All
//! mixing logic is in the sans-IO [`Mixer`].

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::core::SessionId;
use super::directory::Directory;
use super::mixer::{Mixer, MixerConfig, MixerStats, Sender};
use crate::media::audio::frame_us;
use crate::proto::{AUDIO_DATAGRAM_MAX, AudioUp, FeedbackUp, is_audio_feedback};

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

/// The running mixer. Dropping it stops its threads.
pub struct AudioService {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<State>>,
    threads: Vec<JoinHandle<()>>,
}

/// What both threads share: the mixer and the counters.
struct State {
    mixer: Mixer,
    stats: AudioStats,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl AudioService {
    /// Two named threads: `sapora-audio-rx` feeds arriving packets to the
    /// mixer; `sapora-audio-mixer` ticks on a precise sleep (a socket
    /// timeout would round to the kernel's tick, several ms), so the mix
    /// leaves at a steady phase that clients can align to.
    pub fn start(
        socket: UdpSocket,
        directory: Directory,
        cfg: MixerConfig,
    ) -> std::io::Result<AudioService> {
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let state =
            Arc::new(Mutex::new(State { mixer: Mixer::new(cfg), stats: AudioStats::default() }));
        let start = Instant::now();
        let rx_socket = socket.try_clone()?;
        rx_socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut threads = Vec::new();
        {
            let (stop, state, directory) = (stop.clone(), state.clone(), directory.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("sapora-audio-rx".into())
                    .spawn(move || receive(rx_socket, &directory, &state, &stop, start))?,
            );
        }
        {
            let (stopping, state) = (stop.clone(), state.clone());
            let spawned = std::thread::Builder::new()
                .name("sapora-audio-mixer".into())
                .spawn(move || tick(socket, &directory, &state, &stopping, start));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(AudioService { addr, stop, state, threads })
    }

    /// Where recorded rooms' shared mixes go (see `record.rs`).
    pub fn set_tap(&self, tap: Option<super::mixer::MixTap>) {
        lock(&self.state).mixer.set_tap(tap);
    }

    /// Starts or stops recording a room's mix.
    pub fn set_recorded(&self, room: &str, on: bool) {
        lock(&self.state).mixer.set_recorded(room, on);
    }

    /// Leaves a session's audio out of every mix (the host holds it muted)
    /// or lets it back, as a function the control plane can keep.
    pub fn silence_switch(&self) -> impl Fn(u32, bool) + Send + 'static {
        let state = self.state.clone();
        move |session, on| lock(&state).mixer.set_silenced(session, on)
    }

    /// [`AudioService::set_recorded`] as a function the control plane can keep.
    pub fn recording_switch(&self) -> impl Fn(&str, bool) + Send + 'static {
        let state = self.state.clone();
        move |room, on| lock(&state).mixer.set_recorded(room, on)
    }

    pub fn stats(&self) -> AudioStats {
        let st = lock(&self.state);
        AudioStats { mixer: st.mixer.stats(), ..st.stats }
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for AudioService {
    fn drop(&mut self) {
        self.stop();
    }
}

fn micros(start: Instant, t: Instant) -> u64 {
    t.duration_since(start).as_micros() as u64
}

fn tick(
    socket: UdpSocket,
    directory: &Directory,
    state: &Mutex<State>,
    stop: &AtomicBool,
    start: Instant,
) {
    let period = Duration::from_micros(frame_us(lock(state).mixer.config().frame_samples));
    let mut next_tick = start + period;
    let mut ticks = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next_tick {
            std::thread::sleep(next_tick - now);
        }
        let now = Instant::now();
        let mut st = lock(state);
        st.mixer.tick(micros(start, now), |to, data| {
            // A full send buffer or an unreachable listener loses one frame
            // for that listener only.
            let _ = socket.send_to(data, to);
        });
        next_tick += period;
        if now > next_tick {
            // Fell behind (machine stalled): skip rather than burst.
            st.stats.late_ticks += 1;
            next_tick = now + period;
        }
        ticks += 1;
        if ticks.is_multiple_of(25) {
            st.mixer.retain(|s, room| directory.get(SessionId(s)).is_some_and(|e| e.room == room));
        }
    }
}

fn receive(
    socket: UdpSocket,
    directory: &Directory,
    state: &Mutex<State>,
    stop: &AtomicBool,
    start: Instant,
) {
    let mut buf = vec![0u8; AUDIO_DATAGRAM_MAX + 1];
    while !stop.load(Ordering::Relaxed) {
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
        let now = micros(start, Instant::now());
        if is_audio_feedback(&buf[..n]) {
            let Ok(report) = FeedbackUp::decode(&buf[..n]) else {
                lock(state).stats.malformed += 1;
                continue;
            };
            let Some(entry) = directory.authenticate(report.session, report.token) else {
                lock(state).stats.bad_token += 1;
                continue;
            };
            let who = Sender { session: report.session, name: &entry.name, room: &entry.room };
            lock(state).mixer.feedback(now, who, from, &report);
            continue;
        }
        let Ok(pkt) = AudioUp::decode(&buf[..n]) else {
            lock(state).stats.malformed += 1;
            continue;
        };
        let Some(entry) = directory.authenticate(pkt.session, pkt.token) else {
            lock(state).stats.bad_token += 1;
            continue;
        };
        let who = Sender { session: pkt.session, name: &entry.name, room: &entry.room };
        lock(state).mixer.receive(now, who, from, &pkt);
    }
}

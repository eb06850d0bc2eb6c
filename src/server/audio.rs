//! The audio service's driver: a thread that takes the members' audio
//! datagrams (arriving on their links, [`super::media`]) and a thread that
//! runs the mixer every frame period and sends each listener its mix on its
//! link. All mixing logic is in the sans-IO [`Mixer`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::core::SessionId;
use super::directory::Directory;
use super::media::{Arrival, Peers};
use super::mixer::{Mixer, MixerConfig, MixerStats, Sender};
use crate::media::audio::frame_us;
use crate::proto::{AudioUp, FeedbackUp, is_audio_feedback};

/// Counters for an operator or a test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioStats {
    pub mixer: MixerStats,
    /// Datagrams from a link whose session has left the meeting.
    pub bad_token: u64,
    /// Datagrams that are not audio packets at all.
    pub malformed: u64,
    /// Ticks that started more than one frame late (a starved host).
    pub late_ticks: u64,
    /// Ticks that waited (up to `TICK_GRACE`) for a talker's late packet.
    pub graced_ticks: u64,
    /// Mix datagrams that could not be sent (listener's link gone or closed).
    pub unsent: u64,
}

/// The running mixer. Dropping it stops its threads.
pub struct AudioService {
    peers: Peers,
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
    /// Two named threads: `sapora-audio-rx` feeds the datagrams in
    /// `arrivals` (each with the session whose link it came on) to the
    /// mixer; `sapora-audio-mixer` ticks on a precise sleep (a timeout would
    /// round to the kernel's tick, several ms), so the mix leaves at a
    /// steady phase that clients can align to, and sends with
    /// `Link::send_datagram`, which never blocks.
    pub fn start(
        arrivals: Receiver<Arrival>,
        peers: Peers,
        directory: Directory,
        cfg: MixerConfig,
    ) -> std::io::Result<AudioService> {
        let stop = Arc::new(AtomicBool::new(false));
        let state =
            Arc::new(Mutex::new(State { mixer: Mixer::new(cfg), stats: AudioStats::default() }));
        let start = Instant::now();
        let mut threads = Vec::new();
        {
            let (stop, state, directory) = (stop.clone(), state.clone(), directory.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("sapora-audio-rx".into())
                    .spawn(move || receive(arrivals, &directory, &state, &stop, start))?,
            );
        }
        {
            let (stopping, state, out) = (stop.clone(), state.clone(), peers.clone());
            let spawned = std::thread::Builder::new()
                .name("sapora-audio-mixer".into())
                .spawn(move || tick(&out, &directory, &state, &stopping, start));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(AudioService { peers, stop, state, threads })
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
    pub fn silence_switch(&self) -> impl Fn(SessionId, bool) + Send + 'static {
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
        AudioStats { mixer: st.mixer.stats(), unsent: self.peers.unsent(), ..st.stats }
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

/// How long past its time a tick may wait for a talker's late packet
/// ([`Mixer::talker_late`]). The mix then leaves late by as much, which a
/// client absorbs if it stays under the client's own wait for a late mix
/// packet (5 ms, `client::audio`); the next tick keeps its time.
const TICK_GRACE: Duration = Duration::from_millis(4);
const TICK_RETRY: Duration = Duration::from_micros(250);

fn micros(start: Instant, t: Instant) -> u64 {
    t.duration_since(start).as_micros() as u64
}

fn tick(
    peers: &Peers,
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
        // A talker's packet held up a moment (a busy machine): wait for it
        // rather than conceal it and play everything after it a frame late.
        if st.mixer.talker_late() {
            let grace_until = next_tick + TICK_GRACE;
            while st.mixer.talker_late() && Instant::now() < grace_until {
                drop(st);
                std::thread::sleep(TICK_RETRY);
                st = lock(state);
            }
            st.stats.graced_ticks += 1;
            tracing::debug!(
                target: "sapora::jitter",
                "host tick waited {} us for a late talker packet ({})",
                now.elapsed().as_micros(),
                if st.mixer.talker_late() { "still late" } else { "came" },
            );
        }
        let now = Instant::now();
        st.mixer.tick(micros(start, now), |to, data| {
            // A closed link loses the frame for that listener only; a full
            // queue drops its oldest datagram (newest wins).
            peers.send(to, Bytes::copy_from_slice(data));
        });
        next_tick += period;
        if now > next_tick {
            // Fell behind (machine stalled): skip rather than burst.
            st.stats.late_ticks += 1;
            next_tick = now + period;
        }
        ticks += 1;
        if ticks.is_multiple_of(25) {
            st.mixer.retain(|s, room| directory.get(s).is_some_and(|e| e.room == room));
        }
    }
}

fn receive(
    arrivals: Receiver<Arrival>,
    directory: &Directory,
    state: &Mutex<State>,
    stop: &AtomicBool,
    start: Instant,
) {
    while !stop.load(Ordering::Relaxed) {
        let (session, data) = match arrivals.recv_timeout(Duration::from_millis(100)) {
            Ok(got) => got,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let now = micros(start, Instant::now());
        // The link named the sender; whatever session the bytes claim is
        // not looked at.
        let Some(entry) = directory.heard(session) else {
            lock(state).stats.bad_token += 1;
            continue;
        };
        let who = Sender { session, name: &entry.name, room: &entry.room };
        if is_audio_feedback(&data) {
            match FeedbackUp::decode(&data) {
                Ok(report) => lock(state).mixer.feedback(now, who, &report),
                Err(_) => lock(state).stats.malformed += 1,
            }
            continue;
        }
        match AudioUp::decode(&data) {
            Ok(pkt) => lock(state).mixer.receive(now, who, &pkt),
            Err(_) => lock(state).stats.malformed += 1,
        }
    }
}

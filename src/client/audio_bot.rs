//! The bots' side of the audio engine: [`BotAudio`] runs an engine for a
//! bot's `--mic/--speaker` and fills the report's `audio_*` fields, and
//! [`ClickDetector`] measures mouth-to-ear delay from `clicks`.

use super::*;

/// Finds clicks in what the speaker plays and turns them into delays.
///
/// `clicks` microphones click when the Unix time is a multiple of
/// [`CLICK_PERIOD_US`] (every clicking participant at the same instants), so
/// the delay of a click is the time at which its first loud sample is played
/// (the frame's hand-over time to the speaker plus the sample's offset in the
/// frame), modulo the period. That is mouth-to-ear: packetisation, both
/// network legs, both jitter buffers, the mixer's tick and both Opus
/// generations' algorithmic delay, excluding device buffers. Valid for
/// delays under the period (500 ms), on one machine or with synchronised
/// clocks. An onset counts only after 100 ms of quiet, and only if the sound
/// is quiet again within 40 ms, so speech and tones are not taken for clicks.
#[derive(Debug, Default)]
pub struct ClickDetector {
    /// Samples since the last loud one.
    since_loud: usize,
    /// Onset time (Unix µs), samples since it, and the current quiet run,
    /// while checking that it is a click.
    candidate: Option<(u64, usize, usize)>,
}

const LOUD: f32 = 0.1;
const QUIET: f32 = 0.02;

impl ClickDetector {
    /// Feeds one played frame whose first sample plays at `start_unix_us`;
    /// returns the delays of clicks confirmed in it, ms.
    pub fn feed(&mut self, frame: &[f32], start_unix_us: u64) -> Vec<f64> {
        let mut found = Vec::new();
        let sr = f64::from(audio::SAMPLE_RATE);
        for (i, &x) in frame.iter().enumerate() {
            let a = x.abs();
            let loud = a >= LOUD;
            if let Some((onset, age, quiet)) = self.candidate.as_mut() {
                *age += 1;
                *quiet = if a < QUIET { *quiet + 1 } else { 0 };
                if *quiet >= 480 {
                    // 10 ms of quiet: it was a click.
                    found.push((*onset % CLICK_PERIOD_US) as f64 / 1000.0);
                    self.candidate = None;
                } else if *age > (CLICK_US as usize * 48 / 1000) + 1920 {
                    // Loud for too long: speech or a tone, not a click.
                    self.candidate = None;
                }
            } else if loud && self.since_loud >= 4800 {
                let t = start_unix_us + (i as f64 * 1e6 / sr) as u64;
                self.candidate = Some((t, 0, 0));
            }
            self.since_loud = if loud { 0 } else { self.since_loud + 1 };
        }
        found
    }

    pub fn feed_silence(&mut self, samples: usize) {
        self.since_loud += samples;
    }
}

/// A bot's `--mic`, `--speaker` and `--unmute-after`.
#[derive(Debug, Clone, Default)]
pub struct BotAudioOptions {
    /// `None`: no audio engine at all.
    pub mic: Option<String>,
    pub speaker: Option<String>,
    /// Join muted and unmute after this long (someone who starts talking
    /// mid-meeting); `None` = unmuted from the start.
    pub unmute_after: Option<std::time::Duration>,
    /// `--aec`, `--noise-suppression`, `--agc`.
    pub voice: VoiceSettings,
    /// `--echo room[:DELAY_MS]`, `--noise KIND`.
    pub echo: Option<EchoSpec>,
    pub noise: Option<NoiseSpec>,
}

/// The audio part of a bot's JSON report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AudioReport {
    pub audio_packets_received: u64,
    pub audio_packets_lost: u64,
    /// Mouth-to-ear delay of clicks heard (see [`ClickDetector`]), ms.
    pub audio_latency_ms: Option<crate::stats::Percentiles>,
    pub audio_packets_sent: u64,
    pub audio_frames_concealed: u64,
    /// Bytes per second on the wire (UDP payload incl. our headers), each way.
    pub audio_kbps_sent: f64,
    pub audio_kbps_received: f64,
    /// Echo cancellation: `{erle_db, delay_ms, converged_after_ms}` (with
    /// AEC on or a simulated room).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aec: Option<AecReport>,
    /// Loss of the mix on its way to us, percent (from its sequence gaps).
    pub audio_loss_down_percent: f64,
    /// Loss of our audio on its way to the host, percent (mean of the host's
    /// reports; null without any).
    pub audio_loss_up_percent: Option<f64>,
    /// Packet loss our Opus encoder expected at the end, percent: its FEC
    /// state (0 = FEC off).
    pub audio_fec_expected_loss_percent: u8,
    /// Share of the mix datagrams received that carried a talker's packet
    /// unchanged (the host's pass-through), 0..=1.
    pub audio_passthrough_share: f64,
    /// Talkspurts we sent (silence between them is not sent).
    pub audio_talkspurts_sent: u64,
    /// Earlier frames we sent again inside our packets (RFC 2198
    /// redundancy; 0 on a clean network), and how many each packet carried
    /// at the end (0–2).
    pub audio_red_frames_sent: u64,
    pub audio_red_depth: u8,
    /// Mix frames lost on the way to us but played from a later datagram's
    /// redundant copy.
    pub audio_frames_recovered: u64,
    /// Frames of comfort noise played in pauses (0 after a clean source).
    pub audio_comfort_noise_frames: u64,
}

/// Runs a bot's audio engine for the life of the bot.
pub struct BotAudio {
    engine: Option<AudioEngine>,
    started: Instant,
}

impl Default for BotAudio {
    /// No engine (a bot without audio, or one whose engine was handed on).
    fn default() -> BotAudio {
        BotAudio { engine: None, started: Instant::now() }
    }
}

impl BotAudio {
    /// Starts the engine if the bot has a microphone or a speaker; sets
    /// `media.mic` and tells the room. Errors go to the report; the bot
    /// carries on without audio.
    pub fn start(
        client: &Client,
        opts: &BotAudioOptions,
        media: &mut crate::proto::MediaState,
    ) -> (BotAudio, Vec<String>) {
        let none = BotAudio::default();
        let room = opts.echo.is_some() || opts.noise.is_some();
        if opts.mic.is_none() && opts.speaker.is_none() && !room {
            return (none, Vec::new());
        }
        let parse = || -> Result<AudioConfig, AudioError> {
            let mic = opts.mic.as_deref().unwrap_or("none").parse()?;
            let speaker = opts.speaker.as_deref().unwrap_or("null").parse()?;
            let mut c = AudioConfig::new(mic, speaker);
            c.muted = opts.unmute_after.is_some();
            (c.voice, c.echo, c.noise) = (opts.voice, opts.echo, opts.noise);
            Ok(c)
        };
        let config = match parse() {
            Ok(c) => c,
            Err(e) => return (none, vec![e.to_string()]),
        };
        let mic_on = (room || !matches!(config.mic, MicSpec::None)) && !config.muted;
        let link = match MediaLink::of(client) {
            Ok(link) => link,
            Err(e) => return (none, vec![format!("audio: cannot start the media reader: {e}")]),
        };
        match AudioEngine::start(link, config) {
            Ok(engine) => {
                if mic_on {
                    media.mic = true;
                    let _ = client.set_media(*media);
                }
                (BotAudio { engine: Some(engine), started: Instant::now() }, Vec::new())
            }
            Err(e) => (none, vec![e.to_string()]),
        }
    }

    /// Unmutes the microphone (`--unmute-after`) and tells the room.
    pub fn unmute(&self, client: &Client, media: &mut crate::proto::MediaState) {
        let Some(engine) = &self.engine else { return };
        engine.set_muted(false);
        media.mic = true;
        let _ = client.set_media(*media);
    }

    /// The host muted this bot: the microphone goes off (the session has
    /// already told the host).
    pub fn host_mute(&self, media: &mut crate::proto::MediaState) {
        if let Some(engine) = &self.engine {
            engine.set_muted(true);
        }
        media.mic = false;
    }

    /// Stops the engine and reports; a recording that could not be completed
    /// is an error in the report.
    pub fn finish(self, errors: &mut Vec<String>) -> AudioReport {
        let Some(engine) = self.engine else { return AudioReport::default() };
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let s = engine.stats();
        let lat = engine.latencies_ms();
        let (voice, _, aec) = engine.voice_report();
        if let Err(e) = engine.stop() {
            errors.push(e.to_string());
        }
        AudioReport {
            audio_packets_received: s.packets_received,
            audio_packets_lost: s.packets_lost,
            audio_latency_ms: crate::stats::Percentiles::of(&lat),
            audio_packets_sent: s.packets_sent,
            audio_frames_concealed: s.frames_concealed,
            audio_kbps_sent: s.bytes_sent as f64 * 8.0 / secs / 1000.0,
            audio_kbps_received: s.bytes_received as f64 * 8.0 / secs / 1000.0,
            aec: voice.aec.then_some(aec),
            audio_loss_down_percent: if s.down_expected == 0 {
                0.0
            } else {
                100.0 * s.down_lost as f64 / s.down_expected as f64
            },
            audio_loss_up_percent: (s.up_reports > 0)
                .then(|| 100.0 * s.up_loss_sum / s.up_reports as f64),
            audio_fec_expected_loss_percent: s.fec_expected_loss_percent,
            audio_passthrough_share: if s.mix_datagrams == 0 {
                0.0
            } else {
                s.frames_forwarded as f64 / s.mix_datagrams as f64
            },
            audio_talkspurts_sent: s.talkspurts_sent,
            audio_red_frames_sent: s.red_frames_sent,
            audio_red_depth: s.red_depth,
            audio_frames_recovered: s.frames_recovered,
            audio_comfort_noise_frames: s.comfort_noise_frames,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::source::click_sample;

    #[test]
    fn click_detector_times_clicks_and_ignores_tones() {
        let mut d = ClickDetector::default();
        // A click sent at 10.0 s, played 43 ms later, after silence.
        let period = CLICK_PERIOD_US;
        let sent = 20 * period;
        let played_at = sent + 43_000;
        let mut found = Vec::new();
        let mut t = played_at - 200_000;
        for _ in 0..30 {
            let frame: Vec<f32> = (0..960)
                .map(|i| {
                    let at = t as f64 + i as f64 * 1e6 / 48_000.0;
                    click_sample(at - played_at as f64)
                })
                .collect();
            found.extend(d.feed(&frame, t));
            t += 20_000;
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert!((found[0] - 43.0).abs() < 0.1, "{found:?}");
        // A steady tone is never a click.
        let mut d = ClickDetector::default();
        d.feed_silence(48_000);
        let tone: Vec<f32> =
            (0..960).map(|i| 0.3 * (std::f32::consts::TAU * i as f32 / 48.0).sin()).collect();
        for k in 0..50 {
            assert!(d.feed(&tone, k * 20_000).is_empty());
        }
    }
}

//! Recording a meeting: the room's mix as Ogg Opus (RFC 7845), its chat as
//! WebVTT and as JSON Lines (file offers too).
//!
//! The audio is the mixer's shared room mix (`mixer::Mixer::set_recorded`):
//! while a room records, the mixer encodes its shared mix every tick and
//! hands the Opus packet to the [`Recorder`], which only frames it. Where
//! the room has no mix (nobody has sent audio yet, or the mixer skipped a
//! tick) the recorder fills in silence by the wall clock, so the file's
//! timeline is the meeting's and the chat cues line up with it.
//!
//! Crash safety: a page is ended and flushed to the OS about every second
//! ([`PAGE_PACKETS`]), so a `kill -9` loses at most that; the headers are
//! written first, so a cut-short file still plays (without an end-of-stream
//! page, which players accept).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use serde::Serialize;

use crate::media::audio::{Encoder, SAMPLE_RATE};
use crate::proto::text::RoomKey;
use crate::proto::{AudioCodec, ChatMessage, FileInfo};

/// Samples the decoder drops at the start: the look-ahead of libopus at
/// 48 kHz (2.5 ms + 4 ms for the VoIP application), RFC 7845 §4.2.
pub const PRE_SKIP: u16 = 312;
/// Packets per Ogg page: 50 frames of 20 ms = one page (and one flush) a second.
pub const PAGE_PACKETS: u32 = 50;
/// How far the recording may lag the wall clock before silence is filled in.
const FILL_SLACK: u64 = 5;
/// How long a chat cue stays on screen.
const CUE: Duration = Duration::from_secs(4);

/// Writes one mono Opus stream into an Ogg file.
pub struct OggOpusWriter<W: Write> {
    pages: PacketWriter<'static, W>,
    serial: u32,
    frame_samples: u64,
    /// Samples (48 kHz) written so far; the granule position.
    granule: u64,
    in_page: u32,
    packets_per_page: u32,
}

impl<W: Write> OggOpusWriter<W> {
    /// Writes the OpusHead and OpusTags pages (each its own page, as RFC
    /// 7845 §3 requires). `frame_samples`: 48 kHz samples per packet.
    pub fn new(out: W, serial: u32, frame_samples: usize, title: &str) -> io::Result<Self> {
        let mut w = OggOpusWriter {
            pages: PacketWriter::new(out),
            serial,
            frame_samples: frame_samples as u64,
            granule: 0,
            in_page: 0,
            // About one page a second whatever the frame length.
            packets_per_page: (PAGE_PACKETS * 960 / frame_samples.max(1) as u32).max(1),
        };
        let mut head = b"OpusHead".to_vec();
        head.push(1); // version
        head.push(1); // channels
        head.extend_from_slice(&PRE_SKIP.to_le_bytes());
        head.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family 0: mono/stereo
        w.pages.write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)?;
        let vendor = concat!("Sapora ", env!("CARGO_PKG_VERSION"));
        let comment = format!("TITLE={title}");
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(&1u32.to_le_bytes());
        tags.extend_from_slice(&(comment.len() as u32).to_le_bytes());
        tags.extend_from_slice(comment.as_bytes());
        w.pages.write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)?;
        w.pages.inner_mut().flush()?;
        Ok(w)
    }

    /// Packets written so far.
    pub fn packets(&self) -> u64 {
        self.granule / self.frame_samples.max(1)
    }

    /// Appends one Opus packet of `frame_samples`; ends and flushes a page
    /// about every second.
    pub fn write(&mut self, packet: &[u8]) -> io::Result<()> {
        self.granule += self.frame_samples;
        self.in_page += 1;
        let end = if self.in_page >= self.packets_per_page {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        self.pages.write_packet(packet.to_vec(), self.serial, end, self.granule)?;
        if end == PacketWriteEndInfo::EndPage {
            self.in_page = 0;
            self.pages.inner_mut().flush()?;
        }
        Ok(())
    }

    /// Writes `last` as the final packet, marked end of stream, and flushes.
    pub fn finish(mut self, last: &[u8]) -> io::Result<W> {
        self.granule += self.frame_samples;
        self.pages.write_packet(
            last.to_vec(),
            self.serial,
            PacketWriteEndInfo::EndStream,
            self.granule,
        )?;
        let mut out = self.pages.into_inner();
        out.flush()?;
        Ok(out)
    }
}

/// One line of the `.jsonl` file.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum LogLine<'a> {
    /// The first line: when the recording (t_ms 0) started, Unix ms.
    Start {
        ts_ms: u64,
        room: &'a str,
    },
    Chat {
        /// Milliseconds into the recording.
        t_ms: u64,
        ts_ms: u64,
        from: &'a str,
        text: &'a str,
    },
    File {
        t_ms: u64,
        from: &'a str,
        name: &'a str,
        size: u64,
        id: u64,
    },
}

/// `HH:MM:SS.mmm`, the WebVTT timestamp.
fn vtt_time(ms: u64) -> String {
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// Cue text: `&`, `<`, `>` escaped and no blank lines (a blank line ends a
/// cue), so chat cannot end the cue or inject markup.
fn vtt_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// One WebVTT cue for a chat message at `t_ms` into the recording.
pub fn vtt_cue(t_ms: u64, from: &str, text: &str) -> String {
    format!(
        "{} --> {}\n<v {}>{}\n\n",
        vtt_time(t_ms),
        vtt_time(t_ms + CUE.as_millis() as u64),
        vtt_escape(from).replace('\n', " "),
        vtt_escape(text)
    )
}

/// The files of one room's recording.
struct RoomRecording {
    opus: OggOpusWriter<BufWriter<File>>,
    vtt: File,
    jsonl: File,
    started: Instant,
    started_unix_ms: u64,
    path: PathBuf,
}

impl RoomRecording {
    fn open(dir: &Path, room: &str, frame_samples: usize) -> io::Result<RoomRecording> {
        std::fs::create_dir_all(dir)?;
        let stamp = jiff::Zoned::now().strftime("%Y-%m-%d_%H-%M-%S").to_string();
        let safe: String = room
            .chars()
            .map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .take(40)
            .collect();
        let mut base = dir.join(format!("{stamp}_{safe}"));
        let mut n = 2;
        while base.with_extension("opus").exists() {
            base = dir.join(format!("{stamp}_{safe}-{n}"));
            n += 1;
        }
        let path = base.with_extension("opus");
        let serial = crate::net::random_u64() as u32;
        let opus = OggOpusWriter::new(
            BufWriter::new(File::create(&path)?),
            serial,
            frame_samples,
            &format!("Sapora meeting {room}"),
        )?;
        let mut vtt = File::create(base.with_extension("vtt"))?;
        vtt.write_all(b"WEBVTT\n\n")?;
        let mut jsonl = File::create(base.with_extension("jsonl"))?;
        let started_unix_ms = crate::net::unix_ms();
        write_line(&mut jsonl, &LogLine::Start { ts_ms: started_unix_ms, room })?;
        Ok(RoomRecording { opus, vtt, jsonl, started: Instant::now(), started_unix_ms, path })
    }

    fn t_ms(&self, ts_ms: u64) -> u64 {
        ts_ms.saturating_sub(self.started_unix_ms)
    }

    /// Silence until the file is within `slack` frames of the wall clock.
    fn fill(&mut self, silence: &[u8], frame_samples: usize, slack: u64) -> io::Result<()> {
        let frame_us = frame_samples as u64 * 1_000_000 / u64::from(SAMPLE_RATE);
        let due = self.started.elapsed().as_micros() as u64 / frame_us;
        while self.opus.packets() + slack < due {
            self.opus.write(silence)?;
        }
        Ok(())
    }
}

/// What the recorder thread is told.
pub enum RecMsg {
    Start {
        room: String,
    },
    Stop {
        room: String,
    },
    /// One tick of a room's shared mix (an Opus packet).
    Mix {
        room: String,
        packet: Vec<u8>,
    },
    Chat {
        room: String,
        msg: ChatMessage,
    },
    File {
        room: String,
        file: FileInfo,
    },
    /// Finish every recording and end the thread.
    Quit,
}

/// Writes recordings on a thread of its own (`sapora-recorder`). Dropping it
/// finishes every open recording.
pub struct Recorder {
    tx: Option<mpsc::Sender<RecMsg>>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Recordings go to `dir` (made if missing). `frame_samples`: the mix's
    /// frame length. Fails if the silence frame cannot be encoded.
    pub fn start(dir: PathBuf, frame_samples: usize) -> io::Result<Recorder> {
        let mut enc = Encoder::new(AudioCodec::Opus, 32_000).map_err(io::Error::other)?;
        let mut silence = Vec::new();
        enc.encode(&vec![0.0; frame_samples], &mut silence).map_err(io::Error::other)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sapora-recorder".into())
            .spawn(move || run(rx, &dir, frame_samples, &silence))?;
        Ok(Recorder { tx: Some(tx), thread: Some(thread) })
    }

    /// A cheap, cloneable sender (for the mixer's tap and the control events).
    pub fn sender(&self) -> mpsc::Sender<RecMsg> {
        self.tx.clone().expect("set until drop")
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(RecMsg::Quit);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(rx: mpsc::Receiver<RecMsg>, dir: &Path, frame_samples: usize, silence: &[u8]) {
    let mut rooms: HashMap<RoomKey, RoomRecording> = HashMap::new();
    let report = |what: &str, e: io::Error| tracing::error!("recording: {what}: {e}");
    loop {
        let msg = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => Some(m),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match msg {
            None => {}
            Some(RecMsg::Quit) => break,
            Some(RecMsg::Start { room }) => {
                if rooms.contains_key(&RoomKey::new(&room)) {
                    continue;
                }
                match RoomRecording::open(dir, &room, frame_samples) {
                    Ok(r) => {
                        tracing::info!("recording \"{room}\" to {}", r.path.display());
                        rooms.insert(RoomKey::new(&room), r);
                    }
                    Err(e) => report(&format!("cannot start in {}", dir.display()), e),
                }
            }
            Some(RecMsg::Stop { room }) => {
                if let Some(r) = rooms.remove(&RoomKey::new(&room)) {
                    finish(r, silence, frame_samples);
                }
            }
            Some(RecMsg::Mix { room, packet }) => {
                if let Some(r) = rooms.get_mut(&RoomKey::new(&room))
                    && let Err(e) = r.opus.write(&packet)
                {
                    report("writing the sound", e);
                }
            }
            Some(RecMsg::Chat { room, msg }) => {
                if let Some(r) = rooms.get_mut(&RoomKey::new(&room)) {
                    let t_ms = r.t_ms(msg.ts_ms);
                    let line =
                        LogLine::Chat { t_ms, ts_ms: msg.ts_ms, from: &msg.from, text: &msg.text };
                    let cue = vtt_cue(t_ms, &msg.from, &msg.text);
                    if let Err(e) = r
                        .vtt
                        .write_all(cue.as_bytes())
                        .and_then(|()| write_line(&mut r.jsonl, &line))
                    {
                        report("writing the chat", e);
                    }
                }
            }
            Some(RecMsg::File { room, file }) => {
                if let Some(r) = rooms.get_mut(&RoomKey::new(&room)) {
                    let t_ms = r.t_ms(file.ts_ms);
                    let line = LogLine::File {
                        t_ms,
                        from: &file.sender,
                        name: &file.name,
                        size: file.size,
                        id: file.id,
                    };
                    if let Err(e) = write_line(&mut r.jsonl, &line) {
                        report("writing the chat log", e);
                    }
                }
            }
        }
        for r in rooms.values_mut() {
            if let Err(e) = r.fill(silence, frame_samples, FILL_SLACK) {
                report("writing the sound", e);
            }
        }
    }
    for (_, r) in rooms.drain() {
        finish(r, silence, frame_samples);
    }
}

fn write_line(out: &mut File, line: &LogLine<'_>) -> io::Result<()> {
    let mut text = serde_json::to_string(line).map_err(io::Error::other)?;
    text.push('\n');
    out.write_all(text.as_bytes())
}

fn finish(mut r: RoomRecording, silence: &[u8], frame_samples: usize) {
    let path = r.path.clone();
    let done = r
        .fill(silence, frame_samples, 1)
        .and_then(|()| r.opus.finish(silence).map(|_| ()))
        .and_then(|()| r.vtt.sync_all())
        .and_then(|()| r.jsonl.sync_all());
    match done {
        Ok(()) => tracing::info!("recording saved: {}", path.display()),
        Err(e) => tracing::error!("recording {}: {e}", path.display()),
    }
}

/// Where recordings go unless `--record DIR` says otherwise:
/// `$XDG_DATA_HOME/sapora/recordings`, else `~/.local/share/sapora/recordings`.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("sapora/recordings");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/share/sapora/recordings"),
        None => PathBuf::from("sapora-recordings"),
    }
}

/// One recording found by [`list`].
#[derive(Debug, Clone, Serialize)]
pub struct RecordingInfo {
    pub path: PathBuf,
    pub bytes: u64,
    /// From the last page's granule position; `None` if unreadable.
    pub seconds: Option<f64>,
    /// Chat lines in the `.jsonl` beside it.
    pub chat_lines: usize,
}

/// The `.opus` recordings in `dir`, oldest first (names start with the date).
pub fn list(dir: &Path) -> io::Result<Vec<RecordingInfo>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("opus") {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let chat_lines = std::fs::read_to_string(path.with_extension("jsonl"))
            .map(|t| t.lines().filter(|l| l.contains("\"kind\":\"chat\"")).count())
            .unwrap_or(0);
        out.push(RecordingInfo {
            bytes: bytes.len() as u64,
            seconds: duration_of(&bytes),
            chat_lines,
            path,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Playing time of an Ogg Opus file: the last page's granule position less
/// the pre-skip, at 48 kHz.
pub fn duration_of(bytes: &[u8]) -> Option<f64> {
    let at = bytes.windows(4).rposition(|w| w == b"OggS")?;
    let g = bytes.get(at + 6..at + 14)?;
    let granule = u64::from_le_bytes(g.try_into().ok()?);
    Some(granule.saturating_sub(u64::from(PRE_SKIP)) as f64 / f64::from(SAMPLE_RATE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_cues_are_timed_and_cannot_break_out() {
        assert_eq!(vtt_time(3_723_045), "01:02:03.045");
        let cue = vtt_cue(1_500, "ann", "a <b>bold</b> & \n\n--> fake\n");
        assert_eq!(
            cue,
            "00:00:01.500 --> 00:00:05.500\n<v ann>a &lt;b&gt;bold&lt;/b&gt; &amp; \n--&gt; fake\n\n"
        );
    }

    #[test]
    fn ogg_opus_headers_granules_and_pages() {
        let mut w = OggOpusWriter::new(Vec::new(), 7, 960, "t").unwrap();
        for _ in 0..120 {
            w.write(&[0xF8, 0xFF, 0xFE]).unwrap();
        }
        let bytes = w.finish(&[0xF8, 0xFF, 0xFE]).unwrap();
        // Read it back with the same crate's reader.
        let mut r = ogg::PacketReader::new(std::io::Cursor::new(&bytes));
        let head = r.read_packet_expected().unwrap();
        assert!(head.data.starts_with(b"OpusHead") && head.first_in_stream());
        assert_eq!(u16::from_le_bytes([head.data[10], head.data[11]]), PRE_SKIP);
        assert!(r.read_packet_expected().unwrap().data.starts_with(b"OpusTags"));
        let mut n = 0;
        let mut last = None;
        while let Some(p) = r.read_packet().unwrap() {
            n += 1;
            last = Some(p);
        }
        assert_eq!(n, 121);
        let last = last.unwrap();
        assert!(last.last_in_stream());
        assert_eq!(last.absgp_page(), 121 * 960);
        // Headers on pages of their own, then a page a second (50 packets).
        let pages = bytes.windows(4).filter(|w| *w == b"OggS").count();
        assert_eq!(pages, 2 + 3);
        let secs = duration_of(&bytes).unwrap();
        assert!((secs - (121.0 * 960.0 - 312.0) / 48_000.0).abs() < 1e-9, "{secs}");
    }
}

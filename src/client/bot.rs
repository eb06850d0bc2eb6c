//! Synthetic participants: join, chat, watch the room, report what happened.
//! Used for demos, load tests and integration tests; media options hang off
//! [`BotOptions`] as later work adds them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use smol::Timer;
use smol::channel::Receiver;
use smol::future::FutureExt;

use super::session::{Client, ClientConfig, Event};
use crate::proto::ChatOutcome;
use crate::proto::text::confusable_key;
use crate::stats::Percentiles;

#[derive(Debug, Clone)]
pub struct BotOptions {
    pub host: SocketAddr,
    pub name: String,
    pub room: String,
    /// Chat text to send once joined (to the room, or to `to`).
    pub say: Option<String>,
    /// How many times to send `say` (numbered "text #n" when more than one).
    pub say_count: u32,
    pub say_interval: Duration,
    /// Send `say` privately to this member, once they are in the room.
    pub to: Option<String>,
    /// Stay this long after joining; `None` = until stopped.
    pub duration: Option<Duration>,
    /// Camera and video subscription (`--camera`, `--subscribe`).
    pub video: super::video::BotVideoOptions,
    /// Microphone and speaker (`--mic`, `--speaker`); both `None` = no audio.
    pub audio: super::audio::BotAudioOptions,
    /// `--send-file` (to `to`, or the room) and `--fetch-files`.
    pub files: super::files_bot::BotFileOptions,
    /// `--share-screen`, `--view-screen`, `--save-png`, `--screen-fps`.
    pub screen: super::screen::BotScreenOptions,
    /// Raise a hand once joined (`--hand`).
    pub hand: bool,
    /// The room's passcode (`--passcode`, `SAPORA_PASSCODE`).
    pub passcode: Option<crate::transport::pake::Passcode>,
}

impl BotOptions {
    /// A bot named `name` in the default room: no chat, no media, until stopped.
    pub fn new(host: SocketAddr, name: impl Into<String>) -> BotOptions {
        BotOptions {
            host,
            name: name.into(),
            room: String::new(),
            say: None,
            say_count: 1,
            say_interval: Duration::from_millis(100),
            to: None,
            duration: None,
            video: Default::default(),
            audio: Default::default(),
            files: Default::default(),
            screen: Default::default(),
            hand: false,
            passcode: None,
        }
    }
}

/// One received chat message as reported: `to` is null for room messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatLine {
    pub from: String,
    pub to: Option<String>,
    pub text: String,
    /// Host timestamp, milliseconds since the Unix epoch.
    pub ts: u64,
}

/// What a bot prints with `--report json`: one object per bot.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BotReport {
    /// The name the host assigned (may carry a `_N` suffix).
    pub name: String,
    pub room: String,
    /// Connect → Welcome, milliseconds; null if it never joined.
    pub joined_ms: Option<f64>,
    /// Names in the room when the bot ended.
    pub members: Vec<String>,
    /// Chat messages received (room history on join included), in order.
    pub chat: Vec<ChatLine>,
    pub chat_sent: u32,
    pub chat_confirmed: u32,
    /// Send → delivery confirmation, milliseconds.
    pub chat_rtt_ms: Option<Percentiles>,
    pub reconnects: u32,
    pub errors: Vec<String>,
    /// Video received, per sender name.
    pub video: std::collections::BTreeMap<String, super::video::VideoReport>,
    /// Screen shared or viewed: `{role, updates, fps, latency_ms, bytes, …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screen: Option<super::screen::ScreenReport>,
    /// `audio_packets_received`, `audio_packets_lost`, `audio_latency_ms`, …
    #[serde(flatten)]
    pub audio: super::audio::AudioReport,
    /// Files sent and fetched: `{id, name, bytes, md5_ok, seconds, sent}`.
    pub files: Vec<super::files_bot::FileReport>,
    /// Things the bot's user should fix (a firewall, a host that stopped
    /// hearing our media); the meeting itself went on.
    pub warnings: Vec<String>,
    /// Raised hands in the room when the bot ended, oldest first.
    pub hands: Vec<String>,
    /// Which transport carried the session ("quic"); null if it never joined.
    pub transport: Option<crate::transport::link::TransportKind>,
    /// The host refused the passcode (missing, wrong, too many tries).
    #[serde(skip)]
    pub passcode_refused: bool,
    /// Host controls applied to the room or the bot ("ann muted you; …"),
    /// and the reasons of refused control requests.
    pub notices: Vec<String>,
}

/// Names for `count` bots: `name`, `name-2`, `name-3`, …
pub fn bot_names(name: &str, count: usize) -> Vec<String> {
    (1..=count).map(|i| if i == 1 { name.to_string() } else { format!("{name}-{i}") }).collect()
}

enum Wake {
    Event(Option<Event>),
    Say,
    Unmute,
    Stop,
}

/// Runs one bot until its duration is up, `stop` fires, or its session ends.
pub async fn run_bot(opts: BotOptions, stop: Receiver<()>) -> BotReport {
    let mut report =
        BotReport { name: opts.name.clone(), room: opts.room.clone(), ..BotReport::default() };
    let started = Instant::now();
    let mut config = ClientConfig::new(opts.host, &opts.name, &opts.room);
    config.passcode = opts.passcode.clone();
    let video_on = opts.video.camera != crate::media::video::CameraChoice::None
        || opts.video.subscribe != crate::proto::Subscription::None;
    let audio_on = opts.audio.mic.is_some() || opts.audio.speaker.is_some();
    config.media = video_on || audio_on;
    let client = match Client::connect(config).await {
        Ok(c) => c,
        Err(e) => {
            report.passcode_refused = e.is_passcode_refusal();
            report.errors.push(e.to_string());
            return report;
        }
    };
    report.joined_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    report.transport = Some(client.transport());
    let mut media = crate::proto::MediaState::default();
    // The camera as it is now: the host may stop it (`Control::StopVideo`).
    let mut video_opts = opts.video.clone();
    // What the video engine received before it was restarted (a handover
    // or a host's video stop); the engine's later figures are added on top.
    let mut earlier_video = std::collections::BTreeMap::new();
    let (mut video, video_errors) =
        super::video::BotVideo::start(&client, &client.welcome().name, &opts.video, &mut media);
    report.errors.extend(video_errors);
    let (mut audio, audio_errors) = super::audio::BotAudio::start(&client, &opts.audio, &mut media);
    report.errors.extend(audio_errors);
    let (screen, screen_errors) =
        super::screen::BotScreen::start(&client, &opts.screen, &mut media).await;
    report.errors.extend(screen_errors);
    let mut file_bot = super::files_bot::FileBot::new(&client, &opts.files, opts.to.clone());
    if opts.hand
        && let Err(e) = client.control(crate::proto::Control::Hand { raised: true })
    {
        report.errors.push(format!("hand not raised: {e}"));
    }
    let events = client.events();
    let end = opts.duration.map(|d| Instant::now() + d);
    let mut members: Vec<String> = Vec::new();
    let mut said = 0u32;
    let mut next_say: Option<Instant> = opts.say.as_ref().map(|_| Instant::now());
    let mut pending: HashMap<u32, Instant> = HashMap::new();
    let mut unmute_at = opts.audio.unmute_after.map(|d| Instant::now() + d);
    let mut rtts: Vec<f64> = Vec::new();
    // Whether anyone else had a camera or microphone on while we were there.
    let (mut others_video, mut others_audio) = (false, false);

    loop {
        file_bot.poll(&members);
        let wake = async { Wake::Event(events.recv().await.ok()) }
            .or(async {
                match next_say {
                    Some(t) => Timer::at(t).await,
                    None => Timer::never().await,
                };
                Wake::Say
            })
            .or(async {
                match unmute_at {
                    Some(t) => Timer::at(t).await,
                    None => Timer::never().await,
                };
                Wake::Unmute
            })
            .or(async {
                let _ = stop.recv().await;
                Wake::Stop
            })
            .or(async {
                match end {
                    Some(t) => Timer::at(t).await,
                    None => Timer::never().await,
                };
                Wake::Stop
            })
            .await;
        match wake {
            Wake::Stop | Wake::Event(None | Some(Event::Ended)) => break,
            Wake::Unmute => {
                unmute_at = None;
                audio.unmute(&client, &mut media);
            }
            Wake::Say => {
                // A private message waits until its recipient is in the room.
                if let Some(to) = &opts.to
                    && !members.iter().any(|m| confusable_key(m) == confusable_key(to))
                {
                    next_say = Some(Instant::now() + Duration::from_millis(50));
                    continue;
                }
                let base = opts.say.as_deref().unwrap_or_default();
                said += 1;
                let text =
                    if opts.say_count > 1 { format!("{base} #{said}") } else { base.to_string() };
                match client.chat(opts.to.as_deref(), &text) {
                    Ok(id) => {
                        pending.insert(id, Instant::now());
                        report.chat_sent += 1;
                    }
                    Err(e) => report.errors.push(format!("chat not sent: {e}")),
                }
                next_say = (said < opts.say_count).then(|| Instant::now() + opts.say_interval);
            }
            Wake::Event(Some(event)) => match event {
                Event::Joined { welcome, rejoined } => {
                    report.name = welcome.name.clone();
                    report.room = welcome.room.clone();
                    members = welcome.members.iter().map(|m| m.name.clone()).collect();
                    if rejoined {
                        report.reconnects += 1;
                    } else {
                        report.chat.extend(welcome.history.iter().map(|m| ChatLine {
                            from: m.from.clone(),
                            to: m.to.clone(),
                            text: m.text.clone(),
                            ts: m.ts_ms,
                        }));
                    }
                }
                Event::Members(list) => {
                    for m in list.members.iter().filter(|m| m.name != report.name) {
                        others_video |= m.camera;
                        others_audio |= m.mic;
                    }
                    members = list.members.into_iter().map(|m| m.name).collect()
                }
                Event::Moved { to, host_name } => {
                    report.notices.push(format!("meeting moved to {host_name}'s host at {to}"));
                    // The session follows by itself; the media engines send
                    // to a host address, so they stop and start again on the
                    // new one (the report's media figures, and a `record:`
                    // speaker's file, are from then on).
                    earlier_video.extend(std::mem::take(&mut video).finish());
                    std::mem::take(&mut audio).finish(&mut report.errors);
                    let name = client.current().name;
                    let (v, errors) =
                        super::video::BotVideo::start(&client, &name, &video_opts, &mut media);
                    report.errors.extend(errors);
                    video = v;
                    let (a, errors) =
                        super::audio::BotAudio::start(&client, &opts.audio, &mut media);
                    report.errors.extend(errors);
                    audio = a;
                }
                Event::MediaBlocked(text) => {
                    if !report.warnings.contains(&text) {
                        report.warnings.push(text);
                    }
                }
                Event::Chat(m) => {
                    report.chat.push(ChatLine { from: m.from, to: m.to, text: m.text, ts: m.ts_ms })
                }
                Event::ChatResult(r) => {
                    let sent = pending.remove(&r.id);
                    match r.outcome {
                        ChatOutcome::Delivered { .. } => {
                            report.chat_confirmed += 1;
                            if let Some(t) = sent {
                                rtts.push(t.elapsed().as_secs_f64() * 1000.0);
                            }
                        }
                        ChatOutcome::Refused { reason } => {
                            report.errors.push(format!("chat refused: {reason}"))
                        }
                    }
                }
                Event::Disconnected { reason, retrying, .. } => {
                    let what = if retrying { "link lost, rejoining" } else { "disconnected" };
                    report.errors.push(format!("{what}: {reason}"));
                }
                Event::Refused(r) => report.errors.push(format!("rejoin refused: {}", r.reason)),
                Event::Presence(_) | Event::Ended => {}
                Event::FileOffered(f) => file_bot.offered(f),
                Event::RoomState(state) => {
                    report.hands = state.hands.into_iter().map(|h| h.name).collect();
                }
                Event::ControlNotice(n) => {
                    use crate::proto::Control;
                    match &n.control {
                        Control::Mute { name, .. } if *name == report.name => {
                            audio.host_mute(&mut media)
                        }
                        // The host stopped our camera: the engine goes on
                        // receiving, without a camera, and the room is told.
                        Control::StopVideo { name }
                            if *name == report.name
                                && video_opts.camera != crate::media::video::CameraChoice::None =>
                        {
                            earlier_video.extend(std::mem::take(&mut video).finish());
                            video_opts.camera = crate::media::video::CameraChoice::None;
                            let me = client.current().name;
                            let (v, errors) = super::video::BotVideo::start(
                                &client,
                                &me,
                                &video_opts,
                                &mut media,
                            );
                            report.errors.extend(errors);
                            video = v;
                            media.camera = false;
                            let _ = client.set_media(media);
                        }
                        _ => {}
                    }
                    report.notices.push(n.text);
                }
                Event::ControlResult(r) => {
                    if let Some(reason) = r.refused {
                        report.notices.push(format!("control refused: {reason}"));
                    }
                }
            },
        }
    }
    if let (Some(to), true) = (&opts.to, report.chat_sent == 0 && opts.say.is_some()) {
        report
            .errors
            .push(format!("\"{to}\" never joined the meeting, so nothing was sent to them"));
    }
    report.members = members;
    report.chat_rtt_ms = Percentiles::of(&rtts);
    earlier_video.extend(video.finish());
    report.video = earlier_video;
    let (screen_report, screen_errors) = screen.finish();
    report.screen = screen_report;
    report.errors.extend(screen_errors);
    report.audio = audio.finish(&mut report.errors);
    let video_frames: u64 = report.video.values().map(|v| v.frames).sum();
    let expected = [
        (others_video && opts.video.subscribe != crate::proto::Subscription::None, video_frames),
        (others_audio && opts.audio.speaker.is_some(), report.audio.audio_packets_received),
    ];
    let waited_enough = started.elapsed() >= super::session::RECEIVE_GRACE;
    if waited_enough
        && expected.iter().any(|(e, _)| *e)
        && expected.iter().all(|(e, got)| !e || *got == 0)
    {
        let w = client.current();
        report.warnings.push(format!(
            "Others are sending audio/video but none arrived: UDP from {} {} to this machine seems blocked by a firewall. Allow incoming UDP from the host here.",
            client.host().ip(),
            crate::proto::describe_media_ports(&w.ports)
        ));
    }
    report.files = file_bot.finish(&mut report.errors).await;
    client.leave().await;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_n_n2_n3() {
        assert_eq!(bot_names("bot", 3), ["bot", "bot-2", "bot-3"]);
        assert_eq!(bot_names("solo", 1), ["solo"]);
    }
}

//! `sapora bot`: synthetic participants for demos and load tests, with a
//! line or a JSON object per bot when they end.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::args::{NetArgs, PasscodeArg, VoiceArgs};
use super::{CmdResult, EXIT_PASSCODE, ctrl_c, parse_host, ports};
use crate::client::bot::{BotOptions, bot_names, run_bot};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ReportFormat {
    Json,
}

#[derive(Args)]
pub(crate) struct BotArgs {
    /// Host address: ip or ip:port
    #[arg(value_name = "HOST")]
    pub(crate) host: String,
    /// Bot name; with --count K the bots are NAME, NAME-2, NAME-3, …
    #[arg(long, value_name = "NAME")]
    pub(crate) name: String,
    /// Meeting (room) to join; blank = "default"
    #[arg(long, value_name = "NAME", default_value = "")]
    pub(crate) room: String,
    #[command(flatten)]
    pub(crate) passcode: PasscodeArg,
    /// How many bots to join
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub(crate) count: usize,
    /// Say this in the chat once joined
    #[arg(long, value_name = "TEXT")]
    pub(crate) say: Option<String>,
    /// Send --say and --send-file privately to this member (waits until they are in the room)
    #[arg(long, value_name = "NAME")]
    pub(crate) to: Option<String>,
    /// Share this file once joined (with --to: with that member only)
    #[arg(long, value_name = "PATH")]
    pub(crate) send_file: Option<std::path::PathBuf>,
    /// Fetch every file offered to the bot into this folder
    #[arg(long, value_name = "DIR")]
    pub(crate) fetch_files: Option<std::path::PathBuf>,
    /// Say it this many times (numbered), for round-trip measurements
    #[arg(long, value_name = "N", default_value_t = 1, requires = "say")]
    pub(crate) say_count: u32,
    /// Milliseconds between repeated messages
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub(crate) say_interval: u64,
    /// Leave after this many seconds (default: stay until Ctrl+C)
    #[arg(long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,
    /// Print one JSON object per bot when it ends
    #[arg(long, value_name = "FORMAT")]
    pub(crate) report: Option<ReportFormat>,
    /// Camera to send: test (moving pattern), none, or a device index or name from `sapora devices`
    #[arg(long, value_name = "CAMERA", default_value = "none")]
    pub(crate) camera: crate::media::video::CameraChoice,
    /// Video to receive from the others: full, thumb (thumbnails) or none
    #[arg(long, value_name = "LAYER", default_value = "full")]
    pub(crate) subscribe: crate::proto::Subscription,
    /// Microphone: tone[:HZ], clicks, file:PATH.wav, none, default, or a device index or name
    #[arg(long, value_name = "SOURCE")]
    pub(crate) mic: Option<String>,
    /// Speaker: record:PATH.wav, null, default, or a device index or name
    #[arg(long, value_name = "SINK")]
    pub(crate) speaker: Option<String>,
    /// Join with the microphone muted and unmute it after SECS (starting to talk mid-meeting)
    #[arg(long, value_name = "SECS", requires = "mic")]
    pub(crate) unmute_after: Option<f64>,
    /// Hear the bot's own speaker through a simulated room (RT60 0.3 s, -6 dB): room, or room:DELAY_MS (default 60)
    #[arg(long, value_name = "room[:DELAY_MS]")]
    pub(crate) echo: Option<crate::media::audio::room::EchoSpec>,
    /// Mix generated noise into the microphone: fan, babble or keyboard, optionally :DBFS (default -20)
    #[arg(long, value_name = "KIND[:DBFS]")]
    pub(crate) noise: Option<crate::media::audio::room::NoiseSpec>,
    #[command(flatten)]
    pub(crate) voice: VoiceArgs,
    /// Share a screen: test (synthetic 1920x1080), test:WxH, or an X display such as :99
    #[arg(long, value_name = "SCREEN")]
    pub(crate) share_screen: Option<String>,
    /// Screen captures per second when sharing (1-30)
    #[arg(long, value_name = "FPS", value_parser = clap::value_parser!(u32).range(1..=30), requires = "share_screen")]
    pub(crate) screen_fps: Option<u32>,
    /// Watch the room's shared screen
    #[arg(long)]
    pub(crate) view_screen: bool,
    /// Raise a hand once joined
    #[arg(long)]
    pub(crate) hand: bool,
    /// With --view-screen: save the last picture seen as a PNG when the bot ends
    #[arg(long, value_name = "PATH", requires = "view_screen")]
    pub(crate) save_png: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) net: NetArgs,
}

pub(crate) fn run(args: BotArgs) -> CmdResult {
    if args.count == 0 {
        return Err("--count must be at least 1".into());
    }
    for (flag, value) in [("--duration", args.duration), ("--unmute-after", args.unmute_after)] {
        // Duration::from_secs_f64 panics on these; 1e9 s is 31 years.
        if let Some(d) = value.filter(|d| !(d.is_finite() && (0.0..1e9).contains(d))) {
            let d = if d.abs() < 1e6 { d.to_string() } else { format!("{d:e}") };
            return Err(format!("{flag} {d} is not a number of seconds"));
        }
    }
    let addr = parse_host(&args.host, ports(&args.net)?.control)?;
    let passcode = args.passcode.get()?;
    let stop = ctrl_c();
    let reports = smol::block_on(async {
        let tasks: Vec<_> = bot_names(&args.name, args.count)
            .into_iter()
            .map(|name| {
                let opts = BotOptions {
                    host: addr,
                    name,
                    room: args.room.clone(),
                    say: args.say.clone(),
                    say_count: args.say_count.max(1),
                    say_interval: Duration::from_millis(args.say_interval),
                    to: args.to.clone(),
                    duration: args.duration.map(Duration::from_secs_f64),
                    video: crate::client::video::BotVideoOptions {
                        camera: args.camera.clone(),
                        subscribe: args.subscribe,
                        ..Default::default()
                    },
                    audio: crate::client::audio::BotAudioOptions {
                        mic: args.mic.clone(),
                        speaker: args.speaker.clone(),
                        unmute_after: args.unmute_after.map(Duration::from_secs_f64),
                        voice: args.voice.settings(),
                        echo: args.echo,
                        noise: args.noise,
                    },
                    files: crate::client::files_bot::BotFileOptions {
                        send_file: args.send_file.clone(),
                        fetch_dir: args.fetch_files.clone(),
                    },
                    screen: crate::client::screen::BotScreenOptions {
                        share: args.share_screen.clone(),
                        view: args.view_screen,
                        save_png: args.save_png.clone(),
                        fps: args.screen_fps,
                    },
                    hand: args.hand,
                    passcode: passcode.clone(),
                };
                smol::spawn(run_bot(opts, stop.clone()))
            })
            .collect();
        let mut reports = Vec::new();
        for t in tasks {
            reports.push(t.await);
        }
        reports
    });
    let mut failed = false;
    for r in &reports {
        failed |= r.joined_ms.is_none();
        match args.report {
            Some(ReportFormat::Json) => {
                println!("{}", serde_json::to_string(r).unwrap_or_default())
            }
            None => {
                let status = match r.joined_ms {
                    Some(ms) => format!("joined \"{}\" in {ms:.1} ms", r.room),
                    None => "could not join".to_string(),
                };
                println!(
                    "{}: {status}; {} chat message(s) received, {} sent, {} confirmed; members at the end: {}",
                    r.name,
                    r.chat.len(),
                    r.chat_sent,
                    r.chat_confirmed,
                    r.members.join(", ")
                );
                for e in &r.errors {
                    println!("  {}: {e}", r.name);
                }
                for w in &r.warnings {
                    println!("  {}: warning: {w}", r.name);
                }
            }
        }
    }
    if failed {
        if let Some(e) = reports.iter().flat_map(|r| r.errors.first()).next() {
            eprintln!("sapora: {e}");
        }
        if reports.iter().any(|r| r.passcode_refused) {
            return Ok(ExitCode::from(EXIT_PASSCODE));
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

//! `sapora`: the one binary. Parses the command line and hands off to the
//! library; every subcommand prints a clear message and a non-zero exit code
//! on failure rather than a panic.

use sapora::transport::pake::Passcode;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};

use sapora::cli::discover::{format_hosts, hosts_to_json};
use sapora::cli::schedule::format_table;
use sapora::client::bot::{BotOptions, bot_names, run_bot};
use sapora::client::discover::{DiscoverOptions, discover};
use sapora::client::terminal;
use sapora::proto::Ports;
use sapora::schedule::{Meeting, MeetingEdit, Store};
use sapora::server::{self, HostOptions, core::HostEvent};
use sapora::ui;

#[derive(Parser)]
#[command(
    name = "sapora",
    version,
    about = "LAN video conferencing: voice, video, chat, files and screen sharing, no accounts, no internet",
    long_about = "LAN video conferencing: voice, video, chat, files and screen sharing, no accounts, no internet.\n\nWith no command, sapora looks for a host on the LAN for about a second and joins it, or starts hosting if there is none."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Host a meeting and open the desktop app joined to it (relay only with --headless or no display)
    Host(HostArgs),
    /// Join a host's meeting in the desktop app (terminal chat when there is no display)
    Join(JoinArgs),
    /// Join synthetic participants, for demos and load tests
    Bot(BotArgs),
    /// List Sapora hosts on the LAN
    Discover(DiscoverArgs),
    /// Plan meetings: add, list, edit, rm
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// List cameras, microphones and speakers
    Devices,
    /// Share a file with the meeting, or with one member (--to)
    Send(SendArgs),
    /// List the files shared in a meeting that you may fetch
    Files(FilesArgs),
    /// Download a shared file by its id (MD5-verified, resumable)
    Fetch(FetchArgs),
    /// List recorded meetings (sound as .opus, chat as .vtt and .jsonl)
    Recordings(RecordingsArgs),
}

#[derive(Args)]
struct RecordingsArgs {
    /// Folder to look in (default: where `sapora host` records, ~/.local/share/sapora/recordings)
    #[arg(value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

/// Who joins the meeting for a one-off file command.
#[derive(Args)]
struct VisitArgs {
    /// Host address: ip or ip:port
    #[arg(value_name = "HOST")]
    host: String,
    /// Meeting (room); blank = "default"
    #[arg(long, value_name = "NAME", default_value = "")]
    room: String,
    /// Your name in the meeting (default: your login name)
    #[arg(long = "as", value_name = "NAME")]
    as_name: Option<String>,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    passcode: PasscodeArg,
}

#[derive(Args)]
struct SendArgs {
    #[command(flatten)]
    visit: VisitArgs,
    /// The file to share
    #[arg(value_name = "FILE")]
    file: std::path::PathBuf,
    /// Share privately with this member only
    #[arg(long, value_name = "NAME")]
    to: Option<String>,
    /// The name others see (default: the file's name)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

#[derive(Args)]
struct FilesArgs {
    #[command(flatten)]
    visit: VisitArgs,
}

#[derive(Args)]
struct FetchArgs {
    #[command(flatten)]
    visit: VisitArgs,
    /// The file's id (from `sapora files` or the offer)
    #[arg(value_name = "ID")]
    id: u64,
    /// Where to save it: a file, or a folder (default: here, under its name)
    #[arg(short, long, value_name = "PATH")]
    output: Option<std::path::PathBuf>,
}

/// The host's file store: `sapora host` options.
#[derive(Args, Clone)]
struct FileStoreArgs {
    /// Largest file participants may share, in MB
    #[arg(long, value_name = "MB", default_value_t = 100)]
    max_file_mb: u64,
    /// Folder for shared files (a fresh subfolder is made and removed at exit; default: the OS temp folder)
    #[arg(long, value_name = "DIR")]
    file_dir: Option<std::path::PathBuf>,
    /// Keep a meeting's files this many seconds after the last participant leaves
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    file_retention_secs: u64,
}

impl Default for FileStoreArgs {
    fn default() -> FileStoreArgs {
        FileStoreArgs { max_file_mb: 100, file_dir: None, file_retention_secs: 60 }
    }
}

impl FileStoreArgs {
    fn apply(&self, opts: &mut HostOptions) {
        opts.max_file_bytes = self.max_file_mb.saturating_mul(1024 * 1024);
        opts.file_store_dir = self.file_dir.clone();
        opts.file_retention = Duration::from_secs(self.file_retention_secs);
    }
}

fn visit(v: VisitArgs) -> Result<sapora::client::files_cli::Visit, String> {
    let host = parse_host(&v.host, ports(&v.net)?.control)?;
    Ok(sapora::client::files_cli::Visit {
        host,
        name: v.as_name.unwrap_or_else(user_name),
        room: v.room,
        passcode: v.passcode.get()?,
        passcode_refused: Default::default(),
    })
}

/// A one-off file command's outcome: its line, or its error with the
/// passcode refusal's own exit code.
fn visit_done(r: Result<String, String>, refused: &std::sync::atomic::AtomicBool) -> CmdResult {
    match r {
        Err(e) if refused.load(std::sync::atomic::Ordering::Relaxed) => {
            eprintln!("sapora: {e}");
            Ok(ExitCode::from(EXIT_PASSCODE))
        }
        r => print_line(r),
    }
}

fn print_line(r: Result<String, String>) -> CmdResult {
    println!("{}", r?);
    Ok(ExitCode::SUCCESS)
}

/// `--passcode CODE` (or `SAPORA_PASSCODE`).
#[derive(Args, Clone, Default)]
struct PasscodeArg {
    /// Passcode of the meeting (host: every meeting on this host needs it)
    #[arg(long, value_name = "CODE", env = "SAPORA_PASSCODE", hide_env_values = true)]
    passcode: Option<String>,
}

impl PasscodeArg {
    fn get(&self) -> Result<Option<Passcode>, String> {
        self.passcode
            .as_deref()
            .map(|p| Passcode::new(p).map_err(|e| format!("--passcode: {e}")))
            .transpose()
    }
}

/// Exit code of a join refused for its passcode (missing, wrong, too many
/// tries), so scripts can tell it from a network failure (1).
const EXIT_PASSCODE: u8 = 3;

#[derive(Args, Clone)]
struct NetArgs {
    /// Shift the default ports (UDP+TCP 5000, UDP 5001, the web page's TCP 5443) by N, to run several hosts on one machine
    #[arg(long, value_name = "N", default_value_t = 0)]
    port_offset: u16,
    /// Where discovery probes and beacons go (use 127.255.255.255 to stay on this machine)
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "255.255.255.255",
        env = "SAPORA_DISCOVERY_ADDR"
    )]
    discovery_addr: IpAddr,
}

#[derive(Args)]
struct HostArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    bind: IpAddr,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    passcode: PasscodeArg,
    /// Your meeting (room) on this host; blank = "default"
    #[arg(long, value_name = "NAME", default_value = "")]
    room: String,
    /// The host's name, shown in discovery (default: this machine's name)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Run without a window: relay only
    #[arg(long)]
    headless: bool,
    /// Do not announce this host on the LAN
    #[arg(long)]
    no_discovery: bool,
    /// Seconds between status lines
    #[arg(long, value_name = "SECS", default_value_t = 10, hide = true)]
    status_every: u64,
    /// Started by `sapora` with no arguments: merge with another such host
    /// started at the same moment (never set from the command line)
    #[arg(skip)]
    auto: bool,
    #[command(flatten)]
    files: FileStoreArgs,
    /// Codec of the audio mix: opus (about 60 kbps per listener) or pcm (raw 16-bit, 780 kbps, least CPU)
    #[arg(long, value_name = "CODEC", default_value = "opus", value_parser = ["opus", "pcm"])]
    audio_codec: String,
    /// Audio frame length in ms: 20, or 10 for less delay at the cost of twice the packets (clients follow the host)
    #[arg(long, value_name = "MS", default_value = "20", value_parser = ["10", "20"])]
    audio_frame_ms: String,
    #[command(flatten)]
    media: AppMediaArgs,
    /// Record every meeting on this host from its start into DIR (the mix as .opus, chat as .vtt and .jsonl); without it, /record on records into ~/.local/share/sapora/recordings
    #[arg(long, value_name = "DIR")]
    record: Option<std::path::PathBuf>,
}

/// Devices for the desktop app; the same words as the bots use.
#[derive(Args, Clone, Default)]
struct AppMediaArgs {
    /// Camera for the desktop app: test, none, or a device index or name from `sapora devices`
    #[arg(long, value_name = "CAMERA")]
    camera: Option<sapora::media::video::CameraChoice>,
    /// Microphone for the desktop app: tone[:HZ], clicks, file:PATH.wav, none, default, or a device
    #[arg(long, value_name = "SOURCE")]
    mic: Option<String>,
    /// Speaker for the desktop app: record:PATH.wav, null, default, or a device
    #[arg(long, value_name = "SINK")]
    speaker: Option<String>,
    #[command(flatten)]
    voice: VoiceArgs,
}

impl AppMediaArgs {
    fn choice(&self) -> ui::MediaChoice {
        ui::MediaChoice {
            camera: self.camera.as_ref().map(ui::media::camera_word),
            mic: self.mic.clone(),
            speaker: self.speaker.clone(),
            aec: self.voice.aec,
            noise_suppression: self.voice.noise_suppression,
            agc: self.voice.agc,
        }
    }
}

/// Voice processing switches (default: the saved settings, else all on).
#[derive(Args, Clone, Default)]
struct VoiceArgs {
    /// Echo cancellation: on or off (default on)
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    aec: Option<bool>,
    /// Noise suppression: off, normal or strong (RNNoise as well) (default normal)
    #[arg(long, value_name = "LEVEL")]
    noise_suppression: Option<sapora::media::audio::apm::NoiseSuppression>,
    /// Automatic gain control: on or off (default on)
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    agc: Option<bool>,
}

impl VoiceArgs {
    fn settings(&self) -> sapora::media::audio::apm::VoiceSettings {
        let mut s = sapora::media::audio::apm::VoiceSettings::default();
        s.aec = self.aec.unwrap_or(s.aec);
        s.noise_suppression = self.noise_suppression.unwrap_or(s.noise_suppression);
        s.agc = self.agc.unwrap_or(s.agc);
        s
    }
}

fn on_off(s: &str) -> Result<bool, String> {
    match s.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("\"{other}\": use on or off")),
    }
}

#[derive(Args)]
struct JoinArgs {
    /// Host address: ip or ip:port (default port 5000 + offset)
    #[arg(value_name = "HOST", required_unless_present = "meeting")]
    host: Option<String>,
    /// Join a scheduled meeting: fills host and room from `sapora schedule`
    #[arg(long, value_name = "ID")]
    meeting: Option<String>,
    /// Meeting (room) to join; blank = "default"
    #[arg(long, value_name = "NAME")]
    room: Option<String>,
    /// Your name in the meeting (default: your login name)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    passcode: PasscodeArg,
    #[command(flatten)]
    media: AppMediaArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Json,
}

#[derive(Args)]
struct BotArgs {
    /// Host address: ip or ip:port
    #[arg(value_name = "HOST")]
    host: String,
    /// Bot name; with --count K the bots are NAME, NAME-2, NAME-3, …
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Meeting (room) to join; blank = "default"
    #[arg(long, value_name = "NAME", default_value = "")]
    room: String,
    #[command(flatten)]
    passcode: PasscodeArg,
    /// How many bots to join
    #[arg(long, value_name = "K", default_value_t = 1)]
    count: usize,
    /// Say this in the chat once joined
    #[arg(long, value_name = "TEXT")]
    say: Option<String>,
    /// Send --say and --send-file privately to this member (waits until they are in the room)
    #[arg(long, value_name = "NAME")]
    to: Option<String>,
    /// Share this file once joined (with --to: with that member only)
    #[arg(long, value_name = "PATH")]
    send_file: Option<std::path::PathBuf>,
    /// Fetch every file offered to the bot into this folder
    #[arg(long, value_name = "DIR")]
    fetch_files: Option<std::path::PathBuf>,
    /// Say it this many times (numbered), for round-trip measurements
    #[arg(long, value_name = "N", default_value_t = 1, requires = "say")]
    say_count: u32,
    /// Milliseconds between repeated messages
    #[arg(long, value_name = "MS", default_value_t = 100)]
    say_interval: u64,
    /// Leave after this many seconds (default: stay until Ctrl+C)
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Print one JSON object per bot when it ends
    #[arg(long, value_name = "FORMAT")]
    report: Option<ReportFormat>,
    /// Camera to send: test (moving pattern), none, or a device index or name from `sapora devices`
    #[arg(long, value_name = "CAMERA", default_value = "none")]
    camera: sapora::media::video::CameraChoice,
    /// Video to receive from the others: full, thumb (thumbnails) or none
    #[arg(long, value_name = "LAYER", default_value = "full")]
    subscribe: sapora::proto::Subscription,
    /// Microphone: tone[:HZ], clicks, file:PATH.wav, none, default, or a device index or name
    #[arg(long, value_name = "SOURCE")]
    mic: Option<String>,
    /// Speaker: record:PATH.wav, null, default, or a device index or name
    #[arg(long, value_name = "SINK")]
    speaker: Option<String>,
    /// Join with the microphone muted and unmute it after SECS (starting to talk mid-meeting)
    #[arg(long, value_name = "SECS", requires = "mic")]
    unmute_after: Option<f64>,
    /// Hear the bot's own speaker through a simulated room (RT60 0.3 s, -6 dB): room, or room:DELAY_MS (default 60)
    #[arg(long, value_name = "room[:DELAY_MS]")]
    echo: Option<sapora::media::audio::room::EchoSpec>,
    /// Mix generated noise into the microphone: fan, babble or keyboard, optionally :DBFS (default -20)
    #[arg(long, value_name = "KIND[:DBFS]")]
    noise: Option<sapora::media::audio::room::NoiseSpec>,
    #[command(flatten)]
    voice: VoiceArgs,
    /// Share a screen: test (synthetic 1920x1080), test:WxH, or an X display such as :99
    #[arg(long, value_name = "SCREEN")]
    share_screen: Option<String>,
    /// Screen captures per second when sharing (1-30)
    #[arg(long, value_name = "FPS", value_parser = clap::value_parser!(u32).range(1..=30), requires = "share_screen")]
    screen_fps: Option<u32>,
    /// Watch the room's shared screen
    #[arg(long)]
    view_screen: bool,
    /// Raise a hand once joined
    #[arg(long)]
    hand: bool,
    /// With --view-screen: save the last picture seen as a PNG when the bot ends
    #[arg(long, value_name = "PATH", requires = "view_screen")]
    save_png: Option<std::path::PathBuf>,
    #[command(flatten)]
    net: NetArgs,
}

#[derive(Args)]
struct DiscoverArgs {
    /// Seconds to listen for answers
    #[arg(long, value_name = "SECS", default_value_t = 0.8)]
    timeout: f64,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    net: NetArgs,
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Schedule a meeting (its id is also its room)
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        title: String,
        /// ISO 8601, e.g. 2026-11-21T14:30 (local time) or 2026-11-21T14:30:00+01:00
        #[arg(long)]
        start: String,
        /// Minutes
        #[arg(long, default_value_t = 60)]
        duration: u32,
        /// Host address (ip or ip:port)
        #[arg(long)]
        host: Option<String>,
    },
    /// List scheduled meetings
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change a scheduled meeting
    Edit {
        id: String,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        duration: Option<u32>,
        /// New host address; an empty string removes it
        #[arg(long)]
        host: Option<String>,
    },
    /// Delete a scheduled meeting
    Rm { id: String },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SAPORA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => auto(),
        Some(Command::Host(args)) => host(args),
        Some(Command::Join(args)) => join(args),
        Some(Command::Bot(args)) => bot(args),
        Some(Command::Discover(args)) => discover_cmd(args),
        Some(Command::Schedule { command }) => schedule(command),
        Some(Command::Devices) => devices(),
        Some(Command::Send(a)) => visit(a.visit).and_then(|v| {
            let refused = v.passcode_refused.clone();
            visit_done(sapora::client::files_cli::send(v, a.file, a.to, a.name), &refused)
        }),
        Some(Command::Files(a)) => visit(a.visit).and_then(|v| {
            let refused = v.passcode_refused.clone();
            visit_done(sapora::client::files_cli::list(v), &refused)
        }),
        Some(Command::Fetch(a)) => visit(a.visit).and_then(|v| {
            let refused = v.passcode_refused.clone();
            visit_done(sapora::client::files_cli::fetch(v, a.id, a.output), &refused)
        }),
        Some(Command::Recordings(a)) => recordings(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sapora: {e}");
            ExitCode::FAILURE
        }
    }
}

type CmdResult = Result<ExitCode, String>;

/// `ip`, `ip:port` or `name[:port]`; the port defaults to the control port.
fn parse_host(host: &str, default_port: u16) -> Result<SocketAddr, String> {
    sapora::client::parse_address(host, default_port)
}

fn ports(net: &NetArgs) -> Result<Ports, String> {
    Ports::with_offset(net.port_offset)
}

fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sapora-host".into())
}

fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "guest".into())
}

/// The addresses to tell others, each with its interface name: the bound
/// one, or every LAN address of this machine (`lanif::join_addresses`).
/// Starts the page for browser guests ([`start_web`]) and prints its
/// addresses ("Browsers join at: https://IP:PORT/"), or why it is off.
fn print_web(bind: IpAddr, control: SocketAddr) -> Option<smol::Task<()>> {
    match start_web(bind, control) {
        Ok((task, port)) => {
            let ips: Vec<IpAddr> = share_addrs(bind).into_iter().map(|(ip, _)| ip).collect();
            for (i, url) in sapora::guest::page_urls(&ips, port).into_iter().enumerate() {
                let lead = if i == 0 { "  Browsers join at:" } else { "                   " };
                println!("{lead}  {url}");
            }
            Some(task)
        }
        Err(e) => {
            println!("  Browser guests: off ({e})");
            None
        }
    }
}

/// The web page for browser guests (`sapora::guest`), on TCP
/// [`sapora::guest::WEB_PORT_SHIFT`] above the control port, with the host's
/// certificate. Returns the serving task and the port.
fn start_web(bind: IpAddr, control: SocketAddr) -> Result<(smol::Task<()>, u16), String> {
    let (identity, _) = sapora::transport::cert::HostIdentity::load_or_create_default()
        .map_err(|e| e.to_string())?;
    let tls = sapora::guest::tls_config(&identity).map_err(|e| e.to_string())?;
    let port = control.port().checked_add(sapora::guest::WEB_PORT_SHIFT).ok_or("no port left")?;
    let listener = smol::block_on(smol::net::TcpListener::bind(SocketAddr::new(bind, port)))
        .map_err(|e| format!("cannot listen on TCP {port}: {e}"))?;
    let control = if control.ip().is_unspecified() {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), control.port())
    } else {
        control
    };
    Ok((smol::spawn(sapora::guest::serve(listener, std::sync::Arc::new(tls), control)), port))
}

fn share_addrs(bind: IpAddr) -> Vec<(IpAddr, Option<String>)> {
    if !bind.is_unspecified() {
        return vec![(bind, None)];
    }
    let list = sapora::lanif::join_addresses();
    if list.is_empty() {
        return vec![(IpAddr::V4(Ipv4Addr::LOCALHOST), Some("loopback: no network found".into()))];
    }
    list.into_iter().map(|(name, ip)| (IpAddr::V4(ip), Some(name))).collect()
}

/// Ctrl+C (and SIGTERM) as a channel that closes when the signal arrives.
fn ctrl_c() -> smol::channel::Receiver<()> {
    let (tx, rx) = smol::channel::bounded::<()>(1);
    let tx = std::sync::Mutex::new(Some(tx));
    let _ = ctrlc::set_handler(move || {
        if let Ok(mut t) = tx.lock() {
            t.take(); // dropping the sender closes the channel
        }
    });
    rx
}

fn host(args: HostArgs) -> CmdResult {
    let ports = ports(&args.net)?;
    let headless = args.headless || !ui::display_available();
    if let Some(camera) =
        args.media.camera.as_ref().filter(|c| **c != Default::default() && headless)
    {
        println!("sapora: {camera} is for the desktop app; the headless host sends no video.");
    }
    let mut opts = HostOptions::new(args.bind, ports, args.name.unwrap_or_else(machine_name));
    opts.owner = Some(user_name());
    opts.passcode = args.passcode.get()?;
    if !args.no_discovery {
        opts.discovery_target = Some(args.net.discovery_addr);
    }
    if args.auto {
        opts.merge_room = Some("default".into());
    }
    args.files.apply(&mut opts);
    if let Some(dir) = &args.record {
        opts.record_dir = Some(dir.clone());
        opts.record_from_start = true;
    }
    if args.audio_codec == "pcm" {
        opts.audio_codec = sapora::proto::AudioCodec::Pcm16;
    }
    if args.audio_frame_ms == "10" {
        opts.audio_frame_samples = sapora::media::audio::FRAME_10MS;
    }
    if !args.headless {
        if ui::display_available() {
            let launch = ui::Launch::Host { name: user_name(), room: args.room.trim().to_string() };
            let media = args.media.choice();
            // Browser guests: the page, for the host the app starts (the
            // gateway reaches it on its control port once it runs).
            let control = SocketAddr::new(args.bind, opts.ports.control);
            let _web = print_web(args.bind, control);
            return open_app(launch, &args.net, opts, media, None);
        }
        println!(
            "sapora: no display found ($DISPLAY and $WAYLAND_DISPLAY are unset); running headless (relay only). Use --headless to skip this message."
        );
    }
    let stop = ctrl_c();
    smol::block_on(async {
        let host = server::start(opts.clone()).await.map_err(|e| e.to_string())?;
        let p = host.ports;
        let port_suffix = if p.control == 5000 { String::new() } else { format!(":{}", p.control) };
        let room = args.room.trim();
        let room_hint = if room.is_empty() { String::new() } else { format!(" --room {room}") };
        println!("Sapora host \"{}\" is running.", host.host_name);
        if let Some(sapora::transport::cert::Loaded::Replaced { reason, kept_at }) =
            &host.identity_loaded
        {
            println!(
                "  WARNING: the host certificate was corrupt ({reason}); it was moved to {} and a new one made. Clients that joined before will refuse this host until they accept the new certificate.",
                kept_at.display()
            );
        }
        println!(
            "  Certificate: {} (short {}); clients pin it on first join",
            host.fingerprint,
            host.fingerprint.short()
        );
        if opts.passcode.is_some() {
            println!("  Passcode: every meeting on this host needs it");
        }
        for (i, (ip, iface)) in share_addrs(args.bind).into_iter().enumerate() {
            let lead = if i == 0 { "  Others join with:" } else { "                   " };
            let iface = iface.map(|n| format!("   ({n})")).unwrap_or_default();
            println!("{lead}  sapora join {ip}{port_suffix}{room_hint}{iface}");
        }
        println!(
            "  Ports: {}/udp (QUIC: control, files, screen, audio, video) and {}/tcp (TLS fallback), discovery {}/udp",
            p.control, p.control, p.discovery
        );
        let _web = print_web(args.bind, host.control_addr);
        match opts.discovery_target {
            Some(t) if t == sapora::server::beacon::LAN_BROADCAST => {
                let ifs = sapora::lanif::lan_interfaces();
                let on = if ifs.is_empty() {
                    "no LAN interface yet (checked every 2 s)".to_string()
                } else {
                    ifs.iter()
                        .map(|i| format!("{} ({})", i.name, i.broadcast))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                println!("  Discovery: beacons every 5 s on {on}, port {}", p.discovery)
            }
            Some(t) => println!("  Discovery: beacons every 5 s to {t}:{}", p.discovery),
            None => println!("  Discovery: off"),
        }
        println!("Press Ctrl+C to stop. Type host controls here: {}.", HOST_CONSOLE_HELP);
        if let Some(dir) = &args.record {
            println!("  Recording every meeting into {}", dir.display());
        }
        // The console: host controls typed on standard input.
        let (line_tx, lines) = smol::channel::unbounded::<String>();
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                use std::io::BufRead;
                for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                    if line_tx.send_blocking(line).is_err() {
                        break;
                    }
                }
            })
            .ok();
        let started = Instant::now();
        let events = host.events();
        let (handover, unheard) = (host.handover(), host.media_notices());
        let every = Duration::from_secs(args.status_every.max(1));
        let mut next_status = Instant::now() + every;
        let mut moved_to = None;
        loop {
            use smol::future::FutureExt;
            enum Wake {
                Event(HostEvent),
                Status,
                Stop,
                Unheard(server::reach::Unheard),
                Handover(server::beacon::Survivor),
                Line(String),
            }
            let wake = async { events.recv().await.map(Wake::Event).unwrap_or(Wake::Stop) }
                .or(async {
                    match lines.recv().await {
                        Ok(l) => Wake::Line(l),
                        // End of input (e.g. </dev/null): the host runs on.
                        Err(_) => smol::future::pending().await,
                    }
                })
                .or(async {
                    match unheard.recv().await {
                        Ok(u) => Wake::Unheard(u),
                        Err(_) => smol::future::pending().await,
                    }
                })
                .or(async {
                    match handover.recv().await {
                        Ok(s) => Wake::Handover(s),
                        Err(_) => smol::future::pending().await,
                    }
                })
                .or(async {
                    smol::Timer::at(next_status).await;
                    Wake::Status
                })
                .or(async {
                    let _ = stop.recv().await;
                    Wake::Stop
                })
                .await;
            match wake {
                Wake::Line(line) if line.trim().is_empty() => {}
                Wake::Line(line) => match terminal::parse_control(&line, false) {
                    Some(Ok(sapora::proto::Control::Hand { .. })) => {
                        println!("[{}] console: the console has no hand to raise", clock())
                    }
                    Some(Ok(control)) => host.console(control).await,
                    Some(Err(usage)) => println!("[{}] console: {usage}", clock()),
                    None => println!(
                        "[{}] console: unknown command; try {}",
                        clock(),
                        HOST_CONSOLE_HELP
                    ),
                },
                Wake::Event(e) => {
                    if let Some(line) = describe(&e) {
                        println!("[{}] {line}", clock());
                    }
                }
                Wake::Status => {
                    next_status = Instant::now() + every;
                    let s = host.stats();
                    println!(
                        "[{}] status: {} room(s), {} member(s), {} connection(s), {} chat message(s), up {}",
                        clock(),
                        s.rooms,
                        s.members,
                        s.connections,
                        s.chat_messages,
                        uptime(started.elapsed())
                    );
                }
                Wake::Unheard(u) => println!(
                    "[{}] no audio/video from {} ({}) within {} s of joining: UDP to {} {} may be blocked on the way",
                    clock(),
                    u.name,
                    u.ip,
                    u.waited.as_secs(),
                    share_addrs(args.bind).first().map_or(String::new(), |a| a.0.to_string()),
                    server::reach::describe_media_ports(&p)
                ),
                Wake::Handover(s) => {
                    let who = s.owner.clone().unwrap_or_else(|| s.host_name.clone());
                    println!(
                        "[{}] {who} started a meeting at the same moment ({}): it goes on there; everyone here was moved to it.",
                        clock(),
                        s.addr
                    );
                    moved_to = Some(s.addr);
                    break;
                }
                Wake::Stop => break,
            }
        }
        if let Some(addr) = moved_to {
            // This host forwards late arrivals for a few seconds, then stops;
            // meanwhile the person who double-clicked joins the surviving
            // meeting too.
            use smol::future::FutureExt;
            let retiring = smol::spawn(host.retire());
            let room = args.room.trim().to_string();
            // Ctrl+C still ends it (this process's handler is installed).
            let joined = async { Some(terminal::run(addr, user_name(), room, None).await) }
                .or(async {
                    let _ = stop.recv().await;
                    None
                })
                .await;
            let Some(joined) = joined else {
                return Ok(ExitCode::SUCCESS);
            };
            retiring.await;
            return joined.map(|()| ExitCode::SUCCESS).map_err(|e| e.to_string());
        }
        let members = host.stats().members;
        println!("Stopping: telling {members} participant(s) the meeting is over…");
        host.shutdown().await;
        println!("Host stopped.");
        Ok(ExitCode::SUCCESS)
    })
}

fn describe(e: &HostEvent) -> Option<String> {
    use sapora::proto::PresenceChange::*;
    Some(match e {
        HostEvent::Joined { name, room, ip, .. } => format!("{name} joined \"{room}\" from {ip}"),
        HostEvent::Rejoined { name, room, ip, .. } => {
            format!("{name} rejoined \"{room}\" from {ip}")
        }
        HostEvent::Left { name, room, change, .. } => {
            let how = match change {
                Left => "left",
                TimedOut => "timed out of",
                Dropped | Joined => "dropped out of",
            };
            format!("{name} {how} \"{room}\"")
        }
        HostEvent::Refused { ip, reason } => format!("refused a client from {ip}: {reason}"),
        HostEvent::Rooms(_)
        | HostEvent::Chat { .. }
        | HostEvent::FileOffered { .. }
        | HostEvent::HeldMuted { .. } => {
            return None;
        }
        HostEvent::Recording { room, on: true } => format!("recording \"{room}\" started"),
        HostEvent::Recording { room, on: false } => format!("recording \"{room}\" stopped"),
        HostEvent::Console(text) => format!("console: {text}"),
    })
}

/// The headless host's console commands.
const HOST_CONSOLE_HELP: &str = "/lock, /unlock, /mute NAME, /hold NAME, /stopvideo NAME, /remove NAME, /letback NAME, /cohost NAME, /end, /record on|off";

fn recordings(args: RecordingsArgs) -> CmdResult {
    let dir = args.dir.unwrap_or_else(sapora::server::record::default_dir);
    let list = match sapora::server::record::list(&dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("No recordings in {}.", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!("Recordings in {}:", dir.display());
    for r in list {
        let name = r.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let secs = r.seconds.map_or("?".to_string(), |s| uptime(Duration::from_secs_f64(s)));
        println!("  {name}  {secs}  {} KiB  {} chat line(s)", r.bytes / 1024, r.chat_lines);
    }
    Ok(ExitCode::SUCCESS)
}

fn clock() -> String {
    jiff::Zoned::now().strftime("%H:%M:%S").to_string()
}

fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn join(args: JoinArgs) -> CmdResult {
    let ports = ports(&args.net)?;
    if let Some(camera) =
        args.media.camera.as_ref().filter(|c| **c != Default::default() && !ui::display_available())
    {
        println!("sapora: {camera} is for the desktop app; this terminal session sends no video.");
    }
    let (mut host, mut room) = (args.host, args.room);
    if let Some(id) = &args.meeting {
        let store = Store::open_default().map_err(|e| e.to_string())?;
        let m = store.get(id).map_err(|e| e.to_string())?;
        room.get_or_insert_with(|| m.room().to_string());
        if host.is_none() {
            host = Some(m.host.clone().ok_or_else(|| {
                format!("meeting \"{}\" has no host address: give one, e.g. sapora join 192.168.1.20 --meeting {}", m.id, m.id)
            })?);
        }
    }
    let host = host.ok_or("give a host address (sapora join 192.168.1.20) or --meeting ID")?;
    let addr = parse_host(&host, ports.control)?;
    let name = args.name.unwrap_or_else(user_name);
    if ui::display_available() {
        let launch =
            ui::Launch::Join { address: addr.to_string(), name, room: room.unwrap_or_default() };
        let media = args.media.choice();
        let passcode = args.passcode.get()?;
        return open_app(launch, &args.net, app_host_options(&args.net)?, media, passcode);
    }
    let passcode = args.passcode.get()?;
    match smol::block_on(terminal::run(addr, name, room.unwrap_or_default(), passcode)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.is_passcode_refusal() => {
            eprintln!("sapora: {e}");
            Ok(ExitCode::from(EXIT_PASSCODE))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `sapora` with no command: join a host found on the LAN, or host.
fn auto() -> CmdResult {
    let net = NetArgs { port_offset: 0, discovery_addr: env_discovery_addr() };
    if ui::display_available() {
        return open_app(ui::Launch::Auto, &net, app_host_options(&net)?, Default::default(), None);
    }
    let opts =
        DiscoverOptions { target: net.discovery_addr, port: 5001, timeout: Duration::from_secs(1) };
    println!("Looking for a Sapora host on the LAN…");
    let hosts = smol::block_on(discover(&opts)).unwrap_or_default();
    match hosts.iter().find(|h| h.is_compatible()) {
        Some(h) => {
            println!("Found {} at {}: joining.", h.label(), h.addr);
            let args = JoinArgs {
                host: Some(h.addr.to_string()),
                meeting: None,
                room: None,
                name: None,
                net,
                passcode: PasscodeArg::default(),
                media: AppMediaArgs::default(),
            };
            join(args)
        }
        None => {
            println!("No host found: starting one.");
            host(HostArgs {
                bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                net,
                passcode: PasscodeArg::default(),
                room: String::new(),
                name: None,
                headless: false,
                no_discovery: false,
                status_every: 10,
                auto: true,
                files: FileStoreArgs::default(),
                audio_codec: "opus".into(),
                audio_frame_ms: "20".into(),
                media: AppMediaArgs::default(),
                record: None,
            })
        }
    }
}

/// The host the app starts if the user hosts from it: all interfaces,
/// announced on the LAN.
fn app_host_options(net: &NetArgs) -> Result<HostOptions, String> {
    let mut opts = HostOptions::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), ports(net)?, machine_name());
    opts.discovery_target = Some(net.discovery_addr);
    opts.owner = Some(user_name());
    Ok(opts)
}

/// Runs the desktop app until its window closes.
fn open_app(
    launch: ui::Launch,
    net: &NetArgs,
    host: HostOptions,
    media: ui::MediaChoice,
    passcode: Option<sapora::transport::pake::Passcode>,
) -> CmdResult {
    let discovery = (net.discovery_addr, host.ports.discovery);
    let options = ui::Options { launch, discovery, host, media, passcode };
    ui::run(options).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn env_discovery_addr() -> IpAddr {
    std::env::var("SAPORA_DISCOVERY_ADDR")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::BROADCAST))
}

fn bot(args: BotArgs) -> CmdResult {
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
                    video: sapora::client::video::BotVideoOptions {
                        camera: args.camera.clone(),
                        subscribe: args.subscribe,
                        ..Default::default()
                    },
                    audio: sapora::client::audio::BotAudioOptions {
                        mic: args.mic.clone(),
                        speaker: args.speaker.clone(),
                        unmute_after: args.unmute_after.map(Duration::from_secs_f64),
                        voice: args.voice.settings(),
                        echo: args.echo,
                        noise: args.noise,
                    },
                    files: sapora::client::files_bot::BotFileOptions {
                        send_file: args.send_file.clone(),
                        fetch_dir: args.fetch_files.clone(),
                    },
                    screen: sapora::client::screen::BotScreenOptions {
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

fn discover_cmd(args: DiscoverArgs) -> CmdResult {
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 600.0) {
        return Err(format!("--timeout {} must be between 0 and 600 seconds", args.timeout));
    }
    let ports = ports(&args.net)?;
    let opts = DiscoverOptions {
        target: args.net.discovery_addr,
        port: ports.discovery,
        timeout: Duration::from_secs_f64(args.timeout),
    };
    let hosts = smol::block_on(discover(&opts))
        .map_err(|e| format!("cannot search the LAN (UDP port {}): {e}", ports.discovery))?;
    if args.json {
        println!("{}", hosts_to_json(&hosts));
    } else {
        print!("{}", format_hosts(&hosts));
    }
    Ok(ExitCode::SUCCESS)
}

fn schedule(cmd: ScheduleCommand) -> CmdResult {
    let store = Store::open_default().map_err(|e| e.to_string())?;
    let err = |e: sapora::schedule::ScheduleError| e.to_string();
    match cmd {
        ScheduleCommand::Add { id, title, start, duration, host } => {
            let mut m = Meeting::new(id, title, start);
            m.duration_min = duration;
            m.host = host;
            let m = store.add(m).map_err(err)?;
            println!(
                "Scheduled \"{}\" ({}) at {}. Join it with: sapora join --meeting {}",
                m.title, m.id, m.start, m.id
            );
        }
        ScheduleCommand::List { json } => {
            let list = store.list().map_err(err)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?);
            } else {
                println!("{}", format_table(&list));
            }
        }
        ScheduleCommand::Edit { id, title, start, duration, host } => {
            let edit = MeetingEdit {
                title,
                start,
                duration_min: duration,
                host: host.map(|h| Some(h).filter(|h| !h.trim().is_empty())),
            };
            let m = store.edit(&id, edit).map_err(err)?;
            println!(
                "Updated \"{}\" ({}): starts {}, {} min, host {}",
                m.title,
                m.id,
                m.start,
                m.duration_min,
                m.host.as_deref().unwrap_or("-")
            );
        }
        ScheduleCommand::Rm { id } => {
            let m = store.remove(&id).map_err(err)?;
            println!("Removed \"{}\" ({}).", m.title, m.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn devices() -> CmdResult {
    print!("{}", sapora::media::audio::device::describe_devices());
    print!("{}", sapora::media::video::describe_cameras());
    Ok(ExitCode::SUCCESS)
}

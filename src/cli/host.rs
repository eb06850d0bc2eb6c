//! `sapora host`: a meeting host, with the desktop app joined to it, or
//! headless with its status lines and console.

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::args::{AppMediaArgs, NetArgs, PasscodeArg};
use super::join::open_app;
use super::{CmdResult, clock, ctrl_c, machine_name, ports, uptime, user_name};
use crate::client::terminal;
use crate::server::{self, HostOptions, core::HostEvent};
use crate::ui;

#[derive(Args)]
pub(crate) struct HostArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub(crate) bind: IpAddr,
    #[command(flatten)]
    pub(crate) net: NetArgs,
    #[command(flatten)]
    pub(crate) passcode: PasscodeArg,
    /// Your meeting (room) on this host; blank = "default"
    #[arg(long, value_name = "NAME", default_value = "")]
    pub(crate) room: String,
    /// The host's name, shown in discovery (default: this machine's name)
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Run without a window: relay only
    #[arg(long)]
    pub(crate) headless: bool,
    /// Do not announce this host on the LAN
    #[arg(long)]
    pub(crate) no_discovery: bool,
    /// Connections one address may hold at once (default 64); raise it when
    /// many members share one address (behind a NAT, or bots on one machine)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) max_connections_per_address: Option<u16>,
    /// Seconds between status lines
    #[arg(long, value_name = "SECS", default_value_t = 10, hide = true)]
    pub(crate) status_every: u64,
    /// Started by `sapora` with no arguments: merge with another such host
    /// started at the same moment (never set from the command line)
    #[arg(skip)]
    pub(crate) auto: bool,
    #[command(flatten)]
    pub(crate) files: FileStoreArgs,
    /// Codec of the audio mix: opus (about 60 kbps per listener) or pcm (raw 16-bit, 780 kbps, least CPU)
    #[arg(long, value_name = "CODEC", default_value = "opus", value_parser = ["opus", "pcm"])]
    pub(crate) audio_codec: String,
    /// Audio frame length in ms: 20, or 10 for less delay at the cost of twice the packets (clients follow the host)
    #[arg(long, value_name = "MS", default_value = "20", value_parser = ["10", "20"])]
    pub(crate) audio_frame_ms: String,
    #[command(flatten)]
    pub(crate) media: AppMediaArgs,
    /// Record every meeting on this host from its start into DIR (the mix as .opus, chat as .vtt and .jsonl); without it, /record on records into ~/.local/share/sapora/recordings
    #[arg(long, value_name = "DIR")]
    pub(crate) record: Option<std::path::PathBuf>,
}

/// The host's file store: `sapora host` options.
#[derive(Args, Clone)]
pub(crate) struct FileStoreArgs {
    /// Largest file participants may share, in MiB (1 MiB = 1,048,576 bytes)
    #[arg(long, value_name = "MiB", default_value_t = 100)]
    pub(crate) max_file_mb: u64,
    /// Folder for shared files (a fresh subfolder is made and removed at exit; default: the OS temp folder)
    #[arg(long, value_name = "DIR")]
    pub(crate) file_dir: Option<std::path::PathBuf>,
    /// Keep a meeting's files this many seconds after the last participant leaves
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub(crate) file_retention_secs: u64,
}

impl Default for FileStoreArgs {
    fn default() -> FileStoreArgs {
        FileStoreArgs { max_file_mb: 100, file_dir: None, file_retention_secs: 60 }
    }
}

impl FileStoreArgs {
    pub(crate) fn apply(&self, opts: &mut HostOptions) {
        opts.max_file_bytes = self.max_file_mb.saturating_mul(1024 * 1024);
        opts.file_store_dir = self.file_dir.clone();
        opts.file_retention = Duration::from_secs(self.file_retention_secs);
    }
}

/// Prints the browser guests' page addresses ("Browsers join at:
/// https://IP:PORT/"), served on the host's TCP port (`HostOptions::web`).
pub(crate) fn print_web(bind: IpAddr, port: u16) {
    let ips: Vec<IpAddr> = share_addrs(bind).into_iter().map(|(ip, _)| ip).collect();
    for (i, url) in crate::guest::page_urls(&ips, port).into_iter().enumerate() {
        let lead = if i == 0 { "  Browsers join at:" } else { "                   " };
        println!("{lead}  {url}");
    }
}

/// The addresses to tell others, each with its interface name: the bound
/// one, or every LAN address of this machine (`lanif::join_addresses`).
pub(crate) fn share_addrs(bind: IpAddr) -> Vec<(IpAddr, Option<String>)> {
    if !bind.is_unspecified() {
        return vec![(bind, None)];
    }
    let list = crate::lanif::join_addresses();
    if list.is_empty() {
        return vec![(IpAddr::V4(Ipv4Addr::LOCALHOST), Some("loopback: no network found".into()))];
    }
    list.into_iter().map(|(name, ip)| (IpAddr::V4(ip), Some(name))).collect()
}

pub(crate) fn run(args: HostArgs) -> CmdResult {
    let ports = ports(&args.net)?;
    let headless = args.headless || !ui::display_available();
    if let Some(camera) =
        args.media.camera.as_ref().filter(|c| **c != Default::default() && headless)
    {
        println!("sapora: {camera} is for the desktop app; the headless host sends no video.");
    }
    let mut opts = HostOptions::new(args.bind, ports, args.name.unwrap_or_else(machine_name));
    opts.owner = Some(user_name());
    opts.web = Some(std::sync::Arc::new(crate::guest::GuestPage));
    if let Some(n) = args.max_connections_per_address {
        opts.max_connections_per_address = n.into();
    }
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
        opts.audio_codec = crate::proto::AudioCodec::Pcm16;
    }
    if args.audio_frame_ms == "10" {
        opts.audio_frame_samples = crate::media::audio::FRAME_10MS;
    }
    if !args.headless {
        if ui::display_available() {
            let launch = ui::Launch::Host { name: user_name(), room: args.room.trim().to_string() };
            let media = args.media.choice();
            print_web(args.bind, opts.ports.control);
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
        if let Some(crate::transport::cert::Loaded::Replaced { reason, kept_at }) =
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
            "  Ports: {}/udp (QUIC: control, files, screen, audio, video), {}/tcp (TLS: fallback, browser page), discovery {}/udp",
            p.control, p.control, p.discovery
        );
        print_web(args.bind, p.control);
        match opts.discovery_target {
            Some(t) if t == crate::server::beacon::LAN_BROADCAST => {
                let ifs = crate::lanif::lan_interfaces();
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
                    Some(Ok(crate::proto::Control::Hand { .. })) => {
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

pub(crate) fn describe(e: &HostEvent) -> Option<String> {
    use crate::proto::PresenceChange::*;
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
pub(crate) const HOST_CONSOLE_HELP: &str = "/lock, /unlock, /mute NAME, /hold NAME, /stopvideo NAME, /remove NAME, /letback NAME, /cohost NAME, /end, /record on|off";

//! The `sapora` command line: the clap definitions, one runner per
//! subcommand, and what they print for people and scripts (tables and JSON
//! built from the library's types). `main.rs` only sets up logging and calls
//! [`run`]. Every runner prints a clear message and returns a non-zero exit
//! code on failure rather than panicking. This is the top of the crate: it may
//! launch the desktop app (`ui`), and nothing else imports it.

mod args;
mod bot;
pub mod discover;
mod files;
mod host;
mod join;
mod recordings;
pub mod schedule;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::proto::Ports;
use args::NetArgs;
use bot::BotArgs;
use discover::DiscoverArgs;
use files::{FetchArgs, FilesArgs, SendArgs};
use host::HostArgs;
use join::JoinArgs;
use recordings::RecordingsArgs;
use schedule::ScheduleCommand;

/// The parsed command line (`Cli::parse()`, from `clap::Parser`).
#[derive(Parser)]
#[command(
    name = "sapora",
    version,
    about = "LAN video conferencing: voice, video, chat, files and screen sharing, no accounts, no internet",
    long_about = "LAN video conferencing: voice, video, chat, files and screen sharing, no accounts, no internet.\n\nWith no command, sapora looks for a host on the LAN for about a second and joins it, or starts hosting if there is none."
)]
pub struct Cli {
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

/// Runs the command line's subcommand (with none: join a host found on the
/// LAN, or host) and maps its outcome to the process exit code: 0 on
/// success, 1 with `sapora: …` on standard error on failure, and 3 for a
/// passcode refusal (missing, wrong, too many tries).
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        None => join::auto(),
        Some(Command::Host(args)) => host::run(args),
        Some(Command::Join(args)) => join::run(args),
        Some(Command::Bot(args)) => bot::run(args),
        Some(Command::Discover(args)) => discover::run(args),
        Some(Command::Schedule { command }) => schedule::run(command),
        Some(Command::Devices) => devices(),
        Some(Command::Send(a)) => files::send(a),
        Some(Command::Files(a)) => files::list(a),
        Some(Command::Fetch(a)) => files::fetch(a),
        Some(Command::Recordings(a)) => recordings::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sapora: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit code of a join refused for its passcode (missing, wrong, too many
/// tries), so scripts can tell it from a network failure (1).
pub(crate) const EXIT_PASSCODE: u8 = 3;

/// A runner's outcome: an exit code, or the message for `sapora: …`.
pub(crate) type CmdResult = Result<ExitCode, String>;

/// `ip`, `ip:port` or `name[:port]`; the port defaults to the control port.
pub(crate) fn parse_host(host: &str, default_port: u16) -> Result<SocketAddr, String> {
    crate::client::parse_address(host, default_port)
}

pub(crate) fn ports(net: &NetArgs) -> Result<Ports, String> {
    Ports::with_offset(net.port_offset)
}

pub(crate) fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sapora-host".into())
}

pub(crate) fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "guest".into())
}

/// Ctrl+C (and SIGTERM) as a channel that closes when the signal arrives.
pub(crate) fn ctrl_c() -> smol::channel::Receiver<()> {
    let (tx, rx) = smol::channel::bounded::<()>(1);
    let tx = std::sync::Mutex::new(Some(tx));
    let _ = ctrlc::set_handler(move || {
        if let Ok(mut t) = tx.lock() {
            t.take(); // dropping the sender closes the channel
        }
    });
    rx
}

pub(crate) fn clock() -> String {
    jiff::Zoned::now().strftime("%H:%M:%S").to_string()
}

pub(crate) fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

pub(crate) fn devices() -> CmdResult {
    print!("{}", crate::media::audio::device::describe_devices());
    print!("{}", crate::media::video::describe_cameras());
    Ok(ExitCode::SUCCESS)
}

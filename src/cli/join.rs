//! `sapora join`, and `sapora` with no command: the desktop app, or the
//! terminal chat when there is no display.

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::args::{AppMediaArgs, NetArgs, PasscodeArg};
use super::host::{FileStoreArgs, HostArgs};
use super::{CmdResult, EXIT_PASSCODE, machine_name, parse_host, ports, user_name};
use crate::client::discover::{DiscoverOptions, discover};
use crate::client::terminal;
use crate::schedule::Store;
use crate::server::HostOptions;
use crate::ui;

#[derive(Args)]
pub(crate) struct JoinArgs {
    /// Host address: ip or ip:port (default port 5000 + offset)
    #[arg(value_name = "HOST", required_unless_present = "meeting")]
    pub(crate) host: Option<String>,
    /// Join a scheduled meeting: fills host and room from `sapora schedule`
    #[arg(long, value_name = "ID")]
    pub(crate) meeting: Option<String>,
    /// Meeting (room) to join; blank = "default"
    #[arg(long, value_name = "NAME")]
    pub(crate) room: Option<String>,
    /// Your name in the meeting (default: your login name)
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    #[command(flatten)]
    pub(crate) net: NetArgs,
    #[command(flatten)]
    pub(crate) passcode: PasscodeArg,
    #[command(flatten)]
    pub(crate) media: AppMediaArgs,
}

pub(crate) fn run(args: JoinArgs) -> CmdResult {
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
pub(crate) fn auto() -> CmdResult {
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
            run(args)
        }
        None => {
            println!("No host found: starting one.");
            super::host::run(HostArgs {
                bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                net,
                passcode: PasscodeArg::default(),
                room: String::new(),
                name: None,
                headless: false,
                no_discovery: false,
                max_connections_per_address: None,
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
pub(crate) fn app_host_options(net: &NetArgs) -> Result<HostOptions, String> {
    let mut opts = HostOptions::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), ports(net)?, machine_name());
    opts.discovery_target = Some(net.discovery_addr);
    opts.owner = Some(user_name());
    opts.web = Some(std::sync::Arc::new(crate::guest::GuestPage));
    Ok(opts)
}

/// Runs the desktop app until its window closes.
pub(crate) fn open_app(
    launch: ui::Launch,
    net: &NetArgs,
    host: HostOptions,
    media: ui::MediaChoice,
    passcode: Option<crate::transport::pake::Passcode>,
) -> CmdResult {
    let discovery = (net.discovery_addr, host.ports.discovery);
    let options = ui::Options { launch, discovery, host, media, passcode };
    ui::run(options).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn env_discovery_addr() -> IpAddr {
    std::env::var("SAPORA_DISCOVERY_ADDR")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::BROADCAST))
}

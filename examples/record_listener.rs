//! "Record what you hear": joins a room as a listener with no microphone and
//! writes the room's mix (everyone's voice, as this member hears it) to a
//! 48 kHz mono 16-bit WAV file, built on the Sapora library.
//!
//! ```sh
//! cargo run --example record_listener -- 192.168.1.20 meeting.wav --seconds 60
//! ```
//!
//! Arguments: `HOST[:PORT]` (port 5000 by default) and `OUT.wav`, then
//! optionally `--room NAME`, `--name NAME` (default "recorder") and
//! `--seconds N` (default 30). At the end it prints what it received.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use sapora::client::audio::{AudioConfig, AudioEngine};
use sapora::client::parse_address;
use sapora::client::session::{Client, ClientConfig};
use sapora::media::audio::{MicSpec, SpeakerSpec};

struct Args {
    host: String,
    out: PathBuf,
    room: String,
    name: String,
    seconds: f64,
}

fn parse_args() -> Result<Args, String> {
    let usage =
        "usage: record_listener HOST[:PORT] OUT.wav [--room NAME] [--name NAME] [--seconds N]";
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let (mut room, mut name, mut seconds) = (String::new(), "recorder".to_string(), 30.0);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--room" => room = args.next().ok_or(usage)?,
            "--name" => name = args.next().ok_or(usage)?,
            "--seconds" => {
                let v = args.next().ok_or(usage)?;
                seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
                    .ok_or(format!("--seconds {v:?} is not a number of seconds (0 to 86400)"))?;
            }
            "-h" | "--help" => return Err(usage.into()),
            _ if !arg.starts_with('-') => positional.push(arg),
            _ => return Err(format!("unexpected argument {arg:?}\n{usage}")),
        }
    }
    let [host, out]: [String; 2] = positional.try_into().map_err(|_| usage.to_string())?;
    Ok(Args { host, out: PathBuf::from(out), room, name, seconds })
}

fn main() -> ExitCode {
    match smol::block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("record_listener: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let addr = parse_address(&args.host, 5000)?;
    let client = Client::connect(ClientConfig::new(addr, args.name, args.room))
        .await
        .map_err(|e| e.to_string())?;
    let config = AudioConfig::new(MicSpec::None, SpeakerSpec::Record(args.out.clone()));
    let engine = AudioEngine::start(
        sapora::client::media::MediaLink::of(&client).map_err(|e| e.to_string())?,
        config,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "recording room {:?} to {} for {} s",
        client.welcome().room,
        args.out.display(),
        args.seconds
    );
    smol::Timer::after(Duration::from_secs_f64(args.seconds)).await;
    let stats = engine.stats();
    // Stopping finalises the WAV header; an error here means the file is incomplete.
    engine.stop().map_err(|e| e.to_string())?;
    client.leave().await;
    println!(
        "wrote {}: {} frames played, {} concealed, {} packets lost",
        args.out.display(),
        stats.frames_played,
        stats.frames_concealed,
        stats.packets_lost
    );
    Ok(())
}

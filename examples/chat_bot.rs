//! A chat bot built on the Sapora library: it joins a room and answers
//! `!time`, `!who` and `!echo TEXT`; private messages are answered privately.
//!
//! ```sh
//! cargo run --example chat_bot -- 192.168.1.20 --room standup
//! ```
//!
//! Arguments: `HOST[:PORT]` (port 5000 by default), then optionally
//! `--room NAME` and `--name NAME` (default "helper"). It reconnects by itself
//! when the link drops (the session's rejoin), and stops on Ctrl+C or when
//! the host ends the meeting.

use std::collections::BTreeSet;
use std::process::ExitCode;

use sapora::client::parse_address;
use sapora::client::session::{Client, ClientConfig, Event};

fn main() -> ExitCode {
    match smol::block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat_bot: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `HOST [--room NAME] [--name NAME]`, or a usage message.
fn parse_args() -> Result<(String, String, String), String> {
    let usage = "usage: chat_bot HOST[:PORT] [--room NAME] [--name NAME]";
    let mut args = std::env::args().skip(1);
    let (mut host, mut room, mut name) = (None, String::new(), "helper".to_string());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--room" => room = args.next().ok_or(usage)?,
            "--name" => name = args.next().ok_or(usage)?,
            "-h" | "--help" => return Err(usage.into()),
            _ if host.is_none() && !arg.starts_with('-') => host = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}\n{usage}")),
        }
    }
    Ok((host.ok_or(usage)?, room, name))
}

/// The answer to one message, if it is a command this bot knows.
fn answer(text: &str, members: &BTreeSet<String>) -> Option<String> {
    let text = text.trim();
    if text == "!time" {
        return Some(jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S %Z").to_string());
    }
    if text == "!who" {
        let names: Vec<&str> = members.iter().map(String::as_str).collect();
        return Some(format!("{} here: {}", names.len(), names.join(", ")));
    }
    text.strip_prefix("!echo ").map(str::to_string)
}

async fn run() -> Result<(), String> {
    let (host, room, name) = parse_args()?;
    let addr = parse_address(&host, 5000)?;
    let client =
        Client::connect(ClientConfig::new(addr, name, room)).await.map_err(|e| e.to_string())?;
    let me = client.welcome().name.clone();
    println!("joined {addr} as {me} in room {:?}", client.welcome().room);
    let mut members = BTreeSet::new();
    let events = client.events();
    while let Ok(event) = events.recv().await {
        match event {
            Event::Members(list) => {
                members = list.members.iter().map(|m| m.name.clone()).collect();
            }
            Event::Chat(msg) if msg.from != me => {
                if let Some(reply) = answer(&msg.text, &members) {
                    // A private question gets a private answer.
                    let to = msg.to.as_ref().map(|_| msg.from.as_str());
                    client.chat(to, &reply).map_err(|e| e.to_string())?;
                }
            }
            Event::Disconnected { reason, retrying: true, .. } => {
                eprintln!("link lost ({reason}); rejoining");
            }
            Event::Refused(r) => return Err(format!("the host refused: {}", r.reason)),
            Event::Ended => break,
            _ => {}
        }
    }
    Ok(())
}

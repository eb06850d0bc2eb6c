//! `sapora join` without the desktop app: a line-based chat client.
//! Lines typed go to the room; `/to NAME text` is private; `/who` lists the
//! room; `/quit` (or end of input) leaves.

use std::io::BufRead;
use std::net::SocketAddr;

use smol::future::FutureExt;

use super::session::{Client, ClientConfig, ClientError, Event};
use crate::proto::{ChatOutcome, Member, PresenceChange};

enum Wake {
    Line(Option<String>),
    Event(Option<Event>),
}

fn time_of(ts_ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ts_ms as i64)
        .map(|t| t.to_zoned(jiff::tz::TimeZone::system()).strftime("%H:%M").to_string())
        .unwrap_or_default()
}

/// `host`: the member the host marked as running it (`UserList::host_member`).
fn who(members: &[Member], host: Option<&str>) -> String {
    let show = |m: &Member| {
        let mut flags = Vec::new();
        if host == Some(m.name.as_str()) {
            flags.push("host");
        }
        if m.mic {
            flags.push("mic");
        }
        if m.camera {
            flags.push("camera");
        }
        if m.screen {
            flags.push("sharing");
        }
        if flags.is_empty() {
            format!("{} ({})", m.name, m.ip)
        } else {
            format!("{} ({}, {})", m.name, m.ip, flags.join(", "))
        }
    };
    members.iter().map(show).collect::<Vec<_>>().join(", ")
}

pub async fn run(host: SocketAddr, name: String, room: String) -> Result<(), ClientError> {
    println!("Connecting to {host}…");
    let client = Client::connect(ClientConfig::new(host, name, room)).await?;
    let w = client.welcome();
    println!("Joined meeting \"{}\" on \"{}\" as {}.", w.room, w.host_name, w.name);
    println!("In the meeting: {}", who(&w.members, w.host_member.as_deref()));
    for m in &w.history {
        println!("[{}] {}: {}", time_of(m.ts_ms), m.from, m.text);
    }
    println!(
        "Type a message and press Enter. /to NAME text sends privately, /who lists people, /fetch ID downloads a shared file, /quit leaves."
    );

    // Reading stdin blocks, so it gets a thread of its own.
    let (line_tx, lines) = smol::channel::unbounded::<String>();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if line_tx.send_blocking(line).is_err() {
                    break;
                }
            }
        })
        .ok();
    let events = client.events();
    let mut members = w.members.clone();
    let mut host_member = w.host_member.clone();
    loop {
        let wake = async { Wake::Line(lines.recv().await.ok()) }
            .or(async { Wake::Event(events.recv().await.ok()) })
            .await;
        match wake {
            Wake::Line(None) => break,
            Wake::Line(Some(line)) => {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let sent = if line == "/quit" {
                    break;
                } else if line == "/who" {
                    println!("In the meeting: {}", who(&members, host_member.as_deref()));
                    continue;
                } else if let Some(id) = line.strip_prefix("/fetch ") {
                    match id.trim().parse::<u64>() {
                        Ok(id) => super::files_cli::fetch_in_background(&client, host, id),
                        Err(_) => println!("usage: /fetch ID (the number in the file's notice)"),
                    }
                    continue;
                } else if let Some(rest) = line.strip_prefix("/to ") {
                    match rest.trim().split_once(' ') {
                        Some((to, text)) => client.chat(Some(to), text.trim()),
                        None => {
                            println!("usage: /to NAME message");
                            continue;
                        }
                    }
                } else {
                    client.chat(None, line)
                };
                if let Err(e) = sent {
                    println!("! {e}");
                }
            }
            Wake::Event(None | Some(Event::Ended)) => {
                println!("The session has ended.");
                break;
            }
            Wake::Event(Some(e)) => match e {
                Event::Chat(m) => match &m.to {
                    Some(_) => {
                        println!("[{}] {} (privately): {}", time_of(m.ts_ms), m.from, m.text)
                    }
                    None => println!("[{}] {}: {}", time_of(m.ts_ms), m.from, m.text),
                },
                Event::ChatResult(r) => match r.outcome {
                    ChatOutcome::Delivered { to: Some(to), ts_ms, .. } => {
                        println!("[{}] (delivered privately to {to})", time_of(ts_ms))
                    }
                    ChatOutcome::Delivered { .. } => {}
                    ChatOutcome::Refused { reason } => println!("! not sent: {reason}"),
                },
                Event::Presence(p) => {
                    let how = match p.change {
                        PresenceChange::Joined => "joined",
                        PresenceChange::Left => "left",
                        PresenceChange::TimedOut => "timed out",
                        PresenceChange::Dropped => "dropped out",
                    };
                    println!("* {} {how}", p.name);
                }
                Event::Members(l) => (members, host_member) = (l.members, l.host_member),
                Event::Disconnected { reason, retrying, .. } => {
                    println!("* {reason}{}", if retrying { " — reconnecting…" } else { "" })
                }
                Event::Joined { welcome, rejoined: true } => {
                    members = welcome.members.clone();
                    host_member = welcome.host_member.clone();
                    println!("* reconnected to \"{}\" as {}", welcome.room, welcome.name);
                }
                Event::Joined { .. } => {}
                Event::Refused(r) => println!("! the host refused to take you back: {}", r.reason),
                Event::Moved { to, host_name } => {
                    println!("* the meeting moved to {host_name}'s host at {to}; following it…")
                }
                Event::MediaBlocked(text) => println!("! {text}"),
                Event::Ended => {}
                Event::FileOffered(f) => println!(
                    "* {} shared \"{}\" ({} bytes{}): type /fetch {} to download it",
                    f.sender,
                    f.name,
                    f.size,
                    if f.private() { ", privately with you" } else { "" },
                    f.id
                ),
            },
        }
    }
    client.leave().await;
    println!("You left the meeting.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_marks_the_host() {
        let m = |name: &str| Member {
            name: name.into(),
            ip: "10.0.0.2".into(),
            mic: false,
            camera: true,
            screen: false,
        };
        let list = [m("ann"), m("bo")];
        assert_eq!(who(&list, Some("bo")), "ann (10.0.0.2, camera), bo (10.0.0.2, host, camera)");
        assert_eq!(who(&list, None), "ann (10.0.0.2, camera), bo (10.0.0.2, camera)");
    }
}

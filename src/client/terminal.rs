//! `sapora join` without the desktop app: a line-based chat client.
//! Lines typed go to the room; `/to NAME text` is private (`NAME` is the
//! longest member name the line starts with, so `/to Ana Maria hi` reaches
//! "Ana Maria"; `/to "Ana Maria" hi` quotes it); `/who` lists the room;
//! `/quit` (or end of input) leaves.
//!
//! Everything another party controls (chat text, names, file names, reasons
//! given by the host) is printed through [`text::visible`]: control
//! characters are shown, never obeyed, and a multi-line message has its
//! continuation lines indented, so it cannot pose as lines of its own.

use std::io::BufRead;
use std::net::SocketAddr;

use smol::future::FutureExt;

use super::session::{Client, ClientConfig, ClientError, Event};
use crate::proto::text::{self, visible};
use crate::proto::{ChatMessage, ChatOutcome, Control, Member, PresenceChange};

/// Continuation lines of a chat message start with this.
const INDENT: &str = "    | ";

/// One chat line as printed: `[12:03] alice: text`, names and text made
/// visible, continuation lines indented.
fn chat_line(m: &ChatMessage) -> String {
    let private = if m.to.is_some() { " (privately)" } else { "" };
    format!(
        "[{}] {}{private}: {}",
        time_of(m.ts_ms),
        visible(&m.from),
        text::visible_lines(&m.text, INDENT)
    )
}

/// Splits what follows `/to ` into the recipient and the message.
///
/// `"Ana Maria" hi` takes the quoted name. Otherwise the recipient is the
/// longest member name the line starts with, compared as the host compares
/// names ([`text::confusable_key`]: case and look-alikes do not matter) and
/// ending at a space, so `Ana Maria hi` reaches "Ana Maria" even when "Ana"
/// is in the meeting too. With no such member the first word is taken (the
/// host then says there is no such member).
pub fn split_recipient<'a>(rest: &'a str, members: &[Member]) -> Option<(String, &'a str)> {
    let rest = rest.trim_start();
    if let Some(quoted) = rest.strip_prefix('"') {
        let (name, text) = quoted.split_once('"')?;
        let text = text.trim();
        return (!name.trim().is_empty() && !text.is_empty()).then(|| (name.trim().into(), text));
    }
    let best = members
        .iter()
        .filter_map(|m| {
            // The same number of words as the member's name.
            let words = m.name.split(' ').count();
            let end = rest
                .char_indices()
                .filter(|(_, c)| *c == ' ')
                .map(|(i, _)| i)
                .nth(words - 1)
                .unwrap_or(rest.len());
            let candidate = &rest[..end];
            (text::confusable_key(candidate) == text::confusable_key(&m.name)).then_some((
                m.name.chars().count(),
                m.name.clone(),
                end,
            ))
        })
        .max_by_key(|(len, _, _)| *len);
    let (name, end) = match best {
        Some((_, name, end)) => (name, end),
        None => {
            let end = rest.find(' ')?;
            (rest[..end].to_string(), end)
        }
    };
    let text = rest[end..].trim();
    (!text.is_empty()).then_some((name, text))
}

/// The host controls a line may be, as typed in `sapora join` and the
/// headless host's console: `None` when the line is not one of them,
/// `Some(Err(usage))` when it is but is incomplete.
///
/// `/lock`, `/unlock`, `/mute NAME` (they may unmute), `/hold NAME` (muted
/// until the host mutes them again with `/mute`), `/stopvideo NAME`,
/// `/remove NAME`, `/letback NAME`, `/cohost NAME`, `/uncohost NAME`, `/end`,
/// `/hand` (raise, or lower if `hand_up`), `/record on|off`. A NAME is the
/// rest of the line, so names with spaces need no quotes (quotes are
/// accepted); the host matches it as it matches chat recipients.
pub fn parse_control(line: &str, hand_up: bool) -> Option<Result<Control, String>> {
    let line = line.trim();
    let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    let name = || -> Result<String, String> {
        let n = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')).unwrap_or(rest).trim();
        if n.is_empty() { Err(format!("usage: {cmd} NAME")) } else { Ok(n.to_string()) }
    };
    let control = match cmd {
        "/lock" => Ok(Control::Lock),
        "/unlock" => Ok(Control::Unlock),
        "/end" => Ok(Control::End),
        "/hand" => Ok(Control::Hand { raised: !hand_up }),
        "/mute" => name().map(|name| Control::Mute { name, may_unmute: true }),
        "/hold" => name().map(|name| Control::Mute { name, may_unmute: false }),
        "/stopvideo" => name().map(|name| Control::StopVideo { name }),
        "/remove" => name().map(|name| Control::Remove { name }),
        "/letback" => name().map(|name| Control::LetBack { name }),
        "/cohost" => name().map(|name| Control::CoHost { name, on: true }),
        "/uncohost" => name().map(|name| Control::CoHost { name, on: false }),
        "/record" => match rest {
            "on" => Ok(Control::Record { on: true }),
            "off" => Ok(Control::Record { on: false }),
            _ => Err("usage: /record on|off".to_string()),
        },
        _ => return None,
    };
    Some(control)
}

/// The controls, for the help line.
pub const CONTROLS_HELP: &str = "/hand raises or lowers your hand; hosts: /lock, /unlock, /mute NAME, /hold NAME, /stopvideo NAME, /remove NAME, /letback NAME, /cohost NAME, /end, /record on|off";

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
        let name = visible(&m.name);
        let ip = visible(&m.ip);
        if flags.is_empty() {
            format!("{name} ({ip})")
        } else {
            format!("{name} ({ip}, {})", flags.join(", "))
        }
    };
    members.iter().map(show).collect::<Vec<_>>().join(", ")
}

pub async fn run(
    host: SocketAddr,
    name: String,
    room: String,
    passcode: Option<crate::transport::pake::Passcode>,
) -> Result<(), ClientError> {
    println!("Connecting to {host}…");
    let asked = name.clone();
    let mut config = ClientConfig::new(host, name, room);
    config.passcode = passcode;
    let client = Client::connect(config).await?;
    let w = client.welcome();
    println!(
        "Joined meeting \"{}\" on \"{}\" as {}.",
        visible(&w.room),
        visible(&w.host_name),
        visible(&w.name)
    );
    if crate::proto::text::label(&asked, "name", usize::MAX).is_ok_and(|a| a != w.name) {
        println!(
            "* you are {1}: \"{0}\" is taken here, looks the same as a name that is, or is too long.",
            visible(asked.trim()),
            visible(&w.name)
        );
    }
    println!("In the meeting: {}", who(&w.members, w.host_member.as_deref()));
    for m in &w.history {
        println!("{}", chat_line(m));
    }
    println!(
        "Type a message and press Enter. /to NAME text sends privately (quote a name: /to \"Ana Maria\" hi), /who lists people, /fetch ID downloads a shared file, /quit leaves."
    );
    println!("{CONTROLS_HELP}.");

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
    let mut room = crate::proto::RoomState::default();
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
                } else if let Some(control) =
                    parse_control(line, room.hands.iter().any(|h| h.name == client.current().name))
                {
                    match control.map(|c| client.control(c)) {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => println!("! {}", visible(&e.to_string())),
                        Err(usage) => println!("{usage}"),
                    }
                    continue;
                } else if let Some(id) = line.strip_prefix("/fetch ") {
                    match id.trim().parse::<u64>() {
                        Ok(id) => super::files_cli::fetch_in_background(&client, id),
                        Err(_) => println!("usage: /fetch ID (the number in the file's notice)"),
                    }
                    continue;
                } else if let Some(rest) = line.strip_prefix("/to ") {
                    match split_recipient(rest, &members) {
                        Some((to, text)) => client.chat(Some(&to), text),
                        None => {
                            println!(
                                "usage: /to NAME message (or /to \"NAME WITH SPACES\" message)"
                            );
                            continue;
                        }
                    }
                } else {
                    client.chat(None, line)
                };
                if let Err(e) = sent {
                    println!("! {}", visible(&e.to_string()));
                }
            }
            Wake::Event(None | Some(Event::Ended)) => {
                println!("The session has ended.");
                break;
            }
            Wake::Event(Some(e)) => match e {
                Event::Chat(m) => println!("{}", chat_line(&m)),
                Event::ChatResult(r) => match r.outcome {
                    ChatOutcome::Delivered { to: Some(to), ts_ms, .. } => {
                        println!("[{}] (delivered privately to {})", time_of(ts_ms), visible(&to))
                    }
                    ChatOutcome::Delivered { .. } => {}
                    ChatOutcome::Refused { reason } => println!("! not sent: {}", visible(&reason)),
                },
                Event::Presence(p) => {
                    let how = match p.change {
                        PresenceChange::Joined => "joined",
                        PresenceChange::Left => "left",
                        PresenceChange::TimedOut => "timed out",
                        PresenceChange::Dropped => "dropped out",
                    };
                    println!("* {} {how}", visible(&p.name));
                }
                Event::Members(l) => (members, host_member) = (l.members, l.host_member),
                Event::Disconnected { reason, retrying, .. } => {
                    let reason = visible(&reason);
                    println!("* {reason}{}", if retrying { " — reconnecting…" } else { "" })
                }
                Event::Joined { welcome, rejoined: true } => {
                    members = welcome.members.clone();
                    host_member = welcome.host_member.clone();
                    println!(
                        "* reconnected to \"{}\" as {}",
                        visible(&welcome.room),
                        visible(&welcome.name)
                    );
                }
                Event::Joined { .. } => {}
                Event::Refused(r) => {
                    println!("! the host refused to take you back: {}", visible(&r.reason))
                }
                Event::Moved { to, host_name } => {
                    println!(
                        "* the meeting moved to {}'s host at {to}; following it…",
                        visible(&host_name)
                    )
                }
                Event::MediaBlocked(text) => println!("! {}", visible(&text)),
                Event::Ended => {}
                Event::ControlNotice(n) => println!("* {}", visible(&n.text)),
                Event::ControlResult(r) => {
                    if let Some(reason) = r.refused {
                        println!("! refused: {}", visible(&reason))
                    }
                }
                Event::RoomState(state) => {
                    let hands: Vec<String> = state.hands.iter().map(|h| h.name.clone()).collect();
                    let before: Vec<String> = room.hands.iter().map(|h| h.name.clone()).collect();
                    if hands != before && !hands.is_empty() {
                        println!("* raised hands: {}", visible(&hands.join(", ")));
                    }
                    room = state;
                }
                Event::FileOffered(f) => println!(
                    "* {} shared \"{}\" ({} bytes{}): type /fetch {} to download it",
                    visible(&f.sender),
                    visible(&f.name),
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
        // A hostile name cannot reorder or hide the rest of the line.
        let evil = [m("bob\u{202e}gnp.exe")];
        assert_eq!(who(&evil, None), "bob<U+202E>gnp.exe (10.0.0.2, camera)");
    }

    fn member(name: &str) -> Member {
        Member {
            name: name.into(),
            ip: "10.0.0.2".into(),
            mic: false,
            camera: false,
            screen: false,
        }
    }

    #[test]
    fn a_chat_message_cannot_clear_the_screen_or_fake_a_line() {
        let m = ChatMessage {
            id: 1,
            from: "mallory".into(),
            to: None,
            text: "\x1b[2J\x1b]0;pwned\x07\nalice: fake line".into(),
            ts_ms: 0,
        };
        let line = chat_line(&m);
        assert!(!line.contains('\x1b') && !line.contains('\x07'), "{line:?}");
        let lines: Vec<&str> = line.lines().collect();
        assert_eq!(lines.len(), 2, "{line:?}");
        assert!(lines[0].ends_with("mallory: ␛[2J␛]0;pwned␇"), "{line:?}");
        // The second line is visibly a continuation, not a line from alice.
        assert_eq!(lines[1], "    | alice: fake line");
        // The sender's name is remote-controlled too.
        let m = ChatMessage { from: "eve\r\x1b[1A".into(), text: "x".into(), ..m };
        assert!(chat_line(&m).contains("eve␍␛[1A: x"), "{}", chat_line(&m));
    }

    #[test]
    fn control_commands_parse_with_names_with_spaces() {
        let p = |line| parse_control(line, false);
        assert_eq!(p("/lock"), Some(Ok(Control::Lock)));
        assert_eq!(p("/end "), Some(Ok(Control::End)));
        assert_eq!(
            p("/mute Ana Maria"),
            Some(Ok(Control::Mute { name: "Ana Maria".into(), may_unmute: true }))
        );
        assert_eq!(
            p("/hold \"Ana Maria\""),
            Some(Ok(Control::Mute { name: "Ana Maria".into(), may_unmute: false }))
        );
        assert_eq!(p("/remove  bob "), Some(Ok(Control::Remove { name: "bob".into() })));
        assert_eq!(p("/cohost bob"), Some(Ok(Control::CoHost { name: "bob".into(), on: true })));
        assert_eq!(p("/hand"), Some(Ok(Control::Hand { raised: true })));
        assert_eq!(parse_control("/hand", true), Some(Ok(Control::Hand { raised: false })));
        assert_eq!(p("/record on"), Some(Ok(Control::Record { on: true })));
        assert_eq!(p("/record maybe"), Some(Err("usage: /record on|off".into())));
        assert_eq!(p("/mute"), Some(Err("usage: /mute NAME".into())));
        assert_eq!(p("/to bob hi"), None);
        assert_eq!(p("hello /lock"), None);
    }

    #[test]
    fn to_reaches_names_with_spaces_by_longest_match_or_quotes() {
        let members =
            [member("Ana"), member("Ana Maria"), member("bob"), member("Jean Luc Picard")];
        let split = |rest| split_recipient(rest, &members);
        assert_eq!(split("Ana Maria hi"), Some(("Ana Maria".into(), "hi")));
        assert_eq!(split("Ana hi there"), Some(("Ana".into(), "hi there")));
        assert_eq!(split("ana maria  hi "), Some(("Ana Maria".into(), "hi")), "case");
        assert_eq!(split("Jean Luc Picard engage"), Some(("Jean Luc Picard".into(), "engage")));
        assert_eq!(split("\"Ana Maria\" hi"), Some(("Ana Maria".into(), "hi")));
        assert_eq!(split("\"Someone Else\" hi"), Some(("Someone Else".into(), "hi")));
        // No member matches: the first word, for the host to refuse clearly.
        assert_eq!(split("carol hello"), Some(("carol".into(), "hello")));
        // Nothing to send.
        assert_eq!(split("Ana Maria"), None);
        assert_eq!(split("bob"), None);
        assert_eq!(split("\"Ana Maria"), None, "unclosed quote");
        assert_eq!(split("\"\" hi"), None);
    }
}

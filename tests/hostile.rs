//! Hostile input against a live host: it keeps serving everyone else, and
//! its bookkeeping returns to where it was.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use sapora::client::Event;
use sapora::server;

/// Polls until the host holds exactly `n` connections.
async fn settle(host: &server::RunningHost, n: usize, within: Duration) {
    let end = Instant::now() + within;
    while host.stats().connections != n {
        assert!(
            Instant::now() < end,
            "host still holds {} connections, expected {n}",
            host.stats().connections
        );
        smol::Timer::after(Duration::from_millis(20)).await;
    }
}

/// The survivor can still chat with a peer: the host is serving.
async fn still_serving(a: &sapora::client::Client, b: &sapora::client::Client, text: &str) {
    a.chat(None, text).unwrap();
    let got = expect(b, 2 * SEC, |e| match e {
        Event::Chat(m) => Some(m.text.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, text);
}

/// A link admitted to the default room whose control stream speaks raw bytes.
async fn raw(host: &server::RunningHost) -> RawControl {
    raw_control(host.control_addr, "").await
}

/// Reads until the host ends the control stream or closes the link (or 3 s pass).
async fn read_until_closed(mut s: RawControl) -> Vec<u8> {
    s.read_until_closed(3 * SEC).await
}

#[test]
fn garbage_huge_lengths_and_half_headers_do_not_hurt_others() {
    smol::block_on(async {
        let mut opts = options();
        opts.register_timeout = Duration::from_millis(300);
        let host = server::start(opts).await.unwrap();
        let a = join(host.control_addr, "a", "").await;
        let b = join(host.control_addr, "b", "").await;

        // Random bytes: closed (wrong version byte → refused, or malformed).
        let mut s = raw(&host).await;
        let mut x = 0x1234_5678u32;
        let junk: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let _ = s.write(&junk).await;
        read_until_closed(s).await;

        // A 4 GiB length prefix with the right version: refused before allocating.
        let mut s = raw(&host).await;
        s.write(&[1, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]).await.unwrap();
        let reply = read_until_closed(s).await;
        assert_eq!(reply.get(1), Some(&0x04), "a Disconnect (protocol error) before closing");

        // Half a header, then silence: closed after the register timeout.
        let mut s = raw(&host).await;
        s.write(&[1, 0x01, 0, 0]).await.unwrap();
        let started = Instant::now();
        read_until_closed(s).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "silent half-header connection was closed"
        );

        still_serving(&a, &b, "still here").await;
        settle(&host, 2, 2 * SEC).await;
        host.shutdown().await;
    });
}

#[test]
fn a_thousand_connections_opened_and_dropped() {
    smol::block_on(async {
        let host = start_host().await;
        let a = join(host.control_addr, "a", "").await;
        let b = join(host.control_addr, "b", "").await;
        // 20 rounds of 50 links at once (the host takes at most 64 from one
        // address at a time, `transport::limit`).
        for round in 0..20 {
            let mut socks = Vec::new();
            for _ in 0..50 {
                let addr = host.control_addr;
                socks.push(smol::spawn(raw_control(addr, "")));
            }
            // Half of them say something (a valid Register), half say nothing.
            for (i, s) in socks.into_iter().enumerate() {
                let mut s = s.await;
                if i % 2 == 0 {
                    let name = format!("x{round}_{i}");
                    let mut frame = Vec::new();
                    let reg = sapora::proto::Register {
                        version: 1,
                        name,
                        room: "flood".into(),
                        rejoin_token: None,
                        host_key: None,
                    };
                    sapora::proto::encode_frame(
                        sapora::proto::MsgType::Register,
                        0,
                        &reg,
                        &mut frame,
                    );
                    let _ = s.write(&frame).await;
                }
                drop(s);
            }
            settle(&host, 2, 5 * SEC).await;
        }
        still_serving(&a, &b, "after the flood").await;
        settle(&host, 2, 5 * SEC).await;
        let stats = host.stats();
        assert_eq!((stats.members, stats.rooms), (2, 1), "every flood session is gone: {stats:?}");
        host.shutdown().await;
    });
}

#[test]
fn a_client_that_never_reads_is_dropped_not_buffered() {
    smol::block_on(async {
        let host = start_host().await;
        let a = join(host.control_addr, "a", "").await;
        // A registered raw client that never reads what the host sends.
        let mut stalled = raw(&host).await;
        let reg = sapora::proto::Register {
            version: 1,
            name: "stalled".into(),
            room: "".into(),
            rejoin_token: None,
            host_key: None,
        };
        let mut frame = Vec::new();
        sapora::proto::encode_frame(sapora::proto::MsgType::Register, 0, &reg, &mut frame);
        stalled.write(&frame).await.unwrap();
        expect(&a, SEC, |e| matches!(e, Event::Members(l) if l.members.len() == 2).then_some(()))
            .await;
        // Flood the room with big messages until the host gives up on it.
        let text = "y".repeat(4000);
        let mut dropped = false;
        for i in 0..3000 {
            a.chat(None, &text).unwrap();
            if i % 100 == 99 {
                smol::Timer::after(Duration::from_millis(10)).await;
                if host.stats().members == 1 {
                    dropped = true;
                    break;
                }
            }
        }
        // The flood crosses QUIC's congestion and flow control: let the
        // host's queue for the stalled client fill (or its write time out).
        let end = Instant::now() + 10 * SEC;
        while !dropped && Instant::now() < end {
            smol::Timer::after(Duration::from_millis(50)).await;
            dropped = host.stats().members == 1;
        }
        assert!(dropped, "the stalled client is still a member: its queue must be bounded");
        drop(stalled);
        host.shutdown().await;
    });
}

/// `sapora join` in a terminal (no display), its stdout read line by line.
struct TerminalJoin {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl TerminalJoin {
    fn start(addr: std::net::SocketAddr, name: &str) -> TerminalJoin {
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_sapora"))
            .args(["join", &addr.to_string(), "--name", name])
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env("SAPORA_DISCOVERY_ADDR", "127.255.255.255")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sapora runs");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Raw bytes, so an escape sequence cannot hide in decoding.
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
                while let Some(i) = all.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = all.drain(..=i).collect();
                    let _ = tx.send(String::from_utf8_lossy(&line[..i]).into_owned());
                }
            }
        });
        TerminalJoin { child, stdin, lines, seen: Vec::new() }
    }

    /// The first line containing `needle` (panics after 10 s).
    fn wait_for(&mut self, needle: &str) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("never printed {needle:?}; printed {:#?}", self.seen),
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for TerminalJoin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_hostile_chat_message_cannot_drive_the_terminal_or_fake_a_line() {
    smol::block_on(async {
        let host = start_host().await;
        let mallory = join(host.control_addr, "mallory", "").await;
        let ana = join(host.control_addr, "Ana Maria", "").await;
        let _ana_m = join(host.control_addr, "Ana", "").await;
        let mut term = TerminalJoin::start(host.control_addr, "watcher");
        term.wait_for("Type a message");
        mallory.chat(None, "\x1b[2J\x1b]0;pwned\x07\nalice: fake line\r\x1b[1Aover").unwrap();
        let first = term.wait_for("mallory: ");
        let second = term.wait_for("fake line");
        // Nothing a terminal would obey reached it: no ESC, BEL or CR.
        for line in [&first, &second] {
            assert!(!line.bytes().any(|b| b < 0x20 || b == 0x7f), "{line:?}");
        }
        assert!(first.ends_with("mallory: ␛[2J␛]0;pwned␇"), "{first:?}");
        // The continuation is visibly part of mallory's message.
        assert!(second.starts_with("    | alice: fake line"), "{second:?}");
        // `/to Ana Maria …` reaches "Ana Maria", not "Ana" with "Maria …" as text.
        term.type_line("/to Ana Maria hi there");
        let got = expect(&ana, 5 * SEC, |e| match e {
            Event::Chat(m) if m.to.is_some() => Some(m.text.clone()),
            _ => None,
        })
        .await;
        assert_eq!(got, "hi there");
        term.wait_for("delivered privately to Ana Maria");
        host.shutdown().await;
    });
}

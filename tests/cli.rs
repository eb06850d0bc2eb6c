//! The `sapora` binary as a user runs it: help, scheduler, bots with JSON
//! reports, discovery and the headless host. Every host binds 127.0.0.1 and
//! every broadcast goes to 127.255.255.255.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sapora::client::Event;
use sapora::proto::{DisconnectCode, Ports};
use sapora::server::{self, HostOptions};

fn sapora(args: &[&str]) -> Command {
    common::isolate();
    let mut c = Command::new(env!("CARGO_BIN_EXE_sapora"));
    c.args(args).env("SAPORA_DISCOVERY_ADDR", "127.255.255.255").stdin(Stdio::null());
    c
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let Output { status, stdout, stderr } = cmd.output().expect("sapora runs");
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into(),
        String::from_utf8_lossy(&stderr).into(),
    )
}

#[test]
fn help_lists_every_command_and_host_flag() {
    let (ok, out, _) = run(&mut sapora(&["--help"]));
    assert!(ok);
    for cmd in ["host", "join", "bot", "discover", "schedule", "devices"] {
        assert!(out.contains(cmd), "--help lacks {cmd}: {out}");
    }
    let (ok, out, _) = run(&mut sapora(&["host", "--help"]));
    assert!(ok);
    for flag in ["--bind", "--port-offset", "--discovery-addr", "--room", "--name", "--headless"] {
        assert!(out.contains(flag), "host --help lacks {flag}");
    }
}

#[test]
fn schedule_add_list_edit_rm_and_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().to_str().unwrap();
    let s = |args: &[&str]| {
        let mut c = sapora(args);
        c.env("SAPORA_CONFIG_DIR", cfg);
        run(&mut c)
    };
    let (ok, out, err) = s(&[
        "schedule",
        "add",
        "--id",
        "standup",
        "--title",
        "Daily standup",
        "--start",
        "2026-11-23T09:30:00+01:00",
        "--host",
        "127.0.0.1",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("sapora join --meeting standup"), "{out}");
    let (ok, out, _) = s(&["schedule", "list", "--json"]);
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["id"], "standup");
    assert_eq!(list[0]["start"], "2026-11-23T09:30:00+01:00");
    assert_eq!(list[0]["duration_min"], 60);

    let (ok, _, err) =
        s(&["schedule", "edit", "standup", "--duration", "15", "--title", "Standup"]);
    assert!(ok, "{err}");
    let (_, out, _) = s(&["schedule", "list"]);
    assert!(out.contains("Standup") && out.contains("15m"), "{out}");

    // A bad date is a clear error and a non-zero exit, and changes nothing.
    let (ok, _, err) =
        s(&["schedule", "add", "--id", "x", "--title", "X", "--start", "next tuesday"]);
    assert!(!ok);
    assert!(err.contains("not a valid ISO 8601 date-time"), "{err}");
    let (ok, _, err) = s(&["schedule", "edit", "nope", "--title", "Y"]);
    assert!(!ok);
    assert!(err.contains("no meeting with id \"nope\""), "{err}");
    let (ok, _, err) = s(&["schedule", "rm", "nope"]);
    assert!(!ok && err.contains("nope"));
    let (ok, _, err) = s(&["join", "--meeting", "nope"]);
    assert!(!ok && err.contains("no meeting with id"), "{err}");

    let (ok, _, _) = s(&["schedule", "rm", "STANDUP"]);
    assert!(ok, "ids match case-insensitively");
    let (_, out, _) = s(&["schedule", "list", "--json"]);
    assert_eq!(out.trim(), "[]");
}

#[test]
fn bots_report_json_with_room_and_private_chat() {
    smol::block_on(async {
        let host = start_host().await;
        let addr = host.control_addr.to_string();
        // One watcher bot in-process-independent: three bots from the binary.
        let room_bots = sapora(&[
            "bot",
            &addr,
            "--name",
            "ann",
            "--count",
            "2",
            "--room",
            "Lab",
            "--say",
            "hi all",
            "--duration",
            "1.5",
            "--report",
            "json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
        let dm = sapora(&[
            "bot",
            &addr,
            "--name",
            "dan",
            "--room",
            "lab",
            "--to",
            "ANN-2",
            "--say",
            "psst",
            "--duration",
            "1.0",
            "--report",
            "json",
        ])
        .output()
        .unwrap();
        let room_out = room_bots.wait_with_output().unwrap();
        assert!(room_out.status.success() && dm.status.success());
        let mut reports: Vec<serde_json::Value> = String::from_utf8_lossy(&room_out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&dm.stdout).lines())
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        reports.sort_by_key(|r| r["name"].as_str().unwrap().to_string());
        let names: Vec<_> = reports.iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["ann", "ann-2", "dan"]);
        for r in &reports {
            // Whoever arrived first set the room's spelling; all share it.
            assert_eq!(r["room"], reports[0]["room"]);
            assert_eq!(r["room"].as_str().unwrap().to_lowercase(), "lab");
            assert!(r["joined_ms"].as_f64().unwrap() < 1000.0);
            assert_eq!(r["errors"], serde_json::json!([]), "{r}");
            assert_eq!(r["chat_confirmed"], 1);
        }
        let ann2_chat = reports[1]["chat"].as_array().unwrap();
        assert!(
            ann2_chat
                .iter()
                .any(|m| m["from"] == "ann" && m["to"].is_null() && m["text"] == "hi all")
        );
        assert!(ann2_chat.iter().any(|m| m["from"] == "dan"
            && m["to"] == "ann-2"
            && m["text"] == "psst"
            && m["ts"].as_u64().unwrap() > 0));
        let ann_chat = reports[0]["chat"].as_array().unwrap();
        assert!(
            !ann_chat.iter().any(|m| m["text"] == "psst"),
            "private message reached only ann-2"
        );
        host.shutdown().await;
    });
}

#[test]
fn bot_against_no_host_fails_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (ok, _, err) = run(&mut sapora(&[
        "bot",
        &format!("127.0.0.1:{port}"),
        "--name",
        "x",
        "--duration",
        "0.1",
    ]));
    assert!(!ok);
    assert!(err.contains("cannot reach a Sapora host"), "{err}");
    let (ok, _, err) = run(&mut sapora(&["bot", "not an address", "--name", "x"]));
    assert!(!ok && err.contains("is not a host address"), "{err}");
    // Times that are not a number of seconds are refused, not a panic.
    for bad in
        [["--duration=-1", ""], ["--duration=1e300", ""], ["--unmute-after=nan", "--mic=tone"]]
    {
        let mut args = vec!["bot", "127.0.0.1", "--name", "x", bad[0]];
        args.extend(Some(bad[1]).filter(|a| !a.is_empty()));
        let (ok, _, err) = run(&mut sapora(&args));
        assert!(!ok && err.contains("is not a number of seconds"), "{bad:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn discover_lists_a_loopback_host_quickly() {
    smol::block_on(async {
        let offset = unique_offset(2);
        let ports = Ports { control: 0, ..Ports::with_offset(offset).unwrap() };
        common::isolate();
        let mut opts = HostOptions::new(LOOPBACK, ports, "disco-host");
        opts.discovery_target = Some(LOOPBACK_BROADCAST);
        let host = server::start(opts).await.unwrap();
        let _a = join(host.control_addr, "a", "party").await;
        // The member shows in the host's answers once it has published its
        // room list: ask again until it does (no guessed sleep), each run
        // one discovery window.
        let give_up = Instant::now() + Duration::from_secs(20);
        let (h, took) = loop {
            let started = Instant::now();
            let (ok, out, err) =
                run(&mut sapora(&["discover", "--json", "--port-offset", &offset.to_string()]));
            let took = started.elapsed();
            assert!(ok, "{err}");
            let hosts: serde_json::Value = serde_json::from_str(&out).unwrap();
            let h = hosts
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["name"] == "disco-host")
                .cloned()
                .expect("host found");
            if h["rooms"][0]["members"] == 1 || Instant::now() > give_up {
                break (h, took);
            }
        };
        assert_eq!(h["port"], host.control_addr.port());
        assert_eq!(h["rooms"][0]["name"], "party");
        assert_eq!(h["rooms"][0]["members"], 1);
        assert!(took < Duration::from_secs(2), "discover took {took:?}");
        host.shutdown().await;
    });
}

#[test]
fn headless_host_prints_address_logs_joins_and_says_goodbye_on_ctrl_c() {
    // Not 3: the discovery port of the test on offset 2 (5001 + 2) would be
    // this host's control port (5000 + 3).
    let offset = unique_offset(10);
    let mut child = sapora(&[
        "host",
        "--headless",
        "--bind",
        "127.0.0.1",
        "--port-offset",
        &offset.to_string(),
        "--name",
        "cli-host",
        "--status-every",
        "1",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |needle: &str| -> String {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("host never printed {needle:?}"),
            }
        }
    };
    let share = wait_for("Others join with:");
    let control = 5000 + offset;
    assert!(share.contains(&format!("sapora join 127.0.0.1:{control}")), "{share}");
    smol::block_on(async {
        let addr = std::net::SocketAddr::new(LOOPBACK, control);
        let c = join(addr, "visitor", "").await;
        wait_for("visitor joined \"default\" from 127.0.0.1");
        wait_for("status: 1 room(s), 1 member(s)");
        let pid = child.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        let code = expect(&c, 3 * SEC, |e| match e {
            Event::Disconnected { code, .. } => Some(*code),
            _ => None,
        })
        .await;
        assert_eq!(code, Some(DisconnectCode::HostShutdown));
    });
    wait_for("Host stopped.");
    assert!(child.wait().unwrap().success(), "clean exit on Ctrl+C");
}

#[test]
fn host_refuses_a_port_in_use_with_advice() {
    // The control port is UDP (QUIC).
    let l = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    if port < 5000 {
        return; // cannot express it as an offset
    }
    let offset = (port - 5000).to_string();
    let (ok, _, err) = run(&mut sapora(&[
        "host",
        "--headless",
        "--bind",
        "127.0.0.1",
        "--no-discovery",
        "--port-offset",
        &offset,
    ]));
    assert!(!ok);
    assert!(err.contains("cannot listen on") && err.contains("--port-offset"), "{err}");
}

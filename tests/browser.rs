//! Browser guests end to end (issue 15): Debian's `chromium`, headless,
//! driven by `playwright-core` (tests/browser/guest.mjs), joins a room with
//! two native bots through the page the host serves.
//!
//! Skips (passing, with a message saying what to install) only when
//! chromium, node or tests/browser/node_modules are missing; scripts/setup.sh
//! installs all three.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sapora::client::{Client, Event};
use smol::future::FutureExt;

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromium, node and the driver script, or why the test cannot run.
fn tools() -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = on_path(&["chromium", "chromium-browser"])
        .ok_or("chromium is not installed (scripts/setup.sh installs it)")?;
    let node = on_path(&["node"]).ok_or("node is not installed (scripts/setup.sh installs it)")?;
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err(format!(
            "playwright-core is not installed in {} (scripts/setup.sh runs npm ci there)",
            dir.display()
        ));
    }
    Ok((chromium, node, dir.join("guest.mjs")))
}

/// Starts the page for `host` on a free loopback port; returns its port.
async fn start_web(host: &sapora::server::RunningHost) -> (smol::Task<()>, u16) {
    let identity = sapora::transport::cert::HostIdentity::generate().unwrap();
    let tls = sapora::guest::tls_config(&identity).unwrap();
    let listener = smol::net::TcpListener::bind((common::LOOPBACK, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (smol::spawn(sapora::guest::serve(listener, Arc::new(tls), host.control_addr)), port)
}

/// Waits (up to `within`) for a chat on `client` that `pick` accepts.
async fn chat_where(
    client: &Client,
    within: Duration,
    pick: impl Fn(&sapora::proto::ChatMessage) -> bool,
) -> Option<sapora::proto::ChatMessage> {
    let events = client.events();
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let event = events.recv().or(async {
            smol::Timer::after(left).await;
            Err(smol::channel::RecvError)
        });
        match event.await {
            Ok(Event::Chat(m)) if pick(&m) => return Some(m),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn a_browser_guest_joins_and_chats_both_ways() {
    let (chromium, node, script) = match tools() {
        Ok(tools) => tools,
        Err(why) => {
            eprintln!("SKIPPED a_browser_guest_joins_and_chats_both_ways: {why}");
            return;
        }
    };
    smol::block_on(async {
        let host = common::start_host().await;
        let (_web, port) = start_web(&host).await;
        let bot1 = common::join(host.control_addr, "bot1", "web").await;
        let bot2 = common::join(host.control_addr, "bot2", "web").await;
        let url = format!("https://127.0.0.1:{port}/?room=web&name=Guest");
        let child = Command::new(&node)
            .arg(&script)
            .arg(&url)
            .arg(&chromium)
            .args(["--seconds", "2"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("node starts");
        let output = smol::unblock(move || child.wait_with_output());
        // The guest is an ordinary member: the bots see it join.
        common::expect(&bot1, Duration::from_secs(15), |e| match e {
            Event::Members(l) if l.members.iter().any(|m| m.name == "Guest") => Some(()),
            _ => None,
        })
        .await;
        bot1.chat(None, "hello guest").unwrap();
        let room = chat_where(&bot1, Duration::from_secs(15), |m| {
            m.from == "Guest" && m.text == "hello from the browser"
        })
        .await;
        assert!(room.is_some(), "bot1 did not get the guest's room chat");
        let private = chat_where(&bot2, Duration::from_secs(15), |m| {
            m.from == "Guest" && m.text == "psst bot2"
        })
        .await
        .expect("bot2 did not get the guest's private chat");
        assert_eq!(private.to.as_deref(), Some("bot2"));

        let output = output.await.expect("node ran");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("guest.mjs printed no report ({e}): {stdout}"));
        assert!(output.status.success() && report.get("error").is_none(), "page failed: {report}");
        let members: Vec<&str> =
            report["members"].as_array().unwrap().iter().filter_map(|m| m.as_str()).collect();
        for name in ["Guest", "bot1", "bot2"] {
            assert!(members.contains(&name), "the page's participants lack {name}: {members:?}");
        }
        let chats = report["chats"].as_array().unwrap();
        assert!(
            chats.iter().any(|c| c["from"] == "bot1" && c["text"] == "hello guest"),
            "the page did not show bot1's chat: {report}"
        );
        assert!(
            chats.iter().any(|c| c["from"] == "Guest" && c["to"] == "bot2"),
            "the page did not show its own private chat: {report}"
        );
    });
}

//! Link loss, host restarts and idle timeouts, over real sockets.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use sapora::client::Event;
use sapora::proto::{Ports, PresenceChange};
use sapora::server::{self, HostOptions};

#[test]
fn client_rejoins_same_room_and_name_after_host_restart() {
    smol::block_on(async {
        // Only the control port must survive the restart; media services
        // take any free port and announce it in the new Welcome.
        let control = Ports::with_offset(unique_offset(1)).unwrap().control;
        let ports = Ports { control, discovery: 0 };
        isolate();
        let opts = HostOptions::new(LOOPBACK, ports, "restarting");
        let host = server::start(opts.clone()).await.unwrap();
        let addr = host.control_addr;
        let _other = join(addr, "alice", "lab").await;
        let c = join(addr, "alice", "lab").await;
        assert_eq!(c.welcome().name, "alice_1");
        host.shutdown().await;
        expect(&c, SEC, |e| matches!(e, Event::Disconnected { retrying: true, .. }).then_some(()))
            .await;

        smol::Timer::after(Duration::from_millis(700)).await;
        let host = server::start(opts).await.unwrap();
        let back = Instant::now();
        let w = expect(&c, 6 * SEC, |e| match e {
            Event::Joined { welcome, rejoined: true } => Some(welcome.clone()),
            _ => None,
        })
        .await;
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "rejoined {:?} after the host came back",
            back.elapsed()
        );
        assert_eq!((w.name.as_str(), w.room.as_str()), ("alice_1", "lab"), "same name, same room");
        // And the session works again.
        let peer = join(addr, "bob", "lab").await;
        c.chat(None, "I'm back").unwrap();
        expect(&peer, SEC, |e| matches!(e, Event::Chat(m) if m.text == "I'm back").then_some(()))
            .await;
        host.shutdown().await;
    });
}

#[test]
fn silent_client_is_dropped_and_the_room_told() {
    smol::block_on(async {
        let mut opts = options();
        opts.idle_timeout = Duration::from_millis(600);
        opts.heartbeat = Duration::from_millis(100);
        let host = server::start(opts).await.unwrap();
        let a = join(host.control_addr, "a", "").await;
        // A raw client that registers and then never heartbeats.
        let mut s = raw_control(host.control_addr, "").await;
        let reg = sapora::proto::Register {
            version: 1,
            name: "mute".into(),
            room: "".into(),
            rejoin_token: None,
            host_key: None,
        };
        let mut frame = Vec::new();
        sapora::proto::encode_frame(sapora::proto::MsgType::Register, 0, &reg, &mut frame);
        s.write(&frame).await.unwrap();
        let p = expect(&a, 3 * SEC, |e| match e {
            Event::Presence(p) if p.change != PresenceChange::Joined => Some(p.clone()),
            _ => None,
        })
        .await;
        assert_eq!((p.name.as_str(), p.change), ("mute", PresenceChange::TimedOut));
        // The well-behaved client heartbeats (every 100 ms here) and stays.
        smol::Timer::after(Duration::from_millis(800)).await;
        assert_eq!(host.stats().members, 1);
        host.shutdown().await;
    });
}

#[test]
fn client_notices_a_silent_host_and_reconnects() {
    smol::block_on(async {
        // A fake "host" that welcomes and then goes silent without closing
        // (QUIC keeps the link itself alive: only the control plane is silent).
        use sapora::transport::{cert::HostIdentity, limit, link, quic};
        if link::Transport::from_env() == Ok(link::Transport::Tls) {
            // The fake host below speaks QUIC only; the QUIC run covers this.
            eprintln!("skipped: SAPORA_TRANSPORT=tls and the fake host is QUIC only");
            return;
        }
        isolate();
        let (identity, _) = HostIdentity::load_or_create_default().unwrap();
        let endpoint = quic::host_endpoint("127.0.0.1:0".parse().unwrap(), &identity).unwrap();
        let addr: SocketAddr = endpoint.local_addr().unwrap();
        let fake = smol::spawn(async move {
            use smol::io::AsyncWriteExt;
            let caps = limit::SharedCaps::new(limit::ConnectionCaps::new(64, 1024));
            let limiter = std::sync::Mutex::new(limit::AttemptLimiter::new(5, 60 * SEC));
            let accepted = quic::accept(&endpoint, &caps).await.unwrap();
            let mut s = link::accept(accepted, |_| None, &limiter).await.unwrap();
            let mut buf = Vec::new();
            let w = sapora::proto::Welcome {
                session: sapora::proto::SessionId(1),
                token: 7,
                name: "a".into(),
                room: "default".into(),
                host_name: "fake".into(),
                ports: Ports::with_offset(0).unwrap(),
                heartbeat_ms: 100,
                timeout_ms: 1000,
                members: vec![],
                history: vec![],
                host_member: None,
            };
            sapora::proto::encode_frame(sapora::proto::MsgType::Welcome, 0, &w, &mut buf);
            s.control_send.write_all(&buf).await.unwrap();
            smol::Timer::after(Duration::from_secs(3)).await;
            drop(s);
        });
        let c = join(addr, "a", "").await;
        let started = Instant::now();
        let reason = expect(&c, 3 * SEC, |e| match e {
            Event::Disconnected { reason, retrying: true, .. } => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert!(reason.contains("no word from the host"), "{reason}");
        assert!(started.elapsed() < Duration::from_millis(2500));
        drop(c);
        fake.await;
    });
}

//! A host and several participants in one process, over real loopback sockets.

mod common;

use std::time::Duration;

use common::*;
use sapora::client::{ClientError, Event};
use sapora::proto::{ChatOutcome, DisconnectCode, MediaState, PresenceChange};

fn members(e: &Event) -> Option<Vec<String>> {
    match e {
        Event::Members(l) => Some(l.members.iter().map(|m| m.name.clone()).collect()),
        _ => None,
    }
}

#[test]
fn three_people_chat_in_the_room_and_privately() {
    smol::block_on(async {
        let host = start_host().await;
        let alice = join(host.control_addr, "alice", "").await;
        let bob = join(host.control_addr, "Bob", "").await;
        let carol = join(host.control_addr, "carol", "default").await;
        assert_eq!(carol.welcome().room, "default");
        assert_eq!(carol.welcome().ports.control, host.control_addr.port());
        // Everyone sees the full list once carol is in.
        expect(&alice, SEC, |e| members(e).filter(|m| m.len() == 3)).await;

        let id = alice.chat(None, "hello everyone").unwrap();
        let delivered = expect(&alice, SEC, |e| match e {
            Event::ChatResult(r) if r.id == id => Some(r.outcome.clone()),
            _ => None,
        })
        .await;
        assert!(matches!(delivered, ChatOutcome::Delivered { to: None, .. }));
        for c in [&bob, &carol] {
            let m = expect(c, SEC, |e| match e {
                Event::Chat(m) => Some(m.clone()),
                _ => None,
            })
            .await;
            assert_eq!((m.from.as_str(), m.to, m.text.as_str()), ("alice", None, "hello everyone"));
            assert!(m.ts_ms > 1_600_000_000_000, "host stamps wall-clock time");
        }

        // Private: recipient matched case-insensitively; only bob receives it.
        let id = carol.chat(Some("BOB"), "just for you").unwrap();
        let outcome = expect(&carol, SEC, |e| match e {
            Event::ChatResult(r) if r.id == id => Some(r.outcome.clone()),
            _ => None,
        })
        .await;
        assert!(matches!(outcome, ChatOutcome::Delivered { to: Some(ref n), .. } if n == "Bob"));
        let m = expect(&bob, SEC, |e| match e {
            Event::Chat(m) => Some(m.clone()),
            _ => None,
        })
        .await;
        assert_eq!(
            (m.from.as_str(), m.to.as_deref(), m.text.as_str()),
            ("carol", Some("Bob"), "just for you")
        );
        let alice_saw = collect(&alice, Duration::from_millis(200)).await;
        assert!(
            !alice_saw.iter().any(|e| matches!(e, Event::Chat(_))),
            "alice must not see it: {alice_saw:?}"
        );

        // Unknown recipient and oversized text are refused with a reason.
        let id = bob.chat(Some("nobody"), "hello?").unwrap();
        let outcome = expect(&bob, SEC, |e| match e {
            Event::ChatResult(r) if r.id == id => Some(r.outcome.clone()),
            _ => None,
        })
        .await;
        assert!(
            matches!(outcome, ChatOutcome::Refused { ref reason } if reason.contains("no such member"))
        );
        assert!(matches!(
            bob.chat(None, &"x".repeat(5000)),
            Err(ClientError::TooLong { len: 5000 })
        ));
        host.shutdown().await;
    });
}

#[test]
fn names_are_made_unique_and_state_changes_reach_the_room() {
    smol::block_on(async {
        let host = start_host().await;
        let a = join(host.control_addr, "sam", "lab").await;
        let b = join(host.control_addr, "SAM", "Lab").await;
        assert_eq!(b.welcome().name, "SAM_1");
        assert_eq!(b.welcome().room, "lab", "rooms compare case-insensitively");
        b.set_media(MediaState { mic: true, camera: false, screen: true }).unwrap();
        let list = expect(&a, SEC, |e| match e {
            Event::Members(l)
                if l.members.iter().any(|m| m.name == "SAM_1" && m.mic && m.screen) =>
            {
                Some(l.clone())
            }
            _ => None,
        })
        .await;
        assert_eq!(list.members[1].ip, "127.0.0.1");
        host.shutdown().await;
    });
}

#[test]
fn rooms_are_isolated_and_removed_when_empty() {
    smol::block_on(async {
        let host = start_host().await;
        let red = join(host.control_addr, "r1", "red").await;
        let red2 = join(host.control_addr, "r2", "red").await;
        let blue = join(host.control_addr, "b1", "blue").await;
        red.chat(None, "red news").unwrap();
        expect(&red2, SEC, |e| matches!(e, Event::Chat(_)).then_some(())).await;
        let blue_saw = collect(&blue, Duration::from_millis(300)).await;
        assert!(
            blue_saw.iter().all(|e| !matches!(e, Event::Chat(_) | Event::Presence(_))),
            "nothing crosses rooms: {blue_saw:?}"
        );
        assert_eq!(host.stats().rooms, 2);
        blue.leave().await;
        for _ in 0..50 {
            if host.stats().rooms == 1 {
                break;
            }
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        assert_eq!(host.stats().rooms, 1, "the empty room is removed");
        host.shutdown().await;
    });
}

#[test]
fn late_joiner_gets_history_and_leaving_is_announced() {
    smol::block_on(async {
        let host = start_host().await;
        let a = join(host.control_addr, "a", "").await;
        for i in 0..3 {
            a.chat(None, &format!("note {i}")).unwrap();
        }
        expect(&a, SEC, |e| matches!(e, Event::ChatResult(r) if r.id == 3).then_some(())).await;
        let late = join(host.control_addr, "late", "").await;
        let texts: Vec<_> = late.welcome().history.iter().map(|m| m.text.clone()).collect();
        assert_eq!(texts, ["note 0", "note 1", "note 2"]);
        a.leave().await;
        let p = expect(&late, SEC, |e| match e {
            Event::Presence(p) => Some(p.clone()),
            _ => None,
        })
        .await;
        assert_eq!((p.name.as_str(), p.change), ("a", PresenceChange::Left));
        host.shutdown().await;
    });
}

#[test]
fn host_shutdown_tells_every_client() {
    smol::block_on(async {
        let host = start_host().await;
        let a = join(host.control_addr, "a", "one").await;
        let b = join(host.control_addr, "b", "two").await;
        host.shutdown().await;
        for c in [&a, &b] {
            let code = expect(c, SEC, |e| match e {
                Event::Disconnected { code, .. } => Some(*code),
                _ => None,
            })
            .await;
            assert_eq!(code, Some(DisconnectCode::HostShutdown));
        }
    });
}

#[test]
fn wrong_version_and_bad_name_are_clear_errors() {
    smol::block_on(async {
        use sapora::client::ClientConfig;
        let host = start_host().await;
        let err = sapora::client::Client::connect(ClientConfig::new(host.control_addr, "  ", ""))
            .await
            .err()
            .expect("blank name refused");
        assert_eq!(
            err.to_string(),
            "the host refused to let you join: your name must not be empty"
        );
        // A client from another protocol version, speaking raw bytes on an
        // admitted link's control stream.
        let mut s = common::raw_control(host.control_addr, "").await;
        s.write(&[9, 0x01, 0, 0, 0, 2, 0, 0, 0, 0, 9, 0]).await.unwrap();
        let reply = s.read_until_closed(Duration::from_secs(2)).await;
        assert_eq!(reply[1], 0x06, "Refused");
        let text = String::from_utf8_lossy(&reply);
        assert!(text.contains("protocol version 1") && text.contains("version 9"), "{text}");
        host.shutdown().await;
    });
}

#[test]
fn unreachable_host_is_a_clear_error() {
    smol::block_on(async {
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = std::net::SocketAddr::new(LOOPBACK, port);
        let err = sapora::client::Client::connect(sapora::client::ClientConfig::new(addr, "a", ""))
            .await
            .err()
            .expect("nobody listens");
        assert!(
            err.to_string().starts_with(&format!("cannot reach a Sapora host at {addr}")),
            "{err}"
        );
    });
}

/// The host's own app (holding the host's key) is marked as the host in
/// every member list; a client with a wrong key is not, and when the host's
/// app leaves nobody is.
#[test]
fn the_hosts_own_app_is_marked_host_and_a_wrong_key_marks_nobody() {
    use sapora::client::{Client, ClientConfig};
    smol::block_on(async {
        let host = start_host().await;
        let guest = join(host.control_addr, "guest", "").await;
        assert_eq!(guest.welcome().host_member, None);

        let addr = host.control_addr;
        let with_key = |name: &'static str, key| async move {
            let mut config = ClientConfig::new(addr, name, "");
            config.host_key = Some(key);
            Client::connect(config).await.unwrap()
        };
        // The host the guest's member list names, once it has `n` members.
        let host_at = |n: usize| {
            move |e: &Event| match e {
                Event::Members(l) if l.members.len() == n => Some(l.host_member.clone()),
                _ => None,
            }
        };

        let hostess = with_key("hostess", host.host_key).await;
        assert_eq!(hostess.welcome().host_member.as_deref(), Some("hostess"));
        assert_eq!(expect(&guest, SEC, host_at(2)).await.as_deref(), Some("hostess"));

        let forged = sapora::proto::HostKey(host.host_key.0.wrapping_add(1));
        let mallory = with_key("mallory", forged).await;
        assert_eq!(mallory.welcome().host_member.as_deref(), Some("hostess"));
        assert_eq!(expect(&guest, SEC, host_at(3)).await.as_deref(), Some("hostess"));

        hostess.leave().await;
        assert_eq!(expect(&guest, SEC, host_at(2)).await, None);
        drop((guest, mallory));
        host.shutdown().await;
    });
}

#[test]
fn invisible_names_are_refused_and_look_alikes_count_as_taken() {
    smol::block_on(async {
        use sapora::client::ClientConfig;
        let host = start_host().await;
        for (name, says) in [
            ("al\u{200b}ice", "U+200B (ZERO WIDTH SPACE)"),
            ("bob\u{202e}gnp.exe", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ] {
            let err =
                sapora::client::Client::connect(ClientConfig::new(host.control_addr, name, ""))
                    .await
                    .err()
                    .expect("refused");
            assert!(matches!(err, ClientError::Refused(_)), "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
        let alice = join(host.control_addr, "alice", "").await;
        let fake = join(host.control_addr, "\u{430}lice", "").await;
        assert_eq!(fake.welcome().name, "\u{430}lice_1", "a look-alike of alice is taken");
        // The room shows two distinguishable names.
        let names = expect(&alice, 2 * SEC, |e| members(e).filter(|m| m.len() == 2)).await;
        assert_eq!(names, ["alice", "\u{430}lice_1"]);
        host.shutdown().await;
    });
}

// ---- Host controls (issue 17) ----

use sapora::client::{Client, ClientConfig};
use sapora::proto::{Control, RefuseCode, RoomState};

/// The host's own app ("ann", registered with the host's key), bob and carol.
async fn meeting(host: &sapora::server::RunningHost) -> (Client, Client, Client) {
    let mut config = ClientConfig::new(host.control_addr, "ann", "");
    config.host_key = Some(host.host_key);
    let ann = Client::connect(config).await.expect("host app joins");
    let bob = join(host.control_addr, "bob", "").await;
    let carol = join(host.control_addr, "Carol Ann", "").await;
    expect(&ann, SEC, |e| members(e).filter(|m| m.len() == 3)).await;
    (ann, bob, carol)
}

async fn refused_reason(c: &Client, id: u32) -> Option<String> {
    expect(c, SEC, |e| match e {
        Event::ControlResult(r) if r.id == id => Some(r.refused.clone()),
        _ => None,
    })
    .await
}

async fn state_where(c: &Client, ok: impl Fn(&RoomState) -> bool) -> RoomState {
    expect(c, SEC, |e| match e {
        Event::RoomState(s) if ok(s) => Some(s.clone()),
        _ => None,
    })
    .await
}

#[test]
fn a_non_hosts_control_is_refused_and_a_locked_room_refuses_a_join() {
    smol::block_on(async {
        let host = start_host().await;
        let (ann, bob, _carol) = meeting(&host).await;
        let id = bob.control(Control::Lock).unwrap();
        assert_eq!(
            refused_reason(&bob, id).await.as_deref(),
            Some("only the host or a co-host can lock the meeting")
        );
        let id = bob.control(Control::Remove { name: "Carol Ann".into() }).unwrap();
        assert_eq!(
            refused_reason(&bob, id).await.as_deref(),
            Some("only the host or a co-host can remove someone")
        );
        // A stranger still gets in, then the host locks the room.
        let id = ann.control(Control::Lock).unwrap();
        assert_eq!(refused_reason(&ann, id).await, None);
        expect(&bob, SEC, |e| match e {
            Event::ControlNotice(n) if n.text == "ann locked the meeting: nobody new can join" => {
                Some(())
            }
            _ => None,
        })
        .await;
        match Client::connect(ClientConfig::new(host.control_addr, "dave", "")).await {
            Err(ClientError::Refused(r)) => {
                assert_eq!(r.code, RefuseCode::Locked);
                assert_eq!(
                    r.reason,
                    "meeting \"default\" is locked: the host is letting nobody new in"
                );
            }
            other => panic!("a locked room let dave in: {:?}", other.map(|c| c.welcome().clone())),
        }
        let id = ann.control(Control::Unlock).unwrap();
        assert_eq!(refused_reason(&ann, id).await, None);
        join(host.control_addr, "dave", "").await;
        host.shutdown().await;
    });
}

#[test]
fn a_removed_member_is_refused_on_rejoin_until_let_back() {
    smol::block_on(async {
        let host = start_host().await;
        let (ann, bob, carol) = meeting(&host).await;
        let id = ann.control(Control::Remove { name: "BOB".into() }).unwrap();
        assert_eq!(refused_reason(&ann, id).await, None);
        let (code, reason, retrying) = expect(&bob, SEC, |e| match e {
            Event::Disconnected { code, reason, retrying } => {
                Some((*code, reason.clone(), *retrying))
            }
            _ => None,
        })
        .await;
        assert_eq!(code, Some(DisconnectCode::Removed));
        assert_eq!(reason, "ann removed you from meeting \"default\"");
        assert!(!retrying, "a removed member's client does not knock again by itself");
        expect(&carol, SEC, |e| members(e).filter(|m| m.len() == 2)).await;
        // Trying again (same name, loopback) is refused with the reason.
        match Client::connect(ClientConfig::new(host.control_addr, "bob", "")).await {
            Err(ClientError::Refused(r)) => {
                assert_eq!(r.code, RefuseCode::Removed);
                assert_eq!(
                    r.reason,
                    "you were removed from meeting \"default\"; only the host can let you back in"
                );
            }
            other => panic!("a removed member got back in: {}", other.is_ok()),
        }
        let id = ann.control(Control::LetBack { name: "bob".into() }).unwrap();
        assert_eq!(refused_reason(&ann, id).await, None);
        join(host.control_addr, "bob", "").await;
        host.shutdown().await;
    });
}

#[test]
fn mute_video_stop_and_hands_reach_everyones_member_list() {
    smol::block_on(async {
        let host = start_host().await;
        let (ann, bob, carol) = meeting(&host).await;
        let on = MediaState { mic: true, camera: true, screen: false };
        bob.set_media(on).unwrap();
        carol.set_media(on).unwrap();
        expect(&ann, SEC, |e| {
            members(e)?;
            let Event::Members(l) = e else { return None };
            l.members.iter().filter(|m| m.mic && m.camera).count().eq(&2).then_some(())
        })
        .await;

        let id = ann.control(Control::Mute { name: "bob".into(), may_unmute: false }).unwrap();
        assert_eq!(refused_reason(&ann, id).await, None);
        let id = ann.control(Control::StopVideo { name: "carol ann".into() }).unwrap();
        assert_eq!(refused_reason(&ann, id).await, None);
        let told = expect(&bob, SEC, |e| match e {
            Event::ControlNotice(n) => Some(n.text.clone()),
            _ => None,
        })
        .await;
        assert_eq!(told, "ann muted you; only the host can let you unmute");
        let told = expect(&carol, SEC, |e| match e {
            Event::ControlNotice(n) => Some(n.text.clone()),
            _ => None,
        })
        .await;
        assert_eq!(told, "ann stopped your video");

        let id = carol.control(Control::Hand { raised: true }).unwrap();
        assert_eq!(refused_reason(&carol, id).await, None);
        smol::Timer::after(Duration::from_millis(20)).await;
        let id = bob.control(Control::Hand { raised: true }).unwrap();
        assert_eq!(refused_reason(&bob, id).await, None);
        // bob, held muted, cannot turn his microphone back on.
        bob.set_media(on).unwrap();
        // A newcomer makes the host push the list and the room state to all.
        let dave = join(host.control_addr, "dave", "").await;
        for c in [&ann, &bob, &carol, &dave] {
            let list = expect(c, SEC, |e| {
                members(e).is_some_and(|m| m.len() == 4).then(|| match e {
                    Event::Members(l) => l.members.clone(),
                    _ => unreachable!(),
                })
            })
            .await;
            let get = |n: &str| list.iter().find(|m| m.name == n).expect("listed").clone();
            assert!(!get("bob").mic && get("bob").camera, "{list:?}");
            assert!(get("Carol Ann").mic && !get("Carol Ann").camera, "{list:?}");
            let s = state_where(c, |_| true).await;
            let hands: Vec<&str> = s.hands.iter().map(|h| h.name.as_str()).collect();
            assert_eq!(hands, ["Carol Ann", "bob"], "oldest hand first");
            assert!(s.hands[0].since_ms <= s.hands[1].since_ms);
            assert_eq!(s.host_muted.len(), 1);
            assert_eq!((s.host_muted[0].name.as_str(), s.host_muted[0].may_unmute), ("bob", false));
            assert_eq!(s.video_stopped, ["Carol Ann"]);
        }
        host.shutdown().await;
    });
}

#[test]
fn a_bot_with_hand_raises_it_for_everyone() {
    smol::block_on(async {
        let host = start_host().await;
        let watcher = join(host.control_addr, "watcher", "").await;
        let mut opts = sapora::client::bot::BotOptions::new(host.control_addr, "Hand Bot");
        opts.hand = true;
        opts.duration = Some(Duration::from_millis(600));
        let (_tx, stop) = smol::channel::bounded::<()>(1);
        let bot = smol::spawn(sapora::client::bot::run_bot(opts, stop));
        let s = state_where(&watcher, |s| !s.hands.is_empty()).await;
        assert_eq!(s.hands.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["Hand Bot"]);
        let report = bot.await;
        assert_eq!(report.hands, ["Hand Bot"], "{report:?}");
        host.shutdown().await;
    });
}

/// A bot sending its test camera whose video the host stops turns the
/// camera off (the room's member list says so), keeps receiving, and says
/// so in its report's notices.
#[test]
fn a_bot_whose_video_the_host_stops_turns_its_camera_off() {
    smol::block_on(async {
        let host = start_host().await;
        let mut config = sapora::client::ClientConfig::new(host.control_addr, "ann", "");
        config.host_key = Some(host.host_key);
        let ann = sapora::client::Client::connect(config).await.unwrap();
        let mut opts = sapora::client::bot::BotOptions::new(host.control_addr, "cam");
        opts.video.camera = sapora::media::video::CameraChoice::Test;
        opts.duration = Some(Duration::from_millis(2500));
        let (_tx, stop) = smol::channel::bounded::<()>(1);
        let bot = smol::spawn(sapora::client::bot::run_bot(opts, stop));
        let camera_of = |e: &Event| match e {
            Event::Members(l) => l.members.iter().find(|m| m.name == "cam").map(|m| m.camera),
            _ => None,
        };
        expect(&ann, 2 * SEC, |e| camera_of(e).filter(|on| *on)).await;
        // Frames flow (the only sender in the room; the host counts them)...
        let deadline = std::time::Instant::now() + 2 * SEC;
        while host.video_stats().fragments_in == 0 {
            assert!(std::time::Instant::now() < deadline, "{:?}", host.video_stats());
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        ann.control(Control::StopVideo { name: "cam".into() }).unwrap();
        expect(&ann, 2 * SEC, |e| camera_of(e).filter(|on| !on)).await;
        // ...and stop once the bot has turned its camera off (a frame or
        // two may still be on the way).
        smol::Timer::after(Duration::from_millis(300)).await;
        let after_stop = host.video_stats().fragments_in;
        smol::Timer::after(Duration::from_millis(800)).await;
        let later = host.video_stats().fragments_in;
        assert_eq!(later, after_stop, "no more frames from a stopped camera");
        let report = bot.await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(report.notices.iter().any(|n| n.contains("stopped your video")), "{report:?}");
        host.shutdown().await;
    });
}

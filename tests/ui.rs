//! The desktop app: update tests (send a Message, check the state) and
//! `iced_test` simulator tests on the real views. Run the simulator with the
//! software renderer: `ICED_TEST_BACKEND=tiny-skia cargo test --test ui`.

mod common;

use std::time::{Duration, Instant};

use iced_test::simulator;
use sapora::client::discover::DiscoveredHost;
use sapora::client::{Client, Event as SessionEvent};
use sapora::proto::Subscription;
use sapora::proto::{
    ChatMessage, Member, PROTOCOL_VERSION, Ports, PresenceChange, RoomInfo, UserList, Welcome,
};
use sapora::schedule::Store;
use sapora::ui::call::{self, Call, Layout, grid_shape};
use sapora::ui::chat::{self, Delivery, Recipient};
use sapora::ui::launcher::{self, Launcher};
use sapora::ui::scheduler::Scheduler;
use sapora::ui::{App, Launch, Message, Options};

use common::ui::drive;
use common::{SEC, expect, join, start_host};

/// Every test calls this first: the software renderer, and a config dir of
/// our own (settings, schedule). Done once, before any test reads the
/// environment, so no thread reads it while it changes.
fn backend() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let cfg = tempfile::tempdir().unwrap().keep();
        // SAFETY: inside call_once, which every test passes before anything
        // else, so no other thread touches the environment meanwhile.
        unsafe {
            if std::env::var_os("ICED_TEST_BACKEND").is_none() {
                std::env::set_var("ICED_TEST_BACKEND", "tiny-skia");
            }
            std::env::set_var("SAPORA_CONFIG_DIR", cfg);
        }
    });
}

fn member(name: &str, camera: bool) -> Member {
    Member { name: name.into(), ip: "127.0.0.1".into(), mic: true, camera, screen: false }
}

fn welcome(me: &str, others: usize) -> Welcome {
    let mut members = vec![member(me, true)];
    members.extend((1..=others).map(|i| member(&format!("p{i}"), true)));
    Welcome {
        session: sapora::proto::SessionId(1),
        token: 2,
        name: me.into(),
        room: "default".into(),
        host_name: "lab-pc".into(),
        ports: Ports::with_offset(0).unwrap(),
        heartbeat_ms: 3000,
        timeout_ms: 15000,
        members,
        history: vec![ChatMessage {
            id: 1,
            from: "p1".into(),
            to: None,
            text: "welcome aboard".into(),
            ts_ms: 1_700_000_000_000,
        }],
        host_member: None,
    }
}

fn discovered(name: &str, addr: &str, rooms: &[(&str, u32)]) -> DiscoveredHost {
    DiscoveredHost {
        host_id: name.len() as u64,
        host_name: name.into(),
        addr: addr.parse().unwrap(),
        rooms: rooms.iter().map(|(n, m)| RoomInfo { name: n.to_string(), members: *m }).collect(),
        version: PROTOCOL_VERSION,
        last_seen: Instant::now(),
        owner: None,
        auto: false,
        fingerprint: None,
        passcode: false,
    }
}

fn launcher() -> Launcher {
    let dir = tempfile::tempdir().unwrap();
    let (scheduler, _) = Scheduler::new(Some(Store::at(dir.path().join("schedule.json"))));
    Launcher::new("alice".into(), scheduler)
}

#[test]
fn launcher_lists_discovered_hosts_and_a_click_fills_the_form() {
    backend();
    let mut l = launcher();
    let _ = l.update(launcher::Message::Hosts(vec![
        discovered("lab-pc", "127.0.0.1:5000", &[("standup", 3)]),
        discovered("attic", "127.0.0.2:5100", &[]),
    ]));

    let mut ui = simulator(l.view());
    assert!(ui.find("lab-pc — 127.0.0.1:5000").is_ok());
    assert!(ui.find("standup (3 people)").is_ok());
    assert!(ui.find("meeting on lab-pc · 3 people").is_ok(), "who hosts, how many");
    assert!(ui.find("attic — 127.0.0.2:5100").is_ok());
    assert!(ui.find("no meetings yet").is_ok());
    ui.click("lab-pc — 127.0.0.1:5000").expect("host entry is clickable");
    for m in ui.into_messages() {
        let _ = l.update(m);
    }
    assert_eq!(l.address, "127.0.0.1:5000");
    assert_eq!(l.meeting, "standup", "the host's meeting is offered");

    let mut ui = simulator(l.view());
    ui.click("Join").expect("Join button");
    let events: Vec<_> = ui.into_messages().filter_map(|m| l.update(m).1).collect();
    assert_eq!(
        events,
        vec![launcher::Event::Join {
            address: "127.0.0.1:5000".into(),
            name: "alice".into(),
            room: "standup".into(),
            passcode: None,
        }]
    );
    assert_eq!(l.status, launcher::Status::Connecting("127.0.0.1:5000".into()));
}

#[test]
fn launcher_refuses_to_join_without_an_address_and_offers_a_found_host() {
    backend();
    let mut l = launcher();
    assert_eq!(l.update(launcher::Message::Join).1, None);
    assert!(l.error.as_deref().unwrap().contains("address"));

    l.offer = Some(discovered("lab-pc", "127.0.0.1:5000", &[]));
    let mut ui = simulator(l.view());
    ui.click("Join \"lab-pc\" at 127.0.0.1:5000").expect("one-click offer");
    let events: Vec<_> = ui.into_messages().filter_map(|m| l.update(m).1).collect();
    assert!(
        matches!(&events[..], [launcher::Event::Join { address, .. }] if address == "127.0.0.1:5000")
    );
}

#[test]
fn grid_lays_out_one_to_twelve_people() {
    backend();
    let expected = [(1, 1), (2, 1), (2, 2), (2, 2), (3, 2), (3, 2), (3, 3), (3, 3), (3, 3)];
    for n in 1..=12usize {
        let shape = grid_shape(n);
        if n <= 9 {
            assert_eq!(shape, expected[n - 1], "{n} people");
        } else {
            assert_eq!(shape, (3, 3), "{n} people: three rows in view, the rest scroll");
        }
        let call = Call::new(&welcome("me", n - 1), "127.0.0.1:5000".into(), None);
        assert_eq!(call.tiles().len(), n);
        assert_eq!(call.tiles()[0], "me", "own tile first");
        let mut ui = simulator(call.view());
        assert!(ui.find("me (You)").is_ok(), "{n}: own tile marked");
        for i in 1..n {
            let t = ui.find(format!("p{i}")).unwrap_or_else(|_| panic!("{n}: tile p{i}"));
            let visible = t.visible_bounds().is_some();
            // Rows 0-2 (tiles 0..9) are in view; later rows are scrolled out.
            assert_eq!(visible, i < 9, "{n} people: tile {i} visible={visible}");
        }
        // Layers: full for small grids, thumbnails for big, none when scrolled out.
        let layers = call.wanted_layers();
        for i in 1..n {
            let want = if n > 9 && i >= 9 {
                Subscription::None
            } else if n <= 4 {
                Subscription::Full
            } else {
                Subscription::Thumb
            };
            assert_eq!(layers[&format!("p{i}")], want, "{n} people, p{i}");
        }
    }
}

#[test]
fn speaker_view_features_the_active_speaker_and_pinning_overrides() {
    backend();
    let mut call = Call::new(&welcome("me", 4), "127.0.0.1:5000".into(), None);
    call.set_speaking(["p3".to_string()]);
    let _ = call.update(call::Message::ToggleLayout);
    assert_eq!(call.effective_layout(), Layout::Speaker);
    assert_eq!(call.featured(), Some("p3"));
    let layers = call.wanted_layers();
    assert_eq!(layers["p3"], Subscription::Full);
    assert_eq!(layers["p1"], Subscription::Thumb);
    let ui = simulator(call.view());
    drop(ui);

    // Pinning someone else makes them large, whoever speaks.
    let (_, ev) = call.update(call::Message::Pin("p1".into()));
    assert_eq!(call.featured(), Some("p1"));
    let Some(call::Event::Layers(changes)) = ev else { panic!("layer change expected") };
    assert!(changes.contains(&("p1".into(), Subscription::Full)));
    assert!(changes.contains(&("p3".into(), Subscription::Thumb)));

    // The control bar switches back to the grid.
    let mut ui = simulator(call.view());
    ui.click("Grid view").expect("layout button");
    for m in ui.into_messages() {
        let _ = call.update(m);
    }
    assert_eq!(call.effective_layout(), Layout::Grid);
}

#[test]
fn a_camera_off_sender_is_asked_for_nothing() {
    backend();
    let mut w = welcome("me", 2);
    w.members[2].camera = false;
    let call = Call::new(&w, "127.0.0.1:5000".into(), None);
    assert_eq!(call.wanted_layers()["p2"], Subscription::None);
    assert_eq!(call.wanted_layers()["p1"], Subscription::Full);
}

#[test]
fn controls_toggle_media_and_panels_and_shortcuts_work() {
    backend();
    let mut call = Call::new(&welcome("me", 1), "127.0.0.1:5000".into(), None);
    let mut ui = simulator(call.view());
    ui.click("Unmute").expect("mic button");
    ui.click("Start video").expect("camera button");
    ui.click("People (2)").expect("people button");
    let events: Vec<_> = ui.into_messages().filter_map(|m| call.update(m).1).collect();
    assert!(call.media.mic && call.media.camera);
    assert_eq!(call.panel, Some(call::Panel::People));
    assert!(matches!(events.last(), Some(call::Event::Media(m)) if m.mic && m.camera));
    let mut ui = simulator(call.view());
    assert!(ui.find("me (You)").is_ok());
    assert!(ui.find("mic on · camera on · not sharing").is_ok());
    drop(ui);

    // Ctrl+D mutes (the shortcut in the tooltip).
    let key = ctrl_key("d");
    let _ = call.update(call::Message::Key(key));
    assert!(!call.media.mic);
}

/// Real host, two participants: room and private chat from the chat panel,
/// with delivery states and the history a late joiner sees.
#[test]
fn room_and_private_chat_are_delivered_and_marked() {
    backend();
    smol::block_on(async {
        let host = start_host().await;
        let bob = join(host.control_addr, "bob", "").await;
        let alice = join(host.control_addr, "alice", "").await;
        let mut call = Call::new(alice.welcome(), host.control_addr.to_string(), None);
        let _ = alice.events().try_recv(); // the first Joined, already shown
        feed_until(&alice, &mut call, |c| c.members.len() == 2).await;

        // Room message typed into the panel.
        let _ = call.update(call::Message::Panel(call::Panel::Chat));
        send(&alice, &mut call, "hello room");
        let got = expect(&bob, 2 * SEC, |e| match e {
            SessionEvent::Chat(m) => Some(m.clone()),
            _ => None,
        })
        .await;
        assert_eq!(
            (got.from.as_str(), got.to.as_deref(), got.text.as_str()),
            ("alice", None, "hello room")
        );

        // Private message to bob, picked in the recipient list.
        let mut ui = simulator(call.view());
        assert!(ui.find("hello room").is_ok(), "own message in the log");
        assert!(ui.find("Send").is_ok());
        drop(ui);
        let _ =
            call.update(call::Message::Chat(chat::Message::To(Recipient::Member("bob".into()))));
        send(&alice, &mut call, "just for you");
        let got = expect(&bob, 2 * SEC, |e| match e {
            SessionEvent::Chat(m) => Some(m.clone()),
            _ => None,
        })
        .await;
        assert_eq!(got.to.as_deref(), Some("bob"));

        feed_until(&alice, &mut call, |c| {
            c.chat.entries.iter().filter(|e| e.delivery == Delivery::Delivered).count() == 2
        })
        .await;
        let mut ui = simulator(call.view());
        assert!(ui.find("You → bob (private)").is_ok() || has_prefix(&call, "You → bob (private)"));
        drop(ui);
        assert!(call.chat.entries.iter().all(|e| e.ts_ms.is_some()), "timestamps from the host");

        // Bob answers privately; it shows as private in alice's chat.
        bob.chat(Some("alice"), "psst").unwrap();
        feed_until(&alice, &mut call, |c| c.chat.entries.iter().any(|e| e.text == "psst")).await;
        let e = call.chat.entries.iter().find(|e| e.text == "psst").unwrap();
        assert!(e.is_private() && e.delivery == Delivery::Received);

        // A late joiner gets the room history (not the private messages).
        let carol = join(host.control_addr, "carol", "").await;
        let late = Call::new(carol.welcome(), host.control_addr.to_string(), None);
        let texts: Vec<_> = late.chat.entries.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["hello room"]);
        drop((alice, bob, carol));
        host.shutdown().await;
    });
}

fn has_prefix(call: &Call, _label: &str) -> bool {
    call.chat.entries.iter().any(|e| e.to.as_deref() == Some("bob") && e.from == "alice")
}

fn send(client: &Client, call: &mut Call, text: &str) {
    let _ = call.update(call::Message::Chat(chat::Message::Draft(text.into())));
    let (_, ev) = call.update(call::Message::Chat(chat::Message::Send));
    let Some(call::Event::Chat { local, to, text }) = ev else { panic!("send event") };
    let sent = client.chat(to.as_deref(), &text).map_err(|e| e.to_string());
    call.chat.sent(local, sent);
}

/// Feeds the session's events into the call until `done`, for at most 3 s.
async fn feed_until(client: &Client, call: &mut Call, done: impl Fn(&Call) -> bool) {
    let deadline = Instant::now() + 3 * SEC;
    let events = client.events();
    while !done(call) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "condition not reached within 3 s");
        use smol::future::FutureExt;
        let next = async { events.recv().await.ok() }
            .or(async {
                smol::Timer::after(left).await;
                None
            })
            .await;
        if let Some(e) = next {
            let _ = call.on_session(e);
        }
    }
}

#[test]
fn presence_and_reconnecting_banner() {
    backend();
    let mut call = Call::new(&welcome("me", 1), "127.0.0.1:5000".into(), None);
    let (notices, _) = call.on_session(SessionEvent::Presence(sapora::proto::Presence {
        name: "p2".into(),
        change: PresenceChange::Joined,
    }));
    assert_eq!(notices[0].text, "p2 joined");
    let _ = call.on_session(SessionEvent::Members(UserList {
        room: "default".into(),
        members: vec![member("me", false), member("p1", true), member("p2", true)],
        host_member: None,
    }));
    assert_eq!(call.tiles(), ["me", "p1", "p2"]);
    let _ = call.on_session(SessionEvent::Disconnected {
        reason: "the host closed the connection".into(),
        code: None,
        retrying: true,
    });
    let mut ui = simulator(call.view());
    assert!(ui.find("Reconnecting… (the host closed the connection)").is_ok());
    drop(ui);
    let mut w = welcome("me", 2);
    w.history.clear();
    let (notices, _) =
        call.on_session(SessionEvent::Joined { welcome: Box::new(w), rejoined: true });
    assert!(call.reconnecting.is_none());
    assert_eq!(notices[0].text, "Reconnected.");
    assert_eq!(call.chat.entries.len(), 1, "history is not shown twice after a rejoin");
}

/// The leave flow through the app: Leave in the control bar ends the call,
/// the launcher comes back, and the others see us go.
#[test]
fn leave_returns_to_the_launcher_and_the_room_sees_it() {
    backend();
    smol::block_on(async {
        let host = start_host().await;
        let bob = join(host.control_addr, "bob", "").await;
        let alice = join(host.control_addr, "alice", "").await;
        let (mut app, _) = App::new(app_options(Launch::Launcher));
        let _ = app.adopt(alice);
        assert!(app.in_call());
        let mut ui = simulator(app.view());
        assert!(ui.find("alice (You)").is_ok());
        ui.click("Leave").expect("leave button");
        let msgs: Vec<_> = ui.into_messages().collect();
        for m in msgs {
            let _ = app.update(m);
        }
        assert!(!app.in_call() && app.call.is_none());
        let mut ui = simulator(app.view());
        assert!(ui.find("Join a meeting").is_ok(), "launcher is back");
        drop(ui);
        let left = expect(&bob, 3 * SEC, |e| match e {
            SessionEvent::Presence(p)
                if p.name == "alice" && p.change != PresenceChange::Joined =>
            {
                Some(p.change)
            }
            _ => None,
        })
        .await;
        assert_eq!(left, PresenceChange::Left);
        drop(bob);
        host.shutdown().await;
    });
}

#[test]
fn scheduler_adds_edits_and_joins_through_the_shared_store() {
    backend();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path().join("schedule.json"));
    let (mut s, _) = Scheduler::new(Some(store.clone()));
    use sapora::ui::scheduler::Message as M;
    for m in [
        M::Id("standup".into()),
        M::Title("Daily standup".into()),
        M::Start("2030-01-02T09:30".into()),
        M::Duration("15".into()),
        M::Host("127.0.0.1:5000".into()),
    ] {
        let _ = s.update(m);
    }
    let (task, _) = s.update(M::Save);
    let mut pending = run_task(task);
    while let Some(m) = pending.pop() {
        pending.extend(run_task(s.update(m).0));
    }
    assert_eq!(s.error, None);
    assert_eq!(store.list().unwrap().len(), 1, "written to the store `sapora schedule` reads");
    assert_eq!(s.meetings[0].title, "Daily standup");
    assert_eq!(s.meetings[0].duration_min, 15);

    let _ = s.update(M::Edit("standup".into()));
    let _ = s.update(M::Title("Standup (moved)".into()));
    let mut pending = run_task(s.update(M::Save).0);
    while let Some(m) = pending.pop() {
        pending.extend(run_task(s.update(m).0));
    }
    assert_eq!(store.get("standup").unwrap().title, "Standup (moved)");
    let (_, ev) = s.update(M::Join("standup".into()));
    assert_eq!(
        ev,
        Some(sapora::ui::scheduler::Event::Join {
            room: "standup".into(),
            host: Some("127.0.0.1:5000".into())
        })
    );
}

/// Runs a task's future to completion (at most 3 s) and returns the
/// messages it produced; runtime actions (scrolling, exit) are skipped.
fn run_task<T: Send + 'static>(task: iced::Task<T>) -> Vec<T> {
    use iced_test::runtime::{Action, task::into_stream};
    use smol::stream::StreamExt;
    let Some(mut stream) = into_stream(task) else { return Vec::new() };
    smol::block_on(async {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut out = Vec::new();
        loop {
            use smol::future::FutureExt;
            let next = async { Some(stream.next().await) }
                .or(async {
                    smol::Timer::at(deadline).await;
                    None
                })
                .await;
            match next {
                Some(Some(Action::Output(m))) => out.push(m),
                Some(Some(_)) => {}
                Some(None) => return out,
                None => panic!("task did not finish within 3 s"),
            }
        }
    })
}

fn app_options(launch: Launch) -> Options {
    Options {
        launch,
        discovery: (common::LOOPBACK_BROADCAST, 0),
        host: common::options(),
        media: Default::default(),
        passcode: None,
    }
}

/// `sapora join <ip>`: the app resolves, connects and shows the call; the
/// room sees us arrive.
#[test]
fn join_opens_the_call_screen() {
    backend();
    let host = smol::block_on(start_host());
    let bob = smol::block_on(join(host.control_addr, "bob", ""));
    let launch = Launch::Join {
        address: host.control_addr.to_string(),
        name: "alice".into(),
        room: String::new(),
    };
    let (mut app, task) = App::new(app_options(launch));
    assert!(matches!(app.launcher.status, launcher::Status::Connecting(_)));
    drive(&mut app, task, 5 * SEC, |a| a.in_call());
    let call = app.call.as_ref().unwrap();
    assert_eq!(call.me, "alice");
    assert_eq!(call.tiles(), ["alice", "bob"]);
    let mut ui = simulator(app.view());
    assert!(ui.find("alice (You)").is_ok());
    assert!(ui.find("bob").is_ok());
    drop(ui);
    let who = smol::block_on(expect(&bob, 2 * SEC, |e| match e {
        SessionEvent::Presence(p) if p.change == PresenceChange::Joined => Some(p.name.clone()),
        _ => None,
    }));
    assert_eq!(who, "alice");
    drop(bob);
    smol::block_on(host.shutdown());
}

/// The Host button: the app starts a host in-process, joins it, and shows
/// the address others should use.
#[test]
fn host_button_hosts_in_process_and_shows_the_address() {
    backend();
    let (mut app, task) = App::new(app_options(Launch::Launcher));
    let mut tasks = vec![task];
    let _ = app.update(Message::Launcher(launcher::Message::Name("hostess".into())));
    tasks.push(app.update(Message::Launcher(launcher::Message::Host)));
    drive(&mut app, iced::Task::batch(tasks), 5 * SEC, |a| a.in_call());
    let share = app.share.clone().expect("hosting");
    assert!(share.starts_with("127.0.0.1:"), "bound to loopback in tests: {share}");
    let mut ui = simulator(app.view());
    assert!(ui.find(format!("You are hosting · others join: sapora join {share}")).is_ok());
    drop(ui);
    // Someone else can join with exactly that address.
    let guest = smol::block_on(join(share.parse().unwrap(), "guest", ""));
    assert_eq!(guest.welcome().members.len(), 2);
    drop(guest);
    // Closing the window says goodbye, stops the host and exits.
    let t = app.update(Message::CloseRequested(iced::window::Id::unique()));
    drive(&mut app, t, 5 * SEC, |a| a.share.is_none() && !a.in_call());
}

/// Join → the first remote frame is shown (a bot's test camera), then the
/// small grid asks that sender for its full layer and gets 640×480.
#[test]
fn remote_video_is_shown_and_a_small_grid_gets_the_full_layer() {
    use sapora::client::video::{VideoEngine, VideoOptions};
    use sapora::media::video::CameraChoice;
    backend();
    let host = smol::block_on(start_host());
    let bob = smol::block_on(join(host.control_addr, "bob", ""));
    let opts = VideoOptions::new("bob", CameraChoice::Test, sapora::proto::Subscription::None);
    let media = sapora::client::media::MediaLink::of(&bob).unwrap();
    let (camera, err) = VideoEngine::start(media, opts).unwrap();
    assert_eq!(err, None);
    // Camera on, as the room sees it (what a bot or the app does).
    bob.set_media(sapora::proto::MediaState { camera: true, ..Default::default() }).unwrap();
    let launch = Launch::Join {
        address: host.control_addr.to_string(),
        name: "alice".into(),
        room: String::new(),
    };
    let (mut app, task) = App::new(app_options(launch));
    let has_bob = |a: &App| a.call.as_ref().is_some_and(|c| c.frames.contains_key("bob"));
    drive(&mut app, task, 5 * SEC, has_bob);
    let ms = app.first_frame_ms.expect("first frame timed");
    assert!(ms < 5000.0, "join → first frame {ms} ms");
    // Frames keep coming; the layer switches to full (640×480) by itself.
    let full = |a: &App| a.call.as_ref().is_some_and(|c| c.frames["bob"].width == 640);
    drive(&mut app, iced::Task::none(), 5 * SEC, full);
    let mut ui = simulator(app.view());
    assert!(ui.find("bob").is_ok());
    drop(ui);
    camera.stop();
    drop(bob);
    smol::block_on(host.shutdown());
}

/// A file offer shows in the files panel with its size and sender; the
/// Download button asks for it and shows progress.
#[test]
fn file_offers_show_and_download_is_requested() {
    backend();
    let mut call = Call::new(&welcome("me", 1), "127.0.0.1:5000".into(), None);
    let (notices, _) = call.on_session(SessionEvent::FileOffered(sapora::proto::FileInfo {
        id: 7,
        name: "notes.pdf".into(),
        size: 3 * 1024 * 1024,
        md5: [0; 16],
        sender: "p1".into(),
        to: None,
        ts_ms: 1_700_000_000_000,
    }));
    assert_eq!(notices[0].text, "p1 shared notes.pdf");
    let _ = call.update(call::Message::Panel(call::Panel::Files));
    let mut ui = simulator(call.view());
    assert!(ui.find("3.0 MiB · from p1").is_ok());
    ui.click("Download").expect("download button");
    let events: Vec<_> = ui.into_messages().filter_map(|m| call.update(m).1).collect();
    assert_eq!(events, [call::Event::Files(sapora::ui::files::Event::Download(7))]);
    assert_eq!(call.files.offers[0].state, sapora::ui::files::Transfer::Running(0.0));
}

// ---- the host marked by the protocol ----

/// The participants panel marks whoever the host's member list marks, and
/// nobody else: not by IP (everyone here is 127.0.0.1).
#[test]
fn participants_panel_marks_the_member_the_host_marks() {
    backend();
    let mut w = welcome("me", 2);
    w.host_member = Some("p1".into());
    let mut call = Call::new(&w, "127.0.0.1:5000".into(), None);
    let _ = call.update(call::Message::Panel(call::Panel::People));
    let mut ui = simulator(call.view());
    assert!(ui.find("p1 · host").is_ok(), "the host's member is marked");
    assert!(ui.find("me (You)").is_ok(), "we are not the host");
    assert!(ui.find("p2").is_ok());
    assert!(ui.find("p2 · host").is_err());
    drop(ui);
    // The host's app left: the next list marks nobody.
    let _ = call.on_session(SessionEvent::Members(UserList {
        room: "default".into(),
        members: vec![member("me", true), member("p2", true)],
        host_member: None,
    }));
    let mut ui = simulator(call.view());
    assert!(ui.find("p2").is_ok() && ui.find("p2 · host").is_err());
    assert!(ui.find("me (You)").is_ok());
}

/// End to end: the app hosts in-process, its own member is marked host
/// (in its panel and for a guest), the guest is not.
#[test]
fn the_hosting_app_is_marked_host_for_everyone() {
    backend();
    let launch = Launch::Host { name: "hostess".into(), room: String::new() };
    let (mut app, task) = App::new(app_options(launch));
    drive(&mut app, task, 5 * SEC, |a| a.in_call());
    let share = app.share.clone().expect("hosting");
    let guest = smol::block_on(join(share.parse().unwrap(), "guest", ""));
    assert_eq!(guest.welcome().host_member.as_deref(), Some("hostess"));
    let mut seen = Call::new(guest.welcome(), share.clone(), None);
    let _ = seen.update(call::Message::Panel(call::Panel::People));
    let mut ui = simulator(seen.view());
    assert!(ui.find("hostess · host").is_ok());
    assert!(ui.find("guest (You)").is_ok());
    drop(ui);

    let _ = app.update(Message::Call(call::Message::Panel(call::Panel::People)));
    drive(&mut app, iced::Task::none(), 3 * SEC, |a| {
        a.call.as_ref().is_some_and(|c| c.members.len() == 2)
    });
    let mut ui = simulator(app.view());
    assert!(ui.find("hostess (You) · host").is_ok());
    assert!(ui.find("guest").is_ok() && ui.find("guest · host").is_err());
    drop(ui);

    // Leave (the host keeps running), then come back by typing the address
    // others use: still marked as the host.
    let t = app.update(Message::Call(call::Message::Leave));
    drive(&mut app, t, 3 * SEC, |a| !a.in_call());
    assert_eq!(app.share.as_deref(), Some(share.as_str()), "still hosting");
    let _ = app.update(Message::Launcher(launcher::Message::Address(share.clone())));
    let t = app.update(Message::Launcher(launcher::Message::Join));
    drive(&mut app, t, 5 * SEC, |a| a.call.as_ref().is_some_and(|c| c.members.len() == 2));
    let _ = app.update(Message::Call(call::Message::Panel(call::Panel::People)));
    let mut ui = simulator(app.view());
    assert!(ui.find("hostess (You) · host").is_ok(), "rejoined by address, still the host");
    drop(ui);
    drop(guest);
    let t = app.update(Message::CloseRequested(iced::window::Id::unique()));
    drive(&mut app, t, 5 * SEC, |a| a.share.is_none() && !a.in_call());
}

// ---- settings during a call ----

/// A host, and the app in a call on it with device-free settings; the
/// engines have started (the audio one at least once).
fn app_in_call(
    name: &str,
    settings: sapora::ui::settings::Settings,
) -> (App, sapora::server::RunningHost) {
    let host = smol::block_on(start_host());
    let launch = Launch::Join {
        address: host.control_addr.to_string(),
        name: name.into(),
        room: String::new(),
    };
    let (mut app, t) = App::new(app_options(launch));
    app.settings = settings;
    // Both engines' start results must arrive within this drive (a later
    // one would be lost with its channel).
    drive(&mut app, t, 5 * SEC, |a| {
        a.in_call() && a.engine_generations().0 >= 1 && a.engine_generations().1 >= 1
    });
    (app, host)
}

fn device_free() -> sapora::ui::settings::Settings {
    sapora::ui::settings::Settings {
        camera: "none".into(),
        mic: "none".into(),
        speaker: "null".into(),
        ..Default::default()
    }
}

fn run_messages(app: &mut App, msgs: Vec<Message>) -> iced::Task<Message> {
    iced::Task::batch(msgs.into_iter().map(|m| app.update(m)).collect::<Vec<_>>())
}

/// The control bar's Settings button opens the settings over the call;
/// saving a new speaker restarts just the audio engine with it (a recording
/// appears), the choice is remembered, and a broken microphone choice is a
/// notification while the call goes on.
#[test]
fn settings_open_during_a_call_and_a_speaker_change_applies_live() {
    use sapora::ui::settings::Message as S;
    backend();
    let before = sapora::ui::settings::Settings::load();
    let (mut app, host) = app_in_call("alice", device_free());
    let mut ui = simulator(app.view());
    ui.click("Settings").expect("settings button in the control bar");
    let msgs: Vec<_> = ui.into_messages().collect();
    let t = run_messages(&mut app, msgs);
    let dialog = app.dialog.as_ref().expect("settings open");
    assert!(dialog.live, "opened from the call: changes apply now");
    let mut ui = simulator(app.view());
    assert!(ui.find("Microphone").is_ok() && ui.find("Speaker").is_ok());
    assert!(ui.find("alice (You)").is_ok(), "the call stays underneath");
    drop(ui);
    drive(&mut app, t, SEC, |_| true);

    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("live.wav");
    let (video_before, audio_before) = app.engine_generations();
    let _ = app.update(Message::Settings(S::Speaker(format!("record:{}", wav.display()))));
    let t = app.update(Message::Settings(S::Save));
    drive(&mut app, t, 5 * SEC, |a| a.engine_generations().1 >= audio_before + 2 && wav.exists());
    assert!(app.in_call());
    assert_eq!(app.engine_generations().0, video_before, "video was not restarted");
    assert_eq!(app.settings.speaker, format!("record:{}", wav.display()));
    drive(&mut app, iced::Task::none(), 3 * SEC, |a| {
        a.dialog.as_ref().and_then(|d| d.status.as_deref()).is_some_and(|s| s.starts_with("Saved"))
    });
    let saved = sapora::ui::settings::Settings::load();
    assert_eq!(saved.speaker, format!("record:{}", wav.display()), "remembered");

    // A microphone that cannot open: told, and the call goes on.
    let _ = app.update(Message::Settings(S::Mic("wav:/nonexistent/voice.wav".into())));
    let t = app.update(Message::Settings(S::Save));
    drive(&mut app, t, 5 * SEC, |a| {
        a.notices.iter().any(|(_, n)| n.error && n.text.starts_with("No sound"))
    });
    assert!(app.in_call() && app.call.as_ref().is_some_and(|c| !c.media.mic));
    let _ = app.update(Message::Settings(S::Close));
    assert!(app.dialog.is_none());
    let mut ui = simulator(app.view());
    assert!(ui.find("Microphone").is_err(), "closed");
    drop(ui);
    let _ = app.update(Message::Call(call::Message::Leave));
    smol::block_on(host.shutdown());
    // Other tests' apps read the shared settings file.
    before.save().unwrap();
}

/// Ctrl+, opens the settings too; a new video quality restarts only the
/// video engine, and our own test-camera preview comes back at the new size.
#[test]
fn a_video_quality_change_during_a_call_restarts_only_the_video() {
    use sapora::ui::settings::{Message as S, Quality};
    backend();
    let settings = sapora::ui::settings::Settings { camera: "test".into(), ..device_free() };
    let (mut app, host) = app_in_call("vera", settings);
    let own_width = |a: &App| a.call.as_ref().and_then(|c| c.frames.get("vera")).map(|f| f.width);
    // Our own tile shows the thumbnail others get in a grid: half the size.
    drive(&mut app, iced::Task::none(), 5 * SEC, |a| own_width(a) == Some(320));

    let key = ctrl_key(",");
    let _ = app.update(Message::Key(key));
    assert!(app.dialog.as_ref().is_some_and(|d| d.live), "Ctrl+, opens the settings");
    let (video_before, audio_before) = app.engine_generations();
    let _ = app.update(Message::Settings(S::Quality(Quality::Low)));
    let t = app.update(Message::Settings(S::Save));
    drive(&mut app, t, 5 * SEC, |a| own_width(a) == Some(160));
    assert!(app.engine_generations().0 >= video_before + 2, "video engine restarted");
    assert_eq!(app.engine_generations().1, audio_before, "audio untouched");
    assert!(app.call.as_ref().unwrap().media.camera, "camera still on");
    let _ = app.update(Message::Call(call::Message::Leave));
    smol::block_on(host.shutdown());
}

// ---- uploads through the file dialog ----

/// The dialog is an effect: here it answers with a real file, is cancelled,
/// or cannot be shown. A chosen file is uploaded to the recipient picked in
/// the panel exactly like a typed path; cancelling changes nothing; no
/// dialog is a notification, and the typed path stays usable.
#[test]
fn a_file_chosen_in_the_dialog_is_uploaded_and_cancel_or_no_dialog_change_nothing() {
    use sapora::ui::files::{Message as F, Transfer};
    use sapora::ui::picker::{FilePicker, Picked};
    backend();
    let (mut app, host) = app_in_call("alice", device_free());
    let bob = smol::block_on(join(host.control_addr, "bob", ""));
    drive(&mut app, iced::Task::none(), 3 * SEC, |a| {
        a.call.as_ref().is_some_and(|c| c.members.len() == 2)
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("minutes.txt");
    std::fs::write(&file, b"decisions: ship it\n".repeat(100)).unwrap();
    let chosen = file.clone();
    app.file_picker = FilePicker::from_fn(move || {
        let chosen = chosen.clone();
        async move { Picked::File(chosen) }
    });
    let _ = app.update(Message::Call(call::Message::Panel(call::Panel::Files)));
    let _ = app.update(Message::Call(call::Message::Files(F::To(Recipient::Member("bob".into())))));
    let mut ui = simulator(app.view());
    ui.click("Choose file…").expect("choose button in the files panel");
    let msgs: Vec<_> = ui.into_messages().collect();
    let t = run_messages(&mut app, msgs);
    let done = |a: &App| {
        a.call
            .as_ref()
            .is_some_and(|c| c.files.uploads.iter().any(|u| matches!(u.state, Transfer::Done(_))))
    };
    drive(&mut app, t, 5 * SEC, done);
    let files = &app.call.as_ref().unwrap().files;
    assert_eq!(files.uploads.len(), 1);
    assert_eq!(files.uploads[0].path, file.display().to_string(), "the chosen path was used");
    assert_eq!(files.uploads[0].to, Recipient::Member("bob".into()), "recipient kept");
    let offered = smol::block_on(expect(&bob, 3 * SEC, |e| match e {
        SessionEvent::FileOffered(f) => Some(f.clone()),
        _ => None,
    }));
    assert_eq!((offered.name.as_str(), offered.size), ("minutes.txt", 1900));
    assert_eq!(offered.to.as_deref(), Some("bob"));

    // Cancelled: the half-typed path stays, nothing is sent, nobody is told.
    app.file_picker = FilePicker::from_fn(|| async { Picked::Cancelled });
    let _ = app.update(Message::Call(call::Message::Files(F::Path("/tmp/half".into()))));
    let notices = app.notices.len();
    let t = app.update(Message::Call(call::Message::Files(F::Browse)));
    assert!(app.call.as_ref().unwrap().files.choosing);
    drive(&mut app, t, 2 * SEC, |a| !a.call.as_ref().unwrap().files.choosing);
    let files = &app.call.as_ref().unwrap().files;
    assert_eq!((files.path.as_str(), files.uploads.len()), ("/tmp/half", 1));
    assert_eq!(files.error, None);
    assert_eq!(app.notices.len(), notices);

    // No dialog possible: a clear notification, no hang, typing still works.
    app.file_picker =
        FilePicker::from_fn(|| async { Picked::Unavailable("No file dialog can be shown".into()) });
    let t = app.update(Message::Call(call::Message::Files(F::Browse)));
    drive(&mut app, t, 2 * SEC, |a| {
        a.notices.iter().any(|(_, n)| n.error && n.text == "No file dialog can be shown")
    });
    let mut ui = simulator(app.view());
    assert!(ui.find("Choose file…").is_ok(), "can be tried again");
    drop(ui);
    let _ = app.update(Message::Call(call::Message::Files(F::Path(file.display().to_string()))));
    let t = app.update(Message::Call(call::Message::Files(F::Send)));
    drive(&mut app, t, 5 * SEC, |a| {
        a.call
            .as_ref()
            .unwrap()
            .files
            .uploads
            .iter()
            .filter(|u| matches!(u.state, Transfer::Done(_)))
            .count()
            == 2
    });
    let _ = app.update(Message::Call(call::Message::Leave));
    drop(bob);
    smol::block_on(host.shutdown());
}

/// The key event of Ctrl plus a character key, as the window sends it.
fn ctrl_key(c: &str) -> iced::keyboard::Event {
    use iced::keyboard::{Event, Key, Location, Modifiers};
    Event::KeyPressed {
        key: Key::Character(c.into()),
        modified_key: Key::Character(c.into()),
        physical_key: iced::keyboard::key::Physical::Unidentified(
            iced::keyboard::key::NativeCode::Unidentified,
        ),
        location: Location::Standard,
        modifiers: Modifiers::CTRL,
        text: None,
        repeat: false,
    }
}

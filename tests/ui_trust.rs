//! Trust in the desktop app (issue 14), driven as tests/ui.rs drives it:
//! the passcode field (joining, and the passcode of a meeting the app
//! hosts), a refusal shown as a message, the certificate-changed dialog
//! with its two answers, verification codes (ours, and per member on the
//! host), the transport in the header, and the guests' address and QR code.
//! Set `SAPORA_UI_SNAPSHOTS=DIR` to also save each new view as a PNG.

mod common;

use std::time::Instant;

use iced_test::simulator;
use sapora::client::{Client, ClientConfig};
use sapora::server;
use sapora::transport::cert::HostIdentity;
use sapora::transport::pake::Passcode;
use sapora::transport::pin::{PinStore, host_key};
use sapora::ui::call::{self, Call};
use sapora::ui::launcher::{self, Launcher};
use sapora::ui::scheduler::Scheduler;
use sapora::ui::{App, Launch, Message, Options, trust};

use common::SEC;
use common::ui::drive;

/// Sets the test backend and one configuration directory for the process.
/// The tests share that directory's known-hosts file and run in parallel:
/// pins are saved under `PinStore::update`'s file lock, so none is lost.
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

/// Saves the view as `DIR/name.png` when `SAPORA_UI_SNAPSHOTS=DIR` is set.
fn snapshot(ui: &mut iced_test::Simulator<'_, Message>, name: &str) {
    if let Some(dir) = std::env::var_os("SAPORA_UI_SNAPSHOTS") {
        let path = std::path::Path::new(&dir).join(format!("{name}.png"));
        let _ = std::fs::remove_file(&path);
        let shot = ui.snapshot(&iced::Theme::Dark).expect("snapshot");
        shot.matches_image(&path).expect("snapshot saved");
    }
}

fn passcode(text: &str) -> Passcode {
    Passcode::new(text).unwrap()
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

fn device_free(app: &mut App) {
    app.settings.camera = "none".into();
    app.settings.mic = "none".into();
    app.settings.speaker = "null".into();
}

/// Types into the launcher and clicks `button` in the real view.
fn launcher_click(
    app: &mut App,
    fields: &[launcher::Message],
    button: &str,
) -> iced::Task<Message> {
    for f in fields {
        let _ = app.update(Message::Launcher(f.clone()));
    }
    let mut ui = simulator(app.view());
    ui.click(button).unwrap_or_else(|_| panic!("{button} button"));
    let msgs: Vec<_> = ui.into_messages().collect();
    iced::Task::batch(msgs.into_iter().map(|m| app.update(m)).collect::<Vec<_>>())
}

fn bare_launcher() -> Launcher {
    let dir = tempfile::tempdir().unwrap();
    let store = sapora::schedule::Store::at(dir.path().join("schedule.json"));
    let (scheduler, _) = Scheduler::new(Some(store));
    Launcher::new("alice".into(), scheduler)
}

#[test]
fn the_join_form_has_a_passcode_field_and_checks_it() {
    backend();
    let mut l = bare_launcher();
    let mut ui = simulator(l.view());
    assert!(ui.find("passcode (blank = none; Host sets it for the meeting)").is_ok());
    drop(ui);
    let _ = l.update(launcher::Message::Address("127.0.0.1:5000".into()));
    let _ = l.update(launcher::Message::Passcode("  blue heron ".into()));
    let (_, event) = l.update(launcher::Message::Join);
    assert_eq!(
        event,
        Some(launcher::Event::Join {
            address: "127.0.0.1:5000".into(),
            name: "alice".into(),
            room: String::new(),
            passcode: Some(passcode("blue heron")),
        })
    );
    // Too long: a message, no join.
    let mut l = bare_launcher();
    let _ = l.update(launcher::Message::Address("127.0.0.1:5000".into()));
    let _ = l.update(launcher::Message::Passcode("x".repeat(5000)));
    assert_eq!(l.update(launcher::Message::Join).1, None);
    assert!(l.error.as_deref().unwrap().starts_with("Passcode: "), "{:?}", l.error);
    let (_, event) = l.update(launcher::Message::Host);
    assert_eq!(event, None, "Host checks it too");
    // Blank: no passcode.
    let _ = l.update(launcher::Message::Passcode("   ".into()));
    let (_, event) = l.update(launcher::Message::Host);
    assert!(matches!(event, Some(launcher::Event::Host { passcode: None, .. })), "{event:?}");
}

/// A host whose meeting "board" has a passcode: the app without one, or
/// with a wrong one, gets a clear message (and stays in the launcher);
/// with the right one it joins. No crash, no dialog.
#[test]
fn a_passcode_refusal_is_a_clear_message_and_the_right_passcode_joins() {
    backend();
    let opts = common::options();
    opts.room_passcodes.set("board", Some(passcode("kite")));
    let host = smol::block_on(server::start(opts)).expect("host starts");
    let addr = host.control_addr.to_string();
    let (mut app, t) = App::new(app_options(Launch::Launcher));
    device_free(&mut app);
    drive(&mut app, t, SEC, |_| true);
    let failed =
        |a: &App| a.launcher.error.is_some() && a.launcher.status == launcher::Status::Idle;

    let fields = [
        launcher::Message::Address(addr.clone()),
        launcher::Message::Name("alice".into()),
        launcher::Message::Meeting("board".into()),
    ];
    let t = launcher_click(&mut app, &fields, "Join");
    drive(&mut app, t, 10 * SEC, failed);
    let error = app.launcher.error.clone().unwrap();
    assert!(error.contains("needs a passcode"), "{error}");
    assert!(error.contains("passcode field"), "{error}");
    assert!(!app.in_call() && app.cert_dialog.is_none());
    let mut ui = simulator(app.view());
    assert!(ui.find(error.as_str()).is_ok(), "the reason is on screen");
    snapshot(&mut ui, "launcher-passcode-refused");
    drop(ui);

    app.launcher.error = None;
    let t = launcher_click(&mut app, &[launcher::Message::Passcode("wrong".into())], "Join");
    drive(&mut app, t, 10 * SEC, failed);
    let error = app.launcher.error.clone().unwrap();
    assert!(error.contains("Check the passcode"), "{error}");
    assert!(error.contains("passcode is wrong"), "{error}");

    let t = launcher_click(&mut app, &[launcher::Message::Passcode("kite".into())], "Join");
    drive(&mut app, t, 10 * SEC, |a| a.in_call());
    assert_eq!(app.call.as_ref().unwrap().room, "board");
    let t = app.update(Message::Call(call::Message::Leave));
    drive(&mut app, t, 3 * SEC, |a| !a.in_call());
    smol::block_on(host.shutdown());
}

/// Hosting with a passcode typed in the launcher: the meeting gets it
/// (`room_passcodes`), others need it, the app itself is in. The host's
/// view shows the guests' https address and its QR code, the transport,
/// and each member's verification code, equal to what that member sees.
#[test]
fn hosting_with_a_passcode_shows_guests_address_qr_and_member_codes() {
    backend();
    let (mut app, t) = App::new(app_options(Launch::Launcher));
    device_free(&mut app);
    drive(&mut app, t, SEC, |_| true);
    let fields = [
        launcher::Message::Name("hostess".into()),
        launcher::Message::Meeting("board".into()),
        launcher::Message::Passcode("kite".into()),
    ];
    let t = launcher_click(&mut app, &fields, "Host");
    drive(&mut app, t, 10 * SEC, |a| a.in_call());
    let share: std::net::SocketAddr = app.share.clone().unwrap().parse().unwrap();
    let url = format!("https://{share}/");
    assert_eq!(app.guest_urls.as_slice(), std::slice::from_ref(&url));

    // Others need the passcode.
    let config = |passcode: Option<&str>| {
        let mut c = ClientConfig::new(share, "guest", "board");
        c.passcode = passcode.map(|p| Passcode::new(p).unwrap());
        c
    };
    let err = smol::block_on(Client::connect(config(None))).err().expect("refused");
    assert!(err.is_passcode_refusal(), "{err}");
    let guest = smol::block_on(Client::connect(config(Some("kite")))).expect("admitted");

    let _ = app.update(Message::Call(call::Message::Panel(call::Panel::People)));
    drive(&mut app, iced::Task::none(), 5 * SEC, |a| {
        a.call.as_ref().is_some_and(|c| c.members.len() == 2)
    });
    let call = app.call.as_ref().unwrap();
    assert!(call.guests.is_some(), "the QR code is built");
    let guest_code = guest.verification_code();
    let mut ui = simulator(app.view());
    assert!(ui.find(format!("Browsers: {url}")).is_ok(), "the address in the header");
    assert!(ui.find("Phones and browsers join at:").is_ok());
    assert!(ui.find(url.as_str()).is_ok(), "the address next to the QR code");
    assert!(ui.find("Encrypted · QUIC").is_ok(), "the transport in the header");
    assert!(
        ui.find(format!("verification code {guest_code}")).is_ok(),
        "the host shows the guest's code, {guest_code}"
    );
    snapshot(&mut ui, "host-people-qr-codes");
    drop(ui);

    // What the guest's own app shows: the same code, and the transport.
    let mut seen = Call::new(guest.welcome(), share.to_string(), None);
    seen.link = Some(guest.link_slot());
    let _ = seen.update(call::Message::Panel(call::Panel::People));
    let mut ui = simulator(seen.view());
    assert!(ui.find(format!("Encrypted (QUIC) · verification code {guest_code}")).is_ok());
    assert!(ui.find("Encrypted · QUIC").is_ok());
    drop(ui);

    drop(guest);
    let t = app.update(Message::CloseRequested(iced::window::Id::unique()));
    drive(&mut app, t, 5 * SEC, |a| a.share.is_none() && !a.in_call());
}

/// A host whose certificate is not the one pinned for its address: the
/// join opens the loud dialog (both fingerprints); Cancel closes it and
/// pins nothing; "Trust the new certificate" forgets the old pin, joins,
/// and pins the host's certificate.
#[test]
fn a_changed_certificate_opens_the_dialog_and_trusting_it_joins() {
    backend();
    let mut opts = common::options();
    opts.identity = Some(std::sync::Arc::new(HostIdentity::generate().unwrap()));
    let host = smol::block_on(server::start(opts)).expect("host starts");
    let pins = PinStore::open_default().unwrap();
    let key = host_key(host.control_addr);
    let stale = HostIdentity::generate().unwrap().fingerprint();
    pins.update(|known| (known.pin(&key, stale), ())).unwrap();

    let (mut app, t) = App::new(app_options(Launch::Launcher));
    device_free(&mut app);
    drive(&mut app, t, SEC, |_| true);
    let fields = [
        launcher::Message::Address(host.control_addr.to_string()),
        launcher::Message::Name("alice".into()),
    ];
    let t = launcher_click(&mut app, &fields, "Join");
    drive(&mut app, t, 10 * SEC, |a| a.cert_dialog.is_some());
    let mut ui = simulator(app.view());
    assert!(ui.find(format!("Warning: the certificate of {key} has changed")).is_ok());
    assert!(ui.find(format!("Remembered: {}", stale.short())).is_ok());
    assert!(ui.find(format!("Presented:  {}", host.fingerprint.short())).is_ok());
    snapshot(&mut ui, "certificate-changed-dialog");
    ui.click(trust::CANCEL).expect("Cancel");
    for m in ui.into_messages() {
        let _ = app.update(m);
    }
    assert!(app.cert_dialog.is_none() && !app.in_call());
    assert_eq!(pins.load().unwrap().get(&key), Some(stale), "Cancel keeps the old pin");

    let t = launcher_click(&mut app, &[], "Join");
    drive(&mut app, t, 10 * SEC, |a| a.cert_dialog.is_some());
    let mut ui = simulator(app.view());
    ui.click(trust::TRUST_NEW).expect("Trust the new certificate");
    let msgs: Vec<_> = ui.into_messages().collect();
    let t = iced::Task::batch(msgs.into_iter().map(|m| app.update(m)).collect::<Vec<_>>());
    drive(&mut app, t, 10 * SEC, |a| a.in_call());
    assert!(app.cert_dialog.is_none());
    assert_eq!(pins.load().unwrap().get(&key), Some(host.fingerprint), "the new one is pinned");
    let t = app.update(Message::Call(call::Message::Leave));
    drive(&mut app, t, 3 * SEC, |a| !a.in_call());
    smol::block_on(host.shutdown());
}

/// A host picked from discovery: the app expects the fingerprint its beacon
/// announced. A host presenting another certificate is refused (nothing is
/// pinned, no "trust the new one" offer: there is no pin to replace); the
/// announced one joins and is pinned. The list marks a passcode host.
#[test]
fn a_discovered_host_must_present_its_beacon_fingerprint() {
    backend();
    let mut opts = common::options();
    opts.identity = Some(std::sync::Arc::new(HostIdentity::generate().unwrap()));
    let host = smol::block_on(server::start(opts)).expect("host starts");
    let key = host_key(host.control_addr);
    let beacon = |fingerprint| sapora::client::discover::DiscoveredHost {
        host_id: 7,
        host_name: "lab-pc".into(),
        addr: host.control_addr,
        rooms: vec![],
        version: sapora::proto::PROTOCOL_VERSION,
        last_seen: Instant::now(),
        owner: None,
        auto: false,
        fingerprint: Some(fingerprint),
        passcode: true,
    };
    let (mut app, t) = App::new(app_options(Launch::Launcher));
    device_free(&mut app);
    drive(&mut app, t, SEC, |_| true);
    let other = HostIdentity::generate().unwrap().fingerprint();
    let _ = app.update(Message::Discovered(vec![beacon(other)]));
    let mut ui = simulator(app.view());
    assert!(ui.find("no meetings yet · needs a passcode").is_ok());
    drop(ui);
    let fields = [launcher::Message::Pick(0), launcher::Message::Name("alice".into())];
    let t = launcher_click(&mut app, &fields, "Join");
    drive(&mut app, t, 10 * SEC, |a| {
        a.launcher.error.is_some() && a.launcher.status == launcher::Status::Idle
    });
    let error = app.launcher.error.clone().unwrap();
    assert!(error.contains(&other.short()), "names the announced fingerprint: {error}");
    assert!(!app.in_call() && app.cert_dialog.is_none());
    let pins = PinStore::open_default().unwrap();
    assert_eq!(pins.load().unwrap().get(&key), None, "nothing pinned");

    let _ = app.update(Message::Discovered(vec![beacon(host.fingerprint)]));
    let t = launcher_click(&mut app, &[], "Join");
    drive(&mut app, t, 10 * SEC, |a| a.in_call());
    assert_eq!(pins.load().unwrap().get(&key), Some(host.fingerprint));
    let t = app.update(Message::Call(call::Message::Leave));
    drive(&mut app, t, 3 * SEC, |a| !a.in_call());
    smol::block_on(host.shutdown());
}

//! The call screen's host controls (issue 17), driven through the iced test
//! simulator: raised hands in the grid and the people panel (oldest first),
//! the recording indicator, and the controls a host or co-host gets.

use iced_test::simulator;
use sapora::client::Event as SessionEvent;
use sapora::proto::{
    Control, ControlNotice, Member, Ports, RaisedHand, RoomState, UserList, Welcome,
};
use sapora::ui::call::{self, Call};

fn backend() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let cfg = tempfile::tempdir().unwrap().keep();
        // SAFETY: inside call_once, before any test touches the environment.
        unsafe {
            if std::env::var_os("ICED_TEST_BACKEND").is_none() {
                std::env::set_var("ICED_TEST_BACKEND", "tiny-skia");
            }
            std::env::set_var("SAPORA_CONFIG_DIR", cfg);
        }
    });
}

fn member(name: &str) -> Member {
    Member { name: name.into(), ip: "127.0.0.1".into(), mic: true, camera: false, screen: false }
}

fn call_as(me: &str, host: &str) -> Call {
    let members = vec![member("ann"), member("bob"), member("cy")];
    let w = Welcome {
        session: sapora::proto::SessionId(1),
        token: 2,
        name: me.into(),
        room: "default".into(),
        host_name: "lab-pc".into(),
        ports: Ports::with_offset(0).unwrap(),
        heartbeat_ms: 3000,
        timeout_ms: 15000,
        members: members.clone(),
        history: vec![],
        host_member: Some(host.into()),
    };
    let mut call = Call::new(&w, "127.0.0.1:5000".into(), None);
    let _ = call.on_session(SessionEvent::Members(UserList {
        room: "default".into(),
        members,
        host_member: Some(host.into()),
    }));
    let hand = |name: &str, since_ms| RaisedHand { name: name.into(), since_ms };
    let _ = call.on_session(SessionEvent::RoomState(RoomState {
        room: "default".into(),
        recording: true,
        hands: vec![hand("cy", 10), hand("bob", 20)],
        ..RoomState::default()
    }));
    call
}

#[test]
fn hands_recording_and_host_controls_show_and_send() {
    backend();
    let mut call = call_as("ann", "ann");
    let mut ui = simulator(call.view());
    assert!(ui.find("● Recording").is_ok(), "recording indicator");
    // Grid tiles: the name, then the state with the hand's place in line.
    assert!(ui.find(" · hand raised (1) · camera off").is_ok(), "grid tile, oldest hand first");
    assert!(ui.find(" · hand raised (2) · camera off").is_ok());
    drop(ui);
    let _ = call.update(call::Message::Panel(call::Panel::People));
    let mut ui = simulator(call.view());
    assert!(ui.find("ann (You) · host").is_ok());
    assert!(ui.find("cy · hand raised (1)").is_ok());
    ui.click("Lock").expect("the host has Lock");
    ui.click("Stop recording").expect("and recording");
    let events: Vec<_> = ui.into_messages().filter_map(|m| call.update(m).1).collect::<Vec<_>>();
    assert!(
        matches!(
            events.as_slice(),
            [
                call::Event::Control(Control::Lock),
                call::Event::Control(Control::Record { on: false })
            ]
        ),
        "{events:?}"
    );
    // Hold muted (no unmuting) is a button too, and a member removed during
    // the call can be let back from the panel.
    let mut ui = simulator(call.view());
    ui.click("Hold muted").expect("the host can hold a member muted");
    let events: Vec<_> = ui.into_messages().filter_map(|m| call.update(m).1).collect::<Vec<_>>();
    assert!(
        matches!(
            events.as_slice(),
            [call::Event::Control(Control::Mute { may_unmute: false, .. })]
        ),
        "{events:?}"
    );
    let removal = |control| {
        SessionEvent::ControlNotice(ControlNotice {
            by: "ann".into(),
            control,
            text: "ann removed dee".into(),
        })
    };
    let _ = call.on_session(removal(Control::Remove { name: "dee".into() }));
    let mut ui = simulator(call.view());
    assert!(ui.find("Removed").is_ok(), "removed members are listed");
    ui.click("Let back").expect("and can be let back");
    let events: Vec<_> = ui.into_messages().filter_map(|m| call.update(m).1).collect::<Vec<_>>();
    assert!(
        matches!(
            events.as_slice(),
            [call::Event::Control(Control::LetBack { name })] if name == "dee"
        ),
        "{events:?}"
    );
    let _ = call.on_session(removal(Control::LetBack { name: "dee".into() }));
    assert!(call.removed.is_empty(), "let back: no longer listed");

    // A guest gets no host controls, only the hand button.
    let mut guest = call_as("bob", "ann");
    let _ = guest.update(call::Message::Panel(call::Panel::People));
    let mut ui = simulator(guest.view());
    assert!(ui.find("Lock").is_err() && ui.find("End for all").is_err());
    ui.click("Lower hand").expect("bob's hand is up");
    let events: Vec<_> = ui.into_messages().filter_map(|m| guest.update(m).1).collect();
    assert!(
        matches!(events.as_slice(), [call::Event::Control(Control::Hand { raised: false })]),
        "{events:?}"
    );
    // Muted by the host: the app turns the microphone off.
    guest.media.mic = true;
    let (notices, event) = guest.on_session(SessionEvent::ControlNotice(ControlNotice {
        by: "ann".into(),
        control: Control::Mute { name: "bob".into(), may_unmute: true },
        text: "ann muted you; you may unmute yourself".into(),
    }));
    assert_eq!(notices[0].text, "ann muted you; you may unmute yourself");
    assert!(!guest.media.mic);
    assert!(matches!(event, Some(call::Event::Media(m)) if !m.mic));
}

//! The session core on a virtual clock: `Instant`s made up by the test.

use super::*;
use crate::proto::{Disconnect, DisconnectCode, Handover, Ports, SessionId};

fn welcome(heartbeat_ms: u32, timeout_ms: u32) -> Welcome {
    Welcome {
        session: SessionId(3),
        token: 1,
        name: "ann".into(),
        room: "default".into(),
        host_name: "lab".into(),
        ports: Ports::with_offset(0).unwrap(),
        heartbeat_ms,
        timeout_ms,
        members: Vec::new(),
        history: Vec::new(),
        host_member: None,
    }
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn heartbeats_come_every_period_and_silence_ends_the_link() {
    let t0 = Instant::now();
    let mut timers = LinkTimers::new(&welcome(3000, 15000), t0);
    assert_eq!(timers.due(t0), None);
    assert_eq!(timers.due(t0 + 2999 * MS), None);
    assert_eq!(timers.next_deadline(), t0 + 3000 * MS);
    assert_eq!(timers.due(t0 + 3000 * MS), Some(Due::Heartbeat));
    timers.sent_heartbeat(t0 + 3001 * MS);
    assert_eq!(timers.due(t0 + 3002 * MS), None);
    assert_eq!(timers.next_deadline(), t0 + 6001 * MS);
    // Beating does not keep the link alive: only hearing the host does.
    let mut now = t0;
    while now < t0 + 15_000 * MS {
        now += 3000 * MS;
        if timers.due(now) == Some(Due::Heartbeat) {
            timers.sent_heartbeat(now);
        }
    }
    assert_eq!(timers.due(t0 + 15_000 * MS), Some(Due::Silence));
    assert_eq!(timers.silence(), 15_000 * MS);
}

#[test]
fn hearing_the_host_moves_the_silence_deadline() {
    let t0 = Instant::now();
    let mut timers = LinkTimers::new(&welcome(3000, 15000), t0);
    timers.heard(t0 + 14_000 * MS);
    assert_eq!(timers.silence_deadline(), t0 + 29_000 * MS);
    assert_ne!(timers.due(t0 + 28_999 * MS), Some(Due::Silence));
    assert_eq!(timers.due(t0 + 29_000 * MS), Some(Due::Silence));
}

#[test]
fn a_welcome_of_zeros_cannot_make_the_client_spin_or_drop_at_once() {
    let t0 = Instant::now();
    let timers = LinkTimers::new(&welcome(0, 0), t0);
    assert_eq!(timers.next_deadline(), t0 + MIN_HEARTBEAT);
    assert_eq!(timers.silence(), MIN_SILENCE);
    assert_eq!(timers.due(t0 + 99 * MS), None);
    assert_eq!(timers.due(t0 + 100 * MS), Some(Due::Heartbeat));
    assert_eq!(timers.due(t0 + 1000 * MS), Some(Due::Silence));
}

#[test]
fn rejoin_waits_double_from_200_ms_to_at_most_1_s() {
    let mut backoff = Backoff::new();
    let waits: Vec<u128> = (0..6).map(|_| backoff.after_failure().as_millis()).collect();
    assert_eq!(waits, [200, 400, 800, 1000, 1000, 1000]);
}

fn ip() -> IpAddr {
    "192.168.1.10".parse().unwrap()
}

#[test]
fn a_disconnect_ends_the_link_with_its_code_and_a_heartbeat_says_nothing() {
    let w = welcome(3000, 15000);
    let mut media = MediaState::default();
    assert!(matches!(react(HostMsg::Heartbeat, &w, ip(), true, &mut media), Reaction::Nothing));
    let bye = HostMsg::Disconnect(Disconnect {
        code: DisconnectCode::HostShutdown,
        reason: "the host is shutting down".into(),
    });
    match react(bye, &w, ip(), true, &mut media) {
        Reaction::End(LinkEnd::Lost { reason, code }) => {
            assert_eq!(code, Some(DisconnectCode::HostShutdown));
            assert_eq!(reason, "the host is shutting down");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_handover_moves_only_to_a_usable_address() {
    let w = welcome(3000, 15000);
    let mut media = MediaState::default();
    let to = |addr: &str, port| {
        HostMsg::Handover(Handover { addr: addr.into(), port, host_name: "Bo".into() })
    };
    match react(to("192.168.1.11", 5000), &w, ip(), false, &mut media) {
        Reaction::End(LinkEnd::Moved { to, host_name }) => {
            assert_eq!(to, "192.168.1.11:5000".parse().unwrap());
            assert_eq!(host_name, "Bo");
        }
        other => panic!("{other:?}"),
    }
    for bad in [to("not an address", 5000), to("192.168.1.11", 0)] {
        assert!(matches!(react(bad, &w, ip(), false, &mut media), Reaction::Nothing));
    }
}

#[test]
fn unheard_media_is_reported_only_to_a_member_that_sends_media() {
    let w = welcome(3000, 15000);
    let mut media = MediaState::default();
    let unheard = || HostMsg::MediaUnheard(crate::proto::MediaUnheard { waited_ms: 3000 });
    assert!(matches!(
        react(unheard(), &w, ip(), true, &mut media),
        Reaction::Event(Event::MediaBlocked(_))
    ));
    assert!(matches!(react(unheard(), &w, ip(), false, &mut media), Reaction::Nothing));
}

#[test]
fn the_hosts_mute_and_stop_video_turn_this_members_media_off_not_others() {
    let w = welcome(3000, 15000);
    let mut media = MediaState { mic: true, camera: true, screen: false };
    let notice = |control| {
        HostMsg::ControlNotice(crate::proto::ControlNotice {
            by: "the host".into(),
            control,
            text: String::new(),
        })
    };
    let other = Control::Mute { name: "bob".into(), may_unmute: true };
    assert!(matches!(react(notice(other), &w, ip(), true, &mut media), Reaction::Event(_)));
    assert_eq!(media, MediaState { mic: true, camera: true, screen: false });
    let mute = Control::Mute { name: "ann".into(), may_unmute: true };
    assert!(matches!(react(notice(mute), &w, ip(), true, &mut media), Reaction::Event(_)));
    assert_eq!(media, MediaState { mic: false, camera: true, screen: false });
    let stop = Control::StopVideo { name: "ann".into() };
    assert!(matches!(react(notice(stop), &w, ip(), true, &mut media), Reaction::Event(_)));
    assert_eq!(media, MediaState::default());
}

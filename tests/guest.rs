//! Browser guests without a browser: the gateway's WebSocket spoken
//! directly over TLS (always runs; tests/browser.rs drives a real browser).

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use futures_rustls::TlsConnector;
use sapora::client::Event;
use sapora::transport::cert::{HostIdentity, SERVER_NAME};
use sapora::transport::quic::{Trust, client_tls_config};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::stream::StreamExt;

type Tls = futures_rustls::client::TlsStream<TcpStream>;

async fn tls_to(port: u16, identity: &HostIdentity) -> Tls {
    let (config, _) = client_tls_config(Trust::Pinned(identity.fingerprint())).unwrap();
    let tcp = TcpStream::connect((common::LOOPBACK, port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).unwrap();
    TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap()
}

async fn guest(port: u16, identity: &HostIdentity) -> async_tungstenite::WebSocketStream<Tls> {
    let tls = tls_to(port, identity).await;
    let (ws, _) = async_tungstenite::client_async("wss://sapora/guest", tls).await.unwrap();
    ws
}

/// The next text message as JSON (10 s at most).
async fn next_json(ws: &mut async_tungstenite::WebSocketStream<Tls>) -> serde_json::Value {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("the gateway closed: {other:?}"),
            }
        }
    };
    smol::future::or(read, async {
        smol::Timer::after(Duration::from_secs(10)).await;
        panic!("no message from the gateway within 10 s")
    })
    .await
}

/// Waits for a message of type `t`, skipping others.
async fn expect_json(
    ws: &mut async_tungstenite::WebSocketStream<Tls>,
    t: &str,
) -> serde_json::Value {
    loop {
        let msg = next_json(ws).await;
        if msg["t"] == t {
            return msg;
        }
    }
}

#[test]
fn the_page_is_served_and_a_guest_is_an_ordinary_member() {
    smol::block_on(async {
        let host = common::start_host().await;
        let identity = HostIdentity::generate().unwrap();
        let tls = sapora::guest::tls_config(&identity).unwrap();
        let listener = smol::net::TcpListener::bind((common::LOOPBACK, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _web = smol::spawn(sapora::guest::serve(listener, Arc::new(tls), host.control_addr));

        // The page, and a clear 404 elsewhere.
        let mut tls = tls_to(port, &identity).await;
        tls.write_all(b"GET /?room=r HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut page = String::new();
        tls.read_to_string(&mut page).await.unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("<title>Sapora meeting</title>"));
        let mut tls = tls_to(port, &identity).await;
        tls.write_all(b"GET /secret HTTP/1.1\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

        let ana = common::join(host.control_addr, "ana", "r").await;
        let mut ws = guest(port, &identity).await;
        ws.send(Message::text(r#"{"t":"join","name":"Guest","room":"r"}"#)).await.unwrap();
        let joined = expect_json(&mut ws, "joined").await;
        assert_eq!(joined["name"], "Guest");
        let names: Vec<&str> = joined["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["name"].as_str())
            .collect();
        assert!(names.contains(&"ana") && names.contains(&"Guest"), "{joined}");

        // The same naming rules as for anyone: a taken name (compared
        // without case) gets a suffix, a name with hidden characters is
        // refused.
        let mut twin = guest(port, &identity).await;
        twin.send(Message::text(r#"{"t":"join","name":"guest","room":"r"}"#)).await.unwrap();
        assert_eq!(expect_json(&mut twin, "joined").await["name"], "guest_1");
        let mut hidden = guest(port, &identity).await;
        hidden.send(Message::text(r#"{"t":"join","name":"a\u202eb","room":"r"}"#)).await.unwrap();
        let refused = next_json(&mut hidden).await;
        assert_eq!(refused["t"], "refused", "{refused}");

        // Chat both ways, and a bad message gets a notice, not a hang.
        ws.send(Message::text(r#"{"t":"chat","to":"ana","text":"hi ana"}"#)).await.unwrap();
        let got = common::expect(&ana, Duration::from_secs(5), |e| match e {
            Event::Chat(m) if m.from == "Guest" => Some(m.clone()),
            _ => None,
        })
        .await;
        assert_eq!((got.text.as_str(), got.to.as_deref()), ("hi ana", Some("ana")));
        ana.chat(None, "hello guest").unwrap();
        let chat = expect_json(&mut ws, "chat").await;
        assert_eq!(
            (chat["from"].as_str(), chat["text"].as_str()),
            (Some("ana"), Some("hello guest"))
        );
        ws.send(Message::text("{not json")).await.unwrap();
        ws.send(Message::binary(vec![0x40, 0, 0, 0, 0, 1, 1, 2, 3])).await.unwrap();
        assert_eq!(expect_json(&mut ws, "notice").await["t"], "notice");

        // Leaving: ana sees the guest go.
        ws.send(Message::text(r#"{"t":"leave"}"#)).await.unwrap();
        common::expect(&ana, Duration::from_secs(5), |e| match e {
            Event::Members(l) if !l.members.iter().any(|m| m.name == "Guest") => Some(()),
            _ => None,
        })
        .await;
    });
}

#[test]
fn a_guest_needs_the_rooms_passcode_like_anyone() {
    smol::block_on(async {
        let mut opts = common::options();
        opts.passcode = Some(sapora::transport::pake::Passcode::new("tangerine-sky-42").unwrap());
        let host = sapora::server::start(opts).await.expect("host starts on loopback");
        let identity = HostIdentity::generate().unwrap();
        let tls = sapora::guest::tls_config(&identity).unwrap();
        let listener = smol::net::TcpListener::bind((common::LOOPBACK, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _web = smol::spawn(sapora::guest::serve(listener, Arc::new(tls), host.control_addr));

        // No passcode, then a wrong one: a clear refusal, no membership.
        for join in [
            r#"{"t":"join","name":"Guest","room":"r"}"#,
            r#"{"t":"join","name":"Guest","room":"r","passcode":"wrong-code-1"}"#,
        ] {
            let mut ws = guest(port, &identity).await;
            ws.send(Message::text(join)).await.unwrap();
            let answer = next_json(&mut ws).await;
            assert_eq!(answer["t"], "refused", "{join} → {answer}");
            assert!(answer["reason"].as_str().is_some_and(|r| !r.is_empty()), "{answer}");
        }

        // The right passcode joins.
        let mut ws = guest(port, &identity).await;
        ws.send(Message::text(
            r#"{"t":"join","name":"Guest","room":"r","passcode":"tangerine-sky-42"}"#,
        ))
        .await
        .unwrap();
        assert_eq!(expect_json(&mut ws, "joined").await["name"], "Guest");
    });
}

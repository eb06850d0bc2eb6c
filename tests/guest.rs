//! Browser guests without a browser: the page and the gateway's WebSocket
//! spoken directly over TLS to the host's TCP port, which also carries the
//! native tunnel (always runs; tests/browser.rs drives a real browser).

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use futures_rustls::TlsConnector;
use sapora::client::Event;
use sapora::server::{HostOptions, RunningHost};
use sapora::transport::cert::{Fingerprint, SERVER_NAME};
use sapora::transport::quic::{Trust, client_tls_config};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::stream::StreamExt;

type Tls = futures_rustls::client::TlsStream<TcpStream>;

/// A host on loopback that serves the guest page on its TCP port.
async fn start_web_host(mut opts: HostOptions) -> RunningHost {
    opts.web = Some(Arc::new(sapora::guest::GuestPage));
    sapora::server::start(opts).await.expect("host starts on loopback")
}

/// TLS to the host's TCP port as a browser does it (ALPN `http/1.1`; the
/// test pins the certificate instead of clicking through the warning).
async fn tls_to(port: u16, fingerprint: Fingerprint) -> Tls {
    let (mut config, _) = client_tls_config(Trust::Pinned(fingerprint)).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpStream::connect((common::LOOPBACK, port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).unwrap();
    let tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls
}

async fn guest(port: u16, fingerprint: Fingerprint) -> async_tungstenite::WebSocketStream<Tls> {
    let tls = tls_to(port, fingerprint).await;
    let (ws, _) = async_tungstenite::client_async("wss://sapora/guest", tls).await.unwrap();
    ws
}

/// Sends `request` (raw bytes) on a new connection and reads the whole
/// answer (the host closes after it), within 5 s.
async fn ask(port: u16, fingerprint: Fingerprint, request: &[u8]) -> String {
    let mut tls = tls_to(port, fingerprint).await;
    tls.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = async {
        let _ = tls.read_to_end(&mut answer).await;
    };
    smol::future::or(read, async {
        smol::Timer::after(Duration::from_secs(5)).await;
        panic!("no complete answer within 5 s to {:?}", String::from_utf8_lossy(request));
    })
    .await;
    String::from_utf8_lossy(&answer).into_owned()
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
        let host = start_web_host(common::options()).await;
        let (port, fp) = (host.control_addr.port(), host.fingerprint);

        // The page on the host's own port, and a clear 404 elsewhere.
        let page = ask(port, fp, b"GET /?room=r HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("<title>Sapora meeting</title>"));
        let answer = ask(port, fp, b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

        let ana = common::join(host.control_addr, "ana", "r").await;
        let mut ws = guest(port, fp).await;
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
        let mut twin = guest(port, fp).await;
        twin.send(Message::text(r#"{"t":"join","name":"guest","room":"r"}"#)).await.unwrap();
        assert_eq!(expect_json(&mut twin, "joined").await["name"], "guest_1");
        let mut hidden = guest(port, fp).await;
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
        let host = start_web_host(opts).await;
        let (port, fp) = (host.control_addr.port(), host.fingerprint);

        // No passcode, then a wrong one: a clear refusal, no membership.
        for join in [
            r#"{"t":"join","name":"Guest","room":"r"}"#,
            r#"{"t":"join","name":"Guest","room":"r","passcode":"wrong-code-1"}"#,
        ] {
            let mut ws = guest(port, fp).await;
            ws.send(Message::text(join)).await.unwrap();
            let answer = next_json(&mut ws).await;
            assert_eq!(answer["t"], "refused", "{join} → {answer}");
            assert!(answer["reason"].as_str().is_some_and(|r| !r.is_empty()), "{answer}");
        }

        // The right passcode joins.
        let mut ws = guest(port, fp).await;
        ws.send(Message::text(
            r#"{"t":"join","name":"Guest","room":"r","passcode":"tangerine-sky-42"}"#,
        ))
        .await
        .unwrap();
        assert_eq!(expect_json(&mut ws, "joined").await["name"], "Guest");
    });
}

/// One TLS port, four answers: the page, the guest WebSocket, the native
/// tunnel (both upgrades at once), and clear errors for everything else.
#[test]
fn one_port_routes_the_page_the_guest_the_tunnel_and_errors() {
    use sapora::transport::pin::{KNOWN_HOSTS_FILE_NAME, PinStore};
    smol::block_on(async {
        let host = start_web_host(common::options()).await;
        let (port, fp) = (host.control_addr.port(), host.fingerprint);
        let status = |answer: &str| answer.lines().next().unwrap_or("").to_string();

        // Errors, each answered and closed (never a hang):
        // unknown path 404, other method 405, malformed 400,
        // the tunnel's path without an upgrade 400, oversized head 431.
        let cases: [(&[u8], &str); 6] = [
            (b"GET /etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405"),
            (b"HELLO THERE\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /sapora/2 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /guest HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        ];
        for (request, expected) in cases {
            let answer = ask(port, fp, request).await;
            assert!(status(&answer).starts_with(expected), "{request:?} → {answer}");
        }
        let huge = format!("GET / HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n", "a".repeat(20_000));
        let answer = ask(port, fp, huge.as_bytes()).await;
        assert_eq!(status(&answer), "HTTP/1.1 431 Request Header Fields Too Large", "{answer}");
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(100));
        let answer = ask(port, fp, many.as_bytes()).await;
        assert_eq!(status(&answer), "HTTP/1.1 431 Request Header Fields Too Large", "{answer}");

        // Plain http:// on the TLS port: a redirect to https://, same
        // address and query.
        let mut plain = TcpStream::connect((common::LOOPBACK, port)).await.unwrap();
        let head = format!("GET /?room=r HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        plain.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        let _ = plain.read_to_string(&mut answer).await;
        assert!(answer.starts_with("HTTP/1.1 301 Moved Permanently\r\n"), "{answer}");
        let location = format!("\r\nLocation: https://127.0.0.1:{port}/?room=r\r\n");
        assert!(answer.contains(&location), "{answer}");

        // Both upgrades on the one port, open at the same time: a guest
        // joins through the page's WebSocket while a native client is
        // admitted through the tunnel's.
        let dir = tempfile::tempdir().unwrap();
        let pins = PinStore::at(dir.path().join(KNOWN_HOSTS_FILE_NAME));
        let native = sapora::transport::tunnel::connect(host.control_addr, "r", None, &pins)
            .await
            .expect("the native tunnel is admitted on the page's port");
        assert_eq!(native.fingerprint, Some(fp), "the same certificate as the page");
        let mut ws = guest(port, fp).await;
        ws.send(Message::text(r#"{"t":"join","name":"Guest","room":"r"}"#)).await.unwrap();
        assert_eq!(expect_json(&mut ws, "joined").await["name"], "Guest");
        assert_eq!(native.link.close_reason(), None, "the tunnel is still open");
        // And the page still loads beside them.
        let page = ask(port, fp, b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n") && page.contains("javascript"), "{page}");
    });
}

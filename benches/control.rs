//! Control-plane benchmarks over real loopback sockets (host in-process):
//! chat round trip (send → host → delivery confirmation), register → Welcome,
//! and the frame codec. Percentiles: `sapora bot --say … --say-count N
//! --report json` reports `chat_rtt_ms {p50,p95,p99}` (see README).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use sapora::client::{Client, ClientConfig, Event};
use sapora::proto::{self, ChatSend, ClientMsg, MsgType, Ports};
use sapora::server::{self, HostOptions};

fn host_options() -> HostOptions {
    // Every service on a free port, so the bench never clashes with a host.
    let ports = Ports { control: 0, discovery: 0 };
    HostOptions::new(IpAddr::V4(Ipv4Addr::LOCALHOST), ports, "bench")
}

fn chat_round_trip(c: &mut Criterion) {
    let (host, a, _b) = smol::block_on(async {
        let host = server::start(host_options()).await.unwrap();
        let a = Client::connect(ClientConfig::new(host.control_addr, "a", "")).await.unwrap();
        let b = Client::connect(ClientConfig::new(host.control_addr, "b", "")).await.unwrap();
        (host, a, b)
    });
    let events = a.events();
    c.bench_function("chat round trip (loopback, 2 in room)", |bench| {
        bench.iter(|| {
            let id = a.chat(None, "ping").unwrap();
            smol::block_on(async {
                while let Ok(e) = events.recv().await {
                    if matches!(e, Event::ChatResult(ref r) if r.id == id) {
                        break;
                    }
                }
            })
        })
    });
    drop(a);
    smol::block_on(host.shutdown());
}

fn register_to_welcome(c: &mut Criterion) {
    let host = smol::block_on(server::start(host_options())).unwrap();
    let mut n = 0u32;
    c.bench_function("register -> welcome (connect, register, leave)", |bench| {
        bench.iter(|| {
            n += 1;
            smol::block_on(async {
                let cl =
                    Client::connect(ClientConfig::new(host.control_addr, format!("u{n}"), "r"))
                        .await
                        .unwrap();
                black_box(cl.welcome().session);
                cl.leave().await;
            })
        })
    });
    smol::block_on(host.shutdown());
}

fn codec(c: &mut Criterion) {
    let msg = ClientMsg::Chat(ChatSend { id: 7, to: Some("bob".into()), text: "x".repeat(200) });
    c.bench_function("encode + decode a 200-byte chat frame", |bench| {
        let mut buf = Vec::with_capacity(512);
        bench.iter(|| {
            buf.clear();
            let ClientMsg::Chat(m) = &msg else { unreachable!() };
            proto::encode_frame(MsgType::ChatSend, 1, m, &mut buf);
            let h = proto::Header::decode(&buf).unwrap();
            black_box(ClientMsg::decode(h.kind, &buf[proto::HEADER_LEN..]).unwrap())
        })
    });
}

criterion_group!(benches, chat_round_trip, register_to_welcome, codec);
criterion_main!(benches);

//! Transport v2 costs (issue 14, phase 1): the CPU of one passcode check
//! (SPAKE2 + key confirmation, both sides, in memory: what an attacker's
//! attempt costs the host) and a whole QUIC connect + passcode admission
//! over loopback (what a join will pay before Register).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use criterion::{Criterion, criterion_group, criterion_main};
use sapora::transport::cert::HostIdentity;
use sapora::transport::limit::{AttemptLimiter, SharedCaps};
use sapora::transport::pake::{
    self, ClientHandshake, ClientOutput, Exporter, HostDecision, Passcode, Request,
};
use sapora::transport::quic::{self, Trust};

fn passcode_check_in_memory(c: &mut Criterion) {
    let passcode = Passcode::new("correct horse").unwrap();
    let exporter = Exporter([7; 32]);
    c.bench_function("passcode check, both sides (SPAKE2 + confirmation)", |bench| {
        bench.iter(|| {
            let (mut client, start) =
                ClientHandshake::start("room", Some(&passcode), exporter).unwrap();
            let request = Request::parse(&start).unwrap();
            let HostDecision::Challenge { reply, pending } =
                pake::respond(request, Some(&passcode), exporter)
            else {
                unreachable!()
            };
            let Ok(ClientOutput::Send(confirm)) = client.handle(&reply) else { unreachable!() };
            let (accepted, outcome) = pending.finish(&confirm);
            assert!(outcome.is_ok());
            assert!(matches!(client.handle(&accepted.unwrap()), Ok(ClientOutput::Admitted(_))));
        })
    });
}

fn quic_connect_and_admission(c: &mut Criterion) {
    let loopback = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0);
    let identity = HostIdentity::generate().unwrap();
    let endpoint = quic::host_endpoint(loopback, &identity).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let passcode = Passcode::new("correct horse").unwrap();
    let host_passcode = passcode.clone();
    let _host = smol::spawn(async move {
        let limiter = Arc::new(Mutex::new(AttemptLimiter::default()));
        let caps = SharedCaps::default();
        while let Some(accepted) = quic::accept(&endpoint, &caps).await {
            let (limiter, passcode) = (limiter.clone(), host_passcode.clone());
            smol::spawn(async move {
                let _slot = accepted.slot;
                let Ok(conn) = accepted.connecting.await else { return };
                let Ok((mut send, mut recv)) = conn.accept_bi().await else { return };
                let _ = quic::host_admission(
                    &conn,
                    &mut send,
                    &mut recv,
                    |_| Some(passcode.clone()),
                    &limiter,
                )
                .await;
                conn.closed().await;
            })
            .detach();
        }
    });
    let client = quic::client_endpoint(loopback).unwrap();
    let trust = Trust::Pinned(identity.fingerprint());
    c.bench_function("QUIC connect + Retry + passcode admission (loopback)", |bench| {
        bench.iter(|| {
            smol::block_on(async {
                let conn = quic::connect(&client, addr, trust).await.unwrap().connection;
                let (mut send, mut recv) = conn.open_bi().await.unwrap();
                quic::client_admission(&conn, &mut send, &mut recv, "room", Some(&passcode))
                    .await
                    .unwrap();
                conn.close(0u32.into(), b"done");
            })
        })
    });
}

criterion_group!(benches, passcode_check_in_memory, quic_connect_and_admission);
criterion_main!(benches);

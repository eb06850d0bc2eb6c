//! One room, many spellings: room names that are one room by `RoomKey`'s
//! rule (case, spacing, look-alike letters; blank = "default") share that
//! room's passcode and its files, end to end on a real host.

mod common;

use common::*;
use sapora::client::files::{FileClient, UploadOptions};
use sapora::client::{Client, ClientConfig, ClientError};
use sapora::server;
use sapora::transport::pake::Passcode;

async fn join(
    host: &server::RunningHost,
    name: &str,
    room: &str,
    passcode: Option<&str>,
) -> Result<Client, ClientError> {
    isolate();
    let mut c = ClientConfig::new(host.control_addr, name, room);
    c.passcode = passcode.map(|p| Passcode::new(p).unwrap());
    Client::connect(c).await
}

#[test]
fn spellings_of_one_room_share_its_passcode_and_its_files() {
    smol::block_on(async {
        let opts = options();
        opts.room_passcodes.set("Lab", Some(Passcode::new("blue heron").unwrap()));
        let host = server::start(opts).await.expect("host starts");

        // " lab " and "LАB" (with a Cyrillic А) are the room "Lab": its
        // passcode guards them; another room stays open.
        for room in [" lab ", "L\u{0410}B"] {
            let err = join(&host, "eve", room, None).await.err().expect("no passcode, no entry");
            assert!(err.is_passcode_refusal(), "{room:?}: {err}");
        }
        let ann = join(&host, "ann", " lab ", Some("blue heron")).await.expect("ann joins");
        let bob = join(&host, "bob", "L\u{0410}B", Some("blue heron")).await.expect("bob joins");
        let cy = join(&host, "cy", "other", None).await.expect("an open room needs no passcode");

        // A file shared in one spelling is listed in the other, not elsewhere.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, b"minutes of the lab meeting").unwrap();
        let info = FileClient::for_client(&ann)
            .upload(&path, UploadOptions::default(), None)
            .await
            .expect("upload");
        let seen: Vec<u64> =
            FileClient::for_client(&bob).list().await.unwrap().iter().map(|f| f.id).collect();
        assert_eq!(seen, [info.id], "bob is in ann's room");
        assert_eq!(FileClient::for_client(&cy).list().await.unwrap(), vec![]);
        host.shutdown().await;
    });
}

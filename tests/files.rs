//! File transfer on loopback: a real host, real sessions, real sockets.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use common::{SEC, expect, join, options};
use md5::{Digest, Md5};
use sapora::client::files::{Dest, FileClient, FileError, Progress, UploadOptions};
use sapora::client::streams::{StreamOpener, StreamWrapper};
use sapora::client::{Client, Event};
use sapora::proto::{
    CHUNK_SIZE, FileClientMsg, FileErrorCode, FileHostMsg, FileInfo, HEADER_LEN, Header, MsgType,
    PROTOCOL_VERSION, StreamOpen, StreamRefused, StreamRole, UploadEnd, UploadRequest,
    decode_payload, encode_payload, host_limit,
};
use sapora::server::{self, HostOptions, RunningHost};
use sapora::transport::link::{LinkRecv, LinkSend};
use smol::Timer;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};

/// Runs `f`, failing the test if it takes longer than `secs`.
fn bounded<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    smol::block_on(f.or(async {
        Timer::after(Duration::from_secs(secs)).await;
        panic!("test took longer than {secs} s");
    }))
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn md5(b: &[u8]) -> [u8; 16] {
    Md5::digest(b).into()
}

/// A port offset whose ports are free right now (other test binaries
/// run hosts on fixed offsets at the same time). Its ports (15000-32000)
/// stay below Linux's ephemeral range (32768-60999), so no socket bound to
/// port 0 meanwhile can take them before the host binds them.
fn free_offset() -> u16 {
    let mut seed = std::process::id() as u64
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64);
    loop {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let offset = 10_000 + (seed >> 33) as u16 % 17_000;
        let tcp = [5000u16].map(|p| TcpListener::bind(("127.0.0.1", p + offset)).is_ok());
        let udp =
            [5000u16, 5001].map(|p| std::net::UdpSocket::bind(("127.0.0.1", p + offset)).is_ok());
        if tcp.iter().chain(&udp).all(|ok| *ok) {
            return offset;
        }
    }
}

fn file_opts() -> HostOptions {
    let mut o = options();
    o.file_retention = Duration::ZERO;
    o
}

async fn host_with(opts: HostOptions) -> RunningHost {
    server::start(opts).await.expect("host starts on loopback")
}

fn write_temp(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

async fn offered(c: &Client) -> FileInfo {
    expect(c, 5 * SEC, |e| match e {
        Event::FileOffered(f) => Some(f.clone()),
        _ => None,
    })
    .await
}

/// No file offer reaches `c` within `d`.
async fn no_offer(c: &Client, d: Duration) {
    for e in common::collect(c, d).await {
        assert!(!matches!(e, Event::FileOffered(_)), "unexpected offer: {e:?}");
    }
}

/// Every file left in the host's store (names relative to its root).
fn stored_files(host: &RunningHost) -> Vec<String> {
    let root = host.files().root().to_path_buf();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    out
}

#[test]
fn round_trips_edge_sizes_to_the_room() {
    bounded(60, async {
        let host = host_with(file_opts()).await;
        let alice = join(host.control_addr, "alice", "lab").await;
        let bob = join(host.control_addr, "bob", "lab").await;
        let up = FileClient::for_client(&alice);
        let down = FileClient::for_client(&bob);
        let dir = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        for (i, size) in
            [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 5 * CHUNK_SIZE - 3].into_iter().enumerate()
        {
            let data = random_bytes(size, i as u64 + 1);
            let path = write_temp(dir.path(), &format!("f{size}.bin"), &data);
            let info = up.upload(&path, UploadOptions::default(), None).await.expect("upload");
            assert_eq!(
                (info.size, info.md5, info.sender.as_str()),
                (size as u64, md5(&data), "alice")
            );
            let offer = offered(&bob).await;
            assert_eq!(offer, info, "bob is offered exactly what was stored");
            assert!(!offer.private());
            let got = down
                .download(offer.id, Dest::Dir(out.path().into()), None)
                .await
                .expect("download");
            assert_eq!(got.path, out.path().join(format!("f{size}.bin")));
            assert_eq!(std::fs::read(&got.path).unwrap(), data, "{size} bytes round trip");
            assert!(!sapora::client::files::part_path(&got.path).exists());
        }
        // The sender is not offered its own file; both see all five listed.
        no_offer(&alice, Duration::from_millis(100)).await;
        assert_eq!(up.list().await.unwrap().len(), 5);
        assert_eq!(down.list().await.unwrap().len(), 5);
        // Stored by id only.
        for f in stored_files(&host) {
            let name = Path::new(&f).file_name().unwrap().to_str().unwrap().to_string();
            assert!(name.chars().all(|c| c.is_ascii_digit()), "stored as {f}");
        }
        host.shutdown().await;
    });
}

// MD5 is generic code, so it is compiled at this crate's opt-level: in a
// debug build this test takes ~12 s. `cargo bench --bench files` moves the
// same 100 MiB both ways (MD5-checked); to run this test too:
// `cargo test --release --test files -- --include-ignored`.
#[test]
#[ignore = "slow in debug builds; run with --release -- --include-ignored"]
fn hundred_megabytes_round_trip_with_progress() {
    bounded(120, async {
        let host = host_with(file_opts()).await;
        let alice = join(host.control_addr, "alice", "big").await;
        let bob = join(host.control_addr, "bob", "big").await;
        let dir = tempfile::tempdir().unwrap();
        // The OS generator: xorshift in an unoptimised test build takes seconds.
        let mut data = vec![0u8; 100 * 1024 * 1024];
        getrandom::fill(&mut data).unwrap();
        let path = write_temp(dir.path(), "big.bin", &data);
        let (tx, rx) = smol::channel::unbounded();
        let up = FileClient::for_client(&alice);
        let info = up.upload(&path, UploadOptions::default(), Some(tx)).await.expect("upload");
        let progress: Vec<Progress> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(progress.first(), Some(&Progress::Started { total: info.size, from: 0 }));
        assert_eq!(progress.last(), Some(&Progress::Bytes { done: info.size, total: info.size }));
        assert!(progress.len() > 50, "progress every MiB or so: {}", progress.len());
        let offer = offered(&bob).await;
        let out = dir.path().join("copy.bin");
        let down = FileClient::for_client(&bob);
        down.download(offer.id, Dest::File(out.clone()), None).await.expect("download");
        assert_eq!(md5(&std::fs::read(&out).unwrap()), md5(&data));
        host.shutdown().await;
    });
}

/// Speaks the file protocol by hand, to send what a correct client never would.
struct Raw {
    send: LinkSend,
    recv: LinkRecv,
}

impl Raw {
    /// A bare stream on `c`'s link (nothing sent yet).
    async fn connect(c: &Client) -> Raw {
        let (send, recv) = c.link().open_bi().await.unwrap();
        Raw { send, recv }
    }

    /// A stream whose first frame opens `role` as `c`'s session with `token`.
    async fn open_with(c: &Client, token: u64, role: StreamRole) -> Raw {
        let mut raw = Raw::connect(c).await;
        let open = StreamOpen { session: c.current().session, token, role };
        raw.send_frame(MsgType::StreamOpen as u8, &encode_payload(&open)).await.unwrap();
        raw
    }

    async fn open(c: &Client, role: StreamRole) -> Raw {
        Raw::open_with(c, c.current().token, role).await
    }

    async fn send_frame(&mut self, kind: u8, p: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::new();
        Header { version: PROTOCOL_VERSION, kind, len: p.len() as u32, seq: 0, flags: 0 }
            .encode(&mut out);
        out.extend_from_slice(p);
        self.send.write_all(&out).await
    }

    async fn send(&mut self, m: &FileClientMsg) -> std::io::Result<()> {
        self.send_frame(m.msg_type() as u8, &m.payload()).await
    }

    async fn recv_frame(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; HEADER_LEN];
        self.recv.read_exact(&mut head).await.unwrap();
        let h = Header::decode(&head).unwrap();
        let mut p = vec![0u8; h.check_len(host_limit(h.kind)).unwrap()];
        self.recv.read_exact(&mut p).await.unwrap();
        (h.kind, p)
    }

    async fn recv(&mut self) -> FileHostMsg {
        let (kind, p) = self.recv_frame().await;
        FileHostMsg::decode(kind, p.into()).unwrap()
    }

    async fn start_upload(c: &Client, name: &str, size: u64) -> Raw {
        let req = UploadRequest { name: name.into(), size, to: None, resume: None };
        let mut raw = Raw::open(c, StreamRole::FileUpload(req)).await;
        match raw.recv().await {
            FileHostMsg::Ready(_) => raw,
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    async fn send_all(&mut self, data: &[u8]) {
        for (i, c) in data.chunks(CHUNK_SIZE).enumerate() {
            let data = c.to_vec().into();
            let m = FileClientMsg::Chunk { offset: (i * CHUNK_SIZE) as u64, data };
            self.send(&m).await.unwrap();
        }
    }

    async fn failure(&mut self) -> (FileErrorCode, String) {
        match self.recv().await {
            FileHostMsg::Failure(f) => (f.code, f.reason),
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}

#[test]
fn corrupted_and_truncated_uploads_are_never_offered() {
    bounded(30, async {
        let host = host_with(file_opts()).await;
        let alice = join(host.control_addr, "alice", "lab").await;
        let bob = join(host.control_addr, "bob", "lab").await;
        let data = random_bytes(200_000, 7);

        // One bit flipped in the third chunk.
        let mut raw = Raw::start_upload(&alice, "c.bin", data.len() as u64).await;
        let mut bad = data.clone();
        bad[2 * CHUNK_SIZE + 5] ^= 0x10;
        raw.send_all(&bad).await;
        raw.send(&FileClientMsg::End(UploadEnd { md5: md5(&data) })).await.unwrap();
        let (code, reason) = raw.failure().await;
        assert_eq!(code, FileErrorCode::Md5Mismatch, "{reason}");

        // Ends short of the declared size (with the MD5 of what was sent).
        let mut raw = Raw::start_upload(&alice, "t.bin", data.len() as u64).await;
        raw.send_all(&data[..100_000]).await;
        raw.send(&FileClientMsg::End(UploadEnd { md5: md5(&data[..100_000]) })).await.unwrap();
        assert_eq!(raw.failure().await.0, FileErrorCode::Size);

        // More bytes than declared.
        let mut raw = Raw::start_upload(&alice, "o.bin", 1000).await;
        raw.send(&FileClientMsg::Chunk { offset: 0, data: vec![1; 1001].into() }).await.unwrap();
        assert_eq!(raw.failure().await.0, FileErrorCode::Size);

        // A chunk at the wrong offset.
        let mut raw = Raw::start_upload(&alice, "g.bin", 100_000).await;
        raw.send(&FileClientMsg::Chunk { offset: 10, data: vec![1; 10].into() }).await.unwrap();
        assert_eq!(raw.failure().await.0, FileErrorCode::Size);

        // The link dies halfway: kept only as a resumable partial.
        let mut raw = Raw::start_upload(&alice, "d.bin", data.len() as u64).await;
        raw.send_all(&data[..100_000]).await;
        drop(raw);

        no_offer(&bob, Duration::from_millis(300)).await;
        let files = FileClient::for_client(&bob);
        assert_eq!(files.list().await.unwrap(), vec![]);
        let left = stored_files(&host);
        assert!(left.iter().all(|f| f.ends_with(".part")) && left.len() <= 1, "{left:?}");
        host.shutdown().await;
    });
}

#[test]
fn hostile_requests_are_refused_with_a_reason() {
    bounded(30, async {
        let mut opts = file_opts();
        opts.max_file_bytes = 1000;
        let host = host_with(opts).await;
        let alice = join(host.control_addr, "alice", "lab").await;
        let w = alice.current();
        // Wrong token.
        let req = UploadRequest { name: "x".into(), size: 1, to: None, resume: None };
        let upload = |req: UploadRequest| StreamRole::FileUpload(req);
        let mut raw = Raw::open_with(&alice, w.token ^ 1, upload(req.clone())).await;
        assert_eq!(raw.failure().await.0, FileErrorCode::Auth);
        // Declared over the limit.
        let big = UploadRequest { size: 1001, ..req.clone() };
        let mut raw = Raw::open(&alice, upload(big)).await;
        let (code, reason) = raw.failure().await;
        assert_eq!(code, FileErrorCode::TooLarge);
        assert!(reason.contains("at most"), "{reason}");
        // To a member who is not there.
        let to = UploadRequest { to: Some("zed".into()), ..req.clone() };
        let mut raw = Raw::open(&alice, upload(to)).await;
        assert_eq!(raw.failure().await.0, FileErrorCode::NoSuchMember);
        // Resuming someone else's (or no) upload.
        let resume = UploadRequest { resume: Some(999), ..req };
        let mut raw = Raw::open(&alice, upload(resume)).await;
        assert_eq!(raw.failure().await.0, FileErrorCode::NoSuchUpload);
        // A chunk frame whose header claims 4 GiB is refused before allocating.
        let mut raw = Raw::start_upload(&alice, "y", 1000).await;
        raw.send.write_all(&[1, 0x21, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]).await.unwrap();
        assert_eq!(raw.failure().await.0, FileErrorCode::Protocol);
        // A stream that does not start with a stream open, or claims a 4 GiB
        // one, is refused with a reason before any service sees it.
        for first in [
            &[1u8, 0x21, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[1, 0x60, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0],
            &[9, 0x60, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            let mut raw = Raw::connect(&alice).await;
            raw.send.write_all(first).await.unwrap();
            let (kind, p) = raw.recv_frame().await;
            assert_eq!(kind, MsgType::StreamRefused as u8, "{first:?}");
            let why = decode_payload::<StreamRefused>(&p).unwrap().reason;
            assert!(!why.is_empty(), "{first:?}");
        }
        // The client API reports the limit clearly too.
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(dir.path(), "big", &[0; 2000]);
        let err = FileClient::for_client(&alice)
            .upload(&path, UploadOptions::default(), None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(FileErrorCode::TooLarge), "{err}");
        host.shutdown().await;
    });
}

#[test]
fn private_file_is_seen_and_fetched_only_by_its_recipient() {
    bounded(30, async {
        let host = host_with(file_opts()).await;
        let alice = join(host.control_addr, "alice", "trio").await;
        let bob = join(host.control_addr, "bob", "trio").await;
        let carol = join(host.control_addr, "carol", "trio").await;
        let dir = tempfile::tempdir().unwrap();
        let data = random_bytes(70_000, 3);
        let path = write_temp(dir.path(), "secret.txt", &data);
        let fc = |c: &Client| FileClient::for_client(c);
        let opts = UploadOptions { to: Some("BOB".into()), name: None };
        let info = fc(&alice).upload(&path, opts, None).await.expect("upload");
        assert_eq!(info.to.as_deref(), Some("bob"));
        let offer = offered(&bob).await;
        assert!(offer.private());
        no_offer(&carol, Duration::from_millis(200)).await;
        // Carol cannot list it or fetch it, even knowing its id.
        assert_eq!(fc(&carol).list().await.unwrap(), vec![]);
        let err =
            fc(&carol).download(info.id, Dest::Dir(dir.path().into()), None).await.unwrap_err();
        assert_eq!(err.code(), Some(FileErrorCode::NotFound), "{err}");
        let err =
            fc(&carol).download(info.id, Dest::File(dir.path().join("x")), None).await.unwrap_err();
        assert_eq!(err.code(), Some(FileErrorCode::NotFound), "{err}");
        assert!(!dir.path().join("x").exists());
        // Sender and recipient can.
        assert_eq!(fc(&alice).list().await.unwrap(), vec![info.clone()]);
        assert_eq!(fc(&bob).list().await.unwrap(), vec![info.clone()]);
        let out = tempfile::tempdir().unwrap();
        let got = fc(&bob).download(info.id, Dest::Dir(out.path().into()), None).await.unwrap();
        assert_eq!(std::fs::read(got.path).unwrap(), data);
        // Someone in another room with a valid session sees nothing either.
        let dave = join(host.control_addr, "dave", "elsewhere").await;
        assert_eq!(fc(&dave).list().await.unwrap(), vec![]);
        host.shutdown().await;
    });
}

#[test]
fn hostile_names_are_sanitised_and_never_used_as_paths() {
    bounded(30, async {
        let host = host_with(file_opts()).await;
        let alice = join(host.control_addr, "alice", "lab").await;
        let bob = join(host.control_addr, "bob", "lab").await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(dir.path(), "plain", b"hello");
        let up = FileClient::for_client(&alice);
        let down = FileClient::for_client(&bob);
        let out = tempfile::tempdir().unwrap();
        let cases = [
            ("../../../../tmp/evil.sh", "evil.sh"),
            ("..\\..\\Windows\\system.ini", "system.ini"),
            ("/etc/passwd", "passwd"),
            ("C:\\boot.ini", "boot.ini"),
            ("..", "file"),
            ("nul\0byte.txt", "nulbyte.txt"),
            ("line\nbreak\x1b.txt", "linebreak.txt"),
            ("CON", "_CON"),
            ("nul.txt", "_nul.txt"),
            ("COM1.log", "_COM1.log"),
            ("lpt3", "_lpt3"),
            ("AUX.tar.gz", "_AUX.tar.gz"),
        ];
        for (raw, want) in cases {
            let opts = UploadOptions { to: None, name: Some(raw.into()) };
            let info = up.upload(&path, opts, None).await.expect("upload");
            assert_eq!(info.name, want, "{raw:?}");
            assert_eq!(offered(&bob).await.name, want);
            let got = down.download(info.id, Dest::Dir(out.path().into()), None).await.unwrap();
            assert_eq!(got.path.parent(), Some(out.path()), "{raw:?} stays in the chosen folder");
            assert_eq!(std::fs::read(&got.path).unwrap(), b"hello");
        }
        for f in stored_files(&host) {
            let name = Path::new(&f).file_name().unwrap().to_str().unwrap().to_string();
            assert!(name.chars().all(|c| c.is_ascii_digit()), "stored as {f}");
        }
        assert!(
            !Path::new("/tmp/evil.sh").exists()
                || std::fs::read("/tmp/evil.sh").unwrap() != b"hello"
        );
        host.shutdown().await;
    });
}

#[test]
fn concurrent_uploads_in_several_rooms_stay_in_their_rooms() {
    bounded(60, async {
        let host = host_with(file_opts()).await;
        let dir = tempfile::tempdir().unwrap();
        let mut pairs = Vec::new();
        for r in 0..3 {
            let room = format!("room{r}");
            let s = join(host.control_addr, "sender", &room).await;
            let v = join(host.control_addr, "viewer", &room).await;
            pairs.push((room, s, v));
        }
        let tasks: Vec<_> = pairs
            .iter()
            .enumerate()
            .map(|(i, (_, s, _))| {
                let data = random_bytes(3_000_000 + i * 1000, 100 + i as u64);
                let path = write_temp(dir.path(), &format!("r{i}.bin"), &data);
                let fc = FileClient::for_client(s);
                smol::spawn(async move {
                    (fc.upload(&path, UploadOptions::default(), None).await, md5(&data))
                })
            })
            .collect();
        let mut infos = Vec::new();
        for t in tasks {
            let (r, want) = t.await;
            let info = r.expect("upload");
            assert_eq!(info.md5, want);
            infos.push(info);
        }
        for (i, (_, _, v)) in pairs.iter().enumerate() {
            let offer = offered(v).await;
            assert_eq!(offer.id, infos[i].id, "each viewer is offered its own room's file");
            let list = FileClient::for_client(v).list().await.unwrap();
            assert_eq!(list, vec![infos[i].clone()]);
        }
        host.shutdown().await;
    });
}

/// Cuts a file client's streams like a relay that breaks: the first stream
/// through it (every one, with `every`) ends after `cut` bytes in one
/// direction, as a TCP relay's shutdown would end it (the host reads the end
/// of the stream after what came through; the client reads the end of the
/// host's side). Counts what each stream carried in the cut direction.
struct Cutter {
    /// Bytes carried in the cut direction, per stream.
    carried: Arc<std::sync::Mutex<Vec<Arc<AtomicU64>>>>,
    wrap: StreamWrapper,
}

impl Cutter {
    fn new(upstream_cut: bool, cut: u64, every: bool) -> Cutter {
        let carried: Arc<std::sync::Mutex<Vec<Arc<AtomicU64>>>> = Arc::default();
        let streams = Arc::new(AtomicUsize::new(0));
        let c2 = carried.clone();
        let wrap: StreamWrapper = Arc::new(move |send, recv| {
            let n = streams.fetch_add(1, Ordering::SeqCst);
            let left = if n == 0 || every { cut } else { u64::MAX };
            let counter = Arc::new(AtomicU64::new(0));
            c2.lock().unwrap().push(counter.clone());
            if upstream_cut {
                (Box::new(CutSend { inner: send, left, counter }) as LinkSend, recv)
            } else {
                (send, Box::new(CutRecv { inner: recv, left, counter }) as LinkRecv)
            }
        });
        Cutter { carried, wrap }
    }

    fn carried(&self) -> Vec<u64> {
        self.carried.lock().unwrap().iter().map(|c| c.load(Ordering::SeqCst)).collect()
    }
}

/// The client → host half of a cut stream: after `left` bytes it finishes
/// the stream and fails every further write (a broken pipe).
struct CutSend {
    inner: LinkSend,
    left: u64,
    counter: Arc<AtomicU64>,
}

impl smol::io::AsyncWrite for CutSend {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.left == 0 {
            let _ = std::task::ready!(Pin::new(&mut this.inner).poll_close(cx));
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        let n = buf.len().min(usize::try_from(this.left).unwrap_or(usize::MAX));
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..n]))?;
        this.left -= n as u64;
        this.counter.fetch_add(n as u64, Ordering::SeqCst);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// The host → client half of a cut stream: the end after `left` bytes.
struct CutRecv {
    inner: LinkRecv,
    left: u64,
    counter: Arc<AtomicU64>,
}

impl smol::io::AsyncRead for CutRecv {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.left == 0 {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(usize::try_from(this.left).unwrap_or(usize::MAX));
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf[..n]))?;
        this.left -= n as u64;
        this.counter.fetch_add(n as u64, Ordering::SeqCst);
        Poll::Ready(Ok(n))
    }
}

#[test]
fn upload_resumes_after_the_connection_is_cut() {
    bounded(60, async {
        let host = host_with(file_opts()).await;
        let alice = join(host.control_addr, "alice", "lab").await;
        let bob = join(host.control_addr, "bob", "lab").await;
        let size = 8 * 1024 * 1024;
        let data = random_bytes(size, 11);
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(dir.path(), "r.bin", &data);
        let cutter = Cutter::new(true, 3 * 1024 * 1024 + 777, false);
        let (tx, rx) = smol::channel::unbounded();
        let fc = FileClient::for_client(&alice).wrapped(cutter.wrap.clone());
        let info =
            fc.upload(&path, UploadOptions::default(), Some(tx)).await.expect("upload resumes");
        assert_eq!(info.md5, md5(&data));
        let progress: Vec<Progress> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(progress.iter().any(|p| matches!(p, Progress::Retrying { .. })), "{progress:?}");
        let resumed_from = progress
            .iter()
            .filter_map(|p| match p {
                Progress::Started { from, .. } => Some(*from),
                _ => None,
            })
            .nth(1)
            .expect("a second start");
        assert!(resumed_from >= 2 * 1024 * 1024, "resumed from byte {resumed_from}");
        let carried = cutter.carried();
        assert_eq!(carried.len(), 2, "one cut, one resume: {carried:?}");
        assert!(
            carried[1] < size as u64 - 2 * 1024 * 1024,
            "second link resent little: {carried:?}"
        );
        // Only the whole, verified file is offered.
        let offer = offered(&bob).await;
        let out = dir.path().join("copy");
        FileClient::for_client(&bob)
            .download(offer.id, Dest::File(out.clone()), None)
            .await
            .unwrap();
        assert_eq!(std::fs::read(out).unwrap(), data);
        host.shutdown().await;
    });
}

#[test]
fn download_resumes_after_the_connection_is_cut() {
    bounded(60, async {
        let host = host_with(file_opts()).await;
        let alice = join(host.control_addr, "alice", "lab").await;
        let bob = join(host.control_addr, "bob", "lab").await;
        let size = 8 * 1024 * 1024 + 5;
        let data = random_bytes(size, 12);
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(dir.path(), "d.bin", &data);
        let info = FileClient::for_client(&alice)
            .upload(&path, UploadOptions::default(), None)
            .await
            .unwrap();
        let cutter = Cutter::new(false, 5 * 1024 * 1024 + 3, false);
        let (tx, rx) = smol::channel::unbounded();
        let out = dir.path().join("out.bin");
        let fc = FileClient::for_client(&bob).wrapped(cutter.wrap.clone());
        let got = fc
            .download(info.id, Dest::File(out.clone()), Some(tx))
            .await
            .expect("download resumes");
        assert_eq!(got.retries, 1);
        assert_eq!(std::fs::read(&out).unwrap(), data);
        let progress: Vec<Progress> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        let froms: Vec<u64> = progress
            .iter()
            .filter_map(|p| match p {
                Progress::Started { from, .. } => Some(*from),
                _ => None,
            })
            .collect();
        assert_eq!(froms.len(), 2, "{progress:?}");
        assert!(froms[1] >= 4 * 1024 * 1024, "resumed from {}", froms[1]);
        let carried = cutter.carried();
        assert!(carried[1] < (size as u64) - 4 * 1024 * 1024, "{carried:?}");

        // A .part left by an earlier run (e.g. Ctrl+C) is resumed too.
        let out2 = dir.path().join("again.bin");
        std::fs::write(sapora::client::files::part_path(&out2), &data[..1_000_000]).unwrap();
        let (tx, rx) = smol::channel::unbounded();
        let fc = FileClient::for_client(&bob);
        fc.download(info.id, Dest::File(out2.clone()), Some(tx)).await.unwrap();
        assert_eq!(
            rx.try_recv().unwrap(),
            Progress::Started { total: size as u64, from: 1_000_000 }
        );
        assert_eq!(std::fs::read(&out2).unwrap(), data);
        // A .part that belongs to another file fails the MD5 and is redone.
        let out3 = dir.path().join("stale.bin");
        std::fs::write(sapora::client::files::part_path(&out3), b"not this file").unwrap();
        fc.download(info.id, Dest::File(out3.clone()), None).await.unwrap();
        assert_eq!(std::fs::read(&out3).unwrap(), data);
        host.shutdown().await;
    });
}

#[test]
fn a_rooms_files_go_when_it_empties() {
    bounded(30, async {
        let host = host_with(file_opts()).await;
        let alice = join(host.control_addr, "alice", "short").await;
        let bob = join(host.control_addr, "bob", "short").await;
        let keep = join(host.control_addr, "kim", "other").await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(dir.path(), "a", &random_bytes(100_000, 5));
        FileClient::for_client(&alice).upload(&path, UploadOptions::default(), None).await.unwrap();
        FileClient::for_client(&keep).upload(&path, UploadOptions::default(), None).await.unwrap();
        assert_eq!(host.files().stored(), 2);
        alice.leave().await;
        Timer::after(Duration::from_millis(200)).await;
        assert_eq!(host.files().stored(), 2, "bob is still there");
        bob.leave().await;
        let deadline = std::time::Instant::now() + 5 * SEC;
        while host.files().stored() != 1 {
            assert!(std::time::Instant::now() < deadline, "the empty room's file was not removed");
            Timer::after(Duration::from_millis(20)).await;
        }
        // The bytes go from disk on the blocking pool, just after the store
        // forgets the file.
        while stored_files(&host).len() != 1 {
            assert!(std::time::Instant::now() < deadline, "its bytes are gone from disk too");
            Timer::after(Duration::from_millis(20)).await;
        }
        let root = host.files().root().to_path_buf();
        host.shutdown().await;
        // drop(host) happened in shutdown: the store is gone.
        assert!(!root.exists(), "the run's store is removed at exit");
        drop(keep);
    });
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_nothing() {
    // A real full disk: a 4 MiB tmpfs in a private mount namespace, with the
    // host binary inside it. Needs root and unshare; says so and passes
    // vacuously otherwise (the sans-IO core's unit test covers ENOSPC too).
    let is_root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    common::isolate();
    let mnt = tempfile::tempdir().unwrap();
    let offset = free_offset();
    let script = format!(
        "mount -t tmpfs -o size=4m sapora-test {dir} && exec {bin} host --headless --no-discovery --bind 127.0.0.1 --port-offset {offset} --file-dir {dir}",
        dir = mnt.path().display(),
        bin = env!("CARGO_BIN_EXE_sapora"),
    );
    if !is_root
        || std::process::Command::new("unshare")
            .args(["-m", "true"])
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
    {
        eprintln!("skipped: needs root and unshare -m for a size-limited tmpfs");
        return;
    }
    let mut child = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env("SAPORA_DISCOVERY_ADDR", "127.255.255.255")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let result = std::panic::catch_unwind(|| {
        bounded(30, async {
            let control: SocketAddr = ([127, 0, 0, 1], 5000 + offset).into();
            let mut alice = None;
            for _ in 0..100 {
                match Client::connect(sapora::client::ClientConfig::new(control, "alice", "lab"))
                    .await
                {
                    Ok(c) => {
                        alice = Some(c);
                        break;
                    }
                    Err(_) => Timer::after(Duration::from_millis(50)).await,
                };
            }
            let alice = alice.expect("host in its namespace starts");
            let dir = tempfile::tempdir().unwrap();
            let fc = FileClient::for_client(&alice);
            let big = write_temp(dir.path(), "big", &random_bytes(6 * 1024 * 1024, 9));
            let err = fc.upload(&big, UploadOptions::default(), None).await.unwrap_err();
            assert_eq!(err.code(), Some(FileErrorCode::DiskFull), "{err}");
            assert!(err.to_string().contains("disk is full"), "{err}");
            // Nothing partial is left in the host's (namespaced) store.
            let store = PathBuf::from(format!("/proc/{pid}/root{}", mnt.path().display()));
            let mut left = Vec::new();
            let mut stack = vec![store];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    if e.path().is_dir() { stack.push(e.path()) } else { left.push(e.path()) }
                }
            }
            assert_eq!(left, Vec::<PathBuf>::new(), "no partial file left");
            // And the space is usable again.
            let small = write_temp(dir.path(), "small", &random_bytes(1024 * 1024, 10));
            fc.upload(&small, UploadOptions::default(), None).await.expect("fits now");
            alice.leave().await;
        })
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn files_are_served_on_the_link() {
    bounded(10, async {
        let host = host_with(file_opts()).await;
        let c = join(host.control_addr, "x", "").await;
        let err = FileClient::for_client(&c)
            .download(12345, Dest::File(std::env::temp_dir().join("never")), None)
            .await
            .unwrap_err();
        assert!(matches!(err, FileError::Refused(_)), "{err}");
        host.shutdown().await;
    });
}

#[test]
fn a_new_user_shares_privately_through_the_binary() {
    // alice uses `sapora send --to bob`; bob and carol are bots fetching
    // whatever they are offered; carol also tries `sapora files` and `fetch`.
    common::isolate();
    let bin = env!("CARGO_BIN_EXE_sapora");
    let offset = free_offset();
    let host_addr = format!("127.0.0.1:{}", 5000 + offset);
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env("SAPORA_DISCOVERY_ADDR", "127.255.255.255")
            .output()
            .unwrap()
    };
    let mut host = std::process::Command::new(bin)
        .args(["host", "--headless", "--no-discovery", "--bind", "127.0.0.1"])
        .args(["--port-offset", &offset.to_string()])
        .env("SAPORA_DISCOVERY_ADDR", "127.255.255.255")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (bob_dir, carol_dir) = (dir.path().join("bob"), dir.path().join("carol"));
    std::fs::create_dir_all(&bob_dir).unwrap();
    std::fs::create_dir_all(&carol_dir).unwrap();
    let data = random_bytes(300_000, 77);
    let file = write_temp(dir.path(), "notes.pdf", &data);
    let outcome = std::panic::catch_unwind(|| {
        // Wait for the host to listen.
        let deadline = std::time::Instant::now() + 10 * SEC;
        while !common::udp_bound(&host_addr) {
            assert!(std::time::Instant::now() < deadline, "host did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let bot = |name: &str, dir: &Path| {
            std::process::Command::new(bin)
                .args(["bot", &host_addr, "--name", name, "--room", "trio", "--duration", "4"])
                .args(["--report", "json", "--fetch-files", dir.to_str().unwrap()])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (bob, carol) = (bot("bob", &bob_dir), bot("carol", &carol_dir));
        // The bots join in the background; until bob is in the room the
        // host refuses a private offer to him ("not in meeting"), so the
        // send is tried again (an event, not a guessed sleep).
        let deadline = std::time::Instant::now() + 10 * SEC;
        let sent = loop {
            let sent = run(&[
                "send",
                &host_addr,
                file.to_str().unwrap(),
                "--room",
                "trio",
                "--to",
                "bob",
                "--as",
                "alice",
            ]);
            let absent = String::from_utf8_lossy(&sent.stderr).contains("is not in meeting");
            if sent.status.success() || !absent || std::time::Instant::now() > deadline {
                break sent;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let out = String::from_utf8_lossy(&sent.stdout);
        assert!(sent.status.success(), "{out} {}", String::from_utf8_lossy(&sent.stderr));
        assert!(out.contains("offered privately to bob"), "{out}");
        let id = out.split(" as file ").nth(1).unwrap().split(';').next().unwrap().to_string();
        let listed = run(&["files", &host_addr, "--room", "trio", "--as", "carol"]);
        assert!(String::from_utf8_lossy(&listed.stdout).contains("No files"), "{listed:?}");
        let fetched = run(&[
            "fetch",
            &host_addr,
            &id,
            "--room",
            "trio",
            "--as",
            "carol",
            "-o",
            carol_dir.to_str().unwrap(),
        ]);
        assert!(!fetched.status.success());
        assert!(String::from_utf8_lossy(&fetched.stderr).contains("no file"), "{fetched:?}");
        let reports: Vec<serde_json::Value> = [bob, carol]
            .into_iter()
            .map(|c| serde_json::from_slice(&c.wait_with_output().unwrap().stdout).unwrap())
            .collect();
        let files = &reports[0]["files"];
        assert_eq!(files[0]["name"], "notes.pdf", "{files}");
        assert_eq!(files[0]["bytes"], 300_000);
        assert_eq!(files[0]["md5_ok"], true);
        assert_eq!(std::fs::read(bob_dir.join("notes.pdf")).unwrap(), data);
        assert_eq!(reports[1]["files"], serde_json::json!([]), "carol got nothing");
        assert_eq!(std::fs::read_dir(&carol_dir).unwrap().count(), 0);
    });
    let _ = host.kill();
    let _ = host.wait();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_interrupted_fetch_into_a_folder_resumes_on_the_next_run_and_leaves_no_part() {
    bounded(60, async {
        let host = host_with(file_opts()).await;
        let alice = join(host.control_addr, "alice", "lab").await;
        let size = 6 * 1024 * 1024 + 7;
        let data = random_bytes(size, 21);
        let src = tempfile::tempdir().unwrap();
        let path = write_temp(src.path(), "big.bin", &data);
        let info = FileClient::for_client(&alice)
            .upload(&path, UploadOptions::default(), None)
            .await
            .unwrap();
        let out = tempfile::tempdir().unwrap();

        // Run 1 (`sapora fetch HOST ID -o DIR`) dies after 3 MB: Ctrl+C.
        let bob = join(host.control_addr, "bob", "lab").await;
        // Every stream's host → client side ends after 3 MB.
        let relay = Cutter::new(false, 3 * 1024 * 1024, true);
        let mut fc = FileClient::for_client(&bob).wrapped(relay.wrap.clone());
        fc.retries = 0;
        let err = fc.download(info.id, Dest::Dir(out.path().into()), None).await.unwrap_err();
        assert!(matches!(err, FileError::Link { .. }), "{err}");
        bob.leave().await;
        let left = files_in(out.path());
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].starts_with("big.bin.") && left[0].ends_with(".part"), "{left:?}");
        let kept = std::fs::metadata(out.path().join(&left[0])).unwrap().len();
        assert!(kept >= 2 * 1024 * 1024, "{kept} bytes kept");

        // Run 2, a new session: resumes that .part, ends as big.bin, no leftovers.
        let bob = join(host.control_addr, "bob", "lab").await;
        let (tx, rx) = smol::channel::unbounded();
        let got = FileClient::for_client(&bob)
            .download(info.id, Dest::Dir(out.path().into()), Some(tx))
            .await
            .unwrap();
        assert_eq!(rx.try_recv().unwrap(), Progress::Started { total: size as u64, from: kept });
        assert_eq!(got.path, out.path().join("big.bin"));
        assert_eq!(std::fs::read(&got.path).unwrap(), data);
        assert_eq!(files_in(out.path()), ["big.bin"], "no big (2).bin, no .part");

        // Fetched again: a second copy beside the first, still no .part.
        let again = FileClient::for_client(&bob)
            .download(info.id, Dest::Dir(out.path().into()), None)
            .await
            .unwrap();
        assert_eq!(again.path, out.path().join("big (2).bin"));
        assert_eq!(files_in(out.path()), ["big (2).bin", "big.bin"]);

        // Another file that is also called big.bin never resumes this one's bytes.
        let other = random_bytes(100_000, 22);
        let path2 = write_temp(src.path(), "big.bin", &other);
        let info2 = FileClient::for_client(&alice)
            .upload(&path2, UploadOptions::default(), None)
            .await
            .unwrap();
        std::fs::write(out.path().join(&left[0]), &data[..1_000_000]).unwrap();
        let third = FileClient::for_client(&bob)
            .download(info2.id, Dest::Dir(out.path().into()), None)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&third.path).unwrap(), other);
        assert!(out.path().join(&left[0]).exists(), "the first file's .part is left alone");
        host.shutdown().await;
    });
}

/// A control link that registers and then stays silent (no heartbeats).
async fn raw_member(
    addr: SocketAddr,
    name: &str,
    room: &str,
    token: Option<u64>,
) -> (common::RawControl, sapora::proto::Welcome) {
    let mut s = common::raw_control(addr, room).await;
    let reg = sapora::proto::Register {
        version: PROTOCOL_VERSION,
        name: name.into(),
        room: room.into(),
        rejoin_token: token,
        host_key: None,
    };
    let mut frame = Vec::new();
    sapora::proto::encode_frame(sapora::proto::MsgType::Register, 0, &reg, &mut frame);
    s.write(&frame).await.unwrap();
    loop {
        let mut head = [0u8; HEADER_LEN];
        s.recv.read_exact(&mut head).await.unwrap();
        let h = Header::decode(&head).unwrap();
        let mut p = vec![0u8; h.len as usize];
        s.recv.read_exact(&mut p).await.unwrap();
        if let Ok(sapora::proto::HostMsg::Welcome(w)) = sapora::proto::HostMsg::decode(h.kind, &p) {
            return (s, *w);
        }
    }
}

/// The control messages waiting on a raw member's link, read for `d`.
async fn raw_messages(s: &mut common::RawControl, d: Duration) -> Vec<sapora::proto::HostMsg> {
    let until = std::time::Instant::now() + d;
    let mut out = Vec::new();
    loop {
        let next = async {
            let mut head = [0u8; HEADER_LEN];
            s.recv.read_exact(&mut head).await.ok()?;
            let h = Header::decode(&head).unwrap();
            let mut p = vec![0u8; h.len as usize];
            s.recv.read_exact(&mut p).await.ok()?;
            Some(sapora::proto::HostMsg::decode(h.kind, &p))
        }
        .or(async {
            Timer::at(until).await;
            None
        })
        .await;
        match next {
            Some(Ok(m)) => out.push(m),
            Some(Err(_)) => {}
            None => return out,
        }
    }
}

#[test]
fn a_private_file_follows_its_recipient_across_a_timeout_and_the_sender_hears_they_left() {
    bounded(60, async {
        let mut opts = file_opts();
        opts.idle_timeout = Duration::from_millis(1500);
        opts.heartbeat = Duration::from_millis(100);
        let host = host_with(opts).await;
        let alice = join(host.control_addr, "alice", "lab").await;
        let (bob_link, bob) = raw_member(host.control_addr, "bob", "lab", None).await;
        let src = tempfile::tempdir().unwrap();
        let data = random_bytes(200_000, 31);
        let path = write_temp(src.path(), "notes.txt", &data);
        let to_bob = || UploadOptions { to: Some("bob".into()), name: None };

        // 1. Offered while bob is there; then bob times out.
        let first = FileClient::for_client(&alice).upload(&path, to_bob(), None).await.unwrap();
        expect(&alice, 5 * SEC, |e| match e {
            Event::Presence(p)
                if p.name == "bob" && p.change == sapora::proto::PresenceChange::TimedOut =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
        drop(bob_link);

        // 2. Sent while bob is gone: refused up front, saying so.
        let err = FileClient::for_client(&alice).upload(&path, to_bob(), None).await.unwrap_err();
        assert_eq!(err.code(), Some(FileErrorCode::NoSuchMember), "{err}");
        assert!(err.to_string().contains("has left"), "{err}");

        // 3. Bob leaves while an upload to him runs: the sender is told.
        let (bob_link, bob2) = raw_member(host.control_addr, "bob", "lab", Some(bob.token)).await;
        assert_eq!((bob2.session, bob2.token), (bob.session, bob.token), "same session back");
        let req = UploadRequest {
            name: "late.txt".into(),
            size: data.len() as u64,
            to: Some("bob".into()),
            resume: None,
        };
        let mut raw = Raw::open(&alice, StreamRole::FileUpload(req)).await;
        assert!(matches!(raw.recv().await, FileHostMsg::Ready(_)));
        raw.send_all(&data).await;
        drop(bob_link);
        expect(&alice, 5 * SEC, |e| match e {
            Event::Presence(p)
                if p.name == "bob" && p.change != sapora::proto::PresenceChange::Joined =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
        raw.send(&FileClientMsg::End(UploadEnd { md5: md5(&data) })).await.unwrap();
        let FileHostMsg::Done(done) = raw.recv().await else { panic!("expected Done") };
        let notice = done.notice.expect("the sender is told bob is gone");
        assert!(notice.contains("bob is no longer in the meeting"), "{notice}");

        // 4. Bob's client rejoins with its token: the waiting file is offered,
        //    and both files are his to list and fetch.
        let (mut bob_link, bob3) =
            raw_member(host.control_addr, "bob", "lab", Some(bob.token)).await;
        assert_eq!(bob3.session, bob.session);
        let offers: Vec<u64> = raw_messages(&mut bob_link, Duration::from_millis(300))
            .await
            .into_iter()
            .filter_map(|m| match m {
                sapora::proto::HostMsg::FileOffered(f) => Some(f.id),
                _ => None,
            })
            .collect();
        assert_eq!(offers, [done.file.id], "offered once, when he is back");
        let opener = StreamOpener::link(Arc::new(std::sync::Mutex::new(bob_link.link.clone())));
        let fc = FileClient::new(opener, Arc::new(std::sync::Mutex::new(bob3)));
        let ids: Vec<u64> = fc.list().await.unwrap().iter().map(|f| f.id).collect();
        assert_eq!(ids, [first.id, done.file.id]);
        let out = tempfile::tempdir().unwrap();
        for id in ids {
            let got = fc.download(id, Dest::Dir(out.path().into()), None).await.unwrap();
            assert_eq!(std::fs::read(got.path).unwrap(), data);
        }
        drop(bob_link);
        host.shutdown().await;
    });
}

#[test]
fn a_right_to_left_override_never_reaches_a_shown_or_saved_file_name() {
    bounded(30, async {
        let host = host_with(file_opts()).await;
        let alice = join(host.control_addr, "alice", "lab").await;
        let bob = join(host.control_addr, "bob", "lab").await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(dir.path(), "plain", b"MZ not really");
        let cases = [
            // Reads as "invoiceexe.pdf" with the override intact.
            ("invoice\u{202E}fdp.exe", "invoicefdp.exe"),
            ("photo\u{2066}gpj.scr\u{2069}", "photogpj.scr"),
            ("re\u{200B}port.pdf", "report.pdf"),
            ("cafe\u{301}.txt", "café.txt"),
        ];
        let out = tempfile::tempdir().unwrap();
        for (raw, shown) in cases {
            let opts = UploadOptions { to: None, name: Some(raw.into()) };
            let info = FileClient::for_client(&alice).upload(&path, opts, None).await.unwrap();
            assert_eq!(info.name, shown, "{raw:?}");
            assert_eq!(offered(&bob).await.name, shown, "{raw:?}");
            let got = FileClient::for_client(&bob)
                .download(info.id, Dest::Dir(out.path().into()), None)
                .await
                .unwrap();
            assert_eq!(got.path.file_name().unwrap().to_str(), Some(shown), "{raw:?}");
        }
        host.shutdown().await;
    });
}

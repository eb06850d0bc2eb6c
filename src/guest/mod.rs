//! Browser guests: anyone on the LAN joins from a browser, served by the
//! host itself (issue 15).
//!
//! The host serves the embedded web client ([`assets`]) over HTTPS on its
//! TCP port (5000 plus the port offset), the TLS listener of the native
//! clients' fallback tunnel, with the same certificate
//! ([`crate::transport::cert::HostIdentity`]); a browser only grants camera
//! and microphone to a secure page, and the page explains the one-time
//! certificate warning. The listener routes by the request after TLS
//! ([`crate::transport::fallback::accept_any`]): `/sapora/2` is the tunnel,
//! everything else comes here ([`GuestPage`]). `GET /guest` upgrades to a
//! WebSocket, and a **gateway** ([`gateway`]: a sans-IO translation core;
//! the driver is [`run_guest`]) joins the meeting on the guest's behalf as
//! an ordinary client of the host, through [`crate::client::Client`], so
//! names, rooms, chat and the participant list behave as for anyone.
//!
//! This module sits beside `server` and `client` (it uses the client
//! library, which `server` may not): the host only knows it as a
//! [`WebService`] in `HostOptions::web`, which `sapora host` and the tests
//! set.
//!
//! Wire layout of the guest WebSocket: `docs/protocol.md`, "Browser guests".

pub mod assets;
pub mod gateway;
pub mod http;
pub mod media;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::stream::StreamExt;

use crate::client::{Client, ClientConfig};
use crate::transport::fallback::{self, FallbackError, HostTls};
use crate::transport::http::Request;
use crate::transport::tunnel::WebService;

use self::gateway::{FromGuest, ToGuest};
use self::http::Route;

/// An asset's answer must be written within this time (the largest,
/// `app.js`, is a few tens of KiB).
pub const ASSET_TIMEOUT: Duration = Duration::from_secs(30);
/// Mix frames (20 ms each) waiting for a guest's WebSocket: past this the
/// newest are dropped, so a slow guest's audio never lags more than 160 ms.
pub const MIX_QUEUE: usize = 8;

/// Largest upload a guest may announce (2 GiB): its temporary copy is
/// bounded by this before the host's own limit is checked.
pub const MAX_GUEST_UPLOAD: u64 = 2 << 30;

/// What the guest's writer sends next.
enum Out {
    Message(Message),
    Video,
    Mix(Vec<i16>),
}

/// The guest must send its `join` within this time of connecting.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest WebSocket message from a guest: a camera frame (JPEG) with room
/// to spare.
pub const MAX_GUEST_MESSAGE: usize = 1024 * 1024;
/// The browser guests' web application on the host's TCP port (beside the
/// native tunnel, [`crate::transport::tunnel::WebService`]): the embedded
/// page and its assets, and the guest WebSocket ([`http::GUEST_PATH`]),
/// whose gateway joins the host as a client. Put it in
/// `HostOptions::web`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuestPage;

impl WebService for GuestPage {
    fn serve(
        &self,
        request: Request,
        tls: Box<HostTls>,
        peer: SocketAddr,
        host: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            if let Err(e) = answer(request, tls, host).await {
                tracing::debug!(remote = %peer, error = %e, "browser connection ended");
            }
        })
    }
}

/// The page's address for people to open: `https://IP:PORT/`, where `port`
/// is the host's (TCP, the same number as its QUIC port: 5000 plus the port
/// offset).
pub fn page_url(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => format!("https://[{v6}]:{port}/"),
        v4 => format!("https://{v4}:{port}/"),
    }
}

/// [`page_url`] for each of `ips`.
pub fn page_urls(ips: &[std::net::IpAddr], port: u16) -> Vec<String> {
    ips.iter().map(|ip| page_url(*ip, port)).collect()
}

/// One browser request (its head already read): an asset, an error, or the
/// guest WebSocket, whose gateway joins the host at `host`.
async fn answer(request: Request, mut tls: Box<HostTls>, host: SocketAddr) -> std::io::Result<()> {
    match http::route(&request) {
        Route::Asset(asset) => {
            // A browser that stops reading must not hold the connection's
            // slot for ever.
            let write = async {
                tls.write_all(&http::asset_response(asset, request.method == "HEAD")).await?;
                fallback::linger_close(&mut tls).await;
                Ok(())
            };
            smol::future::or(write, async {
                smol::Timer::after(ASSET_TIMEOUT).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the browser stopped reading",
                ))
            })
            .await
        }
        Route::Error { status, text } => match fallback::refuse(tls, status, text).await {
            FallbackError::Io(e) => Err(e),
            _ => Ok(()),
        },
        Route::Guest { accept } => {
            tls.write_all(&crate::transport::http::upgrade_response(&accept)).await?;
            tls.flush().await?;
            let config = WebSocketConfig::default()
                .max_message_size(Some(MAX_GUEST_MESSAGE))
                .max_frame_size(Some(MAX_GUEST_MESSAGE))
                .read_buffer_size(crate::transport::fallback::WS_READ_BUFFER);
            let ws = WebSocketStream::from_raw_socket(tls, Role::Server, Some(config)).await;
            run_guest(ws, host).await;
            Ok(())
        }
    }
}

/// The gateway for one guest: waits for its `join`, joins the host as a
/// client, then relays both ways until either side ends.
pub async fn run_guest<S>(ws: WebSocketStream<S>, control: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, mut rx) = ws.split();
    let join = smol::future::or(
        async {
            loop {
                match rx.next().await {
                    Some(Ok(Message::Text(text))) => return Some(gateway::parse(&text)),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    _ => return None,
                }
            }
        },
        async {
            smol::Timer::after(JOIN_TIMEOUT).await;
            None
        },
    )
    .await;
    let send = |msg: ToGuest| Message::text(msg.to_json());
    let (name, room, passcode) = match join {
        Some(Ok(FromGuest::Join { name, room, passcode })) => (name, room, passcode),
        Some(Ok(_)) | Some(Err(_)) => {
            let refusal = ToGuest::Refused { reason: "the first message must be a join".into() };
            let _ = tx.send(send(refusal)).await;
            let _ = tx.close(None).await;
            return;
        }
        None => return,
    };
    let mut config = ClientConfig::new(control, name, room);
    config.connect_timeout = Duration::from_secs(5);
    // The page's passcode goes to the host's admission like anyone's; an
    // empty field means none.
    match passcode.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        None => {}
        Some(text) => match crate::transport::pake::Passcode::new(text) {
            Ok(code) => config.passcode = Some(code),
            Err(e) => {
                let refusal = ToGuest::Refused { reason: format!("passcode: {e}") };
                let _ = tx.send(send(refusal)).await;
                let _ = tx.close(None).await;
                return;
            }
        },
    }
    let client = match Client::connect(config).await {
        Ok(client) => client,
        Err(e) => {
            let reason = match e {
                crate::client::ClientError::Refused(r) => r.reason,
                other => other.to_string(),
            };
            let _ = tx.send(send(ToGuest::Refused { reason })).await;
            let _ = tx.close(None).await;
            return;
        }
    };
    let events = client.events();
    let mailbox = Arc::new(media::FrameMailbox::default());
    let (wake_tx, wake_rx) = smol::channel::bounded::<()>(1);
    let link = media::MediaLink::of(&client).map_err(|e| e.to_string());
    let video = match link.clone().and_then(|l| {
        media::VideoLink::start(l, mailbox.clone(), wake_tx).map_err(|e| e.to_string())
    }) {
        Ok(video) => Some(video),
        Err(e) => {
            tracing::warn!(error = %e, "guest video off: cannot read the link's datagrams");
            None
        }
    };
    let (mix_tx, mix_rx) = smol::channel::bounded::<Vec<i16>>(MIX_QUEUE);
    let audio =
        match link.and_then(|l| media::AudioLink::start(l, mix_tx).map_err(|e| e.to_string())) {
            Ok(audio) => Some(audio),
            Err(e) => {
                tracing::warn!(error = %e, "guest audio off: cannot read the link's datagrams");
                None
            }
        };
    // Session events and video → guest, in their own task; the WebSocket's
    // write half goes with it (the read half stays here). Control messages
    // queue (bounded); video frames wait in the mailbox, newest only.
    let (out_tx, out_rx) = smol::channel::bounded::<Message>(256);
    let writer = crate::server::runtime::spawn(async move {
        loop {
            let next = smol::future::or(async { out_rx.recv().await.map(Out::Message) }, async {
                wake_rx.recv().await.map(|()| Out::Video)
            })
            .or(async { mix_rx.recv().await.map(Out::Mix) })
            .await;
            let sent = match next {
                Ok(Out::Message(msg)) => tx.send(msg).await,
                Ok(Out::Mix(pcm)) => {
                    let mut bytes = Vec::with_capacity(1 + 2 * pcm.len());
                    bytes.push(gateway::KIND_PCM);
                    for s in pcm {
                        bytes.extend_from_slice(&s.to_le_bytes());
                    }
                    tx.send(Message::binary(bytes)).await
                }
                Ok(Out::Video) => {
                    let mut result = Ok(());
                    for f in mailbox.take() {
                        let bytes =
                            gateway::encode_video(f.sender, &f.name, f.layer, f.frame_id, &f.jpeg);
                        result = tx.send(Message::binary(bytes)).await;
                        if result.is_err() {
                            break;
                        }
                    }
                    result
                }
                Err(_) => break,
            };
            if sent.is_err() {
                break;
            }
        }
        let _ = tx.close(None).await;
    });
    let forward = {
        let out_tx = out_tx.clone();
        crate::server::runtime::spawn(async move {
            while let Ok(event) = events.recv().await {
                let last = matches!(event, crate::client::Event::Ended);
                if let Some(msg) = gateway::translate(&event)
                    && out_tx.send(send(msg)).await.is_err()
                {
                    break;
                }
                if last {
                    break;
                }
            }
        })
    };
    // The shared screen, if any: the newest picture as JPEG, one at a time
    // (the viewer's "updated" signal holds at most one wake-up).
    let screen = {
        let target = crate::client::screen::ScreenTarget::new(&client);
        let out = out_tx.clone();
        crate::server::runtime::spawn(view_screen(target, out))
    };
    // Guest → session.
    let mut downloads: Vec<smol::Task<()>> = Vec::new();
    let mut upload = Upload::default();
    while let Some(msg) = rx.next().await {
        let text = match msg {
            Ok(Message::Text(text)) => text,
            Ok(Message::Binary(bytes)) => {
                match gateway::parse_media(&bytes) {
                    Ok(gateway::GuestMedia::Video { layer, frame_id, jpeg }) => {
                        if let Some(video) = &video {
                            video.send_frame(layer, frame_id, jpeg);
                        }
                    }
                    Ok(gateway::GuestMedia::Pcm(pcm)) => {
                        if let Some(audio) = &audio {
                            audio.send_pcm(pcm);
                        }
                    }
                    Ok(gateway::GuestMedia::Upload(bytes)) => {
                        if let Err(e) = upload.write(bytes).await {
                            let msg = ToGuest::Uploaded { name: upload.name(), error: Some(e) };
                            let _ = out_tx.try_send(send(msg));
                            upload.abort();
                        }
                    }
                    Ok(gateway::GuestMedia::Opus(packet)) => {
                        if let Some(audio) = &audio {
                            audio.send_opus(packet);
                        }
                    }
                    Err(e) => {
                        let _ = out_tx.try_send(send(ToGuest::Notice { text: e.to_string() }));
                    }
                }
                continue;
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        match gateway::parse(&text) {
            Ok(FromGuest::Chat { to, text }) => {
                if let Err(e) = client.chat(to.as_deref(), &text) {
                    let _ = out_tx.try_send(send(ToGuest::ChatFailed { reason: e.to_string() }));
                }
            }
            Ok(FromGuest::Media { mic, camera }) => {
                let _ = client.set_media(crate::proto::MediaState { mic, camera, screen: false });
            }
            Ok(FromGuest::Video { default, full }) => {
                let default = match default.as_deref().map(str::parse) {
                    None => crate::proto::Subscription::Thumb,
                    Some(Ok(sub)) => sub,
                    Some(Err(e)) => {
                        let _ = out_tx.try_send(send(ToGuest::Notice { text: e }));
                        continue;
                    }
                };
                if let Some(video) = &video {
                    video.set_wants(media::Wants { default, full });
                }
            }
            Ok(FromGuest::Download { id }) => {
                let files = crate::client::files::FileClient::for_client(&client);
                downloads.push(crate::server::runtime::spawn(download(files, id, out_tx.clone())));
            }
            Ok(FromGuest::UploadStart { name, size, to }) => {
                if let Err(e) = upload.start(name.clone(), size, to).await {
                    let _ = out_tx.try_send(send(ToGuest::Uploaded { name, error: Some(e) }));
                }
            }
            Ok(FromGuest::UploadEnd) => match upload.finish().await {
                Ok((path, opts, dir)) => {
                    let files = crate::client::files::FileClient::for_client(&client);
                    let out = out_tx.clone();
                    downloads.push(crate::server::runtime::spawn(async move {
                        let name = opts.name.clone().unwrap_or_default();
                        let error =
                            files.upload(&path, opts, None).await.err().map(|e| e.to_string());
                        let _ = out.send(send(ToGuest::Uploaded { name, error })).await;
                        let _ = smol::unblock(move || std::fs::remove_dir_all(dir)).await;
                    }));
                }
                Err(e) => {
                    let _ = out_tx
                        .try_send(send(ToGuest::Uploaded { name: upload.name(), error: Some(e) }));
                }
            },
            Ok(FromGuest::Leave) => break,
            Ok(FromGuest::Join { .. }) => {
                let _ = out_tx.try_send(send(ToGuest::Notice { text: "already joined".into() }));
            }
            Err(e) => {
                let _ = out_tx.try_send(send(ToGuest::Notice { text: e.to_string() }));
            }
        }
    }
    drop(downloads);
    drop(screen);
    upload.abort();
    drop(video);
    drop(audio);
    client.leave().await;
    drop(forward);
    let _ = out_tx.try_send(send(ToGuest::Ended { reason: "left the meeting".into() }));
    drop(out_tx);
    let _ = smol::future::or(writer, async {
        smol::Timer::after(Duration::from_secs(1)).await;
    })
    .await;
}

/// Fetches file `id` from the host for a guest (through the client
/// library, which checks its MD5) into a temporary directory, then sends it
/// as [`gateway::KIND_FILE`] pieces; the WebSocket's queue paces the
/// reading. The temporary copy is removed afterwards.
async fn download(
    files: crate::client::files::FileClient,
    id: u64,
    out: smol::channel::Sender<Message>,
) {
    let dir = std::env::temp_dir().join(format!("sapora-guest-{:016x}", crate::net::random_u64()));
    let result = async {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let done = files
            .download(id, crate::client::files::Dest::Dir(dir.clone()), None)
            .await
            .map_err(|e| e.to_string())?;
        let mut file = smol::fs::File::open(&done.path).await.map_err(|e| e.to_string())?;
        let mut offset = 0u64;
        let mut piece = vec![0u8; gateway::FILE_PIECE];
        loop {
            let n = file.read(&mut piece).await.map_err(|e| e.to_string())?;
            let msg = Message::binary(gateway::encode_file_piece(id, offset, &piece[..n]));
            out.send(msg).await.map_err(|_| "the guest left".to_string())?;
            if n == 0 {
                return Ok::<(), String>(());
            }
            offset += n as u64;
        }
    }
    .await;
    if let Err(reason) = result {
        let msg = ToGuest::DownloadFailed { id, reason };
        let _ = out.send(Message::text(msg.to_json())).await;
    }
    let _ = smol::unblock(move || std::fs::remove_dir_all(dir)).await;
}

/// A guest's upload in progress: its bytes land in a temporary file, which
/// the client library then shares (and which is removed afterwards).
#[derive(Default)]
struct Upload {
    current: Option<UploadFile>,
}

struct UploadFile {
    name: String,
    size: u64,
    to: Option<String>,
    written: u64,
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
    file: smol::fs::File,
}

impl Upload {
    fn name(&self) -> String {
        self.current.as_ref().map(|u| u.name.clone()).unwrap_or_default()
    }

    async fn start(&mut self, name: String, size: u64, to: Option<String>) -> Result<(), String> {
        if self.current.is_some() {
            return Err("another upload is still running".into());
        }
        if size > MAX_GUEST_UPLOAD {
            return Err(format!(
                "{size} bytes is over the {MAX_GUEST_UPLOAD}-byte limit for a guest's upload"
            ));
        }
        let dir =
            std::env::temp_dir().join(format!("sapora-guest-{:016x}", crate::net::random_u64()));
        smol::fs::create_dir_all(&dir).await.map_err(|e| e.to_string())?;
        let path = dir.join("upload");
        let file = smol::fs::File::create(&path).await.map_err(|e| e.to_string())?;
        self.current = Some(UploadFile { name, size, to, written: 0, dir, path, file });
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let u = self.current.as_mut().ok_or("no upload was started")?;
        if u.written + bytes.len() as u64 > u.size {
            return Err(format!("more bytes than the {} announced", u.size));
        }
        u.file.write_all(bytes).await.map_err(|e| e.to_string())?;
        u.written += bytes.len() as u64;
        Ok(())
    }

    /// The finished file, the upload's options and the directory to remove.
    async fn finish(
        &mut self,
    ) -> Result<(std::path::PathBuf, crate::client::files::UploadOptions, std::path::PathBuf), String>
    {
        let mut u = self.current.take().ok_or("no upload was started")?;
        // async-fs buffers writes: flush them before the file is read.
        if let Err(e) = u.file.flush().await {
            let _ = std::fs::remove_dir_all(&u.dir);
            return Err(e.to_string());
        }
        if u.written != u.size {
            let _ = std::fs::remove_dir_all(&u.dir);
            return Err(format!("{} of {} bytes arrived", u.written, u.size));
        }
        drop(u.file);
        let opts = crate::client::files::UploadOptions { to: u.to, name: Some(u.name) };
        Ok((u.path, opts, u.dir))
    }

    fn abort(&mut self) {
        if let Some(u) = self.current.take() {
            drop(u.file);
            let _ = std::fs::remove_dir_all(&u.dir);
        }
    }
}

/// Relays the room's shared screen to a guest until the guest leaves.
async fn view_screen(
    target: crate::client::screen::ScreenTarget,
    out: smol::channel::Sender<Message>,
) {
    use crate::client::screen::{Viewer, ViewerEvent};
    let viewer = match Viewer::start_async(target).await {
        Ok(viewer) => viewer,
        Err(e) => {
            tracing::debug!(error = %e, "guest screen viewer");
            return;
        }
    };
    let (events, updated) = (viewer.events(), viewer.updated());
    loop {
        enum Wake {
            Event(ViewerEvent),
            Updated,
        }
        let wake = smol::future::or(async { events.recv().await.map(Wake::Event) }, async {
            updated.recv().await.map(|()| Wake::Updated)
        })
        .await;
        let msg = match wake {
            Ok(Wake::Event(ViewerEvent::Started { presenter, .. })) => {
                Message::text(ToGuest::Screen { presenter: Some(presenter) }.to_json())
            }
            Ok(Wake::Event(ViewerEvent::Stopped { .. })) => {
                Message::text(ToGuest::Screen { presenter: None }.to_json())
            }
            Ok(Wake::Updated) => {
                let Some(image) = viewer.latest() else { continue };
                let encoded = smol::unblock(move || {
                    let mut jpeg = Vec::new();
                    crate::media::jpeg::encode_rgba(
                        &image.rgba,
                        image.width,
                        image.height,
                        85,
                        &mut jpeg,
                    )
                    .map(|()| {
                        gateway::encode_screen(
                            image.frame,
                            image.width as u16,
                            image.height as u16,
                            &jpeg,
                        )
                    })
                })
                .await;
                match encoded {
                    Ok(bytes) => Message::binary(bytes),
                    Err(e) => {
                        tracing::debug!(error = %e, "screen picture not encoded");
                        continue;
                    }
                }
            }
            Ok(Wake::Event(ViewerEvent::Ended { .. })) | Err(_) => break,
        };
        if out.send(msg).await.is_err() {
            break;
        }
    }
    smol::unblock(move || drop(viewer.stop())).await;
}

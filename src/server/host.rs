//! Puts a host together: binds the sockets, runs the control plane and the
//! discovery beacon as smol tasks, and hands back a handle to stop them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smol::Task;
use smol::channel::{Receiver, Sender};

use super::beacon::{BeaconConfig, Survivor, run_beacon};
use super::control::{self, ControlHandle};
use super::core::{Host, HostConfig, HostEvent, Stats};
use super::directory::Directory;
use crate::net::random_u64;
use crate::proto::text::RoomKey;
use crate::proto::{HostKey, Ports, RoomInfo};
use crate::transport::cert::{CertError, Fingerprint, HostIdentity, Loaded};
use crate::transport::limit::{
    ATTEMPT_WINDOW, AttemptLimiter, ConnectionCaps, MAX_CONNECTIONS_PER_ADDRESS,
    MAX_CONNECTIONS_TOTAL, MAX_FAILURES, SharedCaps,
};
use crate::transport::pake::Passcode;
use crate::transport::quic::{self, QuicError};
use crate::transport::{fallback, tunnel};

/// Per-room passcodes, shared between the host's options, its accept loop
/// and (later) the app, which can change them while the host runs. Rooms
/// are keyed by [`RoomKey`], as the control plane keys them (blank =
/// "default", case and look-alike letters do not matter).
#[derive(Debug, Clone, Default)]
pub struct RoomPasscodes(Arc<Mutex<HashMap<RoomKey, Passcode>>>);

impl RoomPasscodes {
    /// Sets (`Some`) or removes (`None`) the passcode of `room`; it applies
    /// to connections admitted from then on.
    pub fn set(&self, room: &str, passcode: Option<Passcode>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match passcode {
            Some(p) => map.insert(RoomKey::new(room), p),
            None => map.remove(&RoomKey::new(room)),
        };
    }

    /// The passcode of `room`, if it has its own.
    pub fn get(&self, room: &str) -> Option<Passcode> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&RoomKey::new(room)).cloned()
    }
}

#[derive(Debug, Clone)]
pub struct HostOptions {
    pub bind: IpAddr,
    /// Port 0 for the control port picks a free one (tests); the Welcome
    /// carries the port actually bound.
    pub ports: Ports,
    pub host_name: String,
    /// Where beacons go: 255.255.255.255 means every LAN interface (directed
    /// broadcasts, see `lanif`); any other address (127.255.255.255 in tests)
    /// only there. `None` runs no discovery service.
    pub discovery_target: Option<IpAddr>,
    /// Who runs the host (a login name), announced as "Ana's meeting".
    pub owner: Option<String>,
    /// Set only for a host started by `sapora` with no arguments: the room it
    /// hands over to an earlier such host heard on the LAN (the double-click
    /// rule, `beacon::merge_rule`). An explicit `sapora host` leaves it
    /// `None` and never yields.
    pub merge_room: Option<String>,
    pub beacon_interval: Duration,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    pub register_timeout: Duration,
    /// Largest file a participant may share (declared and actual size).
    pub max_file_bytes: u64,
    /// Connections (QUIC and TLS) one source address may hold at once;
    /// default [`MAX_CONNECTIONS_PER_ADDRESS`]. Raise it for many members
    /// behind one address (a NAT, or a bench's bots on one machine).
    pub max_connections_per_address: usize,
    /// Where the run's file store is made (and removed at exit); `None` = the
    /// OS temp dir.
    pub file_store_dir: Option<std::path::PathBuf>,
    /// A room's files are deleted once it has been empty this long.
    pub file_retention: Duration,
    /// Codec of the audio mix sent to listeners (clients follow it upstream).
    pub audio_codec: crate::proto::AudioCodec,
    /// Samples per audio frame and mixer tick: 960 (20 ms) or 480 (10 ms,
    /// less delay, more packets). Clients follow the host's choice.
    pub audio_frame_samples: usize,
    /// Random per `HostOptions::new`: the host hands it to its own app
    /// (`RunningHost::host_key` → `ClientConfig::host_key`), whose member is
    /// then marked as the host. Nobody else learns it.
    pub host_key: HostKey,
    /// Where recordings go (`--record DIR`); `None` = [`super::record::default_dir`].
    pub record_dir: Option<std::path::PathBuf>,
    /// Record every room from its start (`sapora host --record DIR`);
    /// otherwise a host or co-host starts it (`/record on`).
    pub record_from_start: bool,
    /// The TLS identity; `None` = `HostIdentity::load_or_create_default()`
    /// (the configuration directory). Tests pass one so nothing is written
    /// to the real home.
    pub identity: Option<Arc<HostIdentity>>,
    /// Every room's passcode (`sapora host --passcode`), unless the room
    /// has its own in `room_passcodes`. `None`: rooms are open.
    pub passcode: Option<Passcode>,
    /// Per-room passcodes (win over `passcode`).
    pub room_passcodes: RoomPasscodes,
    /// The web application on the TLS port beside the native tunnel (the
    /// browser guests' page, `crate::guest::GuestPage`); `None`: 404.
    pub web: Option<Arc<dyn tunnel::WebService>>,
}

impl HostOptions {
    pub fn new(bind: IpAddr, ports: Ports, host_name: impl Into<String>) -> HostOptions {
        HostOptions {
            bind,
            ports,
            host_name: host_name.into(),
            discovery_target: None,
            owner: None,
            merge_room: None,
            beacon_interval: Duration::from_secs(5),
            // A third of the idle timeout: on QUIC or TCP a heartbeat is
            // never lost, only late, so two may be late before the link
            // counts as silent. Each one costs a round of packets per
            // member (issue 12's idle budget), so no shorter.
            heartbeat: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            register_timeout: Duration::from_secs(10),
            max_file_bytes: super::files::DEFAULT_MAX_FILE_BYTES,
            max_connections_per_address: MAX_CONNECTIONS_PER_ADDRESS,
            file_store_dir: None,
            // Long enough that a room emptied by a brief network blip, or a
            // sender alone in it for a moment, keeps its files.
            file_retention: Duration::from_secs(60),
            audio_codec: crate::proto::AudioCodec::Opus,
            audio_frame_samples: crate::media::audio::FRAME_20MS,
            // Fresh per run from the OS generator (proto has no randomness).
            host_key: HostKey(random_u64()),
            record_dir: None,
            record_from_start: false,
            identity: None,
            passcode: None,
            room_passcodes: RoomPasscodes::default(),
            web: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "cannot listen on {addr} ({what}): {source}. Is another Sapora host running here? Try --port-offset N"
    )]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot make the file store in {dir}: {source}. Try --file-dir DIR")]
    FileStore { dir: std::path::PathBuf, source: std::io::Error },
    #[error("the host certificate: {0}")]
    Identity(#[from] CertError),
    #[error(
        "cannot listen on {addr} (QUIC, UDP): {source}. Is another Sapora host running here? Try --port-offset N"
    )]
    Quic { addr: SocketAddr, source: QuicError },
    #[error("cannot start the network threads: {0}")]
    Threads(std::io::Error),
}

/// A running host. Dropping it without [`RunningHost::shutdown`] stops the
/// tasks abruptly (clients see the link drop rather than a goodbye).
pub struct RunningHost {
    pub control_addr: SocketAddr,
    pub ports: Ports,
    pub host_name: String,
    /// For the in-process app's `ClientConfig::host_key` only.
    pub host_key: HostKey,
    /// The host certificate's fingerprint (what clients pin).
    pub fingerprint: Fingerprint,
    /// How the certificate was found (`Loaded::Replaced`: clients that
    /// pinned the old one will refuse this host); `None` when given in the
    /// options.
    pub identity_loaded: Option<Loaded>,
    endpoint: EndpointGuard,
    _accept: Task<()>,
    /// The TLS/TCP fallback's accept loop (TCP, the control port's number).
    _tunnel: Task<()>,
    room_passcodes: RoomPasscodes,
    member_codes: control::MemberCodes,
    stop: Sender<()>,
    control: Task<()>,
    handle: ControlHandle,
    directory: Directory,
    /// The links media goes out on (cleared at shutdown).
    peers: super::media::Peers,
    _beacon: Option<Task<()>>,
    _reach: Task<()>,
    handover: Receiver<Survivor>,
    media_notices: Receiver<super::reach::Unheard>,
    events: Receiver<HostEvent>,
    stats: Arc<Mutex<Stats>>,
    /// Dropping it deletes the run's file store.
    files: super::files::FileService,
    video: super::video::VideoService,
    screen: super::screen::ScreenService,
    audio: super::audio::AudioService,
    /// Finishes open recordings when dropped (after the control task).
    _recorder: Option<super::record::Recorder>,
}

impl RunningHost {
    /// Audio mixer counters (packets, bad tokens, encodes, bytes), at most 1 s old.
    pub fn audio_stats(&self) -> super::audio::AudioStats {
        self.audio.stats()
    }

    /// Screen relay bookkeeping (tiles held, viewers' dirty sets), at most 1 s old.
    pub fn screen_stats(&self) -> super::screen::RelayStats {
        self.screen.stats()
    }

    /// Video relay counters (bytes in/out per layer, drops), at most 200 ms old.
    pub fn video_stats(&self) -> super::video::RelayStats {
        self.video.stats()
    }

    /// Joins, leaves and refusals, for an operator's log. Events are dropped
    /// rather than queued without bound if nobody reads them.
    pub fn events(&self) -> Receiver<HostEvent> {
        self.events.clone()
    }

    /// Fires once if this auto-started host handed its meeting to another
    /// host (its participants are told to rejoin there): the owner should
    /// then [`RunningHost::retire`] it, and its own app follows the others.
    pub fn handover(&self) -> Receiver<Survivor> {
        self.handover.clone()
    }

    /// Members whose audio/video datagrams did not reach the host within 3 s
    /// of joining (they were told; this is for the host's log).
    pub fn media_notices(&self) -> Receiver<super::reach::Unheard> {
        self.media_notices.clone()
    }

    /// Sessions by id, for media services and tests.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Sends control-channel messages to sessions on behalf of a service.
    pub fn control(&self) -> &ControlHandle {
        &self.handle
    }

    /// The file store and its TCP service.
    pub fn files(&self) -> &super::files::FileService {
        &self.files
    }

    /// A control typed at the host's console (host authority, every room);
    /// the outcome arrives as `HostEvent::Console` on [`RunningHost::events`].
    pub async fn console(&self, control: crate::proto::Control) {
        self.handle.console(control).await;
    }

    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The verification code of each member's link (the host's app shows
    /// it per member).
    pub fn member_codes(&self) -> &control::MemberCodes {
        &self.member_codes
    }

    /// Per-room passcodes (the app sets them while the host runs).
    pub fn room_passcodes(&self) -> &RoomPasscodes {
        &self.room_passcodes
    }

    /// After a handover: keeps forwarding late arrivals for
    /// [`REDIRECT_FOR`], then stops.
    pub async fn retire(self) {
        smol::Timer::after(REDIRECT_FOR + Duration::from_millis(300)).await;
        self.shutdown().await;
    }

    /// Tells every client the host is going away, flushes, and stops.
    pub async fn shutdown(self) {
        // The TCP listener closes now, and is awaited: a task merely
        // dropped is cancelled when its executor next runs it, and until
        // then a host started next on the port could not bind it.
        self._tunnel.cancel().await;
        let _ = self.stop.send(()).await;
        self.control.await;
        self.directory.clear();
        self.peers.clear();
        self.endpoint.close();
        smol::Timer::after(CLOSE_SEND).await;
        EndpointGuard::release_port(&self.endpoint.0);
    }
}

/// Closes the endpoint when the host is dropped: clients see the link drop
/// at once rather than after the idle timeout.
struct EndpointGuard(quinn::Endpoint);

/// How long a host started on a fixed port waits for it to be released by
/// a host that stopped a moment ago (its closed connections still hold the
/// old socket for a moment), in steps of `REBIND_STEP`.
const REBIND_WAIT: Duration = Duration::from_secs(2);
const REBIND_STEP: Duration = Duration::from_millis(50);

/// How long the endpoint has to send its CONNECTION_CLOSEs before its port
/// is given up.
const CLOSE_SEND: Duration = Duration::from_millis(30);

impl EndpointGuard {
    /// Closes every connection and then frees the UDP port (a host started
    /// next on the same port must be able to bind it; quinn keeps its socket
    /// while closed connections drain): the endpoint moves to a throwaway
    /// socket on an ephemeral port.
    fn close(&self) {
        self.0.close(0u32.into(), b"the host stopped");
    }

    fn release_port(endpoint: &quinn::Endpoint) {
        let Ok(local) = endpoint.local_addr() else { return };
        if let Ok(socket) = std::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0)) {
            let _ = endpoint.rebind(socket);
        }
    }
}

impl Drop for EndpointGuard {
    fn drop(&mut self) {
        self.close();
        let endpoint = self.0.clone();
        let _ = std::thread::Builder::new().name("sapora-endpoint-close".into()).spawn(move || {
            std::thread::sleep(CLOSE_SEND);
            EndpointGuard::release_port(&endpoint);
        });
    }
}

pub async fn start(opts: HostOptions) -> Result<RunningHost, HostError> {
    let (identity, identity_loaded) = match &opts.identity {
        Some(identity) => (identity.clone(), None),
        None => {
            let (identity, loaded) = smol::unblock(HostIdentity::load_or_create_default).await?;
            (Arc::new(identity), Some(loaded))
        }
    };
    let addr = SocketAddr::new(opts.bind, opts.ports.control);
    let executor = super::runtime::executor().clone();
    let runtime = Arc::new(quic::ExecutorRuntime(executor.clone()));
    // The TLS/TCP fallback listens on TCP at the QUIC port's number. With
    // port 0 (any), the number QUIC got on UDP may be taken on TCP: then
    // both are bound again on another number (a few tries).
    let mut tries_left = 16;
    let mut bind_waited = Duration::ZERO;
    let (endpoint, tunnel_listener, tunnel_addr) = loop {
        let endpoint = match quic::host_endpoint_on(addr, &identity, runtime.clone()) {
            Ok(endpoint) => endpoint,
            // A host stopped a moment ago on this port may still hold it
            // while its last connections let go of the socket: wait a
            // little (at most `REBIND_WAIT`) rather than fail.
            Err(QuicError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse
                    && opts.ports.control != 0
                    && bind_waited < REBIND_WAIT =>
            {
                smol::Timer::after(REBIND_STEP).await;
                bind_waited += REBIND_STEP;
                continue;
            }
            Err(source) => return Err(HostError::Quic { addr, source }),
        };
        let port = endpoint.local_addr().map_or(addr.port(), |a| a.port());
        let tunnel_addr = SocketAddr::new(opts.bind, port);
        match smol::net::TcpListener::bind(tunnel_addr).await {
            Ok(listener) => break (endpoint, listener, tunnel_addr),
            Err(e)
                if opts.ports.control == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && tries_left > 0 =>
            {
                tries_left -= 1;
                endpoint.close(0u32.into(), b"");
            }
            Err(source) => {
                return Err(HostError::Bind {
                    what: "TLS fallback, TCP",
                    addr: tunnel_addr,
                    source,
                });
            }
        }
    };
    let control_addr = endpoint.local_addr().unwrap_or(addr);
    let ports = Ports { control: control_addr.port(), ..opts.ports };
    let tunnel_tls =
        Arc::new(fallback::server_tls_config(&identity).map_err(|e| HostError::Bind {
            what: "TLS fallback, TCP",
            addr: tunnel_addr,
            source: std::io::Error::other(e),
        })?);

    let rooms: Arc<Mutex<Vec<RoomInfo>>> = Arc::default();

    // Media services start here with `directory` to route datagrams to
    // sessions' rooms and `control` to notify members. Audio and video
    // arrive as datagrams on the members' links (`control::serve_link`
    // hands them to `media` under the link's session) and leave through
    // `peers`.
    let directory = Directory::default();
    let (media, arrivals) = super::media::MediaRouter::new(super::media::Peers::default());
    let peers = media.peers.clone();
    let (control, inbox) = control::inbox(media);
    let video = super::video::VideoService::start(arrivals.video, peers.clone(), directory.clone());
    let media_peers = peers.clone();
    let audio = {
        let mix = super::mixer::MixerConfig::new(opts.audio_codec)
            .with_frame_samples(audio_frame_samples(&opts));
        super::audio::AudioService::start(arrivals.audio, peers, directory.clone(), mix)
            .map_err(HostError::Threads)?
    };

    let screen = super::screen::spawn(directory.clone());

    let file_dir = opts.file_store_dir.clone().unwrap_or_else(std::env::temp_dir);
    let file_config = super::files::FileConfig {
        max_file_bytes: opts.max_file_bytes,
        retention: opts.file_retention,
        base_dir: file_dir.clone(),
    };
    let files = super::files::start(file_config, directory.clone(), control.clone())
        .map_err(|source| HostError::FileStore { dir: file_dir, source })?;
    // Files and screen streams arrive on the links (`control::serve_link`).
    let streams = super::streams::StreamContext {
        directory: directory.clone(),
        files: Some(files.streams()),
        screen: Some(screen.streams()),
        caps: super::streams::default_caps(),
        peer: control_addr,
    };
    let file_hook = files.hook();
    let (handover_tx, handover) = smol::channel::bounded(1);
    let beacon = match opts.discovery_target {
        Some(target) => {
            let cfg = BeaconConfig {
                host_name: opts.host_name.clone(),
                host_id: random_u64(),
                control_addr: opts.bind,
                control_port: ports.control,
                discovery_port: ports.discovery,
                target,
                interval: opts.beacon_interval,
                owner: opts.owner.clone(),
                started_ms: crate::net::unix_ms(),
                merge_room: opts.merge_room.clone(),
                fingerprint: Some(identity.fingerprint()),
                passcode: opts.passcode.is_some(),
            };
            let rooms = rooms.clone();
            let (directory, control) = (directory.clone(), control.clone());
            Some(super::runtime::spawn(async move {
                match run_beacon(cfg, rooms).await {
                    Ok(survivor) => {
                        let _ = handover_tx.try_send(survivor.clone());
                        hand_over(&directory, &control, &survivor).await;
                    }
                    Err(e) => tracing::warn!("LAN discovery is off: {e}"),
                }
            }))
        }
        None => None,
    };
    let (reach_tx, reach_rx) = smol::channel::bounded(1024);
    let (notice_tx, media_notices) = smol::channel::bounded(64);
    let reach = super::runtime::spawn(super::reach::run(
        reach_rx,
        directory.clone(),
        control.clone(),
        notice_tx,
        super::reach::describe_media_ports(&ports),
    ));

    let mut config = HostConfig::new(opts.host_name.clone(), ports, Box::new(random_u64));
    config.heartbeat = opts.heartbeat;
    config.idle_timeout = opts.idle_timeout;
    config.register_timeout = opts.register_timeout;
    config.host_key = Some(opts.host_key);
    config.record_from_start = opts.record_from_start;
    // Recording frames the mixer's shared Opus mix; a PCM mix is not recorded.
    let record_dir = opts.record_dir.clone().unwrap_or_else(super::record::default_dir);
    let recorder = match opts.audio_codec {
        crate::proto::AudioCodec::Opus | crate::proto::AudioCodec::OpusRed => {
            match super::record::Recorder::start(record_dir, opts.audio_frame_samples) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!("recording is unavailable: {e}");
                    None
                }
            }
        }
        crate::proto::AudioCodec::Pcm16 => None,
    };
    if recorder.is_none() {
        config.cannot_record = Some(match opts.audio_codec {
            crate::proto::AudioCodec::Pcm16 => {
                "this host cannot record: its audio mix is PCM (start it with --audio-codec opus)"
                    .into()
            }
            crate::proto::AudioCodec::Opus | crate::proto::AudioCodec::OpusRed => {
                "this host cannot record (see its log)".into()
            }
        });
    }
    let rec = recorder.as_ref().map(|r| r.sender());
    if let Some(tx) = rec.clone() {
        let tx = std::sync::Mutex::new(tx);
        audio.set_tap(Some(Box::new(move |room: &str, packet: &[u8]| {
            let msg = super::record::RecMsg::Mix { room: room.into(), packet: packet.to_vec() };
            let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).send(msg);
        })));
    }
    let record_switch = audio.recording_switch();
    let silence_switch = audio.silence_switch();
    let core = Host::new(config, std::time::Instant::now(), crate::net::unix_ms());
    let stats: Arc<Mutex<Stats>> = Arc::default();
    let (events_tx, events) = smol::channel::bounded(1024);
    let (stop, stop_rx) = smol::channel::bounded(1);
    let member_codes = control::MemberCodes::default();
    let control_task = {
        let stats = stats.clone();
        let directory = directory.clone();
        let codes = member_codes.clone();
        super::runtime::spawn(control::run(core, inbox, stop_rx, stats, codes, move |event| {
            directory.apply(&event);
            file_hook.observe(&event);
            if let HostEvent::Rooms(list) = &event {
                *rooms.lock().unwrap_or_else(|e| e.into_inner()) = list.clone();
            }
            if let HostEvent::HeldMuted { session, held } = &event {
                silence_switch(*session, *held);
            }
            if let Some(rec) = &rec {
                use super::record::RecMsg;
                let msg = match &event {
                    HostEvent::Recording { room, on } => {
                        record_switch(room, *on);
                        Some(if *on {
                            RecMsg::Start { room: room.clone() }
                        } else {
                            RecMsg::Stop { room: room.clone() }
                        })
                    }
                    HostEvent::Chat { room, msg } => {
                        Some(RecMsg::Chat { room: room.clone(), msg: msg.clone() })
                    }
                    HostEvent::FileOffered { room, file } => {
                        Some(RecMsg::File { room: room.clone(), file: file.clone() })
                    }
                    _ => None,
                };
                if let Some(msg) = msg {
                    let _ = rec.send(msg);
                }
            }
            if matches!(event, HostEvent::Joined { .. } | HostEvent::Left { .. }) {
                let _ = reach_tx.try_send(event.clone());
            }
            let _ = events_tx.try_send(event);
        }))
    };
    // QUIC and the TLS fallback share the connection caps and the
    // wrong-passcode limiter: a second transport gives no second budget.
    let limiter = Arc::new(Mutex::new(AttemptLimiter::new(MAX_FAILURES, ATTEMPT_WINDOW)));
    let caps = SharedCaps::new(ConnectionCaps::new(
        opts.max_connections_per_address,
        MAX_CONNECTIONS_TOTAL,
    ));
    let passcodes = Passcodes { all: opts.passcode.clone(), rooms: opts.room_passcodes.clone() };
    let tunnel = {
        let (control, streams) = (control.clone(), streams.clone());
        let on_link = move |est: crate::transport::link::Established<tunnel::Tunnel>| {
            let est = crate::transport::link::Established {
                link: crate::transport::link::Link::Tunnel(est.link),
                control_send: est.control_send,
                control_recv: est.control_recv,
                admission: est.admission,
                fingerprint: est.fingerprint,
            };
            let (control, streams) = (control.clone(), streams.clone());
            super::runtime::spawn(async move { control::serve_link(est, &control, streams).await })
                .detach();
        };
        let passcodes = passcodes.clone();
        let service = tunnel::TcpService {
            spawner: tunnel::Spawner::Executor(executor.clone()),
            web: opts.web.clone(),
            ..tunnel::TcpService::new(tunnel_tls, caps.clone(), limiter.clone())
        };
        executor.spawn(tunnel::serve_tcp_with(
            tunnel_listener,
            service,
            move |room| passcodes.of(room),
            on_link,
        ))
    };
    let accept = executor.spawn(accept_links(
        endpoint.clone(),
        caps,
        limiter,
        passcodes,
        control.clone(),
        streams,
    ));
    Ok(RunningHost {
        control_addr,
        fingerprint: identity.fingerprint(),
        identity_loaded,
        endpoint: EndpointGuard(endpoint),
        _accept: accept,
        _tunnel: tunnel,
        room_passcodes: opts.room_passcodes.clone(),
        member_codes,
        ports,
        host_name: opts.host_name,
        host_key: opts.host_key,
        stop,
        control: control_task,
        handle: control,
        directory,
        peers: media_peers,
        _beacon: beacon,
        _reach: reach,
        handover,
        media_notices,
        events,
        stats,
        files,
        video,
        screen,
        audio,
        _recorder: recorder,
    })
}

/// Samples per mix frame: the options' choice, except that a PCM mix
/// always uses 10 ms frames: 20 ms of 16-bit PCM (1920 bytes) does not fit
/// a QUIC datagram (about 1150 bytes before path-MTU discovery), 10 ms (960
/// bytes) does.
fn audio_frame_samples(opts: &HostOptions) -> usize {
    match opts.audio_codec {
        crate::proto::AudioCodec::Pcm16 => crate::media::audio::FRAME_10MS,
        _ => opts.audio_frame_samples,
    }
}

/// The host-wide passcode and the per-room ones.
#[derive(Clone)]
struct Passcodes {
    all: Option<Passcode>,
    rooms: RoomPasscodes,
}

impl Passcodes {
    fn of(&self, room: &str) -> Option<Passcode> {
        self.rooms.get(room).or_else(|| self.all.clone())
    }
}

/// How often the attempt limiter forgets sources whose window has passed.
const LIMITER_PRUNE: Duration = Duration::from_secs(60);

/// The QUIC accept loop: connection caps, then one task per connection
/// (handshake, admission with the shared attempt limiter, then
/// [`control::serve_link`]), all on the host's network executor.
async fn accept_links(
    endpoint: quinn::Endpoint,
    caps: SharedCaps,
    limiter: Arc<Mutex<AttemptLimiter>>,
    passcodes: Passcodes,
    control: ControlHandle,
    streams: super::streams::StreamContext,
) {
    use smol::future::FutureExt;
    let mut next_prune = std::time::Instant::now() + LIMITER_PRUNE;
    loop {
        let next = async { Some(quic::accept(&endpoint, &caps).await) }
            .or(async {
                smol::Timer::at(next_prune).await;
                None
            })
            .await;
        let accepted = match next {
            Some(Some(accepted)) => accepted,
            Some(None) => return, // the endpoint closed
            None => {
                let now = std::time::Instant::now();
                limiter.lock().unwrap_or_else(|e| e.into_inner()).prune(now);
                next_prune = now + LIMITER_PRUNE;
                continue;
            }
        };
        let (limiter, passcodes, control) = (limiter.clone(), passcodes.clone(), control.clone());
        let streams = streams.clone();
        super::runtime::spawn(async move {
            let remote = accepted.connecting.remote_address();
            match crate::transport::link::accept(accepted, |room| passcodes.of(room), &limiter)
                .await
            {
                Ok(established) => control::serve_link(established, &control, streams).await,
                Err(e) => tracing::info!(%remote, "a client was not admitted: {e}"),
            }
        })
        .detach();
    }
}

/// How long a host that handed its meeting over keeps forwarding whoever
/// still arrives (`RunningHost::retire`). Three hosts started together may
/// yield in a chain (C to B while B yields to A); C's people then reach B
/// after B has handed over, and B passes them on instead of refusing them.
pub const REDIRECT_FOR: Duration = Duration::from_secs(5);

/// Tells every session to rejoin at `survivor` (same name and room), and
/// keeps telling sessions that join later, for [`REDIRECT_FOR`].
async fn hand_over(directory: &Directory, control: &ControlHandle, survivor: &Survivor) {
    tracing::info!(
        to = %survivor.addr, sessions = directory.sessions().len(),
        "handing the meeting over to {}", survivor.host_name
    );
    let msg = crate::proto::Handover {
        addr: survivor.addr.ip().to_string(),
        port: survivor.addr.port(),
        host_name: survivor.owner.clone().unwrap_or_else(|| survivor.host_name.clone()),
    };
    let until = std::time::Instant::now() + REDIRECT_FOR;
    let mut told = std::collections::HashSet::new();
    while std::time::Instant::now() < until {
        let new: Vec<_> = directory.sessions().into_iter().filter(|s| told.insert(*s)).collect();
        if !new.is_empty() {
            control.deliver(new, crate::proto::HostMsg::Handover(msg.clone())).await;
        }
        smol::Timer::after(Duration::from_millis(100)).await;
    }
}

//! Puts a host together: binds the sockets, runs the control plane and the
//! discovery beacon as smol tasks, and hands back a handle to stop them.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smol::channel::{Receiver, Sender};
use smol::{Async, Task};

use super::beacon::{BeaconConfig, run_beacon};
use super::control::{self, ControlHandle};
use super::core::{Host, HostConfig, HostEvent, Stats};
use super::directory::Directory;
use crate::net::random_u64;
use crate::proto::{Ports, RoomInfo};

#[derive(Debug, Clone)]
pub struct HostOptions {
    pub bind: IpAddr,
    /// Port 0 for the control port picks a free one (tests); the Welcome
    /// carries the port actually bound.
    pub ports: Ports,
    pub host_name: String,
    /// Where beacons go (e.g. 255.255.255.255, or 127.255.255.255 in tests);
    /// `None` runs no discovery service.
    pub discovery_target: Option<IpAddr>,
    pub beacon_interval: Duration,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    pub register_timeout: Duration,
}

impl HostOptions {
    pub fn new(bind: IpAddr, ports: Ports, host_name: impl Into<String>) -> HostOptions {
        HostOptions {
            bind,
            ports,
            host_name: host_name.into(),
            discovery_target: None,
            beacon_interval: Duration::from_secs(5),
            heartbeat: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(15),
            register_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "cannot listen on {addr} ({what}): {source}. Is another Sapora host running here? Try --port-offset N"
    )]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// A running host. Dropping it without [`RunningHost::shutdown`] stops the
/// tasks abruptly (clients see the link drop rather than a goodbye).
pub struct RunningHost {
    pub control_addr: SocketAddr,
    pub ports: Ports,
    pub host_name: String,
    stop: Sender<()>,
    control: Task<()>,
    handle: ControlHandle,
    directory: Directory,
    _beacon: Option<Task<()>>,
    events: Receiver<HostEvent>,
    stats: Arc<Mutex<Stats>>,
}

impl RunningHost {
    /// Joins, leaves and refusals, for an operator's log. Events are dropped
    /// rather than queued without bound if nobody reads them.
    pub fn events(&self) -> Receiver<HostEvent> {
        self.events.clone()
    }

    /// Sessions by id, for media services and tests.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Sends control-channel messages to sessions on behalf of a service.
    pub fn control(&self) -> &ControlHandle {
        &self.handle
    }

    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells every client the host is going away, flushes, and stops.
    pub async fn shutdown(self) {
        let _ = self.stop.send(()).await;
        self.control.await;
        self.directory.clear();
    }
}

pub async fn start(opts: HostOptions) -> Result<RunningHost, HostError> {
    let addr = SocketAddr::new(opts.bind, opts.ports.control);
    let listener = Async::<TcpListener>::bind(addr).map_err(|source| HostError::Bind {
        what: "control, TCP",
        addr,
        source,
    })?;
    let control_addr = listener.get_ref().local_addr().unwrap_or(addr);
    let ports = Ports { control: control_addr.port(), ..opts.ports };

    let rooms: Arc<Mutex<Vec<RoomInfo>>> = Arc::default();
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
            };
            let rooms = rooms.clone();
            Some(smol::spawn(async move {
                if let Err(e) = run_beacon(cfg, rooms).await {
                    tracing::warn!("LAN discovery is off: {e}");
                }
            }))
        }
        None => None,
    };

    // Media services start here, each binding its port (0 = any) and
    // recording the port actually bound in `ports`, with `directory` to check
    // packets against sessions and `control` to notify members.
    let directory = Directory::default();
    let (control, inbox) = control::inbox();

    let mut config = HostConfig::new(opts.host_name.clone(), ports, Box::new(random_u64));
    config.heartbeat = opts.heartbeat;
    config.idle_timeout = opts.idle_timeout;
    config.register_timeout = opts.register_timeout;
    let core = Host::new(config, std::time::Instant::now(), crate::net::unix_ms());
    let stats: Arc<Mutex<Stats>> = Arc::default();
    let (events_tx, events) = smol::channel::bounded(1024);
    let (stop, stop_rx) = smol::channel::bounded(1);
    let control_task = {
        let stats = stats.clone();
        let directory = directory.clone();
        smol::spawn(control::run(listener, core, inbox, stop_rx, stats, move |event| {
            directory.apply(&event);
            if let HostEvent::Rooms(list) = &event {
                *rooms.lock().unwrap_or_else(|e| e.into_inner()) = list.clone();
            }
            let _ = events_tx.try_send(event);
        }))
    };
    Ok(RunningHost {
        control_addr,
        ports,
        host_name: opts.host_name,
        stop,
        control: control_task,
        handle: control,
        directory,
        _beacon: beacon,
        events,
        stats,
    })
}

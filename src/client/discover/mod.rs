//! LAN discovery, client side: find hosts by probing and by listening for
//! their beacons.
//!
//! - `core`: the sans-IO part ([`parse_beacon`], [`HostTable`],
//!   [`ProbeSchedule`]): datagrams and time in, hosts and probe times out.
//! - `driver`: [`discover`], [`watch`] and [`spawn_watch`], which own the
//!   sockets and the clock.
//!
//! What `sapora discover` prints is in `crate::cli::discover`.

pub(crate) mod core;
mod driver;

pub use self::core::{
    DiscoveredHost, HostTable, PROBE_RETRY, ProbeKind, ProbeSchedule, WATCH_PROBE_EVERY,
    control_addr_of, parse_beacon,
};
pub use driver::{DEFAULT_TIMEOUT, DiscoverOptions, discover, spawn_watch, watch};

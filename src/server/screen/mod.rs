//! The screen-share relay: one presenter per room, any number of viewers.
//!
//! - [`relay`]: the sans-IO core ([`Relay`]: streams' frames and time in,
//!   sends and closes out), tested on a virtual clock.
//! - `driver`: the smol driver that owns the streams, generic over the
//!   stream ([`crate::transport::link::LinkSend`]/`LinkRecv`), reached
//!   through [`crate::server::streams::serve_stream`].

mod driver;
pub mod relay;

pub use driver::{ScreenService, ScreenStreams, spawn};
pub use relay::{Input, Output, Relay, RelayStats, STALL_LIMIT, ScreenConn, Who};

//! The host's file store and its stream service.
//!
//! Uploads stream into `<run dir>/room-<n>/<id>.part`, are MD5-verified and
//! renamed to `<id>`; only then are recipients told over the control channel.
//! Paths are built from numbers only, never from a client's file or room name.
//!
//! - [`core`]: the sans-IO decisions: one upload's rules ([`UploadCore`]:
//!   offsets, sizes, hashing, what a write failure means) and when an emptied
//!   room's files go ([`core::Retention`], time as an input).
//! - `store`: the bookkeeping (rooms, files, partial uploads) behind one
//!   lock; it returns the file-system work instead of doing it.
//! - `service`: the driver, generic over the stream
//!   ([`crate::transport::link::LinkSend`]/`LinkRecv`); reached through
//!   [`crate::server::streams::serve_stream`]. File-system calls run on the
//!   blocking pool, never on the executor or under the lock; no thread per
//!   transfer.

pub mod core;
mod download;
mod service;
mod store;

pub use core::{UploadCore, storage_failure};
pub use service::{DEFAULT_MAX_FILE_BYTES, FileConfig, FileHook, FileService, FileStreams, start};

//! Transport v2, phase 1: the security foundation for QUIC (issue 14).
//!
//! Nothing in the running host or client uses this module yet; the next
//! session switches the services over to it. `docs/transport-v2.md` is the
//! wire-level description (what would go into `docs/protocol.md`).
//!
//! The pieces and what each one guarantees:
//!
//! - [`cert`]: the host's self-signed TLS identity (rcgen, ECDSA P-256),
//!   created once and kept in the configuration directory, and its SHA-256
//!   [`cert::Fingerprint`] (the value that discovery beacons will carry).
//! - [`pin`]: trust on first use. A client remembers each host's fingerprint
//!   in a known-hosts file and refuses, with a loud warning that says how to
//!   accept the new one, a host whose fingerprint changed.
//! - [`pake`]: the passcode check, a sans-IO SPAKE2 exchange bound to the TLS
//!   exporter with key confirmation in both directions, and the short
//!   verification code for rooms without a passcode.
//! - [`limit`]: wrong-passcode rate limiting per source address and
//!   connection caps per address and in total (sans-IO, time is an input).
//! - [`quic`]: quinn endpoint and connection configuration (ALPN `sapora/2`,
//!   datagrams, 15 s idle rule, pinned-fingerprint verifier) and the async
//!   wrappers that run the passcode check over the control stream.
//! - [`admission`]: the passcode exchange's async driver, once, over any
//!   [`admission::FramePipe`] (QUIC control stream or WebSocket).
//! - [`fallback`]: TLS 1.3 over TCP with WebSocket framing, for networks
//!   that block UDP: same certificate, pinning, ALPN and admission.
//! - [`tunnel`]: a whole link (control stream, datagrams, bidirectional
//!   streams with flow control) over one fallback WebSocket; the sans-IO
//!   multiplexer is [`tunnel::mux`].
//!
//! Layering: `cert`, `pin`, `pake` and `limit` do no network I/O and read no
//! clock; `cert` and `pin` touch files only in their `load`/`save` edges.
//! Only `quic`, `fallback` and `tunnel` touch sockets (`tunnel::mux` does not).

pub mod admission;
pub mod cert;
pub mod fallback;
pub mod framed;
pub mod http;
pub mod limit;
pub mod link;
pub mod pake;
pub mod pin;
pub mod quic;
pub mod tunnel;

use std::path::PathBuf;

/// Where the host certificate and the known-hosts file live:
/// `$SAPORA_CONFIG_DIR` if set and non-empty, else the platform configuration
/// directory (e.g. `~/.config/sapora`), the same rule as `schedule.json` and
/// `settings.json`. `None` when there is no home directory.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(crate::schedule::CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "sapora").map(|d| d.config_dir().to_path_buf())
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory,
/// then rename), creating the directory. On Unix the file is created with
/// mode 0600 when `private` is set (the host's private key).
pub(crate) fn write_atomically(
    path: &std::path::Path,
    bytes: &[u8],
    private: bool,
) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Unique per writer: two writers at once (threads or processes) must
    // not share (and truncate) one temporary file; the last rename wins.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

//! Trust on first use: each host's certificate fingerprint, remembered.
//!
//! The first time a client connects to a host it cannot know the host's
//! certificate, so it accepts it and remembers its [`Fingerprint`] under the
//! host's key (its address as `ip:port`, see [`host_key`]). From then on that
//! host must present the same certificate; a different one is refused with
//! [`PinError::Changed`], whose message is a loud warning that names both
//! fingerprints, the file and the line to delete to accept the new one. (The
//! same model as OpenSSH's `known_hosts`.)
//!
//! [`KnownHosts`] is the store as a value (parse, check, pin, print), with no
//! I/O; [`PinStore`] is the file edge: `known_hosts` in the configuration
//! directory, one `HOST sha256:HEX` per line, `#` comments, replaced
//! atomically. A known-hosts file that cannot be parsed is an error, never
//! silently treated as empty: that would turn every pin back into a first use.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::cert::Fingerprint;

/// File name of the known-hosts file inside the configuration directory.
pub const KNOWN_HOSTS_FILE_NAME: &str = "known_hosts";

const HEADER: &str = "# Sapora known hosts: the certificate fingerprint of each host this\n\
# user has connected to (trust on first use). One \"HOST sha256:HEX\" per line.\n\
# Delete a host's line to accept a new certificate for it.\n";

/// The key a host is remembered by: its socket address, `192.168.1.20:5000`
/// or `[fe80::1]:5000`.
pub fn host_key(addr: SocketAddr) -> String {
    addr.to_string()
}

/// What the store says about a host and the fingerprint it presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The host is known and presented its pinned certificate.
    Trusted,
    /// The host is not known yet: trust it and pin this fingerprint.
    FirstUse,
    /// The host is known and presented a different certificate: refuse.
    Changed { pinned: Fingerprint },
}

/// A host presented a certificate other than its pinned one. `Display` is
/// the loud warning the CLI prints as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "\n\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
@  WARNING: THE CERTIFICATE OF HOST {host} HAS CHANGED!\n\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
Someone could be intercepting this connection (a man in the middle), or\n\
the host was reinstalled or lost its configuration directory.\n\
  pinned:    {pinned}  ({})\n\
  presented: {presented}  ({})\n\
Ask the person running the host for the fingerprint it prints at start-up.\n\
If it is the presented one, accept it by deleting line {line} of\n\
{} and connecting again. Refusing to connect.",
    pinned.short(), presented.short(), file.display()
)]
pub struct CertChanged {
    pub host: String,
    pub pinned: Fingerprint,
    pub presented: Fingerprint,
    /// The known-hosts file and the 1-based line of this host in it.
    pub file: PathBuf,
    pub line: usize,
}

/// Errors of the known-hosts store.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// Boxed: the warning's fields would make every `Result` large.
    #[error("{0}")]
    Changed(Box<CertChanged>),
    #[error(
        "{file}:{line}: {reason}. Fix or delete that line (deleting it forgets that host's certificate)"
    )]
    Parse { file: PathBuf, line: usize, reason: String },
    #[error("cannot read the known-hosts file {file}: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("cannot save the known-hosts file {file}: {source}")]
    Write { file: PathBuf, source: std::io::Error },
    #[error(
        "there is no configuration directory to keep known hosts in (no home directory); set SAPORA_CONFIG_DIR to choose one"
    )]
    NoConfigDir,
}

/// A line the parser refused, before the file name is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

/// The known hosts as a value: host key → pinned fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownHosts {
    pins: BTreeMap<String, Fingerprint>,
}

impl KnownHosts {
    /// Parses the file format. Blank lines and lines starting with `#` are
    /// ignored; every other line is `HOST sha256:HEX` (whitespace between).
    /// A host listed twice is an error (which one would be meant?).
    pub fn parse(text: &str) -> Result<KnownHosts, ParseError> {
        let mut pins = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let fail = |reason: String| ParseError { line: i + 1, reason };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(host), Some(fp), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(fail("expected \"HOST sha256:HEX\"".into()));
            };
            let fp = Fingerprint::parse(fp).map_err(|e| fail(e.to_string()))?;
            if pins.insert(host.to_string(), fp).is_some() {
                return Err(fail(format!("host {host} is listed twice")));
            }
        }
        Ok(KnownHosts { pins })
    }

    /// The file format: a comment header, then one line per host, sorted.
    pub fn to_text(&self) -> String {
        let mut out = String::from(HEADER);
        for (host, fp) in &self.pins {
            out.push_str(&format!("{host} {fp}\n"));
        }
        out
    }

    /// Compares what `host` presented with its pin.
    pub fn check(&self, host: &str, presented: Fingerprint) -> Verdict {
        match self.pins.get(host) {
            None => Verdict::FirstUse,
            Some(&pinned) if pinned == presented => Verdict::Trusted,
            Some(&pinned) => Verdict::Changed { pinned },
        }
    }

    /// The pinned fingerprint of `host`, if any.
    pub fn get(&self, host: &str) -> Option<Fingerprint> {
        self.pins.get(host).copied()
    }

    /// Pins (or re-pins) `host`. A key that is empty, has whitespace or
    /// starts with `#` could not be written back, so it is refused (`false`)
    /// and nothing changes.
    pub fn pin(&mut self, host: &str, fp: Fingerprint) -> bool {
        if host.is_empty() || host.starts_with('#') || host.chars().any(char::is_whitespace) {
            return false;
        }
        self.pins.insert(host.to_string(), fp);
        true
    }

    /// Forgets `host`; returns its pin.
    pub fn forget(&mut self, host: &str) -> Option<Fingerprint> {
        self.pins.remove(host)
    }

    pub fn len(&self) -> usize {
        self.pins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }

    /// The 1-based line `host` has in [`KnownHosts::to_text`] (for the
    /// warning that tells the user which line to delete).
    fn line_of(&self, host: &str) -> Option<usize> {
        let header_lines = HEADER.lines().count();
        self.pins.keys().position(|h| h == host).map(|i| header_lines + i + 1)
    }
}

/// The known-hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinStore {
    path: PathBuf,
}

impl PinStore {
    /// The file at `path` (it need not exist yet).
    pub fn at(path: impl Into<PathBuf>) -> PinStore {
        PinStore { path: path.into() }
    }

    /// `known_hosts` in [`super::config_dir`].
    pub fn open_default() -> Result<PinStore, PinError> {
        let dir = super::config_dir().ok_or(PinError::NoConfigDir)?;
        Ok(PinStore::at(dir.join(KNOWN_HOSTS_FILE_NAME)))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file; a missing file is an empty store.
    pub fn load(&self) -> Result<KnownHosts, PinError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KnownHosts::default()),
            Err(source) => return Err(PinError::Read { file: self.path.clone(), source }),
        };
        KnownHosts::parse(&text).map_err(|e| PinError::Parse {
            file: self.path.clone(),
            line: e.line,
            reason: e.reason,
        })
    }

    /// Replaces the file atomically.
    pub fn save(&self, hosts: &KnownHosts) -> Result<(), PinError> {
        super::write_atomically(&self.path, hosts.to_text().as_bytes(), false)
            .map_err(|source| PinError::Write { file: self.path.clone(), source })
    }

    /// Reads, changes and saves the file as one step: `change` gets the
    /// current pins and returns whether it changed them (then they are
    /// saved) and a result. Other processes and threads updating the same
    /// file wait meanwhile: an exclusive advisory lock (`File::lock`, flock
    /// on Unix, LockFileEx on Windows) on `known_hosts.lock` beside it, so
    /// two clients pinning at the same moment both keep their pin.
    /// Blocking: run it off an executor thread.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut KnownHosts) -> (bool, R),
    ) -> Result<R, PinError> {
        let lock_path = self.path.with_file_name(format!(
            "{}.lock",
            self.path.file_name().and_then(|n| n.to_str()).unwrap_or(KNOWN_HOSTS_FILE_NAME)
        ));
        let lock_error = |source| PinError::Write { file: lock_path.clone(), source };
        if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(lock_error)?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(lock_error)?;
        lock.lock().map_err(lock_error)?;
        let mut hosts = self.load()?;
        let (changed, result) = change(&mut hosts);
        if changed {
            self.save(&hosts)?;
        }
        // Dropping `lock` closes it, which releases the lock.
        Ok(result)
    }

    /// The whole trust-on-first-use decision for one connection: a known
    /// host with its pinned certificate passes, an unknown host is pinned
    /// (and saved, under [`PinStore::update`]'s lock), a changed certificate
    /// is [`PinError::Changed`].
    pub fn check_and_pin(&self, host: &str, presented: Fingerprint) -> Result<Verdict, PinError> {
        self.update(|hosts| match hosts.check(host, presented) {
            Verdict::Changed { pinned } => {
                (false, Err(self.changed(hosts, host, pinned, presented)))
            }
            verdict => (verdict == Verdict::FirstUse && hosts.pin(host, presented), Ok(verdict)),
        })?
    }

    /// The loud refusal for a host whose certificate changed.
    pub fn changed(
        &self,
        hosts: &KnownHosts,
        host: &str,
        pinned: Fingerprint,
        presented: Fingerprint,
    ) -> PinError {
        PinError::Changed(Box::new(CertChanged {
            host: host.to_string(),
            pinned,
            presented,
            file: self.path.clone(),
            line: hosts.line_of(host).unwrap_or(0),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Fingerprint = Fingerprint([1; 32]);
    const B: Fingerprint = Fingerprint([2; 32]);

    #[test]
    fn first_use_then_trusted_then_changed() {
        let mut hosts = KnownHosts::default();
        assert_eq!(hosts.check("10.0.0.1:5000", A), Verdict::FirstUse);
        assert!(hosts.pin("10.0.0.1:5000", A));
        assert_eq!(hosts.check("10.0.0.1:5000", A), Verdict::Trusted);
        assert_eq!(hosts.check("10.0.0.1:5000", B), Verdict::Changed { pinned: A });
        // Pins are per host: another host may present B.
        assert_eq!(hosts.check("10.0.0.2:5000", B), Verdict::FirstUse);
    }

    #[test]
    fn text_round_trips_and_ignores_comments() {
        let mut hosts = KnownHosts::default();
        hosts.pin("[fe80::1]:5000", A);
        hosts.pin("10.0.0.1:5000", B);
        let text = hosts.to_text();
        assert_eq!(KnownHosts::parse(&text), Ok(hosts.clone()));
        let edited = format!("{text}\n   \n# a comment\n");
        assert_eq!(KnownHosts::parse(&edited), Ok(hosts));
    }

    #[test]
    fn bad_lines_are_errors_with_line_numbers() {
        // Table of hand-edit mistakes; each must name its line.
        let fp = A.to_string();
        for (text, line, needle) in [
            ("10.0.0.1:5000\n".to_string(), 1, "expected"),
            (format!("# c\n10.0.0.1:5000 {fp} extra\n"), 2, "expected"),
            ("10.0.0.1:5000 sha256:zz\n".into(), 1, "64 hex digits"),
            ("10.0.0.1:5000 md5:00\n".into(), 1, "sha256:"),
            (format!("h {fp}\nh {fp}\n"), 2, "twice"),
        ] {
            let err = KnownHosts::parse(&text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}");
            assert!(err.reason.contains(needle), "{text:?}: {}", err.reason);
        }
    }

    #[test]
    fn unwritable_keys_are_refused() {
        let mut hosts = KnownHosts::default();
        assert!(!hosts.pin("a b", A));
        assert!(!hosts.pin("#x", A));
        assert!(!hosts.pin("", A));
        assert!(hosts.is_empty());
    }

    #[test]
    fn clients_pinning_at_the_same_moment_all_keep_their_pins() {
        // Eight clients (threads here; processes share the same lock) each
        // pin their own host at once, twenty times over: without the lock
        // a read-change-write lost some of them.
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(KNOWN_HOSTS_FILE_NAME);
            let hosts: Vec<String> = (0..8).map(|i| format!("10.0.{round}.{i}:5000")).collect();
            let barrier = std::sync::Barrier::new(hosts.len());
            std::thread::scope(|s| {
                for host in &hosts {
                    let (store, barrier) = (PinStore::at(&path), &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        assert_eq!(store.check_and_pin(host, A).unwrap(), Verdict::FirstUse);
                    });
                }
            });
            let kept = PinStore::at(&path).load().unwrap();
            for host in &hosts {
                assert_eq!(kept.get(host), Some(A), "round {round}: {host} lost its pin");
            }
        }
    }

    #[test]
    fn store_pins_on_first_use_and_warns_loudly_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::at(dir.path().join(KNOWN_HOSTS_FILE_NAME));
        assert_eq!(store.check_and_pin("10.0.0.9:5000", A).unwrap(), Verdict::FirstUse);
        assert_eq!(store.check_and_pin("10.0.0.1:5000", A).unwrap(), Verdict::FirstUse);
        assert_eq!(store.check_and_pin("10.0.0.9:5000", A).unwrap(), Verdict::Trusted);
        let err = store.check_and_pin("10.0.0.9:5000", B).unwrap_err();
        let message = err.to_string();
        for needle in [
            "WARNING",
            "HAS CHANGED",
            "10.0.0.9:5000",
            &A.to_string(),
            &B.to_string(),
            &store.path().display().to_string(),
            "deleting line",
        ] {
            assert!(message.contains(needle), "missing {needle:?} in {message}");
        }
        // The line it names really is that host's line; deleting it accepts B.
        let PinError::Changed(changed) = err else { unreachable!() };
        let line = changed.line;
        let text = std::fs::read_to_string(store.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[line - 1].starts_with("10.0.0.9:5000 "), "{lines:?}");
        let kept: Vec<&str> =
            lines.iter().enumerate().filter(|(i, _)| *i != line - 1).map(|(_, l)| *l).collect();
        std::fs::write(store.path(), kept.join("\n")).unwrap();
        assert_eq!(store.check_and_pin("10.0.0.9:5000", B).unwrap(), Verdict::FirstUse);
        assert_eq!(store.check_and_pin("10.0.0.1:5000", A).unwrap(), Verdict::Trusted);
    }

    #[test]
    fn corrupt_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::at(dir.path().join(KNOWN_HOSTS_FILE_NAME));
        std::fs::write(store.path(), "garbage\n").unwrap();
        let err = store.check_and_pin("10.0.0.9:5000", A).unwrap_err();
        assert!(matches!(err, PinError::Parse { line: 1, .. }), "{err:?}");
        // Nothing was overwritten.
        assert_eq!(std::fs::read_to_string(store.path()).unwrap(), "garbage\n");
    }
}

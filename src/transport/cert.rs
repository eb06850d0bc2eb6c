//! The host's TLS identity: a self-signed certificate made once and kept.
//!
//! A host has no name a certificate authority could vouch for (it is a laptop
//! on a LAN), so its certificate is self-signed ([rcgen], ECDSA P-256 with
//! SHA-256, subject alternative name `sapora`) and clients trust it by its
//! SHA-256 [`Fingerprint`] instead: pinned on first use (see
//! [`super::pin`]), later carried in discovery beacons. For that to work the
//! certificate must survive restarts, so [`HostIdentity::load_or_create`]
//! keeps it in `host-cert.pem` in the configuration directory (PEM:
//! certificate, then PKCS#8 private key; mode 0600 on Unix).
//!
//! What happens to a bad file:
//! - missing: a new identity is made and saved ([`Loaded::Created`]);
//! - unreadable (permissions, I/O error): [`CertError::Unreadable`], nothing is
//!   overwritten, the message says how to fix it;
//! - readable but corrupt (not PEM, no key, key does not match the
//!   certificate): the file is kept aside as `host-cert.pem.corrupt` and a new
//!   identity is made ([`Loaded::Replaced`]); the caller should warn that
//!   clients which pinned the old one will see a changed fingerprint.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// File name of the host identity inside the configuration directory.
pub const CERT_FILE_NAME: &str = "host-cert.pem";

/// The DNS name in the certificate. Clients pass it as the TLS server name;
/// it carries no trust (the fingerprint does), but rustls needs one.
pub const SERVER_NAME: &str = "sapora";

/// SHA-256 over the DER bytes of a certificate: the value clients pin.
///
/// `Display` gives the full form `sha256:<64 lowercase hex digits>` (what the
/// known-hosts file stores); [`Fingerprint::short`] the first 64 bits in four
/// groups, for people to compare by eye.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(cert_der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(cert_der).into())
    }

    /// The first 8 bytes as `ab12-cd34-ef56-7890`: enough for a person to
    /// notice a different host, not a replacement for the full comparison.
    pub fn short(&self) -> String {
        let hex = hex(&self.0[..8]);
        format!("{}-{}-{}-{}", &hex[0..4], &hex[4..8], &hex[8..12], &hex[12..16])
    }

    /// Parses the full form: `sha256:` followed by 64 hex digits (either
    /// case; `:` separators between bytes are allowed, as tools print them).
    pub fn parse(text: &str) -> Result<Fingerprint, FingerprintError> {
        let text = text.trim();
        let digits = text
            .strip_prefix("sha256:")
            .or_else(|| text.strip_prefix("SHA256:"))
            .ok_or(FingerprintError::NoPrefix)?;
        let digits: Vec<u8> = digits.bytes().filter(|&b| b != b':').collect();
        if digits.len() != 64 {
            return Err(FingerprintError::Length(digits.len()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or(FingerprintError::NotHex)?;
            let lo = hex_value(pair[1]).ok_or(FingerprintError::NotHex)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

/// Why a text is not a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    #[error("a fingerprint starts with \"sha256:\"")]
    NoPrefix,
    #[error("a SHA-256 fingerprint has 64 hex digits, this one has {0}")]
    Length(usize),
    #[error("a fingerprint contains only the hex digits 0-9 and a-f")]
    NotHex,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Errors of the host identity.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(
        "there is no configuration directory to keep the host certificate in (no home directory); set SAPORA_CONFIG_DIR to choose one"
    )]
    NoConfigDir,
    #[error(
        "cannot read the host certificate {path}: {source}. Fix the file's permissions, or move it away to make a new one (clients that pinned the old one will then warn that it changed)"
    )]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("cannot save the host certificate to {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot keep the corrupt host certificate aside as {path}: {source}")]
    KeepAside { path: PathBuf, source: std::io::Error },
    #[error("cannot make a host certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the host certificate file is corrupt: {0}")]
    Corrupt(String),
}

/// How [`HostIdentity::load_or_create`] got its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// Read from the file (the normal case after the first run).
    Existing,
    /// There was no file; a new identity was made and saved.
    Created,
    /// The file was corrupt (`reason`); it was moved to `kept_at` and a new
    /// identity was made and saved. Clients that pinned the old certificate
    /// will refuse this host until they accept the new fingerprint.
    Replaced { reason: String, kept_at: PathBuf },
}

/// The host's certificate and private key. `Debug` never shows the key.
pub struct HostIdentity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    fingerprint: Fingerprint,
    /// The file's text (certificate block, then key block).
    pem: String,
}

impl fmt::Debug for HostIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Clone for HostIdentity {
    fn clone(&self) -> HostIdentity {
        HostIdentity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint,
            pem: self.pem.clone(),
        }
    }
}

impl HostIdentity {
    /// A fresh self-signed identity (ECDSA P-256, SAN `sapora`, valid from
    /// 1975 to 4096: rcgen's defaults, since expiry means nothing for a
    /// pinned certificate).
    pub fn generate() -> Result<HostIdentity, CertError> {
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])?;
        let pem = format!("{}{}", certified.cert.pem(), certified.signing_key.serialize_pem());
        HostIdentity::from_pem(pem.as_bytes())
    }

    /// Parses the file format: one `CERTIFICATE` PEM block and one private
    /// key block, and checks with rustls (ring) that the key is usable and
    /// belongs to the certificate.
    pub fn from_pem(pem: &[u8]) -> Result<HostIdentity, CertError> {
        let mut certs = CertificateDer::pem_slice_iter(pem);
        let cert = match certs.next() {
            Some(Ok(cert)) => cert,
            Some(Err(e)) => return Err(CertError::Corrupt(format!("bad certificate block: {e}"))),
            None => return Err(CertError::Corrupt("no certificate in the file".into())),
        };
        let key = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| CertError::Corrupt(format!("no usable private key: {e}")))?;
        let pem = String::from_utf8_lossy(pem).into_owned();
        let identity = HostIdentity { fingerprint: Fingerprint::of(&cert), cert, key, pem };
        identity.check()?;
        Ok(identity)
    }

    /// The file format (see [`HostIdentity::from_pem`]).
    pub fn to_pem(&self) -> &str {
        &self.pem
    }

    /// Loads `dir/host-cert.pem`, or makes and saves a new identity when
    /// there is none or it is corrupt (see the module docs for each case).
    pub fn load_or_create(dir: &Path) -> Result<(HostIdentity, Loaded), CertError> {
        let path = dir.join(CERT_FILE_NAME);
        let reason = match std::fs::read(&path) {
            Ok(bytes) => match HostIdentity::from_pem(&bytes) {
                Ok(identity) => return Ok((identity, Loaded::Existing)),
                Err(e) => Some(e.to_string()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(CertError::Unreadable { path, source }),
        };
        let identity = HostIdentity::generate()?;
        let loaded = match reason {
            None => Loaded::Created,
            Some(reason) => {
                let kept_at = path.with_file_name(format!("{CERT_FILE_NAME}.corrupt"));
                std::fs::rename(&path, &kept_at)
                    .map_err(|source| CertError::KeepAside { path: kept_at.clone(), source })?;
                Loaded::Replaced { reason, kept_at }
            }
        };
        super::write_atomically(&path, identity.to_pem().as_bytes(), true)
            .map_err(|source| CertError::Write { path: path.clone(), source })?;
        Ok((identity, loaded))
    }

    /// [`HostIdentity::load_or_create`] in [`super::config_dir`].
    /// Calls in one process run one at a time, so two hosts started
    /// together cannot each make (and one overwrite) a new certificate.
    pub fn load_or_create_default() -> Result<(HostIdentity, Loaded), CertError> {
        static LOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = LOADING.lock().unwrap_or_else(|e| e.into_inner());
        let dir = super::config_dir().ok_or(CertError::NoConfigDir)?;
        HostIdentity::load_or_create(&dir)
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The certificate, DER.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// A copy of the private key, for a rustls config.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    fn check(&self) -> Result<(), CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::sign::CertifiedKey::from_der(vec![self.cert.clone()], self.private_key(), &provider)
            .map(|_| ())
            .map_err(|e| CertError::Corrupt(format!("the key does not fit the certificate: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_forms_round_trip() {
        let fp = Fingerprint([0xab; 32]);
        assert_eq!(fp.to_string(), format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(fp.short(), "abab-abab-abab-abab");
        assert_eq!(Fingerprint::parse(&fp.to_string()), Ok(fp));
        // Upper case with colons, as `openssl x509 -fingerprint` prints it.
        let colons = format!("SHA256:{}", ["AB"; 32].join(":"));
        assert_eq!(Fingerprint::parse(&colons), Ok(fp));
    }

    #[test]
    fn fingerprint_parse_rejects_bad_text() {
        assert_eq!(Fingerprint::parse("ab"), Err(FingerprintError::NoPrefix));
        assert_eq!(Fingerprint::parse("sha256:abcd"), Err(FingerprintError::Length(4)));
        let bad = format!("sha256:{}zz", "00".repeat(31));
        assert_eq!(Fingerprint::parse(&bad), Err(FingerprintError::NotHex));
        // Multi-byte UTF-8 must not panic in the chunking.
        assert!(Fingerprint::parse(&format!("sha256:{}", "é".repeat(32))).is_err());
    }

    #[test]
    fn generated_identity_survives_the_file_format() {
        let identity = HostIdentity::generate().unwrap();
        let again = HostIdentity::from_pem(identity.to_pem().as_bytes()).unwrap();
        assert_eq!(again.fingerprint(), identity.fingerprint());
        assert_eq!(again.certificate(), identity.certificate());
        assert!(!format!("{identity:?}").contains("PRIVATE"));
    }

    #[test]
    fn created_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let (first, how) = HostIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(how, Loaded::Created);
        let (second, how) = HostIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(how, Loaded::Existing);
        assert_eq!(first.fingerprint(), second.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CERT_FILE_NAME)).unwrap().permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn corrupt_file_is_kept_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CERT_FILE_NAME);
        std::fs::write(&path, b"not a certificate").unwrap();
        let (_, how) = HostIdentity::load_or_create(dir.path()).unwrap();
        let Loaded::Replaced { reason, kept_at } = how else { panic!("{how:?}") };
        assert!(reason.contains("no certificate"), "{reason}");
        assert_eq!(std::fs::read(kept_at).unwrap(), b"not a certificate");
        assert!(HostIdentity::from_pem(&std::fs::read(&path).unwrap()).is_ok());
    }

    #[test]
    fn key_of_another_certificate_is_corrupt() {
        let a = HostIdentity::generate().unwrap();
        let b = HostIdentity::generate().unwrap();
        let cert_of_a = a.to_pem().split("-----BEGIN PRIVATE KEY").next().unwrap();
        let key_of_b = &b.to_pem()[b.to_pem().find("-----BEGIN PRIVATE KEY").unwrap()..];
        let mixed = format!("{cert_of_a}{key_of_b}");
        let err = HostIdentity::from_pem(mixed.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_file_is_an_error_not_a_replacement() {
        // A directory where the file should be: reading fails with an error
        // other than NotFound, and nothing may be overwritten.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(CERT_FILE_NAME)).unwrap();
        let err = HostIdentity::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, CertError::Unreadable { .. }), "{err:?}");
        assert!(err.to_string().contains("move it away"), "{err}");
    }
}

//! Scheduled meetings: a small JSON-backed store behind `sapora schedule
//! add|list|edit|rm` and `sapora join --meeting ID`.
//!
//! Design notes:
//! - A meeting's id doubles as its room name, so ids are matched
//!   case-insensitively: `Standup` and `standup` would otherwise be two
//!   meetings that people cannot tell apart when typing them.
//! - Start times are stored as RFC 3339 strings with a numeric offset
//!   (`2026-11-21T10:00:00+01:00`). That keeps the file readable, and the
//!   instant unambiguous when the file is copied to a machine in another zone.
//! - The file is only ever replaced atomically (temp file + rename), and a
//!   file that cannot be read or parsed is reported and never written over,
//!   so a bug or a bad hand edit can never silently lose meetings.

#[cfg(unix)]
use std::fs::File;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::fmt::temporal::Pieces;
use jiff::tz::{Offset, TimeZone};
use jiff::{Timestamp, Zoned};
use serde::{Deserialize, Serialize};

use crate::proto::text::RoomKey;

/// Duration used when none is given (CLI flag omitted or field missing in
/// the file).
pub const DEFAULT_DURATION_MIN: u32 = 60;
/// Longest meeting accepted: one day. Anything longer is almost certainly a
/// typo (e.g. hours typed as minutes twice).
pub const MAX_DURATION_MIN: u32 = 24 * 60;
/// Ids are typed on the command line and used as room names; keep them short.
pub const MAX_ID_CHARS: usize = 64;
/// Titles are shown in a table; a cap keeps the file and the output sane.
pub const MAX_TITLE_CHARS: usize = 200;
/// Environment variable overriding the configuration directory.
pub const CONFIG_DIR_ENV: &str = "SAPORA_CONFIG_DIR";
/// File name of the store inside the configuration directory.
pub const SCHEDULE_FILE_NAME: &str = "schedule.json";

/// On-disk format version; bumped on incompatible changes so that an older
/// sapora refuses (rather than mangles) a newer file.
const FORMAT_VERSION: u32 = 1;

/// Result alias for this module.
pub type Result<T, E = ScheduleError> = std::result::Result<T, E>;

/// Everything that can go wrong while scheduling. Messages are full
/// sentences because the CLI prints them as-is.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "{input:?} is not a valid ISO 8601 date-time (expected e.g. 2026-11-21T14:30 or 2026-11-21T14:30:00+01:00): {reason}"
    )]
    BadDate { input: String, reason: String },

    #[error("the meeting id must not be empty or only whitespace")]
    EmptyId,

    #[error("the meeting id is {len} characters long; at most {MAX_ID_CHARS} are allowed")]
    IdTooLong { len: usize },

    #[error("the meeting id {id:?} contains a control character (such as a newline or tab)")]
    IdControlChar { id: String },

    #[error("the meeting title must not be empty or only whitespace")]
    EmptyTitle,

    #[error("the meeting title is {len} characters long; at most {MAX_TITLE_CHARS} are allowed")]
    TitleTooLong { len: usize },

    #[error("the meeting title {title:?} contains a control character (such as a newline or tab)")]
    TitleControlChar { title: String },

    #[error(
        "a meeting must last between 1 and {MAX_DURATION_MIN} minutes (24 hours), not {0} minutes"
    )]
    BadDuration(u32),

    #[error(
        "the host {host:?} must not contain spaces or control characters (expected an address such as 192.168.1.20 or 192.168.1.20:7000)"
    )]
    BadHost { host: String },

    #[error(
        "a meeting with id {existing:?} already exists (ids are case-insensitive); choose another id or use sapora schedule edit"
    )]
    Duplicate { id: String, existing: String },

    #[error("no meeting with id {0:?} (see sapora schedule list)")]
    UnknownId(String),

    #[error(
        "the schedule file {} is corrupt or unreadable and was left untouched (fix or move it away): {reason}",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },

    #[error(
        "the schedule file {} has format version {version}, but this sapora only understands version {FORMAT_VERSION}; upgrade sapora",
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, version: u64 },

    #[error(
        "cannot determine a configuration directory (no home directory found); set {CONFIG_DIR_ENV} to choose one"
    )]
    NoConfigDir,

    #[error("could not write the schedule file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One scheduled meeting, as stored in `schedule.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    /// Unique (case-insensitively) identifier; also the room name.
    pub id: String,
    pub title: String,
    /// RFC 3339 with numeric offset, e.g. `2026-11-21T10:00:00+01:00`.
    pub start: String,
    #[serde(default = "default_duration")]
    pub duration_min: u32,
    /// Server to join, `ip` or `ip:port` as typed; `None` lets `join` use
    /// its usual default/discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

fn default_duration() -> u32 {
    DEFAULT_DURATION_MIN
}

impl Meeting {
    /// A meeting with the default duration and no host. Nothing is checked
    /// here; `Store::add` (or [`Meeting::validated`]) does that.
    pub fn new(id: impl Into<String>, title: impl Into<String>, start: impl Into<String>) -> Self {
        Meeting {
            id: id.into(),
            title: title.into(),
            start: start.into(),
            duration_min: DEFAULT_DURATION_MIN,
            host: None,
        }
    }

    /// The room a meeting takes place in is simply its id.
    pub fn room(&self) -> &str {
        &self.id
    }

    /// The start as a time-zone-aware value (fixed offset).
    pub fn start_time(&self) -> Result<Zoned> {
        parse_start(&self.start)
    }

    /// Checks every field and returns the meeting in canonical form:
    /// id, title and host trimmed (surrounding whitespace is never intended
    /// and would make ids impossible to type), an empty host becomes `None`,
    /// and `start` is normalised to RFC 3339 with a numeric offset.
    ///
    /// The GUI can call this to validate a dialog before saving.
    pub fn validated(self) -> Result<Meeting> {
        let id = self.id.trim();
        if id.is_empty() {
            return Err(ScheduleError::EmptyId);
        }
        let len = id.chars().count();
        if len > MAX_ID_CHARS {
            return Err(ScheduleError::IdTooLong { len });
        }
        if id.chars().any(char::is_control) {
            return Err(ScheduleError::IdControlChar { id: id.to_string() });
        }

        let title = self.title.trim();
        if title.is_empty() {
            return Err(ScheduleError::EmptyTitle);
        }
        let len = title.chars().count();
        if len > MAX_TITLE_CHARS {
            return Err(ScheduleError::TitleTooLong { len });
        }
        // Control characters would break the `schedule list` table.
        if title.chars().any(char::is_control) {
            return Err(ScheduleError::TitleControlChar { title: title.to_string() });
        }

        if !(1..=MAX_DURATION_MIN).contains(&self.duration_min) {
            return Err(ScheduleError::BadDuration(self.duration_min));
        }

        // The host is kept as typed (it may later be a name, not only an IP),
        // but inner whitespace can never be part of an address.
        let host = match self.host.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(h) if h.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(ScheduleError::BadHost { host: h.to_string() });
            }
            Some(h) => Some(h.to_string()),
        };

        let start = format_rfc3339(&parse_start(&self.start)?);

        Ok(Meeting {
            id: id.to_string(),
            title: title.to_string(),
            start,
            duration_min: self.duration_min,
            host,
        })
    }
}

/// Changes for [`Store::edit`]; `None` leaves a field unchanged. The id is
/// not editable because it is the room name people were given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeetingEdit {
    pub title: Option<String>,
    pub start: Option<String>,
    pub duration_min: Option<u32>,
    /// `Some(None)` removes the host, `Some(Some(h))` sets it.
    pub host: Option<Option<String>>,
}

/// Parses a user-supplied start time.
///
/// Accepts ISO 8601 / RFC 3339 with an offset or `Z`
/// (`2026-11-21T10:00:00Z`, `2026-11-21T10:00+01:00`), or a civil date-time
/// without one (`2026-11-21T10:00`, `2026-11-21 10:00`, seconds optional),
/// which is taken to be in the system's local time zone. A bracketed IANA
/// zone (`2026-11-21T10:00[Europe/Paris]`) is honoured too.
///
/// The result always has a fixed offset and whole seconds, i.e. exactly what
/// is stored. Local times in a DST gap or fold resolve like most calendar
/// apps do: a gap moves forward, a fold picks the earlier instant.
pub fn parse_start(input: &str) -> Result<Zoned> {
    let bad = |reason: String| ScheduleError::BadDate { input: input.to_string(), reason };
    // Surrounding whitespace is a quoting artefact, not part of the date.
    let s = input.trim();
    if s.is_empty() {
        return Err(bad("the input is empty".to_string()));
    }
    let pieces = Pieces::parse(s).map_err(|e| bad(e.to_string()))?;
    // A bare date parses fine, but a meeting needs a time of day; guessing
    // midnight would be wrong more often than right.
    let Some(time) = pieces.time() else {
        return Err(bad("a time of day is required, not just a date".to_string()));
    };
    let civil = pieces.date().to_datetime(time);

    let zoned = if pieces.time_zone_annotation().is_some() {
        // Let jiff resolve the named zone and check any offset against it.
        s.parse::<Zoned>()
    } else if let Some(offset) = pieces.to_numeric_offset() {
        civil.to_zoned(TimeZone::fixed(offset))
    } else {
        civil.to_zoned(TimeZone::system())
    }
    .map_err(|e| bad(e.to_string()))?;

    // RFC 3339 only has four-digit years; jiff also allows negative ones.
    if !(0..=9999).contains(&zoned.year()) {
        return Err(bad(format!("the year {} is outside 0000..=9999", zoned.year())));
    }

    // RFC 3339 offsets are whole minutes; odd historical offsets (or typed
    // ones like +01:00:30) fall back to UTC rather than becoming invalid.
    let offset = if zoned.offset().seconds() % 60 == 0 { zoned.offset() } else { Offset::UTC };
    // Meetings are scheduled to the second; drop any fraction.
    Timestamp::from_second(zoned.timestamp().as_second())
        .map(|ts| ts.to_zoned(TimeZone::fixed(offset)))
        .map_err(|e| bad(e.to_string()))
}

/// `2026-11-21T10:00:00+01:00`: RFC 3339 with a numeric offset (never `Z`,
/// so the original local time stays visible in the file).
fn format_rfc3339(z: &Zoned) -> String {
    z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// Key ids are matched by: the id is a room name, so two ids are one
/// meeting exactly when they are one room ([`RoomKey`]: case, spacing and
/// look-alike letters do not matter).
fn id_key(id: &str) -> RoomKey {
    RoomKey::new(id)
}

/// Serialised shape of `schedule.json`.
#[derive(Deserialize)]
struct ScheduleFile {
    meetings: Vec<Meeting>,
}

#[derive(Serialize)]
struct ScheduleFileRef<'a> {
    version: u32,
    meetings: &'a [Meeting],
}

/// The meeting store: one JSON file.
///
/// There is no locking; two commands editing at the very same moment could
/// lose one of the two changes (never the file). That is acceptable for a
/// per-user file edited by hand-typed commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The per-user store: `$SAPORA_CONFIG_DIR/schedule.json` if that
    /// variable is set (and non-empty), otherwise `schedule.json` in the
    /// platform configuration directory (e.g. `~/.config/sapora`).
    pub fn open_default() -> Result<Store> {
        if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(Store::at(PathBuf::from(dir).join(SCHEDULE_FILE_NAME)));
        }
        let dirs =
            directories::ProjectDirs::from("", "", "sapora").ok_or(ScheduleError::NoConfigDir)?;
        Ok(Store::at(dirs.config_dir().join(SCHEDULE_FILE_NAME)))
    }

    /// A store backed by the file at `path` (which need not exist yet).
    pub fn at(path: impl Into<PathBuf>) -> Store {
        Store { path: path.into() }
    }

    /// Path of the backing file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All meetings, sorted by start instant then id. A missing file is an
    /// empty schedule.
    pub fn list(&self) -> Result<Vec<Meeting>> {
        self.load()
    }

    /// The meeting with this id (case-insensitive).
    pub fn get(&self, id: &str) -> Result<Meeting> {
        let meetings = self.load()?;
        let idx = find(&meetings, id)?;
        Ok(meetings[idx].clone())
    }

    /// Validates, normalises and stores a new meeting; returns it as stored.
    pub fn add(&self, meeting: Meeting) -> Result<Meeting> {
        let meeting = meeting.validated()?;
        let mut meetings = self.load()?;
        let key = id_key(&meeting.id);
        if let Some(existing) = meetings.iter().find(|m| id_key(&m.id) == key) {
            return Err(ScheduleError::Duplicate { id: meeting.id, existing: existing.id.clone() });
        }
        meetings.push(meeting.clone());
        self.save(meetings)?;
        Ok(meeting)
    }

    /// Applies `edit` to the meeting with this id; returns it as stored.
    /// The whole edited meeting is re-validated before anything is written.
    pub fn edit(&self, id: &str, edit: MeetingEdit) -> Result<Meeting> {
        let mut meetings = self.load()?;
        let idx = find(&meetings, id)?;
        let mut meeting = meetings[idx].clone();
        if let Some(title) = edit.title {
            meeting.title = title;
        }
        if let Some(start) = edit.start {
            meeting.start = start;
        }
        if let Some(duration_min) = edit.duration_min {
            meeting.duration_min = duration_min;
        }
        if let Some(host) = edit.host {
            meeting.host = host;
        }
        let meeting = meeting.validated()?;
        // Skip the write for a no-op edit; nothing to gain from touching
        // the file.
        if meeting != meetings[idx] {
            meetings[idx] = meeting.clone();
            self.save(meetings)?;
        }
        Ok(meeting)
    }

    /// Deletes the meeting with this id; returns what was removed.
    pub fn remove(&self, id: &str) -> Result<Meeting> {
        let mut meetings = self.load()?;
        let idx = find(&meetings, id)?;
        let removed = meetings.remove(idx);
        self.save(meetings)?;
        Ok(removed)
    }

    /// Reads, validates and sorts the stored meetings. Anything unexpected
    /// is `Corrupt`, which every mutating method hits before writing; that
    /// is what guarantees a damaged file is never overwritten.
    fn load(&self) -> Result<Vec<Meeting>> {
        let corrupt = |reason: String| ScheduleError::Corrupt { path: self.path.clone(), reason };
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(corrupt(e.to_string())),
        };
        // An empty file holds no data to protect (e.g. created by `touch`).
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }

        // Check the version first, so a newer format is reported as such
        // rather than as garbage.
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        let version = value
            .get("version")
            .ok_or_else(|| corrupt("missing \"version\" field".to_string()))?
            .as_u64()
            .ok_or_else(|| corrupt("\"version\" is not a non-negative integer".to_string()))?;
        if version != u64::from(FORMAT_VERSION) {
            return Err(ScheduleError::UnsupportedVersion { path: self.path.clone(), version });
        }
        let file: ScheduleFile =
            serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;

        // Hand edits are allowed, but must still satisfy every rule the
        // CLI enforces; otherwise `join` could pick a broken meeting.
        let mut meetings = Vec::with_capacity(file.meetings.len());
        for meeting in file.meetings {
            let label = meeting.id.clone();
            let meeting =
                meeting.validated().map_err(|e| corrupt(format!("meeting {label:?}: {e}")))?;
            meetings.push(meeting);
        }
        if let Some(dup) = first_duplicate(&meetings) {
            return Err(corrupt(format!(
                "meeting id {dup:?} appears more than once (ids are case-insensitive)"
            )));
        }
        sort_meetings(&mut meetings);
        Ok(meetings)
    }

    /// Writes the meetings (sorted, so the file reads like `schedule list`)
    /// atomically: temp file in the same directory, fsync, rename.
    fn save(&self, mut meetings: Vec<Meeting>) -> Result<()> {
        let write_err =
            |source: io::Error| ScheduleError::Write { path: self.path.clone(), source };
        sort_meetings(&mut meetings);
        let mut json = serde_json::to_string_pretty(&ScheduleFileRef {
            version: FORMAT_VERSION,
            meetings: &meetings,
        })
        .map_err(|e| write_err(io::Error::other(e)))?;
        json.push('\n');

        let file_name = self.path.file_name().ok_or_else(|| {
            write_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the schedule path has no file name",
            ))
        })?;
        // `Path::parent` is `Some("")` for a bare file name: use the cwd.
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir).map_err(write_err)?;

        // Same directory so the rename cannot cross file systems; pid plus
        // counter so concurrent writers never share a temp file.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(
            ".{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = dir.join(tmp_name);

        let result =
            write_synced(&tmp, json.as_bytes()).and_then(|()| fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            // Best effort: don't leave temp files behind; the original error
            // is the one worth reporting.
            let _ = fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        // Persist the rename itself (Unix only; opening a directory fails on
        // Windows). Failure here does not undo the already-visible write.
        #[cfg(unix)]
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Creates `path` (which must not exist) with `bytes`, flushed to disk so a
/// crash right after the rename cannot leave an empty file.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Index of the meeting with this id (case-insensitive), or `UnknownId`.
fn find(meetings: &[Meeting], id: &str) -> Result<usize> {
    let key = id_key(id);
    meetings
        .iter()
        .position(|m| id_key(&m.id) == key)
        .ok_or_else(|| ScheduleError::UnknownId(id.trim().to_string()))
}

/// First id that occurs twice (by [`id_key`]), if any.
fn first_duplicate(meetings: &[Meeting]) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    meetings.iter().find(|m| !seen.insert(id_key(&m.id))).map(|m| m.id.as_str())
}

/// Sorts by start instant (not by string: offsets differ), then id
/// (lower-cased: an order for people, not an identity, which is [`id_key`]).
/// Unparsable starts (impossible for validated meetings) sort last.
fn sort_meetings(meetings: &mut [Meeting]) {
    meetings.sort_by_cached_key(|m| {
        let at = m.start_time().ok().map(|z| z.timestamp());
        (at.is_none(), at, m.id.to_lowercase(), m.id.clone())
    });
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;

//! The state file (`[state] path`): what the alert promises need across restarts and crashes
//! (per profile the incarnation, status and open episodes; the sequence counter; the outbox),
//! never what changes on every poll.
//!
//! It is written only when that changes, atomically: a temporary file beside it, fsynced, the
//! current file hard-linked to `<path>.prev`, then renamed over, and the directory fsynced. A
//! SIGKILL at any moment leaves the last complete file in place. The JSON ends with the
//! SHA-256 of every byte before it (`…,"sha256":"<hex>"}`), so damage is found, not loaded.
//!
//! On start a missing file is a first start; a file that cannot be read, parsed or checked is
//! replaced by `.prev` when that one is good, else moved aside with a WARN: the daemon starts
//! fresh and never crashes on it. Only a regular file is read (at most [`MAX_FILE_BYTES`]) and
//! only a regular file is ever moved aside or replaced: a directory, FIFO, device or symlink at
//! the path is an error and is left alone.
//!
//! A write that fails never holds deliveries back: they go on from memory, each failure is
//! counted, an ERROR repeats at most once a minute, and the write is retried with a backoff
//! until it succeeds.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use crate::logging::Repeats;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::limits::Backoff;
use crate::outbox::Pending;
use crate::state::{Saved, SavedResource, State};

mod v1;

/// The version of the file's format. A file of version 1 (0.1.0: Fargate profiles only) is
/// migrated as it is read ([`v1`]); a file of any other version is not read. Files written
/// before the checksum was added (they have no `sha256` key) are still read; the next write
/// adds it.
pub const FORMAT_VERSION: u32 = 2;

/// The largest state file read: far above what 100,000 profiles and full outboxes take
/// (about 450 bytes a profile, 1 KB an undelivered event), far below what would exhaust memory.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The least time between two writes: changes in a burst (10,000 first observations at
/// start) are coalesced into a few writes instead of one per change. Deliveries wait for the
/// write that holds their event, so this is also the most it delays an alert.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(200);

/// How a failed write is retried: 1 s, doubling up to 30 s (with jitter).
pub const RETRY: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(30),
};

/// The least time between two ERROR lines while writes keep failing.
pub const ERROR_INTERVAL: Duration = Duration::from_secs(60);

/// What precedes the checksum at the end of the file.
const CHECKSUM_KEY: &[u8] = b",\"sha256\":\"";
/// The hex digits of a SHA-256.
const CHECKSUM_HEX: usize = 64;

#[derive(Serialize)]
struct FileOut<'a, T> {
    version: u32,
    #[serde(flatten)]
    saved: &'a T,
}

/// The file as read: exactly these keys, so a damaged key is an error, not ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    version: u32,
    sequence: u64,
    resources: Vec<SavedResource>,
    outbox: Vec<Pending>,
    #[serde(default)]
    sha256: Option<String>,
}

/// The one key read first, to know how to read the rest.
#[derive(Deserialize)]
struct Version {
    version: u32,
}

/// Why bytes are not a state file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("the checksum does not match: the file is damaged")]
    Checksum,
    #[error("the checksum is damaged")]
    ChecksumDamaged,
    #[error("not a state file: {0}")]
    Json(String),
    #[error("format version {0} (this build reads {FORMAT_VERSION})")]
    Version(u32),
}

/// Decodes a state file from its bytes: checks the checksum (or accepts a file of this version
/// written before there was one), the keys and the version. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Saved, DecodeError> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DecodeError::TooLarge);
    }
    let checksum = match split_checksum(bytes) {
        Some((body, hex)) => {
            if hex_of(&Sha256::digest(body)).as_bytes() != hex {
                return Err(DecodeError::Checksum);
            }
            Some(hex)
        }
        None => None,
    };
    let json = |e: serde_json::Error| DecodeError::Json(e.to_string());
    let file: FileIn = match serde_json::from_slice::<Version>(bytes)
        .map_err(json)?
        .version
    {
        v1::VERSION => {
            let document = serde_json::from_slice(bytes).map_err(json)?;
            let migrated = v1::migrate(document).map_err(DecodeError::Json)?;
            tracing::info!("state file of version 1 migrated; the next write is version 2");
            serde_json::from_value(migrated).map_err(json)?
        }
        FORMAT_VERSION => serde_json::from_slice(bytes).map_err(json)?,
        other => return Err(DecodeError::Version(other)),
    };
    if file.version != FORMAT_VERSION {
        return Err(DecodeError::Version(file.version));
    }
    match (&file.sha256, checksum) {
        (None, None) => {}
        (Some(key), Some(hex)) if key.as_bytes() == hex => {}
        _ => return Err(DecodeError::ChecksumDamaged),
    }
    Ok(Saved {
        sequence: file.sequence,
        resources: file.resources,
        outbox: file.outbox,
    })
}

/// For a file that ends `,"sha256":"<64 lowercase hex>"}` (and perhaps one newline): the
/// bytes before the comma and the hex.
fn split_checksum(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let rest = bytes.strip_suffix(b"\"}")?;
    let split = rest.len().checked_sub(CHECKSUM_HEX)?;
    let (before, hex) = rest.split_at(split);
    let body = before.strip_suffix(CHECKSUM_KEY)?;
    hex.iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        .then_some((body, hex))
}

fn hex_of(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// `<path>.prev`: the previous complete file.
pub fn prev_path(path: &Path) -> PathBuf {
    with_suffix(path, ".prev")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What loading found.
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    /// No file: a first start.
    Missing,
    Found(Saved),
    /// Neither the file nor `.prev` could be used; a bad regular file was moved to the path
    /// given (a path that is not a regular file is left alone).
    Corrupt {
        moved_to: Option<PathBuf>,
    },
}

/// Why a file could not be read.
#[derive(Debug)]
enum ReadError {
    /// Something other than a regular file is at the path: never read, moved or replaced.
    NotRegular(&'static str),
    /// A regular file that cannot be read or decoded.
    Bad(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::NotRegular(kind) => write!(f, "it is {kind}, not a regular file"),
            ReadError::Bad(error) => f.write_str(error),
        }
    }
}

/// Reads the state file, falling back to `.prev`, as the module doc says; `clock` names a
/// file moved aside.
pub fn load(path: &Path, clock: &Clock) -> Loaded {
    let prev = prev_path(path);
    match read(path) {
        Ok(Some(saved)) => {
            keep_version_1(path);
            Loaded::Found(saved)
        }
        Ok(None) => match read(&prev) {
            // The file is missing but a previous one exists: a crash between writes of an
            // older version, or a file removed by hand. Use it.
            Ok(Some(saved)) => {
                tracing::warn!(path = %prev.display(), "state file missing; using the previous one");
                Loaded::Found(saved)
            }
            _ => Loaded::Missing,
        },
        Err(error) => {
            let moved_to = match &error {
                ReadError::NotRegular(_) => {
                    tracing::error!(path = %path.display(), %error, "cannot use the state file path; it is left alone: point [state] path at a regular file");
                    None
                }
                ReadError::Bad(_) => {
                    tracing::warn!(path = %path.display(), %error, "cannot read the state file");
                    move_aside(path, clock)
                }
            };
            match read(&prev) {
                Ok(Some(saved)) => {
                    tracing::warn!(path = %prev.display(), "using the previous state file");
                    Loaded::Found(saved)
                }
                _ => {
                    tracing::warn!("starting without a state: open issues will be alerted again");
                    Loaded::Corrupt { moved_to }
                }
            }
        }
    }
}

/// The copy of a version-1 state file kept at the first start of this version, for a
/// downgrade: `<path>.v1`.
pub fn v1_path(path: &Path) -> PathBuf {
    with_suffix(path, ".v1")
}

/// When the file at `path` is of version 1 (it was just read, so it is small and regular),
/// copies it to [`v1_path`] unless a copy is there already: the writes that follow replace
/// both it and `.prev` with version 2, which 0.1.0 cannot read.
fn keep_version_1(path: &Path) {
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|file| file.take(MAX_FILE_BYTES).read_to_end(&mut bytes));
    if read.is_err() {
        return;
    }
    let version = serde_json::from_slice::<Version>(&bytes).map(|v| v.version);
    let copy = v1_path(path);
    if version.ok() != Some(v1::VERSION) || copy.exists() {
        return;
    }
    match fs::write(&copy, &bytes) {
        Ok(()) => {
            tracing::info!(path = %copy.display(), "kept the version-1 state file for a downgrade to 0.1.0")
        }
        Err(error) => {
            tracing::warn!(path = %copy.display(), %error, "cannot keep a copy of the version-1 state file")
        }
    }
}

/// What is at `path`, for messages: "a directory", "a FIFO", …
fn kind_of(file_type: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "not a file"
    }
}

/// Whether `path` is a regular file (not followed if a symlink); `Ok(None)` when nothing is
/// there.
fn regular(path: &Path) -> Result<Option<fs::Metadata>, ReadError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => Ok(Some(meta)),
        Ok(meta) => Err(ReadError::NotRegular(kind_of(meta.file_type()))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(ReadError::Bad(error.to_string())),
    }
}

/// `Ok(None)` when the file does not exist.
fn read(path: &Path) -> Result<Option<Saved>, ReadError> {
    if regular(path)?.is_none() {
        return Ok(None);
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(ReadError::Bad(error.to_string())),
    };
    // What was opened, not what the path names now.
    let meta = file.metadata().map_err(|e| ReadError::Bad(e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular(kind_of(meta.file_type())));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Bad(e.to_string()))?;
    decode(&bytes)
        .map(Some)
        .map_err(|e| ReadError::Bad(e.to_string()))
}

/// Renames a bad regular file to `<path>.corrupt-<unix seconds>` so it can be looked at.
fn move_aside(path: &Path, clock: &Clock) -> Option<PathBuf> {
    if !matches!(regular(path), Ok(Some(_))) {
        return None;
    }
    let secs = clock
        .system_time()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let aside = with_suffix(path, &format!(".corrupt-{secs}"));
    match fs::rename(path, &aside) {
        Ok(()) => {
            tracing::warn!(path = %aside.display(), "moved the bad state file aside");
            Some(aside)
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot move the bad state file aside");
            None
        }
    }
}

/// An error that names the file it is about.
fn at(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// Checks that nothing but a regular file (or nothing) is at `path`.
fn replaceable(path: &Path) -> io::Result<bool> {
    match regular(path) {
        Ok(found) => Ok(found.is_some()),
        Err(ReadError::NotRegular(kind)) => Err(io::Error::other(format!(
            "{}: {kind} is there, not a regular file; it is left alone",
            path.display()
        ))),
        Err(ReadError::Bad(error)) => Err(io::Error::other(format!("{}: {error}", path.display()))),
    }
}

/// Writes through to `inner`, hashing what it writes, and holds the last byte back (the
/// closing brace, which goes after the checksum).
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    held: Option<u8>,
}

impl<W: io::Write> io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some((&last, rest)) = buf.split_last() else {
            return Ok(0);
        };
        if let Some(held) = self.held.take() {
            self.inner.write_all(&[held])?;
            self.hasher.update([held]);
        }
        self.inner.write_all(rest)?;
        self.hasher.update(rest);
        self.held = Some(last);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `saved` to `path` atomically and keeps the previous file as `.prev`. Returns how
/// long it took and the file's size. The JSON is encoded straight into the file through a
/// small buffer: at 10,000 profiles it is megabytes, not worth holding twice.
pub fn write(path: &Path, saved: &impl Serialize) -> io::Result<Written> {
    let started = std::time::Instant::now();
    let mut syncing = Duration::ZERO;
    let mut sync = |file: &File| {
        let started = std::time::Instant::now();
        let synced = file.sync_all();
        syncing += started.elapsed();
        synced
    };
    // Nothing but a regular file at the path, or nothing, is ever replaced.
    let exists = replaceable(path)?;
    let temp = with_suffix(path, ".tmp");
    let bytes = {
        // A stale temporary file (or a link) is removed; anything else in the way stays
        // and fails the write. `create_new` follows no link.
        if let Ok(meta) = fs::symlink_metadata(&temp)
            && (meta.file_type().is_file() || meta.file_type().is_symlink())
        {
            let _ = fs::remove_file(&temp);
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| at(&temp, e))?;
        let mut hashing = Hashing {
            inner: io::BufWriter::with_capacity(64 * 1024, &file),
            hasher: Sha256::new(),
            held: None,
        };
        let document = FileOut {
            version: FORMAT_VERSION,
            saved,
        };
        serde_json::to_writer(&mut hashing, &document).map_err(io::Error::other)?;
        if hashing.held != Some(b'}') {
            return Err(io::Error::other(
                "the state did not encode as a JSON object",
            ));
        }
        let hex = hex_of(&hashing.hasher.finalize_reset());
        let mut buffered = hashing.inner;
        buffered.write_all(CHECKSUM_KEY)?;
        buffered.write_all(hex.as_bytes())?;
        buffered.write_all(b"\"}\n")?;
        buffered.flush().map_err(|e| at(&temp, e))?;
        drop(buffered);
        sync(&file).map_err(|e| at(&temp, e))?;
        file.metadata()?.len()
    };
    if exists {
        let prev = prev_path(path);
        let prev_temp = with_suffix(path, ".prev.tmp");
        let _ = fs::remove_file(&prev_temp);
        fs::hard_link(path, &prev_temp).map_err(|e| at(&prev_temp, e))?;
        fs::rename(&prev_temp, &prev).map_err(|e| at(&prev, e))?;
    }
    fs::rename(&temp, path).map_err(|e| at(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        sync(&File::open(dir)?)?;
    }
    Ok(Written {
        bytes,
        took: started.elapsed(),
        syncing,
    })
}

/// What one write of the state file took.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    pub bytes: u64,
    /// All of it: encoding, writing, the `fsync`s and renames.
    pub took: Duration,
    /// The `fsync`s alone, which depend on the disk more than on the daemon.
    pub syncing: Duration,
}

/// Failed writes in a row, and when to say so again: the pure part of the writer's ERROR
/// lines, which repeat at most every [`ERROR_INTERVAL`] while writes keep failing.
#[derive(Debug, Default)]
pub struct Failures {
    /// Failures since the last success.
    in_a_row: u32,
    /// When the first of them happened.
    since: Option<Instant>,
    /// The ERROR lines about them.
    lines: Repeats,
}

impl Failures {
    /// Whether the last write failed.
    pub fn failing(&self) -> bool {
        self.in_a_row > 0
    }

    /// Records a failure; returns the failures to report in an ERROR line now, if one is due
    /// (this one and those not reported since the last line).
    pub fn failed(&mut self, now: Instant) -> Option<u64> {
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.since.get_or_insert(now);
        self.lines
            .occurred(now, ERROR_INTERVAL)
            .map(|unreported| unreported.saturating_add(1))
    }

    /// Records a success; after failures, returns how many there were and for how long.
    pub fn succeeded(&mut self, now: Instant) -> Option<(u32, Duration)> {
        let was = std::mem::take(self);
        was.since
            .map(|since| (was.in_a_row, now.saturating_duration_since(since)))
    }

    /// The wait before the next attempt after a failure.
    pub fn retry_in(&self) -> Duration {
        RETRY.delay(self.in_a_row.saturating_sub(1))
    }
}

/// Writes the state file for the daemon: at start, then whenever what it should hold changes
/// (at most every [`MIN_WRITE_INTERVAL`]), and once more at shutdown.
///
/// Deliveries wait for the write that holds their event; while writes fail they do not: each
/// change is released to the sinks at once (delivery from memory), failures are counted in
/// `errors`, and the write is retried with [`RETRY`]'s backoff until it succeeds.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    errors: prometheus::IntCounter,
    failures: Failures,
    /// The generation the file holds.
    written: u64,
}

impl Writer {
    pub fn new(path: PathBuf, errors: prometheus::IntCounter) -> Self {
        Self {
            path,
            errors,
            failures: Failures::default(),
            written: 0,
        }
    }

    /// Whether the last write failed.
    pub fn failing(&self) -> bool {
        self.failures.failing()
    }

    /// Writes what the state holds now; returns whether it was written. A failure is logged
    /// (at a bounded rate), counted, and releases what the state holds to the sinks.
    pub async fn write(&mut self, state: &Arc<State>) -> bool {
        let (generation, written) = write_now(state, &self.path).await;
        let now = Instant::now();
        match written {
            Ok(written) => {
                if let Some((failures, took)) = self.failures.succeeded(now) {
                    tracing::info!(
                        path = %self.path.display(),
                        failures,
                        failing_for = %humantime::format_duration(Duration::from_secs(took.as_secs())),
                        "state file written again"
                    );
                }
                tracing::debug!(
                    generation,
                    bytes = written.bytes,
                    took_ms = written.took.as_millis() as u64,
                    fsync_ms = written.syncing.as_millis() as u64,
                    "state file written"
                );
                self.written = generation;
                state.outbox().mark_saved(generation);
                true
            }
            Err(error) => {
                self.errors.inc();
                if let Some(failures) = self.failures.failed(now) {
                    tracing::error!(
                        path = %self.path.display(),
                        %error,
                        failures,
                        retry_in_ms = self.failures.retry_in().as_millis() as u64,
                        "cannot write the state file; alerts are delivered from memory, but a restart now would forget what was alerted since the last write"
                    );
                }
                // Delivery from memory: what could not be saved is not held back.
                state.outbox().mark_saved(generation);
                false
            }
        }
    }

    /// Writes on every change (the start's write was made by [`Writer::write`]) until
    /// `shutdown`, then once more, so that `.prev` then holds what the file holds.
    pub async fn run(mut self, state: Arc<State>, shutdown: CancellationToken) {
        let mut changes = state.outbox().watch_generation();
        loop {
            let retry = self
                .failing()
                .then(|| Instant::now() + self.failures.retry_in());
            // Wait for a change (and, while failing, for the retry, releasing every change to
            // the sinks at once).
            while !shutdown.is_cancelled() {
                let current = *changes.borrow_and_update();
                if !self.failing() && current != self.written {
                    break;
                }
                if self.failing() {
                    state.outbox().mark_saved(current);
                }
                let retry_due = async {
                    match retry {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    changed = changes.changed() => if changed.is_err() { return },
                    () = retry_due => break,
                }
            }
            let last = shutdown.is_cancelled();
            self.write(&state).await;
            if last {
                return;
            }
            if !self.failing() {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(MIN_WRITE_INTERVAL) => {}
                }
            }
        }
    }
}

/// Writes what the state holds now; returns its generation and how the write went. Collected
/// and encoded on a blocking thread: at 10,000 profiles that takes milliseconds.
async fn write_now(state: &Arc<State>, path: &Path) -> (u64, io::Result<Written>) {
    let (state, path) = (state.clone(), path.to_path_buf());
    let generation = *state.outbox().watch_generation().borrow();
    tokio::task::spawn_blocking(move || {
        let (generation, saved) = state.to_write();
        (generation, write(&path, &saved))
    })
    .await
    .unwrap_or_else(|error| (generation, Err(io::Error::other(error))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Known;
    use crate::model::{Incarnation, ResourceKey, Status, Timestamp};
    use crate::state::SavedResource;

    fn saved(sequence: u64) -> Saved {
        Saved {
            sequence,
            resources: vec![SavedResource {
                key: ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", "default"),
                labels: Default::default(),
                known: Known {
                    incarnation: Incarnation {
                        arn: "arn:aws:eks:us-east-1:111122223333:fargateprofile/prod/default/1"
                            .into(),
                        created_at: Timestamp::from_secs(1),
                    },
                    status: Status::from_wire("ACTIVE"),
                    info: Default::default(),
                    values: Default::default(),
                    episodes: Default::default(),
                },
            }],
            outbox: Vec::new(),
        }
    }

    #[test]
    fn a_written_file_loads_back_and_the_previous_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(load(&path, &Clock::wall()), Loaded::Missing);
        write(&path, &saved(1)).unwrap();
        write(&path, &saved(2)).unwrap();
        assert_eq!(load(&path, &Clock::wall()), Loaded::Found(saved(2)));
        assert_eq!(read(&prev_path(&path)).unwrap(), Some(saved(1)));
    }

    #[test]
    fn a_corrupt_file_falls_back_to_prev_or_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, &saved(1)).unwrap();
        write(&path, &saved(2)).unwrap();
        fs::write(&path, b"{\"version\": 1, \"sequ").unwrap();
        assert_eq!(load(&path, &Clock::wall()), Loaded::Found(saved(1)));

        fs::remove_file(prev_path(&path)).unwrap();
        fs::write(&path, b"not json").unwrap();
        let clock = Clock::fixed(Timestamp::from_secs(1_795_428_240));
        let Loaded::Corrupt {
            moved_to: Some(aside),
        } = load(&path, &clock)
        else {
            panic!("a corrupt file with no .prev starts fresh");
        };
        assert_eq!(aside, dir.path().join("state.json.corrupt-1795428240"));
        assert_eq!(fs::read(aside).unwrap(), b"not json");
        assert!(!path.exists());

        fs::write(
            &path,
            b"{\"version\": 99, \"sequence\": 1, \"profiles\": [], \"outbox\": []}",
        )
        .unwrap();
        assert!(matches!(
            load(&path, &Clock::wall()),
            Loaded::Corrupt { .. }
        ));
    }

    /// A saved state with open episodes and undelivered events, made by the state itself.
    fn busy() -> Saved {
        use crate::diff::Rules;
        use crate::model::{EventKind, Input, IssueCode, Observation, RawIssue};
        use crate::outbox::Subscription;
        use crate::state::Labels;
        let subscription = Subscription {
            sink: "hook".into(),
            events: EventKind::ALL.into_iter().collect(),
            statuses: [Status::from_wire("CREATE_FAILED")].into_iter().collect(),
            max_queue: 100,
        };
        let state = State::new(Rules::default(), vec![subscription]);
        for name in ["web", "jobs"] {
            let key = ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", name);
            let labels = Arc::new(Labels::from([("env".to_owned(), "prod".to_owned())]));
            state.discovered(&key, labels, Timestamp::from_secs(1));
            state.apply(&Input::Observed(Observation {
                key: key.clone(),
                incarnation: Incarnation {
                    arn: format!("arn:aws:eks:us-east-1:111122223333:fargateprofile/prod/{name}/1"),
                    created_at: Timestamp::from_secs(1),
                },
                status: Status::from_wire("ACTIVE"),
                info: Default::default(),
                values: Default::default(),
                issues: vec![RawIssue {
                    code: IssueCode::from_wire("AccessDenied"),
                    message: "denied".into(),
                    resource_ids: vec!["subnet-1".into()],
                }],
                observed_at: Timestamp::from_secs(10),
            }));
        }
        let mut saved = state.to_save().1;
        // Not in the file: what is read back holds 0.
        saved.outbox.iter_mut().for_each(|p| p.generation = 0);
        assert_eq!((saved.resources.len(), saved.outbox.len()), (2, 2));
        saved
    }

    #[test]
    fn every_single_bit_flip_of_a_state_file_is_caught_or_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let original = busy();
        write(&path, &original).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert!(bytes.ends_with(b"\"}\n"));
        assert_eq!(decode(&bytes), Ok(original.clone()));
        let (mut caught, mut same) = (0, 0);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            match decode(&damaged) {
                Err(_) => caught += 1,
                Ok(loaded) => {
                    assert_eq!(loaded, original, "bit {bit} loaded a different state");
                    same += 1;
                }
            }
        }
        // Every flip is caught (none leaves the bytes valid and equal).
        assert_eq!((caught, same), (bytes.len() * 8, 0));

        // On disk, a damaged file falls back to `.prev` and is moved aside.
        write(&path, &original).unwrap();
        let mut damaged = fs::read(&path).unwrap();
        damaged[30] ^= 0x04;
        fs::write(&path, &damaged).unwrap();
        assert_eq!(load(&path, &Clock::wall()), Loaded::Found(original));
        assert!(fs::read_dir(dir.path()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        }));
    }

    #[test]
    fn a_file_without_a_checksum_is_read_and_a_damaged_checksum_is_not() {
        let original = busy();
        let legacy = serde_json::to_vec(&FileOut {
            version: FORMAT_VERSION,
            saved: &original,
        })
        .unwrap();
        assert_eq!(decode(&legacy), Ok(original));
        // A key the format does not have, or a checksum that is not at the end, is damage.
        let mut extra = legacy.clone();
        extra.pop();
        let with_key = [extra.as_slice(), b",\"sha256\":\"00\"}"].concat();
        assert_eq!(decode(&with_key), Err(DecodeError::ChecksumDamaged));
        let with_other = [extra.as_slice(), b",\"sha257\":\"00\"}"].concat();
        assert!(matches!(decode(&with_other), Err(DecodeError::Json(_))));
        for bytes in [&b""[..], b"\"}", b",\"sha256\":\"\"}", &[0xff; 100]] {
            assert!(decode(bytes).is_err());
        }
    }

    /// Runs `load` on another thread: on a FIFO, a reader that opens it waits forever.
    fn load_within(path: &Path) -> Loaded {
        let path = path.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(load(&path, &Clock::wall())));
        rx.recv_timeout(Duration::from_secs(10))
            .expect("load returns at once")
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_path_that_is_not_a_regular_file_is_neither_read_nor_moved_nor_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(dir.path().join("fifo"))
            .status()
            .unwrap();
        assert!(fifo.success());
        std::os::unix::fs::symlink("/dev/null", dir.path().join("null")).unwrap();
        fs::create_dir(dir.path().join("directory")).unwrap();
        for (name, kind) in [
            ("directory", "a directory"),
            ("fifo", "a FIFO"),
            ("null", "a symbolic link"),
        ] {
            let target = dir.path().join(name);
            let before = names(dir.path());
            assert_eq!(load_within(&target), Loaded::Corrupt { moved_to: None });
            let error = write(&target, &saved(1)).unwrap_err().to_string();
            assert!(
                error.contains(&format!("{kind} is there, not a regular file")),
                "{error}"
            );
            assert_eq!(
                names(dir.path()),
                before,
                "nothing renamed or created for {name}"
            );
        }
        assert!(
            fs::symlink_metadata(dir.path().join("null"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn only_a_bounded_regular_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        drop(file);
        // Sparse: read up to the cap, found not to be a state file, moved aside.
        let Loaded::Corrupt {
            moved_to: Some(aside),
        } = load(&path, &Clock::wall())
        else {
            panic!("an oversized file is corrupt");
        };
        assert_eq!(fs::metadata(aside).unwrap().len(), MAX_FILE_BYTES + 1);
        assert_eq!(
            decode(&vec![b' '; MAX_FILE_BYTES as usize + 1]),
            Err(DecodeError::TooLarge)
        );
    }

    #[test]
    fn failures_are_reported_at_most_once_a_minute_with_their_count() {
        let start = Instant::now();
        let mut failures = Failures::default();
        assert!(!failures.failing());
        assert_eq!(failures.failed(start), Some(1));
        for secs in 1..60 {
            assert_eq!(failures.failed(start + Duration::from_secs(secs)), None);
        }
        assert!(failures.retry_in() <= RETRY.max);
        assert_eq!(failures.failed(start + Duration::from_secs(60)), Some(60));
        assert_eq!(failures.failed(start + Duration::from_secs(61)), None);
        let recovered = failures.succeeded(start + Duration::from_secs(90));
        assert_eq!(recovered, Some((62, Duration::from_secs(90))));
        assert!(!failures.failing());
        assert_eq!(failures.succeeded(start + Duration::from_secs(91)), None);
        // After a success the next failure is reported at once.
        assert_eq!(failures.failed(start + Duration::from_secs(92)), Some(1));
    }

    #[tokio::test]
    async fn a_failing_write_is_counted_releases_deliveries_and_is_retried_until_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let obstacle = dir.path().join("state.json.tmp");
        fs::create_dir(&obstacle).unwrap();
        let errors = prometheus::IntCounter::new("errors", "errors").unwrap();
        let state = Arc::new(State::new(crate::diff::Rules::default(), Vec::new()));
        let mut writer = Writer::new(path.clone(), errors.clone());
        assert!(!writer.write(&state).await);
        assert!(writer.failing());
        assert_eq!(errors.get(), 1);
        // What could not be written is released to the sinks.
        assert_eq!(
            *state.outbox().watch_saved().borrow(),
            *state.outbox().watch_generation().borrow()
        );

        let shutdown = CancellationToken::new();
        let running = tokio::spawn(writer.run(state.clone(), shutdown.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(errors.get() >= 2, "retried");
        fs::remove_dir(&obstacle).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "written again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shutdown.cancel();
        running.await.unwrap();
        assert!(matches!(load(&path, &Clock::wall()), Loaded::Found(_)));
    }

    proptest::proptest! {
        /// The fuzzing entry point: arbitrary bytes, or arbitrary bytes under a valid
        /// checksum, never panic and never decode to a state unless they are one.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(&bytes);
            let hex = hex_of(&Sha256::digest(&bytes));
            let checked = [&bytes[..], CHECKSUM_KEY, hex.as_bytes(), b"\"}"].concat();
            proptest::prop_assert!(decode(&checked).is_err());
        }
    }
}

//! The state file (`[state] path`): what the alert promises need across restarts and crashes
//! (per profile the incarnation, status and open episodes; the sequence counter; the outbox),
//! never what changes on every poll.
//!
//! It is written only when that changes, atomically: a temporary file beside it, fsynced, the
//! current file hard-linked to `<path>.prev`, then renamed over, and the directory fsynced. A
//! SIGKILL at any moment leaves the last complete file in place. On start a missing file is a
//! first start; a file that cannot be read or parsed is replaced by `.prev` when that one is
//! good, else moved aside with a WARN: the daemon starts fresh and never crashes on it.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::state::{Saved, State};

/// The version of the file's format; a file of another version is not read.
pub const FORMAT_VERSION: u32 = 1;

/// The least time between two writes: changes in a burst (10,000 first observations at
/// start) are coalesced into a few writes instead of one per change. Deliveries wait for the
/// write that holds their event, so this is also the most it delays an alert.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Serialize)]
struct FileOut<'a, T> {
    version: u32,
    #[serde(flatten)]
    saved: &'a T,
}

#[derive(Deserialize)]
struct FileIn {
    version: u32,
    #[serde(flatten)]
    saved: Saved,
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
    /// Neither the file nor `.prev` could be read; the bad file was moved to the path given.
    Corrupt {
        moved_to: Option<PathBuf>,
    },
}

/// Reads the state file, falling back to `.prev`, as the module doc says.
pub fn load(path: &Path) -> Loaded {
    let prev = prev_path(path);
    match read(path) {
        Ok(Some(saved)) => Loaded::Found(saved),
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
            tracing::warn!(path = %path.display(), %error, "cannot read the state file");
            let moved_to = move_aside(path);
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

/// `Ok(None)` when the file does not exist.
fn read(path: &Path) -> Result<Option<Saved>, String> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let file: FileIn = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    if file.version != FORMAT_VERSION {
        return Err(format!(
            "format version {} (this build reads {FORMAT_VERSION})",
            file.version
        ));
    }
    Ok(Some(file.saved))
}

/// Renames a bad file to `<path>.corrupt-<unix seconds>` so it can be looked at.
fn move_aside(path: &Path) -> Option<PathBuf> {
    let secs = std::time::SystemTime::now()
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

/// Writes `saved` to `path` atomically and keeps the previous file as `.prev`. Returns how
/// long it took and the file's size. The JSON is encoded straight into the file through a
/// small buffer: at 10,000 profiles it is megabytes, not worth holding twice.
pub fn write(path: &Path, saved: &impl Serialize) -> io::Result<Written> {
    let started = Instant::now();
    let mut syncing = Duration::ZERO;
    let mut sync = |file: &File| {
        let started = Instant::now();
        let synced = file.sync_all();
        syncing += started.elapsed();
        synced
    };
    let temp = with_suffix(path, ".tmp");
    let bytes = {
        let file = File::create(&temp)?;
        let mut buffered = io::BufWriter::with_capacity(64 * 1024, &file);
        let document = FileOut {
            version: FORMAT_VERSION,
            saved,
        };
        serde_json::to_writer(&mut buffered, &document).map_err(io::Error::other)?;
        buffered.flush()?;
        drop(buffered);
        sync(&file)?;
        file.metadata()?.len()
    };
    if path.exists() {
        let prev = prev_path(path);
        let prev_temp = with_suffix(path, ".prev.tmp");
        let _ = fs::remove_file(&prev_temp);
        fs::hard_link(path, &prev_temp)?;
        fs::rename(&prev_temp, &prev)?;
    }
    fs::rename(&temp, path)?;
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

/// Writes the state file whenever what it should hold changes (at most every
/// [`MIN_WRITE_INTERVAL`]; a failed write is retried every second) until `shutdown`, then once
/// more, so that `.prev` then holds what the file holds. The daemon wrote it at start, so the
/// first write waits for a change. Deliveries wait for the generation that holds their event.
pub async fn persist(state: Arc<State>, path: PathBuf, shutdown: CancellationToken) {
    let mut changes = state.watch_generation();
    let mut saved = *state.watch_saved().borrow();
    let mut failing = false;
    loop {
        if *changes.borrow_and_update() == saved {
            tokio::select! {
                () = shutdown.cancelled() => {}
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
        let last = shutdown.is_cancelled();
        match write_now(&state, &path).await {
            Ok((generation, written)) => {
                if failing {
                    tracing::info!(path = %path.display(), "state file written again");
                    failing = false;
                }
                tracing::debug!(
                    generation,
                    bytes = written.bytes,
                    took_ms = written.took.as_millis() as u64,
                    fsync_ms = written.syncing.as_millis() as u64,
                    "state file written"
                );
                state.mark_saved(generation);
                saved = generation;
            }
            Err(error) => {
                if !failing {
                    tracing::error!(path = %path.display(), %error, "cannot write the state file; deliveries wait for it");
                    failing = true;
                }
            }
        }
        if last {
            return;
        }
        let pause = if failing {
            Duration::from_secs(1)
        } else {
            MIN_WRITE_INTERVAL
        };
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Writes what the state holds now and returns its generation. Collected and encoded on a
/// blocking thread: at 10,000 profiles that takes milliseconds.
async fn write_now(state: &Arc<State>, path: &Path) -> io::Result<(u64, Written)> {
    let (state, path) = (state.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let (generation, saved) = state.to_write();
        write(&path, &saved).map(|written| (generation, written))
    })
    .await
    .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Known;
    use crate::model::{Incarnation, ProfileKey, Status, Timestamp};
    use crate::state::SavedProfile;

    fn saved(sequence: u64) -> Saved {
        Saved {
            sequence,
            profiles: vec![SavedProfile {
                key: ProfileKey::new("111122223333", "us-east-1", "prod", "default"),
                labels: Default::default(),
                known: Known {
                    incarnation: Incarnation {
                        arn: "arn:aws:eks:us-east-1:111122223333:fargateprofile/prod/default/1"
                            .into(),
                        created_at: Timestamp::from_secs(1),
                    },
                    status: Status::from_wire("ACTIVE"),
                    info: Default::default(),
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
        assert_eq!(load(&path), Loaded::Missing);
        write(&path, &saved(1)).unwrap();
        write(&path, &saved(2)).unwrap();
        assert_eq!(load(&path), Loaded::Found(saved(2)));
        assert_eq!(read(&prev_path(&path)).unwrap(), Some(saved(1)));
    }

    #[test]
    fn a_corrupt_file_falls_back_to_prev_or_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, &saved(1)).unwrap();
        write(&path, &saved(2)).unwrap();
        fs::write(&path, b"{\"version\": 1, \"sequ").unwrap();
        assert_eq!(load(&path), Loaded::Found(saved(1)));

        fs::remove_file(prev_path(&path)).unwrap();
        fs::write(&path, b"not json").unwrap();
        let Loaded::Corrupt {
            moved_to: Some(aside),
        } = load(&path)
        else {
            panic!("a corrupt file with no .prev starts fresh");
        };
        assert_eq!(fs::read(aside).unwrap(), b"not json");
        assert!(!path.exists());

        fs::write(
            &path,
            b"{\"version\": 99, \"sequence\": 1, \"profiles\": [], \"outbox\": []}",
        )
        .unwrap();
        assert!(matches!(load(&path), Loaded::Corrupt { .. }));
    }
}

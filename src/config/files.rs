//! The files a config names (`_file` secrets, TLS certificates and keys, the config file
//! itself): read only when they are regular files, and only up to a size cap per kind. A FIFO,
//! a device or a directory is refused from its metadata before it is opened, so a read never
//! blocks and never fills memory; a file larger than its cap (a sparse one too) is refused from
//! its length before a byte is read.

use std::fs::{self, File, FileType, Metadata};
use std::io::{self, Read};
use std::path::Path;

/// The config file itself.
pub const CONFIG_MAX_BYTES: u64 = 4 << 20;
/// A `_file` secret: a token, a signing key, a URL, a header value.
pub const SECRET_MAX_BYTES: u64 = 64 << 10;
/// A TLS certificate chain or private key (PEM).
pub const PEM_MAX_BYTES: u64 = 1 << 20;

/// Reads a regular file of at most `limit` bytes as UTF-8 text. The errors say what is wrong
/// with the file (its kind, its size), never its content.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<String> {
    check(&fs::metadata(path)?, limit)?;
    let file = File::open(path)?;
    // The file opened may not be the one looked at (a rename in between): look again.
    let metadata = file.metadata()?;
    check(&metadata, limit)?;
    let capacity = usize::try_from(metadata.len().min(limit)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Err(too_large(limit));
    }
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// What is at `path` when it is something other than a regular file (following symbolic
/// links): `Some("a directory")`, `Some("a FIFO")`, …; `None` for a regular file or nothing.
pub fn non_regular(path: &Path) -> Option<&'static str> {
    let metadata = fs::metadata(path).ok()?;
    (!metadata.is_file()).then(|| kind(&metadata.file_type()))
}

/// What is at `path` when it is something other than a regular file, *not* following a
/// symbolic link (`Some("a symbolic link")`), as the state store sees it; `None` for a
/// regular file or nothing.
pub fn non_regular_no_follow(path: &Path) -> Option<&'static str> {
    let metadata = fs::symlink_metadata(path).ok()?;
    if metadata.file_type().is_symlink() {
        return Some("a symbolic link");
    }
    (!metadata.is_file()).then(|| kind(&metadata.file_type()))
}

/// The error for a file over its cap.
pub fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("it is larger than {}", size(limit)),
    )
}

fn check(metadata: &Metadata, limit: u64) -> io::Result<()> {
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {}, not a regular file", kind(&metadata.file_type())),
        ));
    }
    if metadata.len() > limit {
        return Err(too_large(limit));
    }
    Ok(())
}

/// A file type in words.
fn kind(file_type: &FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// `64 KiB`, `1 MiB`.
fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        fs::write(&small, "token\n").unwrap();
        assert_eq!(read_regular(&small, 6).unwrap(), "token\n");
        let err = read_regular(&small, 5).unwrap_err().to_string();
        assert_eq!(err, "it is larger than 5 bytes");

        let sparse = dir.path().join("sparse");
        File::create(&sparse).unwrap().set_len(1 << 30).unwrap();
        let err = read_regular(&sparse, SECRET_MAX_BYTES).unwrap_err();
        assert_eq!(err.to_string(), "it is larger than 64 KiB");

        let err = read_regular(dir.path(), SECRET_MAX_BYTES).unwrap_err();
        assert_eq!(err.to_string(), "it is a directory, not a regular file");
        assert_eq!(non_regular(dir.path()), Some("a directory"));
        assert_eq!(non_regular(&small), None);
        assert_eq!(non_regular(&dir.path().join("missing")), None);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&small, &link).unwrap();
        assert_eq!(non_regular(&link), None, "secrets follow links");
        assert_eq!(non_regular_no_follow(&link), Some("a symbolic link"));
        assert_eq!(non_regular_no_follow(&small), None);
        assert_eq!(non_regular_no_follow(dir.path()), Some("a directory"));

        let err = read_regular(Path::new("/dev/zero"), SECRET_MAX_BYTES).unwrap_err();
        assert_eq!(
            err.to_string(),
            "it is a character device, not a regular file"
        );

        fs::write(&small, [0xff, 0xfe]).unwrap();
        assert_eq!(
            read_regular(&small, 6).unwrap_err().to_string(),
            "it is not UTF-8 text"
        );
    }
}

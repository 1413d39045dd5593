//! Reading and writing cgroup control files, with errors that name the cgroup and the file.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Reads a control file whole.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String> {
    read_opt(dir, file)?.ok_or_else(|| {
        Error::io(
            dir,
            file,
            io::Error::new(io::ErrorKind::NotFound, "no such file"),
        )
    })
}

/// Reads a control file, `None` if the kernel does not provide it.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    let mut s = String::new();
    match std::fs::File::open(dir.join(file)).and_then(|mut f| f.read_to_string(&mut s)) {
        Ok(_) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(dir, file, e)),
    }
}

/// Writes `value` to a control file in one `write(2)`, without creating it. The raw
/// `io::Error` is returned so the caller can tell a missing file (`NotFound`) from a refusal.
pub(crate) fn write_raw(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(dir.join(file))?;
    f.write_all(value.as_bytes())
}

/// Writes `value` to a control file.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    write_raw(dir, file, value).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        file: file.to_string(),
        value: value.to_string(),
        source,
    })
}

/// Parses a single number (the whole file, trimmed); `max` (v2) reads as `u64::MAX`.
pub(crate) fn parse_u64(dir: &Path, file: &str, text: &str) -> Result<u64> {
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse::<u64>().map_err(|_| Error::Parse {
        path: dir.to_path_buf(),
        file: file.to_string(),
        content: text.to_string(),
    })
}

/// Reads a single-number file, `None` if absent.
pub(crate) fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>> {
    match read_opt(dir, file)? {
        Some(t) => parse_u64(dir, file, &t).map(Some),
        None => Ok(None),
    }
}

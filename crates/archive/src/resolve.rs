//! Path cleaning and root-confined lookups relative to the destination directory fd.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Cleans a tar entry name lexically into a relative path with no empty, `.` or `..`
/// components: leading `/` are dropped and `..` removes the previous component (never going
/// above the root: `../../x` → `x`). The empty result names the root itself.
pub(crate) fn clean(name: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(name.len());
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(comp);
            }
        }
    }
    out
}

/// Splits a cleaned path into parent and last component (`"a/b/c"` → `("a/b", "c")`).
pub(crate) fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// `parent/name`, or `name` when the parent is the root.
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        v.extend_from_slice(parent);
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

/// Opens `path` (cleaned, relative) below `root` with every component — symbolic links
/// included — resolved as if `root` were `/`.
pub(crate) fn open_in_root(
    root: BorrowedFd<'_>,
    path: &[u8],
    flags: OFlags,
) -> io::Result<OwnedFd> {
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let mut tries = 0;
    loop {
        match rfs::openat2(root, path, flags | OFlags::CLOEXEC, Mode::empty(), how) {
            // The kernel asks for a retry when a rename raced with a `..` lookup.
            Err(Errno::AGAIN) if tries < 64 => tries += 1,
            Err(Errno::NOSYS) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "openat2 is not available (Linux 5.6 or later is needed)",
                ))
            }
            r => return r.map_err(io::Error::from),
        }
    }
}

/// The names in a directory, `.` and `..` left out.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, FileType)>> {
    let fd = rfs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = rfs::Dir::new(fd)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((name.to_vec(), e.file_type()));
    }
    Ok(out)
}

/// Opens the directory `name` in `dir` for reading, without following a symbolic link.
pub(crate) fn open_subdir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Removes `name` in `dir` whatever it is, recursively for a directory. Missing is fine.
/// Returns whether something was removed.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e @ (Errno::ISDIR | Errno::PERM)) => {
            let sub = match open_subdir(dir, name) {
                Ok(fd) => fd,
                // Not a directory after all: report the original refusal.
                Err(_) => return Err(e.into()),
            };
            empty_dir(sub.as_fd())?;
            match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => Ok(true),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes everything inside a directory.
pub(crate) fn empty_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    for (name, ft) in list_dir(dir)? {
        if ft == FileType::Directory {
            let sub = open_subdir(dir, &name)?;
            empty_dir(sub.as_fd())?;
            match rfs::unlinkat(dir, name.as_slice(), AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            remove_all(dir, &name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_names() {
        let c = |s: &str| String::from_utf8(clean(s.as_bytes())).unwrap();
        assert_eq!(c("a/b/c"), "a/b/c");
        assert_eq!(c("./a//b/./c/"), "a/b/c");
        assert_eq!(c("/etc/passwd"), "etc/passwd");
        assert_eq!(c("../../x"), "x");
        assert_eq!(c("a/../../x"), "x");
        assert_eq!(c("a/b/../c"), "a/c");
        assert_eq!(c("a/.."), "");
        assert_eq!(c("./"), "");
        assert_eq!(c(".."), "");
        assert_eq!(c("a/..b"), "a/..b");
    }

    #[test]
    fn splits() {
        assert_eq!(split_last(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_last(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(join(b"", b"x"), b"x");
        assert_eq!(join(b"a", b"x"), b"a/x");
    }
}

//! Applying layers to a directory: entry creation, metadata, whiteouts.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;

use rustix::fs::Timespec;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timestamps, XattrFlags};
use rustix::fs::{Gid, Uid};
use rustix::io::Errno;

use crate::compression::decompress_buffered;
use crate::pipeline::{produce, ChunkReader, IN_FLIGHT};
use crate::reader::{Entry, Kind, TarReader, Xattrs};
use crate::resolve::{clean, join, list_dir, open_in_root, open_subdir, remove_all, split_last};
use crate::ArchiveError;

const OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Parent directory fds kept open between entries.
const DIR_CACHE_MAX: usize = 256;
/// Dangling symbolic links followed when creating missing parents.
const MAX_LINK_DEPTH: u32 = 40;

/// How to unpack.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Give entries the owner and group the tar names (numeric ids). Default: true when
    /// running as root. Setuid/setgid bits are only kept when this is set.
    pub same_owner: bool,
    /// Names the layer in errors, e.g. `layer 3 (sha256:abcd…)` ([`unpack_layer`] only;
    /// [`unpack_layers`] takes a label per layer).
    pub label: String,
    /// Apply extended attributes (PAX `SCHILY.xattr.*`). Default: true.
    pub xattrs: bool,
    /// Fail when the filesystem refuses an extended attribute (default: count it in
    /// [`UnpackStats::xattrs_skipped`] and go on; `security.capability` always fails).
    pub strict_xattrs: bool,
}

impl Default for UnpackOptions {
    fn default() -> UnpackOptions {
        UnpackOptions {
            same_owner: rustix::process::geteuid().is_root(),
            label: "layer".to_string(),
            xattrs: true,
            strict_xattrs: false,
        }
    }
}

/// What unpacking did (summed over layers).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries read (whiteouts and skipped entries included).
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Character and block devices and fifos.
    pub devices: u64,
    /// Whiteout and opaque markers applied.
    pub whiteouts: u64,
    /// File content bytes written.
    pub bytes: u64,
    /// Entries not applied: device nodes the kernel refused, aufs metadata (`.wh..wh.*`).
    pub skipped: u64,
    /// Extended attributes not applied (namespace needing root, or refused by the
    /// filesystem).
    pub xattrs_skipped: u64,
}

/// Applies one layer (any compression, auto-detected) on top of `dest` (which exists).
///
/// Decompression runs on the calling thread; [`unpack_layers`] overlaps it with writing.
pub fn unpack_layer(
    reader: impl Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, ArchiveError> {
    let mut u = Unpacker::new(dest, opts)?;
    let (_, input) = decompress_buffered(reader).map_err(|source| ArchiveError::Read {
        layer: opts.label.clone(),
        at: "at its start".to_string(),
        source,
    })?;
    u.apply_layer(input, &opts.label)?;
    Ok(u.stats)
}

/// Applies several layers in order (each with its label for errors). Decompression runs on
/// another thread than the file writes, pipelined through a bounded channel of large
/// buffers, so that inflating and file creation overlap.
pub fn unpack_layers<R: Read + Send + 'static>(
    layers: Vec<(String, R)>,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, ArchiveError> {
    let mut u = Unpacker::new(dest, opts)?;
    let (labels, readers): (Vec<String>, Vec<R>) = layers.into_iter().unzip();
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel(IN_FLIGHT);
        let (recycle_tx, recycle_rx) = mpsc::channel();
        let producer = std::thread::Builder::new()
            .name("layer-inflate".to_string())
            .spawn_scoped(s, move || produce(readers, tx, recycle_rx))
            .map_err(|source| ArchiveError::Read {
                layer: labels.first().cloned().unwrap_or_default(),
                at: "at its start (starting the decompression thread)".to_string(),
                source,
            })?;
        let mut result = Ok(());
        for label in &labels {
            if let Err(e) = u.apply_layer(ChunkReader::new(&rx, &recycle_tx), label) {
                result = Err(e);
                break;
            }
        }
        // Unblocks the producer if it is waiting to hand over more.
        drop(rx);
        if let Err(panic) = producer.join() {
            std::panic::resume_unwind(panic);
        }
        result
    })?;
    Ok(u.stats)
}

/// Deferred directory metadata (set once the layer's children are in place).
struct DirFix {
    path: Vec<u8>,
    /// The tar entry name, for errors.
    name: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
    times: Timestamps,
    xattrs: Xattrs,
}

/// Where extended attributes go.
enum XattrTarget<'a> {
    Fd(BorrowedFd<'a>),
    /// Not followed if a symbolic link; reached through `/proc/self/fd/<dir>/<name>`.
    At(BorrowedFd<'a>, &'a [u8]),
}

struct Unpacker<'o> {
    opts: &'o UnpackOptions,
    root: OwnedFd,
    is_root: bool,
    umask: Option<u32>,
    /// Open parent directories by cleaned path. Emptied whenever a directory or symbolic link
    /// is removed (which may change what a path resolves to).
    cache: HashMap<Vec<u8>, Rc<OwnedFd>>,
    /// Paths (cleaned) that the current layer created: whiteouts spare them.
    created: BTreeSet<Vec<u8>>,
    dirs: Vec<DirFix>,
    stats: UnpackStats,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Builds the error of a failed operation on the entry `path` of layer `label`.
fn entry_failure<'a>(
    label: &'a str,
    path: &'a [u8],
) -> impl Fn(&str, io::Error) -> ArchiveError + 'a {
    move |op, source| ArchiveError::Entry {
        layer: label.to_string(),
        path: lossy(path),
        op: op.to_string(),
        source,
    }
}

/// Builds the error of an entry `path` of layer `label` that is refused.
fn entry_invalid<'a>(label: &'a str, path: &'a [u8]) -> impl Fn(String) -> ArchiveError + 'a {
    move |reason| ArchiveError::Invalid {
        layer: label.to_string(),
        path: lossy(path),
        reason,
    }
}

fn timespec((sec, nsec): (i64, u32)) -> Timespec {
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec.into(),
    }
}

fn times(e: &Entry) -> Timestamps {
    Timestamps {
        last_access: timespec(e.atime.unwrap_or(e.mtime)),
        last_modification: timespec(e.mtime),
    }
}

/// The process umask, from `/proc/self/status` (reading it with umask(2) would change it
/// for every thread for a moment).
fn current_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(c) if c == Errno::NOENT.raw_os_error() || c == Errno::NOTDIR.raw_os_error()
    )
}

impl<'o> Unpacker<'o> {
    fn new(dest: &Path, opts: &'o UnpackOptions) -> Result<Unpacker<'o>, ArchiveError> {
        let root = rfs::open(
            dest,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ArchiveError::Destination {
            path: PathBuf::from(dest),
            source: e.into(),
        })?;
        Ok(Unpacker {
            opts,
            root,
            is_root: rustix::process::geteuid().is_root(),
            umask: current_umask(),
            cache: HashMap::new(),
            created: BTreeSet::new(),
            dirs: Vec::new(),
            stats: UnpackStats::default(),
        })
    }

    fn apply_layer<B: BufRead>(&mut self, input: B, label: &str) -> Result<(), ArchiveError> {
        self.created.clear();
        self.dirs.clear();
        let mut tr = TarReader::new(input);
        let mut last: Option<Vec<u8>> = None;
        let read_err = |last: &Option<Vec<u8>>, source| ArchiveError::Read {
            layer: label.to_string(),
            at: match last {
                Some(p) => format!("after entry {:?}", lossy(p)),
                None => "at its start".to_string(),
            },
            source,
        };
        loop {
            let e = match tr.next_entry() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(source) => return Err(read_err(&last, source)),
            };
            self.stats.entries += 1;
            self.apply_entry(&mut tr, &e, label)?;
            last = Some(e.path);
        }
        tr.drain().map_err(|source| ArchiveError::Read {
            layer: label.to_string(),
            at: "after the end of the archive".to_string(),
            source,
        })?;
        self.finish_dirs(label)
    }

    fn apply_entry<B: BufRead>(
        &mut self,
        tr: &mut TarReader<B>,
        e: &Entry,
        label: &str,
    ) -> Result<(), ArchiveError> {
        let fail = entry_failure(label, &e.path);
        let invalid = entry_invalid(label, &e.path);
        let path = clean(&e.path);
        let (parent, name) = split_last(&path);

        // Whiteouts and aufs metadata.
        if parent
            .split(|&b| b == b'/')
            .any(|c| c.starts_with(WHITEOUT_PREFIX))
            || (name.starts_with(b".wh..wh.") && name != OPAQUE)
        {
            self.stats.skipped += 1;
            return Ok(());
        }
        if name == OPAQUE {
            self.stats.whiteouts += 1;
            return self
                .opaque(parent)
                .map_err(|s| fail("making the directory opaque", s));
        }
        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
            if target.is_empty() || target == b"." || target == b".." {
                return Err(invalid("whiteout names nothing".to_string()));
            }
            self.stats.whiteouts += 1;
            return self
                .whiteout(parent, target)
                .map_err(|s| fail("applying the whiteout", s));
        }

        if path.is_empty() {
            if e.kind != Kind::Dir {
                return Err(invalid(
                    "entry would replace the destination directory itself".to_string(),
                ));
            }
            self.stats.dirs += 1;
            self.push_dir_fix(path, e);
            return Ok(());
        }

        let pfd = self
            .parent_dir(parent)
            .map_err(|s| fail("resolving the parent directory", s))?;
        let pfd = pfd.as_fd();
        let uid = u32::try_from(e.uid).map_err(|_| invalid(format!("uid {} too large", e.uid)))?;
        let gid = u32::try_from(e.gid).map_err(|_| invalid(format!("gid {} too large", e.gid)))?;
        let mode = self.final_mode(e.mode);

        match e.kind {
            Kind::File => {
                let fd = self
                    .create_replacing(pfd, name, || {
                        rfs::openat(
                            pfd,
                            name,
                            OFlags::WRONLY
                                | OFlags::CREATE
                                | OFlags::EXCL
                                | OFlags::NOFOLLOW
                                | OFlags::CLOEXEC,
                            Mode::from_bits_truncate(e.mode & 0o777),
                        )
                    })
                    .map_err(|s| fail("creating the file", s))?;
                let file = File::from(fd);
                self.write_content(tr, &file, e, label)?;
                if self.opts.same_owner {
                    rfs::fchown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                        .map_err(|s| fail("changing the owner", s.into()))?;
                }
                if self.needs_chmod(mode) {
                    rfs::fchmod(&file, Mode::from_bits_truncate(mode))
                        .map_err(|s| fail("changing the mode", s.into()))?;
                }
                self.apply_xattrs(XattrTarget::Fd(file.as_fd()), &e.xattrs, &fail)?;
                rfs::futimens(&file, &times(e))
                    .map_err(|s| fail("setting the modification time", s.into()))?;
                self.stats.files += 1;
            }
            Kind::Dir => {
                let create_mode = if self.is_root {
                    e.mode & 0o777
                } else {
                    (e.mode & 0o777) | 0o700
                };
                let mk = || rfs::mkdirat(pfd, name, Mode::from_bits_truncate(create_mode));
                match mk() {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st = rfs::statat(pfd, name, AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(|s| fail("inspecting the existing entry", s.into()))?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            self.remove_existing(pfd, name)
                                .map_err(|s| fail("removing the existing entry", s))?;
                            mk().map_err(|s| fail("creating the directory", s.into()))?;
                        }
                    }
                    Err(s) => return Err(fail("creating the directory", s.into())),
                }
                self.stats.dirs += 1;
                self.push_dir_fix(path.clone(), e);
            }
            Kind::Symlink => {
                self.create_replacing(pfd, name, || rfs::symlinkat(e.link.as_slice(), pfd, name))
                    .map_err(|s| fail("creating the symbolic link", s))?;
                if self.opts.same_owner {
                    rfs::chownat(
                        pfd,
                        name,
                        Some(Uid::from_raw(uid)),
                        Some(Gid::from_raw(gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|s| fail("changing the owner", s.into()))?;
                }
                self.apply_xattrs(XattrTarget::At(pfd, name), &e.xattrs, &fail)?;
                rfs::utimensat(pfd, name, &times(e), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|s| fail("setting the modification time", s.into()))?;
                self.stats.symlinks += 1;
            }
            Kind::Hardlink => {
                self.hard_link(pfd, name, &path, e, label)?;
                self.stats.hardlinks += 1;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let (ft, dev) = match e.kind {
                    Kind::Char => (
                        FileType::CharacterDevice,
                        rfs::makedev(e.dev_major, e.dev_minor),
                    ),
                    Kind::Block => (
                        FileType::BlockDevice,
                        rfs::makedev(e.dev_major, e.dev_minor),
                    ),
                    _ => (FileType::Fifo, 0),
                };
                let made = self.create_replacing(pfd, name, || {
                    rfs::mknodat(pfd, name, ft, Mode::from_bits_truncate(e.mode & 0o777), dev)
                });
                match made {
                    Ok(()) => {}
                    Err(s)
                        if e.kind != Kind::Fifo
                            && s.raw_os_error() == Some(Errno::PERM.raw_os_error()) =>
                    {
                        // Not permitted here (not root, or a user namespace): leave it out.
                        self.stats.skipped += 1;
                        return Ok(());
                    }
                    Err(s) => return Err(fail("creating the device node", s)),
                }
                if self.opts.same_owner {
                    rfs::chownat(
                        pfd,
                        name,
                        Some(Uid::from_raw(uid)),
                        Some(Gid::from_raw(gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|s| fail("changing the owner", s.into()))?;
                }
                if self.needs_chmod(mode) {
                    // Just created by us (mknod never yields a symbolic link).
                    rfs::chmodat(pfd, name, Mode::from_bits_truncate(mode), AtFlags::empty())
                        .map_err(|s| fail("changing the mode", s.into()))?;
                }
                self.apply_xattrs(XattrTarget::At(pfd, name), &e.xattrs, &fail)?;
                rfs::utimensat(pfd, name, &times(e), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|s| fail("setting the modification time", s.into()))?;
                self.stats.devices += 1;
            }
        }
        self.created.insert(path);
        Ok(())
    }

    fn write_content<B: BufRead>(
        &mut self,
        tr: &mut TarReader<B>,
        file: &File,
        e: &Entry,
        label: &str,
    ) -> Result<(), ArchiveError> {
        let read_err = |source| ArchiveError::Read {
            layer: label.to_string(),
            at: format!("inside entry {:?}", lossy(&e.path)),
            source,
        };
        let write_err = |source| ArchiveError::Entry {
            layer: label.to_string(),
            path: lossy(&e.path),
            op: "writing the file".to_string(),
            source,
        };
        let mut out = file;
        match &e.sparse {
            None => loop {
                let buf = tr.data().map_err(read_err)?;
                if buf.is_empty() {
                    break;
                }
                let n = buf.len();
                out.write_all(buf).map_err(write_err)?;
                tr.consume(n);
                self.stats.bytes += n as u64;
            },
            Some(map) => {
                for &(off, len) in &map.regions {
                    let mut pos = off;
                    let end = off + len;
                    while pos < end {
                        let buf = tr.data().map_err(read_err)?;
                        let n = buf.len().min((end - pos) as usize);
                        if n == 0 {
                            return Err(read_err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "sparse data shorter than its map",
                            )));
                        }
                        file.write_all_at(&buf[..n], pos).map_err(write_err)?;
                        tr.consume(n);
                        pos += n as u64;
                        self.stats.bytes += n as u64;
                    }
                }
                file.set_len(map.real_size).map_err(write_err)?;
            }
        }
        Ok(())
    }

    fn hard_link(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
        e: &Entry,
        label: &str,
    ) -> Result<(), ArchiveError> {
        let fail = entry_failure(label, &e.path);
        let invalid = entry_invalid(label, &e.path);
        let target = clean(&e.link);
        if target.is_empty() {
            return Err(invalid(
                "hard link to the destination directory itself".to_string(),
            ));
        }
        if target == path {
            // A link to itself: whatever is there already is the answer.
            return Ok(());
        }
        let missing = || {
            invalid(format!(
                "hard link target {:?} does not exist inside the destination",
                lossy(&target)
            ))
        };
        let (tparent, tname) = split_last(&target);
        let tfd = match self.lookup_dir(tparent) {
            Ok(fd) => fd,
            Err(s) if is_missing(&s) => return Err(missing()),
            Err(s) => return Err(fail("resolving the link target's directory", s)),
        };
        // Without AT_SYMLINK_FOLLOW: a symbolic link target is linked itself, never followed.
        let link = || rfs::linkat(tfd.as_fd(), tname, pfd, name, AtFlags::empty());
        let first = link();
        let result = match first {
            Err(Errno::EXIST) => {
                let a = rfs::statat(tfd.as_fd(), tname, AtFlags::SYMLINK_NOFOLLOW);
                let b = rfs::statat(pfd, name, AtFlags::SYMLINK_NOFOLLOW);
                if let (Ok(a), Ok(b)) = (&a, &b) {
                    if a.st_dev == b.st_dev && a.st_ino == b.st_ino {
                        return Ok(());
                    }
                }
                self.remove_existing(pfd, name)
                    .map_err(|s| fail("removing the existing entry", s))?;
                link()
            }
            r => r,
        };
        match result {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) => Err(missing()),
            Err(Errno::PERM) => {
                let is_dir = rfs::statat(tfd.as_fd(), tname, AtFlags::SYMLINK_NOFOLLOW)
                    .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                    .unwrap_or(false);
                if is_dir {
                    Err(invalid(format!(
                        "hard link target {:?} is a directory",
                        lossy(&target)
                    )))
                } else {
                    Err(fail("creating the hard link", Errno::PERM.into()))
                }
            }
            Err(s) => Err(fail("creating the hard link", s.into())),
        }
    }

    fn push_dir_fix(&mut self, path: Vec<u8>, e: &Entry) {
        self.dirs.push(DirFix {
            path,
            name: e.path.clone(),
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            times: times(e),
            xattrs: e.xattrs.clone(),
        });
    }

    /// Directory metadata, once the layer's children are in place (creating them changed the
    /// directories' times). A directory replaced later in the layer is left alone.
    fn finish_dirs(&mut self, label: &str) -> Result<(), ArchiveError> {
        let dirs = std::mem::take(&mut self.dirs);
        for d in &dirs {
            let fail = entry_failure(label, &d.name);
            let fd = match open_in_root(
                self.root.as_fd(),
                &d.path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            ) {
                Ok(fd) => fd,
                Err(s)
                    if is_missing(&s) || s.raw_os_error() == Some(Errno::LOOP.raw_os_error()) =>
                {
                    continue
                }
                Err(s) => return Err(fail("opening the directory", s)),
            };
            if self.opts.same_owner {
                let uid = u32::try_from(d.uid).unwrap_or(u32::MAX);
                let gid = u32::try_from(d.gid).unwrap_or(u32::MAX);
                rfs::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                    .map_err(|s| fail("changing the owner", s.into()))?;
            }
            rfs::fchmod(&fd, Mode::from_bits_truncate(self.final_mode(d.mode)))
                .map_err(|s| fail("changing the mode", s.into()))?;
            self.apply_xattrs(XattrTarget::Fd(fd.as_fd()), &d.xattrs, &fail)?;
            rfs::futimens(&fd, &d.times)
                .map_err(|s| fail("setting the modification time", s.into()))?;
        }
        Ok(())
    }

    fn final_mode(&self, mode: u32) -> u32 {
        if self.opts.same_owner {
            mode & 0o7777
        } else {
            mode & 0o1777
        }
    }

    /// Whether creation (mode minus umask) left the mode short of `mode`.
    fn needs_chmod(&self, mode: u32) -> bool {
        mode & 0o7000 != 0 || self.umask.is_none_or(|u| mode & u != 0)
    }

    fn apply_xattrs(
        &mut self,
        target: XattrTarget<'_>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        fail: &dyn Fn(&str, io::Error) -> ArchiveError,
    ) -> Result<(), ArchiveError> {
        if xattrs.is_empty() {
            return Ok(());
        }
        if !self.opts.xattrs {
            self.stats.xattrs_skipped += xattrs.len() as u64;
            return Ok(());
        }
        for (key, value) in xattrs {
            if !key.starts_with(b"user.") && !self.is_root {
                self.stats.xattrs_skipped += 1;
                continue;
            }
            let r = match target {
                XattrTarget::Fd(fd) => {
                    rfs::fsetxattr(fd, key.as_slice(), value, XattrFlags::empty())
                }
                XattrTarget::At(dir, name) => {
                    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
                    p.extend_from_slice(name);
                    rfs::lsetxattr(p, key.as_slice(), value, XattrFlags::empty())
                }
            };
            match r {
                Ok(()) => {}
                Err(Errno::NOTSUP | Errno::PERM | Errno::ACCESS)
                    if !self.opts.strict_xattrs && key != b"security.capability" =>
                {
                    self.stats.xattrs_skipped += 1;
                }
                Err(s) => {
                    return Err(fail(
                        &format!("setting extended attribute {:?}", lossy(key)),
                        s.into(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Runs `create`; when something is in the way, removes it (recursively if a directory;
    /// a symbolic link itself, never what it points to) and runs `create` again.
    fn create_replacing<T>(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        create: impl Fn() -> rustix::io::Result<T>,
    ) -> io::Result<T> {
        match create() {
            Err(Errno::EXIST) => {
                self.remove_existing(dir, name)?;
                Ok(create()?)
            }
            r => Ok(r?),
        }
    }

    fn remove_existing(&mut self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                remove_all(dir, name)?;
                self.cache.clear();
            }
            ft => {
                match rfs::unlinkat(dir, name, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(e.into()),
                }
                if ft == FileType::Symlink {
                    self.cache.clear();
                }
            }
        }
        Ok(())
    }

    /// An open parent directory, created (with its missing ancestors) when absent.
    fn parent_dir(&mut self, path: &[u8]) -> io::Result<Rc<OwnedFd>> {
        if let Some(fd) = self.cache.get(path) {
            return Ok(fd.clone());
        }
        let fd = Rc::new(self.open_dir_creating(path, 0)?);
        self.remember(path, &fd);
        Ok(fd)
    }

    /// An open existing directory (no creation).
    fn lookup_dir(&mut self, path: &[u8]) -> io::Result<Rc<OwnedFd>> {
        if let Some(fd) = self.cache.get(path) {
            return Ok(fd.clone());
        }
        let fd = Rc::new(open_in_root(
            self.root.as_fd(),
            path,
            OFlags::PATH | OFlags::DIRECTORY,
        )?);
        self.remember(path, &fd);
        Ok(fd)
    }

    fn remember(&mut self, path: &[u8], fd: &Rc<OwnedFd>) {
        if self.cache.len() >= DIR_CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(path.to_vec(), fd.clone());
    }

    /// Opens directory `path` inside the root, creating missing components (mode 0755). A
    /// component that is a dangling symbolic link gets its target created (inside the root,
    /// like everything else), as `mkdir -p` through the link would need.
    fn open_dir_creating(&self, path: &[u8], depth: u32) -> io::Result<OwnedFd> {
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        let root = self.root.as_fd();
        match open_in_root(root, path, flags) {
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) && !path.is_empty() => {
                if depth > MAX_LINK_DEPTH {
                    return Err(Errno::LOOP.into());
                }
                let (parent, name) = split_last(path);
                let pfd = self.open_dir_creating(parent, depth + 1)?;
                match rfs::mkdirat(&pfd, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                match open_in_root(root, path, flags) {
                    Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                        let target = match rfs::readlinkat(&pfd, name, Vec::new()) {
                            Ok(t) => t.into_bytes(),
                            Err(_) => return Err(e),
                        };
                        let target = if target.starts_with(b"/") {
                            clean(&target)
                        } else {
                            clean(&join(parent, &target))
                        };
                        self.open_dir_creating(&target, depth + 1)?;
                        open_in_root(root, path, flags)
                    }
                    r => r,
                }
            }
            r => r,
        }
    }

    fn whiteout(&mut self, parent: &[u8], name: &[u8]) -> io::Result<()> {
        let dir = match self.lookup_dir(parent) {
            Ok(fd) => fd,
            Err(e) if is_missing(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        let path = join(parent, name);
        let r = self.hide_lower(dir.as_fd(), name, &path);
        self.cache.clear();
        r
    }

    fn opaque(&mut self, dir_path: &[u8]) -> io::Result<()> {
        let dir = match self.lookup_dir(dir_path) {
            Ok(fd) => fd,
            Err(e) if is_missing(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        let r = self.hide_children(dir.as_fd(), dir_path);
        self.cache.clear();
        r
    }

    /// Removes `name` (at `path`) unless the current layer created it or something under it;
    /// then only what earlier layers left under it goes.
    fn hide_lower(&self, dir: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> io::Result<()> {
        if !self.created.contains(path) && !self.created_below(path) {
            remove_all(dir, name)?;
            return Ok(());
        }
        match open_subdir(dir, name) {
            Ok(sub) => self.hide_children(sub.as_fd(), path),
            Err(e) if is_missing(&e) || e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn hide_children(&self, dir: BorrowedFd<'_>, path: &[u8]) -> io::Result<()> {
        for (name, _) in list_dir(dir)? {
            self.hide_lower(dir, &name, &join(path, &name))?;
        }
        Ok(())
    }

    fn created_below(&self, path: &[u8]) -> bool {
        // "path/" (or "" for the root): everything below sorts right after it.
        let prefix = join(path, b"");
        self.created
            .range(prefix.clone()..)
            .next()
            .is_some_and(|p| p.starts_with(&prefix))
    }
}

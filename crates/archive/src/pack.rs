//! Deterministic packing of a directory tree into a tar stream.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::{self as rfs, SeekFrom};
use rustix::io::Errno;
use tar::{EntryType, GnuExtSparseHeader, Header};

use crate::compression::BUF_SIZE;
use crate::reader::Xattrs;
use crate::ArchiveError;

/// Largest value of an 8-byte octal header field (uid, gid, device numbers).
const MAX_OCTAL_8: u64 = 0o7777777;
/// Largest value of a 12-byte octal header field (size, mtime).
const MAX_OCTAL_12: u64 = 0o77777777777;

/// How to pack.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Timestamp (seconds since the epoch, e.g. `SOURCE_DATE_EPOCH`) given to every entry, or
    /// only to entries newer than it when [`PackOptions::clamp_mtime`] is set. `None` keeps
    /// each file's modification time (whole seconds).
    pub mtime: Option<u64>,
    /// Clamp modification times to [`PackOptions::mtime`] instead of overriding them.
    pub clamp_mtime: bool,
    /// Owner and group recorded for every entry instead of the files' own (for example
    /// `Some((0, 0))`). Ids are always numeric: user and group names are never written.
    pub owner: Option<(u32, u32)>,
    /// Record extended attributes (default: true; `security.selinux` is always left out, it
    /// describes the packing host rather than the content).
    pub xattrs: bool,
    /// Store files with holes as GNU sparse entries (default: false). Image layers keep it
    /// off: umoci and other readers built on Go's archive/tar refuse the GNU sparse type,
    /// so files with holes are stored whole, as Docker and BuildKit store them.
    pub sparse: bool,
}

impl Default for PackOptions {
    fn default() -> PackOptions {
        PackOptions {
            mtime: None,
            clamp_mtime: false,
            owner: None,
            xattrs: true,
            sparse: false,
        }
    }
}

/// What packing wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PackStats {
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Character and block devices and fifos.
    pub devices: u64,
    /// Sockets, which tar cannot represent.
    pub skipped: u64,
    /// File content bytes stored (holes of sparse files excluded).
    pub bytes: u64,
}

/// Packs a directory tree into a tar stream, deterministically: entries sorted by name
/// (bytewise, each directory followed by its contents; the top directory itself is not
/// recorded), ustar headers with PAX records for long names, big values and extended
/// attributes (`SCHILY.xattr.*`, sorted), hard links kept as tar hard links (a later path of
/// an inode links to the first one), symbolic links, devices, fifos, sparse files (GNU sparse
/// entries), numeric uid/gid and mode kept; no atime, ctime, user or group names. The bytes
/// depend only on the tree's names, contents and metadata (and the hole layout of sparse
/// files), not on the umask, inode numbers, directory order or where the tree sits.
pub fn pack_dir(
    src: &Path,
    out: impl Write,
    opts: &PackOptions,
) -> Result<PackStats, ArchiveError> {
    let md = fs::symlink_metadata(src).map_err(|source| ArchiveError::Source {
        path: src.to_path_buf(),
        op: "inspecting",
        source,
    })?;
    if !md.is_dir() {
        return Err(ArchiveError::Unsupported {
            path: src.to_path_buf(),
            reason: "not a directory".to_string(),
        });
    }
    let mut p = Packer {
        out: BufWriter::with_capacity(BUF_SIZE, out),
        opts,
        links: HashMap::new(),
        stats: PackStats::default(),
        buf: vec![0; BUF_SIZE],
    };
    let mut rel = Vec::new();
    p.walk(src, &mut rel)?;
    p.out.write_all(&[0; 1024]).map_err(ArchiveError::Write)?;
    p.out.flush().map_err(ArchiveError::Write)?;
    Ok(p.stats)
}

struct Packer<'o, W: Write> {
    out: BufWriter<W>,
    opts: &'o PackOptions,
    /// (device, inode) → archive name of the first path seen.
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: PackStats,
    buf: Vec<u8>,
}

/// The header fields of one entry.
struct Meta {
    name: Vec<u8>,
    link: Vec<u8>,
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    dev: (u32, u32),
    xattrs: Xattrs,
}

fn src_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Source {
        path: path.to_path_buf(),
        op,
        source,
    }
}

impl<W: Write> Packer<'_, W> {
    fn walk(&mut self, dir: &Path, rel: &mut Vec<u8>) -> Result<(), ArchiveError> {
        let mut names: Vec<OsString> = fs::read_dir(dir)
            .and_then(|rd| rd.map(|e| e.map(|e| e.file_name())).collect())
            .map_err(src_err(dir, "reading the directory"))?;
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let md = fs::symlink_metadata(&path).map_err(src_err(&path, "inspecting"))?;
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            self.entry(&path, rel, &md)?;
            if md.is_dir() {
                self.walk(&path, rel)?;
            }
            rel.truncate(len);
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, rel: &[u8], md: &Metadata) -> Result<(), ArchiveError> {
        let ft = md.file_type();
        let (uid, gid) = match self.opts.owner {
            Some((u, g)) => (u64::from(u), u64::from(g)),
            None => (u64::from(md.uid()), u64::from(md.gid())),
        };
        let mtime = match self.opts.mtime {
            Some(t) if self.opts.clamp_mtime => md.mtime().min(t as i64),
            Some(t) => t as i64,
            None => md.mtime(),
        };
        let mut m = Meta {
            name: rel.to_vec(),
            link: Vec::new(),
            kind: EntryType::Regular,
            mode: md.mode() & 0o7777,
            uid,
            gid,
            size: 0,
            mtime,
            dev: (0, 0),
            xattrs: Vec::new(),
        };
        if ft.is_socket() {
            self.stats.skipped += 1;
            return Ok(());
        }
        if !ft.is_dir() && md.nlink() > 1 {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                m.kind = EntryType::Link;
                m.link = first.clone();
                self.write_header(&m, None)?;
                self.stats.entries += 1;
                self.stats.hardlinks += 1;
                return Ok(());
            }
            self.links.insert((md.dev(), md.ino()), rel.to_vec());
        }
        if self.opts.xattrs {
            m.xattrs = read_xattrs(path)?;
        }
        self.stats.entries += 1;
        if ft.is_dir() {
            m.kind = EntryType::Directory;
            m.name.push(b'/');
            self.stats.dirs += 1;
            self.write_header(&m, None)
        } else if ft.is_symlink() {
            m.kind = EntryType::Symlink;
            m.link = fs::read_link(path)
                .map_err(src_err(path, "reading the symbolic link"))?
                .into_os_string()
                .into_vec();
            self.stats.symlinks += 1;
            self.write_header(&m, None)
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            m.kind = if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else {
                EntryType::Fifo
            };
            if !ft.is_fifo() {
                m.dev = (rfs::major(md.rdev()), rfs::minor(md.rdev()));
            }
            self.stats.devices += 1;
            self.write_header(&m, None)
        } else {
            self.file(path, m, md)
        }
    }

    fn file(&mut self, path: &Path, mut m: Meta, md: &Metadata) -> Result<(), ArchiveError> {
        let mut f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_o_nofollow())
            .open(path)
            .map_err(src_err(path, "opening"))?;
        let size = md.len();
        let regions = if self.opts.sparse && size > 0 && md.blocks() * 512 < size {
            data_regions(&f, size).map_err(src_err(path, "finding holes"))?
        } else {
            None
        };
        self.stats.files += 1;
        match regions {
            None => {
                m.size = size;
                self.write_header(&m, None)?;
                self.copy(&mut f, path, size)?;
                self.pad(size)
            }
            Some(regions) => {
                let stored: u64 = regions.iter().map(|r| r.1).sum();
                m.size = stored;
                m.kind = EntryType::GNUSparse;
                self.write_header(&m, Some((&regions, size)))?;
                for &(off, len) in &regions {
                    if len == 0 {
                        continue;
                    }
                    io::Seek::seek(&mut f, io::SeekFrom::Start(off))
                        .map_err(src_err(path, "reading"))?;
                    self.copy(&mut f, path, len)?;
                }
                self.pad(stored)
            }
        }
    }

    /// Copies exactly `len` bytes of `f` to the archive.
    fn copy(&mut self, f: &mut File, path: &Path, len: u64) -> Result<(), ArchiveError> {
        let mut left = len;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match f.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(ArchiveError::Unsupported {
                        path: path.to_path_buf(),
                        reason: "file shrank while being packed".to_string(),
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(src_err(path, "reading")(e)),
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(ArchiveError::Write)?;
            left -= n as u64;
            self.stats.bytes += n as u64;
        }
        Ok(())
    }

    fn pad(&mut self, size: u64) -> Result<(), ArchiveError> {
        let pad = ((512 - size % 512) % 512) as usize;
        self.out
            .write_all(&[0; 512][..pad])
            .map_err(ArchiveError::Write)
    }

    /// Writes the PAX header (if needed), the entry header and, for sparse files, the GNU
    /// sparse map extension blocks.
    fn write_header(
        &mut self,
        m: &Meta,
        sparse: Option<(&[(u64, u64)], u64)>,
    ) -> Result<(), ArchiveError> {
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        if m.name.len() > 100 {
            pax.push(("path", m.name.clone()));
        }
        if m.link.len() > 100 {
            pax.push(("linkpath", m.link.clone()));
        }
        if m.size > MAX_OCTAL_12 {
            pax.push(("size", m.size.to_string().into_bytes()));
        }
        if m.uid > MAX_OCTAL_8 {
            pax.push(("uid", m.uid.to_string().into_bytes()));
        }
        if m.gid > MAX_OCTAL_8 {
            pax.push(("gid", m.gid.to_string().into_bytes()));
        }
        if m.mtime < 0 || m.mtime as u64 > MAX_OCTAL_12 {
            pax.push(("mtime", m.mtime.to_string().into_bytes()));
        }
        let mut records = Vec::new();
        for (k, v) in &pax {
            pax_record(&mut records, k.as_bytes(), v);
        }
        for (k, v) in &m.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax_record(&mut records, &key, v);
        }
        let header_mtime = if m.mtime < 0 || m.mtime as u64 > MAX_OCTAL_12 {
            0
        } else {
            m.mtime as u64
        };
        if !records.is_empty() {
            let mut h = Header::new_ustar();
            set_bytes(&mut h.as_old_mut().name, &pax_name(&m.name));
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(records.len() as u64);
            h.set_mtime(header_mtime);
            h.set_entry_type(EntryType::XHeader);
            let _ = h.set_device_major(0);
            let _ = h.set_device_minor(0);
            h.set_cksum();
            self.out
                .write_all(h.as_bytes())
                .map_err(ArchiveError::Write)?;
            self.out.write_all(&records).map_err(ArchiveError::Write)?;
            self.pad(records.len() as u64)?;
        }

        let mut h = if sparse.is_some() {
            Header::new_gnu()
        } else {
            Header::new_ustar()
        };
        set_bytes(&mut h.as_old_mut().name, &m.name);
        set_bytes(&mut h.as_old_mut().linkname, &m.link);
        h.set_mode(m.mode);
        h.set_uid(if m.uid > MAX_OCTAL_8 { 0 } else { m.uid });
        h.set_gid(if m.gid > MAX_OCTAL_8 { 0 } else { m.gid });
        h.set_size(if m.size > MAX_OCTAL_12 { 0 } else { m.size });
        h.set_mtime(header_mtime);
        h.set_entry_type(m.kind);
        let _ = h.set_device_major(m.dev.0);
        let _ = h.set_device_minor(m.dev.1);
        let mut ext_blocks: Vec<GnuExtSparseHeader> = Vec::new();
        if let Some((regions, real_size)) = sparse {
            let gnu = h.as_gnu_mut().expect("GNU header");
            gnu.set_real_size(real_size);
            let mut it = regions.iter();
            for slot in gnu.sparse.iter_mut() {
                match it.next() {
                    Some(&(off, len)) => {
                        slot.set_offset(off);
                        slot.set_length(len);
                    }
                    None => break,
                }
            }
            let rest: Vec<_> = it.collect();
            gnu.set_is_extended(!rest.is_empty());
            let chunks: Vec<_> = rest.chunks(21).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                let mut ext = GnuExtSparseHeader::new();
                for (slot, &&(off, len)) in ext.sparse.iter_mut().zip(chunk.iter()) {
                    slot.set_offset(off);
                    slot.set_length(len);
                }
                ext.set_is_extended(i + 1 < chunks.len());
                ext_blocks.push(ext);
            }
        }
        h.set_cksum();
        self.out
            .write_all(h.as_bytes())
            .map_err(ArchiveError::Write)?;
        for ext in &ext_blocks {
            self.out
                .write_all(ext.as_bytes())
                .map_err(ArchiveError::Write)?;
        }
        Ok(())
    }
}

fn libc_o_nofollow() -> i32 {
    rfs::OFlags::NOFOLLOW.bits() as i32
}

/// Copies `v` into a fixed header field, truncated to fit (the full value is in a PAX record
/// when it does not).
fn set_bytes(field: &mut [u8], v: &[u8]) {
    let n = v.len().min(field.len());
    field[..n].copy_from_slice(&v[..n]);
    field[n..].fill(0);
}

/// The name of a PAX header: `<dir>/PaxHeaders/<base>`, as deterministic as the entry name.
fn pax_name(name: &[u8]) -> Vec<u8> {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let mut v = dir.to_vec();
    v.extend_from_slice(b"PaxHeaders/");
    v.extend_from_slice(base);
    v.truncate(100);
    v
}

/// Appends one `"<len> <key>=<value>\n"` record, `len` counting itself.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Extended attributes of `path` (not followed), sorted by name, `security.selinux` left out.
fn read_xattrs(path: &Path) -> Result<Xattrs, ArchiveError> {
    let err = src_err(path, "reading extended attributes");
    let mut names: Vec<u8> = Vec::new();
    loop {
        let size = match rfs::llistxattr_query(path) {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(err(e.into())),
        };
        if size == 0 {
            return Ok(Vec::new());
        }
        names.resize(size, 0);
        match rfs::llistxattr(path, &mut names[..]) {
            Ok(n) => {
                names.truncate(n);
                break;
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(err(e.into())),
        }
    }
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if name == b"security.selinux" {
            continue;
        }
        let mut value = Vec::new();
        loop {
            let size = match rfs::lgetxattr_query(path, name) {
                Ok(n) => n,
                Err(Errno::NODATA) => break,
                Err(e) => return Err(src_err(path, "reading extended attributes")(e.into())),
            };
            value.resize(size, 0);
            match rfs::lgetxattr(path, name, &mut value[..]) {
                Ok(n) => {
                    value.truncate(n);
                    out.push((name.to_vec(), std::mem::take(&mut value)));
                    break;
                }
                Err(Errno::RANGE) => continue,
                Err(Errno::NODATA) => break,
                Err(e) => return Err(src_err(path, "reading extended attributes")(e.into())),
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The data regions of a file with holes, widened to 512-byte boundaries, ending with a
/// `(size, 0)` marker when the file ends in a hole; `None` when it has no hole after all or
/// the filesystem cannot say.
fn data_regions(f: &File, size: u64) -> io::Result<Option<Vec<(u64, u64)>>> {
    let mut regions: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match rfs::seek(f, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL) | Err(Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = match rfs::seek(f, SeekFrom::Hole(start)) {
            Ok(e) => e.min(size),
            Err(Errno::NXIO) => size,
            Err(e) => return Err(e.into()),
        };
        let start = start / 512 * 512;
        let end = end.div_ceil(512).saturating_mul(512).min(size);
        match regions.last_mut() {
            Some(last) if last.0 + last.1 >= start => last.1 = end - last.0,
            _ => regions.push((start, end - start)),
        }
        pos = end;
    }
    if regions.len() == 1 && regions[0] == (0, size) {
        return Ok(None);
    }
    match regions.last() {
        Some(&(off, len)) if off + len == size => {}
        _ => regions.push((size, 0)),
    }
    Ok(Some(regions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        let mut v = Vec::new();
        pax_record(&mut v, b"path", b"x");
        assert_eq!(v, b"9 path=x\n");
        let mut v = Vec::new();
        let value = vec![b'a'; 93];
        pax_record(&mut v, b"path", &value);
        // 1 + 4 + 1 + 93 + 1 = 100 bytes plus a 3-digit length.
        assert!(v.starts_with(b"103 path="));
        assert_eq!(v.len(), 103);
    }

    #[test]
    fn pax_header_names() {
        assert_eq!(pax_name(b"a/b/c"), b"a/b/PaxHeaders/c");
        assert_eq!(pax_name(b"dir/"), b"PaxHeaders/dir");
        assert!(pax_name(&[b'x'; 300]).len() == 100);
    }
}

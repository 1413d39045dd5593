//! Helpers shared by the integration tests: tar streams built header by header (names are
//! written raw, so `..` and absolute names get through), and tree inspection.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use tar::{EntryType, Header};

pub const MTIME: u64 = 1_600_000_000;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A tar stream under construction.
pub struct Tar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Tar {
    fn default() -> Self {
        Tar::new()
    }
}

impl Tar {
    pub fn new() -> Tar {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub fn header(kind: EntryType, name: &str, mode: u32) -> Header {
        let mut h = Header::new_ustar();
        let n = &mut h.as_old_mut().name;
        assert!(name.len() <= n.len(), "use pax() for long names");
        n[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(0);
        h
    }

    /// Appends a prepared header (checksum computed here) with its data.
    pub fn raw(&mut self, mut h: Header, data: &[u8]) -> &mut Tar {
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Tar {
        self.file_mode(name, data, 0o644)
    }

    pub fn file_mode(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Tar {
        let h = Tar::header(EntryType::Regular, name, mode);
        self.raw(h, data)
    }

    pub fn file_owned(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Tar {
        let mut h = Tar::header(EntryType::Regular, name, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        self.raw(h, data)
    }

    pub fn dir(&mut self, name: &str) -> &mut Tar {
        self.dir_mode(name, 0o755)
    }

    pub fn dir_mode(&mut self, name: &str, mode: u32) -> &mut Tar {
        let h = Tar::header(EntryType::Directory, name, mode);
        self.raw(h, &[])
    }

    fn link(&mut self, kind: EntryType, name: &str, target: &str) -> &mut Tar {
        let mut h = Tar::header(kind, name, 0o777);
        let l = &mut h.as_old_mut().linkname;
        assert!(target.len() <= l.len(), "use pax() for long targets");
        l[..target.len()].copy_from_slice(target.as_bytes());
        self.raw(h, &[])
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.link(EntryType::Symlink, name, target)
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.link(EntryType::Link, name, target)
    }

    pub fn node(&mut self, name: &str, kind: EntryType, major: u32, minor: u32) -> &mut Tar {
        let mut h = Tar::header(kind, name, 0o600);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.raw(h, &[])
    }

    /// PAX records for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        self.b
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut w = archive::compress(Vec::new(), archive::Compression::Gzip).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    let mut w = archive::compress(Vec::new(), archive::Compression::Zstd).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

/// A test area: `outer/` holds `root/` (the destination) and whatever should stay untouched.
pub struct Area {
    pub tmp: tempfile::TempDir,
}

impl Area {
    pub fn new() -> Area {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("root")).unwrap();
        Area { tmp }
    }

    pub fn outer(&self) -> &Path {
        self.tmp.path()
    }

    pub fn root(&self) -> std::path::PathBuf {
        self.tmp.path().join("root")
    }

    /// Everything under `outer` except inside `root`, as relative names.
    pub fn outside_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        for e in fs::read_dir(self.outer()).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name != "root" {
                v.push(name);
            }
        }
        v.sort();
        v
    }
}

pub fn unpack(area: &Area, tar: &[u8]) -> Result<archive::UnpackStats, archive::ArchiveError> {
    archive::unpack_layer(tar, &area.root(), &archive::UnpackOptions::default())
}

/// A snapshot of a tree: relative name → description (type, mode, owner, size, mtime,
/// content or target, xattrs, device, hard-link group).
pub fn snapshot(root: &Path, with_mtime: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    walk(root, root, with_mtime, &mut out, &mut inodes);
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    with_mtime: bool,
    out: &mut BTreeMap<String, String>,
    inodes: &mut BTreeMap<(u64, u64), String>,
) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let mut d = format!(
            "mode={:o} uid={} gid={}",
            md.mode() & 0o7777,
            md.uid(),
            md.gid()
        );
        if with_mtime && !ft.is_dir() {
            d += &format!(" mtime={}", md.mtime());
        }
        if ft.is_dir() {
            d = format!("dir {d}");
            if with_mtime {
                d += &format!(" mtime={}", md.mtime());
            }
        } else if ft.is_symlink() {
            d = format!("symlink {d} -> {}", fs::read_link(&path).unwrap().display());
        } else if ft.is_file() {
            let content = fs::read(&path).unwrap();
            d = format!(
                "file {d} size={} sum={:x}",
                content.len(),
                checksum(&content)
            );
        } else if ft.is_fifo() {
            d = format!("fifo {d}");
        } else if ft.is_char_device() || ft.is_block_device() {
            d = format!("dev {d} rdev={:x}", md.rdev());
        }
        if !ft.is_dir() && md.nlink() > 1 {
            let first = inodes
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| rel.clone())
                .clone();
            d += &format!(" linkgroup={first}");
        }
        let mut xattrs: Vec<String> = xattr_list(&path)
            .into_iter()
            .filter(|(k, _)| k.starts_with("user."))
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        xattrs.sort();
        if !xattrs.is_empty() {
            d += &format!(" xattrs={xattrs:?}");
        }
        out.insert(rel, d);
        if ft.is_dir() {
            walk(root, &path, with_mtime, out, inodes);
        }
    }
}

pub fn xattr_list(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(_) => return Vec::new(),
    };
    names.truncate(n);
    names
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| {
            let mut v = vec![0u8; 65536];
            let k = rustix::fs::lgetxattr(path, n, &mut v[..]).unwrap();
            v.truncate(k);
            (String::from_utf8_lossy(n).into_owned(), v)
        })
        .collect()
}

/// FNV-1a, enough to compare contents in snapshots.
pub fn checksum(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

pub const LONG_NAME_LEN: usize = 200;

/// Builds the reference tree used by the round-trip and determinism tests: every kind of
/// entry, hard links, xattrs (binary ones too), a sparse file, long names and targets. Modes
/// are set explicitly (independent of the umask); `mtime_base` sets all modification
/// times; `reverse` creates things in another order (other inode numbers and directory
/// order).
pub fn build_tree(dir: &Path, mtime_base: i64, reverse: bool) {
    use std::os::unix::fs::PermissionsExt;
    let long = "n".repeat(LONG_NAME_LEN);
    let long_target = format!("../{}", "t".repeat(150));
    let mut steps: Vec<Box<dyn Fn()>> = Vec::new();
    let d = dir.to_path_buf();
    let mkdir = |p: &str, mode: u32| {
        let path = d.join(p);
        move || {
            fs::create_dir_all(&path).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    steps.push(Box::new(mkdir("bin", 0o755)));
    steps.push(Box::new(mkdir("etc", 0o750)));
    steps.push(Box::new(mkdir("empty", 0o700)));
    if reverse {
        steps.reverse();
    }
    steps.push(Box::new(mkdir("deep", 0o755)));
    steps.push(Box::new(mkdir("deep/a", 0o755)));
    steps.push(Box::new(mkdir("deep/a/b", 0o711)));
    steps.push(Box::new(mkdir("deep/a/b/c", 0o755)));
    steps.push(Box::new(mkdir(
        &format!("deep/a/b/c/{}", "m".repeat(60)),
        0o755,
    )));
    for s in &steps {
        s();
    }
    let file = |p: &str, data: &[u8], mode: u32| {
        let path = d.join(p);
        fs::write(&path, data).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    let mut files: Vec<(String, Vec<u8>, u32)> = vec![
        ("bin/tool".into(), b"#!/bin/sh\necho tool\n".to_vec(), 0o755),
        ("etc/conf".into(), b"key=value\n".repeat(1000), 0o640),
        ("etc/empty".into(), Vec::new(), 0o644),
        (format!("deep/{long}"), b"long name".to_vec(), 0o644),
        (
            format!("deep/a/b/c/{}/{long}", "m".repeat(60)),
            b"longer path".to_vec(),
            0o600,
        ),
        (
            "big".into(),
            (0..700_000u32).map(|i| (i % 253) as u8).collect(),
            0o444,
        ),
    ];
    if reverse {
        files.reverse();
    }
    for (p, data, mode) in &files {
        file(p, data, *mode);
    }
    // Hard links: three names for one inode.
    fs::hard_link(d.join("bin/tool"), d.join("bin/tool-link")).unwrap();
    fs::hard_link(d.join("bin/tool"), d.join("etc/tool-link2")).unwrap();
    // Symbolic links.
    std::os::unix::fs::symlink("usr/lib", d.join("lib")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.join("abs")).unwrap();
    std::os::unix::fs::symlink(&long_target, d.join("deep/longlink")).unwrap();
    // A sparse file: data, a hole, data, and a hole at the end.
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(d.join("sparse")).unwrap();
        f.write_all_at(&[1u8; 4096], 0).unwrap();
        f.write_all_at(&[2u8; 8192], 5 << 20).unwrap();
        f.set_len(10 << 20).unwrap();
        fs::set_permissions(d.join("sparse"), fs::Permissions::from_mode(0o644)).unwrap();
    }
    // A fifo.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        d.join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_bits_truncate(0o644),
        0,
    )
    .unwrap();
    fs::set_permissions(d.join("pipe"), fs::Permissions::from_mode(0o644)).unwrap();
    // Extended attributes, one of them binary with a newline and a NUL.
    let setx = |p: &str, k: &str, v: &[u8]| {
        rustix::fs::lsetxattr(d.join(p), k, v, rustix::fs::XattrFlags::empty()).unwrap()
    };
    setx("etc/conf", "user.comment", b"hello");
    setx("bin/tool", "user.bin", b"a\nb\0c\n17 path=x\n");
    setx("etc", "user.dir", b"d");
    if is_root() {
        file("setuid", b"suid", 0o4755);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_bits_truncate(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        fs::set_permissions(d.join("null"), fs::Permissions::from_mode(0o666)).unwrap();
        file("owned", b"owned", 0o644);
        rustix::fs::chownat(
            rustix::fs::CWD,
            d.join("owned"),
            Some(rustix::fs::Uid::from_raw(1234)),
            Some(rustix::fs::Gid::from_raw(5678)),
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            d.join("deep/longlink"),
            Some(rustix::fs::Uid::from_raw(42)),
            Some(rustix::fs::Gid::from_raw(43)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
    set_mtimes(dir, mtime_base);
}

/// Gives every entry under `dir` (depth first, directories after their content) the time
/// `base + n`, n counting entries in name order.
pub fn set_mtimes(dir: &Path, base: i64) {
    fn visit(dir: &Path, base: i64, n: &mut i64) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let p = dir.join(name);
            let md = fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                visit(&p, base, n);
            }
            *n += 1;
            let t = rustix::fs::Timespec {
                tv_sec: base + *n,
                tv_nsec: 0,
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &p,
                &rustix::fs::Timestamps {
                    last_access: t,
                    last_modification: t,
                },
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        }
    }
    let mut n = 0;
    visit(dir, base, &mut n);
}

/// Whether the file has holes (allocates less than its size).
pub fn is_sparse(path: &Path) -> bool {
    let md = fs::metadata(path).unwrap();
    md.blocks() * 512 < md.len()
}

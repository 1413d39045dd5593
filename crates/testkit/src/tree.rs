//! A comparable description of a directory tree, and a readable assertion on two of them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Path (relative to the tree's root; the root itself is not listed) → what is there.
pub type Tree = BTreeMap<PathBuf, EntryInfo>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// Everything about one entry that a faithful copy must keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Regular files only.
    pub size: Option<u64>,
    /// Hex SHA-256 of the content, regular files only.
    pub sha256: Option<String>,
    pub symlink_target: Option<PathBuf>,
    /// For entries sharing an inode with another entry of the tree: the smallest such path
    /// (so the grouping is independent of inode numbers). `None` for unshared inodes.
    pub hardlink_group: Option<PathBuf>,
    /// `user.*` and `security.capability` extended attributes.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// (major, minor) of character and block devices.
    pub rdev: Option<(u32, u32)>,
    /// Modification time in whole seconds, if asked for (see [`TreeOptions`]).
    pub mtime: Option<i64>,
}

/// What [`tree_digest_with`] records beyond the defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct TreeOptions {
    /// Record mtimes of regular files.
    pub mtimes: bool,
    /// Record mtimes of directories too (many tools do not restore them).
    pub dir_mtimes: bool,
}

/// Describes every entry under `dir` (not following symlinks), without mtimes.
pub fn tree_digest(dir: &Path) -> Tree {
    tree_digest_with(dir, TreeOptions::default())
}

/// Describes every entry under `dir` (not following symlinks).
pub fn tree_digest_with(dir: &Path, options: TreeOptions) -> Tree {
    let mut tree = Tree::new();
    let mut inodes: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
    walk(dir, Path::new(""), options, &mut tree, &mut inodes);
    for paths in inodes.into_values().filter(|p| p.len() > 1) {
        let first = paths.iter().min().unwrap().clone();
        for path in paths {
            tree.get_mut(&path).unwrap().hardlink_group = Some(first.clone());
        }
    }
    tree
}

fn walk(
    root: &Path,
    rel: &Path,
    options: TreeOptions,
    tree: &mut Tree,
    inodes: &mut HashMap<(u64, u64), Vec<PathBuf>>,
) {
    let dir = root.join(rel);
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read dir {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot read dir {}: {e}", dir.display()));
        let rel_path = rel.join(entry.file_name());
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("cannot lstat {}: {e}", path.display()));
        let info = describe(&path, &meta, options);
        if info.kind != Kind::Dir {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(rel_path.clone());
        }
        let is_dir = info.kind == Kind::Dir;
        tree.insert(rel_path.clone(), info);
        if is_dir {
            walk(root, &rel_path, options, tree, inodes);
        }
    }
}

fn describe(path: &Path, meta: &fs::Metadata, options: TreeOptions) -> EntryInfo {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else if ft.is_char_device() {
        Kind::CharDevice
    } else {
        Kind::BlockDevice
    };
    let is_device = matches!(kind, Kind::CharDevice | Kind::BlockDevice);
    let want_mtime = match kind {
        Kind::File => options.mtimes,
        Kind::Dir => options.dir_mtimes,
        _ => false,
    };
    EntryInfo {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: (kind == Kind::File).then_some(meta.len()),
        sha256: (kind == Kind::File).then(|| file_sha256(path)),
        symlink_target: (kind == Kind::Symlink).then(|| fs::read_link(path).unwrap()),
        hardlink_group: None,
        xattrs: xattrs(path),
        rdev: is_device.then(|| {
            let dev = meta.rdev();
            (rustix::fs::major(dev), rustix::fs::minor(dev))
        }),
        mtime: want_mtime.then(|| meta.mtime()),
    }
}

/// Hex SHA-256 of a file's content.
pub fn file_sha256(path: &Path) -> String {
    let mut file =
        File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    // Size query first, then the real call (the buffer's length is what the kernel may fill).
    let Ok(size) = rustix::fs::llistxattr_query(path) else {
        return out; // not supported here: nothing to record
    };
    let mut names = vec![0u8; size];
    let Ok(len) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return out;
    };
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if !(name.starts_with("user.") || name == "security.capability") {
            continue;
        }
        let Ok(size) = rustix::fs::lgetxattr_query(path, name.as_str()) else {
            continue;
        };
        let mut value = vec![0u8; size];
        if let Ok(len) = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]) {
            value.truncate(len);
            out.insert(name, value);
        }
    }
    out
}

impl fmt::Display for EntryInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} mode {:04o} {}:{}",
            self.kind, self.mode, self.uid, self.gid
        )?;
        if let Some(size) = self.size {
            write!(f, " size {size}")?;
        }
        if let Some(target) = &self.symlink_target {
            write!(f, " -> {}", target.display())?;
        }
        if let Some(group) = &self.hardlink_group {
            write!(f, " (hardlink group {})", group.display())?;
        }
        Ok(())
    }
}

/// Human-readable differences between two trees (empty if they are the same).
pub fn tree_diff(a: &Tree, b: &Tree) -> Vec<String> {
    let mut diffs = Vec::new();
    let paths: std::collections::BTreeSet<&PathBuf> = a.keys().chain(b.keys()).collect();
    for path in paths {
        let p = path.display();
        match (a.get(path), b.get(path)) {
            (Some(x), None) => diffs.push(format!("{p}: only in left ({x})")),
            (None, Some(y)) => diffs.push(format!("{p}: only in right ({y})")),
            (Some(x), Some(y)) if x != y => {
                diffs.push(format!("{p}: {}", field_diffs(x, y).join(", ")));
            }
            _ => {}
        }
    }
    diffs
}

fn field_diffs(x: &EntryInfo, y: &EntryInfo) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |name: &str, l: String, r: String| {
        if l != r {
            out.push(format!("{name} {l} != {r}"));
        }
    };
    cmp("kind", format!("{:?}", x.kind), format!("{:?}", y.kind));
    cmp("mode", format!("{:04o}", x.mode), format!("{:04o}", y.mode));
    cmp(
        "owner",
        format!("{}:{}", x.uid, x.gid),
        format!("{}:{}", y.uid, y.gid),
    );
    cmp("size", format!("{:?}", x.size), format!("{:?}", y.size));
    cmp(
        "sha256",
        format!("{:?}", x.sha256),
        format!("{:?}", y.sha256),
    );
    cmp(
        "symlink",
        format!("{:?}", x.symlink_target),
        format!("{:?}", y.symlink_target),
    );
    cmp(
        "hardlink group",
        format!("{:?}", x.hardlink_group),
        format!("{:?}", y.hardlink_group),
    );
    let show = |xattrs: &BTreeMap<String, Vec<u8>>| {
        let items: Vec<String> = xattrs
            .iter()
            .map(|(k, v)| format!("{k}={:?}", String::from_utf8_lossy(v)))
            .collect();
        format!("{{{}}}", items.join(", "))
    };
    cmp("xattrs", show(&x.xattrs), show(&y.xattrs));
    cmp("rdev", format!("{:?}", x.rdev), format!("{:?}", y.rdev));
    cmp("mtime", format!("{:?}", x.mtime), format!("{:?}", y.mtime));
    out
}

/// Panics listing the first differences (left = `a`, right = `b`) if the trees differ.
#[track_caller]
pub fn assert_same_tree(a: &Tree, b: &Tree) {
    const SHOWN: usize = 25;
    let diffs = tree_diff(a, b);
    if !diffs.is_empty() {
        let more = diffs.len().saturating_sub(SHOWN);
        let mut message = format!("trees differ in {} entries:\n  ", diffs.len());
        message += &diffs[..diffs.len().min(SHOWN)].join("\n  ");
        if more > 0 {
            message += &format!("\n  ... and {more} more");
        }
        panic!("{message}");
    }
}

/// [`assert_same_tree`] on the digests (without mtimes) of two directories.
#[track_caller]
pub fn assert_same_dirs(a: &Path, b: &Path) {
    assert_same_tree(&tree_digest(a), &tree_digest(b));
}

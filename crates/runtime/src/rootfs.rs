//! Preparing the container's root filesystem inside its mount namespace: the spec's
//! mounts, devices, pivot_root, masked and read-only paths. Every path inside the rootfs
//! is resolved with `openat2(RESOLVE_IN_ROOT)` and mounted on through `/proc/self/fd`,
//! so no symlink in the rootfs can redirect a mount outside it.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use crate::error::{Result, RuntimeError};

fn err(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> RuntimeError {
    let what = what.into();
    move |e| RuntimeError::Init(format!("{what}: {}", std::io::Error::from(e)))
}

fn open_root(rootfs: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err(format!("opening rootfs {}", rootfs.display())))
}

fn in_root(root: &OwnedFd, rel: &Path, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    rustix::fs::openat2(
        root,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

fn normal_components(p: &Path) -> Vec<&OsStr> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// Opens (creating directories, and the last component as a file when `file`) the path
/// `dest` inside the rootfs; returns an O_PATH descriptor of it. A component that is a
/// symlink to something missing gets that target created, inside the rootfs.
fn ensure_in_root(root: &OwnedFd, dest: &Path, file: bool) -> Result<OwnedFd> {
    ensure_depth(root, dest, file, 0)
}

fn ensure_depth(root: &OwnedFd, dest: &Path, file: bool, depth: u32) -> Result<OwnedFd> {
    let what = || format!("mount destination {}", dest.display());
    if depth > 40 {
        return Err(RuntimeError::Init(format!(
            "{}: too many levels of symbolic links",
            what()
        )));
    }
    let comps = normal_components(dest);
    let mut parent =
        in_root(root, Path::new("."), OFlags::PATH | OFlags::DIRECTORY).map_err(err(what()))?;
    let mut prefix = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        let dir_path = prefix.clone();
        prefix.push(c);
        let last = i + 1 == comps.len();
        match in_root(root, &prefix, OFlags::PATH) {
            Ok(fd) => parent = fd,
            Err(rustix::io::Errno::NOENT) => {
                let dir = in_root(root, &dir_path, OFlags::RDONLY | OFlags::DIRECTORY)
                    .map_err(err(what()))?;
                // A dangling symlink: create what it points at (resolved in the rootfs).
                if let Ok(target) = rustix::fs::readlinkat(&dir, *c, Vec::new()) {
                    let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
                    let inside = if target.is_absolute() {
                        target
                    } else {
                        Path::new("/").join(&dir_path).join(target)
                    };
                    ensure_depth(root, &inside, last && file, depth + 1)?;
                } else if last && file {
                    rustix::fs::openat(
                        &dir,
                        *c,
                        OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                        Mode::from_raw_mode(0o644),
                    )
                    .map_err(err(what()))?;
                } else {
                    match rustix::fs::mkdirat(&dir, *c, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(err(what())(e)),
                    }
                }
                parent = in_root(root, &prefix, OFlags::PATH).map_err(err(what()))?;
            }
            Err(e) => return Err(err(what())(e)),
        }
    }
    Ok(parent)
}

fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Mount flags, propagation and the data string from the spec's option words.
struct Options {
    flags: MountFlags,
    clear: MountFlags,
    propagation: Option<MountPropagationFlags>,
    bind: bool,
    recursive: bool,
    data: Vec<String>,
}

fn parse_options(opts: &[String]) -> Options {
    let mut o = Options {
        flags: MountFlags::empty(),
        clear: MountFlags::empty(),
        propagation: None,
        bind: false,
        recursive: false,
        data: Vec::new(),
    };
    for opt in opts {
        let (set, clear) = match opt.as_str() {
            "ro" => (MountFlags::RDONLY, MountFlags::empty()),
            "rw" => (MountFlags::empty(), MountFlags::RDONLY),
            "nosuid" => (MountFlags::NOSUID, MountFlags::empty()),
            "suid" => (MountFlags::empty(), MountFlags::NOSUID),
            "nodev" => (MountFlags::NODEV, MountFlags::empty()),
            "dev" => (MountFlags::empty(), MountFlags::NODEV),
            "noexec" => (MountFlags::NOEXEC, MountFlags::empty()),
            "exec" => (MountFlags::empty(), MountFlags::NOEXEC),
            "sync" => (MountFlags::SYNCHRONOUS, MountFlags::empty()),
            "async" => (MountFlags::empty(), MountFlags::SYNCHRONOUS),
            "dirsync" => (MountFlags::DIRSYNC, MountFlags::empty()),
            "mand" => (
                MountFlags::PERMIT_MANDATORY_FILE_LOCKING,
                MountFlags::empty(),
            ),
            "nomand" => (
                MountFlags::empty(),
                MountFlags::PERMIT_MANDATORY_FILE_LOCKING,
            ),
            "noatime" => (MountFlags::NOATIME, MountFlags::empty()),
            "atime" => (MountFlags::empty(), MountFlags::NOATIME),
            "nodiratime" => (MountFlags::NODIRATIME, MountFlags::empty()),
            "diratime" => (MountFlags::empty(), MountFlags::NODIRATIME),
            "relatime" => (MountFlags::RELATIME, MountFlags::empty()),
            "norelatime" => (MountFlags::empty(), MountFlags::RELATIME),
            "strictatime" => (MountFlags::STRICTATIME, MountFlags::empty()),
            "silent" => (MountFlags::SILENT, MountFlags::empty()),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let mut p = match opt.trim_start_matches('r') {
                    "private" => MountPropagationFlags::PRIVATE,
                    "shared" => MountPropagationFlags::SHARED,
                    "slave" => MountPropagationFlags::DOWNSTREAM,
                    _ => MountPropagationFlags::UNBINDABLE,
                };
                if opt.starts_with('r') {
                    p |= MountPropagationFlags::REC;
                }
                o.propagation = Some(p);
                continue;
            }
            // Options handled by others (or meaningless here).
            "defaults" | "tmpcopyup" | "idmap" | "ridmap" => continue,
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
        o.clear |= clear;
    }
    o
}

/// Sets up everything of the rootfs up to (not including) pivot_root.
pub fn prepare(spec: &Spec, rootfs: &Path) -> Result<()> {
    let linux = spec.linux().as_ref();
    // Mount events in the container's namespace must not reach the host.
    let prop = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        Some("shared") | Some("rshared") => MountPropagationFlags::SHARED,
        Some("private") | Some("rprivate") => MountPropagationFlags::PRIVATE,
        Some("unbindable") | Some("runbindable") => MountPropagationFlags::UNBINDABLE,
        _ => MountPropagationFlags::DOWNSTREAM,
    };
    rustix::mount::mount_change("/", prop | MountPropagationFlags::REC)
        .map_err(err("making / a slave mount"))?;
    rustix::mount::mount_bind_recursive(rootfs, rootfs).map_err(err(format!(
        "bind-mounting the rootfs {}",
        rootfs.display()
    )))?;
    let root = open_root(rootfs)?;

    let mut dev_is_tmpfs = false;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") {
            dev_is_tmpfs = true;
        }
        mount_one(&root, m).map_err(|e| match e {
            RuntimeError::Init(msg) => RuntimeError::Init(format!("mounts[{i}]: {msg}")),
            other => other,
        })?;
    }
    if dev_is_tmpfs {
        default_devices(&root, linux.and_then(|l| l.devices().as_ref()))?;
    } else if let Some(devs) = linux.and_then(|l| l.devices().as_ref()) {
        for d in devs {
            make_device(&root, d)?;
        }
    }
    Ok(())
}

fn mount_one(root: &OwnedFd, m: &Mount) -> Result<()> {
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let dest = m.destination();
    let source = m.source().clone().unwrap_or_default();
    let bind = opts.bind || typ == "bind";
    let file = bind && source.exists() && !source.is_dir();
    let target_fd = ensure_in_root(root, dest, file)?;
    let target = fd_path(&target_fd);
    let what = || {
        format!(
            "mounting {} on {}",
            if source.as_os_str().is_empty() {
                Path::new(typ)
            } else {
                &source
            }
            .display(),
            dest.display()
        )
    };
    let data = opts.data.join(",");
    if bind {
        if opts.recursive {
            rustix::mount::mount_bind_recursive(&source, &target).map_err(err(what()))?;
        } else {
            rustix::mount::mount_bind(&source, &target).map_err(err(what()))?;
        }
        if !opts.flags.is_empty() {
            // Re-open: the mount sits on top of the descriptor's old inode.
            let target_fd = in_root(root, dest, OFlags::PATH).map_err(err(what()))?;
            rustix::mount::mount_remount(fd_path(&target_fd), opts.flags | MountFlags::BIND, "")
                .map_err(err(format!("{} (remounting with its options)", what())))?;
        }
    } else {
        let data = std::ffi::CString::new(data)
            .map_err(|_| RuntimeError::Init(format!("{}: options contain a NUL byte", what())))?;
        let result = rustix::mount::mount(
            source.as_os_str(),
            &target,
            typ,
            opts.flags,
            (!data.as_bytes().is_empty()).then_some(data.as_c_str()),
        );
        match (result, typ) {
            (Ok(()), _) => {}
            // Without a new network namespace (or without the rights) sysfs cannot be
            // mounted anew; bind the host's, read-only, as runc does.
            (Err(rustix::io::Errno::PERM), "sysfs") => {
                rustix::mount::mount_bind_recursive("/sys", &target).map_err(err(what()))?;
                let t = in_root(root, dest, OFlags::PATH).map_err(err(what()))?;
                let _ = rustix::mount::mount_remount(
                    fd_path(&t),
                    MountFlags::BIND | MountFlags::RDONLY | opts.flags,
                    "",
                );
            }
            (Err(_), "cgroup" | "cgroup2") => {
                // A v1 or hybrid host without a cgroup namespace: show the host's
                // hierarchy read-only.
                rustix::mount::mount_bind_recursive("/sys/fs/cgroup", &target)
                    .map_err(err(what()))?;
                let t = in_root(root, dest, OFlags::PATH).map_err(err(what()))?;
                let _ = rustix::mount::mount_remount(
                    fd_path(&t),
                    MountFlags::BIND | MountFlags::RDONLY,
                    "",
                );
            }
            (Err(e), _) => return Err(err(what())(e)),
        }
    }
    if let Some(p) = opts.propagation {
        let t = in_root(root, dest, OFlags::PATH).map_err(err(what()))?;
        rustix::mount::mount_change(fd_path(&t), p).map_err(err(what()))?;
    }
    Ok(())
}

const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn default_devices(root: &OwnedFd, extra: Option<&Vec<LinuxDevice>>) -> Result<()> {
    let dev = in_root(root, Path::new("dev"), OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(err("opening /dev"))?;
    for (name, major, minor) in DEFAULT_DEVICES {
        mknod_or_bind(
            &dev,
            name,
            rustix::fs::FileType::CharacterDevice,
            *major,
            *minor,
            0o666,
            0,
            0,
        )?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        match rustix::fs::symlinkat(target, &dev, link) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(err(format!("creating /dev/{link}"))(e)),
        }
    }
    // /dev/ptmx goes through the container's own devpts instance.
    if in_root(root, Path::new("dev/pts/ptmx"), OFlags::PATH).is_ok() {
        let _ = rustix::fs::unlinkat(&dev, "ptmx", rustix::fs::AtFlags::empty());
        rustix::fs::symlinkat("pts/ptmx", &dev, "ptmx").map_err(err("creating /dev/ptmx"))?;
    }
    for d in extra.into_iter().flatten() {
        make_device(root, d)?;
    }
    Ok(())
}

fn make_device(root: &OwnedFd, d: &LinuxDevice) -> Result<()> {
    let path = d.path();
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => rustix::fs::FileType::CharacterDevice,
        LinuxDeviceType::B => rustix::fs::FileType::BlockDevice,
        LinuxDeviceType::P => rustix::fs::FileType::Fifo,
        LinuxDeviceType::A => {
            return Err(RuntimeError::Init(format!(
                "linux.devices: {} has type \"a\", which only device cgroup rules take",
                path.display()
            )))
        }
    };
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| RuntimeError::Init(format!("linux.devices: bad path {}", path.display())))?;
    let pfd = ensure_in_root(root, parent, false)?;
    let dir = in_root(root, parent, OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(err(format!("opening {}", parent.display())))?;
    drop(pfd);
    mknod_or_bind(
        &dir,
        name,
        kind,
        d.major() as u32,
        d.minor() as u32,
        d.file_mode().unwrap_or(0o666),
        d.uid().unwrap_or(0),
        d.gid().unwrap_or(0),
    )
}

#[allow(clippy::too_many_arguments)]
fn mknod_or_bind(
    dir: &OwnedFd,
    name: impl AsRef<OsStr>,
    kind: rustix::fs::FileType,
    major: u32,
    minor: u32,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let name = name.as_ref();
    let shown = Path::new(name).display().to_string();
    let _ = rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty());
    let dev = rustix::fs::makedev(major, minor);
    match rustix::fs::mknodat(dir, name, kind, Mode::from_raw_mode(mode & 0o7777), dev) {
        Ok(()) => {
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(err(format!("device {shown}")))?;
            rustix::fs::chmod(fd_path(&fd), Mode::from_raw_mode(mode & 0o7777))
                .map_err(err(format!("device {shown}")))?;
            rustix::fs::chown(
                fd_path(&fd),
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(err(format!("device {shown}")))?;
            Ok(())
        }
        // In a user namespace device nodes cannot be made: bind the host's.
        Err(rustix::io::Errno::PERM) => {
            let host = Path::new("/dev").join(name);
            let f = rustix::fs::openat(
                dir,
                name,
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o600),
            )
            .map_err(err(format!("device {shown}")))?;
            rustix::mount::mount_bind(&host, fd_path(&f))
                .map_err(err(format!("binding {}", host.display())))
        }
        Err(e) => Err(err(format!("device {shown}"))(e)),
    }
}

/// Makes the rootfs the root: pivot_root (or, with `no_pivot`, a move and chroot).
pub fn enter(rootfs: &Path, no_pivot: bool) -> Result<()> {
    rustix::process::chdir(rootfs).map_err(err("chdir to the rootfs"))?;
    if no_pivot {
        rustix::mount::mount_move(".", "/").map_err(err("moving the rootfs to /"))?;
        rustix::process::chroot(".").map_err(err("chroot"))?;
    } else {
        rustix::process::pivot_root(".", ".").map_err(err("pivot_root"))?;
        // The old root is stacked under the new one; detach it.
        rustix::mount::mount_change(
            ".",
            MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
        )
        .map_err(err("making the old root a slave"))?;
        rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(err("detaching the old root"))?;
    }
    rustix::process::chdir("/").map_err(err("chdir /"))?;
    Ok(())
}

/// After the pivot: masked paths, read-only paths, a read-only root.
pub fn finish(spec: &Spec) -> Result<()> {
    let root = open_root(Path::new("/"))?;
    if let Some(linux) = spec.linux() {
        for p in linux.masked_paths().iter().flatten() {
            mask(&root, Path::new(p))?;
        }
        for p in linux.readonly_paths().iter().flatten() {
            readonly(&root, Path::new(p))?;
        }
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        rustix::mount::mount_remount("/", MountFlags::BIND | MountFlags::RDONLY, "")
            .map_err(err("remounting / read-only"))?;
    }
    Ok(())
}

/// Hides a path: a read-only empty tmpfs over a directory, /dev/null over anything else.
/// The /dev/null bound is checked to be the real character device 1:3 first, so that a
/// /dev/null the container replaced by a symlink cannot turn the mask into a window.
fn mask(root: &OwnedFd, path: &Path) -> Result<()> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let target = match in_root(root, rel, OFlags::PATH | OFlags::NOFOLLOW) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(err(format!("masking {}", path.display()))(e)),
    };
    let st = rustix::fs::fstat(&target).map_err(err(format!("masking {}", path.display())))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
        rustix::mount::mount("tmpfs", fd_path(&target), "tmpfs", MountFlags::RDONLY, None)
            .map_err(err(format!("masking {}", path.display())))?;
        return Ok(());
    }
    let null = in_root(root, Path::new("dev/null"), OFlags::PATH | OFlags::NOFOLLOW)
        .map_err(err("opening /dev/null to mask paths"))?;
    let ns = rustix::fs::fstat(&null).map_err(err("checking /dev/null"))?;
    let is_null = rustix::fs::FileType::from_raw_mode(ns.st_mode)
        == rustix::fs::FileType::CharacterDevice
        && rustix::fs::major(ns.st_rdev) == 1
        && rustix::fs::minor(ns.st_rdev) == 3;
    if !is_null {
        return Err(RuntimeError::Init(
            "/dev/null in the container is not the null device: refusing to mask paths with it"
                .into(),
        ));
    }
    rustix::mount::mount_bind(fd_path(&null), fd_path(&target))
        .map_err(err(format!("masking {}", path.display())))
}

fn readonly(root: &OwnedFd, path: &Path) -> Result<()> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let target = match in_root(root, rel, OFlags::PATH | OFlags::NOFOLLOW) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(err(format!("read-only path {}", path.display()))(e)),
    };
    rustix::mount::mount_bind_recursive(fd_path(&target), fd_path(&target))
        .map_err(err(format!("read-only path {}", path.display())))?;
    let again = in_root(root, rel, OFlags::PATH | OFlags::NOFOLLOW)
        .map_err(err(format!("read-only path {}", path.display())))?;
    rustix::mount::mount_remount(
        fd_path(&again),
        MountFlags::BIND
            | MountFlags::RDONLY
            | MountFlags::NOSUID
            | MountFlags::NODEV
            | MountFlags::NOEXEC,
        "",
    )
    .map_err(err(format!("read-only path {}", path.display())))
}

/// Writes `linux.sysctl` values under /proc/sys (after the pivot: the container's /proc).
pub fn sysctl(spec: &Spec) -> Result<()> {
    for (k, v) in spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        if k.contains("..") || k.contains('/') && k.contains('.') {
            return Err(RuntimeError::Init(format!("linux.sysctl: bad key {k:?}")));
        }
        let path = Path::new("/proc/sys").join(k.replace('.', "/"));
        std::fs::write(&path, v.as_bytes())
            .map_err(|e| RuntimeError::Init(format!("linux.sysctl {k}={v}: {e}")))?;
    }
    Ok(())
}

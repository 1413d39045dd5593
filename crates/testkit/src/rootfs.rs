//! Offline builders: root filesystems, OCI layouts made by umoci, and skopeo copies.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::{require_tool, run};

/// Fills `dir` with a minimal busybox system: `bin/busybox` (a copy of the static
/// `/bin/busybox`), one symlink per applet (from `busybox --list-full`), a minimal
/// `etc/passwd` and `etc/group`, and a world-writable sticky `tmp`.
pub fn busybox_rootfs(dir: &Path) {
    let source = Path::new("/bin/busybox");
    let source = if source.exists() {
        source.to_path_buf()
    } else {
        require_tool("busybox")
    };
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).expect("create bin");
    fs::copy(&source, bin.join("busybox")).expect("copy busybox");
    fs::set_permissions(bin.join("busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    let applets = run(Command::new(&source).arg("--list-full"));
    for applet in applets.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if applet == "bin/busybox" {
            continue;
        }
        let link = dir.join(applet);
        fs::create_dir_all(link.parent().unwrap()).expect("create applet dir");
        if fs::symlink_metadata(&link).is_err() {
            symlink("/bin/busybox", &link).expect("create applet symlink");
        }
    }
    let etc = dir.join("etc");
    fs::create_dir_all(&etc).expect("create etc");
    fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(etc.join("group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    fs::create_dir_all(dir.join("root")).unwrap();
    fs::create_dir_all(dir.join("tmp")).unwrap();
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
}

/// Size of the sparse file in [`tricky_rootfs`] (only its last 4 KiB hold data).
pub const SPARSE_SIZE: u64 = 16 << 20;

/// The 240-character file name used in [`tricky_rootfs`] (under `long/`).
pub fn long_name() -> String {
    let mut name = "long-name-".to_string();
    while name.len() < 236 {
        name.push_str(&format!("{}", name.len() % 10));
    }
    name + ".txt"
}

/// Fills `dir` with the awkward cases layer tools get wrong:
///
/// * regular files: empty, small, 64 KiB + 1, and 3 MiB + 7 bytes of pseudo-random data,
///   a file mode 0600 (`private/key`) and a setuid file mode 04755 (`bin/suid`);
/// * nested dirs `a/b/c/d/deep.txt`, an empty dir `empty/`, names with spaces and UTF-8;
/// * a hardlink triple `links/hard-1`, `links/hard-2`, `a/b/hard-3`;
/// * symlinks: relative (`links/rel` → `../files/small.txt`), absolute (`links/abs` →
///   `/etc/passwd`), to a dir (`links/dir` → `../a`) and dangling (`links/dangling`);
/// * a 240-character name under `long/` (see [`long_name`]);
/// * `xattr/file` with `user.testkit=hello` (panics if the filesystem refuses user xattrs);
/// * `sparse/file`, [`SPARSE_SIZE`] bytes with only a 4 KiB tail written;
/// * a fifo `dev/fifo`;
/// * when run as root, `owned/file` and `owned/dir` owned by 1000:1000.
pub fn tricky_rootfs(dir: &Path) {
    let file = |rel: &str, data: &[u8]| {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    };
    file("files/empty", b"");
    file("files/small.txt", b"hello, layers\n");
    file("files/64k-plus-one", &pseudo_random(64 * 1024 + 1, 1));
    file("files/big.bin", &pseudo_random(3 * 1024 * 1024 + 7, 2));
    file("files/with space.txt", b"spaces\n");
    file("files/ünïcödé.txt", b"utf-8\n");
    let key = file("private/key", b"not really a key\n");
    fs::set_permissions(key, fs::Permissions::from_mode(0o600)).unwrap();
    let suid = file("bin/suid", b"#!/bin/sh\necho suid\n");
    fs::set_permissions(suid, fs::Permissions::from_mode(0o4755)).unwrap();
    file("a/b/c/d/deep.txt", b"deep\n");
    fs::create_dir_all(dir.join("empty")).unwrap();

    let hard = file("links/hard-1", b"one inode, three names\n");
    fs::hard_link(&hard, dir.join("links/hard-2")).unwrap();
    fs::hard_link(&hard, dir.join("a/b/hard-3")).unwrap();
    symlink("../files/small.txt", dir.join("links/rel")).unwrap();
    symlink("/etc/passwd", dir.join("links/abs")).unwrap();
    symlink("../a", dir.join("links/dir")).unwrap();
    symlink("does/not/exist", dir.join("links/dangling")).unwrap();

    file(&format!("long/{}", long_name()), b"long name\n");

    let xattr_file = file("xattr/file", b"has an xattr\n");
    rustix::fs::setxattr(
        &xattr_file,
        "user.testkit",
        b"hello",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "cannot set user.testkit on {}: {e} (the filesystem must support user xattrs; \
             point TMPDIR at ext4/xfs/btrfs)",
            xattr_file.display()
        )
    });

    let sparse = file("sparse/file", b"");
    let mut f = File::options().write(true).open(&sparse).unwrap();
    f.set_len(SPARSE_SIZE).unwrap();
    f.seek(SeekFrom::Start(SPARSE_SIZE - 4096)).unwrap();
    f.write_all(&pseudo_random(4096, 3)).unwrap();
    drop(f);

    fs::create_dir_all(dir.join("dev")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("dev/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo dev/fifo");
    fs::set_permissions(dir.join("dev/fifo"), fs::Permissions::from_mode(0o644)).unwrap();

    if rustix::process::geteuid().is_root() {
        let owned = file("owned/file", b"owned by 1000\n");
        fs::create_dir_all(dir.join("owned/dir")).unwrap();
        std::os::unix::fs::lchown(&owned, Some(1000), Some(1000)).unwrap();
        std::os::unix::fs::lchown(dir.join("owned/dir"), Some(1000), Some(1000)).unwrap();
    }
}

/// Deterministic, incompressible-looking bytes (xorshift64*).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Builds image `tag` in the OCI layout `layout` (created if absent) with umoci: one layer
/// per directory of `rootfs_layers`, in order, each made by unpacking the image so far,
/// copying the directory over the bundle's rootfs (`cp -a`) and repacking.
/// (`umoci insert` is avoided on purpose: it writes tar streams without a proper footer.)
pub fn umoci_image(layout: &Path, tag: &str, rootfs_layers: &[&Path]) {
    let umoci = require_tool("umoci");
    let image = format!("{}:{tag}", layout.display());
    if !layout.join("index.json").exists() {
        run(Command::new(&umoci).arg("init").arg("--layout").arg(layout));
    }
    run(Command::new(&umoci).args(["new", "--image", &image]));
    let work = tempfile::Builder::new()
        .prefix("testkit-umoci-")
        .tempdir()
        .expect("create umoci work dir");
    let rootless = !rustix::process::geteuid().is_root();
    for (i, layer) in rootfs_layers.iter().enumerate() {
        let bundle = work.path().join(format!("bundle-{i}"));
        let mut unpack = Command::new(&umoci);
        unpack.args(["unpack", "--image", &image]);
        if rootless {
            unpack.arg("--rootless");
        }
        run(unpack.arg(&bundle));
        let mut source = layer.as_os_str().to_owned();
        source.push("/.");
        run(Command::new("cp")
            .arg("-a")
            .arg(source)
            .arg(bundle.join("rootfs")));
        run(Command::new(&umoci)
            .args(["repack", "--image", &image])
            .arg(&bundle));
    }
}

/// Sets the image config's command (`umoci config --config.cmd ...`) of `layout:tag`.
pub fn umoci_set_cmd(layout: &Path, tag: &str, cmd: &[&str]) {
    let umoci = require_tool("umoci");
    let image = format!("{}:{tag}", layout.display());
    let mut command = Command::new(umoci);
    command.args(["config", "--image", &image]);
    for arg in cmd {
        command.arg(format!("--config.cmd={arg}"));
    }
    run(&mut command);
}

/// `skopeo copy SRC DST` (no signature policy; TLS verification off for `docker://` refs on
/// 127.0.0.1, which serve plain HTTP). Returns skopeo's stdout.
pub fn skopeo_copy(src: &str, dst: &str) -> String {
    skopeo_copy_with(src, dst, &[])
}

/// [`skopeo_copy`] with extra `skopeo copy` options, e.g. `["--dest-creds", "u:p"]`.
pub fn skopeo_copy_with(src: &str, dst: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new(require_tool("skopeo"));
    cmd.args(["--insecure-policy", "copy"]);
    if is_local_docker(src) {
        cmd.arg("--src-tls-verify=false");
    }
    if is_local_docker(dst) {
        cmd.arg("--dest-tls-verify=false");
    }
    cmd.args(extra).args([src, dst]);
    run(&mut cmd)
}

/// `skopeo inspect [--raw] REF` parsed as JSON (TLS verification off for local registries).
pub fn skopeo_inspect(reference: &str, extra: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(require_tool("skopeo"));
    cmd.args(["--insecure-policy", "inspect"]);
    if is_local_docker(reference) {
        cmd.arg("--tls-verify=false");
    }
    let out = run(cmd.args(extra).arg(reference));
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("skopeo inspect {reference} printed non-JSON ({e}):\n{out}"))
}

fn is_local_docker(reference: &str) -> bool {
    reference
        .strip_prefix("docker://")
        .is_some_and(|rest| rest.starts_with("127.0.0.1") || rest.starts_with("localhost"))
}

/// A fresh temporary directory (removed on drop), named for the test's benefit.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("testkit-{prefix}-"))
        .tempdir()
        .expect("create temp dir")
}

/// `dir/name`, created.
pub fn subdir(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    path
}

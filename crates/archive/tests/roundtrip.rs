//! pack_dir → unpack round trips, and interoperability with GNU tar both ways.

mod common;

use std::fs;
use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Stdio};

use archive::{pack_dir, unpack_layer, unpack_layers, Compression, PackOptions, UnpackOptions};
use common::*;

/// Packs with sparse entries on, so that the round trips check holes survive.
fn pack(src: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = PackOptions {
        sparse: true,
        ..PackOptions::default()
    };
    pack_dir(src, &mut out, &opts).unwrap();
    out
}

#[test]
fn default_packing_stores_files_with_holes_as_regular_files() {
    // Readers built on Go's archive/tar (umoci) refuse GNU sparse entries.
    let src = tempfile::tempdir().unwrap();
    let f = fs::File::create(src.path().join("holes")).unwrap();
    f.set_len(8 << 20).unwrap();
    drop(f);
    let mut out = Vec::new();
    pack_dir(src.path(), &mut out, &PackOptions::default()).unwrap();
    let mut ar = tar::Archive::new(Cursor::new(out));
    let e = ar
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap().ends_with("holes"))
        .unwrap();
    assert_eq!(e.header().entry_type(), tar::EntryType::Regular);
    assert_eq!(e.header().size().unwrap(), 8 << 20);
}

fn have_gnu_tar() -> bool {
    Command::new("tar")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("GNU tar"))
        .unwrap_or(false)
}

#[test]
fn pack_then_unpack_keeps_everything() {
    let src = tempfile::tempdir().unwrap();
    build_tree(src.path(), 1_000_000_000, false);
    let tar = pack(src.path());

    let area = Area::new();
    let stats = unpack_layer(&tar[..], &area.root(), &UnpackOptions::default()).unwrap();
    assert_eq!(stats.hardlinks, 2);
    assert_eq!(stats.xattrs_skipped, 0);
    let want = snapshot(src.path(), true);
    let got = snapshot(&area.root(), true);
    assert_eq!(got, want);
    assert!(is_sparse(&area.root().join("sparse")));
    assert!(
        want.keys().any(|k| k.len() > 255),
        "a path longer than 255 bytes"
    );
    // The binary xattr value came through intact.
    let x = xattr_list(&area.root().join("bin/tool"));
    assert_eq!(
        x,
        [("user.bin".to_string(), b"a\nb\0c\n17 path=x\n".to_vec())]
    );
}

#[test]
fn compressed_round_trips() {
    let src = tempfile::tempdir().unwrap();
    build_tree(src.path(), 1_000_000_000, false);
    let tar = pack(src.path());
    let want = snapshot(src.path(), true);
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let data = match c {
            Compression::None => tar.clone(),
            Compression::Gzip => gzip(&tar),
            Compression::Zstd => zstd(&tar),
        };
        assert_eq!(Compression::detect(&data), c);
        let area = Area::new();
        unpack_layers(
            vec![(format!("{c} layer"), Cursor::new(data))],
            &area.root(),
            &UnpackOptions::default(),
        )
        .unwrap();
        assert_eq!(snapshot(&area.root(), true), want, "{c}");
    }
}

#[test]
fn pack_writes_what_the_spec_asks() {
    let src = tempfile::tempdir().unwrap();
    build_tree(src.path(), 1_000_000_000, false);
    let tar = pack(src.path());
    let mut ar = tar::Archive::new(&tar[..]);
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(h.username_bytes().unwrap_or_default(), b"");
        assert_eq!(h.groupname_bytes().unwrap_or_default(), b"");
        if let Some(gnu) = h.as_gnu() {
            assert_eq!(gnu.atime().unwrap_or(0), 0);
            assert_eq!(gnu.ctime().unwrap_or(0), 0);
        }
        names.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
    }
    // Sorted by name within each directory, each directory followed by its content.
    let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(pos("bin/") < pos("bin/tool"));
    assert!(pos("bin/tool") < pos("bin/tool-link"));
    assert!(pos("bin/tool-link") < pos("deep/"));
    assert!(pos("deep/a/b/c/") < pos("deep/longlink"));
    assert!(pos("etc/tool-link2") < pos("lib"));
    let hl: Vec<_> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.header().entry_type() == tar::EntryType::Link)
        .map(|e| String::from_utf8_lossy(&e.link_name_bytes().unwrap()).into_owned())
        .collect();
    assert_eq!(hl, ["bin/tool", "bin/tool"]);
}

#[test]
fn gnu_tar_reads_what_we_pack() {
    if !have_gnu_tar() {
        eprintln!("skipped: no GNU tar");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    build_tree(src.path(), 1_000_000_000, false);
    let tar = pack(src.path());
    let area = Area::new();
    let mut child = Command::new("tar")
        .args([
            "-x",
            "--xattrs",
            "--xattrs-include=user.*",
            "-p",
            "-f",
            "-",
            "-C",
        ])
        .arg(area.root())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&tar).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(snapshot(&area.root(), true), snapshot(src.path(), true));
    assert!(is_sparse(&area.root().join("sparse")));
}

#[test]
fn we_read_what_gnu_tar_packs() {
    if !have_gnu_tar() {
        eprintln!("skipped: no GNU tar");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    build_tree(src.path(), 1_000_000_000, false);
    let want = snapshot(src.path(), true);
    for args in [
        &["--format=posix", "--sparse", "--sparse-version=1.0"][..],
        &["--format=posix", "--sparse", "--sparse-version=0.1"][..],
        &["--format=posix", "--sparse", "--sparse-version=0.0"][..],
        &["--format=gnu", "--sparse"][..],
        &["--format=posix"][..],
    ] {
        let out = Command::new("tar")
            .arg("-c")
            .args(args)
            .args(["--xattrs", "-f", "-", "-C"])
            .arg(src.path())
            .arg(".")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let area = Area::new();
        let stats = unpack_layer(&out.stdout[..], &area.root(), &UnpackOptions::default())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(stats.hardlinks, 2, "{args:?}");
        assert_eq!(snapshot(&area.root(), true), want, "{args:?}");
        if args.contains(&"--sparse") {
            assert!(is_sparse(&area.root().join("sparse")), "{args:?}");
        }
    }
}

#[test]
fn pax_sparse_handmade() {
    // PAX sparse 1.0 written by hand: map "2\n0\n3\n8192\n2\n" then the data.
    let mut data = b"2\n0\n3\n8192\n2\n".to_vec();
    data.resize(512, 0);
    data.extend_from_slice(b"abcXY");
    let mut t = Tar::new();
    t.pax(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"dir/real-name"),
        ("GNU.sparse.realsize", b"10000"),
    ]);
    t.file("GNUSparseFile.0/real-name", &data);
    let area = Area::new();
    unpack_layer(&t.finish()[..], &area.root(), &UnpackOptions::default()).unwrap();
    let got = fs::read(area.root().join("dir/real-name")).unwrap();
    assert_eq!(got.len(), 10000);
    assert_eq!(&got[..3], b"abc");
    assert!(got[3..8192].iter().all(|&b| b == 0));
    assert_eq!(&got[8192..8194], b"XY");
    assert!(got[8194..].iter().all(|&b| b == 0));
    assert!(!area.root().join("GNUSparseFile.0").exists());
}

#[test]
fn long_names_pax_and_gnu() {
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    let target = "t".repeat(180);
    let mut t = Tar::new();
    t.pax(&[("path", long.as_bytes())]);
    t.file("short-placeholder", b"pax");
    t.pax(&[("path", b"lnk"), ("linkpath", target.as_bytes())]);
    t.symlink("x", "y");
    // GNU long name ('L') and long link ('K') entries.
    let gnu_name = format!("{}/gnu", "g".repeat(130));
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    let mut name0 = gnu_name.clone().into_bytes();
    name0.push(0);
    t.raw(h, &name0);
    t.file("truncated", b"gnu");
    let area = Area::new();
    unpack_layer(&t.finish()[..], &area.root(), &UnpackOptions::default()).unwrap();
    assert_eq!(fs::read(area.root().join(&long)).unwrap(), b"pax");
    assert_eq!(
        fs::read_link(area.root().join("lnk"))
            .unwrap()
            .to_str()
            .unwrap(),
        target
    );
    assert_eq!(fs::read(area.root().join(&gnu_name)).unwrap(), b"gnu");
    assert!(!area.root().join("truncated").exists());
}

#[test]
fn pax_times_owner_and_xattrs_apply() {
    let mut t = Tar::new();
    t.pax(&[
        ("mtime", b"1234567890.5"),
        ("uid", b"3000000"),
        ("gid", b"3000001"),
        ("SCHILY.xattr.user.k", b"v\nw"),
    ]);
    t.file("f", b"x");
    let area = Area::new();
    unpack_layer(&t.finish()[..], &area.root(), &UnpackOptions::default()).unwrap();
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(area.root().join("f")).unwrap();
    assert_eq!(md.mtime(), 1234567890);
    assert_eq!(md.mtime_nsec(), 500_000_000);
    if is_root() {
        assert_eq!((md.uid(), md.gid()), (3000000, 3000001));
    }
    assert_eq!(
        xattr_list(&area.root().join("f")),
        [("user.k".to_string(), b"v\nw".to_vec())]
    );
}

#[test]
fn privileged_xattrs_as_root_and_refusals_are_not_fatal() {
    if !is_root() {
        eprintln!("skipped: not root");
        return;
    }
    // File capabilities (v2): effective, permitted = CAP_DAC_OVERRIDE | CAP_FOWNER (0x0a, a
    // newline byte in the value).
    let cap: [u8; 20] = [
        0x01, 0, 0, 0x02, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut t = Tar::new();
    t.pax(&[
        ("SCHILY.xattr.security.capability", &cap[..]),
        ("SCHILY.xattr.trusted.note", b"t"),
    ]);
    // Owned by someone else: the chown (which drops capabilities) must come first.
    t.file_owned("ping", b"bin", 0o755, 1000, 1000);
    // user.* attributes are refused on symbolic links: counted, not fatal.
    t.pax(&[("SCHILY.xattr.user.x", b"v")]);
    t.symlink("link", "ping");
    let area = Area::new();
    let stats = unpack_layer(&t.finish()[..], &area.root(), &UnpackOptions::default()).unwrap();
    assert_eq!(stats.xattrs_skipped, 1);
    let mut got = [0u8; 64];
    let n = rustix::fs::lgetxattr(
        area.root().join("ping"),
        "security.capability",
        &mut got[..],
    )
    .unwrap();
    assert_eq!(&got[..n], &cap[..]);
    let n = rustix::fs::lgetxattr(area.root().join("ping"), "trusted.note", &mut got[..]).unwrap();
    assert_eq!(&got[..n], b"t");

    // Strict mode turns the refusal into an error naming the entry and the attribute.
    let mut t = Tar::new();
    t.pax(&[("SCHILY.xattr.user.x", b"v")]);
    t.symlink("link", "ping");
    let area = Area::new();
    let opts = UnpackOptions {
        strict_xattrs: true,
        ..Default::default()
    };
    let err = unpack_layer(&t.finish()[..], &area.root(), &opts).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("\"link\"") && msg.contains("user.x"), "{msg}");
}

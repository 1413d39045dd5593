//! pack_dir output depends only on the tree. Alone in its test binary because it changes the
//! process umask.

mod common;

use archive::{pack_dir, PackOptions};
use common::*;

fn pack(src: &std::path::Path, opts: &PackOptions) -> Vec<u8> {
    let mut out = Vec::new();
    pack_dir(src, &mut out, opts).unwrap();
    out
}

#[test]
fn same_tree_same_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b_parent = tempfile::tempdir().unwrap();
    let b = b_parent.path().join("some/other/place");
    std::fs::create_dir_all(&b).unwrap();

    let old = rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o022));
    build_tree(a.path(), 1_000_000_000, false);
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
    build_tree(&b, 1_500_000_000, true);
    rustix::process::umask(old);

    let opts = PackOptions {
        mtime: Some(1_700_000_000),
        ..Default::default()
    };
    let ta = pack(a.path(), &opts);
    let tb = pack(&b, &opts);
    assert_eq!(ta.len(), tb.len());
    assert!(ta == tb, "packing the same tree twice gave different bytes");
    assert_eq!(pack(a.path(), &opts), ta, "packing is repeatable");

    // Without the override, the different times show.
    assert_ne!(
        pack(a.path(), &PackOptions::default()),
        pack(&b, &PackOptions::default())
    );

    // Clamping only lowers newer times.
    let clamp = PackOptions {
        mtime: Some(1_200_000_000),
        clamp_mtime: true,
        ..Default::default()
    };
    let ca = pack(a.path(), &clamp);
    let cb = pack(&b, &clamp);
    assert_ne!(ca, cb);
    let mut ar = tar::Archive::new(&cb[..]);
    for e in ar.entries().unwrap() {
        assert_eq!(e.unwrap().header().mtime().unwrap(), 1_200_000_000);
    }
}

#[test]
fn owner_override() {
    let a = tempfile::tempdir().unwrap();
    std::fs::write(a.path().join("f"), b"x").unwrap();
    if is_root() {
        std::os::unix::fs::chown(a.path().join("f"), Some(77), Some(88)).unwrap();
    }
    let opts = PackOptions {
        owner: Some((0, 0)),
        ..Default::default()
    };
    let t = pack(a.path(), &opts);
    let mut ar = tar::Archive::new(&t[..]);
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(
            (e.header().uid().unwrap(), e.header().gid().unwrap()),
            (0, 0)
        );
    }
}

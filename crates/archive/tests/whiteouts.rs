//! OCI whiteouts and opaque directories, across several layers.

mod common;

use std::fs;
use std::io::Cursor;

use archive::{unpack_layers, UnpackOptions};
use common::*;

fn base_layer() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("a/")
        .file("a/x", b"x")
        .dir("a/y/")
        .file("a/y/z", b"z")
        .file("b", b"b")
        .file("keep", b"keep")
        .dir("d/")
        .file("d/old", b"old")
        .dir("d/sub/")
        .file("d/sub/old2", b"old2")
        .dir("d/sub/deep/")
        .file("d/sub/deep/f", b"f");
    t.finish()
}

fn apply(area: &Area, layers: Vec<Vec<u8>>) -> archive::UnpackStats {
    let layers = layers
        .into_iter()
        .enumerate()
        .map(|(i, l)| (format!("layer {i}"), Cursor::new(l)))
        .collect();
    unpack_layers(layers, &area.root(), &UnpackOptions::default()).unwrap()
}

fn names(area: &Area) -> Vec<String> {
    snapshot(&area.root(), false).into_keys().collect()
}

#[test]
fn whiteouts_remove_lower_entries() {
    let area = Area::new();
    let mut t = Tar::new();
    t.file("a/.wh.x", b"").file(".wh.b", b"").file(".wh.d", b"");
    let stats = apply(&area, vec![base_layer(), t.finish()]);
    assert_eq!(stats.whiteouts, 3);
    assert_eq!(names(&area), ["a", "a/y", "a/y/z", "keep"]);
}

#[test]
fn whiteout_of_missing_things_is_harmless() {
    let area = Area::new();
    let mut t = Tar::new();
    t.file(".wh.nothing", b"")
        .file("nodir/.wh.x", b"")
        .file("nodir/.wh..wh..opq", b"")
        .file("keep/.wh.x", b"");
    apply(&area, vec![base_layer(), t.finish()]);
    assert!(area.root().join("keep").is_file());
    assert!(!area.root().join("nodir").exists());
}

#[test]
fn opaque_directory_keeps_only_this_layers_entries() {
    let area = Area::new();
    // Entries of the layer both before and after the marker, and a lower directory
    // re-declared by this layer (its lower content must go, its new content stay).
    let mut t = Tar::new();
    t.dir("d/")
        .file("d/before", b"before")
        .dir("d/sub/")
        .file("d/sub/newer", b"newer")
        .file("d/.wh..wh..opq", b"")
        .file("d/after", b"after")
        .dir("d/sub2/")
        .file("d/sub2/n", b"n");
    apply(&area, vec![base_layer(), t.finish()]);
    let got: Vec<String> = names(&area)
        .into_iter()
        .filter(|n| n.starts_with("d/") || n == "d")
        .collect();
    assert_eq!(
        got,
        [
            "d",
            "d/after",
            "d/before",
            "d/sub",
            "d/sub/newer",
            "d/sub2",
            "d/sub2/n"
        ]
    );
    // Outside the opaque directory nothing changed.
    assert_eq!(fs::read(area.root().join("a/y/z")).unwrap(), b"z");
}

#[test]
fn opaque_marker_first_then_entries() {
    let area = Area::new();
    let mut t = Tar::new();
    t.file("d/.wh..wh..opq", b"").file("d/new", b"new");
    apply(&area, vec![base_layer(), t.finish()]);
    let got: Vec<String> = names(&area)
        .into_iter()
        .filter(|n| n.starts_with("d/"))
        .collect();
    assert_eq!(got, ["d/new"]);
}

#[test]
fn opaque_root() {
    let area = Area::new();
    let mut t = Tar::new();
    t.file("fresh", b"1").file(".wh..wh..opq", b"");
    apply(&area, vec![base_layer(), t.finish()]);
    assert_eq!(names(&area), ["fresh"]);
}

#[test]
fn whiteout_spares_entries_of_its_own_layer() {
    let area = Area::new();
    let mut t = Tar::new();
    // Replace directory `a` by a fresh one: whiteout first (the usual order), then content.
    t.file(".wh.a", b"")
        .dir("a/")
        .file("a/fresh", b"fresh")
        // Same layer, whiteout after the entry: the entry stays.
        .file("c", b"c")
        .file(".wh.c", b"");
    apply(&area, vec![base_layer(), t.finish()]);
    let got: Vec<String> = names(&area)
        .into_iter()
        .filter(|n| n.starts_with('a') || n == "c")
        .collect();
    assert_eq!(got, ["a", "a/fresh", "c"]);
}

#[test]
fn whiteout_files_never_appear_and_aufs_metadata_is_skipped() {
    let area = Area::new();
    let mut t = Tar::new();
    t.dir(".wh..wh.plnk/")
        .file(".wh..wh.plnk/123.456", b"x")
        .file(".wh..wh.aufs", b"")
        .file("a/.wh.x", b"");
    let stats = apply(&area, vec![base_layer(), t.finish()]);
    assert!(stats.skipped >= 3, "{stats:?}");
    for n in names(&area) {
        assert!(!n.contains(".wh."), "{n}");
    }
}

#[test]
fn gzip_and_zstd_layers_in_sequence() {
    let area = Area::new();
    let mut l2 = Tar::new();
    l2.file("a/.wh.x", b"").file("from-gzip", b"g");
    let mut l3 = Tar::new();
    l3.file("from-zstd", b"z").file(".wh.keep", b"");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut l4 = Tar::new();
    l4.file("big", &big);
    let stats = apply(
        &area,
        vec![
            base_layer(),
            gzip(&l2.finish()),
            zstd(&l3.finish()),
            gzip(&l4.finish()),
        ],
    );
    assert_eq!(stats.whiteouts, 2);
    let root = area.root();
    assert!(!root.join("a/x").exists());
    assert!(!root.join("keep").exists());
    assert_eq!(fs::read(root.join("from-gzip")).unwrap(), b"g");
    assert_eq!(fs::read(root.join("from-zstd")).unwrap(), b"z");
    assert_eq!(fs::read(root.join("big")).unwrap(), big);
}

#[test]
fn corrupt_layer_reports_its_label() {
    let area = Area::new();
    let mut data = gzip(&base_layer());
    let n = data.len();
    data[n - 6] ^= 0xff; // break the CRC
    let layers = vec![
        ("layer 0 (ok)".to_string(), Cursor::new(gzip(&base_layer()))),
        ("layer 1 (sha256:bad)".to_string(), Cursor::new(data)),
    ];
    let err = unpack_layers(layers, &area.root(), &UnpackOptions::default()).unwrap_err();
    assert!(err.to_string().starts_with("layer 1 (sha256:bad)"), "{err}");
}

#[test]
fn whiteout_after_this_layers_children_keeps_them() {
    let area = Area::new();
    let mut t = Tar::new();
    // d is not declared by this layer, but d/new is: only what lower layers left goes.
    t.file("d/new", b"new").file(".wh.d", b"");
    apply(&area, vec![base_layer(), t.finish()]);
    let got: Vec<String> = names(&area)
        .into_iter()
        .filter(|n| n.starts_with("d/"))
        .collect();
    assert_eq!(got, ["d/new"]);
}

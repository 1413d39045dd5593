//! The `fluke` binary against a real registry behind testkit's `FaultProxy`: a pull whose
//! layer download is cut mid-way resumes and leaves a consistent store; a push whose upload
//! connection is reset is redone; a corrupted layer is refused and leaves nothing behind.

mod common;

use std::path::Path;

use common::*;
use testkit::{Fault, FaultProxy, Registry, Rule};

/// A registry with `demo/bb:1` (busybox, imported and pushed by fluke) and the proxy in
/// front of it. Returns the image's manifest digest and its layer's digest and size.
fn seeded(tmp: &Path) -> (Registry, FaultProxy, String, String, u64) {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    let tree = busybox_tree(tmp);
    let store = tmp.join("seed-store");
    let digest = ok(fluke(
        &store,
        &["image", "import", tree.to_str().unwrap(), "demo/bb:1"],
    ))
    .trim()
    .to_string();
    ok(fluke(
        &store,
        &["image", "push", "demo/bb:1", &reg.docker_ref("demo/bb:1")],
    ));
    let inspect: serde_json::Value = serde_json::from_str(&ok(fluke(
        &store,
        &["image", "inspect", &reg.docker_ref("demo/bb:1")],
    )))
    .unwrap();
    let layer = &inspect["LayersData"][0];
    let layer_digest = layer["Digest"].as_str().unwrap().to_string();
    let size = layer["Size"].as_u64().unwrap();
    assert!(size > 100_000, "busybox layer is only {size} bytes");
    (reg, proxy, digest, layer_digest, size)
}

fn assert_consistent(store: &Path) {
    let out = ok(fluke(store, &["image", "fsck", "--no-repair"]));
    assert!(out.contains("store is consistent"), "{out}");
    assert!(leftovers(store).is_empty(), "{:?}", leftovers(store));
}

#[test]
fn pull_with_a_layer_cut_mid_way_resumes_and_the_store_is_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let (_reg, proxy, digest, layer, size) = seeded(tmp.path());
    let cut = size / 3;
    proxy.add(Rule::new("GET", &format!("/blobs/{layer}"), Fault::CutAfter(cut)).times(1));

    let store = tmp.path().join("store");
    let pulled = ok(fluke(
        &store,
        &["image", "pull", &format!("{}/demo/bb:1", proxy.addr())],
    ));
    assert_eq!(pulled.trim(), digest);
    let gets = proxy.matching("GET", &format!("/blobs/{layer}"));
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[0].body_sent, cut);
    assert_eq!(gets[1].range, Some(format!("bytes={cut}-")));
    assert_eq!(gets[1].status, Some(206));
    assert_consistent(&store);

    // The pulled image unpacks to the tree that was imported.
    let out = tmp.path().join("unpacked");
    ok(fluke(
        &store,
        &[
            "image",
            "unpack",
            &format!("{}/demo/bb:1", proxy.addr()),
            out.to_str().unwrap(),
        ],
    ));
    testkit::assert_same_dirs(&tmp.path().join("busybox-rootfs"), &out);
}

#[test]
fn pull_with_a_cut_and_the_range_ignored_still_ingests_the_right_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (_reg, proxy, digest, layer, size) = seeded(tmp.path());
    let path = format!("/blobs/{layer}");
    proxy.add(Rule::new("GET", &path, Fault::CutAfter(size / 2)).times(1));
    proxy.add(Rule::new("GET", &path, Fault::IgnoreRange));

    let store = tmp.path().join("store");
    let pulled = ok(fluke(
        &store,
        &["image", "pull", &proxy.docker_ref("demo/bb:1")],
    ));
    assert_eq!(pulled.trim(), digest);
    let gets = proxy.matching("GET", &path);
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[1].range, Some(format!("bytes={}-", size / 2)));
    assert_eq!((gets[1].status, gets[1].body_sent), (Some(200), size));
    assert_consistent(&store);
}

#[test]
fn push_with_the_upload_connection_reset_is_redone() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, proxy, digest, layer, _) = seeded(tmp.path());
    proxy.add(Rule::new("PUT", "/blobs/uploads/", Fault::Reset).times(1));

    // Push the image under a new name through the proxy: the blobs are new there (no
    // mount: fluke has no source repository on that registry to mount from).
    ok(fluke(
        &tmp.path().join("seed-store"),
        &[
            "image",
            "push",
            "demo/bb:1",
            &proxy.docker_ref("other/bb:2"),
        ],
    ));
    let puts = proxy.matching("PUT", "/blobs/uploads/");
    assert_eq!(puts[0].status, None, "{puts:#?}");
    assert!(puts[1..].iter().all(|p| p.status == Some(201)), "{puts:#?}");

    // In the registry itself: the same manifest digest, and the layer pulls and verifies.
    assert_eq!(skopeo_digest(&reg.docker_ref("other/bb:2")), digest);
    let store = tmp.path().join("store");
    let pulled = ok(fluke(
        &store,
        &["image", "pull", &reg.docker_ref("other/bb:2")],
    ));
    assert_eq!(pulled.trim(), digest);
    assert!(store_has_blob(&store, &layer));
    assert_consistent(&store);
}

#[test]
fn pull_of_a_corrupted_layer_fails_naming_it_and_leaves_the_store_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let (_reg, proxy, _, layer, _) = seeded(tmp.path());
    proxy.add(Rule::new(
        "GET",
        &format!("/blobs/{layer}"),
        Fault::Corrupt(4096),
    ));

    let store = tmp.path().join("store");
    let err = fails(fluke(
        &store,
        &["image", "pull", &proxy.docker_ref("demo/bb:1")],
    ));
    assert!(err.contains(&layer), "{err}");
    assert!(!store_has_blob(&store, &layer));
    assert_consistent(&store);
}

/// Whether the store's blob directory holds `digest` (`sha256:HEX`).
fn store_has_blob(store: &Path, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    walk(store)
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n == hex) && p.is_file())
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

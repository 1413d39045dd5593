//! Bad input and interrupted work: clear errors, and nothing half-written.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use testkit::Registry;

/// One line of error on stderr, starting with `fluke: error:`.
fn one_line(err: &str) -> &str {
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line of error, got:\n{err}");
    assert!(lines[0].starts_with("fluke: error: "), "{err}");
    lines[0]
}

/// A file of incompressible bytes, so that pulls of it take a while.
fn noise(path: &Path, mib: usize) {
    let mut f = fs::File::create(path).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
}

#[test]
fn a_corrupt_blob_from_the_registry_is_named_and_leaves_nothing() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let tree = busybox_tree(t);
    let src = t.join("src");
    let digest = ok(fluke(
        &src,
        &["image", "import", tree.to_str().unwrap(), "bad/blob:1"],
    ));
    let _ = digest;
    let remote = format!("docker://{}/bad/blob:1", reg.addr());
    ok(fluke(&src, &["image", "push", "bad/blob:1", &remote]));
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(fluke(&src, &["image", "inspect", "bad/blob:1"]))).unwrap();
    let layer = inspect["Layers"][0].as_str().unwrap().to_string();
    let hex = layer.trim_start_matches("sha256:");
    // Flip bytes of the stored blob: the registry serves it as it is.
    let data = reg.storage_dir().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    bytes[mid + 1] ^= 0xff;
    fs::write(&data, bytes).unwrap();

    let dst = t.join("dst");
    let err = fails(fluke(&dst, &["image", "pull", &remote]));
    let line = one_line(&err);
    assert!(line.contains(&layer), "{line}");
    assert!(line.contains("hashes to"), "{line}");
    assert!(!dst.join("blobs/sha256").join(hex).exists());
    assert!(leftovers(&dst).is_empty(), "{:?}", leftovers(&dst));
    let ingest: Vec<_> = fs::read_dir(dst.join("ingest"))
        .map(|r| r.collect())
        .unwrap_or_default();
    assert!(ingest.is_empty(), "{ingest:?}");
    assert!(!ok(fluke(&dst, &["image", "ls"])).contains("bad/blob"));
    // Into a layout: the error is the same and no layout is left behind.
    let layout = t.join("layout");
    let err = fails(fluke(
        &dst,
        &[
            "image",
            "copy",
            &remote,
            &format!("oci:{}:x", layout.display()),
        ],
    ));
    assert!(one_line(&err).contains(&layer));
    assert!(
        !layout.exists(),
        "a half-written layout was left at {}",
        layout.display()
    );
}

#[test]
fn kill_9_during_a_pull_leaves_a_store_that_fsck_accepts_and_the_next_pull_completes() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let tree = t.join("big");
    fs::create_dir_all(&tree).unwrap();
    for i in 0..3 {
        noise(&tree.join(format!("noise{i}")), 24);
    }
    let src = t.join("src");
    ok(fluke(
        &src,
        &["image", "import", tree.to_str().unwrap(), "big/one:1"],
    ));
    let remote = format!("docker://{}/big/one:1", reg.addr());
    ok(fluke(&src, &["image", "push", "big/one:1", &remote]));

    let dst = t.join("dst");
    for delay_ms in [5u64, 30, 60, 120, 250] {
        let mut child = Command::new(fluke_bin())
            .arg("--root")
            .arg(&dst)
            .args(["-q", "image", "pull", &remote])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Whatever was interrupted, the store holds only whole blobs.
        let report = ok(fluke(&dst, &["image", "fsck"]));
        assert!(!report.contains("corrupt"), "{report}");
        assert!(ok(fluke(&dst, &["image", "fsck", "--no-repair"])).contains("store is consistent"));
    }
    let digest = ok(fluke(&dst, &["image", "pull", &remote]));
    assert_eq!(digest.trim(), skopeo_digest(&remote));
    let out = t.join("out");
    ok(fluke(
        &dst,
        &["image", "unpack", &remote[9..], out.to_str().unwrap()],
    ));
    testkit::assert_same_dirs(&tree, &out);
    assert!(ok(fluke(&dst, &["image", "fsck", "--no-repair"])).contains("store is consistent"));
}

#[test]
fn fsck_finds_and_repairs_a_damaged_store() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let store = t.join("store");
    let tree = busybox_tree(t);
    ok(fluke(
        &store,
        &["image", "import", tree.to_str().unwrap(), "fsck/me:1"],
    ));
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(fluke(&store, &["image", "inspect", "fsck/me:1"]))).unwrap();
    let layer = inspect["Layers"][0].as_str().unwrap().to_string();
    let blob = store
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&blob).unwrap();
    bytes[100] ^= 1;
    fs::write(&blob, bytes).unwrap();
    let err = fails(fluke(&store, &["image", "fsck", "--no-repair"]));
    assert!(err.contains("problems"), "{err}");
    let out = ok(fluke(&store, &["image", "fsck"]));
    assert!(out.contains(&format!("corrupt blob {layer}")), "{out}");
    assert!(out.contains("image docker.io/fsck/me:1"), "{out}");
    assert!(ok(fluke(&store, &["image", "fsck", "--no-repair"])).contains("store is consistent"));
    assert!(!ok(fluke(&store, &["image", "ls"])).contains("fsck/me"));
}

#[test]
fn bad_references_and_transports_get_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let dest = tmp.path().join("dest");
    let d = format!("oci:{}", dest.display());
    let cases: &[(&[&str], &str)] = &[
        (&["image", "copy", "ftp:x", &d], "unknown transport \"ftp\""),
        (&["image", "copy", "docker:busybox", &d], "two slashes"),
        (
            &["image", "copy", "docker://Bad/Name", &d],
            "invalid reference \"Bad/Name\"",
        ),
        (&["image", "copy", "docker://x/y:-tag", &d], "invalid tag"),
        (
            &["image", "copy", "docker://x/y@sha256:123", &d],
            "sha256:123",
        ),
        (
            &["image", "inspect", "missing/image:1"],
            "store:missing/image:1: image not found",
        ),
        (
            &["image", "copy", "oci:/nonexistent/layout:x", &d],
            "/nonexistent/layout: not an OCI image layout",
        ),
        (
            &["image", "load", "-i", "/nonexistent.tar"],
            "/nonexistent.tar",
        ),
        (
            &["image", "import", "/nonexistent-dir", "x:1"],
            "/nonexistent-dir",
        ),
    ];
    for (args, want) in cases {
        let err = fails(fluke(&root, args));
        let line = one_line(&err);
        assert!(line.contains(want), "{args:?}: {line}");
    }
    assert!(!dest.exists(), "a failed copy left {}", dest.display());
}

#[test]
fn malformed_archives_and_manifests_are_refused_with_their_names() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let store = t.join("store");
    let tree = busybox_tree(t);
    ok(fluke(
        &store,
        &["image", "import", tree.to_str().unwrap(), "good/one:1"],
    ));

    // A truncated docker-archive.
    let full = t.join("full.tar");
    ok(fluke(
        &store,
        &["image", "save", "good/one:1", "-o", full.to_str().unwrap()],
    ));
    let bytes = fs::read(&full).unwrap();
    let cut = t.join("cut.tar");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let other = t.join("other-store");
    let err = fails(fluke(
        &other,
        &["image", "load", "-i", cut.to_str().unwrap()],
    ));
    assert!(one_line(&err).contains("cut.tar"), "{err}");
    assert!(!ok(fluke(&other, &["image", "ls"])).contains("good/one"));

    // An OCI layout whose manifest is not JSON, and one with a media type fluke cannot read.
    for (name, body, media_type, want) in [
        (
            "notjson",
            &b"{not json"[..],
            "application/vnd.oci.image.manifest.v1+json",
            "invalid manifest",
        ),
        (
            "schema1",
            &br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#[..],
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "unsupported media type \"application/vnd.docker.distribution.manifest.v1+prettyjws\"",
        ),
    ] {
        let layout = t.join(name);
        let digest = content::Digest::sha256_of(body);
        fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        fs::write(layout.join("blobs/sha256").join(digest.hex()), body).unwrap();
        fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        fs::write(
            layout.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{media_type}","digest":"{digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"x"}}}}]}}"#,
                body.len()
            ),
        )
        .unwrap();
        let dest = t.join(format!("{name}-out"));
        let err = fails(fluke(
            &store,
            &[
                "image",
                "copy",
                &format!("oci:{}:x", layout.display()),
                &format!("dir:{}", dest.display()),
            ],
        ));
        let line = one_line(&err);
        assert!(line.contains(want), "{line}");
        assert!(line.contains(name), "{line}");
        assert!(
            !dest.exists(),
            "{name}: a failed copy left {}",
            dest.display()
        );
    }
}

#[test]
fn rm_tag_and_gc_keep_shared_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let store = t.join("store");
    let tree = busybox_tree(t);
    ok(fluke(
        &store,
        &["image", "import", tree.to_str().unwrap(), "keep/a:1"],
    ));
    ok(fluke(
        &store,
        &["image", "tag", "keep/a:1", "keep/b:2", "example.com/c:3"],
    ));
    let ls = ok(fluke(&store, &["image", "ls"]));
    for n in ["docker.io/keep/a", "docker.io/keep/b", "example.com/c"] {
        assert!(ls.contains(n), "{ls}");
    }
    let blobs = || fs::read_dir(store.join("blobs/sha256")).unwrap().count();
    let before = blobs();
    ok(fluke(&store, &["image", "rm", "keep/a:1", "keep/b:2"]));
    assert_eq!(
        blobs(),
        before,
        "blobs still used by example.com/c:3 were removed"
    );
    ok(fluke(&store, &["image", "rm", "example.com/c:3"]));
    assert_eq!(blobs(), 0);
    let err = fails(fluke(&store, &["image", "rm", "keep/a:1"]));
    assert!(one_line(&err).contains("image not found"), "{err}");
}

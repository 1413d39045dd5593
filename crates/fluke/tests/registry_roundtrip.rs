//! fluke against a real registry (Debian's docker-registry on 127.0.0.1) and real peers.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use testkit::Registry;

fn import(root: &Path, tree: &Path, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["image", "import", tree.to_str().unwrap(), name];
    args.extend_from_slice(extra);
    ok(fluke(root, &args)).trim().to_string()
}

#[test]
fn push_pull_unpack_round_trip_keeps_the_tree() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tricky");
    testkit::tricky_rootfs(&tree);
    let a = tmp.path().join("store-a");
    let digest = import(
        &a,
        &tree,
        "demo/tricky:1",
        &["--label", "k=v", "--env", "A=1"],
    );
    let remote = format!("docker://{}/demo/tricky:1", reg.addr());
    ok(fluke(&a, &["image", "push", "demo/tricky:1", &remote]));

    // skopeo sees the same manifest digest fluke computed.
    assert_eq!(skopeo_digest(&remote), digest);

    // Pulled into a fresh store and unpacked, the tree is the one imported.
    let b = tmp.path().join("store-b");
    let pulled = ok(fluke(&b, &["image", "pull", &remote[9..]]));
    assert_eq!(pulled.trim(), digest);
    let out = tmp.path().join("unpacked");
    ok(fluke(
        &b,
        &[
            "image",
            "unpack",
            &format!("{}/demo/tricky:1", reg.addr()),
            out.to_str().unwrap(),
        ],
    ));
    testkit::assert_same_dirs(&tree, &out);
    assert!(ok(fluke(&b, &["image", "fsck", "--no-repair"])).contains("store is consistent"));
}

#[test]
fn skopeo_pulls_what_fluke_pushed_and_umoci_unpacks_the_same_tree() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tricky");
    testkit::tricky_rootfs(&tree);
    let store = tmp.path().join("store");
    import(&store, &tree, "demo/x:1", &[]);
    let remote = format!("docker://{}/demo/x:1", reg.addr());
    ok(fluke(&store, &["image", "push", "demo/x:1", &remote]));

    let layout = tmp.path().join("layout");
    ok(skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{}:x", layout.display()),
    ]));
    testkit::require_tool("umoci");
    let bundle = tmp.path().join("bundle");
    sh(&format!(
        "umoci unpack --image {}:x {}",
        layout.display(),
        bundle.display()
    ));
    let ours = tmp.path().join("ours");
    ok(fluke(
        &store,
        &[
            "image",
            "unpack",
            &format!("oci:{}:x", layout.display()),
            ours.to_str().unwrap(),
        ],
    ));
    testkit::assert_same_dirs(&bundle.join("rootfs"), &ours);
    testkit::assert_same_dirs(&tree, &ours);
}

#[test]
fn umoci_images_round_trip_through_every_transport_digest_identical() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let l1 = t.join("layer1");
    testkit::busybox_rootfs(&l1);
    let l2 = t.join("layer2");
    testkit::tricky_rootfs(&l2);
    let src_layout = t.join("umoci");
    testkit::umoci_image(&src_layout, "v1", &[l1.as_path(), l2.as_path()]);
    let src = format!("oci:{}:v1", src_layout.display());
    let want = skopeo_digest(&src);
    let store = t.join("store");

    // oci → dir → oci-archive → registry → store → oci: the manifest never changes.
    let hops = [
        format!("dir:{}", t.join("dir").display()),
        format!("oci-archive:{}:v1", t.join("img.tar").display()),
        format!("docker://{}/round/trip:v1", reg.addr()),
        "store:round/trip:v1".to_string(),
        format!("oci:{}:back", t.join("back").display()),
    ];
    let mut from = src.clone();
    for hop in &hops {
        ok(fluke(&store, &["image", "copy", &from, hop]));
        let got = if let Some(name) = hop.strip_prefix("store:") {
            let out = ok(fluke(&store, &["image", "inspect", name]));
            serde_json::from_str::<serde_json::Value>(&out).unwrap()["Digest"]
                .as_str()
                .unwrap()
                .to_string()
        } else {
            skopeo_digest(hop)
        };
        assert_eq!(got, want, "digest changed on the way to {hop}");
        from = hop.clone();
    }
    // skopeo reads every layout fluke wrote, and the trees are the same as umoci's.
    let ours = t.join("ours");
    ok(fluke(
        &store,
        &["image", "unpack", &from, ours.to_str().unwrap()],
    ));
    let theirs = t.join("theirs");
    sh(&format!(
        "umoci unpack --image {}:v1 {}",
        src_layout.display(),
        theirs.display()
    ));
    testkit::assert_same_dirs(&theirs.join("rootfs"), &ours);
}

#[test]
fn docker_archives_go_both_ways_with_skopeo_and_podman() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let store = t.join("store");
    let tree = busybox_tree(t);
    import(&store, &tree, "demo/bb:1", &["--cmd", "/bin/sh"]);

    // fluke saves; skopeo reads the archive back into a layout, fluke unpacks it identically.
    let archive = t.join("bb.tar");
    ok(fluke(
        &store,
        &[
            "image",
            "save",
            "demo/bb:1",
            "-o",
            archive.to_str().unwrap(),
        ],
    ));
    let layout = t.join("from-skopeo");
    ok(skopeo(&[
        "copy",
        &format!("docker-archive:{}", archive.display()),
        &format!("oci:{}:bb", layout.display()),
    ]));
    let out = t.join("out");
    ok(fluke(
        &store,
        &[
            "image",
            "unpack",
            &format!("oci:{}:bb", layout.display()),
            out.to_str().unwrap(),
        ],
    ));
    testkit::assert_same_dirs(&tree, &out);

    // skopeo writes a docker-archive; fluke loads it under its name.
    let theirs = t.join("theirs.tar");
    ok(skopeo(&[
        "copy",
        &format!("oci:{}:bb", layout.display()),
        &format!(
            "docker-archive:{}:example.org/from/skopeo:2",
            theirs.display()
        ),
    ]));
    let loaded = ok(fluke(
        &store,
        &["image", "load", "-i", theirs.to_str().unwrap()],
    ));
    assert!(loaded.contains("example.org/from/skopeo:2"), "{loaded}");
    let out2 = t.join("out2");
    ok(fluke(
        &store,
        &[
            "image",
            "unpack",
            "example.org/from/skopeo:2",
            out2.to_str().unwrap(),
        ],
    ));
    testkit::assert_same_dirs(&tree, &out2);

    // podman accepts fluke's docker-archive and oci-archive, and pulls what fluke pushed.
    testkit::require_tool("podman");
    let podman_root = t.join("podman");
    let podman = |args: &[&str]| {
        let mut c = std::process::Command::new("podman");
        c.arg("--root")
            .arg(podman_root.join("root"))
            .arg("--runroot")
            .arg(podman_root.join("run"))
            .arg("--storage-driver")
            .arg("vfs")
            .args(args);
        c
    };
    ok(podman(&["load", "-i", archive.to_str().unwrap()]));
    let oci_archive = t.join("bb-oci.tar");
    ok(fluke(
        &store,
        &[
            "image",
            "save",
            "--format",
            "oci-archive",
            "demo/bb:1",
            "-o",
            oci_archive.to_str().unwrap(),
        ],
    ));
    ok(podman(&["load", "-i", oci_archive.to_str().unwrap()]));
    ok(fluke(
        &store,
        &[
            "image",
            "push",
            "demo/bb:1",
            &format!("docker://{}/demo/bb:1", reg.addr()),
        ],
    ));
    ok(podman(&[
        "pull",
        "--tls-verify=false",
        &format!("{}/demo/bb:1", reg.addr()),
    ]));
    let images = ok(podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert!(
        images.contains(&format!("{}/demo/bb:1", reg.addr())),
        "{images}"
    );
    assert!(images.contains("demo/bb:1"), "{images}");
    ok(podman(&["rmi", "-a", "-f"]));
}

#[test]
fn remote_inspect_downloads_no_layer() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let tree = busybox_tree(tmp.path());
    import(
        &store,
        &tree,
        "demo/i:1",
        &["--label", "role=test", "--env", "X=1"],
    );
    let remote = format!("docker://{}/demo/i:1", reg.addr());
    ok(fluke(&store, &["image", "push", "demo/i:1", &remote]));
    let layer = {
        let cfg: serde_json::Value =
            serde_json::from_str(&ok(fluke(&store, &["image", "inspect", "demo/i:1"]))).unwrap();
        cfg["Layers"][0].as_str().unwrap().to_string()
    };
    let before = reg.log().matches(&layer).count();

    let out: serde_json::Value =
        serde_json::from_str(&ok(fluke(&store, &["image", "inspect", &remote]))).unwrap();
    assert_eq!(out["Name"], format!("{}/demo/i", reg.addr()));
    assert_eq!(out["Labels"]["role"], "test");
    assert_eq!(out["Env"][0], "X=1");
    assert_eq!(out["RepoTags"][0], "1");
    assert_eq!(out["Layers"][0], layer.as_str());
    // Compare with skopeo's view field by field.
    let theirs: serde_json::Value =
        serde_json::from_str(&ok(skopeo(&["inspect", "--tls-verify=false", &remote]))).unwrap();
    for k in [
        "Name",
        "Digest",
        "RepoTags",
        "Created",
        "Labels",
        "Architecture",
        "Os",
        "Layers",
        "Env",
    ] {
        assert_eq!(out[k], theirs[k], "field {k}");
    }
    let raw = ok(fluke(&store, &["image", "inspect", "--raw", &remote]));
    assert_eq!(
        content::Digest::sha256_of(raw.trim_end().as_bytes()).to_string(),
        out["Digest"]
    );
    let config = ok(fluke(&store, &["image", "inspect", "--config", &remote]));
    assert!(config.contains("\"diff_ids\""), "{config}");

    let after = reg.log().matches(&layer).count();
    // The registry's access log names the layer only for the push's HEAD/PUT, never a GET
    // from inspect.
    assert_eq!(before, after, "inspect touched the layer blob");
}

#[test]
fn multi_platform_indexes_copy_one_or_all() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let store = t.join("store");
    let tree = busybox_tree(t);
    import(&store, &tree, "multi/a:amd64", &["--arch", "amd64"]);
    fs::write(tree.join("etc/marker"), "arm").unwrap();
    import(&store, &tree, "multi/a:arm64", &["--arch", "arm64"]);
    // An OCI layout holding both, and an index over them, built from fluke's own outputs.
    let layout = t.join("multi");
    ok(fluke(
        &store,
        &[
            "image",
            "copy",
            "store:multi/a:amd64",
            &format!("oci:{}:amd64", layout.display()),
        ],
    ));
    ok(fluke(
        &store,
        &[
            "image",
            "copy",
            "store:multi/a:arm64",
            &format!("oci:{}:arm64", layout.display()),
        ],
    ));
    add_oci_index(&layout, "multi", &[("amd64", "amd64"), ("arm64", "arm64")]);

    let remote = format!("docker://{}/multi/a:all", reg.addr());
    ok(fluke(
        &store,
        &[
            "image",
            "copy",
            "--all",
            &format!("oci:{}:multi", layout.display()),
            &remote,
        ],
    ));
    let raw = ok(fluke(&store, &["image", "inspect", "--raw", &remote]));
    assert!(
        raw.contains("application/vnd.oci.image.index.v1+json"),
        "{raw}"
    );

    // Without --all, the host's platform; with --override-arch, the other one.
    let one = t.join("one");
    ok(fluke(
        &store,
        &[
            "image",
            "copy",
            &remote,
            &format!("oci:{}:x", one.display()),
        ],
    ));
    let cfg = ok(fluke(
        &store,
        &[
            "image",
            "inspect",
            "--config",
            &format!("oci:{}:x", one.display()),
        ],
    ));
    assert!(cfg.contains("\"architecture\":\"amd64\""), "{cfg}");
    let arm = t.join("arm");
    ok(fluke(
        &store,
        &[
            "image",
            "copy",
            "--override-arch",
            "arm64",
            &remote,
            &format!("oci:{}:x", arm.display()),
        ],
    ));
    let out = t.join("arm-root");
    ok(fluke(
        &store,
        &[
            "image",
            "unpack",
            &format!("oci:{}:x", arm.display()),
            out.to_str().unwrap(),
        ],
    ));
    assert_eq!(fs::read_to_string(out.join("etc/marker")).unwrap(), "arm");
    // skopeo copies the whole index fluke pushed.
    ok(skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{}:all", t.join("sk").display()),
    ]));
    let err = fails(fluke(
        &store,
        &[
            "image",
            "copy",
            "--override-arch",
            "s390x",
            &remote,
            &format!("dir:{}", t.join("no").display()),
        ],
    ));
    assert!(err.contains("no image for platform linux/s390x"), "{err}");
    assert!(!t.join("no").join("manifest.json").exists());
}

#[test]
fn uploads_in_chunks_mount_across_repositories_and_skip_present_blobs() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let tree = tmp.path().join("tricky");
    testkit::tricky_rootfs(&tree);
    import(&store, &tree, "c/one:1", &[]);
    let one = format!("docker://{}/c/one:1", reg.addr());
    let mut c = fluke(
        &store,
        &["image", "push", "--chunk-size", "65536", "c/one:1", &one],
    );
    c.env_remove("FLUKE_QUIET");
    ok(c);
    assert_eq!(
        skopeo_digest(&one),
        ok(fluke(&store, &["image", "inspect", "c/one:1"]))
            .split("\"Digest\": \"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
    );
    // Same registry, other repository: blobs are mounted, not uploaded.
    let mut c = std::process::Command::new(fluke_bin());
    c.arg("--root").arg(&store).args([
        "image",
        "copy",
        &one,
        &format!("docker://{}/c/two:1", reg.addr()),
    ]);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("2 mounted"), "{err}");
    // Again: everything is already there.
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0 blobs copied, 2 skipped"), "{err}");
}

/// Adds to an OCI layout an index named `name` over its images `tags`, each marked with
/// the architecture given (what `docker buildx` or `podman manifest` would produce).
fn add_oci_index(layout: &Path, name: &str, tags: &[(&str, &str)]) {
    let index_path = layout.join("index.json");
    let mut top: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let entries = top["manifests"].as_array().unwrap().clone();
    let mut manifests = Vec::new();
    for (tag, arch) in tags {
        let e = entries
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == *tag)
            .unwrap_or_else(|| panic!("{tag} not in {}", layout.display()));
        manifests.push(serde_json::json!({
            "mediaType": e["mediaType"],
            "digest": e["digest"],
            "size": e["size"],
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let digest = content::Digest::sha256_of(&index);
    fs::write(layout.join("blobs/sha256").join(digest.hex()), &index).unwrap();
    top["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest.to_string(),
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": name},
        }));
    fs::write(&index_path, serde_json::to_vec(&top).unwrap()).unwrap();
}

#[test]
fn zstd_layers_push_pull_and_unpack() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let tree = t.join("tricky");
    testkit::tricky_rootfs(&tree);
    let a = t.join("a");
    let digest = import(&a, &tree, "z/std:1", &["--zstd"]);
    let info: serde_json::Value =
        serde_json::from_str(&ok(fluke(&a, &["image", "inspect", "z/std:1"]))).unwrap();
    assert_eq!(
        info["LayersData"][0]["MIMEType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let remote = format!("docker://{}/z/std:1", reg.addr());
    ok(fluke(&a, &["image", "push", "z/std:1", &remote]));
    // skopeo moves it unchanged.
    let layout = t.join("sk");
    ok(skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{}:z", layout.display()),
    ]));
    assert_eq!(
        skopeo_digest(&format!("oci:{}:z", layout.display())),
        digest
    );
    let b = t.join("b");
    ok(fluke(&b, &["image", "pull", &remote]));
    let out = t.join("out");
    ok(fluke(
        &b,
        &[
            "image",
            "unpack",
            &format!("{}/z/std:1", reg.addr()),
            out.to_str().unwrap(),
        ],
    ));
    testkit::assert_same_dirs(&tree, &out);
}

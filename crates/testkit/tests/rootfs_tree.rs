//! The offline builders and the tree digest: umoci layouts skopeo accepts, faithful copies
//! compare equal, changed copies do not.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use testkit::{
    assert_same_tree, busybox_rootfs, long_name, require_tool, run, skopeo_inspect, temp_dir,
    tree_diff, tree_digest, tree_digest_with, tricky_rootfs, umoci_image, umoci_set_cmd, Kind,
    TreeOptions, SPARSE_SIZE,
};

fn cp_a(from: &Path, to: &Path) {
    let mut source = from.as_os_str().to_owned();
    source.push("/.");
    fs::create_dir_all(to).unwrap();
    run(Command::new("cp").arg("-a").arg(source).arg(to));
}

#[test]
fn tricky_rootfs_has_the_awkward_cases() {
    let dir = temp_dir("tricky");
    tricky_rootfs(dir.path());
    let tree = tree_digest(dir.path());
    let get = |p: &str| {
        tree.get(Path::new(p))
            .unwrap_or_else(|| panic!("{p} missing"))
    };
    assert_eq!(get("bin/suid").mode, 0o4755);
    assert_eq!(get("private/key").mode, 0o600);
    assert_eq!(get("dev/fifo").kind, Kind::Fifo);
    assert_eq!(get("empty").kind, Kind::Dir);
    assert_eq!(get("files/big.bin").size, Some(3 * 1024 * 1024 + 7));
    assert_eq!(get("sparse/file").size, Some(SPARSE_SIZE));
    assert_eq!(
        get("links/rel").symlink_target.as_deref(),
        Some(Path::new("../files/small.txt"))
    );
    assert_eq!(
        get("links/abs").symlink_target.as_deref(),
        Some(Path::new("/etc/passwd"))
    );
    assert_eq!(get("xattr/file").xattrs["user.testkit"], b"hello");
    let group = Some(Path::new("a/b/hard-3").to_path_buf());
    for p in ["a/b/hard-3", "links/hard-1", "links/hard-2"] {
        assert_eq!(get(p).hardlink_group, group, "{p}");
    }
    assert_eq!(get("files/small.txt").hardlink_group, None);
    assert!(long_name().len() >= 200);
    get(&format!("long/{}", long_name()));
    // The sparse file really is sparse (allocated blocks well below its size).
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(dir.path().join("sparse/file")).unwrap();
    assert!(meta.blocks() * 512 < SPARSE_SIZE / 2);
}

#[test]
fn tree_digest_equal_for_cp_a_and_different_after_changes() {
    let work = temp_dir("tree");
    let a = work.path().join("a");
    tricky_rootfs(&a);
    busybox_rootfs(&a);
    let b = work.path().join("b");
    cp_a(&a, &b);
    let options = TreeOptions {
        mtimes: true,
        dir_mtimes: true,
    };
    assert_same_tree(
        &tree_digest_with(&a, options),
        &tree_digest_with(&b, options),
    );

    let original = tree_digest(&a);
    let check = |what: &str, change: &dyn Fn(&Path), expect: &str| {
        let c = work.path().join(what);
        cp_a(&a, &c);
        change(&c);
        let diffs = tree_diff(&original, &tree_digest(&c));
        assert_eq!(diffs.len(), 1, "{what}: {diffs:#?}");
        assert!(diffs[0].contains(expect), "{what}: {diffs:?}");
    };
    check(
        "content",
        &|c| fs::write(c.join("files/small.txt"), b"hello, layerz\n").unwrap(),
        "files/small.txt: sha256",
    );
    check(
        "mode",
        &|c| fs::set_permissions(c.join("bin/suid"), fs::Permissions::from_mode(0o755)).unwrap(),
        "bin/suid: mode 4755 != 0755",
    );
    check(
        "removed",
        &|c| fs::remove_dir(c.join("empty")).unwrap(),
        "empty: only in left",
    );
    check(
        "symlink",
        &|c| {
            fs::remove_file(c.join("links/abs")).unwrap();
            std::os::unix::fs::symlink("/etc/group", c.join("links/abs")).unwrap();
        },
        "links/abs: symlink",
    );
    let broken_link = |c: &Path| {
        // Same content, but no longer the same inode as its group.
        let p = c.join("links/hard-2");
        let data = fs::read(&p).unwrap();
        fs::remove_file(&p).unwrap();
        fs::write(&p, data).unwrap();
    };
    let c = work.path().join("hardlink");
    cp_a(&a, &c);
    broken_link(&c);
    let diffs = tree_diff(&original, &tree_digest(&c));
    assert!(
        diffs.iter().any(|d| d.starts_with("links/hard-2: ")),
        "{diffs:?}"
    );

    // A copy that drops xattrs differs exactly there.
    let bare = work.path().join("no-xattrs");
    fs::create_dir_all(&bare).unwrap();
    let mut source = a.as_os_str().to_owned();
    source.push("/.");
    run(Command::new("cp")
        .args(["-a", "--no-preserve=xattr"])
        .arg(source)
        .arg(&bare));
    let diffs = tree_diff(&original, &tree_digest(&bare));
    assert_eq!(diffs.len(), 1, "{diffs:#?}");
    assert!(
        diffs[0].starts_with("xattr/file: xattrs {user.testkit="),
        "{diffs:?}"
    );

    let result = std::panic::catch_unwind(|| assert_same_tree(&original, &tree_digest(&c)));
    let message = result.unwrap_err();
    let message = message.downcast_ref::<String>().unwrap();
    assert!(message.contains("trees differ"), "{message}");
}

#[test]
fn umoci_image_is_a_layout_skopeo_reads_and_unpacks_to_the_same_tree() {
    let work = temp_dir("umoci");
    let base = work.path().join("base");
    busybox_rootfs(&base);
    let tricky = work.path().join("tricky");
    tricky_rootfs(&tricky);
    let layout = work.path().join("layout");
    umoci_image(&layout, "v1", &[&base, &tricky]);
    umoci_set_cmd(&layout, "v1", &["/bin/sh", "-c", "echo hi"]);

    let inspect = skopeo_inspect(&format!("oci:{}:v1", layout.display()), &[]);
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2, "{inspect}");
    let config = skopeo_inspect(&format!("oci:{}:v1", layout.display()), &["--config"]);
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "echo hi"])
    );

    // What umoci unpacks equals the layers copied over each other.
    let expected = work.path().join("expected");
    cp_a(&base, &expected);
    cp_a(&tricky, &expected);
    let bundle = work.path().join("bundle");
    run(Command::new(require_tool("umoci"))
        .args(["unpack", "--image", &format!("{}:v1", layout.display())])
        .arg(&bundle));
    assert_same_tree(
        &tree_digest(&expected),
        &tree_digest(&bundle.join("rootfs")),
    );
}

//! Shared helpers for the end-to-end tests: run the real `fluke` binary and peers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fluke_bin() -> &'static str {
    env!("CARGO_BIN_EXE_fluke")
}

/// `fluke --root ROOT -q ARGS…`
pub fn fluke(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(fluke_bin());
    c.arg("--root").arg(root).arg("-q").args(args);
    c
}

fn describe(c: &Command, out: &Output) -> String {
    format!(
        "{:?}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
        c,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs and requires success; returns stdout.
pub fn ok(mut c: Command) -> String {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "command failed: {}",
        describe(&c, &out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs and requires failure; returns stderr.
pub fn fails(mut c: Command) -> String {
    let out = c.output().expect("spawn");
    assert!(
        !out.status.success(),
        "command should have failed: {}",
        describe(&c, &out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn sh(script: &str) -> String {
    let mut c = Command::new("sh");
    c.arg("-euc").arg(script);
    ok(c)
}

/// `skopeo` with the flags a test against a loopback registry needs.
pub fn skopeo(args: &[&str]) -> Command {
    testkit::require_tool("skopeo");
    let mut c = Command::new("skopeo");
    if !Path::new("/etc/containers/policy.json").exists() {
        c.arg("--insecure-policy");
    }
    c.args(args);
    c
}

/// The manifest digest a reference resolves to, as skopeo sees it.
pub fn skopeo_digest(reference: &str) -> String {
    let mut args = vec!["inspect", "--raw"];
    if reference.starts_with("docker://") {
        args.push("--tls-verify=false");
    }
    args.push(reference);
    let out = ok(skopeo(&args));
    content::Digest::sha256_of(out.as_bytes()).to_string()
}

/// A busybox root filesystem to import.
pub fn busybox_tree(dir: &Path) -> PathBuf {
    let root = dir.join("busybox-rootfs");
    testkit::busybox_rootfs(&root);
    root
}

/// Files under `dir` whose names look like leftovers of an interrupted write.
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".partial")
                || name.starts_with(".partial-")
                || name.starts_with(".tmp-")
            {
                out.push(p.clone());
            }
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    out
}

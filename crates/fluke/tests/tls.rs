//! fluke against registries on a non-loopback address (testkit's `NetnsRegistry`: Debian's
//! docker-registry in a network namespace of its own, reached over a veth pair), where fluke
//! uses HTTPS and verifies certificates unless told otherwise:
//!
//! - a registry with a self-signed certificate is refused with a certificate error, and
//!   used with `--dest-tls-verify=false` / `--tls-verify=false`;
//! - the same certificate, trusted through `SSL_CERT_FILE` in the child's environment only,
//!   passes verification (so the refusal above is verification at work, not a broken setup);
//! - a plain-HTTP registry is reached with `--tls-verify=false` through the client's
//!   fallback from HTTPS, and refused without it.
//!
//! The system trust store is never touched. Needs root (network namespaces) and iproute2.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use testkit::NetnsRegistry;

/// Imports busybox as `demo/bb:1` into `store`; returns the manifest digest.
fn import_busybox(tmp: &Path, store: &Path) -> String {
    let tree = busybox_tree(tmp);
    ok(fluke(
        store,
        &["image", "import", tree.to_str().unwrap(), "demo/bb:1"],
    ))
    .trim()
    .to_string()
}

/// `fluke …` with the TLS trust environment exactly as the test process has it, minus any
/// override that could make the test's certificate trusted by accident.
fn fluke_untrusting(root: &Path, args: &[&str]) -> Command {
    let mut c = fluke(root, args);
    c.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    c
}

fn inspect_digest(store: &Path, args: &[&str]) -> String {
    let v: serde_json::Value = serde_json::from_str(&ok(fluke(store, args))).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

/// The stderr line that carries the error (fluke prints one `fluke: error: …` line).
fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("fluke: error:"))
        .unwrap_or_else(|| panic!("no `fluke: error:` line in:\n{stderr}"))
}

#[test]
fn self_signed_registry_is_refused_unless_verification_is_off() {
    let reg = NetnsRegistry::start_tls();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let digest = import_busybox(tmp.path(), &store);
    let remote = reg.docker_ref("demo/bb:1");

    // Verification on (the default): a clear certificate error, and nothing pushed.
    let err = fails(fluke_untrusting(
        &store,
        &["image", "copy", "store:demo/bb:1", &remote],
    ));
    let line = error_line(&err);
    assert!(line.contains(&reg.addr()), "{line}");
    assert!(line.contains("certificate"), "{line}");
    assert!(line.contains("UnknownIssuer"), "{line}");
    // Explicitly on: the same.
    let err = fails(fluke_untrusting(
        &store,
        &[
            "image",
            "copy",
            "--dest-tls-verify=true",
            "store:demo/bb:1",
            &remote,
        ],
    ));
    assert!(error_line(&err).contains("certificate"), "{err}");

    // Verification off: pushed over HTTPS.
    ok(fluke_untrusting(
        &store,
        &[
            "image",
            "copy",
            "--dest-tls-verify=false",
            "store:demo/bb:1",
            &remote,
        ],
    ));
    assert!(
        reg.log().contains("PUT /v2/demo/bb/manifests/1"),
        "{}",
        reg.log()
    );

    // Inspect: refused with verification, served without.
    let err = fails(fluke_untrusting(&store, &["image", "inspect", &remote]));
    assert!(error_line(&err).contains("certificate"), "{err}");
    let other = tmp.path().join("other-store");
    assert_eq!(
        inspect_digest(&other, &["image", "inspect", "--tls-verify=false", &remote]),
        digest
    );

    // Pull back into a fresh store over HTTPS; the image is the one pushed.
    let pulled = ok(fluke_untrusting(
        &other,
        &["image", "pull", "--tls-verify=false", &remote],
    ));
    assert_eq!(pulled.trim(), digest);
    assert!(ok(fluke(&other, &["image", "fsck", "--no-repair"])).contains("store is consistent"));

    // A peer agrees on what is in the registry.
    assert_eq!(skopeo_digest(&remote), digest);
}

#[test]
fn trusting_the_certificate_makes_verification_pass() {
    let reg = NetnsRegistry::start_tls();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let digest = import_busybox(tmp.path(), &store);
    let remote = reg.docker_ref("demo/bb:1");
    let cert = reg.cert_path().unwrap();

    // Only the fluke child's environment names the certificate; nothing system-wide.
    let trusting = |args: &[&str]| {
        let mut c = fluke(&store, args);
        c.env("SSL_CERT_FILE", &cert).env_remove("SSL_CERT_DIR");
        c
    };
    ok(trusting(&["image", "copy", "store:demo/bb:1", &remote]));
    let out = ok(trusting(&["image", "inspect", &remote]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], digest.as_str());

    // The same command without the trust fails: it was verification that passed.
    let err = fails(fluke_untrusting(&store, &["image", "inspect", &remote]));
    assert!(error_line(&err).contains("certificate"), "{err}");
}

#[test]
fn plain_http_registry_needs_tls_verify_false_and_then_falls_back_to_http() {
    let reg = NetnsRegistry::start_plain();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let digest = import_busybox(tmp.path(), &store);
    let remote = reg.docker_ref("demo/bb:1");

    // Verification on: HTTPS only, and the registry does not speak it.
    let err = fails(fluke_untrusting(
        &store,
        &["image", "copy", "store:demo/bb:1", &remote],
    ));
    let line = error_line(&err);
    assert!(
        line.contains(&format!("https://{}/v2/", reg.addr())),
        "{line}"
    );
    assert!(!reg.log().contains("PUT /v2/"), "{}", reg.log());

    // Verification off: the probe falls back to plain HTTP and everything goes there.
    ok(fluke_untrusting(
        &store,
        &[
            "image",
            "copy",
            "--dest-tls-verify=false",
            "store:demo/bb:1",
            &remote,
        ],
    ));
    assert!(
        reg.log().contains("PUT /v2/demo/bb/manifests/1"),
        "{}",
        reg.log()
    );
    let other = tmp.path().join("other-store");
    assert_eq!(
        inspect_digest(&other, &["image", "inspect", "--tls-verify=false", &remote]),
        digest
    );
    let pulled = ok(fluke_untrusting(
        &other,
        &["image", "pull", "--tls-verify=false", &remote],
    ));
    assert_eq!(pulled.trim(), digest);
    assert_eq!(skopeo_digest(&remote), digest);
}

#[test]
fn namespaced_registries_run_side_by_side_and_vanish_on_drop() {
    let a = NetnsRegistry::start_tls();
    let b = NetnsRegistry::start_plain();
    assert_ne!(a.ip(), b.ip());
    assert_ne!(a.namespace(), b.namespace());
    let (ns, pid) = (a.namespace().to_string(), a.pid().unwrap());
    drop(a);
    let namespaces =
        testkit::run(Command::new(testkit::require_tool("ip")).args(["netns", "list"]));
    assert!(
        !namespaces
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns.as_str())),
        "{ns} still listed:\n{namespaces}"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "registry {pid} still running"
    );
    drop(b);
}

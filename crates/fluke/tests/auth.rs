//! Registry authentication through fluke: basic auth, the Bearer token flow, auth files.

mod common;

use std::fs;

use common::*;
use testkit::Registry;

fn push_pull(reg: &Registry, creds: Option<&str>, env_auth_file: Option<&std::path::Path>) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let tree = busybox_tree(t);
    let store = t.join("store");
    ok(fluke(
        &store,
        &["image", "import", tree.to_str().unwrap(), "auth/img:1"],
    ));
    let remote = format!("docker://{}/auth/img:1", reg.addr());
    let with = |mut c: std::process::Command| {
        if let Some(f) = env_auth_file {
            c.env("REGISTRY_AUTH_FILE", f);
        }
        c
    };
    let flag = creds.map(|c| format!("--creds={c}"));
    let extra: Vec<&str> = flag.iter().map(String::as_str).collect();
    let mut push = vec!["image", "push", "auth/img:1", &remote];
    push.extend(&extra);
    ok(with(fluke(&store, &push)));
    let other = t.join("other");
    let mut pull = vec!["image", "pull", &remote];
    pull.extend(&extra);
    let digest = ok(with(fluke(&other, &pull)));
    assert!(digest.trim().starts_with("sha256:"));
    let mut inspect = vec!["image", "inspect", &remote];
    inspect.extend(&extra);
    ok(with(fluke(&other, &inspect)));
}

#[test]
fn basic_auth_with_creds_and_refused_without() {
    let reg = Registry::with_basic_auth("alice", "s3cret");
    push_pull(&reg, Some("alice:s3cret"), None);
    let tmp = tempfile::tempdir().unwrap();
    let err = fails(fluke(
        tmp.path(),
        &[
            "image",
            "inspect",
            &format!("docker://{}/auth/img:1", reg.addr()),
        ],
    ));
    assert!(err.contains("authentication required"), "{err}");
    let err = fails(fluke(
        tmp.path(),
        &[
            "image",
            "inspect",
            "--creds",
            "alice:wrong",
            &format!("docker://{}/auth/img:1", reg.addr()),
        ],
    ));
    assert!(
        err.contains("authentication required") || err.contains("401"),
        "{err}"
    );
}

#[test]
fn bearer_token_flow_with_credentials_from_an_auth_file() {
    let reg = Registry::with_token_auth("bob", "pa55");
    let tmp = tempfile::tempdir().unwrap();
    let auth = tmp.path().join("auth.json");
    // The format Docker and Podman write: base64("user:password").
    fs::write(
        &auth,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"Ym9iOnBhNTU="}}}}}}"#,
            reg.addr()
        ),
    )
    .unwrap();
    let before = reg.token_requests();
    push_pull(&reg, None, Some(&auth));
    assert!(
        reg.token_requests() > before,
        "the token server was never asked"
    );
    let scopes = reg.token_scopes();
    assert!(
        scopes.iter().any(|s| s.contains("auth/img:pull,push")),
        "{scopes:?}"
    );
    // Without credentials the token server refuses, and fluke says so.
    let err = fails(fluke(
        tmp.path(),
        &[
            "image",
            "inspect",
            &format!("docker://{}/auth/img:1", reg.addr()),
        ],
    ));
    assert!(err.contains("token server"), "{err}");
}

#[test]
fn bearer_token_flow_anonymous() {
    let reg = Registry::with_anonymous_token_auth();
    push_pull(&reg, None, None);
    assert!(reg.token_requests() > 0);
}

//! The registry fixtures answer for real: anonymous, basic auth and the Bearer token flow.

use std::path::Path;
use std::process::Command;

use testkit::{
    busybox_rootfs, require_tool, run, run_output, skopeo_copy, skopeo_copy_with, skopeo_inspect,
    temp_dir, umoci_image, Registry, TOKEN_SERVICE,
};

/// (status, headers, body) of a curl request.
fn curl(args: &[&str]) -> (u16, String, String) {
    let out = run(Command::new(require_tool("curl"))
        .args(["-sS", "-D", "/dev/stderr", "-o", "/dev/stdout"])
        .args(["-w", "\n%{http_code}"])
        .args(args));
    let (body, code) = out.rsplit_once('\n').unwrap();
    (
        code.trim().parse().unwrap(),
        String::new(),
        body.to_string(),
    )
}

/// Status and response headers (lower-cased names) of a curl request.
fn curl_head(args: &[&str]) -> (u16, String) {
    let out = run(Command::new(require_tool("curl"))
        .args(["-sS", "-o", "/dev/null", "-D", "-"])
        .args(args));
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, out.to_ascii_lowercase())
}

/// A one-layer busybox image in an OCI layout, as the source of pushes.
fn busybox_layout() -> (tempfile::TempDir, String) {
    let work = temp_dir("bb");
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let layout = work.path().join("layout");
    umoci_image(&layout, "1", &[&rootfs]);
    let reference = format!("oci:{}:1", layout.display());
    (work, reference)
}

#[test]
fn anonymous_registry_answers_and_survives_restart() {
    let mut registry = Registry::start();
    let (status, _, body) = curl(&[&format!("{}/v2/", registry.url())]);
    assert_eq!((status, body.as_str()), (200, "{}"));
    assert!(registry.storage_dir().is_dir());

    let (_work, source) = busybox_layout();
    skopeo_copy(&source, &registry.docker_ref("busybox:1"));
    let before = skopeo_inspect(&registry.docker_ref("busybox:1"), &[]);

    let old_pid = registry.pid();
    registry.restart();
    assert_ne!(registry.pid(), old_pid);
    assert!(registry.is_running());
    let after = skopeo_inspect(&registry.docker_ref("busybox:1"), &[]);
    assert_eq!(before["Digest"], after["Digest"]);

    registry.stop();
    assert!(!registry.is_running());
    let refused = run_output(
        Command::new(require_tool("curl"))
            .args(["-sS", "--max-time", "5"])
            .arg(format!("{}/v2/", registry.url())),
    );
    assert!(
        !refused.status.success(),
        "registry still answers after stop"
    );

    registry.restart();
    let pid = registry.pid().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(registry);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "registry {pid} survived drop"
    );
}

#[test]
fn registries_started_in_parallel_get_their_own_ports() {
    let threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(Registry::start))
        .collect();
    let registries: Vec<Registry> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut addrs: Vec<String> = registries.iter().map(Registry::addr).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 4);
    for registry in &registries {
        let (status, _, _) = curl(&[&format!("{}/v2/", registry.url())]);
        assert_eq!(status, 200);
    }
}

#[test]
fn basic_auth_rejects_without_credentials_and_accepts_with() {
    let registry = Registry::with_basic_auth("alice", "s3cret");
    let url = format!("{}/v2/", registry.url());
    let (status, headers) = curl_head(&[&url]);
    assert_eq!(status, 401);
    assert!(
        headers.contains("www-authenticate: basic realm="),
        "{headers}"
    );
    assert_eq!(curl_head(&["-u", "alice:wrong", &url]).0, 401);
    assert_eq!(curl_head(&["-u", "alice:s3cret", &url]).0, 200);

    let (_work, source) = busybox_layout();
    let dest = registry.docker_ref("auth/busybox:1");
    let denied = run_output(
        Command::new(require_tool("skopeo"))
            .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
            .args(["--dest-creds", "alice:wrong", &source, &dest]),
    );
    assert!(
        !denied.status.success(),
        "push with a wrong password worked"
    );
    let creds = registry.creds_arg().unwrap();
    skopeo_copy_with(&source, &dest, &["--dest-creds", &creds]);
    let manifest = skopeo_inspect(&dest, &["--creds", &creds, "--raw"]);
    assert_eq!(manifest["schemaVersion"], 2);
}

#[test]
fn token_auth_realm_flow_with_curl_and_skopeo() {
    let registry = Registry::with_token_auth("bob", "hunter2");
    let realm = registry.token_realm().unwrap();
    let url = format!("{}/v2/", registry.url());

    // 1. Unauthenticated: 401 with a Bearer challenge naming the realm and service.
    let (status, headers) = curl_head(&[&url]);
    assert_eq!(status, 401);
    let challenge =
        format!("www-authenticate: bearer realm=\"{realm}\",service=\"{TOKEN_SERVICE}\"");
    assert!(headers.contains(&challenge), "{headers}");

    // 2. The token server refuses bad credentials and answers good ones.
    let token_url = format!("{realm}?service={TOKEN_SERVICE}&scope=repository:x/y:pull,push");
    assert_eq!(curl_head(&[&token_url]).0, 401);
    assert_eq!(curl_head(&["-u", "bob:nope", &token_url]).0, 401);
    let (status, _, body) = curl(&["-u", "bob:hunter2", &token_url]);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = answer["token"].as_str().unwrap();
    assert_eq!(answer["access_token"], token);
    assert_eq!(answer["expires_in"], 300);

    // 3. Retrying with the token works.
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(curl_head(&["-H", &bearer, &url]).0, 200);
    let tags = format!("{}/v2/x/y/tags/list", registry.url());
    assert_eq!(curl_head(&["-H", &bearer, &tags]).0, 404); // authorised, just no such repo
    let other = format!("{}/v2/other/repo/tags/list", registry.url());
    assert_eq!(curl_head(&["-H", &bearer, &other]).0, 401); // not in the token's scope
    let mut forged = token.as_bytes().to_vec();
    let middle = forged.len() - 20; // inside the signature, away from its padding bits
    forged[middle] = if forged[middle] == b'A' { b'B' } else { b'A' };
    let forged = format!(
        "Authorization: Bearer {}",
        String::from_utf8(forged).unwrap()
    );
    assert_eq!(curl_head(&["-H", &forged, &url]).0, 401); // the signature is checked

    // 4. skopeo runs the whole flow by itself.
    let before = registry.token_requests();
    let (_work, source) = busybox_layout();
    let dest = registry.docker_ref("token/busybox:1");
    skopeo_copy_with(&source, &dest, &["--dest-creds", "bob:hunter2"]);
    let manifest = skopeo_inspect(&dest, &["--creds", "bob:hunter2", "--raw"]);
    assert_eq!(manifest["schemaVersion"], 2);
    assert!(registry.token_requests() > before);
    assert!(
        registry
            .token_scopes()
            .iter()
            .any(|s| s.starts_with("repository:token/busybox:") && s.contains("push")),
        "{:?}",
        registry.token_scopes()
    );
}

#[test]
fn anonymous_token_auth_hands_out_tokens() {
    let registry = Registry::with_anonymous_token_auth();
    let (_work, source) = busybox_layout();
    skopeo_copy(&source, &registry.docker_ref("anon/busybox:1"));
    assert!(registry.token_requests() > 0);
}

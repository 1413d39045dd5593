//! With TLS verification off, a client falls back to plain HTTP for a registry that does
//! not speak TLS — from its very first call on. The registry is Debian's docker-registry
//! serving plain HTTP on a non-loopback address (testkit's `NetnsRegistry`), since
//! loopback registries are always plain HTTP. Needs root (network namespaces).

use std::time::Duration;

use content::Digest;
use registry::{Client, Options};
use testkit::NetnsRegistry;

fn client(reg: &NetnsRegistry, tls_verify: bool) -> Client {
    Client::new(
        &reg.addr(),
        Options {
            tls_verify,
            credentials: None,
            attempts: 2,
            backoff: Duration::from_millis(10),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn every_first_call_falls_back_to_plain_http() {
    let reg = NetnsRegistry::start_plain();
    let tmp = tempfile::tempdir().unwrap();
    let data = testkit::pseudo_random(100_000, 3);
    let digest = Digest::sha256_of(&data);
    let path = tmp.path().join("blob");
    std::fs::write(&path, &data).unwrap();

    // Each call below is the first one of a fresh client: its URL is built before the
    // probe finds out the registry speaks plain HTTP.
    assert_eq!(
        client(&reg, false)
            .blob_exists("demo/plain", &digest)
            .await
            .unwrap(),
        None
    );
    client(&reg, false)
        .upload_blob("demo/plain", &digest, data.len() as u64, &path, None)
        .await
        .unwrap();
    assert_eq!(
        client(&reg, false)
            .blob_exists("demo/plain", &digest)
            .await
            .unwrap(),
        Some(data.len() as u64)
    );
    let mut out = Vec::new();
    client(&reg, false)
        .fetch_blob("demo/plain", &digest, Some(data.len() as u64), &mut out)
        .await
        .unwrap();
    assert!(out == data);
    let err = client(&reg, false)
        .list_tags("demo/none")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}: tags of demo/none: not found", reg.addr())),
        "{err}"
    );

    // With verification on there is no fallback: HTTPS or nothing.
    let err = client(&reg, true)
        .blob_exists("demo/plain", &digest)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("https://{}/v2/", reg.addr())),
        "{err}"
    );
}

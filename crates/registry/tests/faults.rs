//! The registry client against a real registry (Debian's docker-registry) behind
//! testkit's `FaultProxy`: transient errors are retried with growing delays, a blob download
//! cut mid-way resumes with a range request (or skips what it has when the range is
//! ignored), an upload whose connection is reset is redone, permanent errors are not
//! retried, and corrupted content is refused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use content::Digest;
use registry::{Client, Options, RegistryError};
use testkit::{Fault, FaultProxy, Registry, Rule};

const REPO: &str = "demo/faults";
const TAG: &str = "1";
const BLOB_SIZE: usize = 1 << 20;

/// A registry holding one image (`demo/faults:1`: a config and one 1 MiB layer), the proxy
/// in front of it, and the layer's bytes.
struct Setup {
    registry: Registry,
    proxy: FaultProxy,
    tmp: tempfile::TempDir,
    layer: Vec<u8>,
    layer_digest: Digest,
    manifest_digest: Digest,
}

fn opts(attempts: u32, backoff_ms: u64) -> Options {
    Options {
        tls_verify: true,
        credentials: None,
        attempts,
        backoff: Duration::from_millis(backoff_ms),
    }
}

fn write_blob(dir: &Path, data: &[u8]) -> (Digest, PathBuf) {
    let digest = Digest::sha256_of(data);
    let path = dir.join(digest.hex());
    std::fs::write(&path, data).unwrap();
    (digest, path)
}

async fn setup() -> Setup {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry);
    let tmp = tempfile::tempdir().unwrap();
    // Seeded straight into the registry, not through the proxy.
    let direct = Client::new(&registry.addr(), opts(1, 1)).unwrap();
    let layer = testkit::pseudo_random(BLOB_SIZE, 7);
    let (layer_digest, layer_path) = write_blob(tmp.path(), &layer);
    direct
        .upload_blob(REPO, &layer_digest, layer.len() as u64, &layer_path, None)
        .await
        .unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (config_digest, config_path) = write_blob(tmp.path(), config);
    direct
        .upload_blob(
            REPO,
            &config_digest,
            config.len() as u64,
            &config_path,
            None,
        )
        .await
        .unwrap();
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest.to_string(),
            "size": layer.len(),
        }],
    })
    .to_string();
    let manifest_digest = direct
        .put_manifest(REPO, TAG, manifest.as_bytes(), media_type)
        .await
        .unwrap();
    Setup {
        registry,
        proxy,
        tmp,
        layer,
        layer_digest,
        manifest_digest,
    }
}

impl Setup {
    /// A client that goes through the proxy.
    fn client(&self, attempts: u32, backoff_ms: u64) -> Client {
        Client::new(&self.proxy.addr(), opts(attempts, backoff_ms)).unwrap()
    }

    /// A client that talks to the registry directly.
    fn direct(&self) -> Client {
        Client::new(&self.registry.addr(), opts(1, 1)).unwrap()
    }

    fn layer_path(&self) -> String {
        format!("/blobs/{}", self.layer_digest)
    }
}

fn statuses(seen: &[testkit::Seen]) -> Vec<Option<u16>> {
    seen.iter().map(|s| s.status).collect()
}

#[tokio::test]
async fn manifest_503_twice_then_served_with_growing_backoff() {
    let s = setup().await;
    s.proxy
        .add(Rule::new("GET", "/manifests/", Fault::Status(503)).times(2));
    let client = s.client(5, 20);
    let start = Instant::now();
    let m = client.get_manifest(REPO, TAG).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(m.digest, s.manifest_digest);

    let seen = s.proxy.matching("GET", "/manifests/");
    assert_eq!(statuses(&seen), [Some(503), Some(503), Some(200)]);
    // Backoff 20 ms, doubled after each failure: ≥ 20 ms, then ≥ 40 ms between attempts.
    let first = seen[1].at - seen[0].at;
    let second = seen[2].at - seen[1].at;
    assert!(first >= Duration::from_millis(20), "first delay {first:?}");
    assert!(
        second >= Duration::from_millis(40),
        "second delay {second:?}"
    );
    assert!(elapsed >= Duration::from_millis(60), "elapsed {elapsed:?}");
}

#[tokio::test]
async fn probe_503_is_retried_too() {
    let s = setup().await;
    // A fresh client's first request is the `GET /v2/` probe.
    s.proxy
        .add(Rule::new("GET", "/v2/", Fault::Status(503)).times(1));
    let client = s.client(3, 10);
    let m = client.get_manifest(REPO, TAG).await.unwrap();
    assert_eq!(m.digest, s.manifest_digest);
    let seen = s.proxy.requests();
    assert_eq!(seen[0].target, "/v2/");
    assert_eq!(seen[0].status, Some(503));
    assert_eq!(seen[1].target, "/v2/");
    assert_eq!(seen[1].status, Some(200));
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(10));
}

#[tokio::test]
async fn blob_cut_mid_way_is_resumed_with_a_range_request() {
    let s = setup().await;
    let cut = 300_000u64;
    s.proxy
        .add(Rule::new("GET", &s.layer_path(), Fault::CutAfter(cut)).times(1));
    let client = s.client(5, 10);
    let mut out = Vec::new();
    let n = client
        .fetch_blob(REPO, &s.layer_digest, Some(BLOB_SIZE as u64), &mut out)
        .await
        .unwrap();
    assert_eq!(n, BLOB_SIZE as u64);
    assert!(out == s.layer, "downloaded bytes differ");

    let seen = s.proxy.matching("GET", &s.layer_path());
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(seen[0].range, None);
    assert_eq!(seen[0].body_sent, cut);
    assert_eq!(
        seen[1].range.as_deref(),
        Some(format!("bytes={cut}-").as_str())
    );
    assert_eq!(seen[1].status, Some(206));
    assert_eq!(seen[1].body_sent, BLOB_SIZE as u64 - cut);
}

#[tokio::test]
async fn blob_cut_several_times_resumes_from_each_offset() {
    let s = setup().await;
    let cut = 200_000u64;
    s.proxy
        .add(Rule::new("GET", &s.layer_path(), Fault::CutAfter(cut)).times(3));
    let client = s.client(5, 5);
    let mut out = Vec::new();
    client
        .fetch_blob(REPO, &s.layer_digest, Some(BLOB_SIZE as u64), &mut out)
        .await
        .unwrap();
    assert!(out == s.layer, "downloaded bytes differ");
    let ranges: Vec<Option<String>> = s
        .proxy
        .matching("GET", &s.layer_path())
        .into_iter()
        .map(|r| r.range)
        .collect();
    assert_eq!(
        ranges,
        [
            None,
            Some(format!("bytes={cut}-")),
            Some(format!("bytes={}-", 2 * cut)),
            Some(format!("bytes={}-", 3 * cut)),
        ]
    );
}

#[tokio::test]
async fn blob_cut_with_range_ignored_still_completes() {
    let s = setup().await;
    let cut = 400_000u64;
    s.proxy
        .add(Rule::new("GET", &s.layer_path(), Fault::CutAfter(cut)).times(1));
    s.proxy
        .add(Rule::new("GET", &s.layer_path(), Fault::IgnoreRange));
    let client = s.client(5, 10);
    let mut out = Vec::new();
    let n = client
        .fetch_blob(REPO, &s.layer_digest, Some(BLOB_SIZE as u64), &mut out)
        .await
        .unwrap();
    assert_eq!(n, BLOB_SIZE as u64);
    assert!(out == s.layer, "downloaded bytes differ");

    let seen = s.proxy.matching("GET", &s.layer_path());
    assert_eq!(seen.len(), 2, "{seen:#?}");
    // The client asked to resume; the registry, not shown the range, sent everything again.
    assert_eq!(
        seen[1].range.as_deref(),
        Some(format!("bytes={cut}-").as_str())
    );
    assert_eq!(seen[1].status, Some(200));
    assert_eq!(seen[1].body_sent, BLOB_SIZE as u64);
}

#[tokio::test]
async fn blob_503_then_cut_then_resumed() {
    let s = setup().await;
    let cut = 100_000u64;
    s.proxy
        .add(Rule::new("GET", &s.layer_path(), Fault::CutAfter(cut)).times(1));
    s.proxy
        .add(Rule::new("GET", &s.layer_path(), Fault::Status(503)).times(1));
    let client = s.client(5, 5);
    let mut out = Vec::new();
    client
        .fetch_blob(REPO, &s.layer_digest, Some(BLOB_SIZE as u64), &mut out)
        .await
        .unwrap();
    assert!(out == s.layer, "downloaded bytes differ");
    let seen = s.proxy.matching("GET", &s.layer_path());
    assert_eq!(statuses(&seen), [Some(503), Some(200), Some(206)]);
    assert_eq!(
        seen[2].range.as_deref(),
        Some(format!("bytes={cut}-").as_str())
    );
}

#[tokio::test]
async fn blob_cut_on_every_attempt_gives_up_naming_the_blob() {
    let s = setup().await;
    s.proxy
        .add(Rule::new("GET", &s.layer_path(), Fault::CutAfter(1000)));
    let client = s.client(3, 5);
    let mut out = Vec::new();
    let err = client
        .fetch_blob(REPO, &s.layer_digest, Some(BLOB_SIZE as u64), &mut out)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&s.proxy.addr()), "{msg}");
    assert!(
        msg.contains(&format!("blob {} from {REPO}", s.layer_digest)),
        "{msg}"
    );
    assert_eq!(s.proxy.count("GET", &s.layer_path()), 3);
    assert_eq!(out.len(), 3000, "each attempt adds what it got");
}

async fn upload_through_faults(s: &Setup, rule: Rule, chunk: Option<u64>, seed: u64) -> Digest {
    let data = testkit::pseudo_random(700_000, seed);
    let (digest, path) = write_blob(s.tmp.path(), &data);
    s.proxy.add(rule);
    s.client(4, 10)
        .upload_blob(REPO, &digest, data.len() as u64, &path, chunk)
        .await
        .unwrap();
    // In the registry, whole: its size and its bytes (verified against the digest).
    let direct = s.direct();
    assert_eq!(
        direct.blob_exists(REPO, &digest).await.unwrap(),
        Some(data.len() as u64)
    );
    let mut back = Vec::new();
    direct
        .fetch_blob(REPO, &digest, Some(data.len() as u64), &mut back)
        .await
        .unwrap();
    assert!(back == data);
    digest
}

#[tokio::test]
async fn monolithic_upload_reset_is_redone() {
    let s = setup().await;
    upload_through_faults(
        &s,
        Rule::new("PUT", "/blobs/uploads/", Fault::Reset).times(1),
        None,
        11,
    )
    .await;
    let puts = s.proxy.matching("PUT", "/blobs/uploads/");
    assert_eq!(statuses(&puts), [None, Some(201)], "{puts:#?}");
    // The whole upload started over, from a new session.
    assert_eq!(s.proxy.count("POST", "/blobs/uploads/"), 2);
    assert_ne!(puts[0].target, puts[1].target);
}

#[tokio::test]
async fn chunked_upload_reset_is_redone() {
    let s = setup().await;
    upload_through_faults(
        &s,
        Rule::new("PATCH", "/blobs/uploads/", Fault::Reset).times(1),
        Some(256 << 10),
        12,
    )
    .await;
    // 700 000 bytes in 256 KiB chunks: 3 PATCHes, after the one that was reset.
    let patches = s.proxy.matching("PATCH", "/blobs/uploads/");
    assert_eq!(
        statuses(&patches),
        [None, Some(202), Some(202), Some(202)],
        "{patches:#?}"
    );
    assert_eq!(s.proxy.count("POST", "/blobs/uploads/"), 2);
    assert_eq!(s.proxy.count("PUT", "/blobs/uploads/"), 1);
}

#[tokio::test]
async fn upload_session_start_503_is_retried() {
    let s = setup().await;
    upload_through_faults(
        &s,
        Rule::new("POST", "/blobs/uploads/", Fault::Status(503)).times(2),
        None,
        13,
    )
    .await;
    assert_eq!(
        statuses(&s.proxy.matching("POST", "/blobs/uploads/")),
        [Some(503), Some(503), Some(202)]
    );
}

#[tokio::test]
async fn persistent_500_fails_after_all_attempts_naming_registry_and_request() {
    let s = setup().await;
    s.proxy
        .add(Rule::new("GET", "/manifests/", Fault::Status(500)));
    let client = s.client(3, 5);
    let err = client.get_manifest(REPO, TAG).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, RegistryError::Status { status: 500, .. }),
        "{msg}"
    );
    assert!(msg.contains(&s.proxy.addr()), "{msg}");
    assert!(msg.contains(&format!("manifest {REPO}:{TAG}")), "{msg}");
    assert!(msg.contains("HTTP 500"), "{msg}");
    assert!(msg.contains("injected by testkit FaultProxy"), "{msg}");
    assert_eq!(s.proxy.count("GET", "/manifests/"), 3);

    // The same for a blob's existence check; and nothing was ever answered 401.
    s.proxy
        .add(Rule::new("HEAD", "/blobs/", Fault::Status(500)));
    let err = client.blob_exists(REPO, &s.layer_digest).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("blob {} in {REPO}: HTTP 500", s.layer_digest)),
        "{err}"
    );
    assert_eq!(s.proxy.count("HEAD", "/blobs/"), 3);
    assert!(s.proxy.requests().iter().all(|r| r.status != Some(401)));
}

#[tokio::test]
async fn not_found_is_not_retried() {
    let s = setup().await;
    let client = s.client(5, 50);
    let err = client.get_manifest(REPO, "missing").await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("manifest demo/faults:missing"),
        "{err}"
    );
    assert_eq!(s.proxy.count("GET", "/manifests/missing"), 1);

    let absent = Digest::sha256_of(b"not in the registry");
    let mut out = Vec::new();
    let err = client
        .fetch_blob(REPO, &absent, None, &mut out)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&absent.to_string()), "{err}");
    assert_eq!(s.proxy.count("GET", &format!("/blobs/{absent}")), 1);

    assert_eq!(client.blob_exists(REPO, &absent).await.unwrap(), None);
    assert_eq!(s.proxy.count("HEAD", &format!("/blobs/{absent}")), 1);
}

#[tokio::test]
async fn corrupted_content_is_refused_naming_the_digest() {
    let s = setup().await;
    s.proxy
        .add(Rule::new("GET", &s.layer_path(), Fault::Corrupt(12_345)));
    let client = s.client(3, 5);
    let mut out = Vec::new();
    let err = client
        .fetch_blob(REPO, &s.layer_digest, Some(BLOB_SIZE as u64), &mut out)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&s.layer_digest.to_string()), "{msg}");
    assert!(msg.contains("hashes to"), "{msg}");
    assert!(msg.contains(&s.proxy.addr()), "{msg}");

    // A manifest fetched by digest is verified too.
    let by_digest = s.manifest_digest.to_string();
    s.proxy.add(Rule::new(
        "GET",
        &format!("/manifests/{by_digest}"),
        Fault::Corrupt(40),
    ));
    let err = client.get_manifest(REPO, &by_digest).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!("not {by_digest}")),
        "{err}"
    );
}

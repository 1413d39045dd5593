//! The HTTP side: endpoints, authentication state, retries and the API calls.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use content::{Digest, Hasher};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::auth::{parse_challenge, Challenge, Credentials};

mod upload;
mod wire;

use crate::error::RegistryError;
use wire::{
    basic_header, bearer_header, content_type, error_detail, location, pull_scope, push_scope,
    sniff_media_type,
};

/// Manifest media types this client asks for, most specific first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct Options {
    /// Verify TLS certificates. When false, an HTTPS endpoint with any certificate is
    /// accepted, and plain HTTP is used if the registry does not speak TLS.
    pub tls_verify: bool,
    /// Explicit credentials; otherwise the auth files are consulted.
    pub credentials: Option<Credentials>,
    /// Attempts for requests that can be repeated (manifests, HEADs, downloads).
    pub attempts: u32,
    /// First backoff delay; doubled after each failed attempt.
    pub backoff: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls_verify: true,
            credentials: None,
            attempts: 5,
            backoff: Duration::from_millis(200),
        }
    }
}

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

enum AuthState {
    /// Not probed yet.
    Unknown,
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct Inner {
    host: String,
    /// `scheme://host[:port]`; switches to plain HTTP when a registry without TLS is
    /// reached with verification off.
    base: Mutex<String>,
    http: reqwest::Client,
    opts: Options,
    credentials: Option<Credentials>,
    auth: Mutex<AuthState>,
    tokens: Mutex<HashMap<String, String>>,
}

/// A client for one registry host. Cheap to clone; clones share tokens.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

fn install_crypto_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Another part of the process may have installed one already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Registries on loopback addresses are spoken to over plain HTTP, as Docker does.
pub fn is_loopback_host(host: &str) -> bool {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host to contact for a registry name (Docker Hub's API lives elsewhere).
fn api_host(host: &str) -> &str {
    if host == "docker.io" || host == "index.docker.io" {
        "registry-1.docker.io"
    } else {
        host
    }
}

impl Client {
    /// Creates a client for `host` (`HOST[:PORT]`). Nothing is sent until the first call.
    pub fn new(host: &str, opts: Options) -> Result<Client, RegistryError> {
        install_crypto_provider();
        let credentials = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => Credentials::from_auth_files(host)?,
        };
        let api = api_host(host);
        let scheme = if is_loopback_host(api) {
            "http"
        } else {
            "https"
        };
        let mut builder = reqwest::Client::builder();
        if scheme == "http" {
            // Plain HTTP to a loopback registry: skip loading the system's trust store
            // (about 140 certificates read and parsed at every start).
            builder = builder.tls_certs_only(std::iter::empty());
        }
        let http = builder
            .user_agent(concat!("fluke/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(!opts.tls_verify)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .map_err(|source| RegistryError::Transport {
                registry: host.to_string(),
                what: "setting up the HTTP client".into(),
                source,
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                host: host.to_string(),
                base: Mutex::new(format!("{scheme}://{api}")),
                http,
                opts,
                credentials,
                auth: Mutex::new(AuthState::Unknown),
                tokens: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The registry host this client talks to.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    fn base(&self) -> String {
        self.inner.base.lock().unwrap().clone()
    }

    /// Points a URL built from the base before the probe switched it to plain HTTP (every
    /// API call builds its URL before `send` probes) at the base the probe settled on.
    fn rebase(&self, url: &mut reqwest::Url) {
        if url.scheme() != "https" {
            return;
        }
        let base = self.base();
        let Some(authority) = base.strip_prefix("http://") else {
            return;
        };
        let (Ok(stale), Ok(plain)) = (
            reqwest::Url::parse(&format!("https://{authority}")),
            reqwest::Url::parse(&base),
        ) else {
            return;
        };
        if url.host_str() == stale.host_str()
            && url.port_or_known_default() == stale.port_or_known_default()
        {
            // As the probe's fallback did: same host and port text, scheme http.
            let _ = url.set_scheme("http");
            let _ = url.set_port(plain.port());
        }
    }

    fn transport(&self, what: &str) -> impl FnOnce(reqwest::Error) -> RegistryError + '_ {
        let what = what.to_string();
        move |source| RegistryError::Transport {
            registry: self.inner.host.clone(),
            what,
            source,
        }
    }

    /// Probes `/v2/` once to learn the authentication scheme (and, without TLS
    /// verification, whether the registry speaks TLS at all).
    async fn probe(&self) -> Result<(), RegistryError> {
        if !matches!(*self.inner.auth.lock().unwrap(), AuthState::Unknown) {
            return Ok(());
        }
        let what = "probing /v2/";
        let mut url = format!("{}/v2/", self.base());
        let mut resp = self.inner.http.get(&url).send().await;
        if resp.is_err() && !self.inner.opts.tls_verify && url.starts_with("https://") {
            // The registry may not speak TLS at all: fall back to plain HTTP.
            let plain = url.replacen("https://", "http://", 1);
            if let Ok(r) = self.inner.http.get(&plain).send().await {
                *self.inner.base.lock().unwrap() = plain.trim_end_matches("/v2/").to_string();
                url = plain;
                resp = Ok(r);
            }
        }
        let resp = resp.map_err(self.transport(what))?;
        let state = match resp.status() {
            StatusCode::UNAUTHORIZED => {
                let challenge = resp
                    .headers()
                    .get_all(reqwest::header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(parse_challenge);
                match challenge {
                    Some(Challenge::Basic) => AuthState::Basic,
                    Some(Challenge::Bearer { realm, service }) => {
                        AuthState::Bearer { realm, service }
                    }
                    None => {
                        return Err(RegistryError::Unauthorized {
                            registry: self.inner.host.clone(),
                            what: format!("GET {url}"),
                            detail: "no usable WWW-Authenticate challenge".into(),
                        })
                    }
                }
            }
            s if s.is_success() => AuthState::Anonymous,
            s if s == StatusCode::NOT_FOUND => {
                return Err(RegistryError::Protocol {
                    registry: self.inner.host.clone(),
                    what: format!("GET {url}"),
                    message: "no registry API at /v2/ (404)".into(),
                })
            }
            s => {
                return Err(RegistryError::Status {
                    registry: self.inner.host.clone(),
                    what: format!("GET {url}"),
                    status: s.as_u16(),
                    detail: String::new(),
                })
            }
        };
        *self.inner.auth.lock().unwrap() = state;
        Ok(())
    }

    /// The Authorization header for `scopes`, fetching a token when needed.
    async fn authorization(
        &self,
        scopes: &[String],
        refresh: bool,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        self.probe().await?;
        let (realm, service) = {
            let state = self.inner.auth.lock().unwrap();
            match &*state {
                AuthState::Unknown | AuthState::Anonymous => return Ok(None),
                AuthState::Basic => {
                    let Some(c) = &self.inner.credentials else {
                        return Err(RegistryError::Unauthorized {
                            registry: self.inner.host.clone(),
                            what: "basic authentication".into(),
                            detail: "no credentials: use --creds or log in (auth file)".into(),
                        });
                    };
                    return Ok(Some(basic_header(c)));
                }
                AuthState::Bearer { realm, service } => (realm.clone(), service.clone()),
            }
        };
        let key = scopes.join(" ");
        if !refresh {
            if let Some(t) = self.inner.tokens.lock().unwrap().get(&key) {
                return Ok(Some(bearer_header(t)));
            }
        }
        let mut req = self.inner.http.get(&realm);
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = &service {
            query.push(("service", s));
        }
        for s in scopes {
            query.push(("scope", s));
        }
        req = req.query(&query);
        if let Some(c) = &self.inner.credentials {
            req = req.header(AUTHORIZATION, basic_header(c));
        }
        let what = format!("token from {realm}");
        let resp = req.send().await.map_err(self.transport(&what))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: self.inner.host.clone(),
                what,
                detail: if self.inner.credentials.is_some() {
                    "the token server refused the credentials".into()
                } else {
                    "the token server wants credentials: use --creds or log in".into()
                },
            });
        }
        if !status.is_success() {
            return Err(RegistryError::Status {
                registry: self.inner.host.clone(),
                what,
                status: status.as_u16(),
                detail: String::new(),
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = resp.bytes().await.map_err(self.transport(&what))?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                registry: self.inner.host.clone(),
                what: what.clone(),
                message: format!("invalid token response: {e}"),
            })?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.inner.host.clone(),
                what,
                message: "token response has no token".into(),
            })?;
        self.inner.tokens.lock().unwrap().insert(key, token.clone());
        Ok(Some(bearer_header(&token)))
    }

    fn url(&self, path: &str) -> String {
        let base = self.base();
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{base}{path}")
        }
    }

    /// Sends a request built by `build`, adding authorization for `scopes`, retrying on a
    /// stale token (once) and, when `retry` is set, on transient failures with backoff.
    async fn send(
        &self,
        what: &str,
        scopes: &[String],
        retry: bool,
        build: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Sync),
    ) -> Result<Response, RegistryError> {
        let attempts = if retry {
            self.inner.opts.attempts.max(1)
        } else {
            1
        };
        let mut delay = self.inner.opts.backoff;
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let auth = match self.authorization(scopes, false).await {
                Ok(auth) => auth,
                // The `/v2/` probe or a token request failed: transient failures there
                // (a registry answering 503 while it starts, a dropped connection) are
                // retried like the request's own.
                Err(err) if retry && attempt < attempts && err.is_transient() => {
                    tracing::debug!("{what}: {err}; attempt {attempt} of {attempts}");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    continue;
                }
                Err(err) => return Err(err),
            };
            let mut req = build(&self.inner.http);
            if let Some(h) = auth.clone() {
                req = req.header(AUTHORIZATION, h);
            }
            let result = match req.build() {
                Ok(mut request) => {
                    self.rebase(request.url_mut());
                    self.inner.http.execute(request).await
                }
                Err(e) => Err(e),
            }
            .map_err(self.transport(what));
            let err = match result {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    if auth.is_some() && !refreshed {
                        refreshed = true;
                        self.authorization(scopes, true).await?;
                        continue;
                    }
                    if auth.is_none() && !refreshed {
                        // The registry asks for auth after an anonymous probe succeeded.
                        refreshed = true;
                        *self.inner.auth.lock().unwrap() = AuthState::Unknown;
                        let challenge = resp
                            .headers()
                            .get(reqwest::header::WWW_AUTHENTICATE)
                            .and_then(|v| v.to_str().ok())
                            .and_then(parse_challenge);
                        if let Some(c) = challenge {
                            *self.inner.auth.lock().unwrap() = match c {
                                Challenge::Basic => AuthState::Basic,
                                Challenge::Bearer { realm, service } => {
                                    AuthState::Bearer { realm, service }
                                }
                            };
                            continue;
                        }
                    }
                    return Err(RegistryError::Unauthorized {
                        registry: self.inner.host.clone(),
                        what: what.to_string(),
                        detail: error_detail(resp).await,
                    });
                }
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    if retry && attempt < attempts && (s == 429 || (s >= 500 && s != 501)) {
                        tracing::debug!("{what}: HTTP {s}, retrying in {delay:?}");
                        RegistryError::Status {
                            registry: self.inner.host.clone(),
                            what: what.to_string(),
                            status: s,
                            detail: String::new(),
                        }
                    } else {
                        return Ok(resp);
                    }
                }
                Err(e) => e,
            };
            if !(retry && attempt < attempts && err.is_transient()) {
                return Err(err);
            }
            tracing::debug!("{what}: {err}; attempt {attempt} of {attempts}");
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }

    fn status_error(&self, what: &str, status: StatusCode, detail: String) -> RegistryError {
        if status == StatusCode::NOT_FOUND {
            RegistryError::NotFound {
                registry: self.inner.host.clone(),
                what: what.to_string(),
                detail,
            }
        } else {
            RegistryError::Status {
                registry: self.inner.host.clone(),
                what: what.to_string(),
                status: status.as_u16(),
                detail,
            }
        }
    }

    fn protocol(&self, what: &str, message: impl Into<String>) -> RegistryError {
        RegistryError::Protocol {
            registry: self.inner.host.clone(),
            what: what.to_string(),
            message: message.into(),
        }
    }

    /// Fetches a manifest by tag or digest. A manifest fetched by digest is verified.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let scopes = [pull_scope(repo)];
        let resp = self
            .send(&what, &scopes, true, &|c| {
                c.get(&url).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.status_error(&what, status, error_detail(resp).await));
        }
        let media_type = content_type(resp.headers());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let bytes = resp.bytes().await.map_err(self.transport(&what))?.to_vec();
        let expected = reference.parse::<Digest>().ok().or(header_digest);
        let actual = match &expected {
            Some(d) => {
                let mut h = Hasher::new(d.algorithm());
                h.update(&bytes);
                h.finish()
            }
            None => Digest::sha256_of(&bytes),
        };
        if let Some(expected) = expected {
            if expected != actual {
                return Err(self.protocol(
                    &what,
                    format!("content hashes to {actual}, not {expected}; discarded"),
                ));
            }
        }
        let media_type = media_type
            .or_else(|| sniff_media_type(&bytes))
            .ok_or_else(|| self.protocol(&what, "response has no media type"))?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest: actual,
        })
    }

    /// Whether the registry has the blob, and its size when it says.
    pub async fn blob_exists(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let what = format!("blob {digest} in {repo}");
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let scopes = [pull_scope(repo)];
        let resp = self.send(&what, &scopes, true, &|c| c.head(&url)).await?;
        match resp.status() {
            // Not `resp.content_length()`: for a HEAD response that is the length of the
            // (empty) body, always 0, not the blob's size the header announces.
            s if s.is_success() => Ok(Some(
                resp.headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(self.status_error(&what, s, String::new())),
        }
    }

    /// Downloads a blob into `sink`, verifying size (when given) and digest. A connection
    /// that breaks mid-way is resumed with a range request where the registry allows it.
    /// Returns the number of bytes written.
    pub async fn fetch_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: Option<u64>,
        sink: &mut (dyn Write + Send),
    ) -> Result<u64, RegistryError> {
        self.fetch_blob_with(repo, digest, size, sink, true).await
    }

    /// [`Client::fetch_blob`], with the digest check left to a caller whose sink hashes
    /// the bytes itself (a content-store ingest): the size is still enforced.
    pub async fn fetch_blob_with(
        &self,
        repo: &str,
        digest: &Digest,
        size: Option<u64>,
        sink: &mut (dyn Write + Send),
        verify: bool,
    ) -> Result<u64, RegistryError> {
        let what = format!("blob {digest} from {repo}");
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let scopes = [pull_scope(repo)];
        let mut hasher = Hasher::new(digest.algorithm());
        let mut written: u64 = 0;
        let mut failures = 0u32;
        let mut delay = self.inner.opts.backoff;
        loop {
            let offset = written;
            let resp = self
                .send(&what, &scopes, true, &|c| {
                    let r = c.get(&url);
                    if offset > 0 {
                        r.header(reqwest::header::RANGE, format!("bytes={offset}-"))
                    } else {
                        r
                    }
                })
                .await?;
            let status = resp.status();
            let mut skip = match status {
                StatusCode::PARTIAL_CONTENT => 0,
                s if s.is_success() => offset,
                s => return Err(self.status_error(&what, s, error_detail(resp).await)),
            };
            let mut resp = resp;
            let result: Result<(), RegistryError> = async {
                while let Some(chunk) = resp.chunk().await.map_err(self.transport(&what))? {
                    let mut data = &chunk[..];
                    if skip > 0 {
                        let n = (skip as usize).min(data.len());
                        data = &data[n..];
                        skip -= n as u64;
                    }
                    if data.is_empty() {
                        continue;
                    }
                    written += data.len() as u64;
                    if let Some(size) = size {
                        if written > size {
                            return Err(self.protocol(
                                &what,
                                format!("more than the {size} bytes announced; discarded"),
                            ));
                        }
                    }
                    if verify {
                        hasher.update(data);
                    }
                    sink.write_all(data).map_err(|source| RegistryError::Sink {
                        registry: self.inner.host.clone(),
                        what: what.clone(),
                        source,
                    })?;
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => break,
                Err(e) if e.is_transient() && failures + 1 < self.inner.opts.attempts => {
                    failures += 1;
                    tracing::debug!("{what}: {e}; resuming at byte {written}");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(size) = size {
            if written != size {
                return Err(self.protocol(
                    &what,
                    format!("got {written} bytes, expected {size}; discarded"),
                ));
            }
        }
        let actual = hasher.finish();
        if verify && &actual != digest {
            return Err(self.protocol(&what, format!("content hashes to {actual}; discarded")));
        }
        Ok(written)
    }

    /// Uploads a manifest under a tag or its digest. Returns the digest the registry gave.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let scopes = [push_scope(repo)];
        let body = bytes.to_vec();
        let resp = self
            .send(&what, &scopes, true, &|c| {
                c.put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        let s = resp.status();
        if !(s == StatusCode::CREATED || s.is_success()) {
            return Err(self.status_error(&what, s, error_detail(resp).await));
        }
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| Digest::sha256_of(bytes)))
    }

    /// All tags of a repository (following pagination).
    pub async fn list_tags(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        let what = format!("tags of {repo}");
        let mut next = Some(self.url(&format!("/v2/{repo}/tags/list")));
        let scopes = [pull_scope(repo)];
        let mut tags = Vec::new();
        while let Some(url) = next.take() {
            let resp = self.send(&what, &scopes, true, &|c| c.get(&url)).await?;
            let s = resp.status();
            if !s.is_success() {
                return Err(self.status_error(&what, s, error_detail(resp).await));
            }
            next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(|v| {
                    v.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                })
                .map(|l| self.url(&l));
            #[derive(serde::Deserialize)]
            struct Tags {
                tags: Option<Vec<String>>,
            }
            let body = resp.bytes().await.map_err(self.transport(&what))?;
            let t: Tags = serde_json::from_slice(&body)
                .map_err(|e| self.protocol(&what, format!("invalid tag list: {e}")))?;
            tags.extend(t.tags.unwrap_or_default());
        }
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for h in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost",
            "localhost:80",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "example.com:443",
            "[2001:db8::1]:5000",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn sniffs_media_types() {
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(),
            Some("application/vnd.oci.image.index.v1+json")
        );
        assert_eq!(
            sniff_media_type(br#"{"mediaType":"x/y","layers":[]}"#).as_deref(),
            Some("x/y")
        );
    }
}

//! Uploads: cross-repository mounts, monolithic and chunked blob uploads.

use std::path::Path;

use content::Digest;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Response, StatusCode};

use super::{error_detail, location, pull_scope, push_scope, Client};
use crate::error::RegistryError;

impl Client {
    /// Tries to mount `digest` from `from_repo` into `repo` (same registry).
    /// Returns true when the registry mounted it.
    pub async fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from_repo: &str,
    ) -> Result<bool, RegistryError> {
        let what = format!("mounting blob {digest} from {from_repo} into {repo}");
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let scopes = [push_scope(repo), pull_scope(from_repo)];
        let query = [
            ("mount", digest.to_string()),
            ("from", from_repo.to_string()),
        ];
        let resp = self
            .send(&what, &scopes, true, &|c| {
                c.post(&url)
                    .query(&query)
                    .header(CONTENT_TYPE, "application/octet-stream")
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // The registry started an upload instead; cancel it.
                if let Some(loc) = location(&resp) {
                    let loc = self.url(&loc);
                    let _ = self.send(&what, &scopes, false, &|c| c.delete(&loc)).await;
                }
                Ok(false)
            }
            s if s.is_client_error() => Ok(false),
            s => Err(self.status_error(&what, s, error_detail(resp).await)),
        }
    }

    /// Uploads the blob held in `path` (exactly `size` bytes hashing to `digest`).
    /// With `chunk_size`, the upload is sent as PATCH chunks of that size; otherwise in
    /// one PUT. The whole upload is retried from a new session on transient failures.
    pub async fn upload_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        path: &Path,
        chunk_size: Option<u64>,
    ) -> Result<(), RegistryError> {
        let mut delay = self.inner.opts.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.upload_once(repo, digest, size, path, chunk_size).await {
                Err(e) if e.is_transient() && attempt < self.inner.opts.attempts => {
                    tracing::debug!("upload of {digest}: {e}; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
                r => return r,
            }
        }
    }

    async fn upload_once(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        path: &Path,
        chunk_size: Option<u64>,
    ) -> Result<(), RegistryError> {
        let what = format!("uploading blob {digest} to {repo}");
        let scopes = [push_scope(repo)];
        let start = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self
            .send(&what, &scopes, true, &|c| {
                c.post(&start).header(reqwest::header::CONTENT_LENGTH, "0")
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            let s = resp.status();
            return Err(self.status_error(&what, s, error_detail(resp).await));
        }
        let mut loc = location(&resp)
            .map(|l| self.url(&l))
            .ok_or_else(|| self.protocol(&what, "upload session has no Location"))?;
        if let Some(chunk) = chunk_size.filter(|c| *c > 0 && *c < size) {
            let mut offset = 0u64;
            while offset < size {
                let len = chunk.min(size - offset);
                let body =
                    file_body(path, offset, len)
                        .await
                        .map_err(|source| RegistryError::File {
                            path: path.display().to_string(),
                            source,
                        })?;
                let range = format!("{}-{}", offset, offset + len - 1);
                let l = loc.clone();
                let body = std::sync::Mutex::new(Some(body));
                let resp = self
                    .send(&what, &scopes, false, &|c| {
                        let b = body
                            .lock()
                            .unwrap()
                            .take()
                            .unwrap_or_else(|| reqwest::Body::from(""));
                        c.patch(&l)
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header("Content-Range", range.clone())
                            .header(reqwest::header::CONTENT_LENGTH, len)
                            .body(b)
                    })
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    let s = resp.status();
                    return Err(self.status_error(&what, s, error_detail(resp).await));
                }
                if let Some(l) = location(&resp) {
                    loc = self.url(&l);
                }
                offset += len;
            }
            let resp = self
                .send(&what, &scopes, false, &|c| {
                    c.put(&loc)
                        .query(&[("digest", digest.to_string())])
                        .header(reqwest::header::CONTENT_LENGTH, "0")
                })
                .await?;
            return self.expect_created(&what, resp).await;
        }
        let body = file_body(path, 0, size)
            .await
            .map_err(|source| RegistryError::File {
                path: path.display().to_string(),
                source,
            })?;
        let body = std::sync::Mutex::new(Some(body));
        let resp = self
            .send(&what, &scopes, false, &|c| {
                let b = body
                    .lock()
                    .unwrap()
                    .take()
                    .unwrap_or_else(|| reqwest::Body::from(""));
                c.put(&loc)
                    .query(&[("digest", digest.to_string())])
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_LENGTH, size)
                    .body(b)
            })
            .await?;
        self.expect_created(&what, resp).await
    }

    async fn expect_created(&self, what: &str, resp: Response) -> Result<(), RegistryError> {
        let s = resp.status();
        if s == StatusCode::CREATED || s == StatusCode::NO_CONTENT || s == StatusCode::OK {
            Ok(())
        } else {
            Err(self.status_error(what, s, error_detail(resp).await))
        }
    }
}

/// A request body streaming `len` bytes of `path` from `offset`.
async fn file_body(path: &Path, offset: u64, len: u64) -> std::io::Result<reqwest::Body> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await?;
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 * 1024);
    Ok(reqwest::Body::wrap_stream(stream))
}

//! `import`: a root filesystem (a directory or a tar) becomes a one-layer image.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use content::{Digest, Hasher};

use crate::manifest::{
    to_json, ContainerConfig, Descriptor, ImageConfig, ImageManifest, Platform, RootFs, OCI_CONFIG,
    OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_MANIFEST,
};
use crate::reference::DockerRef;
use crate::store::ImageStore;
use crate::{ImageError, Result};

/// What the image config of an imported rootfs says.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub labels: BTreeMap<String, String>,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// Defaults to the host's.
    pub platform: Option<Platform>,
    /// Seconds since the epoch for `created` and every mtime in the layer (reproducible
    /// builds: `SOURCE_DATE_EPOCH`); file mtimes are kept when unset.
    pub epoch: Option<u64>,
    /// zstd instead of gzip for the layer.
    pub zstd: bool,
}

/// Hashes the uncompressed stream on its way to the compressor (the diff ID).
struct Tee<W: Write> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Imports `input` (a directory, or a tar file, compressed or not) as the image `name`.
/// Returns the manifest digest.
pub fn import_rootfs(
    store: &ImageStore,
    input: &Path,
    name: &DockerRef,
    opts: &ImportOptions,
) -> Result<Digest> {
    let blobs = store.layout().store();
    let _lock = store.layout().lock(false)?;
    let compression = if opts.zstd {
        archive::Compression::Zstd
    } else {
        archive::Compression::Gzip
    };
    let mut ingest = blobs.ingest(None, None)?;
    let ingest_path = blobs.root().join("ingest");
    let diff_id = {
        let compressor =
            archive::compress(&mut ingest, compression).map_err(ImageError::io(&ingest_path))?;
        let mut tee = Tee {
            inner: compressor,
            hasher: Hasher::new(content::Algorithm::Sha256),
        };
        let meta = std::fs::metadata(input).map_err(ImageError::io(input))?;
        if meta.is_dir() {
            let popts = archive::PackOptions {
                mtime: opts.epoch,
                ..Default::default()
            };
            archive::pack_dir(input, &mut tee, &popts)?;
        } else {
            let f = File::open(input).map_err(ImageError::io(input))?;
            let (_, mut r) = archive::decompress(io::BufReader::with_capacity(1 << 20, f))
                .map_err(ImageError::io(input))?;
            check_tar(input, &mut r, &mut tee)?;
        }
        let Tee { inner, hasher } = tee;
        inner.finish().map_err(ImageError::io(&ingest_path))?;
        hasher.finish()
    };
    let layer_size = ingest.written();
    let layer_digest = ingest.commit()?;

    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let created = rfc3339(opts.epoch.unwrap_or_else(now));
    let config = ImageConfig {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        created: Some(created.clone()),
        author: None,
        config: Some(ContainerConfig {
            user: opts.user.clone(),
            env: (!opts.env.is_empty()).then(|| opts.env.clone()),
            entrypoint: opts.entrypoint.clone(),
            cmd: opts.cmd.clone(),
            working_dir: opts.workdir.clone(),
            labels: (!opts.labels.is_empty()).then(|| opts.labels.clone()),
            ..Default::default()
        }),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id],
        },
        history: vec![serde_json::json!({
            "created": created,
            "created_by": format!("fluke image import {}", input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
        })],
        docker_version: None,
    };
    let config_bytes = to_json(&config);
    let config_digest = blobs.put(&config_bytes)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: Descriptor::new(OCI_CONFIG, config_digest, config_bytes.len() as u64),
        layers: vec![Descriptor::new(
            if opts.zstd {
                OCI_LAYER_ZSTD
            } else {
                OCI_LAYER_GZIP
            },
            layer_digest,
            layer_size,
        )],
        annotations: None,
    };
    let bytes = to_json(&manifest);
    let digest = blobs.put(&bytes)?;
    store.layout().add(
        Descriptor::new(OCI_MANIFEST, digest.clone(), bytes.len() as u64),
        Some(&name.to_string()),
    )?;
    Ok(digest)
}

/// Copies a tar stream, checking that it parses as tar (so that a truncated or foreign
/// file is refused with its name, not stored as a broken layer).
fn check_tar(input: &Path, r: &mut dyn Read, out: &mut dyn Write) -> Result<()> {
    struct TeeReader<'a> {
        r: &'a mut dyn Read,
        out: &'a mut dyn Write,
    }
    impl Read for TeeReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.r.read(buf)?;
            self.out.write_all(&buf[..n])?;
            Ok(n)
        }
    }
    let bad = |e: io::Error| {
        ImageError::invalid(input.display(), format!("not a valid tar archive: {e}"))
    };
    let mut ar = tar::Archive::new(TeeReader { r, out });
    let mut count = 0usize;
    for entry in ar.entries().map_err(bad)? {
        let mut e = entry.map_err(bad)?;
        io::copy(&mut e, &mut io::sink()).map_err(bad)?;
        count += 1;
    }
    if count == 0 {
        return Err(ImageError::invalid(
            input.display(),
            "empty or not a tar archive",
        ));
    }
    // Whatever follows the end-of-archive blocks goes along unchanged.
    let mut inner = ar.into_inner();
    io::copy(&mut inner, &mut io::sink()).map_err(bad)?;
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Formats seconds since the epoch as RFC 3339 UTC (`2024-01-02T03:04:05Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}

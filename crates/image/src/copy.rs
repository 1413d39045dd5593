//! The copy engine: one algorithm for every pair of transports.

use std::collections::BTreeSet;
use std::sync::Arc;

use content::Digest;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::manifest::{is_index_type, select_platform, Descriptor, Manifest, Platform};
use crate::progress::{BlobOutcome, Progress};
use crate::transport::{ImageDestination, ImageSource};
use crate::{ImageError, Result};

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Copy every image of an index (else only the one for `platform`).
    pub all: bool,
    /// The platform to pick from an index; the host's when unset.
    pub platform: Option<Platform>,
    /// Blobs moved at once.
    pub parallel: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            all: false,
            platform: None,
            parallel: 4,
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// Digest and media type of the manifest the destination now names.
    pub digest: Digest,
    pub media_type: String,
    pub images: usize,
    pub copied: usize,
    pub skipped: usize,
    pub mounted: usize,
    pub bytes: u64,
}

fn digest_of(bytes: &[u8], like: Option<&Digest>) -> Digest {
    let mut h = content::Hasher::new(like.map_or(content::Algorithm::Sha256, Digest::algorithm));
    h.update(bytes);
    h.finish()
}

/// Copies the image `src` names to `dst`: blobs first (in parallel, skipping those the
/// destination has), then manifests, then the commit that makes it visible.
pub async fn copy_image(
    src: Arc<dyn ImageSource>,
    dst: Arc<dyn ImageDestination>,
    opts: &CopyOptions,
    progress: Arc<dyn Progress>,
) -> Result<CopyReport> {
    let result = copy_inner(src, dst.clone(), opts, progress).await;
    if result.is_err() {
        dst.abort().await;
    }
    result
}

async fn copy_inner(
    src: Arc<dyn ImageSource>,
    dst: Arc<dyn ImageDestination>,
    opts: &CopyOptions,
    progress: Arc<dyn Progress>,
) -> Result<CopyReport> {
    let (top, top_type) = src.manifest(None).await?;
    let what = src.describe();
    let parsed = Manifest::parse(&top, &top_type, &what)?;
    let mut report = CopyReport {
        digest: digest_of(&top, None),
        media_type: top_type.clone(),
        images: 0,
        copied: 0,
        skipped: 0,
        mounted: 0,
        bytes: 0,
    };
    match parsed {
        Manifest::Image(_) => {
            copy_one(&src, &dst, &top, &top_type, opts, &progress, &mut report).await?;
            progress.note("Writing manifest");
            dst.commit(&top, &top_type, &report.digest).await?;
        }
        Manifest::Index(index) if opts.all => {
            if !dst.accepts_index() {
                return Err(ImageError::invalid(
                    dst.describe(),
                    "holds one image, not a multi-platform index: drop --all",
                ));
            }
            for inst in &index.manifests {
                let (bytes, mt) = fetch_instance(&*src, inst, &what).await?;
                copy_one(&src, &dst, &bytes, &mt, opts, &progress, &mut report).await?;
                dst.put_instance(&bytes, &mt, &inst.digest).await?;
            }
            progress.note("Writing manifest list");
            dst.commit(&top, &top_type, &report.digest).await?;
        }
        Manifest::Index(index) => {
            let want = opts.platform.clone().unwrap_or_else(Platform::host);
            let inst = select_platform(&index, &want, &what)?;
            let (bytes, mt) = fetch_instance(&*src, inst, &what).await?;
            copy_one(&src, &dst, &bytes, &mt, opts, &progress, &mut report).await?;
            report.digest = inst.digest.clone();
            report.media_type = mt.clone();
            progress.note("Writing manifest");
            dst.commit(&bytes, &mt, &inst.digest).await?;
        }
    }
    Ok(report)
}

/// Fetches an index entry's manifest and checks it is what the index says.
async fn fetch_instance(
    src: &dyn ImageSource,
    inst: &Descriptor,
    what: &str,
) -> Result<(Vec<u8>, String)> {
    let (bytes, mt) = src.manifest(Some(inst)).await?;
    let actual = digest_of(&bytes, Some(&inst.digest));
    if actual != inst.digest {
        return Err(ImageError::invalid(
            format!("{what}: manifest {}", inst.digest),
            format!("content hashes to {actual}"),
        ));
    }
    if is_index_type(&mt) {
        return Err(ImageError::invalid(
            format!("{what}: manifest {}", inst.digest),
            "nested indexes are not supported",
        ));
    }
    Ok((bytes, mt))
}

/// Copies the config and layers one image manifest references.
async fn copy_one(
    src: &Arc<dyn ImageSource>,
    dst: &Arc<dyn ImageDestination>,
    bytes: &[u8],
    media_type: &str,
    opts: &CopyOptions,
    progress: &Arc<dyn Progress>,
    report: &mut CopyReport,
) -> Result<()> {
    let what = src.describe();
    let Manifest::Image(m) = Manifest::parse(bytes, media_type, &what)? else {
        return Err(ImageError::invalid(what, "expected an image manifest"));
    };
    report.images += 1;
    let mut seen = BTreeSet::new();
    let mut blobs = Vec::new();
    for (kind, d) in
        std::iter::once(("config", &m.config)).chain(m.layers.iter().map(|l| ("layer", l)))
    {
        if seen.insert(d.digest.clone()) {
            blobs.push((kind, d.clone()));
        }
    }
    // Largest first: the longest transfer starts at once instead of last.
    blobs.sort_by_key(|(_, d)| std::cmp::Reverse(d.size));
    let limit = Arc::new(Semaphore::new(opts.parallel.max(1)));
    let mut tasks = JoinSet::new();
    for (kind, desc) in blobs {
        let (src, dst, progress, limit) =
            (src.clone(), dst.clone(), progress.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            if dst.has_blob(&desc).await? {
                progress.blob_done(&desc.digest, BlobOutcome::Skipped);
                return Ok::<_, ImageError>((BlobOutcome::Skipped, 0));
            }
            progress.blob_start(&desc.digest, desc.size, kind);
            let mounted = dst.put_blob(&desc, &*src, &*progress).await?;
            let outcome = if mounted {
                BlobOutcome::Mounted
            } else {
                BlobOutcome::Copied
            };
            progress.blob_done(&desc.digest, outcome);
            Ok((outcome, desc.size))
        });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok((outcome, size))) => match outcome {
                BlobOutcome::Copied => {
                    report.copied += 1;
                    report.bytes += size;
                }
                BlobOutcome::Skipped => report.skipped += 1,
                BlobOutcome::Mounted => report.mounted += 1,
            },
            Ok(Err(e)) => {
                if first_error.is_none() {
                    first_error = Some(e);
                    // Stop the others: what they wrote is uncommitted and cleaned up.
                    tasks.abort_all();
                }
            }
            Err(join) if join.is_cancelled() => {}
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

//! `dir:DIR`: skopeo's directory format (`manifest.json`, blobs named by hex digest,
//! `version`; instances of an index as `HEX.manifest.json`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use content::{Digest, Hasher};

use super::{copy_file_into, sniff_manifest_type, Counting, ImageDestination, ImageSource};
use crate::layout::write_atomic;
use crate::manifest::Descriptor;
use crate::progress::Progress;
use crate::{ImageError, Result};

const VERSION: &str = "Directory Transport Version: 1.1\n";

pub struct DirSource {
    dir: PathBuf,
}

impl DirSource {
    pub fn open(dir: &Path) -> Result<DirSource> {
        if !dir.join("manifest.json").is_file() {
            return Err(ImageError::invalid(
                format!("dir:{}", dir.display()),
                "no manifest.json: not an image directory",
            ));
        }
        Ok(DirSource {
            dir: dir.to_path_buf(),
        })
    }
}

#[async_trait]
impl ImageSource for DirSource {
    fn describe(&self) -> String {
        format!("dir:{}", self.dir.display())
    }

    async fn manifest(&self, instance: Option<&Descriptor>) -> Result<(Vec<u8>, String)> {
        let path = match instance {
            Some(d) => self.dir.join(format!("{}.manifest.json", d.digest.hex())),
            None => self.dir.join("manifest.json"),
        };
        let bytes = fs::read(&path).map_err(ImageError::io(&path))?;
        let media_type = match instance {
            Some(d) => d.media_type.clone(),
            None => sniff_manifest_type(&bytes),
        };
        Ok((bytes, media_type))
    }

    async fn fetch_blob(&self, desc: &Descriptor, sink: &mut (dyn Write + Send)) -> Result<u64> {
        copy_file_into(&self.dir.join(desc.digest.hex()), sink)
    }

    fn blob_path(&self, desc: &Descriptor) -> Option<PathBuf> {
        let p = self.dir.join(desc.digest.hex());
        p.is_file().then_some(p)
    }
}

pub struct DirDestination {
    dir: PathBuf,
    /// This destination made the directory (and removes it if the copy fails).
    created: bool,
}

impl DirDestination {
    pub fn create(dir: &Path) -> Result<DirDestination> {
        if dir.exists() {
            let non_empty = fs::read_dir(dir)
                .map_err(ImageError::io(dir))?
                .next()
                .is_some();
            if non_empty && !dir.join("version").is_file() {
                return Err(ImageError::invalid(
                    format!("dir:{}", dir.display()),
                    "directory is not empty and not an image directory",
                ));
            }
        }
        let created = !dir.exists();
        fs::create_dir_all(dir).map_err(ImageError::io(dir))?;
        Ok(DirDestination {
            dir: dir.to_path_buf(),
            created,
        })
    }
}

/// Hashes and counts what is written, to check a blob before it is published.
struct Verifying<W: Write> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W: Write> Write for Verifying<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Copies a blob from `src` into `dest` through a temporary file in the same directory,
/// publishing it only when digest and size match.
pub(crate) async fn write_verified_file(
    dest: &Path,
    desc: &Descriptor,
    src: &dyn ImageSource,
    progress: &dyn Progress,
) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(ImageError::io(dir))?;
    let mut v = Verifying {
        inner: std::io::BufWriter::with_capacity(
            256 * 1024,
            tmp.as_file().try_clone().map_err(ImageError::io(dest))?,
        ),
        hasher: Hasher::new(desc.digest.algorithm()),
        written: 0,
    };
    {
        let mut w = Counting {
            inner: &mut v,
            progress,
            digest: &desc.digest,
        };
        src.fetch_blob(desc, &mut w).await?;
    }
    v.inner.flush().map_err(ImageError::io(dest))?;
    let Verifying {
        inner,
        hasher,
        written,
    } = v;
    drop(inner);
    let actual = hasher.finish();
    if written != desc.size {
        return Err(content::StoreError::SizeMismatch {
            digest: desc.digest.to_string(),
            expected: desc.size,
            actual: written,
        }
        .into());
    }
    if actual != desc.digest {
        return Err(content::StoreError::DigestMismatch {
            expected: desc.digest.clone(),
            actual,
        }
        .into());
    }
    tmp.as_file().sync_data().map_err(ImageError::io(dest))?;
    tmp.persist(dest)
        .map_err(|e| ImageError::io(dest)(e.error))?;
    Ok(())
}

#[async_trait]
impl ImageDestination for DirDestination {
    fn describe(&self) -> String {
        format!("dir:{}", self.dir.display())
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        Ok(self.dir.join(desc.digest.hex()).is_file())
    }

    async fn put_blob(
        &self,
        desc: &Descriptor,
        src: &dyn ImageSource,
        progress: &dyn Progress,
    ) -> Result<bool> {
        write_verified_file(&self.dir.join(desc.digest.hex()), desc, src, progress).await?;
        Ok(false)
    }

    async fn put_instance(&self, bytes: &[u8], _media_type: &str, digest: &Digest) -> Result<()> {
        write_atomic(
            &self.dir.join(format!("{}.manifest.json", digest.hex())),
            bytes,
        )
    }

    async fn abort(&self) {
        if self.created {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    async fn commit(&self, bytes: &[u8], _media_type: &str, _digest: &Digest) -> Result<()> {
        write_atomic(&self.dir.join("manifest.json"), bytes)?;
        write_atomic(&self.dir.join("version"), VERSION.as_bytes())
    }
}

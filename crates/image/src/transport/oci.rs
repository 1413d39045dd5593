//! `oci:DIR[:REF]`: an OCI image layout on disk (also the shape of the local store).

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use content::Digest;

use super::{copy_file_into, ingest_blob, ImageDestination, ImageSource};
use crate::layout::{Layout, LockGuard};
use crate::manifest::Descriptor;
use crate::progress::Progress;
use crate::{ImageError, Result};

/// Reads one image (or index) of a layout.
pub struct LayoutSource {
    layout: Layout,
    top: Descriptor,
    name: String,
}

impl LayoutSource {
    pub fn open(dir: &Path, reference: Option<&str>, name: String) -> Result<LayoutSource> {
        let layout = Layout::open(dir)?;
        let top = layout.find(reference)?;
        Ok(LayoutSource::with(layout, top, name))
    }

    pub(crate) fn with(layout: Layout, top: Descriptor, name: String) -> LayoutSource {
        LayoutSource { layout, top, name }
    }

    /// The descriptor the reference resolved to.
    pub fn top(&self) -> &Descriptor {
        &self.top
    }
}

#[async_trait]
impl ImageSource for LayoutSource {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn manifest(&self, instance: Option<&Descriptor>) -> Result<(Vec<u8>, String)> {
        let desc = instance.unwrap_or(&self.top);
        let bytes = self.layout.store().read(&desc.digest)?;
        Ok((bytes, desc.media_type.clone()))
    }

    async fn fetch_blob(&self, desc: &Descriptor, sink: &mut (dyn Write + Send)) -> Result<u64> {
        let path = self.layout.store().blob_path(&desc.digest);
        if !path.is_file() {
            return Err(content::StoreError::NotFound(desc.digest.clone()).into());
        }
        copy_file_into(&path, sink)
    }

    fn blob_path(&self, desc: &Descriptor) -> Option<PathBuf> {
        let p = self.layout.store().blob_path(&desc.digest);
        p.is_file().then_some(p)
    }
}

/// Writes an image into a layout, naming it in the index at commit.
pub struct LayoutDestination {
    layout: Layout,
    name: Option<String>,
    describe: String,
    /// This destination made the directory (and removes it if the copy fails).
    created: bool,
    _lock: LockGuard,
}

impl LayoutDestination {
    pub fn create(dir: &Path, name: Option<String>) -> Result<LayoutDestination> {
        let created = !dir.exists();
        let layout = Layout::create(dir)?;
        let describe = format!("oci:{}", dir.display());
        let mut d = LayoutDestination::with(layout, name, describe)?;
        d.created = created;
        Ok(d)
    }

    pub(crate) fn with(
        layout: Layout,
        name: Option<String>,
        describe: String,
    ) -> Result<LayoutDestination> {
        let lock = layout.lock(false)?;
        Ok(LayoutDestination {
            layout,
            name,
            describe,
            created: false,
            _lock: lock,
        })
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }
}

#[async_trait]
impl ImageDestination for LayoutDestination {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        Ok(self.layout.store().contains(&desc.digest))
    }

    async fn put_blob(
        &self,
        desc: &Descriptor,
        src: &dyn ImageSource,
        progress: &dyn Progress,
    ) -> Result<bool> {
        ingest_blob(self.layout.store(), desc, src, progress).await?;
        Ok(false)
    }

    async fn put_instance(&self, bytes: &[u8], _media_type: &str, digest: &Digest) -> Result<()> {
        put_manifest_blob(self.layout.store(), bytes, digest)
    }

    async fn abort(&self) {
        if self.created {
            let _ = std::fs::remove_dir_all(self.layout.dir());
        } else {
            self.layout.store().tidy();
        }
    }

    async fn commit(&self, bytes: &[u8], media_type: &str, digest: &Digest) -> Result<()> {
        put_manifest_blob(self.layout.store(), bytes, digest)?;
        let desc = Descriptor::new(media_type, digest.clone(), bytes.len() as u64);
        self.layout.add(desc, self.name.as_deref())?;
        self.layout.store().tidy();
        Ok(())
    }
}

pub(crate) fn put_manifest_blob(
    store: &content::Store,
    bytes: &[u8],
    digest: &Digest,
) -> Result<()> {
    let mut w = store.ingest(Some(digest), Some(bytes.len() as u64))?;
    w.write_all(bytes)
        .map_err(ImageError::io(store.root().join("ingest")))?;
    w.commit()?;
    Ok(())
}

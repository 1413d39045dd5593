//! Flattening an image's layers into a root filesystem directory.

use std::fs::File;
use std::path::Path;

use crate::inspect::image_manifest;
use crate::manifest::Platform;
use crate::transport::ImageSource;
use crate::{ImageError, Result};

/// Unpacks the image `src` names into `dest` (created when absent; must be empty),
/// layer by layer with whiteouts applied. The source must keep its blobs as files
/// (a layout, the store, an archive); pull a remote image first.
pub async fn unpack_image(
    src: &dyn ImageSource,
    platform: Option<&Platform>,
    dest: &Path,
    opts: &archive::UnpackOptions,
) -> Result<archive::UnpackStats> {
    let (_, m) = image_manifest(src, platform).await?;
    let mut layers = Vec::new();
    for (i, l) in m.layers.iter().enumerate() {
        let path = src.blob_path(l).ok_or_else(|| {
            ImageError::invalid(
                src.describe(),
                format!("layer {} ({}) is not available locally", i + 1, l.digest),
            )
        })?;
        let f = File::open(&path).map_err(ImageError::io(&path))?;
        layers.push((format!("layer {} ({})", i + 1, l.digest), f));
    }
    let created = !dest.exists();
    if !created {
        let mut entries = std::fs::read_dir(dest).map_err(ImageError::io(dest))?;
        if entries.next().is_some() {
            return Err(ImageError::invalid(
                dest.display(),
                "destination directory is not empty",
            ));
        }
    } else {
        std::fs::create_dir_all(dest).map_err(ImageError::io(dest))?;
    }
    let result = tokio::task::block_in_place(|| archive::unpack_layers(layers, dest, opts));
    if result.is_err() {
        // Leave nothing half-unpacked behind: empty what we filled.
        if created {
            let _ = std::fs::remove_dir_all(dest);
        } else if let Ok(entries) = std::fs::read_dir(dest) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() && !p.is_symlink() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
    Ok(result?)
}

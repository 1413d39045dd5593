//! `docker-archive:FILE[:NAME:TAG]`: the tar format of `docker save` (`manifest.json`,
//! a config JSON, uncompressed layer tars).

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use content::{Digest, Hasher};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

use super::tarfile::{clean_name, extract_files, write_archive, Member};
use super::{copy_file_into, ingest_blob, ImageDestination, ImageSource};
use crate::manifest::{
    to_json, Descriptor, ImageConfig, ImageManifest, DOCKER_CONFIG, DOCKER_LAYER,
    DOCKER_LAYER_GZIP, DOCKER_MANIFEST,
};
use crate::progress::Progress;
use crate::reference::{ArchiveRef, DockerRef};
use crate::{ImageError, Result};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The name a docker-archive records for an image (`busybox:1` for Docker Hub ones).
fn repo_tag(r: &DockerRef) -> String {
    r.familiar()
}

pub struct DockerArchiveSource {
    name: String,
    manifest: Vec<u8>,
    blobs: HashMap<Digest, PathBuf>,
    _tmp: TempDir,
}

fn hash_file(path: &Path) -> Result<(Digest, u64, [u8; 4])> {
    let mut f = File::open(path).map_err(ImageError::io(path))?;
    let mut h = Hasher::new(content::Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut magic = [0u8; 4];
    loop {
        let n = f.read(&mut buf).map_err(ImageError::io(path))?;
        if n == 0 {
            break;
        }
        if total == 0 {
            let m = n.min(4);
            magic[..m].copy_from_slice(&buf[..m]);
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((h.finish(), total, magic))
}

impl DockerArchiveSource {
    pub fn open(file: &Path, reference: Option<&ArchiveRef>) -> Result<DockerArchiveSource> {
        let name = format!("docker-archive:{}", file.display());
        let tmp = tempfile::Builder::new()
            .prefix("fluke-archive-")
            .tempdir()
            .map_err(ImageError::io(std::env::temp_dir()))?;
        extract_files(file, tmp.path(), &|_| true)?;
        let mpath = tmp.path().join("manifest.json");
        let text = fs::read(&mpath)
            .map_err(|_| ImageError::invalid(&name, "no manifest.json: not a docker-archive"))?;
        let entries: Vec<ArchiveEntry> =
            serde_json::from_slice(&text).map_err(|e| ImageError::InvalidManifest {
                what: format!("{name}: manifest.json"),
                message: e.to_string(),
            })?;
        let entry = match reference {
            Some(ArchiveRef::Index(i)) => entries.get(*i).ok_or_else(|| {
                ImageError::NotFound(format!("{name}:@{i} (it holds {} images)", entries.len()))
            })?,
            Some(ArchiveRef::Named(r)) => entries
                .iter()
                .find(|e| {
                    e.repo_tags
                        .iter()
                        .flatten()
                        .any(|t| DockerRef::parse(t, true).is_ok_and(|p| p == *r))
                })
                .ok_or_else(|| ImageError::NotFound(format!("{name}:{r}")))?,
            None => match entries.len() {
                1 => &entries[0],
                0 => return Err(ImageError::NotFound(name)),
                n => {
                    return Err(ImageError::invalid(
                        &name,
                        format!("the archive holds {n} images: name one (:NAME:TAG or :@INDEX)"),
                    ))
                }
            },
        };
        let member = |p: &str| -> Result<PathBuf> {
            let clean = clean_name(Path::new(p))
                .ok_or_else(|| ImageError::invalid(&name, format!("bad member name {p:?}")))?;
            let full = tmp.path().join(clean);
            if !full.is_file() {
                return Err(ImageError::invalid(
                    &name,
                    format!("manifest.json names {p:?}, which the archive does not hold"),
                ));
            }
            Ok(full)
        };
        let mut blobs = HashMap::new();
        let config_path = member(&entry.config)?;
        let (cd, cs, _) = hash_file(&config_path)?;
        blobs.insert(cd.clone(), config_path);
        let mut layers = Vec::new();
        for l in &entry.layers {
            let p = member(l)?;
            let (d, s, magic) = hash_file(&p)?;
            let mt = match archive::Compression::detect(&magic) {
                archive::Compression::None => DOCKER_LAYER,
                archive::Compression::Gzip => DOCKER_LAYER_GZIP,
                archive::Compression::Zstd => crate::manifest::OCI_LAYER_ZSTD,
            };
            blobs.insert(d.clone(), p);
            layers.push(Descriptor::new(mt, d, s));
        }
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(DOCKER_MANIFEST.to_string()),
            config: Descriptor::new(DOCKER_CONFIG, cd, cs),
            layers,
            annotations: None,
        };
        Ok(DockerArchiveSource {
            name,
            manifest: to_json(&manifest),
            blobs,
            _tmp: tmp,
        })
    }
}

#[async_trait]
impl ImageSource for DockerArchiveSource {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn manifest(&self, instance: Option<&Descriptor>) -> Result<(Vec<u8>, String)> {
        if instance.is_some() {
            return Err(ImageError::invalid(&self.name, "holds no manifest list"));
        }
        Ok((self.manifest.clone(), DOCKER_MANIFEST.to_string()))
    }

    async fn fetch_blob(&self, desc: &Descriptor, sink: &mut (dyn Write + Send)) -> Result<u64> {
        let p = self
            .blobs
            .get(&desc.digest)
            .ok_or_else(|| content::StoreError::NotFound(desc.digest.clone()))?;
        copy_file_into(p, sink)
    }

    fn blob_path(&self, desc: &Descriptor) -> Option<PathBuf> {
        self.blobs.get(&desc.digest).cloned()
    }
}

pub struct DockerArchiveDestination {
    file: PathBuf,
    tag: Option<DockerRef>,
    tmp: TempDir,
    store: content::Store,
}

impl DockerArchiveDestination {
    pub fn create(file: &Path, reference: Option<&ArchiveRef>) -> Result<DockerArchiveDestination> {
        let tag = match reference {
            Some(ArchiveRef::Named(r)) => Some(r.clone()),
            Some(ArchiveRef::Index(_)) => {
                return Err(ImageError::invalid(
                    format!("docker-archive:{}", file.display()),
                    "a destination takes :NAME:TAG, not an index",
                ))
            }
            None => None,
        };
        let tmp = tempfile::Builder::new()
            .prefix("fluke-archive-")
            .tempdir()
            .map_err(ImageError::io(std::env::temp_dir()))?;
        let store = content::Store::open(tmp.path().join("blobs"))?;
        Ok(DockerArchiveDestination {
            file: file.to_path_buf(),
            tag,
            tmp,
            store,
        })
    }

    /// Writes the uncompressed form of a layer to `out`, returning its digest (the diff ID).
    fn decompress_layer(&self, desc: &Descriptor, out: &Path) -> Result<Digest> {
        let f = self.store.open_blob(&desc.digest)?;
        let what = format!("layer {}", desc.digest);
        let (_, mut r) = archive::decompress(io::BufReader::with_capacity(1 << 20, f))
            .map_err(|e| ImageError::invalid(&what, format!("cannot decompress: {e}")))?;
        let mut w =
            io::BufWriter::with_capacity(1 << 20, File::create(out).map_err(ImageError::io(out))?);
        let mut h = Hasher::new(content::Algorithm::Sha256);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| ImageError::invalid(&what, format!("cannot decompress: {e}")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            w.write_all(&buf[..n]).map_err(ImageError::io(out))?;
        }
        w.flush().map_err(ImageError::io(out))?;
        Ok(h.finish())
    }
}

#[async_trait]
impl ImageDestination for DockerArchiveDestination {
    fn describe(&self) -> String {
        format!("docker-archive:{}", self.file.display())
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        Ok(self.store.contains(&desc.digest))
    }

    async fn put_blob(
        &self,
        desc: &Descriptor,
        src: &dyn ImageSource,
        progress: &dyn Progress,
    ) -> Result<bool> {
        ingest_blob(&self.store, desc, src, progress).await?;
        Ok(false)
    }

    async fn put_instance(&self, _bytes: &[u8], _media_type: &str, _digest: &Digest) -> Result<()> {
        Err(ImageError::invalid(
            self.describe(),
            "a docker-archive holds one image, not a manifest list (drop --all)",
        ))
    }

    fn accepts_index(&self) -> bool {
        false
    }

    async fn commit(&self, bytes: &[u8], media_type: &str, _digest: &Digest) -> Result<()> {
        let m = match crate::manifest::Manifest::parse(bytes, media_type, &self.describe())? {
            crate::manifest::Manifest::Image(m) => m,
            crate::manifest::Manifest::Index(_) => {
                return Err(ImageError::invalid(
                    self.describe(),
                    "holds one image, not an index",
                ))
            }
        };
        let config_bytes = self.store.read(&m.config.digest)?;
        let config = ImageConfig::parse(&config_bytes, &format!("config {}", m.config.digest))?;
        let config_name = format!("{}.json", m.config.digest.hex());
        let mut members = vec![(config_name.clone(), Member::Bytes(config_bytes))];
        let mut layer_names = Vec::new();
        let mut seen = BTreeSet::new();
        let layer_dir = self.tmp.path().join("layers");
        fs::create_dir_all(&layer_dir).map_err(ImageError::io(&layer_dir))?;
        for (i, layer) in m.layers.iter().enumerate() {
            let out = layer_dir.join(format!("{i}.tar"));
            let diff_id = tokio::task::block_in_place(|| self.decompress_layer(layer, &out))?;
            if let Some(want) = config.rootfs.diff_ids.get(i) {
                if *want != diff_id {
                    return Err(ImageError::invalid(
                        format!("layer {} ({})", i + 1, layer.digest),
                        format!("uncompressed digest {diff_id} differs from the config's diff_id {want}"),
                    ));
                }
            }
            let name = format!("{}.tar", diff_id.hex());
            if seen.insert(name.clone()) {
                members.push((name.clone(), Member::File(out)));
            }
            layer_names.push(name);
        }
        let entry = vec![ArchiveEntry {
            config: config_name,
            repo_tags: Some(self.tag.iter().map(repo_tag).collect()),
            layers: layer_names,
        }];
        members.push((
            "manifest.json".to_string(),
            Member::Bytes(serde_json::to_vec(&entry).expect("serialisable")),
        ));
        tokio::task::block_in_place(|| write_archive(&self.file, members))
    }
}

//! The commands that work on the local store and on image files: ls, rm, tag, gc, fsck,
//! save, load, import.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use image::copy::CopyOptions;
use image::import::{import_rootfs, ImportOptions};
use image::manifest::Platform;
use image::reference::{ArchiveRef, DockerRef, ImageRef};
use image::transport::RegistryOptions;

use super::{transfer, FsckArgs, Global, ImportArgs, LoadArgs, LsArgs, RmArgs, SaveArgs, TagArgs};
use crate::progress::human;

pub(super) fn ls_cmd(a: LsArgs, g: &Global) -> Result<()> {
    let store = g.store()?;
    let images = store.list()?;
    if a.json {
        let v: Vec<_> = images
            .iter()
            .map(|i| {
                serde_json::json!({
                    "Name": i.name.name(),
                    "Tag": i.name.tag,
                    "Digest": i.descriptor.digest.to_string(),
                    "MediaType": i.descriptor.media_type,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<50} {:<20} {:<14} {:>10}",
        "REPOSITORY", "TAG", "DIGEST", "SIZE"
    );
    let blobs = store.layout().store();
    for i in images {
        let size = image_size(blobs, &i.descriptor).unwrap_or(0);
        println!(
            "{:<50} {:<20} {:<14} {:>10}",
            i.name.name(),
            i.name.tag.as_deref().unwrap_or("<none>"),
            i.descriptor.digest.short(),
            human(size)
        );
    }
    Ok(())
}

/// The bytes an image's blobs take (manifest, config and layers; indexes count all).
pub(super) fn image_size(blobs: &content::Store, d: &image::Descriptor) -> Result<u64> {
    let bytes = blobs.read(&d.digest)?;
    Ok(d.size
        + match image::Manifest::parse(&bytes, &d.media_type, "stored manifest")? {
            image::Manifest::Image(m) => {
                m.config.size + m.layers.iter().map(|b| b.size).sum::<u64>()
            }
            image::Manifest::Index(i) => i
                .manifests
                .iter()
                .filter_map(|m| image_size(blobs, m).ok())
                .sum(),
        })
}

pub(super) fn rm_cmd(a: RmArgs, g: &Global) -> Result<()> {
    let store = g.store()?;
    for name in &a.images {
        let d = DockerRef::parse(name, true)?;
        store
            .remove(&d)
            .with_context(|| format!("removing {name}"))?;
        println!("Untagged {}", d.familiar());
    }
    let report = store.gc()?;
    if !report.removed.is_empty() && !g.quiet {
        eprintln!(
            "Removed {} unused blob(s), {}",
            report.removed.len(),
            human(report.bytes)
        );
    }
    Ok(())
}

pub(super) fn tag_cmd(a: TagArgs, g: &Global) -> Result<()> {
    let store = g.store()?;
    let from = DockerRef::parse(&a.image, true)?;
    for n in &a.names {
        let to = DockerRef::parse(n, true)?;
        if to.digest.is_some() {
            bail!("{n}: a tag cannot name a digest");
        }
        store
            .tag(&from, &to)
            .with_context(|| format!("tagging {}", from.familiar()))?;
    }
    Ok(())
}

pub(super) async fn save_cmd(a: SaveArgs, g: &Global) -> Result<()> {
    let name = DockerRef::parse(&a.image, true)?;
    let dst = match a.format.as_str() {
        "docker-archive" => ImageRef::DockerArchive {
            file: a.output.clone(),
            reference: Some(ArchiveRef::Named(DockerRef {
                digest: None,
                ..name.clone()
            })),
        },
        "oci-archive" => ImageRef::OciArchive {
            file: a.output.clone(),
            reference: Some(name.to_string()),
        },
        other => bail!("--format {other:?}: expected docker-archive or oci-archive"),
    };
    transfer(
        &ImageRef::Store(name),
        &dst,
        RegistryOptions::default(),
        RegistryOptions::default(),
        CopyOptions::default(),
        g,
    )
    .await?;
    Ok(())
}

/// The text of the archive member `name` (`./name` too), if the tar holds one.
pub(super) fn read_member(file: &Path, name: &str) -> Result<Option<String>> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    let bad = || format!("{}: not a valid tar archive", file.display());
    let mut found = None;
    for entry in ar.entries().with_context(bad)? {
        let mut entry = entry.with_context(bad)?;
        if entry
            .path()
            .with_context(bad)?
            .to_string_lossy()
            .trim_start_matches("./")
            == name
        {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut entry, &mut s)
                .with_context(|| format!("{}: reading {name}", file.display()))?;
            found = Some(s);
        }
    }
    Ok(found)
}

pub(super) async fn load_cmd(a: LoadArgs, g: &Global) -> Result<()> {
    let file = &a.input;
    let default_name = |suffix: &str| -> Result<DockerRef> {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_else(|| "image".into());
        let stem: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        Ok(DockerRef::parse(
            &format!("localhost/{}:{suffix}", stem.trim_matches('-')),
            true,
        )?)
    };
    // (source, names) for each image the archive holds.
    let mut plan: Vec<(ImageRef, Vec<DockerRef>)> = Vec::new();
    if let Some(text) = read_member(file, "manifest.json")? {
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: manifest.json is not valid JSON", file.display()))?;
        for (i, entry) in v.as_array().into_iter().flatten().enumerate() {
            let mut names: Vec<DockerRef> = entry["RepoTags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| DockerRef::parse(t.as_str()?, true).ok())
                .collect();
            if names.is_empty() {
                names.push(default_name(&i.to_string())?);
            }
            let src = ImageRef::DockerArchive {
                file: file.clone(),
                reference: Some(ArchiveRef::Index(i)),
            };
            plan.push((src, names));
        }
    } else if let Some(text) = read_member(file, "index.json")? {
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: index.json is not valid JSON", file.display()))?;
        for (i, e) in v["manifests"].as_array().into_iter().flatten().enumerate() {
            let refname = e["annotations"][image::manifest::REF_NAME].as_str();
            let name = match refname {
                Some(r) if has_registry(r) => DockerRef::parse(r, true)?,
                Some(r) => default_name(r)?,
                None => default_name(&i.to_string())?,
            };
            let reference = refname.or_else(|| e["digest"].as_str()).map(str::to_string);
            let src = ImageRef::OciArchive {
                file: file.clone(),
                reference,
            };
            plan.push((src, vec![name]));
        }
    } else {
        bail!(
            "{}: neither a docker-archive nor an oci-archive (no manifest.json or index.json)",
            file.display()
        );
    }
    if plan.is_empty() {
        bail!("{}: the archive holds no image", file.display());
    }
    for (src, names) in &plan {
        let dst = ImageRef::Store(names[0].clone());
        transfer(
            src,
            &dst,
            Default::default(),
            Default::default(),
            CopyOptions::default(),
            g,
        )
        .await?;
        let store = g.store()?;
        for n in &names[1..] {
            store.tag(&names[0], n)?;
        }
        for n in names {
            println!("Loaded image: {}", n.familiar());
        }
    }
    Ok(())
}

/// Whether an OCI ref name is a full image name (has a registry part) rather than a tag.
pub(super) fn has_registry(r: &str) -> bool {
    r.split('/').next().is_some_and(|first| {
        r.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost")
    })
}

pub(super) fn parse_kv(list: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    list.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow!("{what} {kv:?}: expected KEY=VALUE"))
        })
        .collect()
}

pub(super) fn import_cmd(a: ImportArgs, g: &Global) -> Result<()> {
    let name = DockerRef::parse(&a.name, true)?;
    if name.digest.is_some() {
        bail!("{}: an imported image needs a tag, not a digest", a.name);
    }
    for e in &a.env {
        if !e.contains('=') {
            bail!("--env {e:?}: expected KEY=VALUE");
        }
    }
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Some(
            v.trim()
                .parse::<u64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
        ),
        Err(_) => None,
    };
    let mut platform = Platform::host();
    if let Some(arch) = &a.arch {
        platform.architecture = arch.clone();
    }
    let opts = ImportOptions {
        labels: parse_kv(&a.labels, "--label")?,
        env: a.env.clone(),
        cmd: (!a.cmd.is_empty()).then(|| a.cmd.clone()),
        entrypoint: (!a.entrypoint.is_empty()).then(|| a.entrypoint.clone()),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        platform: Some(platform),
        epoch,
        zstd: a.zstd,
    };
    let store = g.store()?;
    let digest = tokio::task::block_in_place(|| import_rootfs(&store, &a.source, &name, &opts))
        .with_context(|| format!("importing {}", a.source.display()))?;
    if !g.quiet {
        eprintln!("Imported {} as {}", a.source.display(), name.familiar());
    }
    println!("{digest}");
    Ok(())
}

pub(super) fn gc_cmd(g: &Global) -> Result<()> {
    let report = g.store()?.gc()?;
    println!(
        "Removed {} unused blob(s), {}",
        report.removed.len(),
        human(report.bytes)
    );
    Ok(())
}

pub(super) fn fsck_cmd(a: FsckArgs, g: &Global) -> Result<()> {
    let store = g.store()?;
    let report = store.fsck(!a.no_repair)?;
    let verb = if a.no_repair { "found" } else { "removed" };
    for d in &report.blobs.corrupt {
        println!("corrupt blob {d}: content does not match its digest ({verb})");
    }
    for p in &report.blobs.partial {
        println!("unfinished download {} ({verb})", p.display());
    }
    for p in &report.blobs.stray {
        println!("stray file {} ({verb})", p.display());
    }
    for (name, problem) in &report.broken {
        println!(
            "image {name}: {problem} ({}; pull it again)",
            if a.no_repair {
                "broken"
            } else {
                "name removed"
            }
        );
    }
    println!(
        "checked {} blob(s): {}",
        report.blobs.checked,
        if report.is_clean() {
            "store is consistent"
        } else if a.no_repair {
            "problems found"
        } else {
            "repaired"
        }
    );
    if a.no_repair && !report.is_clean() {
        bail!("the store has problems (run without --no-repair to repair)");
    }
    Ok(())
}

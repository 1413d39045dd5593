//! `fluke image …`: the skopeo/podman-style image commands.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use image::copy::{copy_image, CopyOptions, CopyReport};
use image::manifest::Platform;
use image::progress::Progress;
use image::reference::{DockerRef, ImageRef};
use image::store::{default_root, ImageStore};
use image::transport::{open_destination, open_source, OpenOptions, RegistryOptions};
use registry::Credentials;

use crate::progress::{human, Reporter};

mod local;
use local::{fsck_cmd, gc_cmd, import_cmd, load_cmd, ls_cmd, rm_cmd, save_cmd, tag_cmd};

pub struct Global {
    pub root: Option<PathBuf>,
    pub quiet: bool,
}

impl Global {
    fn root(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(default_root)
    }

    fn store(&self) -> Result<ImageStore> {
        let root = self.root();
        ImageStore::open(&root).with_context(|| format!("opening the store at {}", root.display()))
    }
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Copy an image between any two transports
    Copy(CopyArgs),
    /// Show an image's details (a remote one without downloading its layers)
    Inspect(InspectArgs),
    /// Pull an image from a registry into the local store
    Pull(PullArgs),
    /// Push an image from the local store to a registry (or any transport)
    Push(PushArgs),
    /// List the images in the local store
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove images from the local store (and the blobs no other image uses)
    #[command(alias = "rmi")]
    Rm(RmArgs),
    /// Give a stored image another name
    Tag(TagArgs),
    /// Write stored images to a docker-archive or oci-archive file
    Save(SaveArgs),
    /// Load the images of a docker-archive or oci-archive file into the store
    Load(LoadArgs),
    /// Make a one-layer image from a root filesystem (directory or tar)
    Import(ImportArgs),
    /// Unpack an image's layers into a directory (the flattened root filesystem)
    Unpack(UnpackArgs),
    /// Remove blobs that no stored image uses
    Gc,
    /// Re-hash every blob and check every image; repair what is wrong
    Fsck(FsckArgs),
}

/// Transport syntax, for the help texts.
const REF_HELP: &str = "Transports: docker://HOST[:PORT]/NAME[:TAG|@DIGEST], oci:DIR[:REF], \
oci-archive:FILE[:REF], docker-archive:FILE[:NAME:TAG], dir:DIR, store:NAME[:TAG|@DIGEST]";

#[derive(Args, Clone, Default)]
pub struct PlatformArgs {
    /// Pick this architecture from a multi-platform image instead of the host's
    #[arg(long, value_name = "ARCH")]
    override_arch: Option<String>,
    /// Pick this OS from a multi-platform image instead of the host's
    #[arg(long, value_name = "OS")]
    override_os: Option<String>,
    /// Pick this architecture variant (e.g. v8)
    #[arg(long, value_name = "VARIANT")]
    override_variant: Option<String>,
}

impl PlatformArgs {
    fn platform(&self) -> Option<Platform> {
        if self.override_arch.is_none()
            && self.override_os.is_none()
            && self.override_variant.is_none()
        {
            return None;
        }
        let mut p = Platform::host();
        if let Some(a) = &self.override_arch {
            p.architecture = a.clone();
        }
        if let Some(o) = &self.override_os {
            p.os = o.clone();
        }
        p.variant = self.override_variant.clone();
        Some(p)
    }
}

#[derive(Args)]
#[command(after_help = REF_HELP)]
pub struct CopyArgs {
    /// Source image reference
    src: String,
    /// Destination image reference
    dst: String,
    /// Copy every image of a multi-platform index, and the index itself
    #[arg(long, short)]
    all: bool,
    #[command(flatten)]
    platform: PlatformArgs,
    /// Verify TLS for the source registry (false also allows plain HTTP)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    src_tls_verify: Option<bool>,
    /// Verify TLS for the destination registry (false also allows plain HTTP)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    dest_tls_verify: Option<bool>,
    /// Credentials USER:PASSWORD for the source registry
    #[arg(long, value_name = "USER:PASSWORD")]
    src_creds: Option<String>,
    /// Credentials USER:PASSWORD for the destination registry
    #[arg(long, value_name = "USER:PASSWORD")]
    dest_creds: Option<String>,
    /// Upload blobs in chunks of this many bytes (default: one request per blob)
    #[arg(long, value_name = "BYTES")]
    chunk_size: Option<u64>,
    /// Blobs copied at once
    #[arg(long, default_value_t = 4, value_name = "N")]
    parallel: usize,
}

#[derive(Args, Clone, Default)]
pub struct RegistryArgs {
    /// Verify TLS certificates (false also allows plain HTTP; loopback registries always
    /// use plain HTTP)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    tls_verify: Option<bool>,
    /// Credentials USER:PASSWORD (otherwise the auth files are read)
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
}

fn creds(s: &Option<String>) -> Result<Option<Credentials>> {
    s.as_deref()
        .map(Credentials::parse)
        .transpose()
        .map_err(Into::into)
}

impl RegistryArgs {
    fn options(&self) -> Result<RegistryOptions> {
        Ok(RegistryOptions {
            tls_verify: self.tls_verify,
            credentials: creds(&self.creds)?,
            chunk_size: None,
        })
    }
}

#[derive(Args)]
#[command(after_help = REF_HELP)]
pub struct InspectArgs {
    /// Image reference (a bare name is a local store image)
    reference: String,
    /// Print the manifest as served, byte for byte
    #[arg(long, conflicts_with = "config")]
    raw: bool,
    /// Print the image's config
    #[arg(long)]
    config: bool,
    /// Do not list the repository's tags
    #[arg(long)]
    no_tags: bool,
    #[command(flatten)]
    platform: PlatformArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
pub struct PullArgs {
    /// Image to pull: NAME[:TAG|@DIGEST] or docker://…
    reference: String,
    /// Pull every platform of a multi-platform image
    #[arg(long, short)]
    all: bool,
    #[command(flatten)]
    platform: PlatformArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
#[command(after_help = REF_HELP)]
pub struct PushArgs {
    /// Local image name
    image: String,
    /// Destination (default: docker://NAME)
    destination: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Upload blobs in chunks of this many bytes (default: one request per blob)
    #[arg(long, value_name = "BYTES")]
    chunk_size: Option<u64>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RmArgs {
    /// Images to remove
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct TagArgs {
    /// Existing image
    image: String,
    /// New names
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Stored image to save
    image: String,
    /// Output file
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    /// docker-archive or oci-archive
    #[arg(long, default_value = "docker-archive")]
    format: String,
}

#[derive(Args)]
pub struct LoadArgs {
    /// docker-archive or oci-archive file
    #[arg(long, short, value_name = "FILE")]
    input: PathBuf,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Root filesystem: a directory or a tar file (plain, gzip or zstd)
    source: PathBuf,
    /// Name for the new image
    name: String,
    /// Label KEY=VALUE (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Environment variable KEY=VALUE (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Default command, as separate words: --cmd /bin/sh --cmd -c --cmd 'echo hi'
    #[arg(long, value_name = "WORD", allow_hyphen_values = true)]
    cmd: Vec<String>,
    /// Entrypoint words (repeatable)
    #[arg(long, value_name = "WORD", allow_hyphen_values = true)]
    entrypoint: Vec<String>,
    /// Working directory
    #[arg(long)]
    workdir: Option<String>,
    /// User (NAME or UID[:GID])
    #[arg(long)]
    user: Option<String>,
    /// Architecture recorded in the config (default: the host's)
    #[arg(long)]
    arch: Option<String>,
    /// Compress the layer with zstd instead of gzip
    #[arg(long)]
    zstd: bool,
}

#[derive(Args)]
#[command(after_help = REF_HELP)]
pub struct UnpackArgs {
    /// Image (a bare name is a local store image; remote images are pulled first)
    reference: String,
    /// Directory to create (or an empty one)
    dir: PathBuf,
    #[command(flatten)]
    platform: PlatformArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
pub struct FsckArgs {
    /// Only report; change nothing
    #[arg(long)]
    no_repair: bool,
}

pub fn run(cmd: ImageCommand, g: &Global) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 8),
        )
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match cmd {
            ImageCommand::Copy(a) => copy_cmd(a, g).await,
            ImageCommand::Inspect(a) => inspect_cmd(a, g).await,
            ImageCommand::Pull(a) => pull_cmd(a, g).await,
            ImageCommand::Push(a) => push_cmd(a, g).await,
            ImageCommand::Ls(a) => ls_cmd(a, g),
            ImageCommand::Rm(a) => rm_cmd(a, g),
            ImageCommand::Tag(a) => tag_cmd(a, g),
            ImageCommand::Save(a) => save_cmd(a, g).await,
            ImageCommand::Load(a) => load_cmd(a, g).await,
            ImageCommand::Import(a) => import_cmd(a, g),
            ImageCommand::Unpack(a) => unpack_cmd(a, g).await,
            ImageCommand::Gc => gc_cmd(g),
            ImageCommand::Fsck(a) => fsck_cmd(a, g),
        }
    })
}

fn open_opts(g: &Global, registry: RegistryOptions) -> OpenOptions {
    OpenOptions {
        registry,
        store_root: Some(g.root()),
    }
}

/// Copies and reports; the one path every moving command goes through.
async fn transfer(
    src: &ImageRef,
    dst: &ImageRef,
    src_opts: RegistryOptions,
    dst_opts: RegistryOptions,
    copy: CopyOptions,
    g: &Global,
) -> Result<CopyReport> {
    let reporter = Arc::new(Reporter::new(g.quiet));
    let source = open_source(src, &open_opts(g, src_opts))
        .await
        .with_context(|| format!("opening {src}"))?;
    let dest = open_destination(dst, &open_opts(g, dst_opts))
        .await
        .with_context(|| format!("opening {dst}"))?;
    let progress: Arc<dyn Progress> = reporter.clone();
    let report = copy_image(source, dest, &copy, progress)
        .await
        .with_context(|| format!("copying {src} to {dst}"))?;
    reporter.line(&format!(
        "Copied {} to {}: {} ({} image{}, {} blob{} copied, {} skipped, {} mounted, {})",
        src,
        dst,
        report.digest,
        report.images,
        if report.images == 1 { "" } else { "s" },
        report.copied,
        if report.copied == 1 { "" } else { "s" },
        report.skipped,
        report.mounted,
        human(report.bytes)
    ));
    Ok(report)
}

async fn copy_cmd(a: CopyArgs, g: &Global) -> Result<()> {
    let src = ImageRef::parse(&a.src, false)?;
    let dst = ImageRef::parse(&a.dst, false)?;
    let src_opts = RegistryOptions {
        tls_verify: a.src_tls_verify,
        credentials: creds(&a.src_creds)?,
        chunk_size: None,
    };
    let dst_opts = RegistryOptions {
        tls_verify: a.dest_tls_verify,
        credentials: creds(&a.dest_creds)?,
        chunk_size: a.chunk_size,
    };
    let copy = CopyOptions {
        all: a.all,
        platform: a.platform.platform(),
        parallel: a.parallel,
    };
    transfer(&src, &dst, src_opts, dst_opts, copy, g).await?;
    Ok(())
}

async fn inspect_cmd(a: InspectArgs, g: &Global) -> Result<()> {
    let r = ImageRef::parse(&a.reference, true)?;
    let src = open_source(&r, &open_opts(g, a.registry.options()?))
        .await
        .with_context(|| format!("opening {r}"))?;
    let platform = a.platform.platform();
    let out = if a.raw {
        src.manifest(None)
            .await
            .with_context(|| format!("inspecting {r}"))?
            .0
    } else if a.config {
        image::inspect::config_bytes(&*src, platform.as_ref())
            .await
            .with_context(|| format!("inspecting {r}"))?
    } else {
        let (name, tags) = match &r {
            ImageRef::Docker(d) | ImageRef::Store(d) => (
                Some(d.name()),
                matches!(r, ImageRef::Docker(_)) && !a.no_tags,
            ),
            _ => (None, false),
        };
        let mut i = image::inspect::inspect(&*src, name, platform.as_ref(), tags)
            .await
            .with_context(|| format!("inspecting {r}"))?;
        if let ImageRef::Store(d) = &r {
            i.repo_tags = g
                .store()?
                .list()?
                .into_iter()
                .filter(|s| s.name.registry == d.registry && s.name.repository == d.repository)
                .filter_map(|s| s.name.tag)
                .collect();
        }
        let mut v = serde_json::to_vec_pretty(&i)?;
        v.push(b'\n');
        v
    };
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    if a.raw || a.config {
        stdout.write_all(b"\n")?;
    }
    Ok(())
}

/// A name given to pull: `docker://…` or a bare registry name.
fn remote_ref(s: &str) -> Result<DockerRef> {
    match ImageRef::parse(s, false) {
        Ok(ImageRef::Docker(d)) => Ok(d),
        Ok(other) => bail!(
            "{other}: pull takes a registry image; use `fluke image copy {other} store:NAME` or `fluke image load`"
        ),
        Err(_) => Ok(DockerRef::parse(s, true)?),
    }
}

async fn pull_cmd(a: PullArgs, g: &Global) -> Result<()> {
    let d = remote_ref(&a.reference)?;
    let mut local = d.clone();
    if local.tag.is_none() && local.digest.is_some() {
        // Stored by digest: name it with the digest's short form as the tag.
        local.tag = Some(format!(
            "sha256-{}",
            local
                .digest
                .as_ref()
                .map(|x| x.hex().to_string())
                .unwrap_or_default()
        ));
    }
    local.digest = None;
    let copy = CopyOptions {
        all: a.all,
        platform: a.platform.platform(),
        ..Default::default()
    };
    let report = transfer(
        &ImageRef::Docker(d.clone()),
        &ImageRef::Store(local.clone()),
        a.registry.options()?,
        RegistryOptions::default(),
        copy,
        g,
    )
    .await?;
    println!("{}", report.digest);
    Ok(())
}

async fn push_cmd(a: PushArgs, g: &Global) -> Result<()> {
    let local = DockerRef::parse(&a.image, true)?;
    let dst = match &a.destination {
        Some(d) => ImageRef::parse(d, false)?,
        None => ImageRef::Docker(local.clone()),
    };
    let mut opts = a.registry.options()?;
    opts.chunk_size = a.chunk_size;
    transfer(
        &ImageRef::Store(local),
        &dst,
        RegistryOptions::default(),
        opts,
        CopyOptions::default(),
        g,
    )
    .await?;
    Ok(())
}

async fn unpack_cmd(a: UnpackArgs, g: &Global) -> Result<()> {
    let mut r = ImageRef::parse(&a.reference, true)?;
    if let ImageRef::Docker(d) = &r {
        // Remote layers come through the store, verified, then unpack from there.
        let local = DockerRef {
            digest: None,
            tag: Some(d.tag.clone().unwrap_or_else(|| "latest".into())),
            ..d.clone()
        };
        transfer(
            &r,
            &ImageRef::Store(local.clone()),
            a.registry.options()?,
            Default::default(),
            CopyOptions {
                platform: a.platform.platform(),
                ..Default::default()
            },
            g,
        )
        .await?;
        r = ImageRef::Store(local);
    }
    let src = open_source(&r, &open_opts(g, a.registry.options()?))
        .await
        .with_context(|| format!("opening {r}"))?;
    let opts = archive::UnpackOptions::default();
    let start = std::time::Instant::now();
    let stats = image::unpack::unpack_image(&*src, a.platform.platform().as_ref(), &a.dir, &opts)
        .await
        .with_context(|| format!("unpacking {r} into {}", a.dir.display()))?;
    if !g.quiet {
        eprintln!(
            "Unpacked {r} into {}: {} entries ({} files, {} directories, {} symlinks, {} hard links, {} whiteouts), {} in {:.2}s",
            a.dir.display(),
            stats.entries,
            stats.files,
            stats.dirs,
            stats.symlinks,
            stats.hardlinks,
            stats.whiteouts,
            human(stats.bytes),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

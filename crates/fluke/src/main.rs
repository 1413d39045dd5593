//! `fluke`: build and run container systems. This binary is a thin layer over the
//! libraries: each subcommand parses its flags and calls into them.

#![forbid(unsafe_code)]

mod image_cmd;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fluke",
    version,
    about = "Build and run container systems: OCI images, an OCI runtime, bootable systems",
    propagate_version = true
)]
struct Cli {
    /// Local store directory [default: $FLUKE_ROOT, else /var/lib/fluke for root]
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Print no progress
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Move, inspect and manage OCI images (registries, archives, layouts, the local store)
    #[command(subcommand)]
    Image(image_cmd::ImageCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = image_cmd::Global {
        root: cli.root.clone(),
        quiet: cli.quiet,
    };
    let result = match cli.command {
        Command::Image(cmd) => image_cmd::run(cmd, &global),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fluke: error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without repeating a cause its parent already
/// spelled out.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

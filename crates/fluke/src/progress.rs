//! Progress on the terminal: a bar per blob on a TTY, plain lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use content::Digest;
use image::progress::{BlobOutcome, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub enum Reporter {
    Quiet,
    Lines,
    Bars {
        multi: MultiProgress,
        bars: Mutex<HashMap<Digest, ProgressBar>>,
    },
}

impl Reporter {
    pub fn new(quiet: bool) -> Reporter {
        if quiet {
            Reporter::Quiet
        } else if std::io::stderr().is_terminal() {
            Reporter::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(HashMap::new()),
            }
        } else {
            Reporter::Lines
        }
    }

    /// A line of output that does not fight with the bars.
    pub fn line(&self, msg: &str) {
        match self {
            Reporter::Quiet => {}
            Reporter::Lines => eprintln!("{msg}"),
            Reporter::Bars { multi, .. } => {
                let _ = multi.println(msg);
            }
        }
    }
}

pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Progress for Reporter {
    fn blob_start(&self, digest: &Digest, size: u64, kind: &str) {
        match self {
            Reporter::Quiet => {}
            Reporter::Lines => eprintln!("Copying {kind} {} ({})", digest.short(), human(size)),
            Reporter::Bars { multi, bars } => {
                let bar = multi.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:.bold} {bar:30.cyan/blue} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(format!("{kind:6} {}", digest.short()));
                bars.lock().unwrap().insert(digest.clone(), bar);
            }
        }
    }

    fn blob_bytes(&self, digest: &Digest, n: u64) {
        if let Reporter::Bars { bars, .. } = self {
            if let Some(b) = bars.lock().unwrap().get(digest) {
                b.inc(n);
            }
        }
    }

    fn blob_done(&self, digest: &Digest, outcome: BlobOutcome) {
        let word = match outcome {
            BlobOutcome::Copied => "done",
            BlobOutcome::Skipped => "already present",
            BlobOutcome::Mounted => "mounted",
        };
        match self {
            Reporter::Quiet => {}
            Reporter::Lines => match outcome {
                BlobOutcome::Copied => eprintln!("Copied blob {}", digest.short()),
                _ => eprintln!("Skipped blob {}: {word}", digest.short()),
            },
            Reporter::Bars { multi, bars } => match bars.lock().unwrap().get(digest) {
                Some(b) => b.finish_with_message(word),
                None => {
                    let _ = multi.println(format!("blob   {} {word}", digest.short()));
                }
            },
        }
    }

    fn note(&self, message: &str) {
        self.line(message);
    }
}

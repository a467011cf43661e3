//! Progress of a long pull, on a terminal only.
//!
//! The registry client reports nothing until a pull is done, so progress is
//! read off the store: bytes in blob temp files (`.kiln-tmp-*`, being
//! downloaded) plus blobs that appeared since the pull started. A spinner
//! with those bytes, the rate and the elapsed time appears on stderr once
//! the pull has run for [`SHOW_AFTER`], and only when stdout and stderr are
//! both terminals; otherwise nothing is drawn.

use std::collections::HashSet;
use std::fs;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Pulls shorter than this draw nothing.
pub const SHOW_AFTER: Duration = Duration::from_millis(700);
const TICK: Duration = Duration::from_millis(120);
/// The store's prefix for blobs being written (store::blob::TMP_PREFIX).
const TMP_PREFIX: &str = ".kiln-tmp-";

/// Whether progress may be drawn: stdout and stderr are terminals.
pub fn wanted() -> bool {
    std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// A running progress display; stopped (and erased) on drop.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts watching `blobs_dir` with `label` (`pulling 3 images`).
    /// Draws nothing unless [`wanted`].
    pub fn start(blobs_dir: PathBuf, label: String) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = wanted().then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || watch(&blobs_dir, &label, &stop))
        });
        Progress { stop, thread }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(blobs_dir: &std::path::Path, label: &str, stop: &AtomicBool) {
    let started = Instant::now();
    let before: HashSet<String> = names(blobs_dir).map(|(n, _)| n).collect();
    let mut bar: Option<ProgressBar> = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        if started.elapsed() < SHOW_AFTER {
            continue;
        }
        let bytes: u64 = names(blobs_dir)
            .filter(|(n, _)| n.starts_with(TMP_PREFIX) || !before.contains(n))
            .map(|(_, size)| size)
            .sum();
        let bar = bar.get_or_insert_with(|| {
            // Starting at the bytes already there keeps them out of the rate.
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                .with_position(bytes);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} {msg}: {bytes} downloaded ({bytes_per_sec}), {elapsed}",
            ) {
                b.set_style(style);
            }
            b.set_message(label.to_owned());
            b
        });
        bar.set_position(bytes);
        bar.tick();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// File names and sizes in `dir` (nothing if it cannot be read).
fn names(dir: &std::path::Path) -> impl Iterator<Item = (String, u64)> {
    fs::read_dir(dir).into_iter().flatten().filter_map(|e| {
        let e = e.ok()?;
        let size = e.metadata().ok()?.len();
        Some((e.file_name().to_string_lossy().into_owned(), size))
    })
}

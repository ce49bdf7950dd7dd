//! Argument parsing, scratch directories, and small measurement helpers.

use indicatif::{ProgressBar, ProgressStyle};
use pcore::{Store, StoreOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Opens an existing store read-only (no lock taken, no file changed), so the tools work
/// beside a writer. The errors a user meets are one line each.
pub fn open_existing(dir: &Path, read_only: bool) -> Result<Store, String> {
    require_store_dir(dir)?;
    let opts = StoreOptions { read_only, create: false, ..StoreOptions::default() };
    Store::open(dir, &opts).map_err(|e| match e {
        // A read-only open is busy only when every reader slot is taken: the library says so.
        pcore::Error::Busy(_) if !read_only => {
            format!("{} is open for writing by another process; try again when it closes", dir.display())
        }
        other => format!("{}: {other}", dir.display()),
    })
}

/// A directory that exists and holds a store, or the one-line reason why not.
pub fn require_store_dir(dir: &Path) -> Result<(), String> {
    missing_store(dir).map_or(Ok(()), |(why, _)| Err(why))
}

/// Why `dir` holds no store: the one-line reason, and whether it is a damaged store (store
/// files without their meta: what the library says of it) rather than no store at all.
pub fn missing_store(dir: &Path) -> Option<(String, bool)> {
    if !dir.exists() {
        return Some((format!("{}: no such directory", dir.display()), false));
    }
    if !dir.is_dir() {
        return Some((format!("{}: not a directory", dir.display()), false));
    }
    if dir.join("meta").exists() {
        return None;
    }
    let read_only = StoreOptions { read_only: true, create: false, ..StoreOptions::default() };
    Some(match Store::open(dir, &read_only) {
        Err(e @ pcore::Error::Corrupt { .. }) => (format!("{}: {e}", dir.display()), true),
        _ => (format!("{} is not a pcore store (it has no meta file)", dir.display()), false),
    })
}

/// A root's name as text when it is printable ASCII, else in hex (`0x...`).
pub fn root_name(name: &[u8]) -> String {
    if name.is_empty() {
        "\"\"".to_string()
    } else if name.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        String::from_utf8_lossy(name).into_owned()
    } else {
        format!("0x{}", name.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }
}

/// Whether a root's id names a node that is live in the store (a host's root may hold any
/// 64-bit value).
pub fn names_live_node(store: &pcore::Store, id: u64) -> bool {
    store.info(pcore::NodeId::from_raw(id)).is_ok_and(|i| i.committed)
}

/// A progress bar for a step that may take over a second. Drawn on standard error only when
/// it is a terminal, so reports and tests see none of it.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("  {msg:<28} [{bar:30}] {percent:>3}% {elapsed:>4} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// A directory for a run: the one given, or a fresh one under the system temp dir that is
/// removed at the end unless kept.
pub struct WorkDir {
    pub path: PathBuf,
    remove: bool,
}

impl WorkDir {
    pub fn new(given: Option<&Path>, tag: &str, keep: bool) -> Result<WorkDir, String> {
        let (path, remove) = match given {
            Some(p) => (p.to_path_buf(), false),
            None => (std::env::temp_dir().join(format!("pcore-{tag}-{}", std::process::id())), !keep),
        };
        if path.join("meta").exists() && given.is_some() {
            return Err(format!("{} already holds a store; give an empty or new directory", path.display()));
        }
        std::fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        Ok(WorkDir { path, remove })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    // A file with holes (a store at rest punches its free pages) takes what is allocated.
    let on_disk = |m: std::fs::Metadata| m.len().min(m.blocks() * 512);
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(on_disk).sum())
        .unwrap_or(0)
}

/// Peak resident memory of this process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> u64 {
    proc_status_kb("VmHWM:") * 1024
}

fn proc_status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0)
}

pub fn pattern(seed: u64, out: &mut [u8]) {
    pcore::test_rng::TestRng::from_seed(seed).fill(out);
}

pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

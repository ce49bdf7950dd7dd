//! `pcore crash --power`: the crash matrix with the power cut at the moment of the kill.
//!
//! A SIGKILL leaves the kernel's page cache, so it cannot show that pcore syncs the right bytes
//! in the right order. Here the child's store lives on `powercut` (a FUSE file system in
//! `powercut/` that keeps, per file, what was made durable by fsync, fdatasync or msync, and
//! makes creates, renames and deletes durable only with a sync of their directory). At a
//! random moment the child is killed and the power cut: the file system throws away what was
//! not durable (in the `torn` variant it keeps a random half of the volatile pages, as
//! writeback in any order would; in `tear` it tears one page in two) and writes what survives
//! to a plain directory, which is then opened and compared with the model:
//! - STRICT: exactly the last acknowledged commit, or the one in flight;
//! - BALANCED and EVENTUAL: a commit at least as new as the newest the store reported durable
//!   (synced) before the cut, and no newer than the one in flight. How far behind the last
//!   acknowledged commit that is depends on the machine's timing, so it is counted, not
//!   asserted (BALANCED's group commit syncs every 10 ms);
//! - always: the store opens, `check` passes, no byte differs from the model.
//!
//! Every fifth cut lands in a child that creates stores one after another: each must be whole,
//! or absent and creatable.

use crate::crash::{self, CREATIONS_MAX, CREATION_MODE, MODES};
use crate::Outcome;
use pcore::Durability;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

/// The file system's variants, in turn.
const FS_MODES: [&str; 3] = ["clean", "torn", "tear"];

#[derive(Default)]
struct Totals {
    cuts: u64,
    per_mode: [u64; 3],
    commits_acknowledged: u64,
    strict_in_flight_landed: u64,
    unsynced_commits_lost: u64,
    creation_cuts: u64,
    creations_cut_short: u64,
    volatile_pages_kept: u64,
    torn_pages: u64,
}

/// Where the `powercut` program is: `PCORE_POWERCUT`, or beside this program.
fn powercut_program() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PCORE_POWERCUT") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let beside = exe.with_file_name("powercut");
    if beside.exists() {
        Ok(beside)
    } else {
        Err(format!(
            "no powercut program beside {} (build it: cargo build --release --manifest-path powercut/Cargo.toml \
             --target-dir target), nor PCORE_POWERCUT set",
            exe.display()
        ))
    }
}

/// Why a power-cut run cannot happen on this machine, if it cannot: no FUSE device.
pub fn unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing: this machine cannot mount the power-cut file system".into());
    }
    None
}

/// A mounted power-cut file system, cut (or unmounted) when dropped.
struct Mount {
    child: Child,
    stdout: BufReader<ChildStdout>,
    at: PathBuf,
}

impl Mount {
    fn start(program: &Path, at: &Path, out: &Path, mode: &str, seed: u64) -> Result<Mount, String> {
        std::fs::create_dir_all(at).map_err(|e| format!("create {}: {e}", at.display()))?;
        let mut child = Command::new(program)
            .arg(at)
            .arg("--out")
            .arg(out)
            .args(["--mode", mode, "--seed", &seed.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start {}: {e}", program.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let mount = Mount { child, stdout, at: at.to_path_buf() };
        if line.trim() != "ready" {
            return Err(format!("powercut did not mount {} (it said {:?})", at.display(), line.trim()));
        }
        Ok(mount)
    }

    /// Cuts the power: everything not durable is gone; what survives is in `out`. Returns
    /// the file system's account of it (volatile pages kept, torn pages).
    fn cut(mut self) -> Result<(u64, u64), String> {
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGUSR1) };
        let mut report = String::new();
        let _ = self.stdout.read_line(&mut report);
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if !status.success() || !report.starts_with("cut:") {
            return Err(format!("powercut failed at the cut ({status}): {:?}", report.trim()));
        }
        let number_before = |word: &str| {
            let words: Vec<&str> = report.split_whitespace().collect();
            words.windows(2).find(|w| w[1].starts_with(word)).and_then(|w| w[0].parse::<u64>().ok()).unwrap_or(0)
        };
        Ok((number_before("volatile"), number_before("torn")))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A mount left by a file system that died: detach it lazily.
        let mounted = std::fs::read_to_string("/proc/mounts")
            .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == self.at.to_str()))
            .unwrap_or(false);
        if mounted {
            let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(&self.at).status();
        }
    }
}

pub fn run(cuts: u64, seed: u64, dir: Option<&Path>) -> Result<Outcome, String> {
    if let Some(why) = unavailable() {
        println!("pcore crash --power: SKIPPED: {why}");
        return Ok(Outcome::Done);
    }
    let program = powercut_program()?;
    let work = crate::util::WorkDir::new(dir, "power", false)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut rng = crash::Rng::from_seed(seed);
    let mut t = Totals::default();
    let started = Instant::now();
    println!(
        "pcore crash --power: {cuts} power cuts under a child running nodes + two B+ trees, every durability mode"
    );
    let bar = crate::util::progress(cuts, "cuts");
    for cut in 0..cuts {
        bar.set_position(cut);
        let fs_mode = cut as usize % FS_MODES.len();
        let (mnt, out) = (work.path.join(format!("mnt-{cut}")), work.path.join(format!("out-{cut}")));
        let mount = Mount::start(&program, &mnt, &out, FS_MODES[fs_mode], rng.below(u64::MAX))?;
        let creation = cut % 5 == 4;
        let (mode, child_seed) = if creation {
            (CREATION_MODE, 0)
        } else {
            ((cut as usize / FS_MODES.len()) % MODES.len(), rng.below(u64::MAX))
        };
        let delay = if creation { 5 + rng.below(80) } else { 5 + rng.below(1500) };
        let what = if creation { "store creation".to_string() } else { format!("{:?}", MODES[mode]) };
        let context =
            format!("cut {cut} ({what}, {} writeback, seed {child_seed}, after {delay} ms)", FS_MODES[fs_mode]);
        let last = if creation { CREATIONS_MAX } else { crash::COMMITS_MAX };
        let acks = crash::run_child_until_killed(&exe, &mnt.join("store"), mode, child_seed, delay, last)
            .map_err(|e| format!("{context}: {e}"))?;
        let (kept, torn) = mount.cut().map_err(|e| format!("{context}: {e}"))?;
        t.cuts += 1;
        t.per_mode[fs_mode] += 1;
        t.volatile_pages_kept += kept;
        t.torn_pages += torn;
        let acknowledged = crash::last_acknowledged(&acks);
        let survived = out.join("store");
        if creation {
            t.creation_cuts += 1;
            t.creations_cut_short +=
                u64::from(crash::verify_creations(&survived, acknowledged).map_err(|e| format!("{context}: {e}"))?);
        } else {
            t.commits_acknowledged += acknowledged;
            let reported_durable = acks.last().map_or(0, |a| a.durable);
            let floor = if MODES[mode] == Durability::Strict { acknowledged } else { reported_durable };
            if !survived.join("meta").exists() {
                if floor > 0 {
                    return Err(format!("{context}: {floor} commits must have survived, but no store did"));
                }
            } else {
                let epoch = crash::verify_recovered(&survived, mode, child_seed, floor..=acknowledged + 1)
                    .map_err(|e| format!("{context}: {e}"))?;
                let problems = crate::check::problems(&survived);
                if !problems.is_empty() {
                    return Err(format!("{context}: check after recovery: {}", problems.join("; ")));
                }
                if MODES[mode] == Durability::Strict {
                    t.strict_in_flight_landed += u64::from(epoch > acknowledged);
                } else {
                    t.unsynced_commits_lost += acknowledged.saturating_sub(epoch);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_dir_all(&mnt);
    }
    bar.finish_and_clear();
    println!("  power cuts                 {}", t.cuts);
    println!(
        "  writeback at the cut       {} clean (only what was synced), {} torn (a random half of the rest kept), {} tear (a page torn in two)",
        t.per_mode[0], t.per_mode[1], t.per_mode[2]
    );
    println!("  volatile pages kept        {} ({} torn in two)", t.volatile_pages_kept, t.torn_pages);
    println!("  commits acknowledged       {}", t.commits_acknowledged);
    println!("  STRICT in-flight landed    {}", t.strict_in_flight_landed);
    println!(
        "  unsynced commits lost      {} (BALANCED and EVENTUAL, within what they promise)",
        t.unsynced_commits_lost
    );
    println!(
        "  cuts of store creation     {} ({} cut a creation short before the store existed)",
        t.creation_cuts, t.creations_cut_short
    );
    println!("  time                       {:.1} s", started.elapsed().as_secs_f64());
    println!(
        "nothing lost: after every cut the store opened, check passed, and it held a committed state its mode promises"
    );
    Ok(Outcome::Done)
}

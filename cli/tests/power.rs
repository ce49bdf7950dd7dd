//! Regression cases of the power-cut matrix, each the smallest form of a defect it found, run
//! on the `powercut` file system (see `pcore crash --power`): the store is used by this test
//! process, then the power is cut and the surviving directory opened. Skipped, loudly, where
//! FUSE cannot mount.

use pcore::{Durability, Store, StoreOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A mounted powercut file system; `cut` ends it and returns where the survivors are.
struct PowerCut {
    child: Child,
    out: PathBuf,
}

impl PowerCut {
    fn mount(at: &Path, out: &Path) -> Option<PowerCut> {
        let program = Path::new(env!("CARGO_BIN_EXE_pcore")).with_file_name("powercut");
        if !Path::new("/dev/fuse").exists() {
            eprintln!("SKIPPED: /dev/fuse is missing: no power-cut file system on this machine");
            return None;
        }
        assert!(program.exists(), "build powercut beside pcore first (scripts/test.sh does): {}", program.display());
        std::fs::create_dir_all(at).unwrap();
        let mut child = Command::new(&program)
            .arg(at)
            .arg("--out")
            .arg(out)
            .args(["--mode", "clean"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "powercut did not mount");
        Some(PowerCut { child, out: out.to_path_buf() })
    }

    fn cut(mut self) -> PathBuf {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGUSR1) };
        assert!(self.child.wait().unwrap().success());
        self.out.clone()
    }
}

fn scratch(tag: &str) -> Scratch {
    let p = std::env::temp_dir().join(format!("pcore-power-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    Scratch(p)
}

/// A fresh store, one STRICT commit of one 8,000-byte node, the power cut: the new class
/// file's size and directory entry, and the store's own directory, were not synced before the
/// commit was acknowledged, so the store never opened again ("places a node in block 0,
/// beyond the end of the class file"), or was gone.
#[test]
fn a_first_strict_commit_into_a_new_class_file_survives_a_power_cut() {
    let dir = scratch("growth");
    let Some(power) = PowerCut::mount(&dir.0.join("mnt"), &dir.0.join("out")) else { return };
    let opts = StoreOptions { durability: Durability::Strict, ..StoreOptions::default() };
    let store = Store::open(dir.0.join("mnt").join("store"), &opts).unwrap();
    let id = store.allocate(8000, 1).unwrap().0;
    store.publish(id, &[0x5A; 8000]).unwrap();
    store.commit().unwrap();
    store.simulate_crash(); // no close, no checkpoint: the commit lives in the log alone
    let survived = power.cut().join("store");
    let store = Store::open(&survived, &opts).unwrap_or_else(|e| panic!("the store did not survive the cut: {e}"));
    assert_eq!(store.read(id).unwrap(), vec![0x5A; 8000]);
    store.verify().unwrap();
}

/// STRICT commits written over space the log already holds (zeros written ahead, a log kept
/// across a checkpoint) are written and synced in one system call (`RWF_DSYNC`); each must
/// be on disk when the commit returns, as after a write and an `fdatasync`.
#[test]
fn strict_commits_over_reused_log_space_survive_a_power_cut() {
    let dir = scratch("reuse");
    let Some(power) = PowerCut::mount(&dir.0.join("mnt"), &dir.0.join("out")) else { return };
    let opts = StoreOptions { durability: Durability::Strict, ..StoreOptions::default() };
    let store = Store::open(dir.0.join("mnt").join("store"), &opts).unwrap();
    let ids: Vec<pcore::NodeId> = (0..4).map(|_| store.allocate(64, 1).unwrap().0).collect();
    store.commit().unwrap();
    let value = |round: u32, id: pcore::NodeId| [(round as u8) ^ (id.raw() as u8); 64];
    // Rounds of commits, a checkpoint between them: the later rounds write over the log's
    // old frames.
    for round in 0..60u32 {
        for &id in &ids {
            store.publish(id, &value(round, id)).unwrap();
            store.commit().unwrap();
        }
        if round % 20 == 19 {
            store.checkpoint().unwrap();
        }
    }
    let last = 60 + 3;
    for &id in &ids[..2] {
        store.publish(id, &value(last, id)).unwrap();
        store.commit().unwrap();
    }
    store.simulate_crash();
    let survived = power.cut().join("store");
    let store = Store::open(&survived, &opts).unwrap_or_else(|e| panic!("the store did not survive the cut: {e}"));
    for (i, &id) in ids.iter().enumerate() {
        let expected = if i < 2 { value(last, id) } else { value(59, id) };
        assert_eq!(store.read(id).unwrap(), expected.to_vec(), "node {}", id.raw());
    }
    store.verify().unwrap();
}

//! Mounts powercut for real, runs a workload through the kernel (std::fs and libc), cuts, and
//! checks the surviving directory byte for byte. Skips, loudly, where FUSE cannot mount.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
/// Long enough for a loaded two-core machine; only reached when something hangs.
const PATIENCE: Duration = Duration::from_secs(30);

struct Powercut {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    root: PathBuf,
    mnt: PathBuf,
    out: PathBuf,
}

impl Powercut {
    /// Starts powercut on a fresh mount point and waits for `ready`; None (after saying
    /// SKIPPED) where this machine cannot mount FUSE.
    fn start(name: &str, extra: &[&str]) -> Option<Powercut> {
        if !Path::new("/dev/fuse").exists() {
            eprintln!("SKIPPED: {name}: /dev/fuse is missing, cannot mount FUSE here");
            return None;
        }
        let root = std::env::temp_dir().join(format!("powercut-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let (mnt, out) = (root.join("mnt"), root.join("out"));
        fs::create_dir_all(&mnt).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_powercut"))
            .arg(&mnt)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let lines = read_lines(child.stdout.take().unwrap());
        let mut pc = Powercut { child, stdin, lines, root, mnt, out };
        match pc.lines.recv_timeout(PATIENCE) {
            Ok(line) if line == "ready" => Some(pc),
            other => {
                let _ = pc.child.kill();
                let _ = pc.child.wait();
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(pc.child.stderr.as_mut().unwrap(), &mut err);
                if err.contains("cannot mount") {
                    eprintln!("SKIPPED: {name}: mounting was refused: {err}");
                    return None;
                }
                panic!("powercut did not get ready: {other:?}; stderr: {err}");
            }
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    fn fsync_dir(&self, rel: &str) {
        File::open(self.path(rel)).unwrap().sync_all().unwrap();
    }

    /// Sends SIGUSR1 and returns the summary line and the exit status.
    fn cut_by_signal(&mut self) -> (String, ExitStatus) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, libc::SIGUSR1) }, 0);
        self.finish()
    }

    fn cut_by_stdin(&mut self) -> (String, ExitStatus) {
        writeln!(self.stdin.as_mut().unwrap(), "cut").unwrap();
        self.finish()
    }

    fn finish(&mut self) -> (String, ExitStatus) {
        let line = self.lines.recv_timeout(PATIENCE).expect("a summary line after the cut");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (line, status);
            }
            assert!(Instant::now() < deadline, "powercut did not exit after the cut");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every regular file under the output directory, by relative path.
    fn survivors(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.out.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else {
                    let rel = entry.path().strip_prefix(&self.out).unwrap().to_string_lossy().into_owned();
                    out.insert(rel, fs::read(entry.path()).unwrap());
                }
            }
        }
        out
    }
}

impl Drop for Powercut {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = Command::new("fusermount3").args(["-u", "-z", "-q"]).arg(&self.mnt).status();
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn read_lines(stdout: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn mounted(path: &Path) -> bool {
    let canonical = path.canonicalize().unwrap_or(path.to_path_buf());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(canonical.to_str().unwrap()))
}

fn create(path: &Path, contents: &[u8]) -> File {
    let f = OpenOptions::new().read(true).write(true).create_new(true).open(path).unwrap();
    f.write_all_at(contents, 0).unwrap();
    f
}

fn page_with(text: &[u8], at: usize, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    v[at..at + text.len()].copy_from_slice(text);
    v
}

#[test]
fn only_durable_state_survives_a_cut() {
    let Some(mut pc) = Powercut::start("clean", &[]) else { return };
    let a_contents: Vec<u8> = (0..3 * PAGE + 100).map(|i| (i % 251) as u8).collect();
    let a = create(&pc.path("a"), &a_contents);
    a.sync_data().unwrap();
    create(&pc.path("u"), b"undead").sync_all().unwrap();
    create(&pc.path("r.tmp"), b"rename me").sync_all().unwrap();
    create(&pc.path("s"), b"old s").sync_all().unwrap();
    let m = create(&pc.path("m"), b"");
    m.set_len(4 * PAGE as u64).unwrap();
    m.sync_all().unwrap();
    fs::create_dir(pc.path("d")).unwrap();
    pc.fsync_dir("");

    create(&pc.path("d/x"), b"x data").sync_all().unwrap();
    pc.fsync_dir("d");
    create(&pc.path("d/y"), b"y data").sync_all().unwrap();
    create(&pc.path("s.tmp"), b"new s").sync_all().unwrap();
    fs::rename(pc.path("s.tmp"), pc.path("s")).unwrap();
    pc.fsync_dir("");

    // From here on nothing names a new file durably.
    create(&pc.path("b"), b"synced, but its name never was").sync_all().unwrap();
    fs::rename(pc.path("r.tmp"), pc.path("r")).unwrap();
    fs::remove_file(pc.path("u")).unwrap();
    assert_eq!(fs::read_dir(&pc.mnt).unwrap().count(), 6, "a b d m r s");

    // Volatile writes to a durable file: an overwrite, and a pwritev that grows it.
    a.write_at(b"LOST", 0).unwrap();
    let (x, y) = ([7u8; 100], [8u8; 5000]);
    let iov = [
        libc::iovec { iov_base: x.as_ptr() as *mut _, iov_len: x.len() },
        libc::iovec { iov_base: y.as_ptr() as *mut _, iov_len: y.len() },
    ];
    // SAFETY: both buffers outlive the call, and the iovecs describe them exactly.
    let n = unsafe { libc::pwritev(a.as_raw_fd(), iov.as_ptr(), 2, 10 * PAGE as i64) };
    assert_eq!(n, 5100);
    assert_eq!(fs::metadata(pc.path("a")).unwrap().len(), 10 * PAGE as u64 + 5100, "stat sees a write at once");

    // A shared mapping: page 1 msync'ed, page 2 only dirtied.
    // SAFETY: a fresh shared mapping of 4 pages of a file that has 4 pages.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4 * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            m.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    // SAFETY: the mapping is 4 pages long; we write within it and sync a page-aligned range.
    unsafe {
        let bytes = std::slice::from_raw_parts_mut(map as *mut u8, 4 * PAGE);
        bytes[PAGE..PAGE + 7].copy_from_slice(b"MSYNCED");
        assert_eq!(libc::msync(map.add(PAGE), PAGE, libc::MS_SYNC), 0);
        bytes[2 * PAGE..2 * PAGE + 8].copy_from_slice(b"UNSYNCED");
    }
    assert_eq!(&fs::read(pc.path("m")).unwrap()[2 * PAGE..2 * PAGE + 8], b"UNSYNCED");

    let (line, status) = pc.cut_by_signal();
    // SAFETY: unmapping the mapping made above, once.
    unsafe { libc::munmap(map, 4 * PAGE) };
    drop((a, m));
    assert!(status.success(), "{status:?}");
    let expected: BTreeMap<String, Vec<u8>> = [
        ("a", a_contents),
        ("d/x", b"x data".to_vec()),
        ("m", page_with(b"MSYNCED", PAGE, 4 * PAGE)),
        ("r.tmp", b"rename me".to_vec()),
        ("s", b"new s".to_vec()),
        ("u", b"undead".to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let bytes: usize = expected.values().map(Vec::len).sum();
    assert_eq!(line, format!("cut: 6 files, {bytes} bytes, 0 volatile pages kept, 0 torn"));
    let got = pc.survivors();
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (name, want) in &expected {
        assert!(got[name] == *want, "{name} differs");
    }
    assert!(!mounted(&pc.mnt), "the cut unmounts");
}

#[test]
fn posix_surface_a_storage_library_uses() {
    let Some(mut pc) = Powercut::start("surface", &[]) else { return };
    let path = pc.path("f");
    let f = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path).unwrap();
    let again = OpenOptions::new().write(true).create_new(true).open(&path);
    assert_eq!(again.unwrap_err().kind(), ErrorKind::AlreadyExists, "O_CREAT|O_EXCL");
    f.write_at(b"end", 1 << 20).unwrap();
    assert_eq!(f.metadata().unwrap().len(), (1 << 20) + 3, "a sparse write");
    let mut hole = [9u8; 16];
    f.read_exact_at(&mut hole, 4096).unwrap();
    assert_eq!(hole, [0; 16]);
    // SAFETY: fallocate on an open descriptor.
    assert_eq!(unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 2 << 20) }, 0);
    assert_eq!(fs::metadata(&path).unwrap().len(), 2 << 20, "fallocate extends");
    f.set_len(10).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 10);
    OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 0, "O_TRUNC");
    let cloexec = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(&path).unwrap();
    // SAFETY: fcntl F_GETFD on an open descriptor.
    assert_ne!(unsafe { libc::fcntl(cloexec.as_raw_fd(), libc::F_GETFD) } & libc::FD_CLOEXEC, 0);

    // flock on a directory, and on a file: two open file descriptions conflict.
    for rel in ["", "f"] {
        let one = File::open(pc.path(rel)).unwrap();
        let two = File::open(pc.path(rel)).unwrap();
        // SAFETY: flock on open descriptors.
        unsafe {
            assert_eq!(libc::flock(one.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB), 0);
            assert_eq!(libc::flock(two.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB), -1, "{rel:?} lock conflict");
            assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EWOULDBLOCK));
            drop(one);
            assert_eq!(libc::flock(two.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB), 0, "freed by close");
        }
    }

    fs::create_dir_all(pc.path("p/q")).unwrap();
    create(&pc.path("p/q/g"), b"g");
    assert_eq!(fs::remove_dir(pc.path("p/q")).unwrap_err().raw_os_error(), Some(libc::ENOTEMPTY));
    fs::rename(pc.path("p/q/g"), pc.path("f")).unwrap();
    assert_eq!(fs::read(pc.path("f")).unwrap(), b"g", "rename replaces");
    fs::remove_dir(pc.path("p/q")).unwrap();
    let mut names: Vec<String> =
        fs::read_dir(&pc.mnt).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["f", "p"]);
    // SAFETY: statvfs into a zeroed struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let c = std::ffi::CString::new(pc.mnt.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert!(st.f_bavail > 0);
    drop((f, cloexec));

    let (line, status) = pc.cut_by_stdin();
    assert!(status.success());
    assert_eq!(line, "cut: 0 files, 0 bytes, 0 volatile pages kept, 0 torn");
    assert!(pc.survivors().is_empty());
}

#[test]
fn tear_mode_tears_one_page_and_refuses_a_second_mount() {
    let Some(mut pc) = Powercut::start("tear", &["--mode", "tear", "--seed", "3"]) else { return };
    let f = create(&pc.path("f"), &[1; 4 * PAGE]);
    f.sync_all().unwrap();
    pc.fsync_dir("");
    f.write_at(&[2; PAGE], 2 * PAGE as u64).unwrap();

    let second = Command::new(env!("CARGO_BIN_EXE_powercut"))
        .arg(&pc.mnt)
        .arg("--out")
        .arg(pc.root.join("out2"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already a mount point"));

    let (line, status) = pc.cut_by_stdin();
    assert!(status.success());
    assert_eq!(line, format!("cut: 1 files, {} bytes, 0 volatile pages kept, 1 torn", 4 * PAGE));
    let got = &pc.survivors()["f"];
    let half = PAGE / 2;
    let new_halves: Vec<usize> = (0..8).filter(|h| got[h * half..(h + 1) * half] == [2; PAGE / 2]).collect();
    assert!(new_halves == [4] || new_halves == [5], "{new_halves:?}");
    assert!(got.iter().all(|&b| b == 1 || b == 2));
}

#[test]
fn torn_mode_replays_with_its_seed() {
    let run = |name: &str| {
        let mut pc = Powercut::start(name, &["--mode", "torn", "--seed", "11"])?;
        let f = create(&pc.path("f"), &[1; 32 * PAGE]);
        f.sync_all().unwrap();
        pc.fsync_dir("");
        for p in 0..40 {
            f.write_at(&[p as u8 + 2; 100], (p * PAGE) as u64).unwrap();
        }
        let (line, status) = pc.cut_by_signal();
        assert!(status.success());
        Some((line, pc.survivors()))
    };
    let Some((line, files)) = run("torn1") else { return };
    let bytes = &files["f"];
    assert!(bytes.len() == 32 * PAGE || bytes.len() == 40 * PAGE - PAGE + 100);
    let kept: usize = line.split(", ").nth(2).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(kept > 0 && kept < 40, "{line}");
    assert_eq!(run("torn2"), Some((line, files)), "the same writes and seed give the same cut");
}

/// A crash matrix mounts again at the same place as soon as a cut returns: the helper that
/// auto-unmounts the old mount must be gone by then, or it may take the new mount for the old.
#[test]
fn a_mount_right_after_a_cut_stays_mounted() {
    for round in 0..5 {
        let Some(mut first) = Powercut::start("again", &[]) else { return };
        let (_, status) = first.cut_by_signal();
        assert!(status.success());
        let mnt = first.mnt.clone();
        let mut second = Command::new(env!("CARGO_BIN_EXE_powercut"))
            .arg(&mnt)
            .arg("--out")
            .arg(first.root.join("out2"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = read_lines(second.stdout.take().unwrap());
        assert_eq!(lines.recv_timeout(PATIENCE).unwrap(), "ready", "round {round}");
        std::thread::sleep(Duration::from_millis(200));
        let still = mounted(&mnt);
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
        second.wait().unwrap();
        assert!(still, "round {round}: the new mount was taken down");
    }
}

/// The caller's protocol from the README: a workload in its own process syncs some state,
/// dirties more (through write and a shared mapping), and is SIGKILLed holding it all open;
/// then the cut. Whatever the kernel writes back after the kill is volatile and lost.
#[test]
fn a_killed_workload_leaves_only_its_durable_state() {
    let Some(mut pc) = Powercut::start("killed", &[]) else { return };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "workload_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(WORKLOAD_DIR, &pc.mnt)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = read_lines(child.stdout.take().unwrap());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let line = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("the workload syncs");
        if line.contains(WORKLOAD_SYNCED) {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (line, status) = pc.cut_by_signal();
    assert!(status.success());
    assert_eq!(line, format!("cut: 1 files, {} bytes, 0 volatile pages kept, 0 torn", 2 * PAGE));
    let mut want = vec![5; 2 * PAGE];
    want[..7].copy_from_slice(b"durable");
    assert!(pc.survivors()["w"] == want);
}

const WORKLOAD_DIR: &str = "POWERCUT_TEST_WORKLOAD_DIR";
const WORKLOAD_SYNCED: &str = "WORKLOAD-SYNCED";

/// The workload of the test above, run in a child process; without its variable, nothing.
#[test]
#[ignore = "the child process of a_killed_workload_leaves_only_its_durable_state"]
fn workload_child() {
    let Some(dir) = std::env::var_os(WORKLOAD_DIR).map(PathBuf::from) else { return };
    let f = create(&dir.join("w"), &[5; 2 * PAGE]);
    f.write_at(b"durable", 0).unwrap();
    f.sync_all().unwrap();
    File::open(&dir).unwrap().sync_all().unwrap();
    create(&dir.join("never-named"), b"x").sync_all().unwrap();
    f.write_at(b"volatile", 100).unwrap();
    // SAFETY: a shared mapping of the file's two pages, dirtied and never synced or unmapped.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            2 * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(map, libc::MAP_FAILED);
        std::slice::from_raw_parts_mut(map as *mut u8, 2 * PAGE)[PAGE..PAGE + 5].copy_from_slice(b"dirty");
    }
    println!("{WORKLOAD_SYNCED}");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(PATIENCE * 4);
}

/// Not an assertion: a rough cost of the FUSE round trips, for the README. Run with
/// `cargo test --release --manifest-path powercut/Cargo.toml -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_small_writes_and_fdatasyncs() {
    let Some(mut pc) = Powercut::start("timing", &[]) else { return };
    let f = create(&pc.path("log"), b"");
    let start = Instant::now();
    let n = 10_000;
    for i in 0..n {
        f.write_at(&[i as u8; 100], (i * 100) as u64).unwrap();
        f.sync_data().unwrap();
    }
    let elapsed = start.elapsed();
    eprintln!("{n} pwrite(100 B)+fdatasync pairs: {elapsed:?}, {:?} per pair", elapsed / n as u32);
    let start = Instant::now();
    let (line, _) = pc.cut_by_signal();
    eprintln!("cut: {:?} ({line})", start.elapsed());
}

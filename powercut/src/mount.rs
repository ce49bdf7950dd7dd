//! Mounting and unmounting, and the signals that end a session.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::{Duration, Instant};

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};

use crate::fs::PowerFs;

pub struct Mounted {
    pub session: Session<PowerFs>,
    /// How the mount was made, for the log.
    pub how: &'static str,
    /// Lets go of fuser's hold on the mount, which ends fusermount3's auto-unmount helper.
    pub unmounter: SessionUnmounter,
}

/// How long to wait for fusermount3's helper to go after the unmount; it needs milliseconds.
const HELPER_PATIENCE: Duration = Duration::from_secs(5);

/// Mounts `fs` at `mountpoint`, with the kernel's auto-unmount where fusermount3 provides it,
/// so a powercut that dies leaves no dead mount behind; else with a plain mount(2).
pub fn mount(fs: PowerFs, mountpoint: &Path) -> Result<Mounted, String> {
    let base = vec![MountOption::FSName("powercut".into()), MountOption::Subtype("powercut".into())];
    let mut auto = Config::default();
    auto.mount_options = base.clone();
    auto.mount_options.push(MountOption::AutoUnmount);
    // auto_unmount goes through fusermount3, which wants allow_other (root may always).
    auto.acl = SessionACL::RootAndOwner;
    let state = fs.shared();
    let auto_error = match Session::new(fs, mountpoint, &auto) {
        Ok(session) => return Ok(Mounted::new(session, "fusermount3, auto_unmount, allow_other")),
        Err(e) => e,
    };
    let mut plain = Config::default();
    plain.mount_options = base;
    match Session::new(PowerFs::new(state), mountpoint, &plain) {
        Ok(session) => {
            eprintln!("powercut: auto_unmount refused ({auto_error}); mounted without it");
            Ok(Mounted::new(session, "mount(2) without auto_unmount"))
        }
        Err(e) => Err(format!(
            "cannot mount {}: {e} (with auto_unmount: {auto_error}); is /dev/fuse there and fuse3 installed?",
            mountpoint.display()
        )),
    }
}

impl Mounted {
    fn new(mut session: Session<PowerFs>, how: &'static str) -> Mounted {
        let unmounter = session.unmount_callable();
        Mounted { session, how, unmounter }
    }
}

/// Unmounts `mountpoint` and waits for fusermount3's auto-unmount helper (our child) to exit.
/// A helper outliving us could wake after a caller mounted anew at the same place, and take
/// that mount for ours: it tells them apart by path and type only.
pub fn unmount(mountpoint: &Path, mut unmounter: SessionUnmounter) {
    detach(mountpoint);
    // Closes the helper's socket; with the mount gone, it finds nothing to unmount.
    let _ = unmounter.unmount();
    let deadline = Instant::now() + HELPER_PATIENCE;
    loop {
        // SAFETY: waitpid with a valid status pointer; powercut's only children are helpers.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid < 0 {
            return; // no child left
        }
        if pid == 0 {
            if Instant::now() >= deadline {
                eprintln!("powercut: fusermount3's helper did not exit; leaving it");
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Lazily unmounts `mountpoint`: a workload killed a moment ago may still hold files open.
fn detach(mountpoint: &Path) {
    let Ok(path) = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) else { return };
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } == 0 {
        return;
    }
    // Not root: the setuid helper may unmount what it mounted.
    let status = Command::new("fusermount3").args(["-u", "-z", "-q", "--"]).arg(mountpoint).status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("powercut: could not unmount {}; try fusermount3 -u -z", mountpoint.display());
    }
}

/// The mount point, resolved, after refusing one that is missing, not a directory, or
/// already a mount (a second file system over the first would hide it, and a dead FUSE mount
/// left by a killed powercut answers ENOTCONN).
pub fn check_mountpoint(mountpoint: &Path) -> Result<PathBuf, String> {
    let resolved = match mountpoint.canonicalize() {
        Ok(p) => p,
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(format!(
                "{} is a dead FUSE mount; unmount it first: fusermount3 -u -z {}",
                mountpoint.display(),
                mountpoint.display()
            ))
        }
        Err(e) => return Err(format!("mount point {}: {e}", mountpoint.display())),
    };
    if !resolved.is_dir() {
        return Err(format!("mount point {} is not a directory", mountpoint.display()));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if mount_points(&mountinfo).any(|p| p == resolved) {
        return Err(format!(
            "{} is already a mount point; unmount it first (fusermount3 -u -z {})",
            mountpoint.display(),
            resolved.display()
        ));
    }
    Ok(resolved)
}

/// The mount points listed in /proc/self/mountinfo (the fifth field, octal escapes undone).
fn mount_points(mountinfo: &str) -> impl Iterator<Item = PathBuf> + '_ {
    mountinfo.lines().filter_map(|line| line.split(' ').nth(4)).map(|field| {
        let mut bytes = Vec::with_capacity(field.len());
        let raw = field.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            let octal = raw.get(i + 1..i + 4).and_then(|d| std::str::from_utf8(d).ok());
            match octal.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                Some(b) if raw[i] == b'\\' => {
                    bytes.push(b);
                    i += 4;
                }
                _ => {
                    bytes.push(raw[i]);
                    i += 1;
                }
            }
        }
        PathBuf::from(std::ffi::OsString::from(String::from_utf8_lossy(&bytes).into_owned()))
    })
}

pub struct Signals(libc::sigset_t);

/// Blocks SIGUSR1 (the cut), SIGTERM, SIGINT and SIGHUP (stop) in this thread and every
/// thread it starts later, so that [`wait_signal`] receives them.
pub fn block_signals() -> Signals {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use, and
    // pthread_sigmask reads a valid set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGUSR1, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        Signals(set)
    }
}

/// Waits for one of the blocked signals and returns its number.
pub fn wait_signal(signals: &Signals) -> i32 {
    loop {
        let mut sig = 0;
        // SAFETY: the set was initialised by block_signals; `sig` is a valid out pointer.
        if unsafe { libc::sigwait(&signals.0, &mut sig) } == 0 {
            return sig;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_unescaped() {
        let info = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /proc rw - proc proc rw\n";
        let points: Vec<PathBuf> = mount_points(info).collect();
        assert_eq!(points, vec![PathBuf::from("/mnt/with space"), PathBuf::from("/proc")]);
    }
}

//! `powercut MOUNTPOINT --out DIR [--mode clean|torn|tear] [--seed N]`: mounts an in-memory
//! file system that remembers what was made durable, and on a cut (SIGUSR1, or the line `cut`
//! on stdin) writes what would survive a power cut into DIR, then unmounts. See README.md.

mod cut;
mod fs;
mod model;
mod mount;
mod pages;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::cut::Mode;
use crate::fs::{PowerFs, State};

const USAGE: &str = "usage: powercut MOUNTPOINT --out DIR [--mode clean|torn|tear] [--seed N]";

#[derive(Debug)]
struct Args {
    mountpoint: PathBuf,
    out: PathBuf,
    mode: Mode,
    seed: u64,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut mountpoint, mut out, mut mode, mut seed) = (None, None, Mode::Clean, 0);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--mode" => {
                let v = value("--mode")?;
                mode = Mode::parse(&v).ok_or(format!("unknown mode {v:?}: clean, torn or tear"))?;
            }
            "--seed" => {
                let v = value("--seed")?;
                seed = v.parse().map_err(|_| format!("--seed wants an unsigned integer, not {v:?}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            _ if mountpoint.is_none() => mountpoint = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    Ok(Args {
        mountpoint: mountpoint.ok_or("MOUNTPOINT is missing")?,
        out: out.ok_or("--out DIR is missing")?,
        mode,
        seed,
    })
}

/// What ends the session.
enum Event {
    Cut,
    Stop,
    /// The FUSE session ended by itself (an unmount from outside, or an error).
    Ended(String),
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("powercut: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("powercut: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    // Before any thread exists, so every thread inherits the mask and only the signal thread
    // takes these signals (child processes get a clean mask from std::process::Command).
    let signals = mount::block_signals();
    let mountpoint = mount::check_mountpoint(&args.mountpoint)?;
    check_out(&args.out, &mountpoint)?;

    let state = Arc::new(Mutex::new(State::default()));
    let mount::Mounted { session, how, unmounter } = mount::mount(PowerFs::new(state.clone()), &mountpoint)?;
    eprintln!("powercut: mounted {} ({how})", mountpoint.display());

    let (tx, rx) = mpsc::channel();
    let serve = tx.clone();
    thread::spawn(move || {
        let end = match session.run() {
            Ok(()) => "the file system was unmounted".to_string(),
            Err(e) => format!("the FUSE session failed: {e}"),
        };
        let _ = serve.send(Event::Ended(end));
    });
    let on_signal = tx.clone();
    thread::spawn(move || loop {
        match mount::wait_signal(&signals) {
            libc::SIGUSR1 => {
                let _ = on_signal.send(Event::Cut);
            }
            _ => {
                let _ = on_signal.send(Event::Stop);
            }
        }
    });
    thread::spawn(move || {
        // EOF only means no one will type `cut`: the signal still works.
        for line in std::io::stdin().lock().lines() {
            match line.as_deref().map(str::trim) {
                Ok("cut") => {
                    let _ = tx.send(Event::Cut);
                }
                Ok("") => {}
                Ok(other) => eprintln!("powercut: ignoring {other:?} on stdin (only `cut` is understood)"),
                Err(_) => break,
            }
        }
    });
    say("ready");

    match rx.recv() {
        Ok(Event::Cut) => {
            let result = power_cut(&state, args);
            mount::unmount(&mountpoint, unmounter);
            match result {
                Ok(summary) => {
                    say(&summary);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(e),
            }
        }
        Ok(Event::Stop) => {
            mount::unmount(&mountpoint, unmounter);
            Ok(ExitCode::SUCCESS)
        }
        Ok(Event::Ended(why)) => Err(format!("{why} before a cut")),
        Err(_) => Err("internal: every event source is gone".into()),
    }
}

/// Freezes the state, then writes what survives into the output directory.
fn power_cut(state: &Mutex<State>, args: &Args) -> Result<String, String> {
    let survivors = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.frozen = true;
        cut::cut(&state.model, args.mode, args.seed)
    };
    survivors.write_to(&args.out).map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    Ok(survivors.summary())
}

/// The output directory must be empty or absent, and outside the mount (the mount is frozen
/// by the time it is written).
fn check_out(out: &Path, mountpoint: &Path) -> Result<(), String> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(|e| format!("--out {}: {e}", out.display()))?;
        if entries.next().is_some() {
            return Err(format!("--out {} is not empty", out.display()));
        }
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let resolved = parent.canonicalize().map_err(|e| format!("--out {}: {e}", out.display()))?;
    if resolved.starts_with(mountpoint) {
        return Err(format!("--out {} lies inside the mount point", out.display()));
    }
    Ok(())
}

/// One line on stdout, flushed at once: callers wait on these lines.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, String> {
        parse_args(s.split_whitespace().map(String::from))
    }

    #[test]
    fn arguments() {
        let a = parse("/mnt --out /o --mode torn --seed 7").unwrap();
        assert_eq!((a.mountpoint, a.out, a.mode, a.seed), ("/mnt".into(), "/o".into(), Mode::Torn, 7));
        assert_eq!(parse("/mnt --out /o").unwrap().mode, Mode::Clean);
        assert!(parse("/mnt").is_err());
        assert!(parse("--out /o").is_err());
        assert!(parse("/mnt --out /o --mode dirty").is_err());
        assert!(parse("/mnt --out /o --seed x").is_err());
    }
}

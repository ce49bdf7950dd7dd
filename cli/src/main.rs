//! The `pcore` command: the demo that is the README's main job, and the tools a store's user
//! needs beside the library (like LMDB's mdb_stat, mdb_dump and mdb_load, SQLite's
//! integrity_check): `stat`, `check`, `dump`, `load`, and `bench` against the peers.

mod backup;
mod bench;
mod chart;
mod check;
mod checkpoint_bench;
mod compact;
mod crash;
mod crash_readers;
mod demo;
mod dump;
mod power;
mod stat;
mod util;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "pcore", version, about = "pcore: a persistence core's demo, inspection tools and benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// XTree's and Kizuna's workloads on fresh stores; close, reopen, verify every node and
    /// key, and print a report. Exits non-zero if anything fails to verify.
    Demo {
        /// Run in this (new or empty) directory instead of a fresh temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// XTree data records to load.
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Kizuna rows to index.
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
        /// Keep the temporary directory (its path is printed).
        #[arg(long)]
        keep: bool,
    },
    /// Statistics of a store (like mdb_stat): size classes, object table, log, checkpoint,
    /// and every B+ tree. Opens read-only: works while a writer holds the store.
    Stat {
        dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Gives a store's free space back, online (like VACUUM): moves nodes from the ends of
    /// the class files into free blocks nearer their fronts, checkpoints and cuts the free
    /// ends. Readers and snapshots go on; a writer in another process holds the store, so
    /// from outside a host run this when no writer has it open (or call pcore_store_compact).
    Compact { dir: PathBuf },
    /// Full integrity check; never changes a file. Exit 0 when clean, 1 naming each problem
    /// (file, offset, node or page) otherwise, 2 when nothing was checked: no store there
    /// (a missing path, not a directory, no meta file) or every reader slot taken.
    Check { dir: PathBuf },
    /// A compacted copy of a store's last commit in a new directory (like mdb_copy -c),
    /// taken while a writer goes on: every node id and tree stays valid in the copy. DEST
    /// appears only once the copy is whole.
    Backup {
        src: PathBuf,
        dest: PathBuf,
        /// Replace a store at DEST (never one a writer has open).
        #[arg(long)]
        replace: bool,
    },
    /// Writes a B+ tree's entries (like mdb_dump), binary keys and values in hex.
    Dump {
        dir: PathBuf,
        #[arg(long)]
        tree: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Loads a dump (either format) into a new or empty B+ tree (like mdb_load), creating
    /// the store if needed, and commits.
    Load {
        dir: PathBuf,
        #[arg(long)]
        tree: String,
        /// Read from here instead of standard input.
        #[arg(long, short)]
        input: Option<PathBuf>,
    },
    /// The crash matrix: kills a child running a mixed workload (nodes, two B+ trees, every
    /// durability mode) with SIGKILL at random moments; after each kill, reopens, runs check,
    /// and requires exactly the last acknowledged commit. Prints the totals.
    Crash {
        /// How many kills.
        #[arg(long, default_value_t = 50)]
        kills: u64,
        /// 1,000 kills (or cuts).
        #[arg(long)]
        long: bool,
        /// Cut the power instead of only killing the child: the store lives on the
        /// `powercut` file system (powercut/), which drops whatever was not synced.
        #[arg(long)]
        power: bool,
        /// Also open the store read-only, again and again, beside the child while it commits,
        /// and require each open to read one whole commit (the model's state at its epoch).
        #[arg(long)]
        readers: bool,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Scratch directory (default: a fresh temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Internal: run as the child, in this durability mode (0 strict, 1 balanced, 2 eventual).
        #[arg(long, hide = true)]
        child_mode: Option<usize>,
    },
    /// The node store against glibc malloc, memcpy and fdatasync, and the B+ tree against
    /// LMDB and SQLite (cpp_bench's btree_bench), medians of several runs, one table of
    /// ratios; optionally a chart.
    Bench {
        /// Smaller sizes and fewer repetitions.
        #[arg(long)]
        quick: bool,
        /// Also write every figure as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Draw the ratios as an SVG chart into this file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Nodes for the bulk-load measure (default 10 M, 1 M with --quick).
        #[arg(long)]
        nodes: Option<u64>,
        /// Scratch directory (default: a fresh temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The btree_bench program (default: build/bin/btree_bench of this checkout).
        #[arg(long, value_name = "PATH")]
        btree_bench: Option<PathBuf>,
        /// Only the node-store part.
        #[arg(long)]
        store_only: bool,
        /// Only the checkpoint-at-scale row (1 M / 4 M / 10 M nodes; a tenth with --quick).
        #[arg(long)]
        checkpoints_only: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// How a command ended: `Failed` has been reported already (check's findings, a demo that
/// did not verify), as has `NotChecked` (a check that could not look at the store now);
/// `Err` is one line for the user.
pub enum Outcome {
    Done,
    Failed,
    NotChecked,
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { dir, records, rows, keep } => demo::run(dir.as_deref(), records, rows, keep),
        Command::Stat { dir, json } => stat::run(&dir, json),
        Command::Check { dir } => check::run(&dir),
        Command::Backup { src, dest, replace } => backup::run(&src, &dest, replace),
        Command::Compact { dir } => compact::run(&dir),
        Command::Dump { dir, tree, format, output } => dump::dump(&dir, &tree, format, output.as_deref()),
        Command::Load { dir, tree, input } => dump::load(&dir, &tree, input.as_deref()),
        Command::Crash { kills, long, power, readers, seed, dir, child_mode } => {
            let kills = if long { kills.max(1000) } else { kills };
            match (child_mode, dir) {
                (Some(mode), Some(dir)) => crash::child(&dir, mode, seed),
                (Some(_), None) => Err("--child-mode needs --dir".into()),
                (None, dir) if power => power::run(kills, seed, dir.as_deref()),
                (None, dir) => crash::run(kills, seed, dir.as_deref(), readers),
            }
        }
        Command::Bench { quick, json, svg, nodes, dir, btree_bench, store_only, checkpoints_only } => {
            bench::run(&bench::Config { quick, json, svg, nodes, dir, btree_bench, store_only, checkpoints_only })
        }
    };
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::FAILURE,
        Ok(Outcome::NotChecked) => ExitCode::from(2),
        Err(message) => {
            eprintln!("pcore: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `pcore stat DIR | head`: a reader that stops early ends the program as it ends other Unix
/// tools (SIGPIPE), where Rust's ignored SIGPIPE made the next `println!` panic (outsider12
/// N3). A command that changes a store and is ended so leaves it as a kill would: whole, at
/// its last commit.
fn quiet_on_closed_pipe() {
    // SAFETY: restores the default disposition of one signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

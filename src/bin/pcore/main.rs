//! The `pcore` command: `demo` (the XTree-shaped workload, verified after a reopen) and
//! `bench` (the node-store benchmark against its peers, measured in the same run).

mod bench;
mod demo;
mod util;

use std::process::ExitCode;

const USAGE: &str = "usage:
  pcore demo  [--dir DIR] [--records N] [--keep]
  pcore bench [--quick] [--nodes N] [--dir DIR]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => util::Args::parse(&args[1..]).and_then(|a| demo::run(&a)),
        Some("bench") => util::Args::parse(&args[1..]).and_then(|a| bench::run(&a)),
        Some("-h") | Some("--help") | Some("help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(format!("unknown or missing command\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pcore: {message}");
            ExitCode::FAILURE
        }
    }
}

//! `pcore dump` and `pcore load`: a B+ tree's entries out to a file and back, exact for any
//! bytes (keys and values are written in hex), like mdb_dump / mdb_load.
//!
//! Text format (mdb_dump's `bytevalue` layout):
//! ```text
//! VERSION=3
//! format=bytevalue
//! type=btree
//! tree=NAME
//! page_bytes=4096
//! duplicates=unique
//! HEADER=END
//!  6b6579          one line per key, then one per value, each led by a space
//!  76616c7565
//! DATA=END
//! ```
//! JSON: `{"format": "pcore-dump", "version": 1, "tree": NAME, "page_bytes": N,
//! "duplicates": MODE, "entries": [{"key": HEX, "value": HEX}, ...]}`.

use crate::stat::duplicates_name;
use crate::util::open_existing;
use crate::{Format, Outcome};
use pcore::btree::{list_trees, BTree, Cursor, Duplicates, TreeOptions};
use pcore::{Store, StoreOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

/// What a dump's header says about its tree.
struct Header {
    page_bytes: u32,
    duplicates: Duplicates,
}

pub fn dump(dir: &Path, tree: &str, format: Format, output: Option<&Path>) -> Result<Outcome, String> {
    let store = open_existing(dir, true)?;
    let t = BTree::open_existing(&store, tree.as_bytes()).map_err(|e| e.to_string())?;
    let mut out: Box<dyn Write> = match output {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| format!("create {}: {e}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(&mut out);
    match write_dump(&mut out, &t, tree, format).and_then(|_| out.flush()) {
        Ok(()) => Ok(Outcome::Done),
        // The reader stopped reading (`pcore dump ... | head`): not an error, as for cat.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Outcome::Done),
        Err(e) => Err(format!("write the dump: {e}")),
    }
}

fn write_dump(out: &mut impl Write, t: &BTree, name: &str, format: Format) -> std::io::Result<()> {
    let io_err = |e: pcore::Error| std::io::Error::other(e.to_string());
    let dup = duplicates_name(t.duplicates());
    match format {
        Format::Text => writeln!(
            out,
            "VERSION=3\nformat=bytevalue\ntype=btree\ntree={}\npage_bytes={}\nduplicates={dup}\nHEADER=END",
            name.escape_default(),
            t.page_bytes()
        )?,
        Format::Json => write!(
            out,
            "{{\"format\": \"pcore-dump\", \"version\": 1, \"tree\": {}, \"page_bytes\": {}, \"duplicates\": \"{dup}\", \
             \"entries\": [",
            serde_json::to_string(name).expect("a string"),
            t.page_bytes()
        )?,
    }
    let mut cur = Cursor::new(t);
    cur.first().map_err(io_err)?;
    let mut first = true;
    while let Some((k, v)) = cur.current().map_err(io_err)? {
        match format {
            Format::Text => writeln!(out, " {}\n {}", hex(&k), hex(&v))?,
            Format::Json => write!(
                out,
                "{}\n  {{\"key\": \"{}\", \"value\": \"{}\"}}",
                if first { "" } else { "," },
                hex(&k),
                hex(&v)
            )?,
        }
        first = false;
        cur.move_next().map_err(io_err)?;
    }
    match format {
        Format::Text => writeln!(out, "DATA=END"),
        Format::Json => writeln!(out, "\n]}}"),
    }
}

pub fn load(dir: &Path, tree: &str, input: Option<&Path>) -> Result<Outcome, String> {
    let mut text = String::new();
    let read = match input {
        Some(p) => std::fs::File::open(p).and_then(|f| BufReader::new(f).read_to_string(&mut text)),
        None => std::io::stdin().lock().read_to_string(&mut text),
    };
    read.map_err(|e| format!("read the dump: {e}"))?;
    let (header, pairs) =
        if text.trim_start().starts_with('{') { parse_json(&text)? } else { parse_text(text.as_bytes())? };
    let store = if dir.join("meta").exists() {
        open_existing(dir, false)?
    } else {
        Store::open(dir, &StoreOptions::default()).map_err(|e| format!("create a store in {}: {e}", dir.display()))?
    };
    let exists = list_trees(&store).map_err(|e| e.to_string())?.into_iter().find(|d| d.name == tree.as_bytes());
    if let Some(d) = exists.filter(|d| d.entries > 0) {
        return Err(format!("tree {tree:?} already holds {} entries; load into a new or empty tree", d.entries));
    }
    let options =
        TreeOptions { page_bytes: header.page_bytes, duplicates: header.duplicates, ..TreeOptions::default() };
    let t = BTree::open(&store, tree.as_bytes(), &options).map_err(|e| e.to_string())?;
    let count = pairs.len();
    t.bulk_load(pairs).map_err(|e| format!("load into {tree:?}: {e}"))?;
    store.commit().map_err(|e| e.to_string())?;
    store.close().map_err(|e| e.to_string())?;
    eprintln!("loaded {count} entries into tree {tree:?} of {}", dir.display());
    Ok(Outcome::Done)
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn parse_text(input: &[u8]) -> Result<(Header, Pairs), String> {
    let mut lines = input.lines().enumerate().map(|(i, l)| (i + 1, l));
    let mut page_bytes = None;
    let mut duplicates = None;
    let mut format_ok = false;
    loop {
        let Some((n, line)) = lines.next() else { return Err("the dump ends inside its header".into()) };
        let line = line.map_err(|e| format!("line {n}: {e}"))?;
        if line == "HEADER=END" {
            break;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| format!("line {n}: not a header line: {line}"))?;
        match key {
            "format" => format_ok = value == "bytevalue",
            "page_bytes" => {
                page_bytes = Some(value.parse::<u32>().map_err(|_| format!("line {n}: page_bytes {value}"))?)
            }
            "duplicates" => duplicates = Some(parse_duplicates(value).ok_or(format!("line {n}: duplicates {value}"))?),
            _ => {} // VERSION, type, tree: informational
        }
    }
    if !format_ok {
        return Err("the dump's header does not say format=bytevalue".into());
    }
    let header = Header {
        page_bytes: page_bytes.ok_or("the dump's header has no page_bytes")?,
        duplicates: duplicates.ok_or("the dump's header has no duplicates mode")?,
    };
    let mut pairs = Vec::new();
    loop {
        let Some((n, line)) = lines.next() else { return Err("the dump ends without DATA=END".into()) };
        let line = line.map_err(|e| format!("line {n}: {e}"))?;
        if line == "DATA=END" {
            return Ok((header, pairs));
        }
        let key = data_line(n, &line)?;
        let Some((n, line)) = lines.next() else { return Err(format!("line {n}: a key without its value")) };
        let value = data_line(n, &line.map_err(|e| format!("line {n}: {e}"))?)?;
        pairs.push((key, value));
    }
}

fn data_line(n: usize, line: &str) -> Result<Vec<u8>, String> {
    let digits = line.strip_prefix(' ').ok_or_else(|| format!("line {n}: a data line starts with a space"))?;
    unhex(digits).ok_or_else(|| format!("line {n}: not hex digits"))
}

fn parse_json(text: &str) -> Result<(Header, Pairs), String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("the JSON dump: {e}"))?;
    if v["format"] != "pcore-dump" {
        return Err("the JSON is not a pcore dump (no \"format\": \"pcore-dump\")".into());
    }
    let header = Header {
        page_bytes: v["page_bytes"].as_u64().and_then(|n| u32::try_from(n).ok()).ok_or("the dump has no page_bytes")?,
        duplicates: v["duplicates"].as_str().and_then(parse_duplicates).ok_or("the dump has no duplicates mode")?,
    };
    let entries = v["entries"].as_array().ok_or("the dump has no entries list")?;
    let field = |i: usize, e: &serde_json::Value, f: &str| {
        e[f].as_str().and_then(unhex).ok_or_else(|| format!("entry {i}: {f} is not a hex string"))
    };
    let pairs: Result<Pairs, String> =
        entries.iter().enumerate().map(|(i, e)| Ok((field(i, e, "key")?, field(i, e, "value")?))).collect();
    Ok((header, pairs?))
}

fn parse_duplicates(s: &str) -> Option<Duplicates> {
    [Duplicates::Unique, Duplicates::Overwrite, Duplicates::Multi].into_iter().find(|&d| duplicates_name(d) == s)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok())).collect()
}

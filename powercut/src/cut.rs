//! The power cut: what survives of a [`Model`], and writing it out as a plain directory tree.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::model::{Ino, Model, Node, ROOT};
use crate::pages::{FileData, PAGE};

/// Which writes a cut may keep beyond the durable state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Only what was made durable.
    Clean,
    /// Writeback in any order: each volatile page kept with probability 1/2, and each file's
    /// size its durable or its current one.
    Torn,
    /// Clean, plus one volatile page torn in two: half of it new, half old.
    Tear,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "clean" => Some(Mode::Clean),
            "torn" => Some(Mode::Torn),
            "tear" => Some(Mode::Tear),
            _ => None,
        }
    }
}

/// splitmix64: small, seedable and the same on every platform, so a seed replays a cut.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn coin(&mut self) -> bool {
        self.next() >> 63 == 1
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }
}

/// The state after a cut: directories and files by path relative to the root, in tree order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Survivors {
    pub dirs: Vec<PathBuf>,
    pub files: Vec<(PathBuf, Vec<u8>)>,
    pub pages_kept: usize,
    pub torn: usize,
}

impl Survivors {
    pub fn bytes(&self) -> usize {
        self.files.iter().map(|(_, b)| b.len()).sum()
    }

    /// The line the binary prints once the state is written.
    pub fn summary(&self) -> String {
        format!(
            "cut: {} files, {} bytes, {} volatile pages kept, {} torn",
            self.files.len(),
            self.bytes(),
            self.pages_kept,
            self.torn
        )
    }

    /// Writes the surviving tree under `out` (created if missing, expected empty).
    pub fn write_to(&self, out: &Path) -> io::Result<()> {
        fs::create_dir_all(out)?;
        for dir in &self.dirs {
            fs::create_dir_all(out.join(dir))?;
        }
        for (path, bytes) in &self.files {
            fs::write(out.join(path), bytes)?;
        }
        Ok(())
    }
}

/// A half page of one file that a tear may write: the file, and the byte range.
struct HalfPage {
    ino: Ino,
    start: usize,
    end: usize,
}

/// What survives a cut now, in `mode`, drawing from `seed`: only names in durable directory
/// maps reachable from the root exist, each file with its durable contents plus whatever the
/// mode keeps of its volatile writes.
pub fn cut(model: &Model, mode: Mode, seed: u64) -> Survivors {
    let mut rng = Rng::new(seed);
    let mut out = Survivors::default();
    let tree = durable_tree(model);
    let mut contents: HashMap<Ino, Vec<u8>> = HashMap::new();
    for (_, ino) in &tree.files {
        if contents.contains_key(ino) {
            continue;
        }
        let file = file_of(model, *ino);
        let bytes = match mode {
            Mode::Torn => torn(file, &mut rng, &mut out.pages_kept),
            Mode::Clean | Mode::Tear => file.durable().to_vec(),
        };
        contents.insert(*ino, bytes);
    }
    if mode == Mode::Tear {
        let mut candidates = Vec::new();
        let mut seen = HashSet::new();
        for (_, ino) in &tree.files {
            if seen.insert(*ino) {
                tearable_halves(*ino, file_of(model, *ino), &mut candidates);
            }
        }
        if !candidates.is_empty() {
            let half = &candidates[rng.below(candidates.len())];
            let fresh = file_of(model, half.ino).current_padded(half.start, half.end);
            contents.get_mut(&half.ino).expect("every surviving file has contents")[half.start..half.end]
                .copy_from_slice(&fresh);
            out.torn = 1;
        }
    }
    out.dirs = tree.dirs;
    out.files = tree.files.into_iter().map(|(path, ino)| (path, contents[&ino].clone())).collect();
    out
}

fn file_of(model: &Model, ino: Ino) -> &FileData {
    model.file(ino).expect("the durable tree names only files here")
}

/// Torn writeback of one file: the size is the durable or the current one, and each page
/// whose current bytes differ from the durable ones is written back or not, independently.
fn torn(file: &FileData, rng: &mut Rng, kept: &mut usize) -> Vec<u8> {
    let mut bytes = file.durable().to_vec();
    if file.len() as usize != bytes.len() && rng.coin() {
        bytes.resize(file.len() as usize, 0);
    }
    let size = bytes.len();
    for page in file.dirty_pages() {
        let start = page * PAGE;
        if start >= size {
            break;
        }
        let end = (start + PAGE).min(size);
        let fresh = file.current_padded(start, end);
        if fresh != bytes[start..end] && rng.coin() {
            bytes[start..end].copy_from_slice(&fresh);
            *kept += 1;
        }
    }
    bytes
}

/// The half pages within a file's durable size whose current bytes differ from the durable
/// ones: writing one of them, and not the other half of its page, makes a visible tear.
fn tearable_halves(ino: Ino, file: &FileData, out: &mut Vec<HalfPage>) {
    let size = file.durable().len();
    for page in file.dirty_pages() {
        for half in 0..2 {
            let start = page * PAGE + half * PAGE / 2;
            let end = (start + PAGE / 2).min(size);
            if start < end && file.current_padded(start, end) != file.durable()[start..end] {
                out.push(HalfPage { ino, start, end });
            }
        }
    }
}

struct DurableTree {
    dirs: Vec<PathBuf>,
    files: Vec<(PathBuf, Ino)>,
}

/// Walks the durable directory maps from the root. Durable maps synced at different times
/// can name one directory twice, or a directory inside itself; each directory is walked once.
fn durable_tree(model: &Model) -> DurableTree {
    let mut tree = DurableTree { dirs: Vec::new(), files: Vec::new() };
    let mut visited = HashSet::from([ROOT]);
    let mut stack: Vec<(PathBuf, Ino)> = vec![(PathBuf::new(), ROOT)];
    while let Some((path, dir)) = stack.pop() {
        let Ok(data) = model.dir(dir) else { continue };
        let mut subdirs: Vec<(PathBuf, Ino)> = Vec::new();
        for (name, &ino) in &data.durable {
            let child = path.join(name);
            match model.inode(ino).map(|i| &i.node) {
                Ok(Node::Dir(_)) if visited.insert(ino) => {
                    tree.dirs.push(child.clone());
                    subdirs.push((child, ino));
                }
                Ok(Node::File(_)) => tree.files.push((child, ino)),
                _ => {}
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    tree
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn files(s: &Survivors) -> Vec<(String, Vec<u8>)> {
        s.files.iter().map(|(p, b)| (p.to_string_lossy().into_owned(), b.clone())).collect()
    }

    /// A durable file `f` of `pages` pages of `fill`.
    fn durable_file(pages: usize, fill: u8) -> (Model, Ino) {
        let mut m = Model::new();
        let f = m.create(ROOT, name("f"), 0o644, 0, 0).unwrap();
        m.write(f, 0, &vec![fill; pages * PAGE]).unwrap();
        m.fsync(f).unwrap();
        m.fsyncdir(ROOT).unwrap();
        (m, f)
    }

    #[test]
    fn write_without_fsync_is_lost() {
        let (mut m, f) = durable_file(1, 1);
        m.write(f, 0, b"volatile").unwrap();
        m.write(f, PAGE as u64, b"grown").unwrap();
        assert_eq!(files(&cut(&m, Mode::Clean, 0)), vec![("f".into(), vec![1; PAGE])]);
    }

    #[test]
    fn fsync_keeps_a_write() {
        let (mut m, f) = durable_file(1, 1);
        m.write(f, 2, b"kept").unwrap();
        m.set_len(f, 10).unwrap();
        m.fsync(f).unwrap();
        m.write(f, 0, b"lost").unwrap();
        let s = cut(&m, Mode::Clean, 0);
        assert_eq!(files(&s), vec![("f".into(), vec![1, 1, b'k', b'e', b'p', b't', 1, 1, 1, 1])]);
        assert_eq!(s.summary(), "cut: 1 files, 10 bytes, 0 volatile pages kept, 0 torn");
    }

    #[test]
    fn create_without_dir_fsync_vanishes_even_if_synced() {
        let (mut m, _) = durable_file(1, 1);
        let d = m.mkdir(ROOT, name("d"), 0o755, 0, 0).unwrap();
        let g = m.create(ROOT, name("g"), 0o644, 0, 0).unwrap();
        m.write(g, 0, b"data").unwrap();
        m.fsync(g).unwrap();
        let h = m.create(d, name("h"), 0o644, 0, 0).unwrap();
        m.fsync(h).unwrap();
        m.fsyncdir(d).unwrap();
        let s = cut(&m, Mode::Clean, 0);
        assert_eq!(files(&s).len(), 1, "g's and d's names were never synced: {s:?}");
        assert!(s.dirs.is_empty());
        m.fsyncdir(ROOT).unwrap();
        let s = cut(&m, Mode::Clean, 0);
        let names: Vec<_> = files(&s).into_iter().map(|(p, _)| p).collect();
        assert_eq!(names, vec!["f", "g", "d/h"]);
        assert_eq!(s.dirs, vec![PathBuf::from("d")]);
    }

    #[test]
    fn unlink_without_dir_fsync_comes_back() {
        let (mut m, _) = durable_file(1, 3);
        m.unlink(ROOT, name("f")).unwrap();
        assert_eq!(files(&cut(&m, Mode::Clean, 0)), vec![("f".into(), vec![3; PAGE])]);
        m.fsyncdir(ROOT).unwrap();
        assert!(cut(&m, Mode::Clean, 0).files.is_empty());
    }

    #[test]
    fn rename_is_undone_without_dir_fsync() {
        let (mut m, _) = durable_file(1, 1);
        let t = m.create(ROOT, name("t"), 0o644, 0, 0).unwrap();
        m.write(t, 0, b"new").unwrap();
        m.fsync(t).unwrap();
        m.fsyncdir(ROOT).unwrap();
        m.rename(ROOT, name("t"), ROOT, name("f"), 0).unwrap();
        let before: Vec<_> = files(&cut(&m, Mode::Clean, 0));
        assert_eq!(before, vec![("f".into(), vec![1; PAGE]), ("t".into(), b"new".to_vec())]);
        m.fsyncdir(ROOT).unwrap();
        assert_eq!(files(&cut(&m, Mode::Clean, 0)), vec![("f".into(), b"new".to_vec())]);
    }

    #[test]
    fn renamed_directory_keeps_its_durable_entries() {
        let mut m = Model::new();
        let d = m.mkdir(ROOT, name("d"), 0o755, 0, 0).unwrap();
        let f = m.create(d, name("f"), 0o644, 0, 0).unwrap();
        m.write(f, 0, b"x").unwrap();
        m.fsync(f).unwrap();
        m.fsyncdir(d).unwrap();
        m.fsyncdir(ROOT).unwrap();
        m.rename(ROOT, name("d"), ROOT, name("e"), 0).unwrap();
        m.fsyncdir(ROOT).unwrap();
        assert_eq!(files(&cut(&m, Mode::Clean, 0)), vec![("e/f".into(), b"x".to_vec())]);
    }

    #[test]
    fn torn_keeps_a_subset_of_volatile_pages() {
        let pages = 64;
        let (mut m, f) = durable_file(pages, 0);
        for p in 0..pages {
            m.write(f, (p * PAGE + 7) as u64, &[1; 3]).unwrap();
        }
        m.write(f, (pages * PAGE) as u64, &[2; PAGE]).unwrap();
        let s = cut(&m, Mode::Torn, 42);
        let bytes = &s.files[0].1;
        assert!(bytes.len() == pages * PAGE || bytes.len() == (pages + 1) * PAGE);
        let mut kept = 0;
        for (p, page) in bytes.chunks(PAGE).enumerate() {
            let current = &m.file(f).unwrap().current()[p * PAGE..(p + 1) * PAGE];
            let durable_or_zero = page.iter().all(|&b| b == 0);
            assert!(page == current || durable_or_zero, "page {p} is neither old nor new");
            kept += usize::from(page == current);
        }
        assert_eq!(kept, s.pages_kept);
        assert!(kept > 0 && kept < pages, "64 coins all alike: {kept}");
        assert_eq!(cut(&m, Mode::Torn, 42), s, "a seed replays its cut");
        assert_ne!(cut(&m, Mode::Torn, 43).files, s.files);
    }

    #[test]
    fn torn_growth_reads_zeros_for_unwritten_pages() {
        let (mut m, f) = durable_file(0, 0);
        m.write(f, 0, &[9; 8 * PAGE]).unwrap();
        let sizes: HashSet<usize> = (0..32).map(|seed| cut(&m, Mode::Torn, seed).files[0].1.len()).collect();
        assert_eq!(sizes, HashSet::from([0, 8 * PAGE]));
        for seed in 0..32 {
            for page in cut(&m, Mode::Torn, seed).files[0].1.chunks(PAGE) {
                assert!(page == [9; PAGE] || page == [0; PAGE]);
            }
        }
    }

    #[test]
    fn tear_splits_one_page() {
        let (mut m, f) = durable_file(4, 1);
        m.write(f, 0, &[2; 4 * PAGE]).unwrap();
        let mut orientations = HashSet::new();
        for seed in 0..32 {
            let s = cut(&m, Mode::Tear, seed);
            assert_eq!(s.torn, 1);
            let bytes = &s.files[0].1;
            assert_eq!(bytes.len(), 4 * PAGE);
            let new_halves: Vec<usize> =
                (0..8).filter(|h| bytes[h * PAGE / 2..(h + 1) * PAGE / 2] == [2; PAGE / 2]).collect();
            assert_eq!(new_halves.len(), 1, "exactly one half page is new");
            assert!(bytes.iter().all(|&b| b == 1 || b == 2));
            orientations.insert(new_halves[0] % 2);
        }
        assert_eq!(orientations.len(), 2, "first half new and second half new both occur");
    }

    #[test]
    fn tear_without_volatile_pages_is_clean() {
        let (m, _) = durable_file(2, 1);
        let s = cut(&m, Mode::Tear, 5);
        assert_eq!(s.torn, 0);
        assert_eq!(s, cut(&m, Mode::Clean, 5));
    }

    #[test]
    fn a_directory_in_itself_is_walked_once() {
        let mut m = Model::new();
        let a = m.mkdir(ROOT, name("a"), 0o755, 0, 0).unwrap();
        let b = m.mkdir(a, name("b"), 0o755, 0, 0).unwrap();
        m.fsyncdir(ROOT).unwrap();
        m.fsyncdir(a).unwrap();
        m.rename(a, name("b"), ROOT, name("b"), 0).unwrap();
        m.rename(ROOT, name("a"), b, name("a"), 0).unwrap();
        m.fsyncdir(b).unwrap();
        let s = cut(&m, Mode::Clean, 0);
        assert_eq!(s.dirs, vec![PathBuf::from("a"), PathBuf::from("a/b")]);
    }

    #[test]
    fn write_to_materialises_the_tree() {
        let (mut m, _) = durable_file(1, 5);
        let d = m.mkdir(ROOT, name("d"), 0o755, 0, 0).unwrap();
        let e = m.create(d, name("e"), 0o644, 0, 0).unwrap();
        m.fsyncdir(d).unwrap();
        m.fsyncdir(ROOT).unwrap();
        let _ = e;
        let out = std::env::temp_dir().join(format!("powercut-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&out);
        cut(&m, Mode::Clean, 0).write_to(&out).unwrap();
        assert_eq!(fs::read(out.join("f")).unwrap(), vec![5; PAGE]);
        assert_eq!(fs::read(out.join("d/e")).unwrap(), Vec::<u8>::new());
        fs::remove_dir_all(&out).unwrap();
    }
}

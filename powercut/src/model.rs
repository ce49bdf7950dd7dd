//! The file system as a disk would keep it: every file and directory has a current image, what
//! reads see, and a durable one, what survives a power cut. Contents become durable with an
//! fsync of the file; names (create, mkdir, unlink, rmdir, rename, a file's very existence) with
//! an fsync of their directory. No FUSE here, so the rules are unit-tested directly.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use crate::pages::FileData;

pub type Ino = u64;

/// The root directory's inode number, as FUSE fixes it.
pub const ROOT: Ino = 1;

/// An operation's failure, as the errno FUSE hands back.
pub type Errno = i32;

#[derive(Clone, Debug, Default)]
pub struct DirData {
    pub current: BTreeMap<OsString, Ino>,
    pub durable: BTreeMap<OsString, Ino>,
}

#[derive(Clone, Debug)]
pub enum Node {
    File(FileData),
    Dir(DirData),
}

#[derive(Clone, Debug)]
pub struct Inode {
    pub node: Node,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// Entries naming this inode in current directory maps.
    links_current: u32,
    /// Entries naming this inode in durable directory maps: while any remain, a cut may
    /// bring the inode back, so it is kept even when nothing current names it.
    links_durable: u32,
    /// The kernel's references (FUSE lookup count); an open file keeps one.
    lookups: u64,
}

impl Inode {
    fn new(node: Node, perm: u16, uid: u32, gid: u32) -> Inode {
        let now = SystemTime::now();
        Inode {
            node,
            perm,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
            links_current: 0,
            links_durable: 0,
            lookups: 0,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.node, Node::Dir(_))
    }

    pub fn size(&self) -> u64 {
        match &self.node {
            Node::File(f) => f.len(),
            Node::Dir(d) => d.current.len() as u64,
        }
    }

    pub fn nlink(&self) -> u32 {
        if self.is_dir() {
            2
        } else {
            self.links_current
        }
    }

    fn touch(&mut self) {
        let now = SystemTime::now();
        self.mtime = now;
        self.ctime = now;
    }
}

/// The largest file this in-memory file system holds (EFBIG beyond): every byte lives twice in
/// memory, and a stray write at a huge offset must fail, not abort the process.
pub const MAX_FILE_SIZE: u64 = 4 << 30;

fn check_end(offset: u64, len: u64) -> Result<(), Errno> {
    match offset.checked_add(len) {
        Some(end) if end <= MAX_FILE_SIZE => Ok(()),
        _ => Err(libc::EFBIG),
    }
}

/// fallocate modes this model implements; the others answer EOPNOTSUPP.
const FALLOC_KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
const FALLOC_PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE;
const FALLOC_ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE;

#[derive(Debug)]
pub struct Model {
    inodes: HashMap<Ino, Inode>,
    next_ino: Ino,
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    /// An empty file system: a root directory whose durable map is empty too.
    pub fn new() -> Model {
        let mut root = Inode::new(Node::Dir(DirData::default()), 0o755, 0, 0);
        // Nothing names the root, yet it always exists.
        root.links_current = 1;
        root.links_durable = 1;
        Model { inodes: HashMap::from([(ROOT, root)]), next_ino: ROOT + 1 }
    }

    pub fn inode(&self, ino: Ino) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn inode_mut(&mut self, ino: Ino) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    pub fn dir(&self, ino: Ino) -> Result<&DirData, Errno> {
        match &self.inode(ino)?.node {
            Node::Dir(d) => Ok(d),
            Node::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut DirData, Errno> {
        match &mut self.inode_mut(ino)?.node {
            Node::Dir(d) => Ok(d),
            Node::File(_) => Err(libc::ENOTDIR),
        }
    }

    pub fn file(&self, ino: Ino) -> Result<&FileData, Errno> {
        match &self.inode(ino)?.node {
            Node::File(f) => Ok(f),
            Node::Dir(_) => Err(libc::EISDIR),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut FileData, Errno> {
        let inode = self.inode_mut(ino)?;
        inode.touch();
        match &mut inode.node {
            Node::File(f) => Ok(f),
            Node::Dir(_) => Err(libc::EISDIR),
        }
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino, Errno> {
        self.dir(parent)?.current.get(name).copied().ok_or(libc::ENOENT)
    }

    /// The kernel took a reference to `ino` (a reply carrying an entry).
    pub fn remember(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.lookups += 1;
        }
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&mut self, ino: Ino, n: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.lookups = inode.lookups.saturating_sub(n);
            self.collect(ino);
        }
    }

    pub fn create(&mut self, parent: Ino, name: &OsStr, perm: u16, uid: u32, gid: u32) -> Result<Ino, Errno> {
        self.add(parent, name, Inode::new(Node::File(FileData::default()), perm, uid, gid))
    }

    pub fn mkdir(&mut self, parent: Ino, name: &OsStr, perm: u16, uid: u32, gid: u32) -> Result<Ino, Errno> {
        self.add(parent, name, Inode::new(Node::Dir(DirData::default()), perm, uid, gid))
    }

    fn add(&mut self, parent: Ino, name: &OsStr, mut inode: Inode) -> Result<Ino, Errno> {
        if self.dir(parent)?.current.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        inode.links_current = 1;
        self.inodes.insert(ino, inode);
        self.dir_mut(parent)?.current.insert(name.to_owned(), ino);
        self.inode_mut(parent)?.touch();
        Ok(ino)
    }

    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        if self.inode(ino)?.is_dir() {
            return Err(libc::EISDIR);
        }
        self.detach(parent, name, ino)
    }

    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        if !self.dir(ino)?.current.is_empty() {
            return Err(libc::ENOTEMPTY);
        }
        self.detach(parent, name, ino)
    }

    fn detach(&mut self, parent: Ino, name: &OsStr, ino: Ino) -> Result<(), Errno> {
        self.dir_mut(parent)?.current.remove(name);
        self.inode_mut(parent)?.touch();
        let inode = self.inode_mut(ino)?;
        inode.links_current -= 1;
        inode.ctime = SystemTime::now();
        self.collect(ino);
        Ok(())
    }

    /// rename(2) and renameat2's RENAME_NOREPLACE / RENAME_EXCHANGE, on the current maps only.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: u32,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        self.dir(new_parent)?;
        if self.is_ancestor(ino, new_parent) {
            return Err(libc::EINVAL);
        }
        let target = self.dir(new_parent)?.current.get(new_name).copied();
        if flags & libc::RENAME_EXCHANGE != 0 {
            let target = target.ok_or(libc::ENOENT)?;
            if self.is_ancestor(target, parent) {
                return Err(libc::EINVAL);
            }
            self.dir_mut(parent)?.current.insert(name.to_owned(), target);
            self.dir_mut(new_parent)?.current.insert(new_name.to_owned(), ino);
            self.touch_both(parent, new_parent)?;
            return Ok(());
        }
        if let Some(target) = target {
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(libc::EEXIST);
            }
            if target == ino {
                return Ok(());
            }
            match (self.inode(ino)?.is_dir(), self.inode(target)?.is_dir()) {
                (false, true) => return Err(libc::EISDIR),
                (true, false) => return Err(libc::ENOTDIR),
                (true, true) if !self.dir(target)?.current.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
            self.detach(new_parent, new_name, target)?;
        }
        self.dir_mut(parent)?.current.remove(name);
        self.dir_mut(new_parent)?.current.insert(new_name.to_owned(), ino);
        self.touch_both(parent, new_parent)?;
        self.inode_mut(ino)?.ctime = SystemTime::now();
        Ok(())
    }

    fn touch_both(&mut self, a: Ino, b: Ino) -> Result<(), Errno> {
        self.inode_mut(a)?.touch();
        self.inode_mut(b)?.touch();
        Ok(())
    }

    /// Whether directory `ino` contains `dir` (or is it), in the current tree: moving a
    /// directory under itself would cut it off from the root.
    fn is_ancestor(&self, ino: Ino, dir: Ino) -> bool {
        if !self.inode(ino).is_ok_and(Inode::is_dir) {
            return false;
        }
        let mut stack = vec![ino];
        while let Some(d) = stack.pop() {
            if d == dir {
                return true;
            }
            if let Ok(data) = self.dir(d) {
                stack.extend(data.current.values().filter(|c| self.inode(**c).is_ok_and(Inode::is_dir)));
            }
        }
        false
    }

    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<(), Errno> {
        check_end(offset, data.len() as u64)?;
        self.file_mut(ino)?.write(offset, data);
        Ok(())
    }

    pub fn set_len(&mut self, ino: Ino, len: u64) -> Result<(), Errno> {
        check_end(len, 0)?;
        self.file_mut(ino)?.set_len(len);
        Ok(())
    }

    pub fn fallocate(&mut self, ino: Ino, offset: u64, len: u64, mode: i32) -> Result<(), Errno> {
        check_end(offset, len)?;
        let file = self.file_mut(ino)?;
        let keep_size = mode & FALLOC_KEEP_SIZE != 0;
        match mode & !FALLOC_KEEP_SIZE {
            0 if !keep_size => {
                if offset + len > file.len() {
                    file.set_len(offset + len);
                }
            }
            0 => {}
            FALLOC_PUNCH_HOLE if keep_size => file.zero(offset, len, true),
            FALLOC_ZERO_RANGE => file.zero(offset, len, keep_size),
            _ => return Err(libc::EOPNOTSUPP),
        }
        Ok(())
    }

    /// fsync or fdatasync of a file: its contents and size become durable, not its name.
    pub fn fsync(&mut self, ino: Ino) -> Result<(), Errno> {
        match &mut self.inode_mut(ino)?.node {
            Node::File(f) => f.sync(),
            // A directory opened as a file and fsynced reaches fsyncdir instead; be lenient.
            Node::Dir(_) => return self.fsyncdir(ino),
        }
        Ok(())
    }

    /// fsync of a directory: its entries as they are now become durable.
    pub fn fsyncdir(&mut self, ino: Ino) -> Result<(), Errno> {
        let dir = self.dir_mut(ino)?;
        let old = std::mem::replace(&mut dir.durable, dir.current.clone());
        let new: Vec<Ino> = dir.durable.values().copied().collect();
        for child in new {
            self.inode_mut(child)?.links_durable += 1;
        }
        for child in old.into_values() {
            self.inode_mut(child)?.links_durable -= 1;
            self.collect(child);
        }
        Ok(())
    }

    pub fn set_attr(&mut self, ino: Ino, change: impl FnOnce(&mut Inode)) -> Result<(), Errno> {
        let inode = self.inode_mut(ino)?;
        change(inode);
        inode.ctime = SystemTime::now();
        Ok(())
    }

    /// Frees `ino` once nothing can reach it again: no current or durable name, no kernel
    /// reference. A directory freed lets go of its durable entries in turn.
    fn collect(&mut self, ino: Ino) {
        let mut pending = vec![ino];
        while let Some(ino) = pending.pop() {
            let Some(inode) = self.inodes.get(&ino) else { continue };
            if inode.links_current > 0 || inode.links_durable > 0 || inode.lookups > 0 {
                continue;
            }
            if let Some(Inode { node: Node::Dir(dir), .. }) = self.inodes.remove(&ino) {
                for child in dir.durable.into_values() {
                    if let Some(c) = self.inodes.get_mut(&child) {
                        c.links_durable -= 1;
                        pending.push(child);
                    }
                }
            }
        }
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn unlinked_unsynced_file_is_freed_after_forget() {
        let mut m = Model::new();
        let f = m.create(ROOT, name("a"), 0o644, 0, 0).unwrap();
        m.remember(f);
        m.unlink(ROOT, name("a")).unwrap();
        assert!(m.inode(f).is_ok(), "the kernel still holds it");
        m.forget(f, 1);
        assert!(m.inode(f).is_err());
        assert_eq!(m.inode_count(), 1);
    }

    #[test]
    fn durably_named_file_outlives_its_unlink() {
        let mut m = Model::new();
        let f = m.create(ROOT, name("a"), 0o644, 0, 0).unwrap();
        m.fsyncdir(ROOT).unwrap();
        m.unlink(ROOT, name("a")).unwrap();
        assert!(m.inode(f).is_ok());
        m.fsyncdir(ROOT).unwrap();
        assert!(m.inode(f).is_err());
    }

    #[test]
    fn rename_rules() {
        let mut m = Model::new();
        let d = m.mkdir(ROOT, name("d"), 0o755, 0, 0).unwrap();
        let e = m.mkdir(d, name("e"), 0o755, 0, 0).unwrap();
        assert_eq!(m.rename(ROOT, name("d"), e, name("x"), 0), Err(libc::EINVAL));
        let a = m.create(ROOT, name("a"), 0o644, 0, 0).unwrap();
        let b = m.create(ROOT, name("b"), 0o644, 0, 0).unwrap();
        assert_eq!(m.rename(ROOT, name("a"), ROOT, name("b"), libc::RENAME_NOREPLACE), Err(libc::EEXIST));
        assert_eq!(m.rename(ROOT, name("a"), ROOT, name("d"), 0), Err(libc::EISDIR));
        m.rename(ROOT, name("a"), ROOT, name("b"), 0).unwrap();
        assert_eq!(m.lookup(ROOT, name("b")), Ok(a));
        assert!(m.inode(b).is_err(), "the replaced file had no other reference");
        m.rename(ROOT, name("b"), d, name("e2"), 0).unwrap();
        m.rename(d, name("e2"), d, name("e"), libc::RENAME_EXCHANGE).unwrap();
        assert_eq!(m.lookup(d, name("e")), Ok(a));
        assert_eq!(m.lookup(d, name("e2")), Ok(e));
    }

    #[test]
    fn rmdir_refuses_a_full_directory() {
        let mut m = Model::new();
        let d = m.mkdir(ROOT, name("d"), 0o755, 0, 0).unwrap();
        m.create(d, name("f"), 0o644, 0, 0).unwrap();
        assert_eq!(m.rmdir(ROOT, name("d")), Err(libc::ENOTEMPTY));
        m.unlink(d, name("f")).unwrap();
        m.rmdir(ROOT, name("d")).unwrap();
        assert_eq!(m.lookup(ROOT, name("d")), Err(libc::ENOENT));
    }

    #[test]
    fn fallocate_modes() {
        let mut m = Model::new();
        let f = m.create(ROOT, name("f"), 0o644, 0, 0).unwrap();
        m.fallocate(f, 0, 8192, 0).unwrap();
        assert_eq!(m.file(f).unwrap().len(), 8192);
        m.fallocate(f, 0, 100_000, FALLOC_KEEP_SIZE).unwrap();
        assert_eq!(m.file(f).unwrap().len(), 8192);
        assert_eq!(m.fallocate(f, 0, 10, libc::FALLOC_FL_COLLAPSE_RANGE), Err(libc::EOPNOTSUPP));
    }

    #[test]
    fn huge_offsets_fail_with_efbig() {
        let mut m = Model::new();
        let f = m.create(ROOT, name("f"), 0o644, 0, 0).unwrap();
        assert_eq!(m.write(f, u64::MAX - 1, b"ab"), Err(libc::EFBIG));
        assert_eq!(m.write(f, MAX_FILE_SIZE, b"a"), Err(libc::EFBIG));
        assert_eq!(m.set_len(f, MAX_FILE_SIZE + 1), Err(libc::EFBIG));
        assert_eq!(m.fallocate(f, 1, MAX_FILE_SIZE, 0), Err(libc::EFBIG));
        assert_eq!(m.file(f).unwrap().len(), 0);
    }
}

//! The FUSE face of the [`Model`]: each request becomes one model operation under a lock.
//! After the cut ([`State::frozen`]) every request answers EIO, so nothing more changes.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{Ino, Inode, Model, Node};
use crate::pages::PAGE;

/// How long the kernel may cache names and attributes. Every change reaches this file system
/// through the kernel of this one mount, which updates its cached size on write, truncate and
/// fallocate itself, so a cached attribute is never stale; a short TTL only saves round trips.
const TTL: Duration = Duration::from_secs(1);

/// What statfs reports: room enough that no workload sizes itself down, in 4 KiB blocks.
const STATFS_BLOCKS: u64 = 1 << 24;
const STATFS_FILES: u64 = 1 << 20;
const NAME_MAX: u32 = 255;

#[derive(Debug, Default)]
pub struct State {
    pub model: Model,
    /// Set by the cut: the state is what the cut saw, and no request changes it any more.
    pub frozen: bool,
}

/// Shared between the FUSE session thread and the thread that performs the cut.
pub type Shared = Arc<Mutex<State>>;

#[derive(Debug)]
pub struct PowerFs {
    state: Shared,
}

impl PowerFs {
    pub fn new(state: Shared) -> PowerFs {
        PowerFs { state }
    }

    pub fn shared(&self) -> Shared {
        self.state.clone()
    }

    /// The model, or EIO once the cut froze it.
    fn live(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.frozen {
            Err(Errno::EIO)
        } else {
            Ok(state)
        }
    }

    fn with<T>(&self, op: impl FnOnce(&mut Model) -> Result<T, i32>) -> Result<T, Errno> {
        op(&mut self.live()?.model).map_err(Errno::from_i32)
    }

    /// Runs `op`, which names an inode, and answers with that inode's entry, counting the
    /// kernel's new reference.
    fn entry(&self, op: impl FnOnce(&mut Model) -> Result<Ino, i32>) -> Result<FileAttr, Errno> {
        let mut state = self.live()?;
        let ino = op(&mut state.model).map_err(Errno::from_i32)?;
        state.model.remember(ino);
        Ok(attr(ino, state.model.inode(ino).map_err(Errno::from_i32)?))
    }

    fn attr_of(&self, ino: Ino) -> Result<FileAttr, Errno> {
        let state = self.live()?;
        Ok(attr(ino, state.model.inode(ino).map_err(Errno::from_i32)?))
    }
}

fn attr(ino: Ino, inode: &Inode) -> FileAttr {
    let size = inode.size();
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: inode.atime,
        mtime: inode.mtime,
        ctime: inode.ctime,
        crtime: inode.ctime,
        kind: if inode.is_dir() { FileType::Directory } else { FileType::RegularFile },
        perm: inode.perm,
        nlink: inode.nlink(),
        uid: inode.uid,
        gid: inode.gid,
        rdev: 0,
        blksize: PAGE as u32,
        flags: 0,
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn perm(mode: u32) -> u16 {
    (mode & 0o7777) as u16
}

fn reply_entry(reply: ReplyEntry, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// How files are opened: through the page cache (direct I/O would forbid shared writable
/// mappings), which is kept across opens. Every change passes through this one mount's cache,
/// so it is never stale; dropping it on each open, FUSE's default, would also write a
/// mapping's dirty pages back at every open, which no local file system does.
const OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE;

fn reply_open(reply: ReplyOpen, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.opened(FileHandle(0), OPEN_FLAGS),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for PowerFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.entry(|m| m.lookup(parent.0, name)));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        // Even frozen: references still go away, and the model no longer matters then.
        self.state.lock().unwrap_or_else(|e| e.into_inner()).model.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr_of(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = self.with(|m| {
            if let Some(size) = size {
                m.set_len(ino.0, size)?;
            }
            m.set_attr(ino.0, |inode| {
                if let Some(mode) = mode {
                    inode.perm = perm(mode);
                }
                if let Some(uid) = uid {
                    inode.uid = uid;
                }
                if let Some(gid) = gid {
                    inode.gid = gid;
                }
                if let Some(t) = atime {
                    inode.atime = time(t);
                }
                if let Some(t) = mtime {
                    inode.mtime = time(t);
                }
            })
        });
        match result.and_then(|()| self.attr_of(ino.0)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        reply_entry(reply, self.entry(|m| m.create(parent.0, name, perm(mode), req.uid(), req.gid())));
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        reply_entry(reply, self.entry(|m| m.mkdir(parent.0, name, perm(mode), req.uid(), req.gid())));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.with(|m| m.unlink(parent.0, name)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.with(|m| m.rmdir(parent.0, name)));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.with(|m| m.rename(parent.0, name, newparent.0, newname, flags.bits())));
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply_open(reply, self.with(|m| m.file(ino.0).map(|_| ())));
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let state = match self.live() {
            Ok(state) => state,
            Err(e) => return reply.error(e),
        };
        match state.model.file(ino.0) {
            Ok(file) => reply.data(file.read(offset, size as usize)),
            Err(e) => reply.error(Errno::from_i32(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.with(|m| m.write(ino.0, offset, data)) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty(reply, self.with(|m| m.fsync(ino.0)));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply_open(reply, self.with(|m| m.dir(ino.0).map(|_| ())));
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let state = match self.live() {
            Ok(state) => state,
            Err(e) => return reply.error(e),
        };
        let dir = match state.model.dir(ino.0) {
            Ok(dir) => dir,
            Err(e) => return reply.error(Errno::from_i32(e)),
        };
        let dots = [(ino.0, FileType::Directory, OsStr::new(".")), (ino.0, FileType::Directory, OsStr::new(".."))];
        let children = dir.current.iter().map(|(name, &child)| {
            let dir = state.model.inode(child).is_ok_and(|i| matches!(i.node, Node::Dir(_)));
            (child, if dir { FileType::Directory } else { FileType::RegularFile }, name.as_os_str())
        });
        // An entry's offset is the position after it, where the next readdir resumes.
        for (i, (child, kind, name)) in dots.into_iter().chain(children).enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty(reply, self.with(|m| m.fsyncdir(ino.0)));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.live() {
            Ok(state) => {
                let files = state.model.inode_count() as u64;
                reply.statfs(
                    STATFS_BLOCKS,
                    STATFS_BLOCKS,
                    STATFS_BLOCKS,
                    STATFS_FILES,
                    STATFS_FILES.saturating_sub(files),
                    PAGE as u32,
                    NAME_MAX,
                    PAGE as u32,
                )
            }
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.entry(|m| m.create(parent.0, name, perm(mode), req.uid(), req.gid())) {
            Ok(attr) => reply.created(&TTL, &attr, Generation(0), FileHandle(0), OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.with(|m| m.fallocate(ino.0, offset, length, mode)));
    }
}

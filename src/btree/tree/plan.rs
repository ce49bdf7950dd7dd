//! The scratch-page pool and `Plan`: an operation's page changes, applied all or nothing by
//! one executor with two ways of writing a page: a whole new image (the copy), or an edit where
//! the page lies (in place), each checked while planning.

use super::*;

/// A page-sized buffer from this thread's small pool: the slow paths copy and build whole
/// pages, and a fresh zeroed allocation for each was a good part of their cost. The bytes
/// past what a page builder writes are stale, which no reader looks at.
pub(crate) struct Scratch(Vec<u8>);

thread_local! {
    static SCRATCH_POOL: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers a thread keeps for reuse: a split or shift at the top of a deep tree uses a few.
pub(super) const SCRATCH_POOL_MAX: usize = 16;

impl Scratch {
    pub(super) fn new(len: usize) -> Scratch {
        let mut v = SCRATCH_POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
        v.resize(len, 0);
        Scratch(v)
    }

    pub(super) fn copy_of(bytes: &[u8]) -> Scratch {
        let mut s = Scratch::new(bytes.len());
        s.0.copy_from_slice(bytes);
        s
    }
}

impl std::ops::Deref for Scratch {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        // A thread being torn down has no pool left to return to: the buffer is just freed.
        let _ = SCRATCH_POOL.try_with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < SCRATCH_POOL_MAX {
                pool.push(v);
            }
        });
    }
}

/// How a plan changes one page: a whole new image, or an edit where the page lies, which the
/// planner checked to fit (a refusal when it is applied means damage: `Corrupt`).
pub(crate) enum PageWrite {
    Image(Scratch),
    /// A leaf's cells (`moved`, a leaf image) added before its first entry or after its last.
    AddCells {
        moved: Scratch,
        front: bool,
    },
    /// An internal entry's separator replaced, its child unchanged.
    ReplaceSeparator {
        index: usize,
        key: Vec<u8>,
    },
    /// A separator and the child right of it added at entry `index`.
    InsertSeparator {
        index: usize,
        key: Vec<u8>,
        child: u64,
    },
    /// Entry `index` removed (an internal page's: with the child right of it).
    Remove {
        index: usize,
    },
    /// A leaf's entries `keep` kept, the others gone, then `cell` (an encoded leaf cell)
    /// inserted at its index among them: the leaf a shift or split leaves behind.
    Retain {
        keep: std::ops::Range<usize>,
        cell: Option<(usize, Vec<u8>)>,
    },
}

impl PageWrite {
    /// Carries the write out on page `id` where it lies.
    /// The in-place edits are recorded for the commit to log as they were made (see
    /// `NodeEditor::update_recorded`).
    fn run(&self, page: &mut Edit<'_>, id: u64) -> Result<bool> {
        match self {
            PageWrite::Image(image) => {
                page.unrecorded().copy_from_slice(image);
                Ok(true)
            }
            PageWrite::AddCells { moved, front } => {
                page::insert_cells_in_place(page, id, &PageRef::parse(moved, id)?, *front)
            }
            PageWrite::ReplaceSeparator { index, key } => page::replace_separator_in_place(page, id, *index, key),
            PageWrite::InsertSeparator { index, key, child } => {
                page::insert_in_place(page, id, *index, &Entry { key, payload: Payload::Child(*child) })
            }
            PageWrite::Remove { index } => page::remove_in_place(page.unrecorded(), id, *index).map(|()| true),
            PageWrite::Retain { keep, cell } => {
                page::retain_in_place(page, id, keep.clone())?;
                match cell {
                    Some((index, raw)) => page::insert_leaf_cell_in_place(page, id, *index, raw),
                    None => Ok(true),
                }
            }
        }
    }
}

/// The page changes of one operation, applied all together or not at all, under the one
/// hold of the store's lock the operation runs in (`editor`).
pub(crate) struct Plan<'t, 'c> {
    pub(super) tree: &'t BTree,
    pub(super) editor: &'t mut NodeEditor<'c>,
    pub(super) allocated: Vec<u64>,
    pub(super) writes: Vec<(u64, PageWrite)>,
    /// Nodes to free, with the kind each must have.
    pub(super) frees: Vec<(u64, u8)>,
    pub(super) new_root: Option<u64>,
    pub(super) root_shrinks: bool,
}

impl<'t, 'c> Plan<'t, 'c> {
    pub(super) fn new(tree: &'t BTree, editor: &'t mut NodeEditor<'c>) -> Plan<'t, 'c> {
        Plan {
            tree,
            editor,
            allocated: Vec::new(),
            writes: Vec::new(),
            frees: Vec::new(),
            new_root: None,
            root_shrinks: false,
        }
    }

    /// The page as it is now, layout checked.
    pub(super) fn with_page<R>(&self, id: u64, f: impl FnOnce(PageRef<'_>) -> R) -> Result<R> {
        let nodes = self.editor.reader();
        Ok(f(PageReader { nodes: &nodes, page_bytes: self.tree.inner.page_bytes }.page(id)?))
    }

    /// A copy of a page the operation reads and may rewrite, layout checked.
    pub(super) fn copy_page(&self, id: u64) -> Result<Scratch> {
        self.with_page(id, |p| Scratch::copy_of(p.as_bytes()))
    }

    /// A page's entry count.
    pub(super) fn page_len(&self, id: u64) -> Result<usize> {
        self.with_page(id, |p| p.len())
    }

    pub(super) fn alloc_page(&mut self, kind: u8) -> Result<u64> {
        let id = self.editor.allocate(self.tree.inner.page_bytes, kind)?.raw();
        self.allocated.push(id);
        Ok(id)
    }

    /// A value as the leaf stores it: inline, or in a new store node.
    pub(super) fn store_value<'v>(&mut self, value: &'v [u8]) -> Result<Value<'v>> {
        if value.len() <= max_inline_value_bytes(self.tree.inner.page_bytes as u32) {
            return Ok(Value::Inline(value));
        }
        let id = self.editor.allocate(value.len(), KIND_OVERFLOW)?;
        self.allocated.push(id.raw());
        self.editor.publish(id, value)?;
        Ok(Value::Overflow(id.raw(), value.len() as u32))
    }

    /// Plans an internal page's new image from cells.
    pub(super) fn write_internal(&mut self, id: u64, leftmost: u64, cells: &[Cell<'_>]) {
        let mut image = Scratch::new(self.tree.inner.page_bytes);
        page::build(&mut image, TYPE_INTERNAL, leftmost, cells);
        self.put(id, image);
    }

    /// Plans a leaf's new image from cells.
    pub(super) fn write_cells(&mut self, id: u64, cells: &[Cell<'_>]) {
        let mut image = Scratch::new(self.tree.inner.page_bytes);
        page::build(&mut image, TYPE_LEAF, 0, cells);
        self.put(id, image);
    }

    /// Plans a page's whole new image (one edited in place on a copy, say).
    pub(super) fn put(&mut self, id: u64, image: Scratch) {
        self.writes.retain(|(w, _)| *w != id);
        self.writes.push((id, PageWrite::Image(image)));
    }

    /// Plans an edit of a page where it lies, which the caller checked to fit the page as it
    /// is now: a page the plan writes no other way (an edit planned against the stored page
    /// would not apply to a new image).
    pub(super) fn edit(&mut self, id: u64, write: PageWrite) {
        debug_assert!(self.writes.iter().all(|(w, _)| *w != id), "a page planned twice");
        debug_assert!(!self.allocated.contains(&id), "an edit of a page the plan allocated");
        self.writes.push((id, write));
    }

    /// Frees the node when the plan is applied, once it is checked to be a live node of
    /// `kind`: an id read from a damaged page must not free another tree's page or a host's
    /// node, nor fail halfway through `apply`.
    pub(super) fn free_later(&mut self, id: u64, kind: u8) {
        self.frees.push((id, kind));
    }

    /// Undoes the allocations and returns `e`: the tree is as it was.
    pub(super) fn abort<T>(self, e: Error) -> Result<T> {
        for id in &self.allocated {
            let _ = self.editor.free(NodeId::from_raw(*id));
        }
        Err(e)
    }

    /// Takes every shadow first (the only step that can fail, for lack of space), then
    /// writes the pages, frees what the operation released, and moves the root.
    pub(super) fn apply(self, st: &mut State) -> Result<()> {
        for &(id, kind) in &self.frees {
            if let Err(e) = check_node_kind(self.editor, id, kind) {
                return self.abort(e);
            }
        }
        for (id, _) in &self.writes {
            if !self.allocated.contains(id) {
                if let Err(e) = self.editor.prepare_write(NodeId::from_raw(*id)) {
                    return self.abort(e);
                }
            }
        }
        let page_bytes = self.tree.inner.page_bytes;
        for (id, write) in &self.writes {
            match write {
                PageWrite::Image(image) => self.editor.publish(NodeId::from_raw(*id), image)?,
                edit => {
                    if !update_page_recorded(self.editor, page_bytes, *id, |p| edit.run(p, *id))? {
                        return Err(Error::corrupt(
                            format!("B+ tree page {id:#x}"),
                            0,
                            "its free gap shrank between planning an edit and making it",
                        ));
                    }
                }
            }
        }
        for &(id, _) in &self.frees {
            self.editor.free(NodeId::from_raw(id))?;
        }
        if let Some(root) = self.new_root {
            st.root = root;
            if self.root_shrinks {
                st.height -= 1;
            } else {
                st.height += 1;
            }
        }
        Ok(())
    }
}

/// Node `id`, which the tree is about to free, is a live node of `kind`: `Corrupt` otherwise.
pub(super) fn check_node_kind(editor: &NodeEditor<'_>, id: u64, kind: u8) -> Result<()> {
    let found = editor.info(NodeId::from_raw(id)).map(|info| info.kind);
    if found.as_ref().ok() == Some(&kind) {
        return Ok(());
    }
    let what = match found {
        Ok(k) => format!("node of kind {k}, not {kind}"),
        Err(_) => "no live node".to_string(),
    };
    Err(Error::corrupt(format!("B+ tree node {id:#x}"), 0, format!("the tree refers to it, but it is a {what}")))
}

//! Reading pages and descending to a leaf: the page reader, the path, checked page decoding.

use super::*;

impl BTree {
    /// Reads a page through a closure (shared lock on the store, no copy).
    pub(crate) fn with_page<R>(&self, id: u64, f: impl FnOnce(PageRef<'_>) -> Result<R>) -> Result<R> {
        let pb = self.inner.page_bytes;
        self.store()?
            .with_node(NodeId::from_raw(id), |bytes| parse_page(bytes, id, pb).and_then(f))
            .map_err(|e| missing_page(id, e))?
    }

    /// Reads pages under one hold of the store's lock: `f` gets a page reader.
    pub(crate) fn with_pages<R>(&self, f: impl FnOnce(&PageReader<'_, '_>) -> Result<R>) -> Result<R> {
        self.store()?.with_reader(|nodes| f(&PageReader { nodes, page_bytes: self.inner.page_bytes }))
    }

    /// A copy of a page, its layout checked.
    pub(crate) fn read_page(&self, id: u64) -> Result<Vec<u8>> {
        let bytes = self.store()?.read(NodeId::from_raw(id)).map_err(|e| missing_page(id, e))?;
        parse_page(&bytes, id, self.inner.page_bytes)?;
        Ok(bytes)
    }

    /// The cells of a page about to be rewritten, a leaf's or an internal page's (`leaf`).
    /// Pages this tree writes always hold entries of at most a quarter page (the split
    /// arithmetic relies on it) that fit the page together; a damaged page whose cells overlap
    /// or claim more is `Corrupt` here, before anything is written (page::build would
    /// refuse it).
    pub(crate) fn page_cells<'p>(&self, p: &PageRef<'p>, id: u64, leaf: bool) -> Result<Vec<Cell<'p>>> {
        self.check_kind(p, id, leaf)?;
        let cells = p.cells()?;
        self.check_sizes(id, cells.iter().map(Cell::bytes))?;
        Ok(cells)
    }

    pub(super) fn check_kind(&self, p: &PageRef<'_>, id: u64, leaf: bool) -> Result<()> {
        if p.is_leaf() != leaf {
            return Err(Error::corrupt(
                format!("B+ tree page {id:#x}"),
                0,
                format!("a {} page where a {} belongs", kind_name(p.is_leaf()), kind_name(leaf)),
            ));
        }
        Ok(())
    }

    /// Entries of at most a quarter page that fit the page together.
    pub(super) fn check_sizes(&self, id: u64, sizes: impl Iterator<Item = usize>) -> Result<()> {
        let cap = page::capacity(self.inner.page_bytes);
        let bad = |what: String| Error::corrupt(format!("B+ tree page {id:#x}"), 0, what);
        let mut total = 0;
        for bytes in sizes {
            if bytes > cap / 4 {
                return Err(bad(format!("an entry of {bytes} bytes; at most {} fit a page", cap / 4)));
            }
            total += bytes;
        }
        if total > cap {
            return Err(bad(format!("entries of {total} bytes in a page that holds {cap}")));
        }
        Ok(())
    }

    /// Descends to a stored key's leaf (`probe`) through a page reader the caller holds:
    /// fills `path` (each internal page with the child position taken: 0 = leftmost, j + 1 =
    /// the child of separator j) and returns the leaf, where the key is in it (`Ok(i)`) or
    /// would go (`Err(i)`), and the leaf's page. (Inserts and removes descend through the leaf
    /// hint: [`BTree::descend_for_write`].)
    #[inline(always)]
    pub(super) fn descend_in<'a>(
        &self,
        pages: &PageReader<'_, 'a>,
        st: &State,
        probe: &Probe<'_>,
        path: &mut Path,
    ) -> Result<Descent<'a>> {
        let (id, leaf) = self.walk_to_leaf(pages, st, probe, |id, pos, page| path.push(id, pos, page))?;
        let found = probe.find_in(&leaf)?;
        Ok((id, found, leaf))
    }

    /// Walks from the root to the leaf where `probe` belongs, through the caller's page
    /// reader: `visit(id, position, page)` at each internal page with the child position
    /// taken (0 = leftmost, j + 1 = the child of separator j). Returns the leaf's id and page.
    pub(crate) fn walk_to_leaf<'a>(
        &self,
        pages: &PageReader<'_, 'a>,
        st: &State,
        probe: &Probe<'_>,
        mut visit: impl FnMut(u64, usize, &PageRef<'a>),
    ) -> Result<(u64, PageRef<'a>)> {
        let mut id = st.root;
        for _ in 1..st.height {
            let p = pages.page(id)?;
            if p.is_leaf() {
                return Err(Error::corrupt(format!("B+ tree page {id:#x}"), 0, "a leaf above the leaf level"));
            }
            let (slot, child) = probe.child_in(&p)?;
            visit(id, slot.map_or(0, |s| s + 1), &p);
            id = child;
        }
        let leaf = pages.page(id)?;
        if !leaf.is_leaf() {
            return Err(Error::corrupt(format!("B+ tree page {id:#x}"), 0, "an internal page at the leaf level"));
        }
        Ok((id, leaf))
    }
}

/// Runs `f` on page `id` where it lies (its shadow taken first if it has none).
pub(super) fn update_page<R>(
    editor: &mut NodeEditor<'_>,
    page_bytes: usize,
    id: u64,
    f: impl FnOnce(&mut [u8]) -> Result<R>,
) -> Result<R> {
    editor.try_update(NodeId::from_raw(id), |buf| match buf.get_mut(..page_bytes) {
        Some(page) => Ok((page_bytes, f(page)?)),
        None => Err(Error::corrupt(format!("B+ tree page {id:#x}"), 0, "a block smaller than a page")),
    })
}

/// As `update_page`, with `f`'s writes recorded in the page's edit script (see
/// `NodeEditor::update_recorded`).
pub(super) fn update_page_recorded<R>(
    editor: &mut NodeEditor<'_>,
    page_bytes: usize,
    id: u64,
    f: impl FnOnce(&mut Edit<'_>) -> Result<R>,
) -> Result<R> {
    editor.update_recorded(NodeId::from_raw(id), |block| match block.prefix(page_bytes) {
        Some(mut page) => Ok((page_bytes, f(&mut page)?)),
        None => Err(Error::corrupt(format!("B+ tree page {id:#x}"), 0, "a block smaller than a page")),
    })
}

/// Whether an insert at `index` of a page with `n` entries (after the insert) is at the
/// tree's right or left edge: the last entry of the rightmost page, or the first of the
/// leftmost. `page_len` gives a path page's entry count (`None`: unreadable, not an edge).
pub(super) fn edge_at(path: &[(u64, usize)], index: usize, n: usize, page_len: impl Fn(u64) -> Option<usize>) -> Edge {
    let rightmost = path.iter().all(|&(id, pos)| page_len(id) == Some(pos));
    let leftmost = path.iter().all(|&(_, pos)| pos == 0);
    if index + 1 == n && rightmost {
        Edge::Right
    } else if index == 0 && leftmost {
        Edge::Left
    } else {
        Edge::Middle
    }
}

/// A page a child pointer names but the store does not have: the tree is damaged. Other
/// errors (a closed store) pass through.
pub(crate) fn missing_page(id: u64, e: Error) -> Error {
    match e {
        Error::NotFound(_) => {
            Error::corrupt(format!("B+ tree page {id:#x}"), 0, "a child pointer names a node that does not exist")
        }
        other => other,
    }
}

/// A descent's end: the leaf's id, the key's position in it (`Ok` found, `Err` where it
/// would go), and the leaf's page (a leaf: the descent checked it).
pub(super) type Descent<'a> = (u64, std::result::Result<usize, usize>, PageRef<'a>);

/// The internal pages of a descent, root first, each with the child position taken. A
/// tree is at most DEPTH_MAX deep (checked when it is opened), so the path lives on the
/// stack: an insert allocates nothing for it.
pub(crate) struct Path {
    items: [(u64, usize); DEPTH_MAX],
    len: usize,
    /// Every position taken is its page's last child: the path leads to the rightmost leaf.
    rightmost: bool,
    /// The prefix words of the nearest separators left and right of the path (0 and
    /// u64::MAX where there is none): a key whose word lies outside them is not in the leaf's
    /// range. As recorded in the slots (see `hint.rs`, which only rules keys out by them).
    low: u64,
    high: u64,
}

impl Default for Path {
    fn default() -> Path {
        Path { items: [(0, 0); DEPTH_MAX], len: 0, rightmost: true, low: 0, high: u64::MAX }
    }
}

impl Path {
    /// Adds internal page `id` (`page`) and the child position taken in it.
    pub(super) fn push(&mut self, id: u64, pos: usize, page: &PageRef<'_>) {
        // A height over DEPTH_MAX is refused when the tree is opened and never grown to.
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = (id, pos);
            self.len += 1;
            self.rightmost &= pos == page.len();
            if let Some(w) = pos.checked_sub(1).and_then(|s| page.recorded_word(s)) {
                self.low = w;
            }
            if let Some(w) = page.recorded_word(pos) {
                self.high = w;
            }
        }
    }

    /// Empties the path for a new descent.
    pub(super) fn clear(&mut self) {
        (self.len, self.rightmost, self.low, self.high) = (0, true, 0, u64::MAX);
    }

    /// The prefix words bounding the leaf's range (see `low`).
    pub(super) fn word_bounds(&self) -> (u64, u64) {
        (self.low, self.high)
    }

    /// The path leads to the leftmost leaf.
    pub(super) fn leftmost(&self) -> bool {
        self.iter().all(|&(_, pos)| pos == 0)
    }

    /// The path leads to the rightmost leaf.
    pub(super) fn rightmost(&self) -> bool {
        self.rightmost
    }
}

impl std::ops::Deref for Path {
    type Target = [(u64, usize)];
    fn deref(&self) -> &[(u64, usize)] {
        &self.items[..self.len]
    }
}

/// Pages read under one hold of the store's shared lock.
pub(crate) struct PageReader<'r, 'a> {
    pub(super) nodes: &'r crate::store::NodeReader<'a>,
    pub(super) page_bytes: usize,
}

impl<'a> PageReader<'_, 'a> {
    #[inline(always)]
    pub(crate) fn page(&self, id: u64) -> Result<PageRef<'a>> {
        parse_page(self.nodes.node(NodeId::from_raw(id)).map_err(|e| missing_page(id, e))?, id, self.page_bytes)
    }
}

pub(super) fn kind_name(leaf: bool) -> &'static str {
    if leaf {
        "leaf"
    } else {
        "internal"
    }
}

/// Parses a page of a tree whose pages have `page_bytes`: a node of any other length (a
/// damaged child pointer naming some other node) is `Corrupt`.
#[inline(always)]
pub(super) fn parse_page(bytes: &[u8], id: u64, page_bytes: usize) -> Result<PageRef<'_>> {
    if bytes.len() != page_bytes {
        return Err(wrong_page_length(bytes.len(), id, page_bytes));
    }
    PageRef::parse(bytes, id)
}

#[cold]
#[inline(never)]
pub(super) fn wrong_page_length(len: usize, id: u64, page_bytes: usize) -> Error {
    Error::corrupt(format!("B+ tree page {id:#x}"), 0, format!("{len} bytes; the tree's pages have {page_bytes}"))
}

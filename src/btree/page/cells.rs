//! A leaf's cells as the planner measures and cuts them: a page with one cell more, read where
//! its cells lie, or cells gathered in a slice.

use super::*;

/// A leaf's cells with one more, `cell`, at index `at`: what a new key's slow path cuts in
/// two. Its cells are read where they lie, one at a time, and only those a shift needs.
#[derive(Clone, Copy)]
pub(crate) struct LeafWithInsert<'a> {
    pub page: PageRef<'a>,
    pub at: usize,
    pub cell: Cell<'a>,
}

/// A leaf's cells in order, as the planner measures and cuts them: a page with one cell more
/// ([`LeafWithInsert`], read where they lie) or cells gathered in a slice.
pub(crate) trait LeafCells<'a> {
    fn len(&self) -> usize;
    /// Bytes of all the cells, slots included.
    fn bytes(&self) -> usize;
    fn get(&self, j: usize) -> Result<Cell<'a>>;
}

impl<'a> LeafCells<'a> for LeafWithInsert<'a> {
    fn len(&self) -> usize {
        self.page.len() + 1
    }

    /// The page has no holes: it is a leaf.
    fn bytes(&self) -> usize {
        self.page.occupied_bytes() + self.cell.bytes()
    }

    #[inline(always)]
    fn get(&self, j: usize) -> Result<Cell<'a>> {
        match j.cmp(&self.at) {
            std::cmp::Ordering::Less => self.page.leaf_cell(j),
            std::cmp::Ordering::Equal => Ok(self.cell),
            std::cmp::Ordering::Greater => self.page.leaf_cell(j - 1),
        }
    }
}

impl<'a> LeafCells<'a> for [Cell<'a>] {
    fn len(&self) -> usize {
        <[Cell<'a>]>::len(self)
    }

    fn bytes(&self) -> usize {
        self.iter().map(Cell::bytes).sum()
    }

    fn get(&self, j: usize) -> Result<Cell<'a>> {
        Ok(self[j])
    }
}

impl<'a> LeafWithInsert<'a> {
    /// Writes cells `range` as a whole leaf into `out`, reading each cell once. A damaged
    /// cell, or cells that do not fit (a damaged page's lengths), are `Corrupt`, with `out`
    /// partly written (pass a buffer).
    pub fn build(&self, out: &mut [u8], range: std::ops::Range<usize>) -> Result<()> {
        let unfit = || self.page.corrupt(0, "cells that do not fit a page");
        let mut w = PageWriter::new(out, TYPE_LEAF, 0, range.len()).ok_or_else(unfit)?;
        // Last first (see `PageWriter`): the page's cells after the new one, the new one, the
        // page's cells before it.
        let after = range.start.max(self.at + 1);
        for i in (after - 1..range.end.max(after) - 1).rev() {
            w.push_cell(&self.page.leaf_cell(i)?).ok_or_else(unfit)?;
        }
        if range.contains(&self.at) {
            w.push_cell(&self.cell).ok_or_else(unfit)?;
        }
        for i in (range.start..range.end.min(self.at)).rev() {
            w.push_cell(&self.page.leaf_cell(i)?).ok_or_else(unfit)?;
        }
        w.finish();
        Ok(())
    }
}

//! Allocator statistics, with XTree's names. Live and dead bytes come from the bitmaps.

/// Statistics of one size class, or of all of them summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassStats {
    pub class_bytes: u64,
    pub live_bytes: u64,
    /// Free blocks below the high-water marks, times the block size.
    pub dead_bytes: u64,
    pub total_segments: u64,
    /// Segments holding at least one live block.
    pub active_segments: u64,
    pub allocs_from_bump: u64,
    pub allocs_from_bitmap: u64,
    pub frees_to_bitmap: u64,
    pub total_allocations: u64,
    pub total_frees: u64,
}

impl ClassStats {
    /// dead / (live + dead); 0 for an empty class.
    pub fn fragmentation(&self) -> f64 {
        ratio(self.dead_bytes, self.live_bytes + self.dead_bytes)
    }

    /// allocs_from_bitmap / total_frees; 0 before any free.
    pub fn reuse_rate(&self) -> f64 {
        ratio(self.allocs_from_bitmap, self.total_frees)
    }

    /// Adds another class's figures (class_bytes is left as it is: a sum has no block size).
    pub fn accumulate(&mut self, o: &ClassStats) {
        self.live_bytes += o.live_bytes;
        self.dead_bytes += o.dead_bytes;
        self.total_segments += o.total_segments;
        self.active_segments += o.active_segments;
        self.allocs_from_bump += o.allocs_from_bump;
        self.allocs_from_bitmap += o.allocs_from_bitmap;
        self.frees_to_bitmap += o.frees_to_bitmap;
        self.total_allocations += o.total_allocations;
        self.total_frees += o.total_frees;
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

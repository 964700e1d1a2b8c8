//! The hypervisor's memory on the board: page frames, the translation-table hardware
//! layer, the EL2 direct map and the heap. Policies live in the portable crate
//! (`crate::frames`, `heap_window`, `memory_plan`) and the engine (`pgtable`).
//!
//! Lock order, outermost first: heap -> EL2 table -> frames (and stage 2 -> frames).
//! Nothing under the EL2 table or frames locks allocates from the heap.

pub mod el2_map;
pub mod heap;
pub mod hw;
pub mod report;

use crate::frames::FrameAllocator;
use spin::Mutex;

/// Every free frame of the hypervisor's pool (identity-mapped, so PA = VA).
pub static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new());

//! Memory: the pool's frame allocator, the heap window's growth policy, the boot-time
//! layout (who owns which RAM, where the crash region goes) and the TLBI range encoding,
//! portable; on EL2 the translation-table hardware layer, the EL2 direct map, the heap and
//! the ptdump/map-stats reports. The tables themselves are built by the engine
//! (`pgtable`).
//!
//! Lock order, outermost first: heap -> EL2 table -> frames (and stage 2 -> frames).
//! Nothing under the EL2 table or frames locks allocates from the heap.

pub mod frames;
pub mod guest_backing;
pub mod heap_window;
pub mod memory_plan;
pub mod tlbi_range;

#[cfg(target_os = "none")]
pub mod el2_map;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod image;
#[cfg(target_os = "none")]
pub mod report;
#[cfg(target_os = "none")]
pub mod table_hw;

/// Every free frame of the hypervisor's pool (identity-mapped, so PA = VA).
#[cfg(target_os = "none")]
pub static FRAMES: spin::Mutex<frames::FrameAllocator> =
    spin::Mutex::new(frames::FrameAllocator::new());

//! The hypervisor image's layout, from the linker script's symbols (`linker/hypervisor.ld`;
//! head.S relocated them to where the image was loaded). Every symbol is declared here
//! and nowhere else.

use core::ops::Range;

use platform::info::{MAX_CPUS, PhysRange};

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __image_end: u8;
    static __boot_stack_guard: u8;
    static __boot_stack_top: u8;
    static __secondary_stacks: u8;
}

const PAGE: u64 = 4096;
/// One secondary CPU's stack slot (head.S SECONDARY_STACK_STRIDE, the linker script): a
/// guard page, then the stack.
const SECONDARY_STACK_STRIDE: u64 = 0x5000;

/// The address of a linker symbol. Taking the address of an extern static is safe; its
/// contents are never read.
macro_rules! symbol {
    ($name:ident) => {
        core::ptr::addr_of!($name) as u64
    };
}

/// Where the image sits: its whole footprint, bss and stacks included.
pub fn image_range() -> PhysRange {
    let start = symbol!(__image_start);
    PhysRange {
        base: start,
        size: symbol!(__image_end) - start,
    }
}

/// The image's sections, for W^X.
pub struct ImageSections {
    pub text: Range<u64>,
    pub rodata: Range<u64>,
    /// Data, bss and the stacks.
    pub writable: Range<u64>,
}

pub fn image_sections() -> ImageSections {
    let text_end = symbol!(__text_end);
    let rodata_end = symbol!(__rodata_end);
    ImageSections {
        text: symbol!(__image_start)..text_end,
        rodata: text_end..rodata_end,
        writable: rodata_end..symbol!(__image_end),
    }
}

/// The boot CPU's stack top.
pub fn boot_stack_top() -> usize {
    symbol!(__boot_stack_top) as usize
}

/// The guard page under the EL2 stack of each of `cpus` CPUs (the boot CPU's, and each
/// secondary slot's), which the EL2 map leaves unmapped: an overflow then faults (and is
/// reported) instead of overwriting the neighbour's stack or .bss.
pub fn stack_guard_pages(cpus: usize) -> impl Iterator<Item = Range<u64>> {
    let boot = symbol!(__boot_stack_guard);
    let secondary = symbol!(__secondary_stacks);
    let slots = cpus.min(MAX_CPUS) as u64;
    core::iter::once(boot..boot + PAGE).chain((0..slots).map(move |i| {
        let guard = secondary + i * SECONDARY_STACK_STRIDE;
        guard..guard + PAGE
    }))
}

//! The guest's own stage-1 map: an identity map (VA = IPA) in TTBR0_EL1 with the 4 KiB
//! granule and a 48-bit VA (walks start at level 0), built from blocks, and 4 KiB pages
//! only where one page must differ from its 2 MiB:
//! - guest RAM, rounded out to 2 MiB, as Normal write-back (MAIR index 1), inner
//!   shareable, EL1 read/write/execute — the tests write code into RAM and run it, and
//!   Normal memory is what exclusives (the console lock, the counters) need;
//! - each device (the console UART, the GIC's frames) as the 2 MiB blocks around it,
//!   Device-nGnRE (index 0), never executable;
//! - single 4 KiB Device pages ([`Builder::map_page`]: the `isolation_probe=` addresses),
//!   splitting a block that covers one into a table with the block's attributes;
//! - everything else unmapped.
//!
//! A naturally aligned GiB wholly inside a RAM range is one level-1 block; the rest are
//! level-2 blocks. Devices are mapped first and keep their 2 MiB if RAM rounding touches
//! it. Rounding RAM out to 2 MiB can map a little memory that is not the guest's; stage 2
//! keeps the guest out of it (the guest never touches it).
//!
//! Tables come from a caller-provided pool; table `i` lives at `pool_pa + i * 4096`.

use crate::abi::{BLOCK_1G, BLOCK_2M, PAGE_SIZE};
use crate::layout::Range;

pub const ENTRIES: usize = 512;
pub type Table = [u64; ENTRIES];

pub const MAIR_DEVICE_NGNRE: u64 = 0x04;
pub const MAIR_NORMAL_WB: u64 = 0xff;
/// MAIR_EL1: index 0 Device-nGnRE, index 1 Normal inner/outer write-back RW-allocate.
pub const MAIR: u64 = MAIR_DEVICE_NGNRE | (MAIR_NORMAL_WB << 8);

const VALID: u64 = 1 << 0;
const TABLE: u64 = 1 << 1; // at levels 0..2, with VALID
/// At level 3 the same bit makes a page descriptor (0b11); 0b01 there is invalid.
const PAGE: u64 = TABLE;
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;
/// Highest address + 1 a 48-bit VA covers.
pub const VA_LIMIT: u64 = 1 << 48;

pub const NORMAL_BLOCK: u64 = VALID | ATTR_NORMAL | SH_INNER | AF | UXN;
pub const DEVICE_BLOCK: u64 = VALID | ATTR_DEVICE | AF | PXN | UXN;

/// TCR_EL1 for this map: T0SZ = 16 (48-bit VA), walks inner/outer write-back
/// write-allocate, inner shareable, TG0 = 4 KiB; TTBR1 walks disabled (EPD1, TG1 = 4 KiB);
/// IPS from ID_AA64MMFR0_EL1.PARange, at most 48 bits (the descriptors hold 48-bit
/// addresses).
pub fn tcr(pa_range: u64) -> u64 {
    let t0sz = 16;
    let irgn0 = 1 << 8;
    let orgn0 = 1 << 10;
    let sh0 = 3 << 12;
    let tg0_4k = 0 << 14;
    let t1sz = 16 << 16;
    let epd1 = 1 << 23;
    let tg1_4k = 2 << 30;
    let ips = (pa_range & 0xf).min(5) << 32;
    t0sz | irgn0 | orgn0 | sh0 | tg0_4k | t1sz | epd1 | tg1_4k | ips
}

/// One past the highest address the guest can reach through this map: the output
/// address size TCR_EL1.IPS selects for ID_AA64MMFR0_EL1.PARange `pa_range` (at most 48
/// bits, as [`tcr`] clamps it), never more than the VA range.
pub fn output_limit(pa_range: u64) -> u64 {
    let bits = match (pa_range & 0xf).min(5) {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        _ => 48,
    };
    (1u64 << bits).min(VA_LIMIT)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage1Error {
    PoolExhausted,
    AboveVaLimit(u64),
}

impl core::fmt::Display for Stage1Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::PoolExhausted => f.write_str("ran out of page-table pages"),
            Self::AboveVaLimit(a) => write!(f, "address {a:#x} is beyond a 48-bit VA"),
        }
    }
}

pub struct Builder<'t> {
    tables: &'t mut [Table],
    used: usize,
    pool_pa: u64,
}

impl<'t> Builder<'t> {
    /// Zeroes the pool and takes its first table as the level-0 root.
    pub fn new(tables: &'t mut [Table], pool_pa: u64) -> Result<Self, Stage1Error> {
        if tables.is_empty() {
            return Err(Stage1Error::PoolExhausted);
        }
        for t in tables.iter_mut() {
            t.fill(0);
        }
        Ok(Self {
            tables,
            used: 1,
            pool_pa,
        })
    }

    /// TTBR0_EL1: the root table's address.
    pub fn root_pa(&self) -> u64 {
        self.pool_pa
    }

    pub fn tables_used(&self) -> usize {
        self.used
    }

    /// Maps `range` rounded out to 2 MiB with `block_attrs` (one of [`NORMAL_BLOCK`],
    /// [`DEVICE_BLOCK`]); parts already mapped keep their mapping (in a 2 MiB that is a
    /// table of pages, the unmapped pages get `block_attrs`).
    pub fn map(&mut self, range: Range, block_attrs: u64) -> Result<(), Stage1Error> {
        if range.size == 0 {
            return Ok(());
        }
        let start = range.base & !(BLOCK_2M - 1);
        let end = range
            .end()
            .and_then(|e| e.checked_next_multiple_of(BLOCK_2M))
            .filter(|&e| e <= VA_LIMIT)
            .ok_or(Stage1Error::AboveVaLimit(range.end_saturating()))?;
        let mut a = start;
        while a < end {
            let l1 = self.next_table(0, 0, a)?;
            let l1_index = index(a, 1);
            let entry = self.tables[l1][l1_index];
            if a.is_multiple_of(BLOCK_1G) && end - a >= BLOCK_1G && entry == 0 {
                self.tables[l1][l1_index] = a | block_attrs;
                a += BLOCK_1G;
                continue;
            }
            if entry & (VALID | TABLE) == VALID {
                // Already a 1 GiB block: keep it, go to the next GiB.
                a = (a | (BLOCK_1G - 1)) + 1;
                continue;
            }
            let l2 = self.next_table(l1, 1, a)?;
            let slot = self.tables[l2][index(a, 2)];
            if slot == 0 {
                self.tables[l2][index(a, 2)] = a | block_attrs;
            } else if slot & (VALID | TABLE) == VALID | TABLE {
                let l3 = self.table_index(slot);
                for (i, entry) in self.tables[l3].iter_mut().enumerate() {
                    if *entry == 0 {
                        *entry = (a + i as u64 * PAGE_SIZE) | block_attrs | PAGE;
                    }
                }
            }
            a += BLOCK_2M;
        }
        Ok(())
    }

    /// Maps the 4 KiB page holding `address` as one level-3 page with `block_attrs` (one
    /// of [`NORMAL_BLOCK`], [`DEVICE_BLOCK`]), whatever mapped it before: a 1 GiB or
    /// 2 MiB block around it is split into a table of the same mapping first, so the
    /// rest of the block keeps its mapping. The tables are built with the MMU off, so
    /// the split needs no break-before-make.
    pub fn map_page(&mut self, address: u64, block_attrs: u64) -> Result<(), Stage1Error> {
        let page = address & !(PAGE_SIZE - 1);
        if page >= VA_LIMIT {
            return Err(Stage1Error::AboveVaLimit(address));
        }
        let l1 = self.next_table(0, 0, page)?;
        let l2 = self.split_or_next(l1, 1, page)?;
        let l3 = self.split_or_next(l2, 2, page)?;
        self.tables[l3][index(page, 3)] = page | block_attrs | PAGE;
        Ok(())
    }

    /// The table the entry for `va` in table `table` (at level 1 or 2) points to: made
    /// from the block there (the same output and attributes in entries one level down),
    /// or created empty if the entry is empty.
    fn split_or_next(&mut self, table: usize, level: u32, va: u64) -> Result<usize, Stage1Error> {
        let i = index(va, level);
        let entry = self.tables[table][i];
        if entry & (VALID | TABLE) != VALID {
            return self.next_table(table, level, va);
        }
        let new = self.take_table()?;
        let (base, attrs) = (entry & ADDRESS_MASK, entry & !ADDRESS_MASK);
        let (step, leaf) = if level == 1 {
            (BLOCK_2M, 0)
        } else {
            (PAGE_SIZE, PAGE)
        };
        for (n, slot) in self.tables[new].iter_mut().enumerate() {
            *slot = (base + n as u64 * step) | attrs | leaf;
        }
        self.tables[table][i] = (self.pool_pa + new as u64 * 4096) | VALID | TABLE;
        Ok(new)
    }

    fn table_index(&self, entry: u64) -> usize {
        (((entry & ADDRESS_MASK) - self.pool_pa) / 4096) as usize
    }

    /// A zeroed table from the pool.
    fn take_table(&mut self) -> Result<usize, Stage1Error> {
        if self.used >= self.tables.len() {
            return Err(Stage1Error::PoolExhausted);
        }
        self.used += 1;
        Ok(self.used - 1)
    }

    /// The table the entry for `va` in table `table` (at `level`) points to, created if
    /// the entry is empty.
    fn next_table(&mut self, table: usize, level: u32, va: u64) -> Result<usize, Stage1Error> {
        let i = index(va, level);
        let entry = self.tables[table][i];
        if entry & (VALID | TABLE) == VALID | TABLE {
            return Ok(self.table_index(entry));
        }
        let new = self.take_table()?;
        self.tables[table][i] = (self.pool_pa + new as u64 * 4096) | VALID | TABLE;
        Ok(new)
    }
}

fn index(va: u64, level: u32) -> usize {
    ((va >> (39 - 9 * level)) & 0x1ff) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A software walk: (output address, level of the leaf, leaf attributes).
    fn walk(tables: &[Table], pool_pa: u64, va: u64) -> Option<(u64, u32, u64)> {
        let mut t = 0usize;
        for level in 0..=3 {
            let e = tables[t][index(va, level)];
            if e & VALID == 0 {
                return None;
            }
            if level == 3 {
                assert_ne!(e & PAGE, 0, "a level-3 entry that is no page: {e:#x}");
                let out = (e & ADDRESS_MASK) | (va & (PAGE_SIZE - 1));
                return Some((out, 3, e & !ADDRESS_MASK & !PAGE));
            }
            if e & TABLE != 0 {
                t = (((e & ADDRESS_MASK) - pool_pa) / 4096) as usize;
                continue;
            }
            assert!(level == 1 || level == 2, "block at level {level}");
            let size = if level == 1 { BLOCK_1G } else { BLOCK_2M };
            let out = (e & ADDRESS_MASK & !(size - 1)) | (va & (size - 1));
            return Some((out, level, e & !ADDRESS_MASK));
        }
        None
    }

    #[test]
    fn single_pages_split_blocks_and_keep_the_rest() {
        let mut pool = vec![[0u64; ENTRIES]; 16];
        let pool_pa = 0x4030_0000;
        let mut b = Builder::new(&mut pool, pool_pa).unwrap();
        b.map(Range::new(0x0900_0000, 0x1000), DEVICE_BLOCK)
            .unwrap();
        b.map(Range::new(0x4000_0000, 0x8000_0000), NORMAL_BLOCK)
            .unwrap();
        let before = b.tables_used();
        // A page in the UART's 2 MiB block: the block becomes a table of device pages.
        b.map_page(0x0902_0014, DEVICE_BLOCK).unwrap();
        // A page in nothing mapped: new tables down to level 3, and only that page.
        b.map_page(0x80_0000_0000, DEVICE_BLOCK).unwrap();
        // A page in a RAM GiB block: split 1G -> 2M blocks -> 4K pages.
        b.map_page(0x8765_4321, DEVICE_BLOCK).unwrap();
        // One more in an existing level-3 table takes no new table.
        let used = b.tables_used();
        b.map_page(0x0903_0fc0, DEVICE_BLOCK).unwrap();
        assert_eq!(b.tables_used(), used);
        // UART split: 1 L3; far page: L1, L2, L3; RAM GiB: L2, L3.
        assert_eq!(used, before + 6);
        let device = DEVICE_BLOCK & !ADDRESS_MASK;
        assert_eq!(
            walk(b.tables, pool_pa, 0x0902_0014),
            Some((0x0902_0014, 3, device))
        );
        assert_eq!(
            walk(b.tables, pool_pa, 0x0900_0ff8),
            Some((0x0900_0ff8, 3, device))
        );
        assert_eq!(
            walk(b.tables, pool_pa, 0x091f_f000),
            Some((0x091f_f000, 3, device))
        );
        assert_eq!(
            walk(b.tables, pool_pa, 0x80_0000_0ffc),
            Some((0x80_0000_0ffc, 3, device))
        );
        assert!(walk(b.tables, pool_pa, 0x80_0000_1000).is_none());
        assert!(walk(b.tables, pool_pa, 0x7f_ffff_f000).is_none());
        assert_eq!(
            walk(b.tables, pool_pa, 0x8765_4321),
            Some((0x8765_4321, 3, device))
        );
        // The rest of the RAM GiB: 2M blocks, and pages in the split 2M, all Normal.
        assert_eq!(
            walk(b.tables, pool_pa, 0x8765_5000),
            Some((0x8765_5000, 3, NORMAL_BLOCK))
        );
        assert_eq!(
            walk(b.tables, pool_pa, 0x8765_3ff8),
            Some((0x8765_3ff8, 3, NORMAL_BLOCK))
        );
        assert_eq!(
            walk(b.tables, pool_pa, 0x8000_0000),
            Some((0x8000_0000, 2, NORMAL_BLOCK))
        );
        assert_eq!(
            walk(b.tables, pool_pa, 0xbfff_fff8),
            Some((0xbfff_fff8, 2, NORMAL_BLOCK))
        );
        assert_eq!(
            walk(b.tables, pool_pa, 0x4000_0000),
            Some((0x4000_0000, 1, NORMAL_BLOCK))
        );
        // Mapping a range over a 2 MiB of pages fills the empty ones only.
        b.map(Range::new(0x80_0000_0000, 0x1000), NORMAL_BLOCK)
            .unwrap();
        assert_eq!(
            walk(b.tables, pool_pa, 0x80_0000_0000).map(|w| w.2),
            Some(device)
        );
        assert_eq!(
            walk(b.tables, pool_pa, 0x80_001f_f000),
            Some((0x80_001f_f000, 3, NORMAL_BLOCK))
        );
        let mut b = Builder::new(&mut pool[..1], pool_pa).unwrap();
        assert_eq!(
            b.map_page(0x1000, DEVICE_BLOCK),
            Err(Stage1Error::PoolExhausted)
        );
        assert!(matches!(
            b.map_page(VA_LIMIT + 0x10, DEVICE_BLOCK),
            Err(Stage1Error::AboveVaLimit(_))
        ));
    }

    #[test]
    fn qemu_virt_map() {
        let mut pool = vec![[0u64; ENTRIES]; 8];
        let pool_pa = 0x4030_0000;
        let mut b = Builder::new(&mut pool, pool_pa).unwrap();
        b.map(Range::new(0x0900_0000, 0x1000), DEVICE_BLOCK)
            .unwrap();
        b.map(Range::new(0x4000_0000, 0x8000_0000), NORMAL_BLOCK)
            .unwrap();
        assert_eq!(b.root_pa(), pool_pa);
        // L0, one L1, one L2 (for the UART's GiB).
        assert_eq!(b.tables_used(), 3);
        let (out, level, attrs) = walk(&pool, pool_pa, 0x0900_0ff8).unwrap();
        assert_eq!((out, level), (0x0900_0ff8, 2));
        assert_eq!(attrs, DEVICE_BLOCK & !ADDRESS_MASK);
        let (out, level, attrs) = walk(&pool, pool_pa, 0x8765_4321).unwrap();
        assert_eq!((out, level), (0x8765_4321, 1));
        assert_eq!(attrs, NORMAL_BLOCK);
        assert_eq!(attrs & (PXN | UXN), UXN);
        assert!(walk(&pool, pool_pa, 0x0800_0000).is_none());
        assert!(walk(&pool, pool_pa, 0x3fff_ffff).is_none());
        assert!(walk(&pool, pool_pa, 0xc000_0000).is_none());
    }

    #[test]
    fn unaligned_ram_uses_2m_blocks_rounded_out() {
        let mut pool = vec![[0u64; ENTRIES]; 8];
        let pool_pa = 0x1000_0000;
        let mut b = Builder::new(&mut pool, pool_pa).unwrap();
        b.map(Range::new(0x4210_0000, 0x3e00_0000), NORMAL_BLOCK)
            .unwrap();
        b.map(Range::new(0x1_0000_0000, 0x4000_0000), NORMAL_BLOCK)
            .unwrap();
        b.map(Range::new(0x80_0000_0000, 0x20_0000), NORMAL_BLOCK)
            .unwrap();
        assert_eq!(walk(&pool, pool_pa, 0x4200_0000).map(|w| w.1), Some(2));
        assert_eq!(walk(&pool, pool_pa, 0x7fff_fff8).map(|w| w.1), Some(2));
        assert_eq!(walk(&pool, pool_pa, 0x8000_0000).map(|w| w.1), Some(2));
        assert!(walk(&pool, pool_pa, 0x8020_0000).is_none());
        assert!(walk(&pool, pool_pa, 0x41ff_ffff).is_none());
        assert_eq!(walk(&pool, pool_pa, 0x1_2345_6780).map(|w| w.1), Some(1));
        // A second L0 entry (512 GiB and up).
        assert_eq!(
            walk(&pool, pool_pa, 0x80_0000_1000).map(|w| (w.0, w.1)),
            Some((0x80_0000_1000, 2))
        );
    }

    #[test]
    fn devices_keep_their_block() {
        let mut pool = vec![[0u64; ENTRIES]; 4];
        let mut b = Builder::new(&mut pool, 0).unwrap();
        b.map(Range::new(0x4000_0000, 0x1000), DEVICE_BLOCK)
            .unwrap();
        b.map(Range::new(0x4000_0000, 0x4000_0000), NORMAL_BLOCK)
            .unwrap();
        assert_eq!(
            walk(&pool, 0, 0x4000_0000).map(|w| (w.1, w.2)),
            Some((2, DEVICE_BLOCK))
        );
        assert_eq!(
            walk(&pool, 0, 0x4020_0000).map(|w| (w.1, w.2)),
            Some((2, NORMAL_BLOCK))
        );
    }

    #[test]
    fn errors() {
        let mut pool = vec![[0u64; ENTRIES]; 2];
        let mut b = Builder::new(&mut pool, 0).unwrap();
        assert_eq!(
            b.map(Range::new(0x4000_0000, 0x1000), NORMAL_BLOCK),
            Err(Stage1Error::PoolExhausted)
        );
        assert!(matches!(
            b.map(Range::new(VA_LIMIT, 0x1000), NORMAL_BLOCK),
            Err(Stage1Error::AboveVaLimit(_))
        ));
        assert!(matches!(
            b.map(Range::new(u64::MAX - 0xfff, 0x1000), NORMAL_BLOCK),
            Err(Stage1Error::AboveVaLimit(_))
        ));
        assert!(Builder::new(&mut [], 0).is_err());
    }

    #[test]
    fn output_limits() {
        assert_eq!(output_limit(0), 1 << 32);
        assert_eq!(output_limit(2), 1 << 40);
        assert_eq!(output_limit(4), 1 << 44);
        assert_eq!(output_limit(5), VA_LIMIT);
        assert_eq!(output_limit(6), VA_LIMIT);
    }

    #[test]
    fn tcr_fields() {
        let t = tcr(2);
        assert_eq!(t & 0x3f, 16);
        assert_eq!((t >> 32) & 7, 2);
        assert_eq!(tcr(6) >> 32 & 7, 5);
        assert_ne!(t & (1 << 23), 0);
    }
}

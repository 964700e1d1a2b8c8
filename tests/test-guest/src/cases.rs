//! The hostile-argument cases: calls the hypervisor must refuse with a documented status
//! (`hyp-abi`, the hypervisor's ABI crate), built from the guest's memory map.

use crate::abi::*;
use crate::fixed::List;
use crate::layout::{Layout, Range};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Case {
    pub name: &'static str,
    pub function: u32,
    pub args: [u64; 3],
    pub want: i64,
}

pub const MAX_CASES: usize = 40;

/// The cases for this layout, guest RAM (sorted, merged) and console UART.
pub fn hostile_cases(layout: &Layout, ram: &[Range], uart: Option<u64>) -> List<Case, MAX_CASES> {
    let mut cases = List::new();
    let mut add = |name, function, args, want| {
        let _ = cases.push(Case {
            name,
            function,
            args,
            want,
        });
    };
    let p = layout.page;
    let r = PERM_READ;
    let inval = INVALID_PARAMETER;

    add(
        "unaligned ipa",
        MEM_PROTECT,
        [p + 0x800, PAGE_SIZE, r],
        inval,
    );
    add(
        "unaligned ipa by 8",
        MEM_PROTECT,
        [p + 8, PAGE_SIZE, r],
        inval,
    );
    add("unaligned size", MEM_PROTECT, [p, 0x800, r], inval);
    add(
        "size not a page multiple",
        MEM_PROTECT,
        [p, PAGE_SIZE + 8, r],
        inval,
    );
    add("size 0", MEM_PROTECT, [p, 0, r], inval);
    add(
        "ipa + size overflows",
        MEM_PROTECT,
        [!(PAGE_SIZE - 1), 2 * PAGE_SIZE, r],
        inval,
    );
    add(
        "size overflows from a guest page",
        MEM_PROTECT,
        [p, !(PAGE_SIZE - 1), r],
        inval,
    );
    add(
        "permission bit 3",
        MEM_PROTECT,
        [p, PAGE_SIZE, 1 << 3],
        inval,
    );
    add(
        "permission bit 63",
        MEM_PROTECT,
        [p, PAGE_SIZE, (1 << 63) | r],
        inval,
    );
    add(
        "permissions all ones",
        MEM_PROTECT,
        [p, PAGE_SIZE, u64::MAX],
        inval,
    );

    let in_ram = |addr: u64| ram.iter().any(|range| range.contains(addr));
    if let (Some(first), Some(last)) = (ram.first(), ram.last()) {
        if let Some(end) = last
            .end()
            .filter(|&e| e % PAGE_SIZE == 0 && e < u64::MAX - PAGE_SIZE)
        {
            add(
                "just past guest RAM",
                MEM_PROTECT,
                [end, PAGE_SIZE, r],
                DENIED,
            );
            add(
                "straddling the end of guest RAM",
                MEM_PROTECT,
                [end - PAGE_SIZE, 2 * PAGE_SIZE, r],
                DENIED,
            );
        }
        if first.base >= PAGE_SIZE && first.base % PAGE_SIZE == 0 {
            add(
                "just below guest RAM",
                MEM_PROTECT,
                [first.base - PAGE_SIZE, PAGE_SIZE, r],
                DENIED,
            );
            add(
                "straddling the start of guest RAM",
                MEM_PROTECT,
                [first.base - PAGE_SIZE, 2 * PAGE_SIZE, r],
                DENIED,
            );
        }
    }
    // The first hole between guest RAM ranges: memory the hypervisor kept (or no RAM).
    if let Some(hole) = ram
        .windows(2)
        .filter_map(|w| w[0].end())
        .find(|&end| end % PAGE_SIZE == 0)
    {
        add(
            "hole between RAM ranges",
            MEM_PROTECT,
            [hole, PAGE_SIZE, r],
            DENIED,
        );
        add(
            "from RAM into the hole",
            MEM_PROTECT,
            [hole - PAGE_SIZE, 2 * PAGE_SIZE, r],
            DENIED,
        );
    }
    add(
        "the test block plus all the rest of the address space",
        MEM_PROTECT,
        [layout.region.base, (1 << 48) - layout.region.base, r],
        DENIED,
    );
    if let Some(uart) = uart.filter(|&u| !in_ram(u)) {
        add(
            "the console UART",
            MEM_PROTECT,
            [uart & !(PAGE_SIZE - 1), PAGE_SIZE, r],
            DENIED,
        );
    }
    let far = 1u64 << 47;
    if !in_ram(far) {
        add(
            "far above RAM (1 << 47)",
            MEM_PROTECT,
            [far, PAGE_SIZE, r],
            DENIED,
        );
    }

    add("FEATURES x1 != 0", FEATURES, [1, 0, 0], inval);
    add("FEATURES x2 != 0", FEATURES, [0, 1, 0], inval);
    add("FEATURES x3 != 0", FEATURES, [0, 0, 1 << 63], inval);
    add("MEM_QUERY x2 != 0", MEM_QUERY, [p, 1, 0], inval);
    add("MEM_QUERY x3 != 0", MEM_QUERY, [p, 0, 1], inval);
    add("STATS x2 != 0", STATS, [STATS_SPLITS, 1, 0], inval);
    add("STATS x3 != 0", STATS, [STATS_SPLITS, 0, 1], inval);
    add("STATS unknown group", STATS, [STATS_GROUPS, 0, 0], inval);
    add("STATS group u64::MAX", STATS, [u64::MAX, 0, 0], inval);

    add(
        "unknown function 0x04",
        0xc600_0004,
        [p, PAGE_SIZE, r],
        NOT_SUPPORTED,
    );
    add("unknown function 0x3f", 0xc600_003f, [0; 3], NOT_SUPPORTED);
    add(
        "unknown function 0xfe00",
        0xc600_fe00,
        [0; 3],
        NOT_SUPPORTED,
    );
    add(
        "MEM_PROTECT's number as a 32-bit call",
        0x8600_0001,
        [p, PAGE_SIZE, r],
        NOT_SUPPORTED,
    );
    cases
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::choose;

    #[test]
    fn cases_for_two_banks() {
        let ram = [
            Range::new(0x4200_0000, 0x3e00_0000),
            Range::new(0x1_0000_0000, 0x4000_0000),
        ];
        let layout = choose(&ram, &[]).unwrap();
        let cases = hostile_cases(&layout, &ram, Some(0x0900_0000));
        assert!(cases.len() < MAX_CASES, "room left: {}", cases.len());
        let find = |name: &str| cases.iter().find(|c| c.name == name).unwrap();
        assert_eq!(find("just below guest RAM").args[0], 0x41ff_f000);
        assert_eq!(find("hole between RAM ranges").args[0], 0x8000_0000);
        assert_eq!(find("just past guest RAM").args[0], 0x1_4000_0000);
        assert_eq!(find("the console UART").args[0], 0x0900_0000);
        for c in cases.iter() {
            if c.function == MEM_PROTECT && c.want == DENIED {
                // Well-formed arguments: only ownership should refuse them.
                let [ipa, size, perms] = c.args;
                assert_eq!(ipa % PAGE_SIZE, 0, "{}", c.name);
                assert_eq!(size % PAGE_SIZE, 0, "{}", c.name);
                assert!(size > 0 && ipa.checked_add(size).is_some(), "{}", c.name);
                assert_eq!(perms & !PERM_ALL, 0, "{}", c.name);
                // And not wholly inside guest RAM.
                assert!(
                    !ram.iter().any(|r| r.contains_range(&Range::new(ipa, size))),
                    "{}",
                    c.name
                );
            }
        }
    }

    #[test]
    fn ram_at_zero_has_no_below_case() {
        let ram = [Range::new(0, 0x4000_0000)];
        let layout = choose(&ram, &[]).unwrap();
        let cases = hostile_cases(&layout, &ram, None);
        assert!(cases.iter().all(|c| !c.name.contains("below")));
        assert!(cases.iter().all(|c| !c.name.contains("hole")));
    }
}

//! The plan of `vgic_more_pending_than_list_registers_all_arrive_in_priority_order` and
//! the check of what arrived: all 16 SGIs pending at once, each at its own priority, so
//! the hypervisor must queue 12 of them beyond QEMU's 4 list registers.
//!
//! The priorities are 0x00, 0x08, ..., 0x78: distinct in the top 5 bits, the bits a list
//! register keeps with 5 priority bits (ICH_VTR_EL2.PRIbits = 4). They are handed out by
//! a permutation of the INTIDs, so neither INTID order nor its reverse is priority order:
//! an implementation that delivers by INTID or by arrival fails.

use crate::fixed::Text;
use crate::gicv3::SGIS;
use crate::text;

/// Step between two priorities: the lowest of the 5 bits a list register keeps.
pub const PRIORITY_STEP: u8 = 0x08;

/// SGI `intid`'s priority: (5 × intid + 3) mod 16 steps (5 is odd, so every SGI gets
/// its own slot).
pub fn priority(intid: u32) -> u8 {
    ((5 * intid + 3) % SGIS) as u8 * PRIORITY_STEP
}

/// The INTIDs in the order they must arrive: highest priority (lowest value) first.
pub fn expected_order() -> [u32; SGIS as usize] {
    let mut order = [0; SGIS as usize];
    for intid in 0..SGIS {
        order[usize::from(priority(intid) / PRIORITY_STEP)] = intid;
    }
    order
}

/// Checks the INTIDs acknowledged, in order: each SGI exactly once, nothing else, in
/// priority order. The failure names the first thing wrong.
pub fn check(received: &[u32]) -> Result<(), Text> {
    let mut seen = [false; SGIS as usize];
    for (position, &intid) in received.iter().enumerate() {
        let Some(slot) = seen.get_mut(intid as usize) else {
            return Err(text!(
                "acknowledgement {position} was INTID {intid}, not an SGI"
            ));
        };
        if *slot {
            return Err(text!("SGI {intid} arrived twice (again at {position})"));
        }
        *slot = true;
    }
    if let Some(missing) = (0..SGIS).find(|&intid| !seen[intid as usize]) {
        return Err(text!(
            "{} of {SGIS} SGIs arrived; SGI {missing} (priority {:#x}) was lost",
            received.len(),
            priority(missing)
        ));
    }
    for (position, pair) in received.windows(2).enumerate() {
        let (first, second) = (pair[0], pair[1]);
        if priority(first) > priority(second) {
            return Err(text!(
                "out of priority order at {}: SGI {second} (priority {:#x}) came after SGI {first} ({:#x})",
                position + 1,
                priority(second),
                priority(first)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_distinct_in_the_top_five_bits_and_not_intid_order() {
        let mut top_bits: Vec<u8> = (0..SGIS).map(|i| priority(i) >> 3).collect();
        top_bits.sort_unstable();
        assert_eq!(top_bits, (0..16).collect::<Vec<u8>>());
        let order = expected_order();
        let ascending: Vec<u32> = (0..SGIS).collect();
        assert_ne!(order.to_vec(), ascending);
        assert_ne!(order.iter().rev().copied().collect::<Vec<_>>(), ascending);
        assert_eq!(priority(order[0]), 0);
        assert_eq!(priority(order[15]), 0x78);
    }

    #[test]
    fn the_right_sequence_passes() {
        assert_eq!(check(&expected_order()), Ok(()));
    }

    #[test]
    fn every_kind_of_wrong_sequence_fails() {
        let good = expected_order();
        let mut swapped = good;
        swapped.swap(6, 7);
        assert!(
            check(&swapped)
                .unwrap_err()
                .as_str()
                .contains("out of priority order at 7")
        );
        assert!(
            check(&good[..12])
                .unwrap_err()
                .as_str()
                .contains("12 of 16")
        );
        let mut twice = good.to_vec();
        twice.push(good[3]);
        assert!(check(&twice).unwrap_err().as_str().contains("twice"));
        let mut stranger = good.to_vec();
        stranger[0] = 27;
        assert!(
            check(&stranger)
                .unwrap_err()
                .as_str()
                .contains("not an SGI")
        );
        let by_intid: Vec<u32> = (0..SGIS).collect();
        assert!(check(&by_intid).is_err());
    }
}

//! Whatever the guest (or a confused caller) does, nothing panics, nothing outside the
//! guest's own interrupts changes, and nothing grows.

use super::*;
use crate::vm::mmio::AccessSize::{Byte, Double, Half};
use crate::vm::vgic::effects::HARDWARE_EFFECT_CAPACITY;

const SIZES: [AccessSize; 4] = [Byte, Half, Word, Double];
const VALUES: [u64; 3] = [0, u64::MAX, 0x5a5a_a5a5_0f0f_f0f0];

/// Every distributor offset at every width and a few values: an answer, never a panic;
/// errors change nothing.
#[test]
fn every_distributor_offset_and_width_is_answered() {
    let mut vgic = standard(2, 2);
    enable_groups(&mut vgic);
    for offset in 0..DISTRIBUTOR_FRAME_SIZE + 16 {
        for size in SIZES {
            let read = vgic.distributor_read(offset, size);
            for value in VALUES {
                let before = read.is_err().then(|| vgic.clone());
                let mut effects = Effects::new();
                let written = vgic.distributor_write(offset, size, value, &mut effects);
                assert_eq!(written.is_err(), read.is_err(), "{offset:#x} {size:?}");
                assert!(!effects.overflowed());
                if let Some(before) = before {
                    assert!(vgic == before, "a refused access changed the vGIC");
                    assert!(effects.is_empty());
                }
            }
        }
    }
}

/// The same over two redistributor frames and past them, for real and absent vCPUs.
#[test]
fn every_redistributor_offset_and_width_is_answered() {
    let mut vgic = standard(2, 2);
    for vcpu in [0, 1, 2, usize::MAX] {
        for offset in 0..REDISTRIBUTOR_FRAME_SIZE + 16 {
            for size in SIZES {
                let read = vgic.redistributor_read(vcpu, offset, size);
                let before = read.is_err().then(|| vgic.clone());
                let mut effects = Effects::new();
                let written = vgic.redistributor_write(vcpu, offset, size, u64::MAX, &mut effects);
                assert_eq!(
                    written.is_err(),
                    read.is_err(),
                    "{vcpu} {offset:#x} {size:?}"
                );
                assert!(!effects.overflowed());
                if let Some(before) = before {
                    assert!(vgic == before, "a refused access changed the vGIC");
                    assert!(effects.is_empty());
                }
            }
        }
    }
}

/// Writes aimed at SPIs the guest does not own, through every per-INTID register, leave
/// the vGIC as it was (but for the counter).
#[test]
fn writes_to_unowned_spis_change_nothing() {
    let mut vgic = standard(2, 4);
    enable_groups(&mut vgic);
    let mut reference = vgic.clone();
    let owned = [UART_SPI, SPARE_SPI, DEVICE_SPI, OTHER_DEVICE_SPI];
    let unowned = (32..1020).filter(|intid| !owned.contains(intid));
    for intid in unowned {
        let bases = [
            GICD_IGROUPR,
            GICD_ISENABLER,
            GICD_ICENABLER,
            GICD_ISPENDR,
            GICD_ICPENDR,
            GICD_ISACTIVER,
            GICD_ICACTIVER,
        ];
        for base in bases {
            let (offset, bit) = bit_of(base, intid);
            // IGROUPR takes every bit: keep the owned SPIs' groups as they are.
            let keep = if base == GICD_IGROUPR {
                dist_read(&mut vgic, offset)
            } else {
                0
            };
            let mut effects = Effects::new();
            vgic.distributor_write(offset, Word, bit | keep, &mut effects)
                .unwrap();
            assert!(effects.is_empty());
        }
        let mut effects = Effects::new();
        let priority = GICD_IPRIORITYR + u64::from(intid);
        vgic.distributor_write(priority, Byte, 0x80, &mut effects)
            .unwrap();
        let config = GICD_ICFGR + 4 * u64::from(intid / 16);
        let edge = 2u64 << (2 * (intid % 16));
        vgic.distributor_write(config, Word, edge, &mut effects)
            .unwrap();
        let router = GICD_IROUTER + 8 * u64::from(intid);
        vgic.distributor_write(router, Double, mpidr(1), &mut effects)
            .unwrap();
        vgic.set_line_level(intid, true, &mut effects);
        if ![DEVICE_PHYSICAL, OTHER_DEVICE_PHYSICAL].contains(&intid) {
            assert!(vgic.hardware_fired(0, intid, &mut effects).is_err());
        }
        assert!(effects.is_empty());
    }
    // Only the counters moved.
    let stats = vgic.stats();
    assert!(stats.refused_foreign_writes > 0);
    assert_eq!(stats.refused_line_levels, 1020 - 32 - 4);
    assert_eq!(stats.unlinked_fires, 1020 - 32 - 4 - 2);
    reference.stats = stats;
    assert!(
        vgic == reference,
        "a write to an unowned SPI changed the vGIC"
    );
}

#[test]
fn calls_naming_absent_vcpus_or_interrupts_are_ignored() {
    let mut vgic = standard(2, 4);
    let before = vgic.clone();
    let mut effects = Effects::new();
    let mut lrs = [u64::MAX; 16];
    vgic.fold_list_registers(2, &lrs);
    assert_eq!(
        vgic.flush_list_registers(5, &mut lrs),
        FlushOutcome::default()
    );
    assert_eq!(lrs, [u64::MAX; 16]);
    assert!(!vgic.has_queued(2));
    assert_eq!(
        vgic.generate_sgi(9, u64::MAX, SgiRegister::Group1, &mut effects),
        SgiDelivery::default()
    );
    vgic.vcpu_came_online(7, &mut effects);
    assert!(vgic.hardware_fired(3, TIMER_PPI, &mut effects).is_err());
    assert!(
        vgic.hardware_fired(0, 16, &mut effects).is_err(),
        "not linked"
    );
    assert!(vgic.hardware_fired(0, u32::MAX, &mut effects).is_err());
    vgic.set_line_level(DEVICE_SPI, true, &mut effects);
    vgic.set_line_level(u32::MAX, true, &mut effects);
    assert!(effects.is_empty());
    let mut expected = before;
    expected.stats = vgic.stats();
    assert!(vgic == expected, "an ignored call changed the vGIC");
    assert_eq!(vgic.stats().bad_vcpu_calls, 4);
}

/// Folding garbage (values the last flush did not write) loses nothing: the vGIC keeps
/// its own view and delivers what it had.
#[test]
fn folding_garbage_loses_nothing() {
    let mut vgic = standard(1, 4);
    enable_groups(&mut vgic);
    set_bit(&mut vgic, 0, GICD_ISENABLER, 3);
    set_bit(&mut vgic, 0, GICD_ISPENDR, 3);
    let mut cpu = CpuInterface::new(4);
    cpu.run(&mut vgic, 0);
    assert_eq!(cpu.state_of(3), Some(LrState::Pending));
    vgic.fold_list_registers(0, &[u64::MAX, 0, 0x1234, 7]);
    assert!(vgic.stats().fold_mismatches >= 1);
    assert_eq!(cpu.drain(&mut vgic, 0), [3]);
}

/// Every SGI register value from every vCPU: no panic, and the counts add up.
#[test]
fn any_sgi_value_is_decoded_safely() {
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&(proptest::num::u64::ANY, 0usize..4), |(value, from)| {
            let mut vgic = standard(3, 4);
            let mut effects = Effects::new();
            let delivery = vgic.generate_sgi(from, value, SgiRegister::Group1, &mut effects);
            let targets = if from >= 3 {
                0
            } else if value & (1 << 40) != 0 {
                2
            } else {
                (value & 0xffff).count_ones() as usize
            };
            proptest::prop_assert_eq!(delivery.delivered + delivery.dropped, targets);
            proptest::prop_assert!(effects.kicks().iter().all(|vcpu| vcpu < 3));
            Ok(())
        })
        .unwrap();
}

#[test]
fn effects_of_one_call_always_fit() {
    // 32 hardware-linked SPIs in one ICPENDR word: the largest single-call output.
    let mut config = standard_config(1, 4);
    config.spis = (64..96)
        .map(|intid| SpiAssignment {
            intid,
            source: SpiSource::Hardware {
                physical_intid: intid + 100,
            },
        })
        .collect();
    let mut vgic = Vgic::new(config).unwrap();
    dist_write(&mut vgic, GICD_ISPENDR + 8, u64::from(u32::MAX));
    let effects = dist_write(&mut vgic, GICD_ICPENDR + 8, u64::from(u32::MAX));
    assert_eq!(effects.iter().count(), 64);
    assert!(64 <= HARDWARE_EFFECT_CAPACITY && !effects.overflowed());
}

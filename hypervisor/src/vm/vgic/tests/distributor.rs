//! The distributor's registers, one at a time (IHI 0069 §12.9).

use super::*;
use crate::vm::mmio::AccessSize::{Byte, Double, Half};

fn effects_of(effects: &Effects) -> Vec<Effect> {
    effects.iter().collect()
}

#[test]
fn ctlr_has_ds_and_are_fixed_and_two_group_enables() {
    let mut vgic = standard(2, 4);
    assert_eq!(dist_read(&mut vgic, GICD_CTLR), 0x50);
    dist_write(&mut vgic, GICD_CTLR, u64::from(u32::MAX));
    assert_eq!(dist_read(&mut vgic, GICD_CTLR), 0x53);
    dist_write(&mut vgic, GICD_CTLR, 0b10);
    assert_eq!(dist_read(&mut vgic, GICD_CTLR), 0x52);
    dist_write(&mut vgic, GICD_CTLR, 0);
    assert_eq!(dist_read(&mut vgic, GICD_CTLR), 0x50);
}

#[test]
fn typer_describes_the_owned_spis_and_no_lpis() {
    let mut vgic = standard(2, 4);
    // SPIs up to 41: ITLinesNumber 1 (INTIDs up to 63); IDbits 15; A3V; RSS.
    let expected = 1 | (15 << 19) | (1 << 24) | (1 << 26);
    assert_eq!(dist_read(&mut vgic, 0x0004), expected);

    let mut config = standard_config(1, 4);
    config.spis = std::vec![SpiAssignment {
        intid: 1019,
        source: SpiSource::Emulated
    }];
    let mut high = Vgic::new(config.clone()).unwrap();
    assert_eq!(dist_read(&mut high, 0x0004) & 0x1f, 31);
    config.spis.clear();
    let mut none = Vgic::new(config).unwrap();
    assert_eq!(dist_read(&mut none, 0x0004) & 0x1f, 0);
}

#[test]
fn identification_and_status_registers() {
    let mut vgic = standard(1, 4);
    assert_eq!(dist_read(&mut vgic, 0x0008), 0x4800_0000);
    assert_eq!(dist_read(&mut vgic, 0x000c), 0, "TYPER2");
    dist_write(&mut vgic, 0x0010, 0xffff_ffff);
    assert_eq!(dist_read(&mut vgic, 0x0010), 0, "STATUSR");
    assert_eq!(dist_read(&mut vgic, 0xffe8), 0x30, "PIDR2.ArchRev = 3");
    let cidr: Vec<u64> = (0..4)
        .map(|i| dist_read(&mut vgic, 0xfff0 + 4 * i))
        .collect();
    assert_eq!(cidr, [0x0d, 0xf0, 0x05, 0xb1]);
    dist_write(&mut vgic, 0xffe8, 0);
    assert_eq!(dist_read(&mut vgic, 0xffe8), 0x30);
}

#[test]
fn set_and_clear_enable_act_on_owned_spis_only() {
    let mut vgic = standard(2, 4);
    let (offset, _) = bit_of(GICD_ISENABLER, UART_SPI);
    dist_write(&mut vgic, offset, u64::from(u32::MAX));
    // Owned: 33, 34, 40, 41.
    assert_eq!(dist_read(&mut vgic, offset), 0x306);
    assert_eq!(
        dist_read(&mut vgic, offset + 0x80),
        0x306,
        "ICENABLER reads the same"
    );
    assert_eq!(vgic.stats().refused_foreign_writes, 1);
    dist_write(&mut vgic, offset + 0x80, 1 << 1);
    assert_eq!(dist_read(&mut vgic, offset), 0x304);
    // INTIDs 0..32 are the redistributors' business.
    dist_write(&mut vgic, GICD_ISENABLER, u64::from(u32::MAX));
    assert_eq!(dist_read(&mut vgic, GICD_ISENABLER), 0);
    assert_eq!(redist_read(&mut vgic, 0, SGI_BASE + GICD_ISENABLER), 0);
}

#[test]
fn enabling_a_hardware_spi_is_mirrored() {
    let mut vgic = standard(2, 4);
    let effects = set_bit(&mut vgic, 0, GICD_ISENABLER, DEVICE_SPI);
    assert_eq!(
        effects_of(&effects),
        [Effect::HardwareEnable {
            physical_intid: DEVICE_PHYSICAL,
            vcpu: 0,
            enabled: true
        }]
    );
    let effects = set_bit(&mut vgic, 0, GICD_ICENABLER, DEVICE_SPI);
    assert!(effects.iter().any(|e| e
        == Effect::HardwareEnable {
            physical_intid: DEVICE_PHYSICAL,
            vcpu: 0,
            enabled: false
        }));
}

#[test]
fn pending_and_active_bits_read_back() {
    let mut vgic = standard(1, 4);
    let (pend, bit) = bit_of(GICD_ISPENDR, SPARE_SPI);
    set_bit(&mut vgic, 0, GICD_ISPENDR, SPARE_SPI);
    assert_eq!(dist_read(&mut vgic, pend), bit);
    assert_eq!(dist_read(&mut vgic, pend + 0x80), bit);
    set_bit(&mut vgic, 0, GICD_ICPENDR, SPARE_SPI);
    assert_eq!(dist_read(&mut vgic, pend), 0);
    let (active, _) = bit_of(GICD_ISACTIVER, SPARE_SPI);
    set_bit(&mut vgic, 0, GICD_ISACTIVER, SPARE_SPI);
    assert_eq!(dist_read(&mut vgic, active), bit);
    set_bit(&mut vgic, 0, GICD_ICACTIVER, SPARE_SPI);
    assert_eq!(dist_read(&mut vgic, active), 0);
}

#[test]
fn a_level_spi_is_pending_while_its_line_is_high() {
    let mut vgic = standard(1, 4);
    let (pend, bit) = bit_of(GICD_ISPENDR, UART_SPI);
    let mut effects = Effects::new();
    vgic.set_line_level(UART_SPI, true, &mut effects);
    assert_eq!(dist_read(&mut vgic, pend), bit);
    vgic.set_line_level(UART_SPI, false, &mut effects);
    assert_eq!(dist_read(&mut vgic, pend), 0);
    // ICPENDR does not lower a line: the interrupt stays pending.
    vgic.set_line_level(UART_SPI, true, &mut effects);
    set_bit(&mut vgic, 0, GICD_ICPENDR, UART_SPI);
    assert_eq!(dist_read(&mut vgic, pend), bit);
}

#[test]
fn groups_reset_to_group_1_and_are_writable() {
    let mut vgic = standard(1, 4);
    let (offset, _) = bit_of(GICD_IGROUPR, UART_SPI);
    assert_eq!(dist_read(&mut vgic, offset), 0x306);
    dist_write(&mut vgic, offset, 0x100);
    assert_eq!(dist_read(&mut vgic, offset), 0x100);
    assert_eq!(dist_read(&mut vgic, GICD_IGROUPR), 0, "SGIs and PPIs: RAZ");
}

#[test]
fn priorities_take_bytes_and_words() {
    let mut vgic = standard(1, 4);
    vgic.distributor_write(GICD_IPRIORITYR + 33, Byte, 0xa7, &mut Effects::new())
        .unwrap();
    assert_eq!(vgic.distributor_read(GICD_IPRIORITYR + 33, Byte), Ok(0xa7));
    // INTIDs 32..36: 32 and 35 are not the guest's.
    dist_write(&mut vgic, GICD_IPRIORITYR + 32, 0x4433_2211);
    assert_eq!(dist_read(&mut vgic, GICD_IPRIORITYR + 32), 0x0033_2200);
    assert_eq!(vgic.stats().refused_foreign_writes, 1);
    dist_write(&mut vgic, GICD_IPRIORITYR, 0xffff_ffff);
    assert_eq!(
        dist_read(&mut vgic, GICD_IPRIORITYR),
        0,
        "SGI priorities: RAZ/WI"
    );
    assert_eq!(
        vgic.stats().refused_foreign_writes,
        1,
        "not counted as foreign"
    );
}

#[test]
fn config_sets_the_trigger_and_is_mirrored_for_hardware() {
    let mut vgic = standard(1, 4);
    let offset = GICD_ICFGR + 8; // INTIDs 32..48
    assert_eq!(
        dist_read(&mut vgic, offset),
        0,
        "SPIs reset level-sensitive"
    );
    // Edge for 33 (field 1) and 40 (field 8).
    let value = (1 << 3) | (1 << 17);
    let effects = dist_write(&mut vgic, offset, value);
    assert_eq!(dist_read(&mut vgic, offset), value);
    assert_eq!(
        effects_of(&effects),
        [Effect::HardwareTrigger {
            physical_intid: DEVICE_PHYSICAL,
            edge: true
        }]
    );
    // Rewriting the same value changes nothing, so mirrors nothing.
    assert!(dist_write(&mut vgic, offset, value).is_empty());
    assert_eq!(dist_read(&mut vgic, GICD_ICFGR + 4), 0, "PPIs: RAZ/WI here");
}

#[test]
fn irouter_routes_by_affinity_in_64_or_32_bits() {
    let mut vgic = standard(3, 4);
    let router = GICD_IROUTER + 8 * u64::from(DEVICE_SPI);
    assert_eq!(vgic.distributor_read(router, Double), Ok(mpidr(0)));
    let mut effects = Effects::new();
    vgic.distributor_write(
        router,
        Double,
        mpidr(2) | 0xff00_0000_0000_0000,
        &mut effects,
    )
    .unwrap();
    assert_eq!(
        vgic.distributor_read(router, Double),
        Ok(mpidr(2)),
        "RES0 dropped"
    );
    assert_eq!(
        effects_of(&effects),
        [Effect::HardwareRoute {
            physical_intid: DEVICE_PHYSICAL,
            vcpu: 2
        }]
    );
    dist_write(&mut vgic, router, mpidr(1));
    assert_eq!(vgic.distributor_read(router, Double), Ok(mpidr(1)));
    dist_write(&mut vgic, router + 4, 0x12);
    assert_eq!(dist_read(&mut vgic, router + 4), 0x12);
    assert_eq!(dist_read(&mut vgic, router), mpidr(1));
    // Interrupt_Routing_Mode 1: vCPU 0 takes it.
    let effects = dist_write(&mut vgic, router + 4, 0);
    assert_eq!(effects_of(&effects).len(), 1);
    let effects = dist_write(&mut vgic, router, 1 << 31);
    assert_eq!(dist_read(&mut vgic, router), 1 << 31);
    assert_eq!(
        effects_of(&effects),
        [Effect::HardwareRoute {
            physical_intid: DEVICE_PHYSICAL,
            vcpu: 0
        }]
    );
}

#[test]
fn unowned_and_private_routers_are_raz_wi() {
    let mut vgic = standard(2, 4);
    let foreign = GICD_IROUTER + 8 * 35;
    let mut effects = Effects::new();
    vgic.distributor_write(foreign, Double, mpidr(1), &mut effects)
        .unwrap();
    assert_eq!(vgic.distributor_read(foreign, Double), Ok(0));
    assert_eq!(vgic.stats().refused_foreign_writes, 1);
    vgic.distributor_write(GICD_IROUTER + 8 * 27, Double, 1, &mut effects)
        .unwrap();
    assert_eq!(vgic.distributor_read(GICD_IROUTER + 8 * 27, Double), Ok(0));
    assert!(effects.is_empty());
}

#[test]
fn legacy_and_secure_only_registers_are_raz_wi() {
    let mut vgic = standard(2, 4);
    for offset in [
        0x0040, 0x0048, 0x0050, 0x0058, 0x0d04, 0x0e08, 0x0f00, 0x0f10, 0x0f2c,
    ] {
        dist_write(&mut vgic, offset, u64::from(u32::MAX));
        assert_eq!(dist_read(&mut vgic, offset), 0, "offset {offset:#x}");
    }
    vgic.distributor_write(0x0821, Byte, 0xff, &mut Effects::new())
        .unwrap();
    assert_eq!(vgic.distributor_read(0x0821, Byte), Ok(0), "ITARGETSR");
    assert_eq!(vgic.distributor_read(0x0f21, Byte), Ok(0), "SPENDSGIR");
}

#[test]
fn wrong_widths_and_alignments_are_refused() {
    let mut vgic = standard(1, 4);
    let before = vgic.clone();
    let cases = [
        (GICD_CTLR, Byte, RegisterError::Size),
        (GICD_CTLR, Half, RegisterError::Size),
        (GICD_CTLR, Double, RegisterError::Size),
        (GICD_ISENABLER + 8, Double, RegisterError::Size),
        (GICD_ISENABLER + 5, Byte, RegisterError::Size),
        (GICD_IPRIORITYR + 34, Half, RegisterError::Size),
        (GICD_ICFGR + 8, Byte, RegisterError::Size),
        (GICD_IROUTER + 8 * 40, Byte, RegisterError::Size),
        (GICD_IROUTER + 8 * 40 + 4, Double, RegisterError::Unaligned),
        (
            GICD_ISENABLER + 6,
            AccessSize::Word,
            RegisterError::Unaligned,
        ),
        (0xffe8, Double, RegisterError::Size),
        (0x1_0000, Byte, RegisterError::OutsideFrame),
    ];
    for (offset, size, error) in cases {
        assert_eq!(
            vgic.distributor_read(offset, size),
            Err(error),
            "read {offset:#x}"
        );
        let mut effects = Effects::new();
        let written = vgic.distributor_write(offset, size, u64::MAX, &mut effects);
        assert_eq!(written, Err(error), "write {offset:#x}");
        assert!(effects.is_empty());
    }
    assert!(vgic == before, "a refused access changed the vGIC");
}

#[test]
fn reserved_offsets_are_raz_wi_at_any_width() {
    let mut vgic = standard(1, 4);
    for (offset, size) in [
        (0x0014, Half),
        (0x0018, Double),
        (0x0f80, Byte),
        (0x8000, Double),
    ] {
        let mut effects = Effects::new();
        vgic.distributor_write(offset, size, u64::MAX, &mut effects)
            .unwrap();
        assert_eq!(vgic.distributor_read(offset, size), Ok(0));
    }
}

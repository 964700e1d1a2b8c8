//! Each vCPU's redistributor (IHI 0069 §12.11).

use super::*;
use crate::vm::mmio::AccessSize::{Byte, Double, Half};

#[test]
fn typer_names_the_vcpu_and_marks_the_last() {
    let mut config = standard_config(3, 4);
    config.vcpu_mpidrs[2] = 0x7f_0012_3456;
    let mut vgic = Vgic::new(config).unwrap();
    assert_eq!(
        vgic.redistributor_read(0, 0x8, Double),
        Ok(0x0000_0100_0000_0000)
    );
    assert_eq!(
        vgic.redistributor_read(1, 0x8, Double),
        Ok(0x0000_0101_0000_0100)
    );
    // Aff3.Aff2.Aff1.Aff0 = 0x7f.0x12.0x34.0x56; Processor_Number 2; Last.
    let last = 0x7f12_3456_0000_0210;
    assert_eq!(vgic.redistributor_read(2, 0x8, Double), Ok(last));
    assert_eq!(
        vgic.redistributor_read(2, 0x8, Word),
        Ok(last & 0xffff_ffff)
    );
    assert_eq!(vgic.redistributor_read(2, 0xc, Word), Ok(last >> 32));
    vgic.redistributor_write(2, 0x8, Double, 0, &mut Effects::new())
        .unwrap();
    assert_eq!(vgic.redistributor_read(2, 0x8, Double), Ok(last));
}

#[test]
fn ctlr_iidr_statusr_and_id_registers() {
    let mut vgic = standard(1, 4);
    redist_write(&mut vgic, 0, 0x0, u64::from(u32::MAX));
    assert_eq!(
        redist_read(&mut vgic, 0, 0x0),
        0,
        "EnableLPIs cannot be set"
    );
    assert_eq!(redist_read(&mut vgic, 0, 0x4), 0x4800_0000);
    redist_write(&mut vgic, 0, 0x10, u64::from(u32::MAX));
    assert_eq!(redist_read(&mut vgic, 0, 0x10), 0);
    assert_eq!(redist_read(&mut vgic, 0, 0xffe8), 0x30);
}

#[test]
fn waker_sleeps_at_reset_and_children_follow() {
    let mut vgic = standard(2, 4);
    assert_eq!(redist_read(&mut vgic, 1, 0x14), 0b110);
    redist_write(&mut vgic, 1, 0x14, 0);
    assert_eq!(redist_read(&mut vgic, 1, 0x14), 0);
    assert_eq!(redist_read(&mut vgic, 0, 0x14), 0b110, "per vCPU");
    redist_write(&mut vgic, 1, 0x14, 0b010);
    assert_eq!(redist_read(&mut vgic, 1, 0x14), 0b110);
}

#[test]
fn lpi_registers_are_refused_and_counted() {
    let mut vgic = standard(1, 4);
    let mut effects = Effects::new();
    for offset in [0x40, 0x48, 0x70, 0x78, 0xa0, 0xb0] {
        vgic.redistributor_write(0, offset, Double, 0x8000_0000, &mut effects)
            .unwrap();
        assert_eq!(vgic.redistributor_read(0, offset, Double), Ok(0));
        assert_eq!(vgic.redistributor_read(0, offset + 4, Word), Ok(0));
    }
    assert_eq!(redist_read(&mut vgic, 0, 0xc0), 0, "SYNCR");
    assert_eq!(vgic.stats().refused_lpi_accesses, 19);
    assert!(effects.is_empty());
}

#[test]
fn private_interrupts_are_per_vcpu() {
    let mut vgic = standard(2, 4);
    redist_write(&mut vgic, 1, SGI_BASE + GICD_ISENABLER, 0x0001_0003);
    assert_eq!(
        redist_read(&mut vgic, 1, SGI_BASE + GICD_ISENABLER),
        0x0001_0003
    );
    assert_eq!(redist_read(&mut vgic, 0, SGI_BASE + GICD_ISENABLER), 0);
    redist_write(&mut vgic, 1, SGI_BASE + GICD_ICENABLER, 0x1);
    assert_eq!(
        redist_read(&mut vgic, 1, SGI_BASE + GICD_ICENABLER),
        0x0001_0002
    );
    redist_write(&mut vgic, 0, SGI_BASE + GICD_ISPENDR, 1 << 5);
    assert_eq!(redist_read(&mut vgic, 0, SGI_BASE + GICD_ICPENDR), 1 << 5);
    redist_write(&mut vgic, 0, SGI_BASE + GICD_ISACTIVER, 1 << 17);
    assert_eq!(
        redist_read(&mut vgic, 0, SGI_BASE + GICD_ISACTIVER),
        1 << 17
    );
    redist_write(&mut vgic, 0, SGI_BASE + GICD_ICACTIVER, 1 << 17);
    assert_eq!(redist_read(&mut vgic, 0, SGI_BASE + GICD_ICACTIVER), 0);
    assert_eq!(
        redist_read(&mut vgic, 0, SGI_BASE + GICD_IGROUPR),
        u64::from(u32::MAX)
    );
    redist_write(&mut vgic, 0, SGI_BASE + GICD_IGROUPR, 0xffff);
    assert_eq!(redist_read(&mut vgic, 0, SGI_BASE + GICD_IGROUPR), 0xffff);
}

#[test]
fn hardware_ppis_are_mirrored_on_their_vcpu() {
    let mut vgic = standard(2, 4);
    let effects = redist_write(&mut vgic, 1, SGI_BASE + GICD_ISENABLER, 1 << TIMER_PPI);
    assert_eq!(
        effects.iter().collect::<Vec<_>>(),
        [Effect::HardwareEnable {
            physical_intid: TIMER_PPI,
            vcpu: 1,
            enabled: true
        }]
    );
}

#[test]
fn priorities_take_bytes_and_words() {
    let mut vgic = standard(1, 4);
    vgic.redistributor_write(0, SGI_BASE + 0x400 + 27, Byte, 0x90, &mut Effects::new())
        .unwrap();
    assert_eq!(redist_read(&mut vgic, 0, SGI_BASE + 0x418), 0x9000_0000);
    redist_write(&mut vgic, 0, SGI_BASE + 0x400, 0x0403_0201);
    assert_eq!(vgic.redistributor_read(0, SGI_BASE + 0x402, Byte), Ok(3));
    assert_eq!(
        vgic.redistributor_read(0, SGI_BASE + 0x420, AccessSize::Word),
        Ok(0),
        "past IPRIORITYR7: reserved"
    );
}

#[test]
fn sgis_are_edge_and_ppis_configurable_except_hardware_ones() {
    let mut vgic = standard(1, 4);
    assert_eq!(redist_read(&mut vgic, 0, SGI_BASE + 0xc00), 0xaaaa_aaaa);
    redist_write(&mut vgic, 0, SGI_BASE + 0xc00, 0);
    assert_eq!(
        redist_read(&mut vgic, 0, SGI_BASE + 0xc00),
        0xaaaa_aaaa,
        "read-only"
    );
    assert_eq!(
        redist_read(&mut vgic, 0, SGI_BASE + 0xc04),
        0,
        "PPIs reset level"
    );
    let effects = redist_write(&mut vgic, 0, SGI_BASE + 0xc04, 0xaaaa_aaaa);
    // Every PPI but 23 (field 7) and 27 (field 11) becomes edge-triggered.
    let hardware = (1 << 15) | (1 << 23);
    assert_eq!(
        redist_read(&mut vgic, 0, SGI_BASE + 0xc04),
        0xaaaa_aaaa & !hardware
    );
    assert!(effects.is_empty());
}

#[test]
fn secure_only_registers_are_raz_wi() {
    let mut vgic = standard(1, 4);
    for offset in [SGI_BASE + 0xd00, SGI_BASE + 0xe00] {
        redist_write(&mut vgic, 0, offset, u64::from(u32::MAX));
        assert_eq!(redist_read(&mut vgic, 0, offset), 0);
    }
}

#[test]
fn wrong_widths_alignments_and_vcpus_are_refused() {
    let mut vgic = standard(2, 4);
    let before = vgic.clone();
    let cases = [
        (0, 0x0, Byte, RegisterError::Size),
        (0, 0x10, Double, RegisterError::Size),
        (0, 0x8, Half, RegisterError::Size),
        (0, 0xc, Double, RegisterError::Unaligned),
        (0, SGI_BASE + 0x100, Byte, RegisterError::Size),
        (0, SGI_BASE + 0x401, Half, RegisterError::Unaligned),
        (0, 0x2_0000, Word, RegisterError::OutsideFrame),
        (2, 0x0, Word, RegisterError::NoSuchVcpu),
        (
            usize::MAX,
            SGI_BASE + 0x100,
            Word,
            RegisterError::NoSuchVcpu,
        ),
    ];
    for (vcpu, offset, size, error) in cases {
        assert_eq!(vgic.redistributor_read(vcpu, offset, size), Err(error));
        let mut effects = Effects::new();
        let written = vgic.redistributor_write(vcpu, offset, size, u64::MAX, &mut effects);
        assert_eq!(written, Err(error), "{vcpu} {offset:#x}");
        assert!(effects.is_empty());
    }
    assert!(vgic == before, "a refused access changed the vGIC");
}

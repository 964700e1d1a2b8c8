//! `Vgic::new` accepts good configurations and names what is wrong with bad ones.

use super::*;
use crate::vm::vgic::config::MAX_VCPUS;

fn refused(change: impl FnOnce(&mut VgicConfig)) -> VgicConfigError {
    let mut config = standard_config(2, 4);
    change(&mut config);
    Vgic::new(config).unwrap_err()
}

#[test]
fn the_standard_configuration_is_accepted() {
    assert!(Vgic::new(standard_config(1, 1)).is_ok());
    assert!(Vgic::new(standard_config(MAX_VCPUS, 16)).is_ok());
}

#[test]
fn vcpu_counts_and_mpidrs_are_checked() {
    assert_eq!(refused(|c| c.vcpu_mpidrs.clear()), VgicConfigError::NoVcpus);
    assert_eq!(
        refused(|c| c.vcpu_mpidrs = (0..=MAX_VCPUS as u64).collect()),
        VgicConfigError::TooManyVcpus {
            count: MAX_VCPUS + 1
        }
    );
    assert_eq!(
        refused(|c| c.vcpu_mpidrs[1] = 1 << 31),
        VgicConfigError::MpidrNotAnAffinity {
            vcpu: 1,
            mpidr: 1 << 31
        }
    );
    assert_eq!(
        refused(|c| c.vcpu_mpidrs[1] = c.vcpu_mpidrs[0]),
        VgicConfigError::DuplicateMpidr {
            vcpu: 1,
            mpidr: mpidr(0)
        }
    );
}

#[test]
fn spis_are_checked() {
    for intid in [0, 31, 1020, 1023, u32::MAX] {
        assert_eq!(
            refused(|c| c.spis[0].intid = intid),
            VgicConfigError::SpiOutOfRange { intid }
        );
    }
    assert_eq!(
        refused(|c| c.spis[2].intid = UART_SPI),
        VgicConfigError::DuplicateSpi { intid: UART_SPI }
    );
    assert_eq!(
        refused(|c| c.spis[1].source = SpiSource::Hardware { physical_intid: 27 }),
        VgicConfigError::PhysicalSpiOutOfRange {
            intid: DEVICE_SPI,
            physical_intid: 27
        }
    );
    assert_eq!(
        refused(|c| c.spis[3].source = SpiSource::Hardware {
            physical_intid: DEVICE_PHYSICAL
        }),
        VgicConfigError::DuplicatePhysicalSpi {
            physical_intid: DEVICE_PHYSICAL
        }
    );
}

#[test]
fn ppis_list_registers_and_priority_bits_are_checked() {
    assert_eq!(
        refused(|c| c.hardware_ppis.push(32)),
        VgicConfigError::PpiOutOfRange { intid: 32 }
    );
    assert_eq!(
        refused(|c| c.hardware_ppis.push(15)),
        VgicConfigError::PpiOutOfRange { intid: 15 }
    );
    assert_eq!(
        refused(|c| c.hardware_ppis.push(TIMER_PPI)),
        VgicConfigError::DuplicatePpi { intid: TIMER_PPI }
    );
    for count in [0, 17] {
        assert_eq!(
            refused(|c| c.list_registers = count),
            VgicConfigError::ListRegisters { count }
        );
    }
    for bits in [4, 9] {
        assert_eq!(
            refused(|c| c.priority_bits = bits),
            VgicConfigError::PriorityBits { bits }
        );
    }
}

#[test]
fn errors_read_as_sentences() {
    let text = std::format!("{}", VgicConfigError::DuplicateSpi { intid: 33 });
    assert_eq!(text, "SPI 33 is assigned twice");
}

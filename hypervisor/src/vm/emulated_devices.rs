//! Where a guest's emulated devices sit in its IPA space: the vGIC's distributor frame,
//! its vCPUs' redistributor frames, the virtual PL011. These ranges are holes in the
//! guest's stage 2, so every access traps and [`EmulatedDevices::find`] says which
//! device's register it was. Portable.

use platform::info::PhysRange;

/// GICv3 distributor frame (IHI 0069 §12.9: 64 KiB).
pub const DISTRIBUTOR_FRAME: u64 = 0x1_0000;
/// One vCPU's redistributor: RD_base and SGI_base, 64 KiB each (IHI 0069 §12.10).
pub const REDISTRIBUTOR_FRAMES: u64 = 0x2_0000;

/// The emulated devices of one guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmulatedDevices {
    /// GICD.
    pub distributor: u64,
    /// The first vCPU's GICR; vCPU `i`'s is `i` × 128 KiB above.
    pub redistributors: u64,
    pub vcpus: usize,
    /// The virtual PL011's 4 KiB frame, if the guest has one.
    pub uart: Option<u64>,
    /// The virtual PL011's SPI (as an INTID).
    pub uart_intid: Option<u32>,
}

/// Which register an access hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulatedRegister {
    Distributor { offset: u64 },
    Redistributor { vcpu: usize, offset: u64 },
    Uart { offset: u64 },
}

impl EmulatedDevices {
    /// The redistributor range all vCPUs' frames span.
    pub fn redistributor_range(&self) -> Option<PhysRange> {
        let size = REDISTRIBUTOR_FRAMES.checked_mul(self.vcpus as u64)?;
        PhysRange::new(self.redistributors, size)
    }

    /// The stage-2 holes: every range that must trap.
    pub fn ranges(&self) -> impl Iterator<Item = PhysRange> + '_ {
        PhysRange::new(self.distributor, DISTRIBUTOR_FRAME)
            .into_iter()
            .chain(self.redistributor_range())
            .chain(
                self.uart
                    .and_then(|base| PhysRange::new(base, crate::vm::vpl011::FRAME_SIZE)),
            )
    }

    /// The device register at `ipa`, if any.
    pub fn find(&self, ipa: u64) -> Option<EmulatedRegister> {
        if let Some(offset) = offset_in(ipa, self.distributor, DISTRIBUTOR_FRAME) {
            return Some(EmulatedRegister::Distributor { offset });
        }
        if let Some(range) = self.redistributor_range()
            && let Some(offset) = offset_in(ipa, range.base, range.size)
        {
            return Some(EmulatedRegister::Redistributor {
                vcpu: (offset / REDISTRIBUTOR_FRAMES) as usize,
                offset: offset % REDISTRIBUTOR_FRAMES,
            });
        }
        let uart = self.uart?;
        offset_in(ipa, uart, crate::vm::vpl011::FRAME_SIZE)
            .map(|offset| EmulatedRegister::Uart { offset })
    }
}

fn offset_in(ipa: u64, base: u64, size: u64) -> Option<u64> {
    let offset = ipa.checked_sub(base)?;
    (offset < size).then_some(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_VIRT: EmulatedDevices = EmulatedDevices {
        distributor: 0x0800_0000,
        redistributors: 0x080a_0000,
        vcpus: 4,
        uart: Some(0x0900_0000),
        uart_intid: Some(33),
    };

    #[test]
    fn each_frame_names_its_register() {
        let d = QEMU_VIRT;
        assert_eq!(
            d.find(0x0800_0004),
            Some(EmulatedRegister::Distributor { offset: 4 })
        );
        assert_eq!(
            d.find(0x0800_ffff),
            Some(EmulatedRegister::Distributor { offset: 0xffff })
        );
        assert_eq!(
            d.find(0x0801_0000),
            None,
            "GICv2 CPU interface is not emulated"
        );
        assert_eq!(
            d.find(0x080a_0008),
            Some(EmulatedRegister::Redistributor { vcpu: 0, offset: 8 })
        );
        assert_eq!(
            d.find(0x080a_0000 + 3 * 0x2_0000 + 0x1_0100),
            Some(EmulatedRegister::Redistributor {
                vcpu: 3,
                offset: 0x1_0100
            })
        );
        assert_eq!(d.find(0x080a_0000 + 4 * 0x2_0000), None, "no fifth vCPU");
        assert_eq!(
            d.find(0x0900_0018),
            Some(EmulatedRegister::Uart { offset: 0x18 })
        );
        assert_eq!(d.find(0x0900_1000), None);
        assert_eq!(d.find(0), None);
        assert_eq!(d.find(u64::MAX), None);
    }

    #[test]
    fn holes_are_the_frames() {
        let holes: alloc::vec::Vec<_> = QEMU_VIRT.ranges().collect();
        assert_eq!(
            holes,
            [
                PhysRange::new(0x0800_0000, 0x1_0000).unwrap(),
                PhysRange::new(0x080a_0000, 0x8_0000).unwrap(),
                PhysRange::new(0x0900_0000, 0x1000).unwrap(),
            ]
        );
    }

    #[test]
    fn absurd_vcpu_counts_do_not_overflow() {
        let d = EmulatedDevices {
            vcpus: usize::MAX,
            redistributors: u64::MAX - 5,
            ..QEMU_VIRT
        };
        assert_eq!(d.redistributor_range(), None);
        let _ = d.find(u64::MAX - 1);
    }
}

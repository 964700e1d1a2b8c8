//! Guest accesses the hypervisor emulates, at EL2: loads and stores to the vGIC's
//! distributor and redistributor frames and to the virtual PL011 (stage-2 holes, decoded
//! by `vm::mmio`), the trapped SGI-generation registers, and console input for a guest.

use core::sync::atomic::Ordering;

use crate::arch::esr::Esr;
use crate::arch::trap_frame::TrapFrame;
use crate::vm::emulated_devices::EmulatedRegister;
use crate::vm::guest::Vm;
use crate::vm::interrupts;
use crate::vm::mmio::{Attempt, MmioAccess};
use crate::vm::registry;
use crate::vm::vgic::{Effects, SgiRegister};

/// How long a guest's unfinished console line waits for the rest before it is written
/// out as it is (a shell prompt, a progress dot).
const PARTIAL_LINE_DELAY_US: u64 = 50_000;

/// Why an emulated access gets an external abort instead.
#[derive(Debug)]
enum Refused {
    /// The syndrome does not describe a single load or store (ISV = 0: a pair, a
    /// writeback, SIMD...), which cannot be emulated.
    NotEmulable,
    /// The device refused the register, width or offset.
    Register,
}

/// Emulates the guest's access at `ipa` to `register`; on success the vCPU resumes
/// after the instruction, otherwise it takes a synchronous external abort (`false`).
pub fn emulate_mmio(
    vm: &Vm,
    cpu: usize,
    vcpu: usize,
    frame: &mut TrapFrame,
    esr: Esr,
    ipa: u64,
    register: EmulatedRegister,
) -> bool {
    vm.stats.exits.count_mmio();
    let result = MmioAccess::decode(esr, ipa)
        .map_err(|_| Refused::NotEmulable)
        .and_then(|access| {
            let mut effects = Effects::default();
            let value = access_register(vm, register, &access, &frame.regs, &mut effects)?;
            if !access.write {
                access.complete_load(&mut frame.regs, value);
            }
            interrupts::apply(vm, cpu, &effects);
            Ok(())
        });
    match result {
        Ok(()) => {
            // Every AArch64 instruction is 4 bytes (ESR_EL2.IL = 1).
            frame.elr = frame.elr.wrapping_add(4);
            interrupts::load_list_registers(vm, vcpu);
            true
        }
        Err(why) => {
            vm.stats.refused_mmio.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "guest: {register:?} access refused ({why:?}): {} at PC {:#x}",
                Attempt(MmioAccess::decode(esr, ipa)),
                frame.elr
            );
            false
        }
    }
}

fn access_register(
    vm: &Vm,
    register: EmulatedRegister,
    access: &MmioAccess,
    regs: &[u64; 31],
    effects: &mut Effects,
) -> Result<u64, Refused> {
    let value = access.store_value(regs);
    let size = access.size;
    match register {
        EmulatedRegister::Distributor { offset } => {
            let mut vgic = vm.vgic.lock();
            if access.write {
                vgic.distributor_write(offset, size, value, effects)
                    .map(|()| 0)
            } else {
                vgic.distributor_read(offset, size)
            }
            .map_err(|_| Refused::Register)
        }
        EmulatedRegister::Redistributor {
            vcpu: target,
            offset,
        } => {
            let mut vgic = vm.vgic.lock();
            if access.write {
                vgic.redistributor_write(target, offset, size, value, effects)
                    .map(|()| 0)
            } else {
                vgic.redistributor_read(target, offset, size)
            }
            .map_err(|_| Refused::Register)
        }
        EmulatedRegister::Uart { offset } => {
            let mut console = vm.console.lock();
            let result = if access.write {
                console
                    .write(offset, size, value as u32, &mut |piece: &[u8], complete| {
                        crate::console::write_guest_piece(vm.number, piece, complete)
                    })
                    .map(|()| 0)
            } else {
                console.read(offset, size).map(u64::from)
            };
            let level = console.irq_level();
            let unfinished = access.write && console.has_partial_line();
            drop(console);
            if unfinished {
                // A prompt shows once the guest has been quiet for a moment.
                crate::arch::aarch64::hyp_timer::arm_after_us(PARTIAL_LINE_DELAY_US);
            }
            if let Some(intid) = vm.devices.uart_intid {
                vm.vgic.lock().set_line_level(intid, level, effects);
            }
            result.map_err(|_| Refused::Register)
        }
    }
}

/// A trapped write of ICC_SGI1R_EL1, ICC_ASGI1R_EL1 or ICC_SGI0R_EL1 by vCPU `vcpu`:
/// the SGI reaches the guest's own vCPUs only.
pub fn generate_sgi(vm: &Vm, cpu: usize, vcpu: usize, kind: SgiRegister, value: u64) {
    let mut effects = Effects::default();
    let delivery = vm.vgic.lock().generate_sgi(vcpu, value, kind, &mut effects);
    vm.stats.sgis.fetch_add(1, Ordering::Relaxed);
    if delivery.dropped > 0 {
        log::debug!(
            "guest: SGI {value:#x} from vCPU {vcpu}: {} target(s) not its own, dropped",
            delivery.dropped
        );
    }
    interrupts::apply(vm, cpu, &effects);
    interrupts::load_list_registers(vm, vcpu);
}

/// Console input for `vm`: as much of `bytes` as its receive FIFO takes (the count),
/// then the receive timeout and its interrupt line.
pub fn console_input(vm: &Vm, cpu: usize, bytes: &[u8]) -> usize {
    let mut console = vm.console.lock();
    let accepted = bytes
        .iter()
        .take_while(|&&byte| console.push_input(byte))
        .count();
    console.input_idle();
    let level = console.irq_level();
    drop(console);
    if let Some(intid) = vm.devices.uart_intid {
        let mut effects = Effects::default();
        vm.vgic.lock().set_line_level(intid, level, &mut effects);
        interrupts::apply(vm, cpu, &effects);
    }
    accepted
}

/// Console input for guest `number` (the console's guest sink): how many bytes it took.
pub fn console_input_for(number: u16, bytes: &[u8]) -> usize {
    let Some(vm) = registry::by_number(number) else {
        return 0;
    };
    let cpu = crate::cpu::this_cpu().unwrap_or(0);
    console_input(vm, cpu, bytes)
}

/// Keys typed while the hypervisor has console focus.
pub fn hypervisor_key(key: u8) {
    match key {
        b's' => {
            for number in 1..=registry::count() {
                if let Some(vm) = registry::by_number(number) {
                    log::info!("guest {number}: exits {}", vm.stats);
                    log::info!("guest {number}: vgic {}", vm.vgic.lock().stats());
                }
            }
        }
        b'\r' | b'\n' => {}
        _ => log::info!("console: s = guest statistics; Ctrl-a three times = next guest"),
    }
}

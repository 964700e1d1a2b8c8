//! From the entry in head.S to a running system: read the device tree, bring up the
//! console and logging, report what this machine is, then (later issues) build the EL2
//! map and start the guest. Every stop goes through [`stop`], which prints the outcome
//! marker and powers off through PSCI.

use core::panic::PanicInfo;

use crate::boot::facts::{self, CpuFacts};
use crate::boot::outcome::Outcome;
use crate::cpu::features::CpuFeatures;
use platform::info::PlatformInfo;

use super::power::{set_firmware_conduit, stop, stop_failure};

use crate::arch::{self, sysreg};
use crate::console;

/// Header bytes needed to learn the DTB's size.
const FDT_HEADER_SIZE: usize = 40;

/// The device tree the loader handed over, with any FDT_NOP tokens compacted out (the
/// blob is the hypervisor's now; QEMU's `-dtb` loader leaves NOPs where it deleted
/// properties).
///
/// # Safety
/// `dtb_pa` must be the address the loader passed in x0, readable and writable while the
/// MMU is off, and nothing else may use the blob.
// The error is large (it names what is wrong and where) but is built once, at boot, and
// reported right away: boxing it would need a heap before there is one.
#[allow(clippy::result_large_err)]
unsafe fn device_tree_blob(dtb_pa: usize) -> Result<&'static [u8], platform::dt::DtError> {
    // SAFETY: the boot protocol gives the DTB's physical address, 8-byte aligned; its first
    // 40 bytes are the header (a bad address faults into the vectors, which report it).
    let header = unsafe { core::slice::from_raw_parts(dtb_pa as *const u8, FDT_HEADER_SIZE) };
    let size = platform::dt::blob_size(header)?;
    // SAFETY: `blob_size` validated the header's totalsize (bounded by MAX_TOTAL_SIZE); the
    // blob stays in place, reserved for the hypervisor's lifetime, and this is its only
    // mutable view, dropped before the shared one below is made.
    let blob = unsafe { core::slice::from_raw_parts_mut(dtb_pa as *mut u8, size) };
    platform::dt::remove_nops(blob)?;
    // SAFETY: as above; from here on the blob is only read.
    Ok(unsafe { core::slice::from_raw_parts(dtb_pa as *const u8, size) })
}

/// Entered from head.S on the boot CPU at EL2 with the MMU off and a stack.
#[unsafe(no_mangle)]
extern "C" fn primary_main(dtb_pa: usize, boot_counter: u64) -> ! {
    console::set_boot_counter(boot_counter);
    if dtb_pa == 0 || !dtb_pa.is_multiple_of(8) {
        // No device tree, so no console to say it on: the missing marker line tells.
        stop_failure("no device tree (x0 is zero or misaligned)");
    }
    // SAFETY: head.S passes x0 from the loader unchanged.
    let blob = match unsafe { device_tree_blob(dtb_pa) } {
        Ok(blob) => blob,
        Err(_) => stop_failure("the DTB header is invalid"),
    };
    let info = match platform::dt::parse(blob, dtb_pa as u64) {
        Ok(info) => info,
        Err(error) => {
            if let Some(console) = platform::dt::find_console(blob) {
                console::init(&console);
                console::init_logging(log::LevelFilter::Info);
            }
            log::error!("device tree at {dtb_pa:#x}: {error}");
            stop_failure("invalid device tree");
        }
    };
    console::init(&info.console);
    if let Some(psci) = info.psci {
        set_firmware_conduit(psci.conduit);
    }
    let args = crate::boot::bootargs::apply(&info);
    log::info!(
        "hypervisor {} at EL2, image at {:#x}",
        env!("CARGO_PKG_VERSION"),
        crate::mm::image::image_range().base
    );

    let ids = sysreg::id_registers();
    let cpu = CpuFacts {
        midr: ids.midr,
        features: CpuFeatures::decode(&ids),
    };
    report(&cpu, &info);

    crate::boot::sequence::after_boot(&info, blob, &cpu, &args)
}

fn report(cpu: &CpuFacts, info: &PlatformInfo<'_>) {
    let mut summary = LineLogger::default();
    let _ = facts::write_summary(&mut summary, cpu, info);
    summary.finish();
    struct Raw;
    impl core::fmt::Write for Raw {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            console::write_raw(format_args!("{s}"));
            Ok(())
        }
    }
    let _ = facts::write_fact_lines(&mut Raw, cpu, info);
}

/// Collects formatted text and logs it line by line at info level.
#[derive(Default)]
struct LineLogger {
    line: arrayvec::ArrayString<256>,
}

impl LineLogger {
    fn finish(&mut self) {
        if !self.line.is_empty() {
            log::info!("{}", self.line);
            self.line.clear();
        }
    }
}

impl core::fmt::Write for LineLogger {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for piece in s.split_inclusive('\n') {
            let (text, ends_line) = match piece.strip_suffix('\n') {
                Some(text) => (text, true),
                None => (piece, false),
            };
            for c in text.chars() {
                if self.line.try_push(c).is_err() {
                    self.finish();
                    let _ = self.line.try_push(c);
                }
            }
            if ends_line {
                self.finish();
            }
        }
        Ok(())
    }
}

/// Entered from head.S when the loader started us below EL2 (EL1): report it on the
/// console the DT names, if any, and power off through the DT's PSCI conduit.
#[unsafe(no_mangle)]
extern "C" fn not_at_el2_main(dtb_pa: usize, boot_counter: u64, current_el: u64) -> ! {
    console::set_boot_counter(boot_counter);
    // SAFETY: as in `primary_main`.
    if let Ok(blob) = unsafe { device_tree_blob(dtb_pa) } {
        if let Some(console) = platform::dt::find_console(blob) {
            console::init(&console);
        }
        if let Ok(info) = platform::dt::parse(blob, dtb_pa as u64)
            && let Some(psci) = info.psci
        {
            set_firmware_conduit(psci.conduit);
        }
    }
    console::write_raw(format_args!(
        "hypervisor: entered at EL{current_el}, not EL2: this image needs the virtualization extensions \
         (QEMU: -machine virt,virtualization=on)\n"
    ));
    stop(Outcome::Failure("not entered at EL2"))
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if !crate::crash::claim() {
        // Another CPU is crashing and reports for everyone.
        arch::halt();
    }
    console::break_locks_for_crash();
    log::error!("hypervisor panic: {info}");
    let mut message = arrayvec::ArrayString::<{ crate::crash::record::MAX_MESSAGE }>::new();
    let _ = core::fmt::write(&mut message, format_args!("hypervisor panic: {info}"));
    crate::crash::write(&message, &crate::crash::record::CrashRegisters::default());
    stop_failure("hypervisor panic")
}

//! The EL2 half of the SMMUv3: one SMMU's registers, its stream table, command queue and
//! event queue in pool memory, brought up in `iommu`'s documented order, then stage-2
//! STEs installed for a guest's streams, commands issued and completed, events drained
//! into the log. Every value written comes from the portable modules next to this one.

use core::sync::atomic::{AtomicU64, Ordering};

use core::ops::Range;

use platform::info::PhysRange;
use spin::Mutex;

use super::command::{Command, SyncSignal};
use super::event::SmmuEvent;
use super::global_error::{GlobalError, GlobalErrors};
use super::queue::{COMMAND_BYTES, EVENT_BYTES, QueueGeometry};
use super::registers::{self as reg, SmmuFeatures, cr0, gbpa, irq_ctrl};
use super::ste::{Stage2Config, Ste};
use super::stream_table::{
    Format, L1_DESCRIPTOR_BYTES, L2_ENTRIES, L2_TABLE_BYTES, SteLocation, StreamTableError,
    StreamTableLayout, l1_descriptor,
};
use crate::arch::aarch64::sysreg;
use crate::mm::FRAMES;

/// Entries of each queue, capped by IDR1: 2^8 commands (4 KiB); 2^9 events (16 KiB): a
/// device retrying a refused DMA raises events faster than one interrupt drains them, and
/// a lost record is a fault nobody is told about. The DMA test's hostile reads recorded
/// 133 events with 2^7 entries before records were lost (EVTQ_ABT_ERR under QEMU,
/// EVTQ_PROD.OVFLG on hardware), 517 with 2^9; losses are still logged and counted.
const COMMAND_QUEUE_LOG2: u8 = 8;
const EVENT_QUEUE_LOG2: u8 = 9;
/// How long a register handshake or a CMD_SYNC may take before the SMMU is declared
/// broken.
const TIMEOUT_US: u64 = 100_000;
const PAGE: u64 = 4096;

/// Why an SMMU could not be brought up or used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmmuError {
    /// It lacks what the hypervisor needs (see `registers::Incompatibility`).
    Unsuitable(super::registers::Incompatibility),
    /// The stream table cannot cover the assigned StreamIDs.
    StreamTable(super::stream_table::StreamTableError),
    /// The pool has no memory for its tables or queues.
    NoMemory,
    /// A register acknowledgement or a CMD_SYNC did not come.
    Timeout(&'static str),
    /// CMDQ_CONS.ERR: the SMMU refused a command.
    CommandError(&'static str),
}

impl core::fmt::Display for SmmuError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unsuitable(why) => write!(f, "unsuitable: {why:?}"),
            Self::StreamTable(why) => write!(f, "stream table: {why:?}"),
            Self::NoMemory => f.write_str("no pool memory for its tables and queues"),
            Self::Timeout(what) => write!(f, "{what} did not complete"),
            Self::CommandError(what) => write!(f, "command error: {what}"),
        }
    }
}

/// Commands and SYNCs issued, events read: the SMMU side of the TLBI counters.
#[derive(Default)]
pub struct SmmuCounters {
    pub commands: AtomicU64,
    pub syncs: AtomicU64,
    pub events: AtomicU64,
}

/// One SMMU, brought up.
pub struct Smmu {
    base: usize,
    pub features: SmmuFeatures,
    queues: Mutex<Queues>,
    pub counters: SmmuCounters,
}

struct Queues {
    cmdq: QueueGeometry,
    cmdq_memory: u64,
    /// Our producer index (CMDQ_PROD as last written).
    prod: u32,
    evtq: QueueGeometry,
    evtq_memory: u64,
    stream_table: StreamTableLayout,
    strtab_memory: u64,
    /// A two-level table's L2 tables, by L1 index: one per group of 2^SPLIT StreamIDs
    /// holding an assigned one (the other groups' L1 descriptors stay invalid).
    l2_tables: alloc::vec::Vec<(u32, u64)>,
}

fn read32(base: usize, offset: usize) -> u32 {
    // SAFETY: `base` is an SMMU register frame the EL2 map holds as Device memory
    // (mm::el2_map maps every DT SMMU), and each offset is a register inside its two
    // 64 KiB pages; MMIO needs a volatile access.
    unsafe { ((base + offset) as *const u32).read_volatile() }
}

fn write32(base: usize, offset: usize, value: u32) {
    // SAFETY: as in `read32`.
    unsafe { ((base + offset) as *mut u32).write_volatile(value) }
}

fn write64(base: usize, offset: usize, value: u64) {
    // SAFETY: as in `read32`; the 64-bit registers written (STRTAB_BASE, CMDQ_BASE,
    // EVTQ_BASE) allow 64-bit accesses (IHI 0070 §6.2).
    unsafe { ((base + offset) as *mut u64).write_volatile(value) }
}

/// Zeroed pool memory of `bytes` (a power of two of pages), aligned to its size.
fn zeroed_pool_memory(bytes: u64) -> Result<u64, SmmuError> {
    let pages = bytes.div_ceil(PAGE).next_power_of_two() as usize;
    let memory = FRAMES
        .lock()
        .alloc_contiguous(pages)
        .ok_or(SmmuError::NoMemory)?;
    // SAFETY: the frames were just handed out to us, identity-mapped RAM of the pool.
    unsafe { core::ptr::write_bytes(memory as *mut u8, 0, pages * PAGE as usize) };
    Ok(memory)
}

/// DSB ISH: stores to tables and queues are observable by the (coherent, IDR0.COHACC)
/// SMMU before the register write or command that makes it look (IHI 0070 §3.21.1:
/// the SMMU is an observer in the inner-shareable domain).
fn publish_stores() {
    // SAFETY: a barrier touches no memory.
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
}

impl Smmu {
    /// What the SMMU at `regs` implements (its ID registers).
    pub fn features_at(regs: PhysRange) -> SmmuFeatures {
        let base = regs.base as usize;
        SmmuFeatures::decode(
            read32(base, reg::IDR0),
            read32(base, reg::IDR1),
            read32(base, reg::IDR5),
        )
        .with_idr3(read32(base, reg::IDR3))
    }

    /// Brings up the SMMU at `regs` with `streams` translating as their STE says and
    /// every other StreamID aborting. The STEs are written before the SMMU is enabled,
    /// so no stream ever sees another configuration. The table is linear while that is
    /// small (`stream_table`'s rule), two-level (with the SMMU's IDR0.ST_LEVEL) beyond:
    /// an L2 table for each group of StreamIDs holding an assigned one.
    pub fn bring_up(regs: PhysRange, streams: &[(Range<u32>, Ste)]) -> Result<Self, SmmuError> {
        let base = regs.base as usize;
        let features = Self::features_at(regs);
        let highest = streams
            .iter()
            .filter_map(|(sids, _)| sids.clone().last())
            .max();
        let stream_table = StreamTableLayout::choose(
            features.sid_bits,
            features.two_level_stream_table,
            highest.as_slice(),
        )
        .map_err(SmmuError::StreamTable)?;
        let queues = Self::allocate(&features, stream_table)?;
        let smmu = Self {
            base,
            features,
            queues: Mutex::new(queues),
            counters: SmmuCounters::default(),
        };
        smmu.fill_stream_table(streams)?;
        smmu.reset()?;
        Ok(smmu)
    }

    fn allocate(
        features: &SmmuFeatures,
        stream_table: StreamTableLayout,
    ) -> Result<Queues, SmmuError> {
        let cmdq = QueueGeometry::new(COMMAND_QUEUE_LOG2.min(features.cmdq_max_log2))
            .ok_or(SmmuError::Timeout("a command queue size"))?;
        let evtq = QueueGeometry::new(EVENT_QUEUE_LOG2.min(features.evtq_max_log2))
            .ok_or(SmmuError::Timeout("an event queue size"))?;
        let strtab_memory = zeroed_pool_memory(stream_table.base_table_bytes())?;
        let cmdq_memory = zeroed_pool_memory(cmdq.bytes(COMMAND_BYTES))?;
        let evtq_memory = zeroed_pool_memory(evtq.bytes(EVENT_BYTES))?;
        Ok(Queues {
            cmdq,
            cmdq_memory,
            prod: 0,
            evtq,
            evtq_memory,
            stream_table,
            strtab_memory,
            l2_tables: alloc::vec::Vec::new(),
        })
    }

    fn wait(&self, what: &'static str, done: impl FnMut() -> bool) -> Result<(), SmmuError> {
        if sysreg::wait_until(done, TIMEOUT_US) {
            Ok(())
        } else {
            Err(SmmuError::Timeout(what))
        }
    }

    /// Writes CR0 and waits for CR0ACK to match (IHI 0070 §6.3.10).
    fn set_cr0(&self, value: u32) -> Result<(), SmmuError> {
        write32(self.base, reg::CR0, value);
        self.wait("CR0ACK", || read32(self.base, reg::CR0ACK) == value)
    }

    /// The bring-up order of `iommu`'s module doc (Linux's `arm_smmu_device_reset`).
    fn reset(&self) -> Result<(), SmmuError> {
        let base = self.base;
        // While SMMUEN = 0 incoming transactions follow GBPA: abort, never bypass.
        self.wait("GBPA.UPDATE", || {
            read32(base, reg::GBPA) & gbpa::UPDATE == 0
        })?;
        write32(base, reg::GBPA, gbpa::ABORT | gbpa::UPDATE);
        self.wait("GBPA.UPDATE", || {
            read32(base, reg::GBPA) & gbpa::UPDATE == 0
        })?;
        self.set_cr0(0)?;
        write32(base, reg::IRQ_CTRL, 0);
        self.wait("IRQ_CTRLACK", || read32(base, reg::IRQ_CTRLACK) == 0)?;
        publish_stores();
        write32(base, reg::CR1, reg::cr1::COHERENT_WB);
        write32(base, reg::CR2, reg::cr2::VALUE);
        {
            let q = self.queues.lock();
            let strtab = q
                .stream_table
                .base(q.strtab_memory)
                .map_err(SmmuError::StreamTable)?;
            write64(base, reg::STRTAB_BASE, strtab);
            write32(base, reg::STRTAB_BASE_CFG, q.stream_table.base_cfg());
            let cmdq = q.cmdq.base_register(q.cmdq_memory, COMMAND_BYTES);
            let evtq = q.evtq.base_register(q.evtq_memory, EVENT_BYTES);
            let (Ok(cmdq), Ok(evtq)) = (cmdq, evtq) else {
                return Err(SmmuError::NoMemory);
            };
            write64(base, reg::CMDQ_BASE, cmdq);
            write32(base, reg::CMDQ_PROD, 0);
            write32(base, reg::CMDQ_CONS, 0);
            write64(base, reg::EVTQ_BASE, evtq);
            write32(base, reg::EVTQ_PROD, 0);
            write32(base, reg::EVTQ_CONS, 0);
        }
        self.set_cr0(cr0::EVTQEN | cr0::CMDQEN)?;
        // Nothing cached from before the hypervisor survives.
        let mut first = [
            Command::cfgi_all(),
            Command::tlbi_nsnh_all(),
            Command::tlbi_el2_all(),
        ];
        let count = if self.features.hyp { 3 } else { 2 };
        self.submit_and_sync(&mut first[..count])?;
        write32(
            base,
            reg::IRQ_CTRL,
            irq_ctrl::GERROR_IRQEN | irq_ctrl::EVTQ_IRQEN,
        );
        self.wait("IRQ_CTRLACK", || {
            read32(base, reg::IRQ_CTRLACK) == irq_ctrl::GERROR_IRQEN | irq_ctrl::EVTQ_IRQEN
        })?;
        self.set_cr0(cr0::EVTQEN | cr0::CMDQEN | cr0::SMMUEN)
    }

    /// Every STE of the table aborts except `streams`' (IHI 0070 §5.2: an STE with V = 1
    /// and Config = abort terminates the stream's transactions). In a two-level table
    /// each group holding an assigned StreamID gets an L2 table of abort STEs plus those
    /// streams' STEs, its L1 descriptor written last; every other group keeps an invalid
    /// descriptor (SPAN 0: C_BAD_STREAMID, an abort). The SMMU is not enabled yet, and
    /// `reset` publishes all of it (DSB) before STRTAB_BASE is written.
    fn fill_stream_table(&self, streams: &[(Range<u32>, Ste)]) -> Result<(), SmmuError> {
        let mut q = self.queues.lock();
        let abort = Ste::abort().words();
        let too_large =
            |stream_id| SmmuError::StreamTable(StreamTableError::StreamIdTooLarge { stream_id });
        if q.stream_table.format() == Format::Linear {
            for sid in 0..q.stream_table.stream_ids() {
                let ste = (q.strtab_memory + sid * 64) as *mut [u64; 8];
                // SAFETY: `sid` is below the table's entry count, so the 64-byte STE lies
                // in the stream table's own zeroed pool memory; the SMMU is not enabled.
                unsafe { ste.write_volatile(abort) };
            }
        }
        for (sids, ste) in streams {
            for sid in sids.clone() {
                let Some(location) = q.stream_table.locate(sid) else {
                    return Err(too_large(sid));
                };
                if let SteLocation::TwoLevel { l1_index, .. } = location
                    && !q.l2_tables.iter().any(|&(index, _)| index == l1_index)
                {
                    let table = zeroed_pool_memory(L2_TABLE_BYTES)?;
                    for slot in 0..L2_ENTRIES {
                        // SAFETY: the L2 table was just allocated: L2_ENTRIES STEs of 64
                        // bytes in pool memory only this driver uses.
                        unsafe { ((table + slot * 64) as *mut [u64; 8]).write_volatile(abort) };
                    }
                    q.l2_tables.push((l1_index, table));
                }
                let address = Self::ste_slot(&q, location).ok_or(too_large(sid))?;
                // SAFETY: `ste_slot` gives the STE's 64-byte slot inside the table.
                unsafe { (address as *mut [u64; 8]).write_volatile(ste.words()) };
            }
        }
        for &(l1_index, table) in &q.l2_tables {
            let descriptor = l1_descriptor(table).map_err(SmmuError::StreamTable)?;
            let slot = q.strtab_memory + u64::from(l1_index) * L1_DESCRIPTOR_BYTES;
            // SAFETY: `l1_index` came from `locate`, so it is below the L1 table's entry
            // count: the 8-byte descriptor lies in the base table's memory.
            unsafe { (slot as *mut u64).write_volatile(descriptor) };
        }
        Ok(())
    }

    /// The address of the STE `location` names, if its table exists.
    fn ste_slot(q: &Queues, location: SteLocation) -> Option<u64> {
        match location {
            SteLocation::Linear { .. } => Some(q.strtab_memory + location.ste_offset()),
            SteLocation::TwoLevel { l1_index, .. } => q
                .l2_tables
                .iter()
                .find(|&&(index, _)| index == l1_index)
                .map(|&(_, table)| table + location.ste_offset()),
        }
    }

    /// Installs a stage-2 STE for `stream_id` translating through `config` (the guest's
    /// stage 2), in Linux's order for a live STE: words 1-7, CFGI_STE + SYNC, then word
    /// 0 (V and Config) in one store, CFGI_STE + SYNC.
    pub fn attach_stage2(&self, stream_id: u32, config: &Stage2Config) -> Result<(), SmmuError> {
        let words = Ste::stage2(config).words();
        let ste = self.ste_address(stream_id)?;
        for (index, &word) in words.iter().enumerate().skip(1) {
            // SAFETY: `ste_address` returned the 64-byte STE slot of `stream_id` in the
            // stream table's pool memory.
            unsafe { (ste as *mut u64).add(index).write_volatile(word) };
        }
        publish_stores();
        self.submit_and_sync(&mut [Command::cfgi_ste(stream_id, true)])?;
        // SAFETY: as above; one 64-bit store makes the STE valid at once.
        unsafe { (ste as *mut u64).write_volatile(words[0]) };
        publish_stores();
        self.submit_and_sync(&mut [Command::cfgi_ste(stream_id, true)])
    }

    /// Where `stream_id`'s STE lives (in a two-level table only the groups filled at
    /// bring-up have one).
    fn ste_address(&self, stream_id: u32) -> Result<u64, SmmuError> {
        let q = self.queues.lock();
        q.stream_table
            .locate(stream_id)
            .and_then(|location| Self::ste_slot(&q, location))
            .ok_or(SmmuError::StreamTable(StreamTableError::StreamIdTooLarge {
                stream_id,
            }))
    }

    /// Queues `commands`, then a CMD_SYNC, and waits until the SMMU has consumed the
    /// SYNC (so every command before it completed, IHI 0070 §4.7.3).
    pub fn submit_and_sync(&self, commands: &mut [Command]) -> Result<(), SmmuError> {
        self.submit(commands, true)
    }

    /// Queues `commands` (and with `sync`, a CMD_SYNC waited for).
    pub fn submit(&self, commands: &[Command], sync: bool) -> Result<(), SmmuError> {
        let mut q = self.queues.lock();
        let sync_command = Command::sync(SyncSignal::None);
        let tail = if sync {
            core::slice::from_ref(&sync_command)
        } else {
            &[]
        };
        for command in commands.iter().chain(tail) {
            self.push(&mut q, *command)?;
        }
        let sync_position = q.prod;
        publish_stores();
        write32(self.base, reg::CMDQ_PROD, q.prod);
        self.counters
            .commands
            .fetch_add(commands.len() as u64, Ordering::Relaxed);
        if !sync {
            return Ok(());
        }
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        let cmdq = q.cmdq;
        drop(q);
        let mut error = None;
        let done = sysreg::wait_until(
            || {
                let cons = read32(self.base, reg::CMDQ_CONS);
                let global = GlobalErrors::decode(
                    read32(self.base, reg::GERROR),
                    read32(self.base, reg::GERRORN),
                );
                // Only a stopped command queue (or service failure) ends the wait: an
                // event-queue abort (QEMU's way of saying the event queue was full) is the
                // event path's business.
                if global.contains(GlobalError::CommandQueue)
                    || global.contains(GlobalError::ServiceFailure)
                {
                    error = Some(super::queue::CommandError::from_cons(cons).name());
                    return true;
                }
                cmdq.has_consumed(cons, sync_position.wrapping_sub(1))
            },
            TIMEOUT_US,
        );
        match (done, error) {
            (_, Some(what)) => Err(SmmuError::CommandError(what)),
            (true, None) => Ok(()),
            (false, None) => Err(SmmuError::Timeout("CMD_SYNC")),
        }
    }

    /// Writes one command at PROD, waiting for room.
    fn push(&self, q: &mut Queues, command: Command) -> Result<(), SmmuError> {
        let cmdq = q.cmdq;
        let prod = q.prod;
        self.wait("command queue room", || {
            !cmdq.is_full(prod, read32(self.base, reg::CMDQ_CONS))
        })?;
        let slot = q.cmdq_memory + u64::from(cmdq.index(q.prod)) * COMMAND_BYTES;
        // SAFETY: the index is below the queue's entry count, so the 16-byte slot lies
        // in the command queue's own pool memory; the SMMU reads it only once PROD
        // moves past it.
        unsafe { (slot as *mut [u64; 2]).write_volatile(command.words()) };
        q.prod = cmdq.advance(q.prod, 1);
        Ok(())
    }

    /// Logs and acknowledges the active global errors (GERROR ^ GERRORN). A stopped
    /// command queue gets its offending command replaced by a CMD_SYNC first, as Linux
    /// does, so the queue moves on once acknowledged (IHI 0070 §7.1).
    pub fn handle_global_errors(&self, mut log: impl FnMut(GlobalError)) {
        let gerror = read32(self.base, reg::GERROR);
        let gerrorn = read32(self.base, reg::GERRORN);
        let errors = GlobalErrors::decode(gerror, gerrorn);
        if errors.is_empty() {
            return;
        }
        if errors.contains(GlobalError::CommandQueue) {
            let q = self.queues.lock();
            let cons = read32(self.base, reg::CMDQ_CONS);
            let slot = q.cmdq_memory + u64::from(q.cmdq.index(cons)) * COMMAND_BYTES;
            // SAFETY: the index is below the queue's entry count: the slot lies in the
            // command queue's own pool memory, where the SMMU stopped.
            unsafe {
                (slot as *mut [u64; 2]).write_volatile(Command::sync(SyncSignal::None).words())
            };
            publish_stores();
        }
        errors.iter().for_each(&mut log);
        write32(self.base, reg::GERRORN, errors.acknowledgement());
    }

    /// Reads every pending event record, hands each to `log`, and acknowledges them.
    pub fn drain_events(&self, mut log: impl FnMut(&SmmuEvent)) -> usize {
        let q = self.queues.lock();
        let evtq = q.evtq;
        let mut cons = read32(self.base, reg::EVTQ_CONS);
        let prod = read32(self.base, reg::EVTQ_PROD);
        let mut drained = 0;
        while !evtq.is_empty(prod, cons) {
            let slot = q.evtq_memory + u64::from(evtq.index(cons)) * EVENT_BYTES;
            // SAFETY: the index is below the queue's entry count, so the 32-byte record
            // lies in the event queue's own pool memory, written by the SMMU before it
            // moved EVTQ_PROD past it.
            let record = unsafe { (slot as *const [u64; 4]).read_volatile() };
            log(&SmmuEvent::decode(record));
            cons = evtq.advance(cons, 1);
            drained += 1;
        }
        write32(self.base, reg::EVTQ_CONS, cons);
        self.counters
            .events
            .fetch_add(drained as u64, Ordering::Relaxed);
        drained
    }
}

//! The SMMUv3 (Arm IHI 0070), portable half: devices assigned to a guest translate
//! through the guest's own stage-2 tables, the very tables the CPU walks (issue 17).
//!
//! Each assigned StreamID gets a stage-2-only STE whose S2TTB is the guest's stage-2
//! root, whose S2VMID is the guest's VMID and whose walk configuration is decoded from
//! the guest's VTCR_EL2 ([`ste::Stage2Config::from_vtcr`]), so the CPU and the SMMU
//! cannot disagree about granule, T0SZ, start level, concatenated roots, PS or walk
//! attributes. Every other StreamID aborts. Every live stage-2 change the CPU
//! invalidates is mirrored by SMMU commands in the same order and completed by a
//! CMD_SYNC before the engine goes on. Faults come back as event records, decoded for
//! the log.
//!
//! Nothing here touches the SMMU: the EL2 layer does the MMIO, owns the memory of the
//! stream table and the queues, and follows the protocol below.
//!
//! | file | job |
//! |---|---|
//! | `registers.rs` | register offsets and control values; [`registers::SmmuFeatures`] from IDR0/1/3/5 and the check that says why an SMMU cannot serve a guest |
//! | `stream_table.rs` | the stream table's shape (linear up to 256 STEs, else two-level with SPLIT 8), sizes, alignment, STRTAB_BASE(_CFG), L1 descriptors, where the STE of a StreamID lives |
//! | `ste.rs` | the abort and stage-2 STEs; [`ste::Stage2Config`] from VTCR_EL2, the root and the VMID |
//! | `command.rs` | the 16-byte commands: CFGI_STE, CFGI_ALL, TLBI_S2_IPA (with or without range), TLBI_S12_VMALL, TLBI_NSNH_ALL, TLBI_EL2_ALL, SYNC |
//! | `invalidation.rs` | the commands that mirror one CPU [`pgtable::TlbInvalidation`] |
//! | `queue.rs` | PROD/CONS arithmetic with wrap bits, CMDQ_CONS.ERR, event-queue overflow, queue base registers, CMD_SYNC completion |
//! | `event.rs` | decoding 32-byte event records into a log line |
//! | `driver.rs` | (EL2) one SMMU brought up: registers, stream table and queues in pool memory, STEs attached, commands completed by CMD_SYNC, events drained |
//! | `setup.rs` | (EL2) which SMMUs are driven, bringing them up for a guest, their interrupts and events |
//! | `global_error.rs` | GERROR/GERRORN: active errors, what to do, the acknowledgement |
//!
//! # Bring-up (Linux's `arm_smmu_device_reset` order)
//!
//! 1. Read IDR0, IDR1, IDR3, IDR5: `SmmuFeatures::decode(..).with_idr3(..)`; build each
//!    guest's `Stage2Config::from_vtcr(vtcr, root, vmid)` and `for_smmu(..)`, which
//!    runs `SmmuFeatures::check`. An SMMU that fails is left alone and its devices are
//!    not assigned. If IDR3.BBML < 2, the guests' stage-2 tables must use
//!    `SplitStrategy::BreakBeforeMake` even when the CPUs have FEAT_BBM level 2
//!    (`SmmuFeatures::supports_bbml2`).
//! 2. GBPA: wait for UPDATE = 0, write `ABORT | UPDATE`, wait for UPDATE = 0, so that
//!    while SMMUEN = 0 nothing bypasses.
//! 3. CR0 = 0, wait until CR0ACK reads 0. IRQ_CTRL = 0, wait for IRQ_CTRLACK.
//! 4. Memory (zeroed, then filled, then made visible with a DSB before the registers
//!    below point at it): the stream table ([`stream_table::StreamTableLayout::choose`],
//!    every STE [`ste::Ste::abort`] except the assigned ones, every L1 descriptor
//!    [`stream_table::L1_INVALID`] except the groups in use), the command queue
//!    (16-byte entries) and the event queue (32-byte entries), each aligned to its size.
//! 5. CR1 = [`registers::cr1::COHERENT_WB`], CR2 = [`registers::cr2::VALUE`],
//!    STRTAB_BASE, STRTAB_BASE_CFG, CMDQ_BASE, CMDQ_PROD = CMDQ_CONS = 0, EVTQ_BASE,
//!    EVTQ_PROD = EVTQ_CONS = 0 (page 1: 0x100A8, 0x100AC).
//! 6. CR0 = EVTQEN | CMDQEN, wait for CR0ACK.
//! 7. Commands: CMD_CFGI_ALL, CMD_TLBI_EL2_ALL if IDR0.HYP, CMD_TLBI_NSNH_ALL, CMD_SYNC;
//!    wait for the SYNC (nothing cached from before the hypervisor survives).
//! 8. IRQ_CTRL = GERROR_IRQEN | EVTQ_IRQEN (wired interrupts from the DT), wait for
//!    IRQ_CTRLACK.
//! 9. CR0 = EVTQEN | CMDQEN | SMMUEN, wait for CR0ACK. GBPA stays ABORT.
//!
//! # Issuing commands
//!
//! Under one lock per SMMU: wait until [`queue::QueueGeometry::free`] has room, write
//! the command words at the index of PROD, DSB (the SMMU must observe the entries, and
//! the table stores before them, before it sees PROD), write the new PROD. To complete:
//! append `Command::sync(SyncSignal::None)` (or `Sev` with IDR0.SEV, then WFE between
//! polls) and poll CMDQ_CONS until `has_consumed(cons, sync_position)`; on every poll
//! also read GERROR and stop waiting if CMDQ_ERR is active ([`global_error`]), with a
//! timeout that reports the SMMU as broken rather than spinning forever.
//!
//! # Assigning a StreamID to a guest, and taking it back
//!
//! Linux's sequence for a live STE: write words 1-7 of [`ste::Ste::stage2`],
//! CMD_CFGI_STE(sid, leaf) + CMD_SYNC, then word 0 with one 64-bit store,
//! CMD_CFGI_STE + CMD_SYNC. Taking a stream back: word 0 = `Ste::abort()` word 0 (one
//! store: an abort STE ignores the other words), CMD_CFGI_STE + CMD_SYNC. A new L2 table
//! in a two-level table: fill it, DSB, write its L1 descriptor, CMD_CFGI_STE with
//! leaf = false (or CMD_CFGI_ALL) + CMD_SYNC. Before a guest's VMID or stage-2 tables
//! are reused for anything else: CMD_TLBI_S12_VMALL(vmid) + CMD_SYNC.
//!
//! # Every stage-2 change
//!
//! The engine's `Hardware` for a guest that has devices behind an SMMU:
//!
//! - `tlbi(op)`: the CPU TLBI, then queue [`invalidation::commands_for`]`(op, vmid,
//!   features.range_invalidation, ..)`: same order as the CPU's, nothing for
//!   `Stage1OfVmid`. Batches may go in several parts if the queue is small.
//! - `dsb(Barrier::FullIsh)` after TLBIs: the CPU's DSB, then CMD_SYNC and wait for it.
//!   The engine makes broken entries valid again and frees unlinked table pages only
//!   after that DSB, so no table page is freed, and no entry remade, while the SMMU may
//!   still hold the old translation or walk through the old table.
//! - `dsb(Barrier::StoresIsh)` before TLBIs: the CPU's DSB ISHST is enough for a
//!   coherent SMMU (IDR0.COHACC, required) to observe the new descriptors before the
//!   commands that follow.
//!
//! A device may fault while an entry is transiently invalid under break-before-make
//! (F_TRANSLATION in `OpReport::transiently_unmapped`): stage-2 faults terminate the
//! transaction (S2S = 0; there is no retry for DMA), so prefer FEAT_BBM level 2 where
//! both the CPUs and the SMMU have it, and log such faults with the engine's report.

pub mod command;
#[cfg(target_os = "none")]
pub mod driver;
pub mod event;
pub mod global_error;
pub mod invalidation;
pub mod queue;
pub mod registers;
#[cfg(target_os = "none")]
pub mod setup;
pub mod ste;
pub mod stream_table;

//! `vgic_sgi_between_vcpus_arrives`: the boot vCPU writes a word, then (DSB, SGI) sends
//! an SGI to the secondary, which readies its own redistributor and CPU interface,
//! acknowledges the SGI and reads the word. The handshake is the statics below, as in
//! the other two-vCPU tests; the secondary is started for the test and powers off after.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::Env;
use super::console::say;
use super::cpu::{self, Deadline};
use super::gic::{self, Gic, end_of_interrupt, wait_for_interrupt};
use super::secondary::{self, Job};
use super::vgic_sgi::{MIDDLE_PRIORITY, QUIET_MS, quiet_gic, take_one};
use crate::abi::AFFINITY_OFF;
use crate::gicv3::SPURIOUS;
use crate::report::{Failure, PREFIX, TestResult};
use crate::{ensure, failed, text};

const CROSS_SGI: u32 = 5;
/// How long the secondary may take to start and ready its GIC, and then to see the SGI.
const READY_MS: u64 = 2_000;
const RECEIVE_MS: u64 = 2_000;

/// The secondary's progress.
const IDLE: u32 = 0;
const READY: u32 = 1;
const DONE: u32 = 2;
const SETUP_FAILED: u32 = 3;

static STATE: AtomicU32 = AtomicU32::new(IDLE);
/// Written by the boot vCPU before the SGI; what the secondary must read after it.
static PAYLOAD: AtomicU64 = AtomicU64::new(0);
/// What the secondary saw: the INTID acknowledged, the payload then, and ICC_IAR1_EL1
/// after the EOI.
static SEEN_INTID: AtomicU32 = AtomicU32::new(0);
static SEEN_PAYLOAD: AtomicU64 = AtomicU64::new(0);
static AFTER_EOI: AtomicU32 = AtomicU32::new(0);
/// CNTVCT when the secondary's acknowledgement returned (one virtual counter per guest).
static ACK_TICKS: AtomicU64 = AtomicU64::new(0);

fn wait_for_state(want: u32, ms: u64) -> u32 {
    let deadline = Deadline::after_ms(ms);
    loop {
        let state = STATE.load(Ordering::Acquire);
        if state == want || state == SETUP_FAILED || deadline.passed() {
            return state;
        }
        core::hint::spin_loop();
    }
}

pub fn vgic_sgi_between_vcpus_arrives(env: &Env) -> TestResult {
    let target = secondary::other_cpu(env)?;
    let mmu = secondary::mmu(env)?;
    quiet_gic(env)?;
    gic::publish(&env.info.gic);
    STATE.store(IDLE, Ordering::Relaxed);
    PAYLOAD.store(0, Ordering::Relaxed);
    secondary::start(&mmu, target, Job::ReceiveSgi)?;
    let state = wait_for_state(READY, READY_MS);
    if state != READY {
        let off = secondary::wait_off(target, 2_000);
        return Err(failed!(
            "the secondary {target:#x} {} (AFFINITY_INFO then {off})",
            if state == SETUP_FAILED {
                "could not ready its GIC (its line above says why)"
            } else {
                "did not ready its GIC within 2 s"
            }
        ));
    }
    let payload = 0x5eed_0000_0000_0000 | (cpu::ticks() & 0xffff_ffff);
    PAYLOAD.store(payload, Ordering::Relaxed);
    let sent = cpu::ticks();
    gic::send_sgi_after_stores(target, CROSS_SGI)?;
    let state = wait_for_state(DONE, RECEIVE_MS + 1_000);
    let mine = take_one(QUIET_MS);
    let off = secondary::wait_off(target, 2_000);
    ensure!(
        state == DONE,
        "the secondary did not finish within {} ms of the SGI",
        RECEIVE_MS + 1_000
    );
    let (seen, seen_payload, after) = (
        SEEN_INTID.load(Ordering::Relaxed),
        SEEN_PAYLOAD.load(Ordering::Relaxed),
        AFTER_EOI.load(Ordering::Relaxed),
    );
    ensure!(
        seen != SPURIOUS,
        "SGI {CROSS_SGI} to {target:#x} never arrived there: its ICC_IAR1_EL1 read 1023 for {RECEIVE_MS} ms"
    );
    ensure!(
        seen == CROSS_SGI,
        "the secondary acknowledged INTID {seen}, want SGI {CROSS_SGI}"
    );
    ensure!(
        seen_payload == payload,
        "after acknowledging the SGI the secondary read {seen_payload:#x}, not the {payload:#x} written before it"
    );
    ensure!(
        after == SPURIOUS,
        "after its EOI the secondary's ICC_IAR1_EL1 acknowledged INTID {after}, want 1023"
    );
    ensure!(
        mine == SPURIOUS,
        "the sender acknowledged INTID {mine}: the SGI to {target:#x} came here too"
    );
    ensure!(
        off == AFFINITY_OFF,
        "AFFINITY_INFO({target:#x}) still {off} 2 s after the secondary's CPU_OFF"
    );
    let took = ACK_TICKS.load(Ordering::Relaxed).wrapping_sub(sent);
    Ok(text!(
        "SGI {CROSS_SGI} from {:#x} to {target:#x} acknowledged there {} us after the send, with the word written before it",
        env.own_mpidr,
        crate::gicv3::ticks_to_us(took, cpu::tick_rate())
    ))
}

/// The secondary's job ([`Job::ReceiveSgi`]).
pub fn secondary_receive_sgi() {
    let gic = match Gic::init(&gic::published()) {
        Ok(gic) => gic,
        Err(Failure::Failed(why) | Failure::Skipped(why)) => {
            say!("{PREFIX}vgic_sgi_between_vcpus_arrives: secondary: {why}");
            STATE.store(SETUP_FAILED, Ordering::Release);
            return;
        }
    };
    gic.ready_private(1 << CROSS_SGI, |_| MIDDLE_PRIORITY);
    STATE.store(READY, Ordering::Release);
    let intid = wait_for_interrupt(&Deadline::after_ms(RECEIVE_MS));
    let acknowledged = cpu::ticks();
    // An MRS is not ordered before later loads by the memory model: the ISB keeps the
    // payload load from being performed before the acknowledgement.
    cpu::isb();
    let payload = PAYLOAD.load(Ordering::Acquire);
    if intid != SPURIOUS {
        end_of_interrupt(intid);
    }
    let after = take_one(QUIET_MS);
    gic.disable_private(1 << CROSS_SGI);
    SEEN_INTID.store(intid, Ordering::Relaxed);
    SEEN_PAYLOAD.store(payload, Ordering::Relaxed);
    AFTER_EOI.store(after, Ordering::Relaxed);
    ACK_TICKS.store(acknowledged, Ordering::Relaxed);
    STATE.store(DONE, Ordering::Release);
}

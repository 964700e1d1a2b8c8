//! Directed delivery scenarios: interrupts through fold, flush and a simulated CPU
//! interface.

use super::*;

/// A guest with `count` emulated SPIs from INTID 32, one vCPU, `lrs` list registers.
fn many_spis(count: u32, lrs: usize) -> Vgic {
    let mut config = standard_config(1, lrs);
    config.spis = (32..32 + count)
        .map(|intid| SpiAssignment {
            intid,
            source: SpiSource::Emulated,
        })
        .collect();
    config.hardware_ppis.clear();
    Vgic::new(config).unwrap()
}

fn enable(vgic: &mut Vgic, vcpu: usize, intid: u32) {
    set_bit(vgic, vcpu, GICD_ISENABLER, intid);
}

/// More pending interrupts than list registers: all are delivered, once each, in
/// priority order, with the underflow interrupt requested while some wait.
#[test]
fn a_flood_is_delivered_in_priority_order() {
    const COUNT: u32 = 20;
    const LRS: usize = 4;
    let mut vgic = many_spis(COUNT, LRS);
    enable_groups(&mut vgic);
    for i in 0..COUNT {
        let intid = 32 + i;
        // Priorities 0x00..0x98 in a scrambled order.
        set_priority(&mut vgic, 0, intid, ((i * 7) % COUNT) as u8 * 8);
        enable(&mut vgic, 0, intid);
        let effects = set_bit(&mut vgic, 0, GICD_ISPENDR, intid);
        assert!(effects.kicks().contains(0));
    }
    let mut cpu = CpuInterface::new(LRS);
    let mut order = Vec::new();
    loop {
        let outcome = cpu.run(&mut vgic, 0);
        let remaining = COUNT as usize - order.len();
        assert_eq!(outcome.waiting, remaining.saturating_sub(LRS));
        assert_eq!(outcome.underflow_interrupt, remaining > LRS);
        assert_eq!(vgic.has_queued(0), remaining > LRS);
        if remaining == 0 {
            break;
        }
        while let Some(lr) = cpu.acknowledge() {
            order.push(lr.vintid);
            cpu.deactivate(lr.vintid);
        }
    }
    let priority = |intid: u32| ((intid - 32) * 7) % COUNT;
    let mut expected: Vec<u32> = (32..32 + COUNT).collect();
    expected.sort_by_key(|&intid| priority(intid));
    assert_eq!(order, expected);
    assert_eq!(vgic.stats().max_queue_depth, u64::from(COUNT) - LRS as u64);
    assert!(vgic.stats().underflow_requests >= 4);
}

/// An edge interrupt that fires again while the guest handles it is pending again: the
/// guest sees it twice, not once, not three times.
#[test]
fn an_edge_latched_during_handling_is_delivered_again() {
    let mut vgic = standard(1, 2);
    enable_groups(&mut vgic);
    let (config, _) = bit_of(GICD_ICFGR, UART_SPI * 2);
    dist_write(&mut vgic, config, 1 << 3);
    enable(&mut vgic, 0, UART_SPI);
    let mut effects = Effects::new();
    vgic.set_line_level(UART_SPI, true, &mut effects);
    let mut cpu = CpuInterface::new(2);
    cpu.run(&mut vgic, 0);
    assert_eq!(cpu.acknowledge().map(|lr| lr.vintid), Some(UART_SPI));
    vgic.set_line_level(UART_SPI, false, &mut effects);
    vgic.set_line_level(UART_SPI, true, &mut effects);
    vgic.set_line_level(UART_SPI, true, &mut effects);
    assert!(vgic.has_queued(0));
    cpu.run(&mut vgic, 0);
    assert_eq!(cpu.state_of(UART_SPI), Some(LrState::PendingActive));
    assert_eq!(
        cpu.kind_of(UART_SPI),
        Some(LrKind::Software {
            eoi_maintenance: false
        })
    );
    cpu.deactivate(UART_SPI);
    assert_eq!(cpu.acknowledge().map(|lr| lr.vintid), Some(UART_SPI));
    cpu.deactivate(UART_SPI);
    assert_eq!(cpu.drain(&mut vgic, 0), Vec::<u32>::new());
}

/// A level interrupt keeps coming while its line is high, and its list register asks for
/// the EOI maintenance interrupt so that the line is re-sampled at once.
#[test]
fn a_level_interrupt_repeats_while_the_line_is_high() {
    let mut vgic = standard(1, 4);
    enable_groups(&mut vgic);
    enable(&mut vgic, 0, UART_SPI);
    let mut effects = Effects::new();
    vgic.set_line_level(UART_SPI, true, &mut effects);
    assert!(effects.kicks().contains(0));
    let mut cpu = CpuInterface::new(4);
    for _ in 0..3 {
        cpu.run(&mut vgic, 0);
        assert_eq!(
            cpu.kind_of(UART_SPI),
            Some(LrKind::Software {
                eoi_maintenance: true
            })
        );
        assert_eq!(cpu.acknowledge().map(|lr| lr.vintid), Some(UART_SPI));
        cpu.deactivate(UART_SPI);
    }
    vgic.set_line_level(UART_SPI, false, &mut effects);
    cpu.run(&mut vgic, 0);
    assert_eq!(cpu.acknowledge(), None);
    // Dropped before the guest acknowledged it: gone from the list register.
    vgic.set_line_level(UART_SPI, true, &mut effects);
    cpu.run(&mut vgic, 0);
    let mut effects = Effects::new();
    vgic.set_line_level(UART_SPI, false, &mut effects);
    assert!(
        effects.kicks().contains(0),
        "the list register must be taken back"
    );
    cpu.run(&mut vgic, 0);
    assert_eq!(cpu.state_of(UART_SPI), None);
}

/// Disabling takes a pending interrupt out of the list registers (and kicks); enabling
/// it again delivers it.
#[test]
fn a_disabled_interrupt_waits_in_the_distributor() {
    let mut vgic = standard(1, 4);
    enable_groups(&mut vgic);
    enable(&mut vgic, 0, 5);
    set_bit(&mut vgic, 0, GICD_ISPENDR, 5);
    let mut cpu = CpuInterface::new(4);
    cpu.run(&mut vgic, 0);
    assert_eq!(cpu.state_of(5), Some(LrState::Pending));
    let effects = set_bit(&mut vgic, 0, GICD_ICENABLER, 5);
    assert!(effects.kicks().contains(0));
    cpu.run(&mut vgic, 0);
    assert_eq!(cpu.state_of(5), None);
    assert_eq!(redist_read(&mut vgic, 0, SGI_BASE + GICD_ISPENDR), 1 << 5);
    let effects = set_bit(&mut vgic, 0, GICD_ISENABLER, 5);
    assert!(effects.kicks().contains(0));
    assert_eq!(cpu.drain(&mut vgic, 0), [5]);
}

/// GICD_CTLR's group enables gate delivery.
#[test]
fn a_disabled_group_is_not_forwarded() {
    let mut vgic = standard(1, 4);
    enable(&mut vgic, 0, 2);
    set_bit(&mut vgic, 0, GICD_ISPENDR, 2);
    let mut cpu = CpuInterface::new(4);
    cpu.run(&mut vgic, 0);
    assert_eq!(cpu.acknowledge(), None);
    assert!(!vgic.has_queued(0));
    let effects = dist_write(&mut vgic, GICD_CTLR, 0b01);
    assert!(effects.is_empty(), "SGI 2 is in Group 1");
    let effects = dist_write(&mut vgic, GICD_CTLR, 0b10);
    assert!(effects.kicks().contains(0));
    cpu.run(&mut vgic, 0);
    let lr = cpu.acknowledge().unwrap();
    assert_eq!((lr.vintid, lr.group1), (2, true));
}

/// A hardware-linked SPI arrives as a HW = 1 entry naming the physical INTID, and is
/// never pending and active in one list register: a new pending state goes to the
/// physical distributor.
#[test]
fn a_hardware_spi_is_delivered_with_its_physical_intid() {
    let mut vgic = standard(2, 4);
    enable_groups(&mut vgic);
    enable(&mut vgic, 0, DEVICE_SPI);
    set_priority(&mut vgic, 0, DEVICE_SPI, 0xa7);
    let mut effects = Effects::new();
    vgic.hardware_fired(1, DEVICE_PHYSICAL, &mut effects)
        .unwrap();
    assert!(
        effects.kicks().contains(0),
        "routed to vCPU 0, whoever took it"
    );
    let mut cpu = CpuInterface::new(4);
    cpu.run(&mut vgic, 0);
    let lr = cpu.acknowledge().unwrap();
    assert_eq!(lr.vintid, DEVICE_SPI);
    assert_eq!(lr.priority, 0xa0, "five priority bits");
    assert_eq!(
        lr.kind,
        LrKind::Hardware {
            pintid: DEVICE_PHYSICAL
        }
    );
    let effects = set_bit(&mut vgic, 1, GICD_ISPENDR, DEVICE_SPI);
    cpu.run(&mut vgic, 0);
    assert_eq!(cpu.state_of(DEVICE_SPI), Some(LrState::Active));
    assert_eq!(
        effects.iter().collect::<Vec<_>>(),
        [Effect::HardwarePending {
            physical_intid: DEVICE_PHYSICAL,
            vcpu: 0,
            pending: true
        }]
    );
    assert_eq!(vgic.stats().hardware_fires, 1);
}

/// The guest pends an idle hardware-linked interrupt: it becomes pending at once and the
/// physical one is made active, to be deactivated through the list register; clearing
/// the pending state releases the physical activation.
#[test]
fn guest_pending_writes_on_hardware_interrupts_keep_the_physical_one_active() {
    let mut vgic = standard(1, 4);
    let effects = set_bit(&mut vgic, 0, GICD_ISPENDR, OTHER_DEVICE_SPI);
    let active = |active| Effect::HardwareActive {
        physical_intid: OTHER_DEVICE_PHYSICAL,
        vcpu: 0,
        active,
    };
    assert_eq!(effects.iter().collect::<Vec<_>>(), [active(true)]);
    assert!(set_bit(&mut vgic, 0, GICD_ISPENDR, OTHER_DEVICE_SPI).is_empty());
    let effects = set_bit(&mut vgic, 0, GICD_ICPENDR, OTHER_DEVICE_SPI);
    let pending = Effect::HardwarePending {
        physical_intid: OTHER_DEVICE_PHYSICAL,
        vcpu: 0,
        pending: false,
    };
    assert_eq!(effects.iter().collect::<Vec<_>>(), [pending, active(false)]);
}

/// A timer PPI fired on the CPU running vCPU 1 belongs to vCPU 1 only.
#[test]
fn a_hardware_ppi_goes_to_the_vcpu_that_took_it() {
    let mut vgic = standard(2, 4);
    enable_groups(&mut vgic);
    for vcpu in 0..2 {
        enable(&mut vgic, vcpu, TIMER_PPI);
    }
    let mut effects = Effects::new();
    vgic.hardware_fired(1, TIMER_PPI, &mut effects).unwrap();
    assert_eq!(effects.kicks().iter().collect::<Vec<_>>(), [1]);
    let mut cpus = [CpuInterface::new(4), CpuInterface::new(4)];
    cpus[0].run(&mut vgic, 0);
    cpus[1].run(&mut vgic, 1);
    assert_eq!(cpus[0].state_of(TIMER_PPI), None);
    assert_eq!(
        cpus[1].kind_of(TIMER_PPI),
        Some(LrKind::Hardware { pintid: TIMER_PPI })
    );
}

/// With one list register, a higher-priority interrupt evicts a pending lower one, but
/// never an active one.
#[test]
fn only_pending_entries_are_evicted() {
    let mut vgic = standard(1, 1);
    enable_groups(&mut vgic);
    for (intid, priority) in [(1, 0x80), (2, 0x40), (3, 0x20)] {
        enable(&mut vgic, 0, intid);
        set_priority(&mut vgic, 0, intid, priority);
    }
    let mut cpu = CpuInterface::new(1);
    set_bit(&mut vgic, 0, GICD_ISPENDR, 1);
    cpu.run(&mut vgic, 0);
    assert_eq!(cpu.state_of(1), Some(LrState::Pending));
    set_bit(&mut vgic, 0, GICD_ISPENDR, 2);
    let outcome = cpu.run(&mut vgic, 0);
    assert_eq!(
        (cpu.state_of(2), outcome.waiting),
        (Some(LrState::Pending), 1)
    );
    assert_eq!(cpu.acknowledge().map(|lr| lr.vintid), Some(2));
    set_bit(&mut vgic, 0, GICD_ISPENDR, 3);
    let outcome = cpu.run(&mut vgic, 0);
    assert_eq!(
        cpu.state_of(2),
        Some(LrState::Active),
        "active: not evicted"
    );
    assert_eq!(outcome.waiting, 2);
    assert!(outcome.underflow_interrupt);
    cpu.deactivate(2);
    assert_eq!(cpu.drain(&mut vgic, 0), [3, 1]);
}

/// An SPI re-routed while it sits in vCPU 0's list register is not put in vCPU 1's too;
/// vCPU 0's next flush lets go of it and names vCPU 1 to kick.
#[test]
fn a_rerouted_spi_moves_without_being_in_two_list_registers() {
    let mut vgic = standard(2, 4);
    enable_groups(&mut vgic);
    enable(&mut vgic, 0, SPARE_SPI);
    set_bit(&mut vgic, 0, GICD_ISPENDR, SPARE_SPI);
    let mut cpus = [CpuInterface::new(4), CpuInterface::new(4)];
    cpus[0].run(&mut vgic, 0);
    assert_eq!(cpus[0].state_of(SPARE_SPI), Some(LrState::Pending));
    let effects = dist_write(&mut vgic, GICD_IROUTER + 8 * u64::from(SPARE_SPI), mpidr(1));
    assert!(effects.kicks().contains(0));
    cpus[1].run(&mut vgic, 1);
    assert_eq!(cpus[1].state_of(SPARE_SPI), None);
    let outcome = cpus[0].run(&mut vgic, 0);
    assert_eq!(cpus[0].state_of(SPARE_SPI), None);
    assert!(outcome.kick.contains(1));
    assert!(vgic.has_queued(1));
    assert_eq!(cpus[1].drain(&mut vgic, 1), [SPARE_SPI]);
}

/// The guest clears a pending state a list register holds: the fold does not bring it
/// back. It sets the active state off while a list register holds it active: the fold
/// keeps the written value.
#[test]
fn guest_writes_win_over_stale_list_registers() {
    let mut vgic = standard(1, 4);
    enable_groups(&mut vgic);
    enable(&mut vgic, 0, 6);
    set_bit(&mut vgic, 0, GICD_ISPENDR, 6);
    let mut cpu = CpuInterface::new(4);
    cpu.run(&mut vgic, 0);
    let effects = set_bit(&mut vgic, 0, GICD_ICPENDR, 6);
    assert!(effects.kicks().contains(0));
    cpu.run(&mut vgic, 0);
    assert_eq!(cpu.state_of(6), None);

    set_bit(&mut vgic, 0, GICD_ISPENDR, 6);
    cpu.run(&mut vgic, 0);
    cpu.acknowledge();
    set_bit(&mut vgic, 0, GICD_ICACTIVER, 6);
    cpu.run(&mut vgic, 0);
    assert_eq!(cpu.state_of(6), None);
    assert_eq!(redist_read(&mut vgic, 0, SGI_BASE + GICD_ISACTIVER), 0);
}

/// An interrupt made active by the guest gets a list register so it can be deactivated.
#[test]
fn an_active_interrupt_is_given_a_list_register() {
    let mut vgic = standard(1, 4);
    set_bit(&mut vgic, 0, GICD_ISACTIVER, 20);
    assert!(vgic.has_queued(0));
    let mut cpu = CpuInterface::new(4);
    cpu.run(&mut vgic, 0);
    assert_eq!(cpu.state_of(20), Some(LrState::Active));
    cpu.deactivate(20);
    cpu.run(&mut vgic, 0);
    assert_eq!(redist_read(&mut vgic, 0, SGI_BASE + GICD_ISACTIVER), 0);
    assert!(!vgic.has_queued(0));
}

#[test]
fn sgis_reach_their_targets_once() {
    let mut vgic = standard(3, 4);
    enable_groups(&mut vgic);
    for vcpu in 0..3 {
        enable(&mut vgic, vcpu, 7);
    }
    let mut effects = Effects::new();
    // Aff1 = 1, targets Aff0 0, 2 and 5 (no such vCPU), SGI 7.
    let value = (1 << 16) | (7 << 24) | 0b10_0101;
    let delivery = vgic.generate_sgi(1, value, SgiRegister::Group1, &mut effects);
    assert_eq!(
        delivery,
        SgiDelivery {
            delivered: 2,
            dropped: 1
        }
    );
    assert_eq!(effects.kicks().iter().collect::<Vec<_>>(), [0, 2]);
    // Sent again, and by another vCPU, before vCPU 0 acknowledged it: still one.
    vgic.generate_sgi(2, value, SgiRegister::Group1, &mut effects);
    let mut cpus = [
        CpuInterface::new(4),
        CpuInterface::new(4),
        CpuInterface::new(4),
    ];
    assert_eq!(cpus[0].drain(&mut vgic, 0), [7]);
    assert_eq!(cpus[1].drain(&mut vgic, 1), Vec::<u32>::new());
    // Broadcast: everyone but the sender.
    let mut effects = Effects::new();
    let delivery = vgic.generate_sgi(0, (1 << 40) | (7 << 24), SgiRegister::Group1, &mut effects);
    assert_eq!(
        delivery,
        SgiDelivery {
            delivered: 2,
            dropped: 0
        }
    );
    assert_eq!(cpus[0].drain(&mut vgic, 0), Vec::<u32>::new());
    assert_eq!(cpus[1].drain(&mut vgic, 1), [7]);
    let stats = vgic.stats();
    assert_eq!((stats.sgis_delivered, stats.sgi_targets_dropped), (6, 2));
}

#[test]
fn group_0_registers_only_send_group_0_sgis() {
    let mut vgic = standard(2, 4);
    let value = (1 << 16) | (3 << 24) | 0b10;
    let mut effects = Effects::new();
    for kind in [SgiRegister::Group0, SgiRegister::AlternateGroup1] {
        let delivery = vgic.generate_sgi(0, value, kind, &mut effects);
        assert_eq!(
            delivery,
            SgiDelivery {
                delivered: 0,
                dropped: 1
            }
        );
    }
    assert_eq!(vgic.stats().sgis_wrong_group, 2);
    redist_write(&mut vgic, 1, SGI_BASE + GICD_IGROUPR, 0xffff_fff7);
    let delivery = vgic.generate_sgi(0, value, SgiRegister::Group0, &mut effects);
    assert_eq!(delivery.delivered, 1);
    assert_eq!(redist_read(&mut vgic, 1, SGI_BASE + GICD_ISPENDR), 1 << 3);
}

#[test]
fn sgi_range_selector_and_upper_affinities_are_matched() {
    let mut config = standard_config(2, 4);
    config.vcpu_mpidrs = std::vec![0x5_0003_0200, 0x5_0003_0231];
    let mut vgic = Vgic::new(config).unwrap();
    let mut effects = Effects::new();
    // Aff3 5, Aff2 3, Aff1 2, RS 3 (Aff0 48..64), TargetList bit 1: Aff0 0x31.
    let value = (5 << 48) | (3 << 44) | (3 << 32) | (2 << 16) | 0b10;
    let delivery = vgic.generate_sgi(0, value, SgiRegister::Group1, &mut effects);
    assert_eq!(
        delivery,
        SgiDelivery {
            delivered: 1,
            dropped: 0
        }
    );
    assert_eq!(redist_read(&mut vgic, 1, SGI_BASE + GICD_ISPENDR), 1);
}

#[test]
fn a_vcpu_coming_online_gets_its_hardware_state() {
    let mut vgic = standard(2, 4);
    enable(&mut vgic, 1, TIMER_PPI);
    dist_write(
        &mut vgic,
        GICD_IROUTER + 8 * u64::from(DEVICE_SPI),
        mpidr(1),
    );
    let mut effects = Effects::new();
    vgic.hardware_fired(1, TIMER_PPI, &mut effects).unwrap();
    let mut effects = Effects::new();
    vgic.vcpu_came_online(1, &mut effects);
    let all: Vec<Effect> = effects.iter().collect();
    assert!(all.contains(&Effect::HardwareEnable {
        physical_intid: TIMER_PPI,
        vcpu: 1,
        enabled: true
    }));
    assert!(all.contains(&Effect::HardwareActive {
        physical_intid: TIMER_PPI,
        vcpu: 1,
        active: true
    }));
    assert!(all.contains(&Effect::HardwareActive {
        physical_intid: PMU_PPI,
        vcpu: 1,
        active: false
    }));
    assert!(all.contains(&Effect::HardwareRoute {
        physical_intid: DEVICE_PHYSICAL,
        vcpu: 1
    }));
    assert!(
        !all.contains(&Effect::Kick { vcpu: 1 }),
        "groups are disabled"
    );
}

/// Flush reports which list registers changed, and rewrites nothing needlessly.
#[test]
fn flush_reports_changed_list_registers() {
    let mut vgic = standard(1, 4);
    enable_groups(&mut vgic);
    enable(&mut vgic, 0, 9);
    set_bit(&mut vgic, 0, GICD_ISPENDR, 9);
    let mut cpu = CpuInterface::new(4);
    cpu.lrs[3] = 0xdead;
    let outcome = cpu.run(&mut vgic, 0);
    assert_eq!(outcome.changed, 0b1001);
    assert_eq!(cpu.run(&mut vgic, 0).changed, 0);
    cpu.acknowledge();
    assert_eq!(
        cpu.run(&mut vgic, 0).changed,
        0,
        "acknowledged: nothing to rewrite"
    );
}

/// A level interrupt the guest deactivated after its line went low leaves an LR with
/// State 0 and EOI 1, which keeps the maintenance interrupt asserted (ICH_EISR_EL2) until
/// the LR is rewritten: the flush must rewrite it, or EL2 takes the maintenance
/// interrupt forever.
#[test]
fn an_eoi_maintenance_lr_is_rewritten_once_deactivated() {
    let mut vgic = standard(1, 4);
    enable_groups(&mut vgic);
    enable(&mut vgic, 0, UART_SPI);
    let mut effects = Effects::new();
    vgic.set_line_level(UART_SPI, true, &mut effects);
    let mut lrs = [0u64; 4];
    vgic.fold_list_registers(0, &lrs);
    vgic.flush_list_registers(0, &mut lrs);
    let slot = lrs
        .iter()
        .position(|&lr| lr & 0xffff_ffff == u64::from(UART_SPI))
        .expect("the UART's interrupt is in a list register");
    const EOI: u64 = 1 << 41;
    const STATE: u64 = 0b11 << 62;
    assert_ne!(lrs[slot] & EOI, 0);
    // The guest acknowledges it (pending -> active), reads the UART (the line drops
    // while the interrupt is active), then deactivates it: State 0, EOI still 1.
    lrs[slot] = (lrs[slot] & !STATE) | (0b10 << 62);
    vgic.fold_list_registers(0, &lrs);
    vgic.set_line_level(UART_SPI, false, &mut effects);
    let outcome = vgic.flush_list_registers(0, &mut lrs);
    lrs[slot] &= !STATE;
    // (An exit with the LR still active may have happened in between.)
    let before = lrs[slot];
    vgic.fold_list_registers(0, &lrs);
    let outcome2 = vgic.flush_list_registers(0, &mut lrs);
    assert!(
        lrs[slot] & EOI == 0 && outcome2.changed & (1 << slot) != 0,
        "LR {slot} was {before:#x}, now {:#x}; changed {:#x} (earlier {:#x})",
        lrs[slot],
        outcome2.changed,
        outcome.changed
    );
}

//! Counters of what a guest did to its vGIC, for the hypervisor's reports.

/// The vGIC's counters; [`core::fmt::Display`] prints them as `key=value` pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VgicStats {
    /// SGIs made pending on a target vCPU (one per target).
    pub sgis_delivered: u64,
    /// SGI targets that are not this guest's vCPUs.
    pub sgi_targets_dropped: u64,
    /// SGIs not forwarded because the register cannot generate the SGI's group
    /// (ICC_SGI0R_EL1 or ICC_ASGI1R_EL1 to a Group 1 SGI).
    pub sgis_wrong_group: u64,
    /// Accesses to the LPI registers (GICR_PROPBASER, PENDBASER, SETLPIR, CLRLPIR,
    /// INVLPIR, INVALLR, SYNCR): there are no LPIs, and nothing taking a physical address
    /// is accepted.
    pub refused_lpi_accesses: u64,
    /// Register writes that tried to change an SPI the guest does not own.
    pub refused_foreign_writes: u64,
    /// `set_line_level` calls for an SPI that is not an emulated one of this guest.
    pub refused_line_levels: u64,
    /// `hardware_fired` calls for a physical INTID linked to nothing of this guest.
    pub unlinked_fires: u64,
    /// Hardware-linked interrupts that fired.
    pub hardware_fires: u64,
    /// Calls naming a vCPU the guest does not have.
    pub bad_vcpu_calls: u64,
    /// Folded list registers that did not hold what the last flush wrote.
    pub fold_mismatches: u64,
    /// The most interrupts left waiting for a list register after a flush.
    pub max_queue_depth: u64,
    /// Flushes that asked for the underflow maintenance interrupt.
    pub underflow_requests: u64,
}

impl core::fmt::Display for VgicStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let fields = [
            ("sgis_delivered", self.sgis_delivered),
            ("sgi_targets_dropped", self.sgi_targets_dropped),
            ("sgis_wrong_group", self.sgis_wrong_group),
            ("refused_lpi_accesses", self.refused_lpi_accesses),
            ("refused_foreign_writes", self.refused_foreign_writes),
            ("refused_line_levels", self.refused_line_levels),
            ("unlinked_fires", self.unlinked_fires),
            ("hardware_fires", self.hardware_fires),
            ("bad_vcpu_calls", self.bad_vcpu_calls),
            ("fold_mismatches", self.fold_mismatches),
            ("max_queue_depth", self.max_queue_depth),
            ("underflow_requests", self.underflow_requests),
        ];
        for (index, (key, value)) in fields.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_key_value_pairs() {
        let stats = VgicStats {
            sgis_delivered: 3,
            max_queue_depth: 7,
            ..VgicStats::default()
        };
        let text = std::format!("{stats}");
        assert!(text.starts_with("sgis_delivered=3 sgi_targets_dropped=0 "));
        assert!(text.contains(" max_queue_depth=7 "));
        assert!(text.ends_with("underflow_requests=0"));
        assert!(text.split(' ').all(|pair| pair.split('=').count() == 2));
    }
}

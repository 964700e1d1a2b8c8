//! Hypervisor command line (work in progress).

//! What runs after the boot report.

//! Applies the hypervisor's command line (`/chosen/bootargs`): the log level at once;
//! the rest is returned for the later boot stages. Every diagnostic is logged.

use platform::bootargs::{self, HypervisorArgs, Severity};
use platform::info::PlatformInfo;

use crate::console;

/// The level when `loglevel=` is absent.
const DEFAULT_LEVEL: log::LevelFilter = log::LevelFilter::Info;

pub fn apply(info: &PlatformInfo<'_>) -> HypervisorArgs {
    let parsed = bootargs::parse(info.bootargs.unwrap_or(""));
    console::init_logging(parsed.args.log_level.unwrap_or(DEFAULT_LEVEL));
    for diagnostic in parsed.diagnostics.iter() {
        match diagnostic.severity() {
            Severity::Warning => log::warn!("{diagnostic}"),
            Severity::Error => log::error!("{diagnostic}"),
        }
    }
    parsed.args
}

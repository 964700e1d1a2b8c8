pub struct Args;
pub fn apply(_i: &platform::info::PlatformInfo) -> Args {
    crate::console::init_logging(log::LevelFilter::Debug);
    Args
}

//! Links the guest binary as a static, non-PIE Linux executable entered at `_start`
//! (rust-lld's default layout: read-only, executable and writable segments on their own
//! pages above its default image base). Host builds (the unit tests) are untouched.
use std::env;

fn main() {
    if env::var("CARGO_CFG_TARGET_OS").unwrap_or_default() == "none" {
        for arg in [
            "--entry=_start",
            "-static",
            "--no-dynamic-linker",
            "--build-id=none",
        ] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}

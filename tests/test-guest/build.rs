//! Links the bare-metal guest with its linker script; host builds are untouched.
use std::env;
use std::path::PathBuf;

fn main() {
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let script = manifest.join("../../linker/test-guest.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=src/guest/head.S");
    println!("cargo:rerun-if-changed=src/guest/vectors.S");
    if target_os == "none" {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    }
}

//! scripts/crash-decode.py reads back what hypervisor::crash::record writes, and refuses a
//! damaged record.

use hypervisor::crash::record::{CrashRegisters, write_record};
use qemu_tests::repo_root;
use std::process::Command;

fn decode(bytes: &[u8], name: &str) -> std::process::Output {
    let dir = repo_root().join("target").join("qemu-tests");
    std::fs::create_dir_all(&dir).expect("target dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write record");
    Command::new("python3")
        .arg(repo_root().join("scripts/crash-decode.py"))
        .arg(&path)
        .output()
        .expect("run python3")
}

#[test]
fn decoder_prints_the_message_registers_and_log() {
    let mut region = vec![0u8; 8192];
    let registers = CrashRegisters {
        esr: 0x9600_0045,
        far: 0x1234_5000,
        elr: 0x4020_0abc,
        spsr: 0x3c9,
        regs: [0; 31],
    };
    write_record(
        &mut region,
        2_500_000,
        &registers,
        "hypervisor panic: test",
        (b"[ 1.0] INFO boot\n", b"[ 2.0] ERROR oops\n"),
    )
    .expect("record fits");
    let output = decode(&region, "crash-good.bin");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("message: hypervisor panic: test"),
        "{stdout}"
    );
    assert!(stdout.contains("ESR_EL2 0x0000000096000045"), "{stdout}");
    assert!(stdout.contains("2.500000 s"), "{stdout}");
    assert!(stdout.contains("[ 2.0] ERROR oops"), "{stdout}");
}

#[test]
fn decoder_refuses_a_damaged_record() {
    let mut region = vec![0u8; 4096];
    let len = write_record(
        &mut region,
        1,
        &CrashRegisters::default(),
        "panic",
        (b"log\n", b""),
    )
    .expect("fits");
    region[len - 1] ^= 0xff;
    let output = decode(&region, "crash-damaged.bin");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("checksum mismatch"));
    let output = decode(&[0u8; 512], "crash-empty.bin");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no crash record"));
}

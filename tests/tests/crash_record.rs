//! The crash record end to end: `crashkernel=16M panic_on_boot` makes the hypervisor panic
//! after its boot report; it writes the record into the crash region (mapped at 4K only
//! for that). QEMU stays alive (`-no-shutdown`), QMP `pmemsave` reads the region back and
//! scripts/crash-decode.py must find the panic message and the boot log in it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyp_abi::console::{OUTCOME_PREFIX, Outcome};
use qemu_tests::repo_root;

fn qmp(stream: &mut UnixStream, reader: &mut BufReader<UnixStream>, command: &str) -> String {
    // One write: QEMU acts on a command as soon as its JSON object is complete, so after
    // a `quit` a separate newline could meet a closed socket.
    stream
        .write_all(format!("{command}\n").as_bytes())
        .expect("qmp write");
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("qmp read");
        // Skip asynchronous events; the reply carries "return" or "error".
        if line.contains("\"return\"") || line.contains("\"error\"") || line.is_empty() {
            return line;
        }
    }
}

#[test]
fn a_panic_leaves_a_decodable_record_in_the_crash_region() {
    let root = repo_root();
    let dir = root.join("target").join("qemu-tests");
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("crash-record.log");
    let socket = dir.join("crash-record.qmp");
    let dump = dir.join("crash-record.bin");
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&log);
    let mut child = Command::new(root.join("scripts/run.sh"))
        .args(["--log"])
        .arg(&log)
        .args([
            "none",
            "--append",
            "crashkernel=16M panic_on_boot",
            "--timeout",
            "120",
            "--",
            "-no-shutdown",
            "-qmp",
        ])
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start run.sh");

    // Wait for the outcome line; the crash region's base is in the log.
    let deadline = Instant::now() + Duration::from_secs(110);
    let console = loop {
        let text = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .replace('\r', "");
        if text.contains(OUTCOME_PREFIX) {
            break text;
        }
        assert!(Instant::now() < deadline, "no outcome line:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        console.contains(&Outcome::Failure("hypervisor panic").to_string()),
        "{console}"
    );
    let (base, size) = console
        .lines()
        .find_map(|l| l.split("crash record: ").nth(1))
        .and_then(|rest| {
            let mut words = rest.split_whitespace();
            let size: u64 = words.next()?.parse().ok()?;
            let base = u64::from_str_radix(words.nth(2)?.trim_start_matches("0x"), 16).ok()?;
            Some((base, size))
        })
        .unwrap_or_else(|| panic!("no crash record line:\n{console}"));

    let mut stream = UnixStream::connect(&socket).expect("connect to QMP");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut greeting = String::new();
    reader.read_line(&mut greeting).expect("greeting");
    qmp(
        &mut stream,
        &mut reader,
        r#"{"execute":"qmp_capabilities"}"#,
    );
    let reply = qmp(
        &mut stream,
        &mut reader,
        &format!(
            r#"{{"execute":"pmemsave","arguments":{{"val":{base},"size":{size},"filename":"{}"}}}}"#,
            dump.display()
        ),
    );
    assert!(reply.contains("\"return\""), "pmemsave: {reply}");
    // QEMU may close the socket before it answers: nothing to check.
    let _ = stream.write_all(b"{\"execute\":\"quit\"}\n");
    let _ = child.wait();

    let decoded = Command::new("python3")
        .arg(root.join("scripts/crash-decode.py"))
        .arg(&dump)
        .output()
        .expect("decoder");
    let stdout = String::from_utf8_lossy(&decoded.stdout);
    assert!(
        decoded.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    assert!(stdout.contains("panic_on_boot"), "{stdout}");
    assert!(
        stdout.contains("crash region: ["),
        "the record lacks the boot log:\n{stdout}"
    );
}

//! `hypernix console NAME`: the unit's serial console in this terminal; Ctrl-] detaches.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use hypernix_api::client::Client;
use rustix::termios::{self, Termios};

/// The detach key, Ctrl-] (as in telnet and virsh).
const DETACH: u8 = 0x1d;

/// Puts the terminal in raw mode while alive, if stdin is a terminal.
struct RawMode(Option<Termios>);

impl RawMode {
    fn enable() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        raw.make_raw();
        match termios::tcsetattr(&stdin, termios::OptionalActions::Now, &raw) {
            Ok(()) => RawMode(Some(saved)),
            Err(_) => RawMode(None),
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin(), termios::OptionalActions::Now, saved);
        }
    }
}

/// Attaches to the console until Ctrl-], end of input, or the VM goes away.
pub fn console(client: &Client, name: &str) -> anyhow::Result<ExitCode> {
    // Asking for the console log in the same request makes the daemon check (and audit)
    // the console right, not only the right to read the unit.
    let answer: serde_json::Value = client.request(
        "query($n: String!) { computeUnit(name: $n) { state pid runDir } \
         consoleLog(name: $n, tail: 0) }",
        serde_json::json!({ "n": name }),
        "",
    )?;
    let unit = &answer["computeUnit"];
    if unit["pid"].is_null() {
        bail!(
            "unit {name} is {}; start it with `hypernix unit start {name}`",
            unit["state"].as_str().unwrap_or("?").to_lowercase()
        );
    }
    let run_dir = unit["runDir"].as_str().unwrap_or_default();
    let socket = Path::new(run_dir).join(hypernix_vmm::rundir::CONSOLE_SOCKET);
    let stream = UnixStream::connect(&socket).with_context(|| {
        format!(
            "cannot attach to {}; is another console attached?",
            socket.display()
        )
    })?;
    eprint!("attached to {name}'s console; Ctrl-] detaches\r\n");
    let raw = RawMode::enable();
    let mut from_vm = stream.try_clone()?;
    std::thread::spawn(move || {
        let mut out = std::io::stdout();
        let mut buf = [0u8; 4096];
        while let Ok(n) = from_vm.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    });
    let mut to_vm = stream;
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 1024];
    loop {
        let n = stdin.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(i) = buf[..n].iter().position(|b| *b == DETACH) {
            to_vm.write_all(&buf[..i])?;
            break;
        }
        if to_vm.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    drop(raw);
    eprintln!("\ndetached from {name}");
    Ok(ExitCode::SUCCESS)
}

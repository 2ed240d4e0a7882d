//! A shell on a guest's serial console, through `hypernix console`.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{TestDaemon, bin, wait_until};

/// An attached console; detached (the CLI killed) when dropped.
pub struct Console {
    child: Child,
    seen: Arc<Mutex<Vec<u8>>>,
    count: u32,
}

impl Console {
    /// Attaches to `unit`'s console and waits until its shell answers.
    pub fn open(d: &TestDaemon, unit: &str) -> Console {
        Console::open_within(d, unit, Duration::from_secs(30))
    }

    /// Attaches to `unit`'s console and waits up to `timeout` until its shell answers.
    pub fn open_within(d: &TestDaemon, unit: &str, timeout: Duration) -> Console {
        let mut child = Command::new(bin())
            .args(["--api", &d.api, "console", unit])
            .env("HYPERNIX_TOKEN", d.token())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut console = Console {
            child,
            seen,
            count: 0,
        };
        // The arithmetic is evaluated by the guest's shell, not echoed by the terminal.
        wait_until(timeout, "the guest's shell", || {
            console.write(b"echo console-$((6*7))\n");
            std::thread::sleep(Duration::from_millis(500));
            String::from_utf8_lossy(&console.seen.lock().unwrap())
                .contains("console-42")
                .then_some(())
        });
        console
    }

    fn write(&mut self, bytes: &[u8]) {
        self.child.stdin.as_mut().unwrap().write_all(bytes).unwrap();
    }

    /// Runs `cmd` in the guest and returns what it printed (with the echo of the line).
    pub fn run(&mut self, cmd: &str) -> String {
        self.count += 1;
        let start = self.seen.lock().unwrap().len();
        // The marker is computed by the guest's shell, so the echoed line never matches it.
        let marker = format!("done-{}", 1000 + self.count);
        self.write(format!("{cmd}; echo done-$((1000+{}))\n", self.count).as_bytes());
        wait_until(
            Duration::from_secs(120),
            &format!("`{cmd}` in the guest"),
            || {
                let seen = self.seen.lock().unwrap();
                let text = String::from_utf8_lossy(&seen[start..]).into_owned();
                text.contains(&marker).then_some(text)
            },
        )
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

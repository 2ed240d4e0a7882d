//! A test kit for real processes: a daemon in a temporary state directory, the CLI
//! against it, waiting with deadlines, and cleanup that leaves no QEMU behind.

#![allow(dead_code)] // Each test binary uses part of the kit.

mod console;
#[allow(unused_imports)] // Only the tests that drive a guest shell use it.
pub use console::Console;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Tests that boot guests take this lock: two cores do not run many TCG guests at once.
static HEAVY: Mutex<()> = Mutex::new(());

/// Serializes guest-booting tests.
pub fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The hypernix binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hypernix")
}

/// Runs the hypernix binary with `args`, no daemon involved.
pub fn hypernix(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("the hypernix binary runs")
}

/// The seed's example configuration, `../shared/design/examples.nix` beside the checkout.
pub fn examples() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/design/examples.nix")
        .display()
        .to_string()
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon with its own state directory and port.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub api: String,
    extra: Vec<String>,
    child: Option<Child>,
}

impl TestDaemon {
    /// Starts `hypernix serve` (TCG forced, the probe is tested in hypernix-vmm).
    pub fn start() -> TestDaemon {
        TestDaemon::start_with(&[])
    }

    /// Starts `hypernix serve` with extra arguments.
    pub fn start_with(extra: &[&str]) -> TestDaemon {
        let dir = tempfile::Builder::new()
            .prefix("hnx")
            .tempdir_in("/tmp")
            .unwrap();
        let mut d = TestDaemon {
            api: format!("127.0.0.1:{}", free_port()),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        d.restart();
        d
    }

    /// The state directory.
    pub fn state(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the daemon process again on the same state (after `kill9`).
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state().join("daemon.log"))
            .unwrap();
        let child = Command::new(bin())
            .args([
                "serve",
                "--accel",
                "tcg",
                "--listen",
                &self.api,
                "--state-dir",
            ])
            .arg(self.state())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_until(Duration::from_secs(30), "the daemon to answer", || {
            self.cli(&["units", "--json"])
                .status
                .success()
                .then_some(())
        });
    }

    /// SIGKILLs the daemon (its VMs keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// The daemon's root credential.
    pub fn token(&self) -> String {
        let path = self.state().join("caps/root.token");
        wait_until(Duration::from_secs(30), "the root credential", || {
            std::fs::read_to_string(&path).ok()
        })
        .trim()
        .to_string()
    }

    /// An API client with the root credential.
    pub fn client(&self) -> hypernix_api::client::Client {
        hypernix_api::client::Client::new(self.api.clone()).with_token(self.token())
    }

    /// Runs the CLI against this daemon, with its root credential.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("--api")
            .arg(&self.api)
            .env("HYPERNIX_TOKEN", self.token())
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs the CLI and returns its JSON output, panicking with stderr on failure.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "hypernix {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Writes a configuration file into the state directory.
    pub fn config(&self, name: &str, text: &str) -> PathBuf {
        let p = self.state().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Every unit, by name.
    pub fn units(&self) -> Vec<Value> {
        self.json(&["units", "--json"]).as_array().unwrap().clone()
    }

    /// One unit's status.
    pub fn unit(&self, name: &str) -> Value {
        self.units()
            .into_iter()
            .find(|u| u["name"] == name)
            .unwrap_or_else(|| panic!("no unit {name}"))
    }

    /// Waits until a unit's status satisfies `pred`.
    pub fn wait_unit(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_until(timeout, &format!("unit {name}: {what}"), || {
            let u = self.unit(name);
            pred(&u).then_some(u)
        })
    }

    /// Waits until a unit runs and its guest printed the readiness line.
    pub fn wait_ready(&self, name: &str) -> Value {
        self.wait_unit(name, Duration::from_secs(90), "running and ready", |u| {
            u["state"] == "RUNNING" && u["ready"] == true
        })
    }

    /// The daemon's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state().join("daemon.log")).unwrap_or_default()
    }

    /// Events of a kind.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        let all = self.json(&["events", "--json"]);
        all.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == kind)
            .cloned()
            .collect()
    }
}

/// QEMU processes whose command line names the state directory.
pub fn qemu_pids(state: &Path) -> Vec<u32> {
    let needle = state.display().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if (cmd.starts_with("qemu-system") || cmd.contains("/qemu-system")) && cmd.contains(&needle)
        {
            pids.push(pid);
        }
    }
    pids
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill9();
        for pid in qemu_pids(self.state()) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// A NATS server with JetStream on a free loopback port, stopped on drop.
pub struct NatsServer {
    pub url: String,
    _dir: tempfile::TempDir,
    child: Child,
}

impl NatsServer {
    /// Starts `nats-server -js` (Debian's nats-server; scripts/install-deps.sh installs it).
    pub fn start() -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs (apt-get install nats-server)");
        wait_until(Duration::from_secs(10), "nats-server to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        NatsServer {
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
            child,
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each placed unit and the node running it, from `hypernix mesh status --json`, sorted.
pub fn placement(status: &Value) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for n in status["nodes"].as_array().unwrap() {
        for u in n["units"].as_array().unwrap() {
            out.push((u.as_str().unwrap().to_string(), n["id"].as_u64().unwrap()));
        }
    }
    out.sort();
    out
}

/// The units node `id` runs, from `hypernix mesh status --json`.
pub fn units_on(status: &Value, id: u64) -> Vec<String> {
    placement(status)
        .into_iter()
        .filter(|(_, n)| *n == id)
        .map(|(u, _)| u)
        .collect()
}

/// The node running `unit`, from `hypernix mesh status --json`.
pub fn node_of(status: &Value, unit: &str) -> Option<u64> {
    placement(status)
        .into_iter()
        .find(|(u, _)| u == unit)
        .map(|(_, n)| n)
}

/// A loopback port free for TCP and UDP, with the next port free for TCP: a mesh node
/// serves Raft (TCP) and gossip (UDP) on it, and joins on the next port.
pub fn mesh_port() -> u16 {
    loop {
        let p = free_port();
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if p < u16::MAX && free(p + 1) && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// Subscribes to `query` on the daemon at `api` with the graphql-ws client (npm
/// `graphql-ws`); each result, as JSON, arrives in the returned list.
pub fn subscribe(
    api: &str,
    token: &str,
    query: &str,
) -> (Child, std::sync::Arc<Mutex<Vec<Value>>>) {
    use std::io::BufRead;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hypernix-api/tests/node");
    assert!(
        dir.join("node_modules/graphql-ws").exists(),
        "run `npm ci` in {} (scripts/test.sh does)",
        dir.display()
    );
    let mut node = Command::new("node")
        .arg(dir.join("subscribe.mjs"))
        .arg(format!("ws://{api}/graphql"))
        .arg(query)
        .env("HYPERNIX_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    let lines = std::sync::Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock()
                .unwrap()
                .push(serde_json::from_str(&line).unwrap_or(Value::Null));
        }
    });
    (node, lines)
}

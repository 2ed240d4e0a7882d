//! The daemon and the commands that talk to it: serve, up, apply, units, unit, logs,
//! down, image.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hypernix_api::client::{Client, ClientError, Unit};
use hypernix_daemon::Daemon;
use hypernix_daemon::layout::Layout;
use hypernix_daemon::mesh::MeshOptions;
use hypernix_vmm::Accel;
use serde_json::{Map, Value};

use crate::cli::{AccelArg, DaemonArgs, OutputArgs, ServeArgs, UnitVerb};
use crate::output::{self, table};

fn accel(a: Option<AccelArg>) -> Option<Accel> {
    a.map(|a| match a {
        AccelArg::Kvm => Accel::Kvm,
        AccelArg::Tcg => Accel::Tcg,
    })
}

fn layout(state_dir: &Option<PathBuf>) -> Layout {
    Layout::new(state_dir.clone().unwrap_or_else(Layout::default_root))
}

/// `hypernix serve`: runs until SIGTERM, SIGINT or `down`; leaves VMs running unless
/// `down` asked to stop them.
pub fn serve(api: &str, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let listen: SocketAddr = args
        .listen
        .as_deref()
        .unwrap_or(api)
        .parse()
        .context("--listen: expected an address such as 127.0.0.1:7878")?;
    let layout = layout(&args.daemon.state_dir);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .init();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}; is another daemon running?"))?;
        let mesh = mesh_options(&args, listen)?;
        let daemon = Daemon::open(layout, listen, accel(args.daemon.accel), args.nats, mesh).await?;
        // The API's limits come from the configuration applied last (defaults before any).
        let api = daemon.applied_config().map(|c| c.hypervisor.api).unwrap_or_default();
        let h = daemon.health();
        tracing::info!(api = %h.listen, accel = %h.accel, reason = %h.accel_reason, state = %h.state_dir, "hypernix daemon ready");
        let stopped = daemon.stopped();
        let router = hypernix_api::server::router(daemon, (&api.limits).into(), api.graphiql);
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
                tokio::select! {
                    _ = stopped => {}
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            })
            .await?;
        tracing::info!("hypernix daemon stopped; VMs keep running unless `down` stopped them");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The node's cluster settings from `--node FILE`, `--mesh-listen`, `--join` and `--join-token`.
fn mesh_options(args: &ServeArgs, api: SocketAddr) -> anyhow::Result<Option<MeshOptions>> {
    let (Some(file), Some(listen)) = (&args.node, &args.mesh_listen) else {
        return Ok(None);
    };
    let loaded = super::config::load(std::slice::from_ref(file)).map_err(|errors| {
        anyhow::anyhow!(
            "{}: the node's settings are invalid:\n  - {}",
            file.display(),
            errors.join("\n  - ")
        )
    })?;
    let settings = loaded.config.hypervisor.mesh;
    if !settings.enable {
        bail!(
            "{}: hypervisor.mesh.enable is not true; set it to join a cluster",
            file.display()
        );
    }
    let listen = listen.parse().with_context(|| {
        format!("--mesh-listen {listen}: expected an address such as 10.0.0.1:7946")
    })?;
    Ok(Some(MeshOptions {
        settings,
        listen,
        join: args.join.clone(),
        token: args.join_token.clone(),
        api: api.to_string(),
    }))
}

/// Loads configuration files into the raw `hypervisor` set and a client for the daemon:
/// at `--api` if given, else at the configuration's `api.listen`.
fn load(
    api: Option<&str>,
    token: Option<&str>,
    state_dir: &Option<PathBuf>,
    files: &[PathBuf],
) -> anyhow::Result<(Client, Map<String, Value>)> {
    match super::config::load(files) {
        Ok(l) => {
            let addr = api
                .map(str::to_string)
                .unwrap_or(l.config.hypervisor.api.listen);
            Ok((
                super::authed(Client::new(addr), token, state_dir),
                l.config.raw,
            ))
        }
        Err(errors) => bail!(
            "the configuration is invalid:\n  - {}",
            errors.join("\n  - ")
        ),
    }
}

/// Reaches the daemon at `api`, starting one in the background if none answers.
fn ensure_daemon(client: &Client, daemon: &DaemonArgs) -> anyhow::Result<()> {
    match client.health() {
        // A daemon answered (a refusal of the token is reported by the next request).
        Ok(_) | Err(hypernix_api::client::ClientError::Refused(_)) => return Ok(()),
        Err(_) => {}
    }
    start_daemon(client, daemon, &[])
}

/// Starts `hypernix serve` in the background for `client`'s address, with `extra` arguments,
/// and waits until it answers.
pub(crate) fn start_daemon(
    client: &Client,
    daemon: &DaemonArgs,
    extra: &[String],
) -> anyhow::Result<()> {
    let layout = layout(&daemon.state_dir);
    std::fs::create_dir_all(layout.root()).with_context(|| {
        format!(
            "cannot create the state directory {}",
            layout.root().display()
        )
    })?;
    let log = std::fs::File::create(layout.daemon_log())?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["serve", "--listen", client.addr(), "--state-dir"])
        .arg(layout.root())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(a) = daemon.accel {
        cmd.args([
            "--accel",
            if matches!(a, AccelArg::Kvm) {
                "kvm"
            } else {
                "tcg"
            },
        ]);
    }
    // Its own session, so the daemon outlives this command and its terminal.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| rustix::process::setsid().map(|_| ()).map_err(Into::into));
    }
    let mut child = cmd.spawn().context("cannot start `hypernix serve`")?;
    eprintln!(
        "started the daemon (pid {}), log in {}",
        child.id(),
        layout.daemon_log().display()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        // Refused: it answers, but not to this token (one for another state directory).
        if matches!(
            client.health(),
            Ok(_) | Err(hypernix_api::client::ClientError::Refused(_))
        ) {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the daemon exited ({status}); see {}",
                layout.daemon_log().display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!(
        "the daemon did not answer within 60 s; see {}",
        layout.daemon_log().display()
    )
}

/// `hypernix up`.
pub fn up(
    api: Option<&str>,
    token: Option<&str>,
    files: &[PathBuf],
    daemon: DaemonArgs,
    timeout: u64,
    out: OutputArgs,
) -> anyhow::Result<ExitCode> {
    let (client, raw) = load(api, token, &daemon.state_dir, files)?;
    let client = &client;
    ensure_daemon(client, &daemon)?;
    let plan = client.apply(&raw)?;
    let wanted: Vec<String> = raw
        .get("compute")
        .and_then(|c| c.get("units"))
        .and_then(Value::as_object)
        .map(|u| u.keys().cloned().collect())
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let units = loop {
        let units = client.units()?;
        let settled = wanted.iter().all(|w| {
            units.iter().any(|u| {
                &u.name == w
                    && match u.state.as_str() {
                        "FAILED" | "STOPPED" => true,
                        "RUNNING" => u.ready || !boots_test_guest(&raw, w),
                        _ => false,
                    }
            })
        });
        if settled || Instant::now() > deadline {
            break units;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    if out.json {
        output::json(
            &serde_json::json!({ "api": format!("http://{}", client.addr()), "plan": plan, "units": units }),
        )?;
    } else {
        print_units(&units);
        println!("\nAPI: http://{}", client.addr());
    }
    let failed = units.iter().any(|u| u.state == "FAILED");
    Ok(if failed {
        ExitCode::from(output::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

fn boots_test_guest(raw: &Map<String, Value>, unit: &str) -> bool {
    raw["compute"]["units"][unit].get("image").is_none()
}

/// `hypernix apply`.
pub fn apply(
    api: Option<&str>,
    token: Option<&str>,
    files: &[PathBuf],
    out: OutputArgs,
) -> anyhow::Result<ExitCode> {
    let (client, raw) = load(api, token, &None, files)?;
    let plan = client.apply(&raw)?;
    if out.json {
        output::json(&plan)?;
    } else {
        let n = plan["units"].as_array().map(Vec::len).unwrap_or(0);
        for u in plan["units"].as_array().into_iter().flatten() {
            println!(
                "{} {}",
                u["action"].as_str().unwrap_or("?"),
                u["unit"].as_str().unwrap_or("?")
            );
        }
        println!("applied: {n} unit(s) changed");
    }
    Ok(ExitCode::SUCCESS)
}

fn uptime(u: &Unit) -> String {
    match (u.state.as_str(), u.started_at) {
        ("RUNNING" | "PAUSED", Some(t)) => {
            let s = (chrono::Utc::now() - t).num_seconds().max(0);
            format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        }
        _ => "-".into(),
    }
}

fn print_units(units: &[Unit]) {
    let mut t = table([
        "NAME", "STATE", "VCPUS", "MEMORY", "UPTIME", "ACCEL", "PID", "REASON",
    ]);
    for u in units {
        let mut state = u.state.to_lowercase();
        if u.state == "RUNNING" && u.ready {
            state.push_str(" (ready)");
        }
        t.add_row(vec![
            u.name.clone(),
            state,
            u.vcpus.to_string(),
            hypernix_config::Size(u.memory).to_string(),
            uptime(u),
            u.accel.clone().unwrap_or_else(|| "-".into()),
            u.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            u.reason.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
}

/// `hypernix units`.
pub fn units(client: &Client, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let units = client.units()?;
    if out.json {
        output::json(&units)?;
    } else {
        print_units(&units);
    }
    Ok(ExitCode::SUCCESS)
}

/// `hypernix unit ACTION NAME`.
pub fn unit(
    client: &Client,
    action: UnitVerb,
    name: &str,
    out: OutputArgs,
) -> anyhow::Result<ExitCode> {
    let verb = match action {
        UnitVerb::Show => {
            let status = client.unit(name)?;
            if out.json {
                output::json(&status)?;
            } else {
                print_units(std::slice::from_ref(&status));
                for p in &status.ports {
                    println!("port {}/{} → host {}", p.internal, p.protocol, p.external);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        UnitVerb::Start => "START",
        UnitVerb::Stop => "STOP",
        UnitVerb::Restart => "RESTART",
        UnitVerb::Pause => "PAUSE",
        UnitVerb::Resume => "RESUME",
    };
    let status = client.act(name, verb)?;
    if out.json {
        output::json(&status)?;
    } else {
        print_units(std::slice::from_ref(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// `hypernix logs NAME`.
pub fn logs(
    client: &Client,
    name: &str,
    follow: bool,
    tail: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut seen = client.console_log(name, tail)?;
    if json {
        output::json(&serde_json::json!({ "unit": name, "log": seen }))?;
        return Ok(ExitCode::SUCCESS);
    }
    print!("{seen}");
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = client.console_log(name, tail.max(1 << 20))?;
        // The log is truncated when the VM restarts: then print it from the start.
        let new = now
            .strip_prefix(seen.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| now.clone());
        print!("{new}");
        use std::io::Write;
        std::io::stdout().flush()?;
        seen = now;
    }
}

/// `hypernix events`.
pub fn events(client: &Client, after: Option<u64>, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let events = client.events(after)?;
    if out.json {
        output::json(&events)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(["ID", "TIME", "KIND", "SUBJECT", "PAYLOAD"]);
    for e in &events {
        t.add_row(vec![
            e["id"].to_string(),
            e["time"].as_str().unwrap_or("").to_string(),
            e["kind"].as_str().unwrap_or("").to_string(),
            e["subject"].as_str().unwrap_or("").to_string(),
            e["payload"].to_string(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// `hypernix down`.
pub fn down(client: &Client, keep_units: bool) -> anyhow::Result<ExitCode> {
    match client.shutdown(!keep_units) {
        Ok(_) => {}
        Err(ClientError::Unreachable { .. }) => {
            eprintln!("no daemon at {}; nothing to stop", client.addr());
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.health().is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "stopped{}",
        if keep_units {
            " the daemon; units keep running"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `hypernix image test-guest`.
pub fn image(dir: Option<PathBuf>, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| {
        Layout::new(Layout::default_root())
            .images()
            .join("test-guest")
    });
    let g = hypernix_vmm::guest::ensure_test_guest(&dir)?;
    if out.json {
        output::json(
            &serde_json::json!({ "kernel": g.kernel, "initrd": g.initrd, "cmdline": g.cmdline }),
        )?;
    } else {
        println!(
            "kernel  {}\ninitrd  {}\ncmdline {}",
            show(&g.kernel),
            show(&g.initrd),
            g.cmdline
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

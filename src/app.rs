//! Command line, start-up and shutdown: reads the configuration, opens each
//! enabled bridge's store, starts its component stream and gateway, serves
//! HTTP, and on SIGTERM/SIGINT shuts everything down cleanly.
//!
//! Start-up refuses a configuration with problems (the same checks as
//! `ferry check`) and a bridge that fails to build; both exit non-zero.
//! Once running, nothing exits the process but a signal: streams reconnect,
//! sessions restart, errors are logged.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use ferry_bridge::BridgeSetup;
use tokio_util::sync::CancellationToken;

use crate::bridges::Registry;
use crate::component::{self, ComponentConfig, ComponentHandle};
use crate::config::{self, Config, Problem};
use crate::gateway::{self, GatewayParts, GatewaySettings};
use crate::http::{self, HttpBridge, Media};
use crate::lifecycle::{CoreUsers, Lifecycle};
use crate::metrics::Metrics;
use crate::store::{Key, Store};

/// How long the gateways get to say goodbye on shutdown.
const GATEWAY_SHUTDOWN: Duration = Duration::from_secs(20);
/// How long the component streams get to send what is queued.
const COMPONENT_CLOSE: Duration = Duration::from_secs(5);

/// Ferry: an XMPP gateway to IRC, Matrix and more, attached to your XMPP
/// server as XEP-0114 components.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, long_about = None)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "PATH",
        default_value = "ferry.toml"
    )]
    config: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Check the configuration: one line per problem, exit status 1 if any.
    Check,
    /// List the registered users of each bridge, from the databases.
    Users {
        /// Only this bridge (its section name, e.g. irc).
        #[arg(long, value_name = "NAME")]
        bridge: Option<String>,
    },
}

/// Runs the `ferry` command.
pub fn main() -> ExitCode {
    // Before anything that may use TLS (bridges' clients).
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let registry = Registry::compiled();
    let names: Vec<&str> = registry.names().collect();
    let command = Cli::command().after_help(format!(
        "Bridges in this build: {}",
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    ));
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let env = config::env_overrides(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    );
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&cli.config, &env, &registry),
        Command::Users { bridge } => users(&cli.config, &env, &registry, bridge.as_deref()),
        Command::Run => run(&cli.config, &env, registry),
    }
}

/// Loads the configuration and applies the checks that need the file
/// system (the key file's mode).
fn load(
    path: &Path,
    env: &[(String, String)],
    registry: &Registry,
) -> Result<Config, Vec<Problem>> {
    let config = config::load(path, env, registry)?;
    if let Err(e) = Key::check_file(&config.storage.key_file) {
        return Err(vec![Problem(format!(
            "{}: [storage] key_file: {e}",
            path.display()
        ))]);
    }
    Ok(config)
}

fn print_problems(problems: &[Problem]) {
    for p in problems {
        eprintln!("{p}");
    }
}

fn check(path: &Path, env: &[(String, String)], registry: &Registry) -> ExitCode {
    match load(path, env, registry).and_then(|config| {
        let problems = try_build(&config, registry);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }) {
        Ok(config) => {
            for w in crate::permissions::warnings(&config) {
                eprintln!("warning: {w}");
            }
            println!("ok: {}", config.summary());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            print_problems(&problems);
            eprintln!(
                "{}: {} problem{}",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}

/// Builds every enabled bridge once, in a scratch directory, so that
/// `ferry check` also reports what a bridge refuses in its section (the
/// same refusal would stop `ferry run`). Nothing connects anywhere.
fn try_build(config: &Config, registry: &Registry) -> Vec<Problem> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return vec![Problem(format!("cannot start the async runtime: {e}"))],
    };
    let scratch = std::env::temp_dir().join(format!("ferry-check-{}", std::process::id()));
    let mut problems = Vec::new();
    for bridge in &config.bridges {
        let dir = scratch.join(&bridge.name);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            problems.push(Problem(format!("cannot create {}: {e}", dir.display())));
            continue;
        }
        let setup = BridgeSetup {
            domain: bridge.domain.clone(),
            data_dir: dir,
            hosts: bridge.hosts.clone(),
        };
        let built = runtime.block_on(async {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                registry.build(&bridge.name, &bridge.section, setup)
            }))
        });
        let refusal = match built {
            Ok(Ok(_network)) => None,
            Ok(Err(e)) => Some(e),
            Err(panic) => Some(format!(
                "the bridge panicked: {}",
                ferry_bridge::network::panic_message(panic.as_ref())
            )),
        };
        if let Some(e) = refusal {
            let e = e.strip_prefix(&format!("[{}] ", bridge.name)).unwrap_or(&e);
            problems.push(Problem(format!(
                "{}: [{}] the bridge refuses its configuration: {e}",
                config.path.display(),
                bridge.name
            )));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    problems
}

fn users(
    path: &Path,
    env: &[(String, String)],
    registry: &Registry,
    only: Option<&str>,
) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    list_users(
        path,
        env,
        registry,
        only,
        &mut stdout.lock(),
        &mut stderr.lock(),
    )
}

/// `ferry users`: the registered users of each enabled bridge, read from
/// the databases (nothing is created).
fn list_users(
    path: &Path,
    env: &[(String, String)],
    registry: &Registry,
    only: Option<&str>,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> ExitCode {
    let config = match load(path, env, registry) {
        Ok(c) => c,
        Err(problems) => {
            for p in problems {
                let _ = writeln!(err, "{p}");
            }
            return ExitCode::FAILURE;
        }
    };
    if let Some(name) = only
        && !config.bridges.iter().any(|b| b.name == name)
    {
        let _ = writeln!(
            err,
            "no enabled bridge named {name:?} in {}",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    let mut status = ExitCode::SUCCESS;
    for bridge in config
        .bridges
        .iter()
        .filter(|b| only.is_none_or(|n| n == b.name))
    {
        let db = config.database(&bridge.name);
        if matches!(&db, crate::store::Location::Sqlite(path) if !path.exists()) {
            let _ = writeln!(out, "{} ({}): no database yet", bridge.name, bridge.domain);
            continue;
        }
        let result = Key::load(&config.storage.key_file)
            .and_then(|key| Store::open_at(&db, Arc::new(key)))
            .and_then(|store| store.users());
        match result {
            Ok(users) => {
                let _ = writeln!(
                    out,
                    "{} ({}): {} registered user{}",
                    bridge.name,
                    bridge.domain,
                    users.len(),
                    if users.len() == 1 { "" } else { "s" }
                );
                for u in users {
                    let _ = writeln!(
                        out,
                        "  {}\t{}\tregistered {}",
                        u.user,
                        u.account_name,
                        format_time(u.registered_at)
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(err, "{}: {db}: {e}", bridge.name);
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn run(path: &Path, env: &[(String, String)], registry: Registry) -> ExitCode {
    let config = match load(path, env, &registry) {
        Ok(c) => c,
        Err(problems) => {
            print_problems(&problems);
            eprintln!(
                "ferry: not starting: {} configuration problem{} (see `ferry check --config {}`)",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    crate::logging::init(&config.log.level);
    for w in crate::permissions::warnings(&config) {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferry")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(config, registry));
    // Bridges may leave blocking tasks behind (DNS lookups …).
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Creates a directory (and its parents) readable only by the owner.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

struct Running {
    name: String,
    component: ComponentHandle,
    store: Store,
    gateway: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts everything, waits for a signal, shuts down.
async fn serve(config: Config, registry: Registry) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config.path.display(),
        "ferry starting: {}",
        config.summary()
    );
    create_private_dir(&config.storage.data_dir)?;
    // One ferry per data directory: two would fight over the component
    // streams and the outboxes. Held until the process ends. Instances of
    // a cluster share the data (leases keep them apart): one per name.
    let lock_path = match &config.cluster {
        Some(c) => config
            .storage
            .data_dir
            .join(format!("ferry.{}.lock", c.instance)),
        None => config.storage.data_dir.join("ferry.lock"),
    };
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if let Err(e) = lock.try_lock() {
        anyhow::bail!(
            "another ferry is running with the data directory {} ({} is locked: {e})",
            config.storage.data_dir.display(),
            lock_path.display()
        );
    }
    let key = Arc::new(
        Key::load_or_create(&config.storage.key_file)
            .with_context(|| format!("key file {}", config.storage.key_file.display()))?,
    );
    let mut metrics = Metrics::default();
    let shutdown = CancellationToken::new();
    crate::memory::start_reclaimer(shutdown.clone());
    // The component streams outlive the gateways: goodbyes go out through
    // them, then they are closed.
    let streams_down = CancellationToken::new();
    let media = match (&config.http.listen, &config.http.public_url) {
        (Some(_), Some(url)) => Media::new(
            config.storage.data_dir.join("media"),
            url.clone(),
            config.http.max_media_bytes,
        )?,
        _ => Media::disabled(),
    };

    // Build every bridge before connecting anything: a bridge that cannot be
    // built is a configuration error.
    let mut prepared = Vec::new();
    for bridge in &config.bridges {
        let dir = config.bridge_dir(&bridge.name);
        create_private_dir(&dir)?;
        let store = Store::open_at(&config.database(&bridge.name), key.clone())
            .with_context(|| format!("[{}] cannot open the database", bridge.name))?;
        if let Some(cluster) = &config.cluster {
            store.set_instance(&cluster.instance);
        }
        let network = registry
            .build(
                &bridge.name,
                &bridge.section,
                BridgeSetup {
                    domain: bridge.domain.clone(),
                    data_dir: dir.clone(),
                    hosts: bridge.hosts.clone(),
                },
            )
            .map_err(|e| {
                let prefix = format!("[{}] ", bridge.name);
                let e = e.strip_prefix(&prefix).unwrap_or(&e);
                anyhow::anyhow!("[{}] the bridge cannot start: {e}", bridge.name)
            })?;
        tracing::info!(
            bridge = %bridge.name,
            "{} on {}: database {}, users allowed: {}",
            network.info().name,
            bridge.domain,
            store.location(),
            bridge.access.patterns().join(", ")
        );
        prepared.push((bridge, dir, store, network));
    }

    let mut http_bridges = Vec::new();
    let mut running = Vec::new();
    let mut parts = Vec::new();
    let mut lifecycles = Vec::new();
    let public_base = config
        .http
        .public_url
        .clone()
        .or_else(|| config.http.listen.map(|a| format!("http://{a}")));
    for (bridge, dir, store, network) in prepared {
        let bridge_metrics = metrics.bridge(&bridge.name);
        let (routed_tx, routed) = tokio::sync::mpsc::channel(64);
        let lifecycle = Lifecycle::new(
            &bridge.name,
            &bridge.domain,
            network.clone(),
            &store,
            public_base
                .as_ref()
                .map(|b| format!("{}/bridge/{}", b.trim_end_matches('/'), bridge.name)),
            CoreUsers::router(
                store.clone(),
                bridge.access.clone(),
                network.info().registration,
                routed_tx,
            ),
            bridge_metrics.clone(),
        );
        let bridge_ctx = lifecycle.context();
        lifecycles.push(lifecycle);
        let (component, inbound) = component::start(
            ComponentConfig::new(
                bridge.domain.clone(),
                bridge.secret.expose(),
                config.xmpp.host.clone(),
                config.xmpp.port,
            )
            .with_keepalive(config.xmpp.keepalive, config.xmpp.keepalive_timeout),
            store.clone(),
            bridge_metrics.clone(),
            streams_down.clone(),
        );
        http_bridges.push(HttpBridge {
            name: bridge.name.clone(),
            network: network.clone(),
            component: component.clone(),
            metrics: bridge_metrics.clone(),
            store: store.clone(),
        });
        parts.push((
            bridge.name.clone(),
            store.clone(),
            component.clone(),
            GatewayParts {
                settings: GatewaySettings {
                    name: bridge.name.clone(),
                    domain: bridge.domain.clone(),
                    access: bridge.access.clone(),
                    max_message_bytes: config.limits.max_message_bytes,
                    data_dir: dir,
                    session_idle_timeout: config.limits.session_idle_timeout,
                    cluster: config.cluster.clone(),
                },
                network,
                component,
                inbound,
                store,
                media: media.clone(),
                metrics: bridge_metrics,
                shutdown: shutdown.clone(),
                routed,
                bridge: bridge_ctx,
            },
        ));
    }

    if media.is_enabled() {
        tracing::info!(
            "files are published under {}/media/",
            config.http.public_url.as_deref().unwrap_or("")
        );
    }
    // The bridge-wide parts start before any session, and before webhooks
    // can reach them.
    let mut bridge_parts = Vec::new();
    for l in lifecycles {
        bridge_parts.push(l.start().await);
    }
    let http_task = match config.http.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("[http] cannot listen on {addr}"))?;
            tracing::info!("HTTP listening on {addr}");
            let state = http::HttpState::new(
                http_bridges,
                metrics.clone(),
                media.clone(),
                config.http.max_body_bytes,
            );
            let stop = streams_down.clone();
            Some(tokio::spawn(async move {
                if let Err(e) = http::serve(listener, state, stop).await {
                    tracing::error!("HTTP server failed: {e}");
                }
            }))
        }
        None => None,
    };

    for (name, store, component, p) in parts {
        let task_name = name.clone();
        let gateway = tokio::spawn(async move {
            let result = gateway::run(p).await;
            if let Err(e) = &result {
                tracing::error!(bridge = %task_name, "gateway stopped: {e:#}");
            }
            result
        });
        running.push(Running {
            name,
            component,
            store,
            gateway,
        });
    }
    tracing::info!("ferry started in {} ms", started.elapsed().as_millis());
    // What start-up alone ran need not stay resident.
    crate::codepages::release_after_start(shutdown.clone());

    wait_for_signal().await;
    tracing::info!("shutting down");
    if config.cluster.is_some() {
        // Several instances: leave the XMPP server first, so that it routes
        // the users' stanzas to the others while the sessions close here
        // (what they still send waits in this instance's outbox, which a
        // survivor sends).
        futures::future::join_all(running.iter().map(|r| r.component.detach(COMPONENT_CLOSE)))
            .await;
    }
    shutdown.cancel();
    // A second signal ends the process at once.
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("ferry: second signal, exiting without a clean shutdown");
        std::process::exit(130);
    });

    for r in &mut running {
        match tokio::time::timeout(GATEWAY_SHUTDOWN, &mut r.gateway).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(bridge = %r.name, "gateway task failed: {e}"),
            Err(_) => {
                tracing::warn!(bridge = %r.name, "gateway did not stop in time");
                r.gateway.abort();
            }
        }
    }
    // Every session is closed: the bridge-wide parts stop.
    for b in bridge_parts {
        b.stop().await;
    }
    for r in &running {
        r.component.close(COMPONENT_CLOSE).await;
        if let Err(e) = r.store.flush().await {
            tracing::error!(bridge = %r.name, "flushing the database failed: {e}");
        }
        // Every session is closed and the outbox stored: the users and the
        // outbox go to the other instances at once.
        if let Some(cluster) = &config.cluster {
            let store = r.store.clone();
            let instance = cluster.instance.clone();
            match tokio::task::spawn_blocking(move || store.lease_release_all(&instance)).await {
                Ok(Ok(())) => {
                    tracing::info!(bridge = %r.name, "leases released for the other instances")
                }
                Ok(Err(e)) => {
                    tracing::warn!(bridge = %r.name, "cannot release the leases ({e}); they expire instead")
                }
                Err(e) => {
                    tracing::warn!(bridge = %r.name, "cannot release the leases ({e}); they expire instead")
                }
            }
        }
    }
    streams_down.cancel();
    if let Some(task) = http_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    tracing::info!("ferry stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(
            format_time(SystemTime::UNIX_EPOCH),
            "1970-01-01 00:00:00 UTC"
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(format_time(t), "2026-11-18 11:06:40 UTC");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_time(leap), "2000-02-29 00:00:00 UTC");
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct NoKeys {}

    fn never(_: NoKeys, _: BridgeSetup) -> Result<Arc<dyn ferry_bridge::Network>, String> {
        Err("not built in this test".into())
    }

    #[test]
    fn users_are_listed_from_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("ferry.toml");
        std::fs::write(
            &config,
            format!(
                "[storage]\ndata_dir = \"{}\"\n[test]\ndomain = \"test.example.org\"\nsecret = \"s\"\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write");
        let mut registry = Registry::empty();
        registry.add("test", never);
        let run = |only: Option<&str>| {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = list_users(&config, &[], &registry, only, &mut out, &mut err);
            (
                code,
                String::from_utf8(out).expect("utf-8"),
                String::from_utf8(err).expect("utf-8"),
            )
        };
        let (code, out, _) = run(None);
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(out, "test (test.example.org): no database yet\n");
        assert!(!dir.path().join("data").exists(), "nothing created");

        let key = Arc::new(Key::load_or_create(&dir.path().join("data/ferry.key")).expect("key"));
        let store = Store::open(&dir.path().join("data/test.db"), key).expect("store");
        for (jid, name) in [
            ("bob@example.org", "bob-acct"),
            ("alice@example.org", "alice-acct"),
        ] {
            store
                .register(
                    &ferry_bridge::UserId::new(jid),
                    &ferry_bridge::Account {
                        name: name.into(),
                        secret: ferry_bridge::Secret(b"pw".to_vec()),
                    },
                )
                .expect("register");
        }
        drop(store);
        let (code, out, _) = run(Some("test"));
        assert_eq!(code, ExitCode::SUCCESS);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "test (test.example.org): 2 registered users");
        assert!(
            lines[1].starts_with("  alice@example.org\talice-acct\tregistered 20"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("  bob@example.org\tbob-acct\tregistered 20"),
            "{out}"
        );
        assert!(!out.contains("pw"));
        let (code, _, err) = run(Some("irc"));
        assert_eq!(code, ExitCode::FAILURE);
        assert!(err.contains("no enabled bridge named \"irc\""), "{err}");
    }

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from(["ferry", "check", "--config", "x.toml"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Check)));
        assert_eq!(cli.config, PathBuf::from("x.toml"));
        let cli = Cli::try_parse_from(["ferry", "--config", "y.toml"]).expect("parses");
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["ferry", "users", "--bridge", "irc"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Users { bridge: Some(ref b) }) if b == "irc"));
    }
}

//! The `ferry` command line, run as a real process: `--version`, `--help`,
//! `ferry check` on good and bad configurations (one line per problem,
//! exit status), and `ferry run` refusing a bad configuration.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ferry() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    // The tests' own FERRY_* variables must not leak into the configs.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FERRY_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().expect("tempdir"))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn config(&self, toml: &str) -> PathBuf {
        let path = self.path().join("ferry.toml");
        let toml = toml.replace("$DIR", &self.path().display().to_string());
        std::fs::write(&path, toml).expect("write config");
        path
    }
}

fn check(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = ferry();
    cmd.arg("check").arg("--config").arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run ferry")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts `ferry check` fails and prints a line containing each of
/// `lines`, each prefixed with where the value came from.
fn assert_problems(o: &Output, origin: &str, lines: &[&str]) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "check accepted it:\n{}{err}",
        stdout(o)
    );
    assert_eq!(o.status.code(), Some(1), "{err}");
    for want in lines {
        assert!(
            err.lines()
                .any(|l| l.starts_with(origin) && l.contains(want)),
            "no line {origin}: …{want}… in:\n{err}"
        );
    }
    // A count at the end.
    assert!(
        err.lines().last().is_some_and(|l| l.contains("problem")),
        "{err}"
    );
}

#[test]
fn version_and_help() {
    let o = ferry().arg("--version").output().expect("run");
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("ferry {}", env!("CARGO_PKG_VERSION"))
    );
    let o = ferry().arg("--help").output().expect("run");
    assert!(o.status.success());
    let help = stdout(&o);
    for word in [
        "check",
        "run",
        "users",
        "--config",
        "--version",
        "Bridges in this build:",
    ] {
        assert!(help.contains(word), "{word} missing from --help:\n{help}");
    }
}

#[test]
fn a_missing_file_is_a_problem() {
    let dir = Dir::new();
    let missing = dir.path().join("nope.toml");
    let o = check(&missing, &[]);
    assert_problems(
        &o,
        &missing.display().to_string(),
        &["cannot read the configuration file"],
    );
}

#[test]
fn core_problems_are_reported_one_line_each() {
    let dir = Dir::new();
    let config = dir.config(
        r#"
[xmpp]
hots = "typo"
port = 70000
keepalive = 0

[storage]
data_dir = "$DIR/data"

[access]
users = ["*@example.org", "[unclosed@example.org", "nodomain"]
admins = ["admin@example.org/phone"]

[http]
listen = "127.0.0.1:99999"
public_url = "ftp://example.org"

[log]
level = "ferry=shouting"

[limits]
max_message_bytes = "lots"

[bogus]
x = 1
"#,
    );
    let o = check(&config, &[]);
    let origin = config.display().to_string();
    assert_problems(
        &o,
        &origin,
        &[
            "[xmpp] unknown key \"hots\" (known keys: host, port, keepalive, keepalive_timeout)",
            "[xmpp] port: 70000 is out of range (1-65535)",
            "[xmpp] keepalive: 0 is out of range",
            "[access] bad pattern \"[unclosed@example.org\"",
            "[access] bad admin \"admin@example.org/phone\"",
            "[http] listen: \"127.0.0.1:99999\": port 99999 is out of range",
            "[http] public_url: \"ftp://example.org\" is not an http:// or https:// URL",
            "[log] level: bad filter \"ferry=shouting\"",
            "[limits] max_message_bytes: expected a whole number",
            "unknown section [bogus]",
            "no bridge is enabled",
        ],
    );
}

#[test]
fn bad_listen_and_toml_syntax() {
    let dir = Dir::new();
    let config = dir.config("[http]\nlisten = \"not an address\"\n");
    let o = check(&config, &[]);
    assert_problems(
        &o,
        &config.display().to_string(),
        &["[http] listen: \"not an address\" is not an address:port"],
    );
    let config = dir.config("[xmpp\nport = 5347\n");
    let o = check(&config, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("ferry.toml"), "{}", stderr(&o));
}

#[test]
fn environment_overrides_are_checked_and_named() {
    let dir = Dir::new();
    let config = dir.config("[xmpp]\nport = 5347\n");
    let o = check(
        &config,
        &[
            ("FERRY_XMPP__PORT", "123456"),
            ("FERRY_XMPP__HOTS", "x"),
            ("FERRY_VENVS", "/opt/ferry-venvs"),
        ],
    );
    assert_problems(
        &o,
        "FERRY_XMPP__PORT",
        &["[xmpp] port: 123456 is out of range"],
    );
    assert_problems(&o, "FERRY_XMPP__HOTS", &["[xmpp] unknown key \"hots\""]);
    assert!(!stderr(&o).contains("VENVS"), "{}", stderr(&o));
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new();
    let key = dir.path().join("ferry.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = dir.config(&format!(
        "[storage]\ndata_dir = \"$DIR/data\"\nkey_file = \"{}\"\n",
        key.display()
    ));
    let o = check(&config, &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("[storage] key_file")
            && err.contains("readable by others")
            && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn uncompiled_bridges_are_reported() {
    // A known bridge this build lacks (builds with every bridge have none).
    let compiled = compiled();
    let Some(missing) = ["sms", "email", "matrix", "irc"]
        .into_iter()
        .find(|b| !compiled.iter().any(|c| c == b))
    else {
        return;
    };
    let dir = Dir::new();
    let config = dir.config(&format!(
        "[{missing}]\ndomain = \"{missing}.example.org\"\nsecret = \"x\"\n"
    ));
    let o = check(&config, &[]);
    assert_problems(
        &o,
        &config.display().to_string(),
        &[&format!(
            "[{missing}] this ferry was built without the {missing} bridge"
        )],
    );
}

#[test]
fn run_refuses_a_bad_configuration() {
    let dir = Dir::new();
    let config = dir.config("[xmpp]\nport = 0\n");
    let o = ferry().arg("--config").arg(&config).output().expect("run");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("[xmpp] port: 0 is out of range"), "{err}");
    assert!(err.contains("not starting"), "{err}");
    // Nothing was created.
    assert!(!dir.path().join("data").exists());
}

/// The bridge sections of the example configuration.
fn example_bridges(text: &str) -> Vec<String> {
    const CORE: [&str; 6] = ["xmpp", "storage", "access", "http", "log", "limits"];
    text.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix('[')?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .filter(|s| !CORE.contains(&s.as_str()))
        .collect()
}

/// The bridges of this build, as `ferry --help` lists them.
fn compiled() -> Vec<String> {
    let o = ferry().arg("--help").output().expect("run");
    let help = stdout(&o);
    let line = help
        .lines()
        .find_map(|l| l.strip_prefix("Bridges in this build: "))
        .expect("--help lists the bridges");
    line.split(", ")
        .filter(|b| *b != "none")
        .map(str::to_owned)
        .collect()
}

/// `ferry check` accepts `config/ferry.example.toml` (with its secrets from
/// the environment, as an operator would set them). Bridges the binary was
/// built without are the only thing it may complain about.
#[test]
fn the_example_configuration_is_accepted() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ferry.example.toml");
    let text = std::fs::read_to_string(&example).expect("config/ferry.example.toml");
    let bridges = example_bridges(&text);
    let dir = Dir::new();
    // The example's paths are relative to the working directory.
    let mut cmd = ferry();
    cmd.current_dir(dir.path())
        .arg("check")
        .arg("--config")
        .arg(&example);
    let o = cmd.output().expect("run");
    let compiled = compiled();
    let missing: Vec<&String> = bridges.iter().filter(|b| !compiled.contains(b)).collect();
    if missing.is_empty() && !bridges.is_empty() {
        assert!(
            o.status.success(),
            "ferry check rejects the example:\n{}",
            stderr(&o)
        );
        assert!(stdout(&o).starts_with("ok: "), "{}", stdout(&o));
    } else {
        // Every line must be about a bridge this build lacks.
        let err = stderr(&o);
        for line in err
            .lines()
            .filter(|l| !l.ends_with("problems") && !l.ends_with("problem"))
        {
            assert!(
                missing
                    .iter()
                    .any(|b| line.contains(&format!("[{b}] this ferry was built without")))
                    || line.contains("no bridge is enabled"),
                "the example has a problem: {line}\n(all output:\n{err})"
            );
        }
    }
}

/// With the test bridge compiled in: a good configuration passes, and the
/// problems of a bridge section are named with the section.
#[cfg(feature = "test-bridge")]
mod with_test_bridge {
    use super::*;

    #[test]
    fn a_storage_url_is_checked_and_an_unreachable_database_stops_run() {
        let dir = Dir::new();
        let config = dir.config("[test]\ndomain = \"test.example.org\"\nsecret = \"x\"\n");
        for bad in ["mysql://db/ferry", "postgres://user:pw@db:notaport/ferry"] {
            let o = check(&config, &[("FERRY_STORAGE__URL", bad)]);
            assert!(!o.status.success(), "{bad} accepted");
            let err = stderr(&o);
            assert!(err.contains("[storage] url: "), "{err}");
            assert!(!err.contains(":pw@"), "password shown: {err}");
        }
        // A good URL passes `check` (which does not connect)…
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let url = format!("postgres://ferry:s3cret-pw@127.0.0.1:{port}/ferry");
        let o = check(&config, &[("FERRY_STORAGE__URL", &url)]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains(&format!(
                "(databases in PostgreSQL postgres://ferry@127.0.0.1:{port}/ferry)"
            )),
            "{out}"
        );
        assert!(!out.contains("s3cret-pw"), "password shown: {out}");
        // …and `run` says clearly that the database cannot be reached.
        let o = ferry()
            .arg("--config")
            .arg(&config)
            .env("FERRY_STORAGE__URL", &url)
            .output()
            .expect("run");
        assert!(!o.status.success());
        let err = format!("{}{}", stderr(&o), stdout(&o));
        assert!(
            err.contains(&format!(
                "cannot connect to PostgreSQL at postgres://ferry@127.0.0.1:{port}/ferry"
            )),
            "{err}"
        );
        assert!(!err.contains("s3cret-pw"), "password shown: {err}");
    }

    #[test]
    fn a_good_configuration_passes_with_a_summary() {
        let dir = Dir::new();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "from-a-file\n").expect("write");
        let config = dir.config(&format!(
            "[storage]\ndata_dir = \"$DIR/data\"\n[http]\nlisten = \"127.0.0.1:8780\"\n[test]\ndomain = \"test.example.org\"\nsecret_file = \"{}\"\naccounts = {{ alice = \"pw\" }}\n",
            secret.display()
        ));
        let o = check(&config, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.starts_with("ok: 1 bridge: test (test.example.org)"),
            "{out}"
        );
        assert!(out.contains("HTTP on 127.0.0.1:8780"), "{out}");
        assert!(!out.contains("from-a-file"));
        // The secret may come from the environment instead.
        let config = dir.config("[test]\ndomain = \"test.example.org\"\n");
        let o = check(&config, &[("FERRY_TEST__SECRET", "12345")]);
        assert!(o.status.success(), "{}", stderr(&o));
        // And the bridge's own keys too.
        let o = check(
            &config,
            &[
                ("FERRY_TEST__SECRET", "x"),
                ("FERRY_TEST__ECHO_DELAY_MS", "250"),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }

    #[test]
    fn a_world_readable_secret_file_and_a_world_writable_data_dir_are_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        let dir = Dir::new();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "from-a-file\n").expect("write");
        let config = dir.config(&format!(
            "[storage]\ndata_dir = \"{}\"\n[test]\ndomain = \"test.example.org\"\nsecret_file = \"{}\"\n",
            data.display(),
            secret.display()
        ));
        chmod(&secret, 0o644);
        chmod(&data, 0o777);
        let o = check(&config, &[]);
        // Warnings, not problems: the gateway would run.
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        let line = |what: &str| {
            err.lines()
                .find(|l| l.starts_with("warning: ") && l.contains(what))
                .unwrap_or_else(|| panic!("no warning about {what} in:\n{err}"))
                .to_owned()
        };
        let s = line("[test] secret_file");
        assert!(s.contains("mode 0644"), "{s}");
        assert!(
            s.ends_with(&format!("run: chmod o-rwx {}", secret.display())),
            "{s}"
        );
        let d = line("[storage] data_dir");
        assert!(d.contains("mode 0777"), "{d}");
        assert!(
            d.ends_with(&format!("run: chmod o-w {}", data.display())),
            "{d}"
        );
        assert!(!err.contains("from-a-file"), "{err}");
        // What the warnings say to run silences them.
        chmod(&secret, 0o640);
        chmod(&data, 0o775);
        let o = check(&config, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    }

    #[test]
    fn bridge_section_problems() {
        let dir = Dir::new();
        let config = dir.config(
            "[test]\nsecret = \"a\"\nsecret_file = \"/nonexistent\"\naccounts = 5\nacounts = {}\n",
        );
        let o = check(&config, &[]);
        assert_problems(
            &o,
            &config.display().to_string(),
            &[
                "[test] missing key \"domain\"",
                "[test] both secret and secret_file are set",
                "[test] unknown key \"acounts\"",
            ],
        );
        let config = dir.config(
            "[test]\ndomain = \"test.example.org\"\nsecret_file = \"/nonexistent/secret\"\n",
        );
        let o = check(&config, &[]);
        assert_problems(
            &o,
            &config.display().to_string(),
            &["[test] secret_file /nonexistent/secret: cannot read it"],
        );
        let config = dir.config("[test]\ndomain = \"test.example.org\"\n");
        let o = check(&config, &[]);
        assert_problems(
            &o,
            &config.display().to_string(),
            &["[test] missing key \"secret\""],
        );
        let o = check(
            &config,
            &[
                ("FERRY_TEST__ECHO_DELAY_MS", "soon"),
                ("FERRY_TEST__SECRET", "x"),
            ],
        );
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("[test] echo_delay_ms"),
            "{}",
            stderr(&o)
        );
    }

    #[test]
    fn what_the_bridge_refuses_is_reported_by_check_and_stops_run() {
        let dir = Dir::new();
        let config = dir.config(
            "[storage]\ndata_dir = \"$DIR/data\"\n[test]\ndomain = \"test.example.org\"\nsecret = \"x\"\naccounts = { \"Not Valid\" = \"pw\" }\n",
        );
        let o = check(&config, &[]);
        assert_problems(
            &o,
            &config.display().to_string(),
            &[
                "[test] the bridge refuses its configuration: accounts: \"Not Valid\" is not a valid account name",
            ],
        );
        let o = ferry().arg("--config").arg(&config).output().expect("run");
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(err.contains("[test] the bridge cannot start"), "{err}");
        assert!(err.contains("not a valid account name"), "{err}");
    }

    #[test]
    fn one_ferry_per_data_directory() {
        let dir = Dir::new();
        // An XMPP server that is not there: ferry keeps trying.
        let config = dir.config(
            "[xmpp]\nport = 1\n[storage]\ndata_dir = \"$DIR/data\"\n[test]\ndomain = \"test.example.org\"\nsecret = \"x\"\n",
        );
        let mut first = ferry()
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let lock = dir.path().join("data/ferry.lock");
        for _ in 0..100 {
            if lock.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let second = ferry().arg("--config").arg(&config).output().expect("run");
        let still_running = first.try_wait().expect("wait").is_none();
        let _ = first.kill();
        let _ = first.wait();
        assert!(still_running, "the first ferry exited");
        assert_eq!(second.status.code(), Some(1));
        let err = stderr(&second);
        assert!(
            err.contains("another ferry is running with the data directory"),
            "{err}"
        );
    }

    #[test]
    fn disabled_bridge_is_not_checked() {
        let dir = Dir::new();
        let config = dir.config("[test]\nenabled = false\nbogus = 1\n");
        let o = check(&config, &[]);
        assert_problems(&o, &config.display().to_string(), &["no bridge is enabled"]);
        assert!(!stderr(&o).contains("bogus"));
    }
}

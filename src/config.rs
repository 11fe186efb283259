//! Configuration: built-in defaults, then `ferry.toml`, then `FERRY_*`
//! environment variables (`FERRY_IRC__SECRET`), read with figment.
//!
//! [`load`] reads and validates everything at once and returns either a
//! usable [`Config`] or every [`Problem`] it found, each a line an operator
//! can act on (`ferry check` prints them). Only environment variables of
//! the form `FERRY_<SECTION>__<KEY>` are configuration; others such as
//! `FERRY_VENVS` are ignored.
//!
//! Sections: `[xmpp] [storage] [access] [http] [log] [limits]` and one per
//! bridge (`[irc]`, `[matrix]` …), whose `enabled`, `domain`, `secret`,
//! `secret_file`, `allowed_hosts` and `denied_hosts` keys belong to the
//! core and whose other keys are the
//! bridge's own, checked by the bridge's `Config` type through the
//! [`Registry`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use ferry_bridge::HostPolicy;

use crate::access::AccessPolicy;
use crate::bridges::Registry;

/// The keys of a bridge section that belong to the core.
pub const CORE_BRIDGE_KEYS: &[&str] = &[
    "enabled",
    "domain",
    "secret",
    "secret_file",
    "allowed_hosts",
    "denied_hosts",
];

const ENV_PREFIX: &str = "FERRY_";

/// A secret string (component secret). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(..)")
    }
}

/// The whole configuration, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[xmpp]`.
    pub xmpp: XmppConfig,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// `[http]`.
    pub http: HttpConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[cluster]`: set when several instances serve the same domains
    /// (`[cluster] instance` given), None for a single instance.
    pub cluster: Option<ClusterConfig>,
    /// The enabled bridges, in section name order.
    pub bridges: Vec<BridgeConfig>,
}

/// `[xmpp]`: where the XMPP server's component port is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmppConfig {
    /// Host name or address of the XMPP server.
    pub host: String,
    /// Its component port.
    pub port: u16,
    /// Silence on the stream after which a keepalive ping is sent.
    pub keepalive: Duration,
    /// How long to wait for the answer before the stream counts as dead.
    pub keepalive_timeout: Duration,
}

/// `[storage]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// Where databases and bridge files live.
    pub data_dir: PathBuf,
    /// The AEAD key file that seals account secrets (every instance
    /// sharing a PostgreSQL database needs the same one).
    pub key_file: PathBuf,
    /// `postgres://…`: the bridges' state in PostgreSQL instead of SQLite
    /// files.
    pub url: Option<String>,
    /// PEM file of CA certificates trusted, besides the system's, for TLS
    /// to the PostgreSQL server of `url`.
    pub ca_file: Option<PathBuf>,
}

/// `[cluster]`: this instance among several that share one database and
/// serve the same component domains (see `crate::gateway::leases`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This instance's name, unique among the instances.
    pub instance: String,
    /// How long a user's lease lasts without renewal: the time after which
    /// the users of an instance that died are served by another.
    pub lease_timeout: Duration,
}

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where to listen (None: no HTTP listener).
    pub listen: Option<SocketAddr>,
    /// Base URL of published media, without a trailing slash.
    pub public_url: Option<String>,
    /// Largest request body accepted by bridge webhooks.
    pub max_body_bytes: usize,
    /// Largest file published through [`crate::http::Media`].
    pub max_media_bytes: usize,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A `RUST_LOG`-style filter (`info`, `ferry=debug,info` …).
    pub level: String,
}

/// `[limits]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Largest message body accepted or produced, in bytes.
    pub max_message_bytes: usize,
    /// How long the session of a user who is offline, in no room, with
    /// nothing under way, runs on before it is closed (None: never).
    pub session_idle_timeout: Option<Duration>,
}

/// One enabled bridge.
#[derive(Clone)]
pub struct BridgeConfig {
    /// Its section name (`irc`).
    pub name: String,
    /// The component domain.
    pub domain: String,
    /// The component secret.
    pub secret: SecretString,
    /// The file the secret was read from (`secret_file`), if any.
    pub secret_file: Option<PathBuf>,
    /// Who may use it.
    pub access: AccessPolicy,
    /// The hosts it may connect to (`allowed_hosts`, `denied_hosts`).
    pub hosts: HostPolicy,
    /// The bridge's own keys (without the core's), for the registry.
    pub section: Dict,
}

impl fmt::Debug for BridgeConfig {
    /// The bridge's own keys are listed without their values: they may
    /// hold passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeConfig")
            .field("name", &self.name)
            .field("domain", &self.domain)
            .field("secret", &self.secret)
            .field("access", &self.access)
            .field("hosts", &self.hosts)
            .field("keys", &self.section.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One thing wrong with the configuration, as a line for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem(pub String);

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Config {
    /// A one-line summary for `ferry check` and the start-up log.
    pub fn summary(&self) -> String {
        let bridges: Vec<String> = self
            .bridges
            .iter()
            .map(|b| format!("{} ({})", b.name, b.domain))
            .collect();
        let http = match self.http.listen {
            Some(addr) => format!("HTTP on {addr}"),
            None => "no HTTP listener".to_owned(),
        };
        format!(
            "{} bridge{}: {}; XMPP server {}:{}; data in {}; {}",
            self.bridges.len(),
            if self.bridges.len() == 1 { "" } else { "s" },
            bridges.join(", "),
            self.xmpp.host,
            self.xmpp.port,
            match &self.storage.url {
                Some(url) => format!(
                    "{} (databases in PostgreSQL {})",
                    self.storage.data_dir.display(),
                    crate::store::postgres::redacted(url)
                ),
                None => self.storage.data_dir.display().to_string(),
            },
            http
        )
    }

    /// The database file of a bridge.
    pub fn database_path(&self, bridge: &str) -> PathBuf {
        self.storage.data_dir.join(format!("{bridge}.db"))
    }

    /// Where a bridge's database lives: its SQLite file, or its schema in
    /// the PostgreSQL database of `[storage] url`.
    pub fn database(&self, bridge: &str) -> crate::store::Location {
        match &self.storage.url {
            Some(url) => crate::store::Location::Postgres {
                url: url.clone(),
                bridge: bridge.to_owned(),
                ca_file: self.storage.ca_file.clone(),
            },
            None => crate::store::Location::Sqlite(self.database_path(bridge)),
        }
    }

    /// The directory of a bridge's own files.
    pub fn bridge_dir(&self, bridge: &str) -> PathBuf {
        self.storage.data_dir.join(bridge)
    }
}

/// The `FERRY_<SECTION>__<KEY>` variables of an environment.
pub fn env_overrides<I: IntoIterator<Item = (String, String)>>(vars: I) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| {
            k.strip_prefix(ENV_PREFIX)
                .and_then(|rest| rest.split_once("__"))
                .is_some_and(|(section, key)| !section.is_empty() && !key.is_empty())
        })
        .collect();
    out.sort();
    out
}

/// Built-in defaults, the first layer.
#[derive(Serialize)]
struct Defaults {
    xmpp: BTreeMap<&'static str, Value>,
    storage: BTreeMap<&'static str, Value>,
    access: BTreeMap<&'static str, Value>,
    http: BTreeMap<&'static str, Value>,
    log: BTreeMap<&'static str, Value>,
    limits: BTreeMap<&'static str, Value>,
    cluster: BTreeMap<&'static str, Value>,
}

impl Defaults {
    fn new() -> Self {
        Defaults {
            xmpp: BTreeMap::from([
                ("host", Value::from("127.0.0.1")),
                ("port", Value::from(5347u32)),
                ("keepalive", Value::from(60u32)),
                ("keepalive_timeout", Value::from(15u32)),
            ]),
            storage: BTreeMap::from([("data_dir", Value::from("./data"))]),
            access: BTreeMap::from([("admins", Value::from(Vec::<String>::new()))]),
            http: BTreeMap::from([
                ("max_body_bytes", Value::from(16u64 * 1024 * 1024)),
                ("max_media_bytes", Value::from(100u64 * 1024 * 1024)),
            ]),
            log: BTreeMap::from([("level", Value::from("info"))]),
            limits: BTreeMap::from([
                ("max_message_bytes", Value::from(65536u64)),
                ("session_idle_timeout", Value::from(300u32)),
            ]),
            cluster: BTreeMap::from([("lease_timeout", Value::from(10u32))]),
        }
    }
}

#[derive(Deserialize)]
struct XmppRaw {
    host: String,
    port: i64,
    keepalive: i64,
    keepalive_timeout: i64,
}

#[derive(Deserialize)]
struct StorageRaw {
    data_dir: PathBuf,
    key_file: Option<PathBuf>,
    url: Option<String>,
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
struct AccessRaw {
    users: Option<Vec<String>>,
    admins: Vec<String>,
}

#[derive(Deserialize)]
struct HttpRaw {
    listen: Option<String>,
    public_url: Option<String>,
    max_body_bytes: i64,
    max_media_bytes: i64,
}

#[derive(Deserialize)]
struct ClusterRaw {
    instance: Option<String>,
    lease_timeout: i64,
}

#[derive(Deserialize)]
struct LogRaw {
    level: String,
}

#[derive(Deserialize)]
struct LimitsRaw {
    max_message_bytes: i64,
    session_idle_timeout: i64,
}

/// The environment as a figment provider: `FERRY_IRC__SECRET=x` is
/// `irc.secret = "x"`. Values stay strings (numbers and booleans are
/// converted where a number or boolean is expected), except values written
/// as TOML arrays or inline tables (`["*@a.org", "*@b.org"]`).
struct EnvProvider {
    vars: Vec<(String, String)>,
}

impl EnvProvider {
    fn path(key: &str) -> Vec<String> {
        key.trim_start_matches(ENV_PREFIX)
            .split("__")
            .map(|k| k.to_ascii_lowercase())
            .collect()
    }
}

impl Provider for EnvProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment").interpolater(|_: &Profile, keys: &[&str]| {
            let upper: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
            format!("{ENV_PREFIX}{}", upper.join("__"))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, raw) in &self.vars {
            let trimmed = raw.trim_start();
            let value = if trimmed.starts_with('[') || trimmed.starts_with('{') {
                raw.parse::<Value>().unwrap_or_else(|e| match e {})
            } else {
                Value::from(raw.clone())
            };
            insert_path(&mut dict, &Self::path(key), value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// Collects problems, naming where each offending value came from.
struct Problems<'a> {
    figment: &'a Figment,
    file: &'a Path,
    lines: Vec<Problem>,
}

impl Problems<'_> {
    /// Where the value at `path` (dotted) came from: the file or the
    /// environment variable.
    fn origin(&self, path: &str) -> String {
        let keys: Vec<&str> = path.split('.').collect();
        match self.figment.find_metadata(path) {
            Some(md) if md.name == "environment" => md.interpolate(&Profile::Default, &keys),
            _ => self.file.display().to_string(),
        }
    }

    fn push(&mut self, path: &str, message: impl fmt::Display) {
        let origin = self.origin(path);
        self.lines.push(Problem(format!("{origin}: {message}")));
    }

    /// Reports a figment error of `section`, one line per error.
    fn figment_error(&mut self, section: &str, error: figment::Error) {
        for e in error {
            let mut path: Vec<String> = e.path.clone();
            // figment appends the section of `extract_inner` at the end.
            if path.last().map(String::as_str) == Some(section) {
                path.pop();
            } else if path.first().map(String::as_str) == Some(section) {
                path.remove(0);
            }
            let key = path.join(".");
            let (where_, message) = describe(&e.kind, &key);
            let full = if where_.is_empty() {
                section.to_owned()
            } else {
                format!("{section}.{where_}")
            };
            self.push(&full, format!("[{section}] {message}"));
        }
    }
}

/// (dotted key the error is about, sentence).
fn describe(kind: &figment::error::Kind, key: &str) -> (String, String) {
    use figment::error::Kind;
    let at = |k: &str| {
        if k.is_empty() {
            String::new()
        } else {
            format!("{k}: ")
        }
    };
    match kind {
        Kind::UnknownField(field, expected) => {
            let full = if key.is_empty() || key == field || key.ends_with(&format!(".{field}")) {
                if key.is_empty() {
                    field.clone()
                } else {
                    key.to_owned()
                }
            } else {
                format!("{key}.{field}")
            };
            let known = if expected.is_empty() {
                "this section has no keys of its own".to_owned()
            } else {
                format!("known keys: {}", expected.join(", "))
            };
            (full.clone(), format!("unknown key \"{full}\" ({known})"))
        }
        Kind::MissingField(field) => {
            let full = if key.is_empty() {
                field.to_string()
            } else {
                format!("{key}.{field}")
            };
            (key.to_owned(), format!("missing key \"{full}\""))
        }
        Kind::InvalidType(actual, expected) => (
            key.to_owned(),
            format!(
                "{}expected {}, found {actual}",
                at(key),
                plain_type(expected)
            ),
        ),
        Kind::InvalidValue(actual, expected) => (
            key.to_owned(),
            format!(
                "{}expected {}, found {actual}",
                at(key),
                plain_type(expected)
            ),
        ),
        other => (key.to_owned(), format!("{}{other}", at(key))),
    }
}

/// Rust type names in serde messages, in words.
fn plain_type(expected: &str) -> String {
    match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".to_owned(),
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" | "bool" => "true or false".to_owned(),
        other => other.to_owned(),
    }
}

/// The keys of each core section.
const CORE_SECTIONS: &[(&str, &[&str])] = &[
    ("xmpp", &["host", "port", "keepalive", "keepalive_timeout"]),
    ("storage", &["data_dir", "key_file", "url", "ca_file"]),
    ("access", &["users", "admins"]),
    (
        "http",
        &["listen", "public_url", "max_body_bytes", "max_media_bytes"],
    ),
    ("log", &["level"]),
    ("limits", &["max_message_bytes", "session_idle_timeout"]),
    ("cluster", &["instance", "lease_timeout"]),
];

/// Reads and validates the configuration from `path` and the `FERRY_*`
/// variables in `env` (see [`env_overrides`]).
pub fn load(
    path: &Path,
    env: &[(String, String)],
    registry: &Registry,
) -> Result<Config, Vec<Problem>> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(vec![Problem(format!(
            "{}: cannot read the configuration file: {e}",
            path.display()
        ))]);
    }
    let figment = Figment::from(Serialized::defaults(Defaults::new()))
        .merge(Toml::file_exact(path))
        .merge(EnvProvider {
            vars: env_overrides(env.iter().cloned()),
        });
    let mut problems = Problems {
        figment: &figment,
        file: path,
        lines: Vec::new(),
    };
    let top: Dict = match figment.extract() {
        Ok(top) => top,
        Err(e) => {
            let lines = e
                .into_iter()
                .map(|e| Problem(format!("{}: {}", path.display(), e.kind)))
                .collect();
            return Err(lines);
        }
    };

    let xmpp = section::<XmppRaw>(&mut problems, "xmpp").and_then(|raw| xmpp(&mut problems, raw));
    let storage = section::<StorageRaw>(&mut problems, "storage").map(|raw| StorageConfig {
        key_file: raw
            .key_file
            .unwrap_or_else(|| raw.data_dir.join("ferry.key")),
        data_dir: raw.data_dir,
        url: raw.url.filter(|u| !u.trim().is_empty()),
        ca_file: raw.ca_file.filter(|p| !p.as_os_str().is_empty()),
    });
    let access = section::<AccessRaw>(&mut problems, "access");
    let http = section::<HttpRaw>(&mut problems, "http").and_then(|raw| http(&mut problems, raw));
    let log = section::<LogRaw>(&mut problems, "log").and_then(|raw| {
        match tracing_subscriber::EnvFilter::builder().parse(&raw.level) {
            Ok(_) => Some(LogConfig { level: raw.level }),
            Err(e) => {
                problems.push(
                    "log.level",
                    format!("[log] level: bad filter {:?}: {e}", raw.level),
                );
                None
            }
        }
    });
    let limits = section::<LimitsRaw>(&mut problems, "limits").and_then(|raw| {
        let mut ok = true;
        if raw.max_message_bytes < 1024 {
            problems.push(
                "limits.max_message_bytes",
                format!(
                    "[limits] max_message_bytes: {} is too small (at least 1024)",
                    raw.max_message_bytes
                ),
            );
            ok = false;
        }
        if raw.session_idle_timeout < 0 {
            problems.push(
                "limits.session_idle_timeout",
                format!(
                    "[limits] session_idle_timeout: {} must be a number of seconds (0: never close)",
                    raw.session_idle_timeout
                ),
            );
            ok = false;
        }
        ok.then(|| LimitsConfig {
            max_message_bytes: usize::try_from(raw.max_message_bytes).unwrap_or(usize::MAX),
            session_idle_timeout: u64::try_from(raw.session_idle_timeout)
                .ok()
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
        })
    });

    let cluster = section::<ClusterRaw>(&mut problems, "cluster").map(|raw| {
        let mut ok = true;
        if !(2..=3600).contains(&raw.lease_timeout) {
            problems.push(
                "cluster.lease_timeout",
                format!(
                    "[cluster] lease_timeout: {} must be a number of seconds from 2 to 3600",
                    raw.lease_timeout
                ),
            );
            ok = false;
        }
        let instance = raw.instance.map(|i| i.trim().to_owned());
        if instance.as_deref().is_some_and(|i| {
            i.is_empty()
                || i.len() > 64
                || !i
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        }) {
            problems.push(
                "cluster.instance",
                "[cluster] instance: must be 1 to 64 letters, digits, '-', '_' or '.'",
            );
            ok = false;
        }
        match instance {
            Some(instance) if ok => Some(ClusterConfig {
                instance,
                lease_timeout: Duration::from_secs(raw.lease_timeout.unsigned_abs()),
            }),
            _ => None,
        }
    });

    // Every bad entry of [access], one line each.
    let access = access.and_then(|a| {
        let mut ok = true;
        for p in a.users.iter().flatten() {
            if let Err(e) = crate::access::check_pattern(p) {
                problems.push("access.users", format!("[access] {e}"));
                ok = false;
            }
        }
        for j in &a.admins {
            if let Err(e) = crate::access::check_admin(j) {
                problems.push("access.admins", format!("[access] {e}"));
                ok = false;
            }
        }
        ok.then_some(a)
    });
    // The policy of a bridge, once its domain is known.
    let access_for = |domain: &str| -> Option<AccessPolicy> {
        let access = access.as_ref()?;
        let users = match &access.users {
            Some(users) => users.clone(),
            None => vec![AccessPolicy::default_pattern(domain)],
        };
        AccessPolicy::new(&users, &access.admins).ok()
    };
    if let Some(storage) = &storage
        && let Err(e) = crate::store::Key::check_file(&storage.key_file)
    {
        problems.push("storage.key_file", format!("[storage] key_file: {e}"));
    }
    if let Some(url) = storage.as_ref().and_then(|s| s.url.as_deref())
        && let Err(e) = crate::store::postgres::check_url(url)
    {
        problems.push(
            "storage.url",
            format!(
                "[storage] url: {e} ({})",
                crate::store::postgres::redacted(url)
            ),
        );
    }
    if let Some(ca_file) = storage.as_ref().and_then(|s| s.ca_file.as_deref())
        && let Err(e) = crate::store::pg_tls::read_ca_file(ca_file)
    {
        problems.push("storage.ca_file", format!("[storage] ca_file: {e}"));
    }

    let mut bridges = Vec::new();
    let mut domains: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &top {
        if [
            "xmpp", "storage", "access", "http", "log", "limits", "cluster",
        ]
        .contains(&name.as_str())
        {
            continue;
        }
        let Value::Dict(_, dict) = value else {
            if registry.is_known(name) {
                problems.push(name, format!("[{name}] must be a section (a table)"));
            } else {
                problems.push(name, format!("unknown key \"{name}\" at the top level"));
            }
            continue;
        };
        let enabled = match dict.get("enabled") {
            None => true,
            Some(v) => match v.to_bool_lossy() {
                Some(b) => b,
                None => {
                    problems.push(
                        &format!("{name}.enabled"),
                        format!("[{name}] enabled: expected true or false"),
                    );
                    continue;
                }
            },
        };
        if !registry.contains(name) {
            match registry.feature(name) {
                None => problems.push(
                    name,
                    format!(
                        "unknown section [{name}] (known sections: xmpp, storage, access, http, log, limits, cluster, and the bridges {})",
                        registry.known_names().collect::<Vec<_>>().join(", ")
                    ),
                ),
                Some(feature) if enabled => problems.push(
                    name,
                    format!(
                        "[{name}] this ferry was built without the {name} bridge (cargo feature \"{feature}\"); set enabled = false or remove the section"
                    ),
                ),
                Some(_) => {}
            }
            continue;
        }
        if !enabled {
            continue;
        }
        let domain = match dict.get("domain") {
            None => {
                problems.push(name, format!("[{name}] missing key \"domain\" (the component's domain, e.g. {name}.example.org)"));
                None
            }
            Some(v) => match v.as_str() {
                Some(d) => match check_domain(d) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        problems.push(&format!("{name}.domain"), format!("[{name}] domain: {e}"));
                        None
                    }
                },
                None => {
                    problems.push(
                        &format!("{name}.domain"),
                        format!("[{name}] domain: expected a string"),
                    );
                    None
                }
            },
        };
        let secret = bridge_secret(&mut problems, name, dict);
        let hosts = bridge_hosts(&mut problems, name, dict);
        let mut own = dict.clone();
        for key in CORE_BRIDGE_KEYS {
            own.remove(*key);
        }
        if let Err(errors) = registry.check(name, &own) {
            for e in errors {
                problems.figment_error(name, e);
            }
        }
        if let Some(domain) = &domain
            && let Some(other) = domains.insert(domain.clone(), name.clone())
        {
            problems.push(
                    &format!("{name}.domain"),
                    format!("[{name}] domain {domain} is also the domain of [{other}]; each bridge needs its own component domain"),
                );
        }
        let policy = domain.as_ref().and_then(|d| access_for(d));
        if let (Some(domain), Some(secret), Some(access), Some(hosts)) =
            (domain, secret, policy, hosts)
        {
            bridges.push(BridgeConfig {
                name: name.clone(),
                domain,
                secret,
                secret_file: dict
                    .get("secret_file")
                    .and_then(Value::as_str)
                    .map(PathBuf::from),
                access,
                hosts,
                section: own,
            });
        }
    }
    let any_enabled = !domains.is_empty() || !bridges.is_empty();
    if !any_enabled
        && !problems
            .lines
            .iter()
            .any(|p| p.0.contains("] missing key \"domain\""))
    {
        let compiled = registry.names().collect::<Vec<_>>().join(", ");
        problems.lines.push(Problem(format!(
            "{}: no bridge is enabled (add a section for one of: {})",
            path.display(),
            if compiled.is_empty() {
                "none compiled in"
            } else {
                compiled.as_str()
            }
        )));
    }

    let mut lines: Vec<Problem> = Vec::new();
    for p in problems.lines {
        if !lines.contains(&p) {
            lines.push(p);
        }
    }
    match (xmpp, storage, http, log, limits, cluster) {
        (Some(xmpp), Some(storage), Some(http), Some(log), Some(limits), Some(cluster))
            if lines.is_empty() =>
        {
            Ok(Config {
                path: path.to_owned(),
                xmpp,
                storage,
                http,
                log,
                limits,
                cluster,
                bridges,
            })
        }
        _ => Err(lines),
    }
}

fn section<T: serde::de::DeserializeOwned>(problems: &mut Problems, name: &str) -> Option<T> {
    let known = CORE_SECTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
        .unwrap_or(&[]);
    match problems.figment.find_value(name) {
        Ok(Value::Dict(_, dict)) => {
            for key in dict.keys().filter(|k| !known.contains(&k.as_str())) {
                problems.push(
                    &format!("{name}.{key}"),
                    format!(
                        "[{name}] unknown key \"{key}\" (known keys: {})",
                        known.join(", ")
                    ),
                );
            }
        }
        Ok(_) => {
            problems.push(name, format!("[{name}] must be a section (a table)"));
            return None;
        }
        Err(_) => {}
    }
    match problems.figment.extract_inner_lossy::<T>(name) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.figment_error(name, e);
            None
        }
    }
}

fn xmpp(problems: &mut Problems, raw: XmppRaw) -> Option<XmppConfig> {
    let mut ok = true;
    if raw.host.trim().is_empty() {
        problems.push("xmpp.host", "[xmpp] host: must not be empty");
        ok = false;
    }
    let port = match u16::try_from(raw.port) {
        Ok(p) if p > 0 => p,
        _ => {
            problems.push(
                "xmpp.port",
                format!("[xmpp] port: {} is out of range (1-65535)", raw.port),
            );
            ok = false;
            0
        }
    };
    let mut secs = |key: &str, v: i64| -> Duration {
        if !(1..=86_400).contains(&v) {
            problems.push(
                &format!("xmpp.{key}"),
                format!("[xmpp] {key}: {v} is out of range (1-86400 seconds)"),
            );
            ok = false;
        }
        Duration::from_secs(v.clamp(1, 86_400) as u64)
    };
    let keepalive = secs("keepalive", raw.keepalive);
    let keepalive_timeout = secs("keepalive_timeout", raw.keepalive_timeout);
    ok.then_some(XmppConfig {
        host: raw.host,
        port,
        keepalive,
        keepalive_timeout,
    })
}

fn http(problems: &mut Problems, raw: HttpRaw) -> Option<HttpConfig> {
    let mut ok = true;
    let listen = match raw.listen.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => match parse_listen(text) {
            Ok(addr) => Some(addr),
            Err(e) => {
                problems.push("http.listen", format!("[http] listen: {e}"));
                ok = false;
                None
            }
        },
    };
    let public_url = match raw.public_url.as_deref().map(str::trim) {
        None | Some("") => listen.map(|addr| format!("http://{addr}")),
        Some(url) => {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            match rest {
                Some(host) if !host.is_empty() && !url.contains(char::is_whitespace) => {
                    Some(url.trim_end_matches('/').to_owned())
                }
                _ => {
                    problems.push(
                        "http.public_url",
                        format!("[http] public_url: {url:?} is not an http:// or https:// URL"),
                    );
                    ok = false;
                    None
                }
            }
        }
    };
    let mut bytes = |key: &str, v: i64| -> usize {
        if v < 1024 {
            problems.push(
                &format!("http.{key}"),
                format!("[http] {key}: {v} is too small (at least 1024)"),
            );
            ok = false;
        }
        usize::try_from(v.max(1024)).unwrap_or(usize::MAX)
    };
    let max_body_bytes = bytes("max_body_bytes", raw.max_body_bytes);
    let max_media_bytes = bytes("max_media_bytes", raw.max_media_bytes);
    ok.then_some(HttpConfig {
        listen,
        public_url,
        max_body_bytes,
        max_media_bytes,
    })
}

/// Parses `host:port` where host is an IP address (`127.0.0.1:8780`,
/// `[::1]:8780`) or `localhost`.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("{text:?}: port 0 is out of range (1-65535)"));
        }
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "{text:?} is not an address:port (e.g. 127.0.0.1:8780)"
        ));
    };
    let port: u16 = match port.parse::<u64>() {
        Ok(p) if (1..=65535).contains(&p) => p as u16,
        Ok(p) => return Err(format!("{text:?}: port {p} is out of range (1-65535)")),
        Err(_) => return Err(format!("{text:?}: {port:?} is not a port number")),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(format!(
        "{text:?}: {host:?} is not an IP address (e.g. 127.0.0.1:8780 or [::1]:8780)"
    ))
}

fn check_domain(domain: &str) -> Result<String, String> {
    let d = domain.trim();
    if d.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if d.contains(['@', '/']) {
        return Err(format!("{d:?} is a JID, not a domain"));
    }
    match xmpp_parsers::jid::BareJid::new(d) {
        Ok(jid) if jid.node().is_none() => Ok(jid.to_string()),
        Ok(_) => Err(format!("{d:?} is a JID, not a domain")),
        Err(e) => Err(format!("{d:?} is not a valid domain: {e}")),
    }
}

fn bridge_secret(problems: &mut Problems, name: &str, dict: &Dict) -> Option<SecretString> {
    let secret = dict.get("secret");
    let file = dict.get("secret_file");
    match (secret, file) {
        (Some(_), Some(_)) => {
            problems.push(
                &format!("{name}.secret"),
                format!("[{name}] both secret and secret_file are set; keep one"),
            );
            None
        }
        (None, None) => {
            problems.push(
                name,
                format!("[{name}] missing key \"secret\" (or \"secret_file\"): the component secret shared with the XMPP server"),
            );
            None
        }
        (Some(v), None) => match v.as_str() {
            Some(s) if !s.is_empty() => Some(SecretString::new(s)),
            Some(_) => {
                problems.push(
                    &format!("{name}.secret"),
                    format!("[{name}] secret: must not be empty"),
                );
                None
            }
            None => match v.to_num_lossy() {
                // A secret of digits given through the environment.
                Some(_) => Some(SecretString::new(value_text(v))),
                None => {
                    problems.push(
                        &format!("{name}.secret"),
                        format!("[{name}] secret: expected a string"),
                    );
                    None
                }
            },
        },
        (None, Some(v)) => {
            let Some(path) = v.as_str() else {
                problems.push(
                    &format!("{name}.secret_file"),
                    format!("[{name}] secret_file: expected a path"),
                );
                return None;
            };
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let secret = text.trim_end_matches(['\n', '\r']).to_owned();
                    if secret.is_empty() {
                        problems.push(
                            &format!("{name}.secret_file"),
                            format!("[{name}] secret_file {path}: the file is empty"),
                        );
                        None
                    } else {
                        Some(SecretString::new(secret))
                    }
                }
                Err(e) => {
                    problems.push(
                        &format!("{name}.secret_file"),
                        format!("[{name}] secret_file {path}: cannot read it: {e}"),
                    );
                    None
                }
            }
        }
    }
}

/// `allowed_hosts` and `denied_hosts` of a bridge: lists of globs or CIDR
/// networks (a single string, as from the environment, is one pattern).
fn bridge_hosts(problems: &mut Problems, name: &str, dict: &Dict) -> Option<HostPolicy> {
    let mut lists: [Vec<String>; 2] = Default::default();
    let mut ok = true;
    for (key, list) in ["allowed_hosts", "denied_hosts"]
        .iter()
        .zip(lists.iter_mut())
    {
        let path = format!("{name}.{key}");
        let patterns = match dict.get(*key) {
            None => Vec::new(),
            Some(Value::String(_, s)) => vec![s.clone()],
            Some(Value::Array(_, items)) => {
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect();
                match strings {
                    Some(s) => s,
                    None => {
                        problems.push(
                            &path,
                            format!("[{name}] {key}: expected a list of host patterns (strings)"),
                        );
                        ok = false;
                        continue;
                    }
                }
            }
            Some(_) => {
                problems.push(
                    &path,
                    format!("[{name}] {key}: expected a list of host patterns (strings)"),
                );
                ok = false;
                continue;
            }
        };
        for p in &patterns {
            if let Err(e) = HostPolicy::new([p], [""; 0]) {
                problems.push(&path, format!("[{name}] {key}: {e}"));
                ok = false;
            }
        }
        *list = patterns;
    }
    if !ok {
        return None;
    }
    let [allowed, denied] = lists;
    match HostPolicy::new(&allowed, &denied) {
        Ok(p) => Some(p),
        Err(e) => {
            problems.push(name, format!("[{name}] allowed_hosts/denied_hosts: {e}"));
            None
        }
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(_, s) => s.clone(),
        Value::Num(_, n) => match n.to_u128() {
            Some(u) => u.to_string(),
            None => n.to_i128().map(|i| i.to_string()).unwrap_or_default(),
        },
        Value::Bool(_, b) => b.to_string(),
        Value::Char(_, c) => c.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use ferry_bridge::{BridgeSetup, Network};

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct TinyConfig {
        greeting: String,
    }

    fn tiny_build(_: TinyConfig, _: BridgeSetup) -> Result<Arc<dyn Network>, String> {
        Err("not used".into())
    }

    fn registry() -> Registry {
        let mut r = Registry::empty();
        r.add("test", tiny_build);
        r.add("irc", tiny_build);
        r.known("matrix", "matrix");
        r
    }

    struct Case {
        dir: tempfile::TempDir,
    }

    impl Case {
        fn new(toml: &str) -> Case {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("ferry.toml"), toml).expect("write");
            Case { dir }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("ferry.toml")
        }

        fn load(&self, env: &[(&str, &str)]) -> Result<Config, Vec<Problem>> {
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            load(&self.path(), &env, &registry())
        }

        fn problems(&self, env: &[(&str, &str)]) -> Vec<String> {
            match self.load(env) {
                Ok(_) => Vec::new(),
                Err(p) => p.into_iter().map(|p| p.0).collect(),
            }
        }
    }

    const MINIMAL: &str = "[test]\ndomain = \"test.example.org\"\nsecret = \"s3cret\"\n";

    #[test]
    fn defaults_apply() {
        let c = Case::new(MINIMAL).load(&[]).expect("valid");
        assert_eq!(c.xmpp.host, "127.0.0.1");
        assert_eq!(c.xmpp.port, 5347);
        assert_eq!(c.xmpp.keepalive, Duration::from_secs(60));
        assert_eq!(c.storage.data_dir, PathBuf::from("./data"));
        assert_eq!(c.storage.key_file, PathBuf::from("./data/ferry.key"));
        assert_eq!(c.http.listen, None);
        assert_eq!(c.http.public_url, None);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.limits.max_message_bytes, 65536);
        assert_eq!(c.bridges.len(), 1);
        let b = &c.bridges[0];
        assert_eq!(b.name, "test");
        assert_eq!(b.domain, "test.example.org");
        assert_eq!(b.secret.expose(), "s3cret");
        assert!(b.access.allows("alice@example.org"));
        assert!(!b.access.allows("alice@example.com"));
    }

    #[test]
    fn host_policies_are_read_checked_and_kept_out_of_the_bridge_keys() {
        let c = Case::new(&format!(
            "{MINIMAL}allowed_hosts = [\"10.0.0.0/8\", \"*.example.org\"]\ndenied_hosts = [\"*\"]\n"
        ))
        .load(&[])
        .expect("valid");
        let b = &c.bridges[0];
        assert_eq!(b.hosts.allowed(), ["10.0.0.0/8", "*.example.org"]);
        assert_eq!(b.hosts.denied(), ["*"]);
        assert!(!b.section.contains_key("allowed_hosts"));
        // From the environment, one pattern as a plain string.
        let c = Case::new(MINIMAL)
            .load(&[("FERRY_TEST__ALLOWED_HOSTS", "127.0.0.1")])
            .expect("valid");
        assert_eq!(c.bridges[0].hosts.allowed(), ["127.0.0.1"]);
        assert_eq!(
            Case::new(MINIMAL).load(&[]).expect("valid").bridges[0].hosts,
            HostPolicy::default()
        );
        let p = Case::new(&format!(
            "{MINIMAL}allowed_hosts = [\"10.0.0.0/99\", 3]\ndenied_hosts = \"a{{b\"\n"
        ))
        .problems(&[]);
        assert!(
            p.iter()
                .any(|l| l.contains("[test] allowed_hosts: expected a list of host patterns")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.contains("[test] denied_hosts: bad host pattern \"a{b\"")),
            "{p:#?}"
        );
        let p = Case::new(&format!("{MINIMAL}allowed_hosts = [\"10.0.0.0/99\"]\n")).problems(&[]);
        assert!(
            p.iter()
                .any(|l| l.contains("[test] allowed_hosts: bad host pattern \"10.0.0.0/99\"")),
            "{p:#?}"
        );
    }

    #[test]
    fn cluster_is_off_unless_an_instance_is_named() {
        let c = Case::new(MINIMAL).load(&[]).expect("valid");
        assert_eq!(c.cluster, None);
        let c = Case::new(&format!("[cluster]\ninstance = \"a-1\"\n{MINIMAL}"))
            .load(&[("FERRY_CLUSTER__LEASE_TIMEOUT", "6")])
            .expect("valid");
        assert_eq!(
            c.cluster,
            Some(ClusterConfig {
                instance: "a-1".into(),
                lease_timeout: Duration::from_secs(6),
            })
        );
        let p = Case::new(&format!(
            "[cluster]\ninstance = \"a b\"\nlease_timeout = 1\nleader = true\n{MINIMAL}"
        ))
        .problems(&[]);
        assert!(p.iter().any(|l| l.contains("[cluster] instance")), "{p:?}");
        assert!(
            p.iter().any(|l| l.contains("[cluster] lease_timeout")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|l| l.contains("unknown key \"leader\"")),
            "{p:?}"
        );
    }

    #[test]
    fn file_then_env() {
        let case = Case::new(
            "[xmpp]\nhost = \"xmpp.internal\"\nport = 5348\n\n[storage]\ndata_dir = \"/var/lib/ferry\"\n\n[http]\nlisten = \"127.0.0.1:8780\"\n\n[test]\ndomain = \"test.example.org\"\nsecret = \"from-file\"\ngreeting = \"hi\"\n",
        );
        let c = case
            .load(&[
                ("FERRY_TEST__SECRET", "from-env"),
                ("FERRY_XMPP__PORT", "5400"),
                ("FERRY_ACCESS__USERS", "[\"*@a.org\", \"bob@b.org\"]"),
                ("FERRY_VENVS", "/opt/ferry-venvs"),
                ("HOME", "/root"),
            ])
            .expect("valid");
        assert_eq!(c.xmpp.host, "xmpp.internal");
        assert_eq!(c.xmpp.port, 5400);
        assert_eq!(
            c.storage.key_file,
            PathBuf::from("/var/lib/ferry/ferry.key")
        );
        assert_eq!(c.http.public_url.as_deref(), Some("http://127.0.0.1:8780"));
        let b = &c.bridges[0];
        assert_eq!(b.secret.expose(), "from-env");
        assert_eq!(
            b.section.get("greeting").and_then(|v| v.as_str()),
            Some("hi")
        );
        assert!(b.access.allows("x@a.org"));
        assert!(b.access.allows("bob@b.org"));
        assert!(!b.access.allows("x@example.org"));
    }

    #[test]
    fn numeric_secret_from_env_stays_text() {
        let c = Case::new("[test]\ndomain = \"t.example.org\"\n")
            .load(&[("FERRY_TEST__SECRET", "0012345")])
            .expect("valid");
        assert_eq!(c.bridges[0].secret.expose(), "0012345");
    }

    #[test]
    fn storage_ca_file_is_read_and_checked() {
        let case = Case::new("");
        let write = |extra: &str| {
            std::fs::write(
                case.path(),
                format!(
                    "[storage]\ndata_dir = \"{}\"\nurl = \"postgres://f:Hunter2Secret@db.example.org/ferry?sslmode=require\"\n{extra}{MINIMAL}",
                    case.dir.path().display()
                ),
            )
            .expect("write");
        };
        write("");
        assert_eq!(case.load(&[]).expect("valid").storage.ca_file, None);
        let missing = case.dir.path().join("missing.pem");
        write(&format!("ca_file = \"{}\"\n", missing.display()));
        let problems = case.problems(&[]);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("[storage] ca_file: cannot read") && p.contains("missing.pem")),
            "{problems:?}"
        );
        let not_pem = case.dir.path().join("not.pem");
        std::fs::write(&not_pem, "just text\n").expect("write");
        write(&format!("ca_file = \"{}\"\n", not_pem.display()));
        let problems = case.problems(&[]);
        assert!(
            problems.iter().any(|p| p.contains("[storage] ca_file:")
                && p.contains("holds no PEM certificate")),
            "{problems:?}"
        );
        assert!(
            !problems.iter().any(|p| p.contains("Hunter2Secret")),
            "{problems:?}"
        );
    }

    #[test]
    fn secret_file_is_read_and_trimmed() {
        let case = Case::new("");
        let secret = case.dir.path().join("secret");
        std::fs::write(&secret, "from-file\n").expect("write");
        std::fs::write(
            case.path(),
            format!(
                "[test]\ndomain = \"t.example.org\"\nsecret_file = \"{}\"\n",
                secret.display()
            ),
        )
        .expect("write");
        let c = case.load(&[]).expect("valid");
        assert_eq!(c.bridges[0].secret.expose(), "from-file");
    }

    #[test]
    fn disabled_and_absent_bridges_are_not_started() {
        let c = Case::new(
            "[test]\ndomain = \"t.example.org\"\nsecret = \"x\"\n[irc]\nenabled = false\n[matrix]\nenabled = false\n",
        )
        .load(&[])
        .expect("valid");
        assert_eq!(c.bridges.len(), 1);
        assert_eq!(c.bridges[0].name, "test");
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let c = Case::new(&format!("{MINIMAL}greeting = \"bridge-password\"\n"))
            .load(&[])
            .expect("valid");
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("bridge-password"), "{text}");
        assert!(text.contains("greeting"), "{text}");
    }

    fn has(problems: &[String], needle: &str) -> bool {
        problems.iter().any(|p| p.contains(needle))
    }

    #[test]
    fn every_problem_is_reported() {
        let case = Case::new(
            "[xmpp]\nhots = \"x\"\nport = 70000\n\n[access]\nusers = [\"[bad\"]\n\n[http]\nlisten = \"nowhere\"\n\n[log]\nlevel = \"ferry=loud\"\n\n[bogus]\nx = 1\n\n[test]\ndomain = \"same.example.org\"\nsecret = \"a\"\nsecret_file = \"/nonexistent\"\ngreting = \"typo\"\n\n[irc]\ndomain = \"same.example.org\"\nsecret_file = \"/nonexistent/secret\"\n",
        );
        let p = case.problems(&[]);
        let path = case.path().display().to_string();
        assert!(has(&p, "[xmpp] unknown key \"hots\""), "{p:#?}");
        assert!(has(&p, "[xmpp] port: 70000 is out of range"), "{p:#?}");
        assert!(has(&p, "[access] bad pattern \"[bad\""), "{p:#?}");
        assert!(has(&p, "[http] listen: \"nowhere\""), "{p:#?}");
        assert!(has(&p, "[log] level: bad filter"), "{p:#?}");
        assert!(has(&p, "unknown section [bogus]"), "{p:#?}");
        assert!(has(&p, "[test] both secret and secret_file"), "{p:#?}");
        assert!(
            has(&p, "[test] unknown key \"greting\" (known keys: greeting)"),
            "{p:#?}"
        );
        assert!(
            has(&p, "[irc] secret_file /nonexistent/secret: cannot read it"),
            "{p:#?}"
        );
        assert!(
            has(&p, "domain same.example.org is also the domain of"),
            "{p:#?}"
        );
        assert!(p.iter().all(|l| l.starts_with(&path)), "{p:#?}");
    }

    #[test]
    fn env_problems_name_the_variable() {
        let p =
            Case::new(MINIMAL).problems(&[("FERRY_XMPP__PORTT", "1"), ("FERRY_XMPP__PORT", "0")]);
        assert!(
            has(&p, "FERRY_XMPP__PORTT: [xmpp] unknown key \"portt\""),
            "{p:#?}"
        );
        assert!(
            has(&p, "FERRY_XMPP__PORT: [xmpp] port: 0 is out of range"),
            "{p:#?}"
        );
    }

    #[test]
    fn missing_domain_secret_and_no_bridge() {
        let p = Case::new("[test]\n").problems(&[]);
        assert!(has(&p, "[test] missing key \"domain\""), "{p:#?}");
        assert!(has(&p, "[test] missing key \"secret\""), "{p:#?}");
        let p = Case::new("[xmpp]\nport = 5347\n").problems(&[]);
        assert!(has(&p, "no bridge is enabled"), "{p:#?}");
        let p = Case::new("[test]\nenabled = false\n").problems(&[]);
        assert!(has(&p, "no bridge is enabled"), "{p:#?}");
    }

    #[test]
    fn uncompiled_bridge_and_bad_types() {
        let p = Case::new(
            "[matrix]\ndomain = \"m.example.org\"\nsecret = \"x\"\n[test]\ndomain = \"t.example.org\"\nsecret = \"x\"\ngreeting = 5\n[limits]\nmax_message_bytes = \"lots\"\n",
        )
        .problems(&[]);
        assert!(
            has(
                &p,
                "[matrix] this ferry was built without the matrix bridge"
            ),
            "{p:#?}"
        );
        assert!(has(&p, "[test] greeting: expected a string"), "{p:#?}");
        assert!(has(&p, "[limits] max_message_bytes: expected"), "{p:#?}");
    }

    #[test]
    fn missing_file_and_bad_toml() {
        let p = load(Path::new("/nonexistent/ferry.toml"), &[], &registry()).expect_err("missing");
        assert!(
            p[0].0.contains("cannot read the configuration file"),
            "{p:?}"
        );
        let p = Case::new("[xmpp\nport = 1").problems(&[]);
        assert_eq!(p.len(), 1, "{p:#?}");
    }

    #[test]
    fn bad_domain_and_admin() {
        let p = Case::new(
            "[access]\nadmins = [\"not a jid/\"]\n[test]\ndomain = \"alice@example.org\"\nsecret = \"x\"\n",
        )
        .problems(&[]);
        assert!(
            has(&p, "[test] domain: \"alice@example.org\" is a JID"),
            "{p:#?}"
        );
        assert!(has(&p, "[access] bad admin"), "{p:#?}");
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("127.0.0.1:8780").expect("ok"),
            SocketAddr::from(([127, 0, 0, 1], 8780))
        );
        assert!(parse_listen("[::1]:8780").is_ok());
        assert!(parse_listen("localhost:8780").is_ok());
        assert!(
            parse_listen("127.0.0.1:99999")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(parse_listen("127.0.0.1").is_err());
        assert!(parse_listen("example.org:80").is_err());
    }
}

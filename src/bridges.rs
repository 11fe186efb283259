//! The registry of networks: every network Ferry knows, with its
//! configuration section and cargo feature, and the constructor of those
//! compiled into this binary. Adding a network is one crate plus one line
//! in [`Registry::compiled`]:
//!
//! ```ignore
//! "email" => feature "email", ferry_email::build;
//! ```
//!
//! The same line tells `ferry check` that `[email]` is a known section (and
//! which feature builds it, when this binary was built without it).
//!
//! A bridge crate exposes `pub struct Config` (serde `Deserialize` +
//! `Default`, `#[serde(deny_unknown_fields)]`, and `#[serde(default)]` if
//! its keys are optional) holding the keys of its configuration section
//! other than the core's `enabled`, `domain`, `secret` and `secret_file`,
//! and `pub fn build(config: Config, setup: BridgeSetup) ->
//! Result<Arc<dyn Network>, String>`. [`Registry::compiled`] adds one line
//! per bridge behind its cargo feature:
//!
//! ```ignore
//! #[cfg(feature = "irc")]
//! registry.add("irc", ferry_irc::build);
//! ```
//!
//! The same deserialisation serves `ferry check` (unknown or mistyped keys
//! of the section are reported with the section named) and start-up.
//! `ferry check` also calls `build` once, with a scratch `data_dir` that is
//! removed afterwards, so what a bridge refuses in its section is reported
//! there too: `build` validates and constructs, it must not connect
//! anywhere (sessions do that).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use ferry_bridge::{BridgeSetup, Network};
use figment::Figment;
use figment::providers::Serialized;
use figment::value::Dict;
use serde::de::DeserializeOwned;

/// A bridge's constructor: function signature every bridge crate exports.
pub type BuildFn<C> = fn(C, BridgeSetup) -> Result<Arc<dyn Network>, String>;

/// A configuration error (boxed: figment's error is large).
pub type ConfigError = Box<figment::Error>;

trait Constructor: Send + Sync {
    fn known_keys(&self) -> Option<&'static [&'static str]>;
    fn check(&self, section: &Dict) -> Result<(), ConfigError>;
    fn build(&self, section: &Dict, setup: BridgeSetup) -> Result<Arc<dyn Network>, String>;
}

struct Typed<C> {
    build: BuildFn<C>,
    _config: PhantomData<fn() -> C>,
}

impl<C: DeserializeOwned + Default> Typed<C> {
    fn config(section: &Dict) -> Result<C, ConfigError> {
        if section.is_empty() {
            return Ok(C::default());
        }
        // Lossy: values from the environment are strings; "8" is a number
        // and "true" a boolean where the bridge expects one.
        Figment::from(Serialized::defaults(section))
            .extract_lossy::<C>()
            .map_err(Box::new)
    }
}

impl<C: DeserializeOwned + Default> Constructor for Typed<C> {
    /// The keys `C` accepts, learnt from the error a key no config has
    /// provokes (`deny_unknown_fields` lists the expected ones).
    fn known_keys(&self) -> Option<&'static [&'static str]> {
        let mut probe = Dict::new();
        probe.insert("\u{1}".into(), figment::value::Value::from(0u8));
        match Figment::from(Serialized::defaults(&probe)).extract_lossy::<C>() {
            Err(e) => e.into_iter().find_map(|e| match e.kind {
                figment::error::Kind::UnknownField(_, expected) => Some(expected),
                _ => None,
            }),
            Ok(_) => None,
        }
    }

    fn check(&self, section: &Dict) -> Result<(), ConfigError> {
        Self::config(section).map(|_| ())
    }

    fn build(&self, section: &Dict, setup: BridgeSetup) -> Result<Arc<dyn Network>, String> {
        let config = Self::config(section).map_err(|e| {
            e.into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        (self.build)(config, setup)
    }
}

/// One network the registry knows.
struct Entry {
    /// Its configuration section.
    name: &'static str,
    /// The cargo feature that compiles it in.
    feature: &'static str,
    /// Its constructor, when compiled in.
    build: Option<Box<dyn Constructor>>,
}

/// The list of networks: `"section" => feature "cargo feature", constructor;`
/// (`none` for a network whose crate does not exist yet). Each line adds the
/// network's constructor when its feature is on, else only its name.
macro_rules! networks {
    ($registry:ident; $($name:literal => feature $feature:literal, $build:tt $(:: $path:ident)*;)*) => {
        $( networks!(@one $registry, $name, $feature, $build $(:: $path)*); )*
    };
    (@one $registry:ident, $name:literal, $feature:literal, none) => {
        $registry.known($name, $feature);
    };
    (@one $registry:ident, $name:literal, $feature:literal, $build:ident $(:: $path:ident)*) => {
        $registry.known($name, $feature);
        #[cfg(feature = $feature)]
        $registry.add($name, $build $(:: $path)*);
    };
}

/// Bridges by section name.
#[derive(Default)]
pub struct Registry {
    bridges: Vec<Entry>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Registry {
    /// An empty registry (tests add their own bridges).
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// Every network Ferry knows; those of this build's features compiled
    /// in. The one list of networks.
    pub fn compiled() -> Registry {
        let mut registry = Registry::empty();
        networks! { registry;
            "irc" => feature "irc", ferry_irc::build;
            "matrix" => feature "matrix", ferry_matrix::build;
            "email" => feature "email", none;
            "sms" => feature "sms", ferry_sms::build;
            "test" => feature "test-bridge", ferry_testbridge::build;
        }
        registry
    }

    /// Registers a compiled bridge under its section name (its feature is
    /// taken to be the same name).
    pub fn add<C>(&mut self, name: &'static str, build: BuildFn<C>) -> &mut Registry
    where
        C: DeserializeOwned + Default + 'static,
    {
        let feature = self
            .bridges
            .iter()
            .find(|e| e.name == name)
            .map_or(name, |e| e.feature);
        self.bridges.retain(|e| e.name != name);
        self.bridges.push(Entry {
            name,
            feature,
            build: Some(Box::new(Typed {
                build,
                _config: PhantomData,
            })),
        });
        self
    }

    /// Records a network this binary was built without, and the cargo
    /// feature that builds it.
    pub fn known(&mut self, name: &'static str, feature: &'static str) -> &mut Registry {
        self.bridges.retain(|e| e.name != name);
        self.bridges.push(Entry {
            name,
            feature,
            build: None,
        });
        self
    }

    /// Whether a bridge of that name is compiled in.
    pub fn contains(&self, name: &str) -> bool {
        self.bridges
            .iter()
            .any(|e| e.name == name && e.build.is_some())
    }

    /// Whether a network of that name is known (compiled in or not).
    pub fn is_known(&self, name: &str) -> bool {
        self.bridges.iter().any(|e| e.name == name)
    }

    /// The cargo feature that compiles a known network in.
    pub fn feature(&self, name: &str) -> Option<&'static str> {
        self.bridges
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.feature)
    }

    /// The names of the compiled bridges.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.bridges
            .iter()
            .filter(|e| e.build.is_some())
            .map(|e| e.name)
    }

    /// The names of every known network, compiled in or not.
    pub fn known_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.bridges.iter().map(|e| e.name)
    }

    fn get(&self, name: &str) -> Result<&dyn Constructor, ConfigError> {
        self.bridges
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.build.as_deref())
            .ok_or_else(|| {
                Box::new(figment::Error::from(format!(
                    "no bridge named {name} is compiled in"
                )))
            })
    }

    /// Checks a bridge's own keys (its section without the core's keys):
    /// every unknown key, then the values of the known ones.
    pub fn check(&self, name: &str, section: &Dict) -> Result<(), Vec<figment::Error>> {
        let bridge = self.get(name).map_err(|e| vec![*e])?;
        let mut errors = Vec::new();
        let mut known_only = section.clone();
        if let Some(known) = bridge.known_keys() {
            for key in section.keys().filter(|k| !known.contains(&k.as_str())) {
                errors.push(
                    figment::Error::from(figment::error::Kind::UnknownField(key.clone(), known))
                        .with_path(key),
                );
                known_only.remove(key);
            }
        }
        if let Err(e) = bridge.check(&known_only) {
            errors.push(*e);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Builds a bridge from its own keys.
    pub fn build(
        &self,
        name: &str,
        section: &Dict,
        setup: BridgeSetup,
    ) -> Result<Arc<dyn Network>, String> {
        self.get(name)
            .map_err(|e| e.to_string())?
            .build(section, setup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ferry_bridge::{
        Account, AddressContext, AddressError, AddressRules, Capabilities, Form, FormValues,
        LoginError, NetworkInfo, Prompt, Registration, Session, SessionContext, SessionPolicy,
        UserId,
    };
    use figment::value::Value;
    use serde::Deserialize;

    /// A bridge that only remembers how it was configured.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct TinyConfig {
        greeting: String,
        repeat: u32,
        loud: bool,
    }

    struct Tiny {
        info: NetworkInfo,
        config: TinyConfig,
        setup: BridgeSetup,
    }

    struct NoAddresses;

    impl AddressRules for NoAddresses {
        fn parse(
            &self,
            local: &str,
            _: Option<&str>,
            _ctx: &AddressContext<'_>,
        ) -> Result<ferry_bridge::Address, AddressError> {
            Err(AddressError::new(format!("nothing is called {local}")))
        }
        fn format(&self, _: &ferry_bridge::Address) -> (String, Option<String>) {
            (String::new(), None)
        }
        fn prompt(&self) -> Prompt {
            Prompt {
                description: "Nothing".into(),
                label: "Nothing".into(),
            }
        }
        fn from_prompt(
            &self,
            input: &str,
            ctx: &AddressContext<'_>,
        ) -> Result<ferry_bridge::Address, AddressError> {
            self.parse(input, None, ctx)
        }
    }

    #[async_trait::async_trait]
    impl Network for Tiny {
        fn info(&self) -> &NetworkInfo {
            &self.info
        }
        fn address(&self) -> &dyn AddressRules {
            &NoAddresses
        }
        fn registration(&self) -> Form {
            Form::new(format!(
                "{} x{} loud={} in {}",
                self.config.greeting, self.config.repeat, self.config.loud, self.setup.domain
            ))
        }
        async fn login(&self, _: &UserId, _: &FormValues) -> Result<Account, LoginError> {
            Err(LoginError::Unreachable("tiny".into()))
        }
        async fn connect(&self, _: SessionContext) -> Result<Box<dyn Session>, LoginError> {
            Err(LoginError::Unreachable("tiny".into()))
        }
    }

    fn build(config: TinyConfig, setup: BridgeSetup) -> Result<Arc<dyn Network>, String> {
        if config.greeting == "fail" {
            return Err("the greeting may not be \"fail\"".into());
        }
        Ok(Arc::new(Tiny {
            info: NetworkInfo {
                name: "Tiny".into(),
                gateway_type: "tiny".into(),
                registration: Registration::Optional,
                sessions: SessionPolicy::OnDemand,
                capabilities: Capabilities::default(),
                limits: ferry_bridge::Limits::default(),
            },
            config,
            setup,
        }))
    }

    fn registry() -> Registry {
        let mut r = Registry::empty();
        r.add("tiny", build);
        r
    }

    fn setup() -> BridgeSetup {
        BridgeSetup {
            domain: "tiny.example.org".into(),
            data_dir: "/tmp/tiny".into(),
            hosts: Default::default(),
        }
    }

    fn dict(pairs: &[(&str, Value)]) -> Dict {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn every_network_is_known_with_its_feature() {
        let r = Registry::compiled();
        for name in ["irc", "matrix", "email", "sms", "test"] {
            assert!(r.is_known(name), "{name}");
        }
        assert_eq!(r.feature("test"), Some("test-bridge"));
        assert_eq!(r.feature("email"), Some("email"));
        assert!(!r.contains("email"), "no email crate yet");
        assert!(r.names().all(|n| r.contains(n)));
        let mut r = Registry::empty();
        r.known("tiny", "tiny-feature");
        assert!(r.is_known("tiny") && !r.contains("tiny"));
        r.add("tiny", build);
        assert!(r.contains("tiny"));
        assert_eq!(r.feature("tiny"), Some("tiny-feature"));
    }

    #[test]
    fn builds_from_its_section() {
        let r = registry();
        assert!(r.contains("tiny"));
        assert!(!r.contains("irc"));
        let net = r
            .build(
                "tiny",
                &dict(&[
                    ("greeting", Value::from("hello")),
                    // As it arrives from the environment.
                    ("repeat", Value::from("3")),
                    ("loud", Value::from("true")),
                ]),
                setup(),
            )
            .expect("builds");
        assert_eq!(
            net.registration().title,
            "hello x3 loud=true in tiny.example.org"
        );
    }

    #[test]
    fn empty_section_uses_defaults() {
        let net = registry()
            .build("tiny", &Dict::new(), setup())
            .expect("builds");
        assert_eq!(
            net.registration().title,
            " x0 loud=false in tiny.example.org"
        );
    }

    #[test]
    fn unknown_and_mistyped_keys_are_refused() {
        let r = registry();
        let e = r
            .check("tiny", &dict(&[("greting", Value::from("x"))]))
            .expect_err("unknown key");
        assert!(
            matches!(&e[0].kind, figment::error::Kind::UnknownField(f, known) if f == "greting" && known.contains(&"greeting")),
            "{e:?}"
        );
        let e = r
            .check("tiny", &dict(&[("repeat", Value::from("many"))]))
            .expect_err("bad type");
        assert_eq!(e[0].path, vec!["repeat".to_owned()]);
        // Every unknown key and the bad value, together.
        let e = r
            .check(
                "tiny",
                &dict(&[
                    ("a", Value::from(1u8)),
                    ("b", Value::from(1u8)),
                    ("repeat", Value::from("many")),
                ]),
            )
            .expect_err("three problems");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(r.check("nope", &Dict::new()).is_err());
    }

    #[test]
    fn build_errors_are_reported() {
        let e = registry()
            .build("tiny", &dict(&[("greeting", Value::from("fail"))]), setup())
            .err()
            .expect("fails");
        assert!(e.contains("may not be"), "{e}");
    }
}

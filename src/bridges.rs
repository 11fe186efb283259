//! The registry of bridges compiled into this binary: configuration section
//! name -> constructor. Adding a network is one crate plus one line here.
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

/// Bridges by section name.
#[derive(Default)]
pub struct Registry {
    bridges: Vec<(&'static str, Box<dyn Constructor>)>,
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

    /// Every bridge compiled into this binary.
    pub fn compiled() -> Registry {
        #[allow(unused_mut)]
        let mut registry = Registry::empty();
        #[cfg(feature = "test-bridge")]
        registry.add("test", ferry_testbridge::build);
        #[cfg(feature = "irc")]
        registry.add("irc", ferry_irc::build);
        #[cfg(feature = "matrix")]
        registry.add("matrix", ferry_matrix::build);
        registry
    }

    /// Registers a bridge under its section name.
    pub fn add<C>(&mut self, name: &'static str, build: BuildFn<C>) -> &mut Registry
    where
        C: DeserializeOwned + Default + 'static,
    {
        self.bridges.retain(|(n, _)| *n != name);
        self.bridges.push((
            name,
            Box::new(Typed {
                build,
                _config: PhantomData,
            }),
        ));
        self
    }

    /// Whether a bridge of that name is compiled in.
    pub fn contains(&self, name: &str) -> bool {
        self.bridges.iter().any(|(n, _)| *n == name)
    }

    /// The names of the compiled bridges.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.bridges.iter().map(|(n, _)| *n)
    }

    fn get(&self, name: &str) -> Result<&dyn Constructor, ConfigError> {
        self.bridges
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c.as_ref())
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
        Account, AddressError, AddressRules, Capabilities, Form, FormValues, LoginError,
        NetworkInfo, Prompt, Registration, Session, SessionContext, SessionPolicy, UserId,
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
        fn from_prompt(&self, input: &str) -> Result<ferry_bridge::Address, AddressError> {
            self.parse(input, None)
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

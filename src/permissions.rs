//! File modes an operator should fix: a component secret file every user
//! of the machine can read, a data directory every user can write. These
//! are warnings (the gateway still runs): `ferry check` prints them and
//! `ferry run` logs them at start-up, each with the `chmod` that fixes it.
//! (A key file others can read is refused outright, by the store.)

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::config::Config;

/// One warning, a line for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning(pub String);

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The mode bits of a path (None when it does not exist or cannot be read:
/// loading the configuration already reported that).
fn mode(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// Every warning about file modes in `config`.
pub fn warnings(config: &Config) -> Vec<Warning> {
    let mut out = Vec::new();
    for bridge in &config.bridges {
        let Some(path) = &bridge.secret_file else {
            continue;
        };
        if let Some(m) = mode(path)
            && m & 0o004 != 0
        {
            out.push(Warning(format!(
                "[{}] secret_file {}: every user of this machine can read the component secret (mode {:04o}); run: chmod o-rwx {}",
                bridge.name,
                path.display(),
                m,
                path.display()
            )));
        }
    }
    let dir = &config.storage.data_dir;
    if let Some(m) = mode(dir)
        && m & 0o002 != 0
    {
        out.push(Warning(format!(
            "[storage] data_dir {}: every user of this machine can write to it (mode {:04o}); run: chmod o-w {}",
            dir.display(),
            m,
            dir.display()
        )));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use ferry_bridge::{BridgeSetup, Network};

    use crate::bridges::Registry;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct NoKeys {}

    fn never(_: NoKeys, _: BridgeSetup) -> Result<Arc<dyn Network>, String> {
        Err("not used".into())
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn world_readable_secret_and_world_writable_data_dir_are_named_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").expect("write");
        let toml = dir.path().join("ferry.toml");
        std::fs::write(
            &toml,
            format!(
                "[storage]\ndata_dir = \"{}\"\n\n[test]\ndomain = \"t.example.org\"\nsecret_file = \"{}\"\n",
                data.display(),
                secret.display()
            ),
        )
        .expect("write");
        let mut registry = Registry::empty();
        registry.add("test", never);
        let load = || crate::config::load(&toml, &[], &registry).expect("valid configuration");
        chmod(&secret, 0o600);
        chmod(&data, 0o700);
        assert_eq!(warnings(&load()), vec![]);
        chmod(&secret, 0o640);
        chmod(&data, 0o750);
        assert_eq!(
            warnings(&load()),
            vec![],
            "group access is the operator's choice"
        );
        chmod(&secret, 0o644);
        chmod(&data, 0o777);
        let w = warnings(&load());
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].0.contains("[test] secret_file"), "{}", w[0]);
        assert!(w[0].0.contains("mode 0644"), "{}", w[0]);
        assert!(
            w[0].0
                .contains(&format!("run: chmod o-rwx {}", secret.display())),
            "{}",
            w[0]
        );
        assert!(w[1].0.contains("[storage] data_dir"), "{}", w[1]);
        assert!(
            w[1].0
                .contains(&format!("run: chmod o-w {}", data.display())),
            "{}",
            w[1]
        );
    }
}

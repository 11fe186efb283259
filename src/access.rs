//! Who may use a bridge and who administers it (`[access]`).

/// Access rules of one bridge.
#[derive(Clone, Debug)]
pub struct AccessPolicy {}

impl AccessPolicy {
    /// Whether a bare JID may register with and use the bridge.
    pub fn allows(&self, bare_jid: &str) -> bool {
        let _ = bare_jid;
        todo!("access: allows")
    }

    /// Whether a bare JID is an administrator.
    pub fn is_admin(&self, bare_jid: &str) -> bool {
        let _ = bare_jid;
        todo!("access: is_admin")
    }
}

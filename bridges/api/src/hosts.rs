//! Which hosts a bridge may connect to when a user's input names one (an
//! IRC server in a JID, a Matrix homeserver, a mail server): the
//! operator's `allowed_hosts` and `denied_hosts` of the bridge's section,
//! and by default no loopback, private, link-local or unique-local address.
//!
//! The check is made on the addresses a name resolves to, and the caller
//! connects to exactly the addresses [`HostPolicy::check`] returns, so a
//! name cannot point around the policy (nor change its answer between the
//! check and the connection).
//!
//! Patterns are globs (`*.libera.chat`, `127.0.0.*`, case-insensitive, `*`
//! also matches dots) matched against the host as the user wrote it and
//! against each address it resolves to, or networks in CIDR notation
//! (`10.0.0.0/8`, `fd00::/8`) matched against the addresses. The order:
//!
//! 1. a host or address matching `allowed_hosts` is allowed, even an
//!    internal one (`allowed_hosts = ["*"]` turns the policy off);
//! 2. else one matching `denied_hosts` is refused (`denied_hosts = ["*"]`
//!    with an allowed list allows only that list);
//! 3. else an internal address is refused (see [`internal_kind`]).
//!
//! Addresses refused are left out; the host is refused when none is left.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use ipnet::IpNet;

/// The operator's rules for the hosts one bridge connects to.
#[derive(Clone, Default)]
pub struct HostPolicy {
    allowed: Patterns,
    denied: Patterns,
}

/// A list of patterns, compiled.
#[derive(Clone, Default)]
struct Patterns {
    written: Vec<String>,
    globs: GlobSet,
    nets: Vec<IpNet>,
}

/// A pattern of `allowed_hosts` or `denied_hosts` that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad host pattern {pattern:?}: {reason}")]
pub struct HostPatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a host is not connected to. The text is meant for the user who
/// named the host.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostRefused {
    /// The operator denied it (`denied_hosts`).
    #[error("this gateway does not connect to {host}: its operator does not allow it")]
    Denied {
        /// The host as named.
        host: String,
    },
    /// It is (or resolves to) an internal address.
    #[error("{}", internal_text(host, address, kind))]
    Internal {
        /// The host as named.
        host: String,
        /// The address refused.
        address: IpAddr,
        /// What kind of address ("loopback", "private" …).
        kind: &'static str,
    },
    /// The name does not resolve.
    #[error("cannot find the address of {host}: {reason}")]
    Unresolved {
        /// The host as named.
        host: String,
        /// What the resolver said.
        reason: String,
    },
}

fn internal_text(host: &str, address: &IpAddr, kind: &str) -> String {
    let what = if host == address.to_string() {
        format!("{host} is a {kind} address")
    } else {
        format!("{host} resolves to {address}, a {kind} address")
    };
    format!(
        "this gateway does not connect to {host}: {what} (an operator can allow it with \
         allowed_hosts)"
    )
}

impl fmt::Debug for HostPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostPolicy")
            .field("allowed", &self.allowed.written)
            .field("denied", &self.denied.written)
            .finish()
    }
}

impl PartialEq for HostPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.allowed.written == other.allowed.written && self.denied.written == other.denied.written
    }
}

impl Eq for HostPolicy {}

impl Patterns {
    fn new<I>(patterns: I) -> Result<Patterns, HostPatternError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut written = Vec::new();
        let mut globs = GlobSetBuilder::new();
        let mut nets = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            let bad = |reason: String| HostPatternError {
                pattern: p.to_owned(),
                reason,
            };
            if p.is_empty() {
                return Err(bad("empty".into()));
            }
            if p.contains('/') {
                nets.push(
                    p.parse::<IpNet>()
                        .map_err(|e| bad(format!("not a network in CIDR notation ({e})")))?,
                );
            } else {
                if p.chars().any(|c| c.is_whitespace() || c == '@') {
                    return Err(bad("expected a host name, an address or a glob".into()));
                }
                globs.add(glob(&normalize(p)).map_err(|e| bad(e.kind().to_string()))?);
            }
            written.push(p.to_owned());
        }
        let globs = globs.build().map_err(|e| HostPatternError {
            pattern: written.join(", "),
            reason: e.to_string(),
        })?;
        Ok(Patterns {
            written,
            globs,
            nets,
        })
    }

    fn matches_name(&self, name: &str) -> bool {
        self.globs.is_match(name)
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip)) || self.globs.is_match(ip.to_string())
    }
}

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .case_insensitive(true)
        .literal_separator(false)
        .build()
}

/// A host as compared: lower case, without IPv6 brackets or a final dot.
fn normalize(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// An address as it is compared: IPv4-mapped IPv6 addresses are IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// What kind of internal address `ip` is, if it is one: loopback, private
/// (RFC 1918), shared (RFC 6598, carrier-grade NAT), link-local,
/// unique-local (IPv6 ULA), unspecified, multicast, broadcast or reserved.
/// IPv4 addresses inside IPv6 (mapped, NAT64 `64:ff9b::/96`, 6to4) count
/// as the IPv4 address.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_unique_local() {
        Some("unique-local")
    } else if ip.is_unicast_link_local() || (seg[0] & 0xffc0) == 0xfec0 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        internal_v4(embedded_v4(seg[6], seg[7]))
    } else if seg[0] == 0x2002 {
        internal_v4(embedded_v4(seg[1], seg[2]))
    } else {
        None
    }
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

impl HostPolicy {
    /// The rules from the `allowed_hosts` and `denied_hosts` patterns.
    pub fn new<A, D>(allowed: A, denied: D) -> Result<HostPolicy, HostPatternError>
    where
        A: IntoIterator,
        A::Item: AsRef<str>,
        D: IntoIterator,
        D::Item: AsRef<str>,
    {
        Ok(HostPolicy {
            allowed: Patterns::new(allowed)?,
            denied: Patterns::new(denied)?,
        })
    }

    /// The same rules, also allowing `host` (a server the operator
    /// configured themselves, such as IRC's `fixed_server`).
    pub fn also_allowing(&self, host: &str) -> Result<HostPolicy, HostPatternError> {
        let escaped = globset::escape(&normalize(host));
        let mut allowed = self.allowed.written.clone();
        allowed.push(escaped);
        HostPolicy::new(allowed, &self.denied.written)
    }

    /// The `allowed_hosts` patterns as written.
    pub fn allowed(&self) -> &[String] {
        &self.allowed.written
    }

    /// The `denied_hosts` patterns as written.
    pub fn denied(&self) -> &[String] {
        &self.denied.written
    }

    /// Resolves `host` (a name or an address literal) and returns the
    /// addresses that may be connected to, on `port`; connect to these
    /// and no others.
    pub async fn check(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, HostRefused> {
        let name = normalize(host);
        if let Ok(ip) = name.parse::<IpAddr>() {
            return self.check_resolved(host, [SocketAddr::new(ip, port)]);
        }
        if self.allowed.matches_name(&name) {
            // Allowed by name: whatever it resolves to.
        } else if self.denied.matches_name(&name) {
            return Err(HostRefused::Denied {
                host: host.to_owned(),
            });
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|e| HostRefused::Unresolved {
                host: host.to_owned(),
                reason: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(HostRefused::Unresolved {
                host: host.to_owned(),
                reason: "no address".into(),
            });
        }
        self.check_resolved(host, addrs)
    }

    /// The policy applied to addresses `host` already resolved to (for a
    /// resolver plugged into an HTTP client). `host` may itself be an
    /// address literal.
    pub fn check_resolved(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, HostRefused> {
        let name = normalize(host);
        let by_name = self.allowed.matches_name(&name);
        if !by_name && self.denied.matches_name(&name) {
            return Err(HostRefused::Denied {
                host: host.to_owned(),
            });
        }
        let mut ok = Vec::new();
        let mut refusal = None;
        for addr in addrs {
            let ip = canonical(addr.ip());
            if by_name || self.allowed.matches_ip(ip) {
                ok.push(addr);
            } else if self.denied.matches_ip(ip) {
                refusal.get_or_insert(HostRefused::Denied {
                    host: host.to_owned(),
                });
            } else if let Some(kind) = internal_kind(ip) {
                refusal.get_or_insert(HostRefused::Internal {
                    host: host.to_owned(),
                    address: ip,
                    kind,
                });
            } else {
                ok.push(addr);
            }
        }
        match (ok.is_empty(), refusal) {
            (false, _) => Ok(ok),
            (true, Some(r)) => Err(r),
            (true, None) => Err(HostRefused::Unresolved {
                host: host.to_owned(),
                reason: "no address".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 6667)
    }

    fn none() -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for (ip, kind) in [
            ("127.0.0.3", "loopback"),
            ("10.255.255.1", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.3", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a00:1", "private"),
            ("2002:c0a8:101::1", "private"),
        ] {
            assert_eq!(internal_kind(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for ip in ["8.8.8.8", "130.239.18.160", "2001:4860::8888", "172.32.0.1"] {
            assert_eq!(internal_kind(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn internal_addresses_are_refused_by_default() {
        let p = HostPolicy::default();
        let e = p
            .check_resolved("127.0.0.3", [sa("127.0.0.3")])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "this gateway does not connect to 127.0.0.3: 127.0.0.3 is a loopback address \
             (an operator can allow it with allowed_hosts)"
        );
        let e = p
            .check_resolved("sneaky.example", [sa("10.1.2.3")])
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("sneaky.example resolves to 10.1.2.3, a private address"),
            "{e}"
        );
        assert_eq!(
            p.check_resolved("irc.example", [sa("8.8.8.8")]),
            Ok(vec![sa("8.8.8.8")])
        );
        // Mixed answers: only the public address is kept.
        assert_eq!(
            p.check_resolved("mixed.example", [sa("127.0.0.1"), sa("8.8.4.4")]),
            Ok(vec![sa("8.8.4.4")])
        );
    }

    #[test]
    fn allowed_wins_then_denied_then_internal() {
        let p = HostPolicy::new(["127.0.0.1", "127.0.0.2", "*.trusted.example"], none()).unwrap();
        assert!(p.check_resolved("127.0.0.1", [sa("127.0.0.1")]).is_ok());
        // By address, whatever the name.
        assert!(p.check_resolved("localhost", [sa("127.0.0.1")]).is_ok());
        assert!(p.check_resolved("127.0.0.3", [sa("127.0.0.3")]).is_err());
        // By name, whatever the address.
        assert!(
            p.check_resolved("irc.Trusted.Example.", [sa("10.0.0.1")])
                .is_ok()
        );

        let only = HostPolicy::new(["*.libera.chat"], ["*"]).unwrap();
        assert!(
            only.check_resolved("irc.libera.chat", [sa("8.8.8.8")])
                .is_ok()
        );
        assert!(matches!(
            only.check_resolved("irc.oftc.net", [sa("8.8.8.8")]),
            Err(HostRefused::Denied { .. })
        ));
        let nets = HostPolicy::new(["10.0.0.0/8"], ["8.8.0.0/16", "*.evil.example"]).unwrap();
        assert!(nets.check_resolved("x", [sa("10.9.9.9")]).is_ok());
        assert!(matches!(
            nets.check_resolved("x", [sa("8.8.8.8")]),
            Err(HostRefused::Denied { .. })
        ));
        assert!(matches!(
            nets.check_resolved("irc.evil.example", [sa("1.1.1.1")]),
            Err(HostRefused::Denied { .. })
        ));
        let off = HostPolicy::new(["*"], none()).unwrap();
        assert!(off.check_resolved("x", [sa("::1")]).is_ok());
    }

    #[test]
    fn fixed_servers_can_be_added() {
        let p = HostPolicy::default().also_allowing("irc.local[1]").unwrap();
        assert!(p.check_resolved("irc.local[1]", [sa("10.0.0.1")]).is_ok());
        assert!(p.check_resolved("irc.local1", [sa("10.0.0.1")]).is_err());
    }

    #[test]
    fn bad_patterns_are_refused_with_the_pattern() {
        let e = HostPolicy::new(["10.0.0.0/99"], none()).unwrap_err();
        assert_eq!(e.pattern, "10.0.0.0/99");
        assert!(HostPolicy::new(["a{b"], none()).is_err());
        assert!(HostPolicy::new([""], none()).is_err());
        assert!(HostPolicy::new(none(), ["user@host"]).is_err());
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        let p = HostPolicy::new(["127.0.0.1"], none()).unwrap();
        // The C library reads these as 127.0.0.3; the policy sees that.
        for name in ["2130706435", "127.3", "127.0.0.3"] {
            match p.check(name, 6667).await {
                Err(HostRefused::Internal { address, .. }) => {
                    assert_eq!(address, IpAddr::from([127, 0, 0, 3]), "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(p.check("localhost", 6667).await, Ok(vec![sa("127.0.0.1")]));
        assert_eq!(
            p.check("[::ffff:127.0.0.1]", 6667).await,
            Ok(vec![SocketAddr::new(
                "::ffff:127.0.0.1".parse().unwrap(),
                6667
            )])
        );
    }
}

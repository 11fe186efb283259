//! XEP-0356 (Privileged Entity) advertisements: the `<message/>` a server
//! sends a component after the handshake to say what it may do on behalf
//! of the server's users.
//!
//! Two versions are in use: `urn:xmpp:privilege:2` (Prosody's
//! mod_privilege; adds IQ permissions per namespace and the roster `push`
//! attribute) and `urn:xmpp:privilege:1` (ejabberd 23.01; roster, message
//! and presence only). Both list `<perm access='…' type='…'/>` children.
//! Prosody's module (prosody-modules 2023-02) nests each `<namespace/>` of
//! the IQ permission inside the previous one instead of listing them side
//! by side, so namespaces are collected recursively.

use xmpp_parsers::minidom::Element;

use super::{Access, Grant};

/// The current namespace.
pub const NS_PRIVILEGE_2: &str = "urn:xmpp:privilege:2";
/// The namespace ejabberd 23.01 still uses.
pub const NS_PRIVILEGE_1: &str = "urn:xmpp:privilege:1";

/// If `message` is a privilege advertisement, the announcing domain and
/// what it granted.
pub fn parse_advertisement(message: &Element) -> Option<(String, Grant)> {
    if message.name() != "message" {
        return None;
    }
    let privilege = message.children().find(|c| {
        c.name() == "privilege" && (c.ns() == NS_PRIVILEGE_2 || c.ns() == NS_PRIVILEGE_1)
    })?;
    let from = message.attr("from")?;
    // Only a server (a bare domain) grants privileges.
    if from.contains(['@', '/']) || from.is_empty() {
        return None;
    }
    let ns = privilege.ns();
    let mut grant = Grant {
        namespace: ns.clone(),
        ..Grant::default()
    };
    for perm in privilege
        .children()
        .filter(|c| c.name() == "perm" && c.ns() == ns)
    {
        let type_ = perm.attr("type").unwrap_or("");
        match perm.attr("access") {
            Some("roster") => {
                grant.roster = access(type_);
                grant.roster_push = matches!(perm.attr("push"), Some("true" | "1"));
            }
            Some("message") => grant.message_outgoing = type_ == "outgoing",
            Some("presence") => {
                grant.presence = match type_ {
                    "managed_entity" | "roster" => Some(type_.to_owned()),
                    _ => None,
                };
            }
            Some("iq") => collect_namespaces(perm, &ns, &mut grant),
            _ => {}
        }
    }
    Some((from.to_owned(), grant))
}

fn collect_namespaces(parent: &Element, ns: &str, grant: &mut Grant) {
    for child in parent
        .children()
        .filter(|c| c.name() == "namespace" && c.ns() == ns)
    {
        if let Some(target) = child.attr("ns") {
            let a = access(child.attr("type").unwrap_or(""));
            if a != Access::None {
                grant.iq.insert(target.to_owned(), a);
            }
        }
        collect_namespaces(child, ns, grant);
    }
}

fn access(type_: &str) -> Access {
    match type_ {
        "get" => Access::Get,
        "set" => Access::Set,
        "both" => Access::Both,
        _ => Access::None,
    }
}

/// A sentence for the log: what a domain granted.
pub fn describe(domain: &str, grant: &Grant) -> String {
    let mut parts = Vec::new();
    let rw = |a: Access| match a {
        Access::None => "none",
        Access::Get => "get",
        Access::Set => "set",
        Access::Both => "get+set",
    };
    parts.push(format!(
        "roster {}{}",
        rw(grant.roster),
        if grant.roster_push { " (pushes)" } else { "" }
    ));
    parts.push(format!(
        "message {}",
        if grant.message_outgoing {
            "outgoing"
        } else {
            "none"
        }
    ));
    parts.push(format!(
        "presence {}",
        grant.presence.as_deref().unwrap_or("none")
    ));
    if !grant.iq.is_empty() {
        let iqs: Vec<String> = grant
            .iq
            .iter()
            .map(|(ns, a)| format!("{ns} {}", rw(*a)))
            .collect();
        parts.push(format!("iq [{}]", iqs.join(", ")));
    }
    format!(
        "{domain} granted ({}): {}",
        grant.namespace,
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Option<(String, Grant)> {
        let el: Element = xml.parse().expect("xml");
        parse_advertisement(&el)
    }

    /// Captured from Prosody 0.12 with mod_privilege (prosody-modules) for
    /// `{ roster = "both"; message = "outgoing"; presence = "roster";
    /// iq = { pubsub both, pubsub#owner set, http:upload get } }` (the
    /// contrib/peers set-up), verbatim but for the stream's default
    /// namespace: the namespaces are nested in one another.
    #[test]
    fn prosody_v2_with_nested_namespaces() {
        let (domain, g) = parse(
            "<message xmlns='jabber:component:accept' to='test.localhost' from='localhost'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/><perm access='message' type='outgoing'/><perm access='presence' type='roster'/><perm access='iq'><namespace ns='http://jabber.org/protocol/pubsub#owner' type='set'><namespace ns='http://jabber.org/protocol/pubsub' type='both'><namespace ns='urn:xmpp:http:upload:0' type='get'/></namespace></namespace></perm></privilege></message>",
        )
        .expect("advertisement");
        assert_eq!(domain, "localhost");
        assert_eq!(g.namespace, NS_PRIVILEGE_2);
        assert_eq!(g.roster, Access::Both);
        assert!(!g.roster_push);
        assert!(g.message_outgoing);
        assert_eq!(g.presence.as_deref(), Some("roster"));
        assert_eq!(g.iq.len(), 3);
        assert_eq!(g.iq["http://jabber.org/protocol/pubsub"], Access::Both);
        assert_eq!(g.iq["http://jabber.org/protocol/pubsub#owner"], Access::Set);
        assert_eq!(g.iq["urn:xmpp:http:upload:0"], Access::Get);
        assert!(describe(&domain, &g).contains("roster get+set"));
    }

    /// XEP-0356 0.4 example shape: namespaces side by side, roster push.
    #[test]
    fn xep_v2_flat_namespaces_and_push() {
        let (_, g) = parse(
            "<message xmlns='jabber:component:accept' from='capulet.lit' to='pubsub.capulet.lit' id='1'>\
               <privilege xmlns='urn:xmpp:privilege:2'>\
                 <perm access='roster' type='get' push='true'/>\
                 <perm access='iq'>\
                   <namespace ns='urn:xmpp:mam:2' type='get'/>\
                   <namespace ns='jabber:iq:version' type='none'/>\
                   <namespace ns='urn:xmpp:bookmarks:1' type='set'/>\
                 </perm>\
               </privilege>\
             </message>",
        )
        .expect("advertisement");
        assert_eq!(g.roster, Access::Get);
        assert!(g.roster_push);
        assert!(!g.message_outgoing);
        assert_eq!(g.presence, None);
        assert_eq!(g.iq.len(), 2);
        assert_eq!(g.iq["urn:xmpp:mam:2"], Access::Get);
    }

    /// Captured from ejabberd 23.01 (privilege v1: no iq permissions),
    /// verbatim but for the stream's default namespace.
    #[test]
    fn ejabberd_v1() {
        let (domain, g) = parse(
            "<message xmlns='jabber:component:accept' to='test.localhost' from='localhost'><privilege xmlns='urn:xmpp:privilege:1'><perm type='outgoing' access='message'/><perm type='both' access='roster'/><perm type='roster' access='presence'/></privilege></message>",
        )
        .expect("advertisement");
        assert_eq!(domain, "localhost");
        assert_eq!(g.namespace, NS_PRIVILEGE_1);
        assert_eq!(g.roster, Access::Both);
        assert!(g.message_outgoing);
        assert_eq!(g.presence.as_deref(), Some("roster"));
        assert!(g.iq.is_empty());
    }

    #[test]
    fn not_an_advertisement() {
        assert!(parse("<message xmlns='jabber:component:accept' from='localhost'><body>hi</body></message>").is_none());
        // From a user: not a server grant.
        assert!(parse(
            "<message xmlns='jabber:component:accept' from='mallory@localhost'>\
               <privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/></privilege>\
             </message>"
        )
        .is_none());
        assert!(
            parse(
                "<message xmlns='jabber:component:accept' from='localhost'>\
               <privilege xmlns='urn:xmpp:privilege:3'/></message>"
            )
            .is_none()
        );
        let (_, g) = parse(
            "<message xmlns='jabber:component:accept' from='localhost'>\
               <privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='weird'/></privilege>\
             </message>",
        )
        .expect("advertisement");
        assert_eq!(g.roster, Access::None);
    }
}

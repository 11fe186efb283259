//! XEP-0313 Message Archive Management on room JIDs, with XEP-0059 result
//! set paging: reading a query (data form filters and RSM), turning it into
//! an archive query, and writing results and the closing `<fin/>`.

use std::time::SystemTime;

use ferry_bridge::UserId;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;

use crate::store::{ArchiveEntry, ArchivePage, ArchiveQuery};
use crate::xmpp::xml::{self, B, ns};

/// Largest page served.
pub const MAX_PAGE: usize = 250;
/// Page size when the client gives none.
pub const DEFAULT_PAGE: usize = 50;

/// A parsed MAM query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MamQuery {
    /// Echoed in each result.
    pub queryid: Option<String>,
    /// Not before.
    pub start: Option<SystemTime>,
    /// Not after.
    pub end: Option<SystemTime>,
    /// Only this occupant (the resource of the `with` JID).
    pub with_nick: Option<String>,
    /// RSM `after` (or the form's `after-id`).
    pub after: Option<String>,
    /// RSM `before` (`Some("")`: the last page).
    pub before: Option<String>,
    /// Page size.
    pub max: usize,
    /// The client only wants the count (`<max>0</max>`).
    pub count_only: bool,
}

impl MamQuery {
    /// Whether the query pages backwards (towards older messages).
    pub fn backwards(&self) -> bool {
        self.before.is_some()
    }

    /// The store query for a user's archive of a room.
    pub fn to_archive_query(&self, user: &UserId, room: &str) -> ArchiveQuery {
        ArchiveQuery {
            user: Some(user.clone()),
            room: room.to_owned(),
            start: self.start,
            end: self.end,
            with_nick: self.with_nick.clone(),
            after_id: self.after.clone(),
            before_id: self.before.clone(),
            max: self.max,
        }
    }
}

/// Reads a `<query xmlns='urn:xmpp:mam:2'/>`.
pub fn parse_query(q: &Element, room: &BareJid) -> Result<MamQuery, String> {
    let mut out = MamQuery {
        queryid: q.attr("queryid").map(str::to_owned),
        max: DEFAULT_PAGE,
        ..MamQuery::default()
    };
    if let Some(x) = q.get_child("x", ns::DATA_FORMS) {
        for f in x.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
            let var = f.attr("var").unwrap_or_default();
            let value = f
                .get_child("value", ns::DATA_FORMS)
                .map(Element::text)
                .unwrap_or_default();
            let value = value.trim();
            match var {
                "FORM_TYPE" => {
                    if !value.is_empty() && value != ns::MAM {
                        return Err(format!("unsupported FORM_TYPE {value:?}"));
                    }
                }
                "start" => {
                    out.start = Some(
                        crate::xmpp::time::parse(value)
                            .ok_or_else(|| format!("invalid start {value:?}"))?,
                    )
                }
                "end" => {
                    out.end = Some(
                        crate::xmpp::time::parse(value)
                            .ok_or_else(|| format!("invalid end {value:?}"))?,
                    )
                }
                "with" => {
                    if value.is_empty() {
                        continue;
                    }
                    let j = Jid::new(value).map_err(|e| format!("invalid with {value:?}: {e}"))?;
                    if j.to_bare() != *room {
                        return Err(format!("{value} is not an occupant of this room"));
                    }
                    out.with_nick = j.resource().map(|r| r.as_str().to_owned());
                }
                "after-id" => out.after = Some(value.to_owned()).filter(|v| !v.is_empty()),
                "before-id" => out.before = Some(value.to_owned()).filter(|v| !v.is_empty()),
                "ids" => return Err("querying by ids is not supported".into()),
                "" => {}
                other => return Err(format!("unknown filter {other:?}")),
            }
        }
    }
    if let Some(set) = q.get_child("set", ns::RSM) {
        if let Some(m) = set.get_child("max", ns::RSM) {
            let n: usize = m
                .text()
                .trim()
                .parse()
                .map_err(|_| format!("invalid RSM max {:?}", m.text()))?;
            out.count_only = n == 0;
            out.max = n.min(MAX_PAGE);
        }
        if let Some(a) = set.get_child("after", ns::RSM) {
            out.after = Some(a.text().trim().to_owned());
        }
        if let Some(b) = set.get_child("before", ns::RSM) {
            out.before = Some(b.text().trim().to_owned());
        }
        if set.get_child("index", ns::RSM).is_some() {
            return Err("RSM index is not supported".into());
        }
    }
    Ok(out)
}

/// The form answering a `get` (the filters the archive supports).
pub fn query_form() -> Element {
    let field = |var: &str, t: &str| B::new("field", ns::DATA_FORMS).a("var", var).a("type", t);
    B::new("query", ns::MAM)
        .c(B::new("x", ns::DATA_FORMS)
            .a("type", "form")
            .c(field("FORM_TYPE", "hidden").c(B::new("value", ns::DATA_FORMS).t(ns::MAM)))
            .c(field("with", "jid-single"))
            .c(field("start", "text-single"))
            .c(field("end", "text-single"))
            .c(field("after-id", "text-single"))
            .c(field("before-id", "text-single")))
        .build()
}

/// The stored `<message/>` of an entry, ready to be nested.
pub fn stored_message(e: &ArchiveEntry) -> Option<Element> {
    e.stanza.parse::<Element>().ok()
}

/// One result message.
pub fn result_message(
    to: &Jid,
    room: &BareJid,
    queryid: Option<&str>,
    e: &ArchiveEntry,
) -> Option<Element> {
    let inner = stored_message(e)?;
    let inner = xml::renamespace(&inner, ns::STREAM, ns::CLIENT);
    let forwarded = B::new("forwarded", ns::FORWARD)
        .c(B::new("delay", ns::DELAY).a("stamp", crate::xmpp::time::format(e.timestamp)))
        .c(inner);
    let result = B::new("result", ns::MAM)
        .oa("queryid", queryid)
        .a("id", e.id.clone())
        .c(forwarded);
    let mut m = xmpp_parsers::message::Message::new(Some(to.clone()));
    m.from = Some(Jid::from(room.clone()));
    let mut el: Element = m.into();
    el.append_child(result.build());
    Some(el)
}

/// The `<fin/>` closing a query.
pub fn fin(page: &ArchivePage, count_only: bool) -> Element {
    let mut set = B::new("set", ns::RSM);
    if !count_only && let (Some(first), Some(last)) = (page.items.first(), page.items.last()) {
        set = set
            .c(B::new("first", ns::RSM).t(first.id.clone()))
            .c(B::new("last", ns::RSM).t(last.id.clone()));
    }
    set = set.tc("count", ns::RSM, page.count.to_string());
    let mut f = B::new("fin", ns::MAM);
    if page.complete {
        f = f.a("complete", "true");
    }
    f.c(set).build()
}

/// The archive's first and last entries (XEP-0313 `<metadata/>`).
pub fn metadata(first: Option<&ArchiveEntry>, last: Option<&ArchiveEntry>) -> Element {
    let item = |name: &str, e: Option<&ArchiveEntry>| {
        let mut b = B::new(name, ns::MAM);
        if let Some(e) = e {
            b = b
                .a("id", e.id.clone())
                .a("timestamp", crate::xmpp::time::format(e.timestamp));
        }
        b.build()
    };
    B::new("metadata", ns::MAM)
        .c(item("start", first))
        .c(item("end", last))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn room() -> BareJid {
        BareJid::new("#lounge@test.localhost").expect("jid")
    }

    fn q(inner: &str) -> Element {
        format!("<query xmlns='urn:xmpp:mam:2' queryid='q1'>{inner}</query>")
            .parse()
            .expect("parses")
    }

    #[test]
    fn parses_filters_and_rsm() {
        let query = q("<x xmlns='jabber:x:data' type='submit'>\
            <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
            <field var='start'><value>1970-01-01T00:01:40Z</value></field>\
            <field var='with'><value>#lounge@test.localhost/bob</value></field></x>\
            <set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set>");
        let m = parse_query(&query, &room()).expect("valid");
        assert_eq!(m.queryid.as_deref(), Some("q1"));
        assert_eq!(m.start, Some(UNIX_EPOCH + Duration::from_secs(100)));
        assert_eq!(m.with_nick.as_deref(), Some("bob"));
        assert_eq!(m.max, 10);
        assert_eq!(m.before.as_deref(), Some(""));
        assert!(m.backwards());
        let aq = m.to_archive_query(&UserId::new("u@x"), "#lounge");
        assert_eq!(aq.before_id.as_deref(), Some(""));
        assert_eq!(aq.max, 10);
    }

    #[test]
    fn forward_paging_and_defaults() {
        let m = parse_query(
            &q("<set xmlns='http://jabber.org/protocol/rsm'><max>9999</max><after>a1</after></set>"),
            &room(),
        )
        .expect("valid");
        assert_eq!(m.max, MAX_PAGE);
        assert_eq!(m.after.as_deref(), Some("a1"));
        assert!(!m.backwards());
        let m = parse_query(&q(""), &room()).expect("valid");
        assert_eq!(m.max, DEFAULT_PAGE);
        let m = parse_query(
            &q("<set xmlns='http://jabber.org/protocol/rsm'><max>0</max></set>"),
            &room(),
        )
        .expect("valid");
        assert!(m.count_only);
    }

    #[test]
    fn bad_queries_are_refused() {
        for bad in [
            "<x xmlns='jabber:x:data' type='submit'><field var='start'><value>yesterday</value></field></x>",
            "<x xmlns='jabber:x:data' type='submit'><field var='with'><value>other@x/y</value></field></x>",
            "<x xmlns='jabber:x:data' type='submit'><field var='bogus'><value>1</value></field></x>",
            "<set xmlns='http://jabber.org/protocol/rsm'><max>ten</max></set>",
        ] {
            assert!(parse_query(&q(bad), &room()).is_err(), "{bad}");
        }
    }

    fn entry(id: &str, secs: u64) -> ArchiveEntry {
        ArchiveEntry {
            user: UserId::new("u@x"),
            room: "#lounge".into(),
            id: id.into(),
            timestamp: UNIX_EPOCH + Duration::from_secs(secs),
            nick: "bob".into(),
            foreign_id: None,
            stanza: format!(
                "<message xmlns='jabber:client' from='#lounge@test.localhost/bob' type='groupchat' id='{id}'><body>m{id}</body></message>"
            ),
        }
    }

    #[test]
    fn results_and_fin() {
        let to = Jid::new("u@x/r").expect("jid");
        let el = result_message(&to, &room(), Some("q1"), &entry("a1", 5)).expect("builds");
        let r = el.get_child("result", ns::MAM).expect("result");
        assert_eq!(r.attr("queryid"), Some("q1"));
        assert_eq!(r.attr("id"), Some("a1"));
        let fwd = r.get_child("forwarded", ns::FORWARD).expect("forwarded");
        assert!(fwd.get_child("delay", ns::DELAY).is_some());
        let inner = fwd.get_child("message", ns::CLIENT).expect("inner message");
        assert_eq!(
            inner.get_child("body", ns::CLIENT).map(Element::text),
            Some("ma1".into())
        );
        let page = ArchivePage {
            items: vec![entry("a1", 5), entry("a2", 6)],
            complete: true,
            count: 7,
        };
        let f = fin(&page, false);
        assert_eq!(f.attr("complete"), Some("true"));
        let set = f.get_child("set", ns::RSM).expect("set");
        assert_eq!(
            set.get_child("first", ns::RSM).map(Element::text),
            Some("a1".into())
        );
        assert_eq!(
            set.get_child("last", ns::RSM).map(Element::text),
            Some("a2".into())
        );
        assert_eq!(
            set.get_child("count", ns::RSM).map(Element::text),
            Some("7".into())
        );
        let f = fin(
            &ArchivePage {
                complete: false,
                ..page
            },
            true,
        );
        assert_eq!(f.attr("complete"), None);
        assert!(
            f.get_child("set", ns::RSM)
                .and_then(|s| s.get_child("first", ns::RSM))
                .is_none()
        );
    }
}

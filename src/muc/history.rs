//! Room history sent on join (XEP-0045 §7.2.14): what the client asked for
//! with `<history/>` (maxstanzas, maxchars, seconds, since), capped by the
//! room's history policy.

use std::time::{Duration, SystemTime};

use xmpp_parsers::minidom::Element;

use crate::xmpp::xml::ns;

/// What a joining client asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryRequest {
    /// At most this many messages.
    pub maxstanzas: Option<u32>,
    /// At most this many characters of XML.
    pub maxchars: Option<u32>,
    /// Only messages of the last this many seconds.
    pub seconds: Option<u32>,
    /// Only messages since then.
    pub since: Option<SystemTime>,
}

impl HistoryRequest {
    /// Reads the `<history/>` of a join's `<x xmlns='…muc'/>`.
    pub fn parse(x: Option<&Element>) -> HistoryRequest {
        let Some(h) = x.and_then(|x| x.get_child("history", ns::MUC)) else {
            return HistoryRequest::default();
        };
        let num = |a: &str| h.attr(a).and_then(|v| v.trim().parse::<u32>().ok());
        HistoryRequest {
            maxstanzas: num("maxstanzas"),
            maxchars: num("maxchars"),
            seconds: num("seconds"),
            since: h.attr("since").and_then(crate::xmpp::time::parse),
        }
    }

    /// How many messages to fetch at most, and from when, given the
    /// room's cap.
    pub fn limits(&self, cap: u32, now: SystemTime) -> (usize, Option<SystemTime>) {
        let mut max = self.maxstanzas.map_or(cap, |m| m.min(cap));
        if self.maxchars == Some(0) {
            max = 0;
        }
        let from_seconds = self
            .seconds
            .and_then(|s| now.checked_sub(Duration::from_secs(u64::from(s))));
        let start = match (from_seconds, self.since) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        (max as usize, start)
    }

    /// Keeps the newest messages whose serialised size fits `maxchars`.
    pub fn apply_maxchars(&self, mut messages: Vec<Element>) -> Vec<Element> {
        let Some(limit) = self.maxchars else {
            return messages;
        };
        let mut total = 0usize;
        let mut keep = 0usize;
        for m in messages.iter().rev() {
            let len = String::from(m).chars().count();
            if total + len > limit as usize {
                break;
            }
            total += len;
            keep += 1;
        }
        messages.drain(..messages.len() - keep);
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn x(attrs: &str) -> Element {
        format!("<x xmlns='{}'><history {attrs}/></x>", ns::MUC)
            .parse()
            .expect("parses")
    }

    #[test]
    fn parses_and_caps() {
        let r = HistoryRequest::parse(Some(&x("maxstanzas='5'")));
        assert_eq!(r.limits(20, SystemTime::now()), (5, None));
        let r = HistoryRequest::parse(Some(&x("maxstanzas='500'")));
        assert_eq!(r.limits(20, SystemTime::now()).0, 20);
        let r = HistoryRequest::parse(Some(&x("maxchars='0'")));
        assert_eq!(r.limits(20, SystemTime::now()).0, 0);
        let r = HistoryRequest::parse(None);
        assert_eq!(r.limits(20, SystemTime::now()), (20, None));
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let r = HistoryRequest::parse(Some(&x("seconds='100' since='1970-01-01T00:15:00Z'")));
        assert_eq!(
            r.limits(20, now).1,
            Some(UNIX_EPOCH + Duration::from_secs(900))
        );
        let r = HistoryRequest::parse(Some(&x("maxstanzas='junk'")));
        assert_eq!(r.maxstanzas, None);
    }

    #[test]
    fn maxchars_keeps_the_newest() {
        let m = |t: &str| -> Element {
            format!("<message xmlns='jabber:client'><body>{t}</body></message>")
                .parse()
                .expect("parses")
        };
        let msgs = vec![m("old"), m("mid"), m("new")];
        let one = String::from(&msgs[2]).chars().count() as u32;
        let r = HistoryRequest {
            maxchars: Some(one * 2),
            ..HistoryRequest::default()
        };
        let kept = r.apply_maxchars(msgs);
        assert_eq!(kept.len(), 2);
        assert_eq!(
            kept[1]
                .get_child("body", "jabber:client")
                .map(Element::text),
            Some("new".into())
        );
    }
}

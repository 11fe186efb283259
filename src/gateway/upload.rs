//! Publishing a network's files for an XMPP user: XEP-0363 HTTP upload to
//! the user's own server when it has an upload service and the gateway may
//! ask it for a slot (directly, or on the user's behalf through an XEP-0356
//! privileged IQ), else the gateway's own HTTP media store.
//!
//! The upload service of each server domain is discovered once (disco#items
//! of the domain, then disco#info of each item) and cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use crate::component::ComponentHandle;
use crate::http::Media;
use crate::xmpp::xml::{self, B, ns};

/// How long a discovery result is trusted.
const CACHE_FOR: Duration = Duration::from_secs(3600);
/// Timeout of each IQ of the discovery and the slot request.
const IQ_TIMEOUT: Duration = Duration::from_secs(15);

/// An upload service of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Its JID.
    pub jid: Jid,
    /// Largest file it takes, when it says.
    pub max_size: Option<u64>,
}

/// When a domain was looked at, and the service it has (if any).
type Known = (Instant, Option<Service>);

/// What is known of each server domain's upload service.
#[derive(Clone, Default)]
pub struct Services {
    cache: Arc<Mutex<HashMap<String, Known>>>,
}

/// A slot: where to PUT (with which headers) and the URL to share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// PUT URL.
    pub put: String,
    /// Headers to send with the PUT.
    pub headers: Vec<(String, String)>,
    /// GET URL.
    pub get: String,
}

/// Everything an upload needs, cheap to clone into a task.
#[derive(Clone)]
pub struct Uploader {
    /// The component stream.
    pub comp: ComponentHandle,
    /// The gateway's JID.
    pub gateway: Jid,
    /// Discovered services.
    pub services: Services,
    /// The fallback.
    pub media: Media,
    /// HTTP client.
    pub http: LazyHttp,
}

/// The uploads' HTTP client, built for the first upload: building one loads
/// the TLS root store (a few hundred KB of certificates, and the code that
/// parses them) that a gateway whose users send no files never needs.
/// Clones share one client.
#[derive(Clone, Default)]
pub struct LazyHttp(std::sync::Arc<std::sync::OnceLock<reqwest::Client>>);

impl LazyHttp {
    /// The client, built on the first call.
    pub fn get(&self) -> anyhow::Result<&reqwest::Client> {
        if let Some(client) = self.0.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("HTTP client: {e}"))?;
        Ok(self.0.get_or_init(|| client))
    }
}

/// Reads a slot from an XEP-0363 `<slot/>`.
pub fn parse_slot(slot: &Element) -> Option<Slot> {
    let put = slot.get_child("put", ns::HTTP_UPLOAD)?;
    let get = slot.get_child("get", ns::HTTP_UPLOAD)?;
    let headers = put
        .children()
        .filter(|h| h.is("header", ns::HTTP_UPLOAD))
        .filter_map(|h| {
            let name = h.attr("name")?;
            // XEP-0363 §5: only these may be passed on.
            let allowed = ["authorization", "cookie", "expires"];
            allowed
                .contains(&name.to_ascii_lowercase().as_str())
                .then(|| (name.to_owned(), h.text().replace(['\r', '\n'], "")))
        })
        .collect();
    Some(Slot {
        put: put.attr("url")?.to_owned(),
        headers,
        get: get.attr("url")?.to_owned(),
    })
}

/// Reads an upload service's maximum file size from its disco#info form.
fn max_size(info: &Element) -> Option<u64> {
    info.children()
        .filter(|x| x.is("x", ns::DATA_FORMS))
        .flat_map(|x| x.children())
        .find(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some("max-file-size"))
        .and_then(|f| f.get_child("value", ns::DATA_FORMS))
        .and_then(|v| v.text().trim().parse().ok())
}

impl Uploader {
    async fn query(&self, to: &Jid, payload: Element) -> Option<Element> {
        let iq = Iq::Get {
            from: Some(self.gateway.clone()),
            to: Some(to.clone()),
            id: xml::new_id(),
            payload,
        };
        match self.comp.request(iq, IQ_TIMEOUT).await {
            Ok(Iq::Result { payload, .. }) => payload,
            _ => None,
        }
    }

    /// The upload service of a server domain, discovered once.
    pub async fn service(&self, domain: &str) -> Option<Service> {
        if let Ok(c) = self.services.cache.lock()
            && let Some((at, s)) = c.get(domain)
            && at.elapsed() < CACHE_FOR
        {
            return s.clone();
        }
        let found = self.discover(domain).await;
        if let Ok(mut c) = self.services.cache.lock() {
            c.insert(domain.to_owned(), (Instant::now(), found.clone()));
        }
        found
    }

    async fn discover(&self, domain: &str) -> Option<Service> {
        let server = Jid::new(domain).ok()?;
        let items = self
            .query(&server, Element::bare("query", ns::DISCO_ITEMS))
            .await?;
        let mut candidates = vec![server];
        candidates.extend(
            items
                .children()
                .filter(|i| i.is("item", ns::DISCO_ITEMS))
                .filter_map(|i| i.attr("jid"))
                .filter_map(|j| Jid::new(j).ok()),
        );
        for jid in candidates {
            let Some(info) = self
                .query(&jid, Element::bare("query", ns::DISCO_INFO))
                .await
            else {
                continue;
            };
            let offers = info
                .children()
                .any(|f| f.is("feature", ns::DISCO_INFO) && f.attr("var") == Some(ns::HTTP_UPLOAD));
            if offers {
                return Some(Service {
                    max_size: max_size(&info),
                    jid,
                });
            }
        }
        None
    }

    /// Asks for a slot, through a privileged IQ as the user when
    /// `privilege` names the XEP-0356 namespace granted, else as the
    /// gateway.
    async fn slot(
        &self,
        service: &Jid,
        user: &str,
        privilege: Option<&str>,
        name: &str,
        size: usize,
        mime: &str,
    ) -> Option<Slot> {
        let request = B::new("request", ns::HTTP_UPLOAD)
            .a("filename", name)
            .a("size", size.to_string())
            .a("content-type", mime)
            .build();
        let answer = match privilege {
            Some(priv_ns) => {
                let user_jid = Jid::new(user).ok()?;
                let inner = B::new("iq", ns::CLIENT)
                    .a("type", "get")
                    .a("id", xml::new_id())
                    .a("from", user)
                    .a("to", service.to_string())
                    .c(request)
                    .build();
                let outer = B::new("privileged_iq", priv_ns).c(inner).build();
                let wrapped = self.query(&user_jid, outer).await?;
                // <privilege><forwarded><iq type='result'><slot/>
                wrapped
                    .children()
                    .find(|c| c.name() == "forwarded")
                    .and_then(|f| f.children().find(|c| c.name() == "iq"))
                    .filter(|iq| iq.attr("type") == Some("result"))
                    .and_then(|iq| iq.get_child("slot", ns::HTTP_UPLOAD))
                    .cloned()?
            }
            None => self.query(service, request).await?,
        };
        parse_slot(&answer)
    }

    /// Publishes a file for a user: XEP-0363 on their server when
    /// possible, else the gateway's media store. Returns the public URL.
    pub async fn publish(
        &self,
        user: &str,
        privilege: Option<String>,
        data: Vec<u8>,
        mime: Option<&str>,
        name: Option<&str>,
    ) -> anyhow::Result<String> {
        let domain = user.rsplit('@').next().unwrap_or_default();
        let name = name.filter(|n| !n.is_empty()).unwrap_or("file");
        let mime = mime.unwrap_or("application/octet-stream");
        if let Some(service) = self.service(domain).await
            && service.max_size.is_none_or(|m| data.len() as u64 <= m)
        {
            let slot = self
                .slot(
                    &service.jid,
                    user,
                    privilege.as_deref(),
                    name,
                    data.len(),
                    mime,
                )
                .await;
            if let Some(slot) = slot {
                match self.put(&slot, data.clone(), mime).await {
                    Ok(()) => return Ok(slot.get),
                    Err(e) => {
                        tracing::info!(error = %e, "upload to the user's server failed; publishing here")
                    }
                }
            }
        }
        self.media.publish(data, Some(mime), Some(name)).await
    }

    async fn put(&self, slot: &Slot, data: Vec<u8>, mime: &str) -> anyhow::Result<()> {
        let mut req = self
            .http
            .get()?
            .put(&slot.put)
            .header("Content-Type", mime)
            .header("Content-Length", data.len().to_string());
        for (k, v) in &slot.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req
            .body(data)
            .timeout(Duration::from_secs(60))
            .send()
            .await?;
        if !resp.status().is_success() {
            anyhow::bail!("PUT {} answered {}", slot.put, resp.status());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_keep_only_the_allowed_headers() {
        let slot: Element = "<slot xmlns='urn:xmpp:http:upload:0'>\
            <put url='https://up.example/f/a.png'>\
              <header name='Authorization'>Basic abc</header>\
              <header name='Cookie'>c=1</header>\
              <header name='X-Evil'>no</header>\
            </put>\
            <get url='https://down.example/f/a.png'/></slot>"
            .parse()
            .expect("parses");
        let s = parse_slot(&slot).expect("slot");
        assert_eq!(s.put, "https://up.example/f/a.png");
        assert_eq!(s.get, "https://down.example/f/a.png");
        assert_eq!(
            s.headers,
            vec![
                ("Authorization".to_owned(), "Basic abc".to_owned()),
                ("Cookie".to_owned(), "c=1".to_owned())
            ]
        );
        let bad: Element = "<slot xmlns='urn:xmpp:http:upload:0'><put url='x'/></slot>"
            .parse()
            .expect("parses");
        assert!(parse_slot(&bad).is_none());
    }

    #[test]
    fn max_size_comes_from_the_form() {
        let info: Element = "<query xmlns='http://jabber.org/protocol/disco#info'>\
            <feature var='urn:xmpp:http:upload:0'/>\
            <x xmlns='jabber:x:data' type='result'>\
              <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:http:upload:0</value></field>\
              <field var='max-file-size'><value>1048576</value></field></x></query>"
            .parse()
            .expect("parses");
        assert_eq!(max_size(&info), Some(1_048_576));
    }
}

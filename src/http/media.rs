//! Files published over HTTP for XMPP users (an attachment from a network
//! becomes a link a client can open): `/media/<token>/<name>`.
//!
//! Each file gets a random 128-bit token, so URLs cannot be guessed or
//! listed. Files live under `<data_dir>/media/` as `<token>.bin` with a
//! `<token>.json` describing them (name, content type, size); the JSON is
//! written last, so a file is served only once it is complete. Served
//! files carry `nosniff` and a sandboxing CSP: nothing published runs as
//! the gateway's origin.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::HttpState;

/// Publishes files over the gateway's HTTP listener. Cheap to clone.
#[derive(Clone)]
pub struct Media {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    dir: PathBuf,
    base_url: String,
    max_bytes: usize,
}

impl fmt::Debug for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Some(i) => f
                .debug_struct("Media")
                .field("dir", &i.dir)
                .field("base_url", &i.base_url)
                .finish(),
            None => f.write_str("Media(disabled)"),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Meta {
    name: String,
    mime: String,
    size: u64,
}

const DEFAULT_MIME: &str = "application/octet-stream";

impl Media {
    /// Media stored in `dir` (created, mode 0700) and linked under
    /// `base_url` (`[http] public_url`).
    pub fn new(dir: PathBuf, base_url: String, max_bytes: usize) -> anyhow::Result<Media> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create the media directory {}", dir.display()))?;
        Ok(Media {
            inner: Some(Arc::new(Inner {
                dir,
                base_url: base_url.trim_end_matches('/').to_owned(),
                max_bytes,
            })),
        })
    }

    /// No HTTP listener: publishing fails with a clear error.
    pub fn disabled() -> Media {
        Media { inner: None }
    }

    /// Whether files can be published.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Stores a file and returns its public URL (under `[http] public_url`).
    /// Fails when no HTTP listener is configured.
    pub async fn publish(
        &self,
        data: Vec<u8>,
        mime: Option<&str>,
        name: Option<&str>,
    ) -> anyhow::Result<String> {
        let Some(inner) = &self.inner else {
            anyhow::bail!(
                "files cannot be published: no HTTP listener is configured ([http] listen)"
            );
        };
        if data.len() > inner.max_bytes {
            anyhow::bail!(
                "the file is too large to publish ({} bytes, at most {} in [http] max_media_bytes)",
                data.len(),
                inner.max_bytes
            );
        }
        let mut raw = [0u8; 16];
        rand::fill(&mut raw);
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let name = sanitize_name(name.unwrap_or(""));
        let meta = Meta {
            name: name.clone(),
            mime: mime
                .filter(|m| valid_mime(m))
                .unwrap_or(DEFAULT_MIME)
                .to_owned(),
            size: data.len() as u64,
        };
        let bin = inner.dir.join(format!("{token}.bin"));
        let json = inner.dir.join(format!("{token}.json"));
        write_atomic(&bin, &data).await?;
        let meta = serde_json::to_vec(&meta).context("describing the file")?;
        write_atomic(&json, &meta).await?;
        Ok(format!("{}/media/{token}/{name}", inner.base_url))
    }
}

async fn write_atomic(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, data)
        .await
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    tokio::fs::rename(&tmp, path)
        .await
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A file name safe in a URL path and a header: ASCII letters, digits,
/// `.`, `-`, `_` (anything else becomes `_`), at most 100 characters, never
/// hidden, never empty.
pub(crate) fn sanitize_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while out.starts_with('.') {
        out.remove(0);
    }
    if out.len() > 100 {
        // Keep the extension.
        let ext = out
            .rfind('.')
            .map(|i| out[i..].to_owned())
            .filter(|e| e.len() <= 10)
            .unwrap_or_default();
        out.truncate(100 - ext.len());
        out.push_str(&ext);
    }
    if out.is_empty() {
        "file".to_owned()
    } else {
        out
    }
}

fn valid_mime(mime: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    match mime.split_once('/') {
        Some((t, s)) => ok(t) && ok(s) && mime.len() <= 100,
        None => false,
    }
}

/// `GET /media/<token>/<name>`.
pub(super) async fn serve(
    State(state): State<HttpState>,
    Path((token, name)): Path<(String, String)>,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "no such file\n").into_response();
    let Some(inner) = &state.inner.media.inner else {
        return not_found();
    };
    if token.len() != 32 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
        return not_found();
    }
    let Ok(meta) = tokio::fs::read(inner.dir.join(format!("{token}.json"))).await else {
        return not_found();
    };
    let Ok(meta) = serde_json::from_slice::<Meta>(&meta) else {
        return not_found();
    };
    if meta.name != name {
        return not_found();
    }
    let Ok(file) = tokio::fs::File::open(inner.dir.join(format!("{token}.bin"))).await else {
        return not_found();
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&meta.mime).unwrap_or(HeaderValue::from_static(DEFAULT_MIME)),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{}\"", meta.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    super::safe_headers(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe() {
        assert_eq!(sanitize_name("photo.jpg"), "photo.jpg");
        assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_name("a b<c>\"d'.png"), "a_b_c__d_.png");
        assert_eq!(sanitize_name(".hidden"), "hidden");
        assert_eq!(sanitize_name(""), "file");
        assert_eq!(sanitize_name("C:\\x\\y.txt"), "y.txt");
        assert_eq!(sanitize_name("ünï.txt"), "_n_.txt");
        let long = format!("{}.tar.gz", "x".repeat(300));
        let s = sanitize_name(&long);
        assert_eq!(s.len(), 100);
        assert!(s.ends_with(".gz"));
    }

    #[test]
    fn mime_types_are_checked() {
        assert!(valid_mime("image/png"));
        assert!(valid_mime("application/vnd.oasis.opendocument.text"));
        assert!(!valid_mime("text/html\r\nX-Evil: 1"));
        assert!(!valid_mime("nonsense"));
        assert!(!valid_mime("a/"));
    }
}

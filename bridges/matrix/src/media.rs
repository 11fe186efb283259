//! Files both ways: `mxc://` media downloaded with the user's own client
//! (decrypted in encrypted rooms) becomes [`AttachmentSource::Bytes`] for
//! the core to publish; a URL from XMPP (OOB) is downloaded — within the
//! configured size limit — and uploaded to the homeserver's content
//! repository as `m.image` / `m.video` / `m.audio` / `m.file`.

use ferry_bridge::{Attachment, AttachmentSource, BridgeError, ErrorKind};
use futures::StreamExt as _;
use matrix_sdk::Client;
use matrix_sdk::media::{MediaFormat, MediaRequestParameters};
use matrix_sdk::ruma::events::room::MediaSource;

/// What a Matrix media message carries, for download.
#[derive(Clone, Debug)]
pub struct MediaRef {
    /// Where the content is.
    pub source: MediaSource,
    /// File name.
    pub name: Option<String>,
    /// MIME type announced by the sender.
    pub mime: Option<String>,
    /// Size announced by the sender.
    pub size: Option<u64>,
    /// Caption.
    pub caption: Option<String>,
}

/// Downloads a Matrix file. On failure (too big, unreachable) returns a
/// sentence that replaces the file in the message.
pub async fn download(client: &Client, media: &MediaRef, max: u64) -> Result<Attachment, String> {
    let label = media.name.clone().unwrap_or_else(|| "file".into());
    if let Some(size) = media.size
        && size > max
    {
        return Err(format!(
            "[{label}: {} is larger than this gateway forwards ({})]",
            human_size(size),
            human_size(max)
        ));
    }
    let request = MediaRequestParameters {
        source: media.source.clone(),
        format: MediaFormat::File,
    };
    let data = client
        .media()
        .get_media_content(&request, false)
        .await
        .map_err(|e| format!("[{label}: could not be downloaded from Matrix: {e}]"))?;
    if data.len() as u64 > max {
        return Err(format!(
            "[{label}: {} is larger than this gateway forwards ({})]",
            human_size(data.len() as u64),
            human_size(max)
        ));
    }
    Ok(Attachment {
        size: Some(data.len() as u64),
        source: AttachmentSource::Bytes(data),
        name: media.name.clone(),
        mime: media.mime.clone(),
        caption: media.caption.clone(),
    })
}

/// Downloads a small image (an avatar) from the media cache or the
/// homeserver.
pub async fn download_small(client: &Client, source: MediaSource, max: u64) -> Option<Vec<u8>> {
    let request = MediaRequestParameters {
        source,
        format: MediaFormat::File,
    };
    match client.media().get_media_content(&request, true).await {
        Ok(d) if (d.len() as u64) <= max => Some(d),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, "avatar download failed");
            None
        }
    }
}

/// A file fetched from a URL.
#[derive(Debug)]
pub struct Fetched {
    /// The bytes.
    pub data: Vec<u8>,
    /// MIME type.
    pub mime: mime::Mime,
    /// File name.
    pub name: String,
}

/// Downloads an attachment's URL (http or https only, to a host the
/// operator's policy allows), refusing more than `max` bytes.
pub async fn fetch(
    http: &matrix_sdk::reqwest::Client,
    hosts: &ferry_bridge::HostPolicy,
    attachment: &Attachment,
    max: u64,
    timeout: std::time::Duration,
) -> Result<Fetched, BridgeError> {
    let url_text = match &attachment.source {
        AttachmentSource::Url(u) => u.clone(),
        AttachmentSource::Bytes(data) => {
            return Ok(Fetched {
                data: data.clone(),
                mime: pick_mime(attachment.mime.as_deref(), None, attachment.name.as_deref()),
                name: attachment.name.clone().unwrap_or_else(|| "file".into()),
            });
        }
    };
    let url = url::Url::parse(&url_text)
        .map_err(|e| BridgeError::bad_request(format!("bad attachment URL {url_text:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BridgeError::bad_request(format!(
            "attachment URL {url_text:?} is not http(s)"
        )));
    }
    crate::client::check_url(hosts, url.as_str())
        .await
        .map_err(|e| BridgeError::new(ErrorKind::NotAllowed, format!("Not sent to Matrix: {e}")))?;
    let response = http
        .get(url.clone())
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| BridgeError::unavailable(format!("could not download {url}: {e}")))?;
    if !response.status().is_success() {
        return Err(BridgeError::remote(format!(
            "could not download {url}: HTTP {}",
            response.status()
        )));
    }
    let too_big = |n: u64| {
        BridgeError::new(
            ErrorKind::ResourceConstraint,
            format!(
                "the file at {url} ({}) is larger than this gateway sends to Matrix ({})",
                human_size(n),
                human_size(max)
            ),
        )
    };
    if let Some(len) = response.content_length()
        && len > max
    {
        return Err(too_big(len));
    }
    let header_mime = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut data = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| BridgeError::unavailable(format!("download of {url} broke off: {e}")))?;
        if (data.len() + chunk.len()) as u64 > max {
            return Err(too_big((data.len() + chunk.len()) as u64));
        }
        data.extend_from_slice(&chunk);
    }
    let name = attachment.name.clone().unwrap_or_else(|| {
        url.path_segments()
            .and_then(|mut s| s.next_back().map(str::to_owned))
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(&s))
            .unwrap_or_else(|| "file".into())
    });
    Ok(Fetched {
        mime: pick_mime(
            attachment.mime.as_deref(),
            header_mime.as_deref(),
            Some(&name),
        ),
        data,
        name,
    })
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

/// The MIME type of a file: what the sender said, else what the server
/// said, else a guess from the file name's extension.
pub fn pick_mime(given: Option<&str>, header: Option<&str>, name: Option<&str>) -> mime::Mime {
    for candidate in [given, header].into_iter().flatten() {
        if let Ok(m) = candidate.parse::<mime::Mime>()
            && m != mime::APPLICATION_OCTET_STREAM
        {
            return m;
        }
    }
    let ext = name
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let guess = match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "m4a" => "audio/mp4",
        "wav" => "audio/wav",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    };
    guess.parse().unwrap_or(mime::APPLICATION_OCTET_STREAM)
}

/// `12.3 MB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_choice_and_sizes() {
        assert_eq!(pick_mime(Some("image/png"), None, None), mime::IMAGE_PNG);
        assert_eq!(
            pick_mime(None, Some("application/octet-stream"), Some("a.JPG")),
            mime::IMAGE_JPEG
        );
        assert_eq!(
            pick_mime(Some("not a mime"), None, Some("x")),
            mime::APPLICATION_OCTET_STREAM
        );
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_500_000), "1.5 MB");
        assert_eq!(percent_decode("a%20b.png"), "a b.png");
    }
}

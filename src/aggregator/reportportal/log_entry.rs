//! Log entries and their attachments, as the multipart body of `POST /log`.

use serde_json::Value;

/// One attachment of a log entry.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// File name (the part's `filename`, matched against the entry's `file.name`).
    pub name: String,
    /// MIME type.
    pub mime: String,
    /// Content.
    pub data: Vec<u8>,
}

/// One log entry.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// The item it belongs to.
    pub item: String,
    /// `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL` or `UNKNOWN`.
    pub level: String,
    /// The message (the whole text of an inline log).
    pub message: String,
    /// A file attached to it.
    pub attachment: Option<Attachment>,
}

/// A fresh multipart boundary.
pub(super) fn boundary() -> String {
    format!("atex-{:016x}{:016x}", rand_u64(), rand_u64())
}

/// A random 64-bit number (boundaries only; not for secrets).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Quotes a multipart header parameter value.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("%22"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The multipart body: the attachment part (field name = file name = attachment name),
/// then `json_request_part`.
pub(super) fn multipart(
    boundary: &str,
    entries: &Value,
    attachment: Option<&Attachment>,
) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(a) = attachment {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name={}; filename={}\r\nContent-Type: {}\r\n\r\n",
                quoted(&a.name),
                quoted(&a.name),
                a.mime
            )
            .as_bytes(),
        );
        out.extend_from_slice(&a.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    out.extend_from_slice(
        b"Content-Disposition: form-data; name=\"json_request_part\"\r\nContent-Type: application/json\r\n\r\n",
    );
    out.extend_from_slice(entries.to_string().as_bytes());
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// A MIME type guessed from a file name (`text/plain` when unknown).
pub fn guess_mime(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "xml" => "application/xml",
        "json" => "application/json",
        "yaml" | "yml" => "application/yaml",
        "js" => "text/javascript",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "gz" => "application/gzip",
        "xz" => "application/x-xz",
        "tar" => "application/x-tar",
        "zip" => "application/zip",
        "bin" | "dat" | "rpm" | "iso" | "qcow2" => "application/octet-stream",
        _ => "text/plain",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn multipart_layout() {
        let a = Attachment {
            name: "j\"x.log".into(),
            mime: "text/plain".into(),
            data: b"abc".to_vec(),
        };
        let body = multipart("B", &json!([{"m": 1}]), Some(&a));
        let text = String::from_utf8(body).expect("utf8");
        assert_eq!(
            text,
            "--B\r\nContent-Disposition: form-data; name=\"j%22x.log\"; filename=\"j%22x.log\"\r\nContent-Type: text/plain\r\n\r\nabc\r\n\
             --B\r\nContent-Disposition: form-data; name=\"json_request_part\"\r\nContent-Type: application/json\r\n\r\n[{\"m\":1}]\r\n--B--\r\n"
        );
        assert_eq!(guess_mime("a.PNG"), "image/png");
        assert_eq!(guess_mime("journal"), "text/plain");
    }
}

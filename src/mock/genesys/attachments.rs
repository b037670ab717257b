//! Attachments: the socket actions (`onAttachment`, `getAttachment`, `deleteAttachment`, and
//! the attachment content of `onMessage`) and the in-process storage that stands in for the
//! pre-signed S3 bucket, on the fake's own listener:
//!
//! - `PUT /storage/{id}?expires=E&signature=S`: the upload URL of one slot. Refused unless the
//!   signature (over id, size, type and expiry) holds, the slot has not expired, the request
//!   carries exactly the signed headers' values and no other `x-amz-*` header, and its body
//!   is exactly `fileSize` bytes. S3-style XML error bodies; every refusal of a known slot
//!   also tells the session's sockets `UploadFailureEvent`, success `UploadSuccessEvent`.
//! - `GET /storage/{id}/download?expires=E&signature=S`: the bytes, with the file's type.
//! - `OPTIONS /storage/...`: the CORS preflight of a browser uploading cross-origin.
//!
//! `getAttachment` answers `PresignedUrlResponse` with empty `headers` and a fresh download
//! `url`: that is how Genesys's own Messenger transport SDK tells a refreshed download URL
//! from an upload slot (headers empty and `fileSize` present).
//!
//! `fileMd5` and `errorsAsJson` are accepted and ignored. A failed PUT does not use up the
//! slot: the client may retry until it expires. A deleted attachment keeps its id reserved.

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::frames::{self, error, event, response};
use super::history::sign;
use super::http::{PlainRequest, Reply};
use super::protocol::{Session, State, epoch_after};
use super::{MAX_UPLOAD_BYTES, READ_ONLY_CODE};
use crate::mock::support::lock;

/// Longest file name accepted, in characters.
const MAX_FILE_NAME: usize = 255;

/// The header the upload must carry besides `Content-Type`, as S3 user metadata.
pub(super) const META_HEADER: &str = "x-amz-meta-attachment";

/// Where uploads and downloads live on the fake's listener.
pub(super) const STORAGE_PREFIX: &str = "/storage/";

/// One upload slot and, once uploaded, the file.
#[derive(Debug)]
pub(crate) struct Attachment {
    file_name: String,
    file_type: String,
    file_size: u64,
    /// The upload URL's `expires` (Unix seconds) and the instant it stops working.
    upload_expires: u64,
    upload_until: Instant,
    /// The value the upload must carry in [`META_HEADER`].
    meta: String,
    bytes: Option<Vec<u8>>,
    deleted: bool,
}

/// Why a PUT was refused: the HTTP answer, and the `UploadFailureEvent` code and text.
struct Refusal {
    status: u16,
    s3_code: &'static str,
    message: &'static str,
    event: Option<(u16, &'static str)>,
}

impl Refusal {
    fn new(status: u16, s3_code: &'static str, message: &'static str) -> Self {
        Refusal {
            status,
            s3_code,
            message,
            event: None,
        }
    }

    fn tell(mut self, code: u16, text: &'static str) -> Self {
        self.event = Some((code, text));
        self
    }

    fn reply(&self) -> Reply {
        s3_error(self.status, self.s3_code, self.message)
    }
}

/// An S3-style XML error answer (with CORS, so the page can read it).
fn s3_error(status: u16, code: &str, message: &str) -> Reply {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    Reply::new(status, "application/xml", body.into_bytes()).with_cors()
}

/// Genesys's `mediaType` for a MIME type.
fn media_type(mime: &str) -> &'static str {
    match mime.split('/').next().unwrap_or("") {
        "image" => "Image",
        "video" => "Video",
        "audio" => "Audio",
        _ => "File",
    }
}

/// Whether an upload mode's type entry admits `mime` (`*/*` and `image/*` wildcards).
fn type_matches(allowed: &str, mime: &str) -> bool {
    let (allowed, mime) = (allowed.to_ascii_lowercase(), mime.to_ascii_lowercase());
    allowed == mime
        || allowed == "*/*"
        || allowed
            .strip_suffix("/*")
            .is_some_and(|major| mime.split('/').next() == Some(major))
}

/// A file name Genesys would refuse as invalid (not counting blocked extensions).
fn bad_file_name(name: &str) -> bool {
    let trimmed = name.trim();
    trimmed.is_empty()
        || trimmed == "."
        || trimmed == ".."
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
}

/// Whether `name` ends in one of the blocked extensions (given as `.exe` or `exe`, any case).
fn blocked(name: &str, blocked_extensions: &[String]) -> bool {
    let Some((_, ext)) = name.rsplit_once('.') else {
        return false;
    };
    let ext = ext.trim().to_ascii_lowercase();
    blocked_extensions
        .iter()
        .any(|b| b.trim_start_matches('.').eq_ignore_ascii_case(&ext))
}

impl State {
    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn upload_signature(&self, id: &str, size: u64, file_type: &str, expires: u64) -> String {
        sign(
            &self.key,
            &format!("PUT\n{id}\n{size}\n{file_type}\n{expires}"),
        )
    }

    fn download_signature(&self, id: &str, expires: u64) -> String {
        sign(&self.key, &format!("GET\n{id}\n{expires}"))
    }

    /// A fresh signed download URL for an attachment.
    fn download_url(&self, id: &str) -> String {
        let expires = epoch_after(self.config.download_url_lifetime);
        let signature = self.download_signature(id, expires);
        format!(
            "{}{STORAGE_PREFIX}{id}/download?expires={expires}&signature={signature}",
            self.base_url()
        )
    }

    /// `onAttachment`: checks the file against the deployment and opens an upload slot.
    pub(super) fn on_attachment(
        &self,
        token: &str,
        req: &Map<String, Value>,
        tracing: Option<&Value>,
    ) -> Value {
        let field = |name: &str| req.get(name).and_then(Value::as_str);
        let Some(id) = field("attachmentId") else {
            return error(400, "Missing required field: attachmentId", tracing);
        };
        if uuid::Uuid::parse_str(id).is_err() {
            return error(400, "attachmentId must be a UUID", tracing);
        }
        let (Some(name), Some(file_type)) = (field("fileName"), field("fileType")) else {
            return error(400, "Missing required field: fileName or fileType", tracing);
        };
        let Some(size) = req.get("fileSize").and_then(Value::as_u64) else {
            return error(400, "fileSize must be a non-negative integer", tracing);
        };
        let mut sessions = lock(&self.sessions);
        if sessions.values().any(|s| s.attachments.contains_key(id)) {
            return error(400, "attachmentId is already in use", tracing);
        }
        let Some(session) = sessions.get_mut(token) else {
            return error(4007, "session not found", tracing);
        };
        if session.read_only {
            return error(READ_ONLY_CODE, "Conversation is read-only", tracing);
        }
        let d = self.deployment(&session.deployment_id);
        if name.chars().count() > MAX_FILE_NAME {
            return error(4005, "File name is too long", tracing);
        }
        if bad_file_name(name) {
            return error(4004, "File name is invalid", tracing);
        }
        if blocked(name, &d.blocked_extensions) {
            return error(4004, "File extension is not allowed", tracing);
        }
        let max_kb = d
            .file_upload_modes
            .iter()
            .filter(|m| m.file_types.iter().any(|t| type_matches(t, file_type)))
            .map(|m| m.max_file_size_kb)
            .max();
        let Some(max_kb) = max_kb else {
            return error(4001, "File type is not allowed", tracing);
        };
        let max_bytes = max_kb.saturating_mul(1024).min(MAX_UPLOAD_BYTES as u64);
        if size == 0 || size > max_bytes {
            return error(4002, "File size is not allowed", tracing);
        }
        let lifetime = self.config.upload_url_lifetime;
        let expires = epoch_after(lifetime);
        let signature = self.upload_signature(id, size, file_type, expires);
        let meta = sign(&self.key, &format!("meta\n{id}"));
        session.attachments.insert(
            id.to_owned(),
            Attachment {
                file_name: name.to_owned(),
                file_type: file_type.to_owned(),
                file_size: size,
                upload_expires: expires,
                upload_until: Instant::now() + lifetime,
                meta: meta.clone(),
                bytes: None,
                deleted: false,
            },
        );
        drop(sessions);
        let url = format!(
            "{}{STORAGE_PREFIX}{id}?expires={expires}&signature={signature}",
            self.base_url()
        );
        let body = json!({
            "attachmentId": id,
            "headers": {"Content-Type": file_type, META_HEADER: meta},
            "url": url,
            "fileName": name,
            "fileSize": size,
            "fileType": file_type,
        });
        response("PresignedUrlResponse", body, tracing)
    }

    /// `getAttachment`: a fresh download URL for an uploaded attachment of this session.
    pub(super) fn get_attachment(
        &self,
        token: &str,
        req: &Map<String, Value>,
        tracing: Option<&Value>,
    ) -> Value {
        let Some(id) = req.get("attachmentId").and_then(Value::as_str) else {
            return error(400, "Missing required field: attachmentId", tracing);
        };
        let sessions = lock(&self.sessions);
        let Some(session) = sessions.get(token) else {
            return error(4007, "session not found", tracing);
        };
        let a = match uploaded(session, id) {
            Ok(a) => a,
            Err((code, why)) => return error(code, why, tracing),
        };
        let body = json!({
            "attachmentId": id,
            "headers": {},
            "url": self.download_url(id),
            "fileName": a.file_name,
            "fileSize": a.file_size,
            "fileType": a.file_type,
        });
        response("PresignedUrlResponse", body, tracing)
    }

    /// `deleteAttachment`: forgets the file (before or after upload); the id stays reserved.
    pub(super) fn delete_attachment(
        &self,
        token: &str,
        req: &Map<String, Value>,
        tracing: Option<&Value>,
    ) -> Value {
        let Some(id) = req.get("attachmentId").and_then(Value::as_str) else {
            return error(400, "Missing required field: attachmentId", tracing);
        };
        let mut sessions = lock(&self.sessions);
        let found = sessions
            .get_mut(token)
            .and_then(|s| s.attachments.get_mut(id))
            .filter(|a| !a.deleted);
        let Some(a) = found else {
            return error(4009, "Attachment not found", tracing);
        };
        a.deleted = true;
        a.bytes = None;
        response(
            "AttachmentDeletedResponse",
            json!({"attachmentId": id}),
            tracing,
        )
    }

    /// The `content` of a guest message with each attachment filled in from the session's
    /// uploads (`url`, `mediaType`, `filename`, `mime`, `fileSize`), or the error frame's code
    /// and text.
    pub(super) fn resolve_content(
        &self,
        session: &Session,
        content: &Value,
    ) -> Result<Value, (u16, &'static str)> {
        let items = content
            .as_array()
            .ok_or((400, "message.content must be an array"))?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let kind = item
                .get("contentType")
                .and_then(Value::as_str)
                .ok_or((400, "Each content item needs a contentType"))?;
            if kind != "Attachment" {
                out.push(item.clone());
                continue;
            }
            let id = item
                .get("attachment")
                .and_then(|a| a.get("id"))
                .and_then(Value::as_str)
                .ok_or((400, "Attachment content needs attachment.id"))?;
            let a = uploaded(session, id)?;
            out.push(json!({
                "contentType": "Attachment",
                "attachment": {
                    "id": id,
                    "url": self.download_url(id),
                    "mediaType": media_type(&a.file_type),
                    "filename": a.file_name,
                    "mime": a.file_type,
                    "fileSize": a.file_size,
                },
            }));
        }
        Ok(Value::Array(out))
    }

    /// Checks a `PUT` to an upload URL before its body is read: `Ok(fileSize)` to read that
    /// many bytes, or the answer (after telling the session's sockets, for a known slot).
    pub(super) fn upload_check(&self, req: &PlainRequest, id: &str) -> Result<usize, Reply> {
        let mut sessions = lock(&self.sessions);
        let Some(session) = sessions
            .values_mut()
            .find(|s| s.attachments.get(id).is_some_and(|a| !a.deleted))
        else {
            return Err(s3_error(
                404,
                "NoSuchUpload",
                "The specified upload does not exist.",
            ));
        };
        let a = &session.attachments[id];
        match self.refuse_upload(req, id, a) {
            Ok(()) => Ok(a.file_size as usize),
            Err(refusal) => {
                if let Some((code, text)) = refusal.event {
                    let body = json!({
                        "attachmentId": id,
                        "errorCode": code,
                        "errorMessage": text,
                        "timestamp": frames::now_rfc3339(),
                    });
                    self.broadcast(session, event("UploadFailureEvent", body));
                }
                Err(refusal.reply())
            }
        }
    }

    /// Why this PUT may not upload to slot `a`, if it may not.
    fn refuse_upload(&self, req: &PlainRequest, id: &str, a: &Attachment) -> Result<(), Refusal> {
        let expires = req
            .query_param("expires")
            .and_then(|e| e.parse::<u64>().ok());
        let signature = req.query_param("signature");
        let signed = expires.is_some_and(|e| {
            signature.as_deref()
                == Some(
                    self.upload_signature(id, a.file_size, &a.file_type, e)
                        .as_str(),
                )
        });
        if !signed || expires != Some(a.upload_expires) {
            return Err(Refusal::new(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
            .tell(4003, "Upload signature does not match"));
        }
        if a.bytes.is_some() {
            return Err(Refusal::new(
                403,
                "AccessDenied",
                "This upload URL has already been used.",
            ));
        }
        if Instant::now() >= a.upload_until {
            return Err(Refusal::new(403, "AccessDenied", "Request has expired")
                .tell(4008, "Attachment has expired"));
        }
        let header_mismatch = Refusal::new(
            403,
            "SignatureDoesNotMatch",
            "The signed headers do not match the headers of the request.",
        )
        .tell(4003, "Upload headers do not match");
        if req.header_values("content-type") != [a.file_type.as_str()]
            || req.header_values(META_HEADER) != [a.meta.as_str()]
        {
            return Err(header_mismatch);
        }
        let unsigned_amz = req.headers.iter().any(|(k, _)| {
            k.to_ascii_lowercase().starts_with("x-amz-") && !k.eq_ignore_ascii_case(META_HEADER)
        });
        if unsigned_amz {
            return Err(header_mismatch);
        }
        if req.chunked() {
            return Err(Refusal::new(
                411,
                "MissingContentLength",
                "You must provide the Content-Length HTTP header.",
            )
            .tell(4002, "Upload size does not match fileSize"));
        }
        match req.content_length() {
            Some(n) if n == a.file_size => Ok(()),
            None => Err(Refusal::new(
                411,
                "MissingContentLength",
                "You must provide the Content-Length HTTP header.",
            )
            .tell(4002, "Upload size does not match fileSize")),
            Some(_) => Err(Refusal::new(
                400,
                "IncompleteBody",
                "The request body does not have the size that was signed.",
            )
            .tell(4002, "Upload size does not match fileSize")),
        }
    }

    /// Stores the body of a checked PUT and tells the session's sockets `UploadSuccessEvent`.
    pub(super) fn upload_store(&self, id: &str, bytes: Vec<u8>) -> Reply {
        let mut sessions = lock(&self.sessions);
        let Some(session) = sessions
            .values_mut()
            .find(|s| s.attachments.get(id).is_some_and(|a| !a.deleted))
        else {
            return s3_error(404, "NoSuchUpload", "The specified upload does not exist.");
        };
        let len = bytes.len();
        if let Some(a) = session.attachments.get_mut(id) {
            a.bytes = Some(bytes);
        }
        lock(&self.uploads).push((id.to_owned(), len));
        let body = json!({
            "attachmentId": id,
            "downloadUrl": self.download_url(id),
            "timestamp": frames::now_rfc3339(),
        });
        self.broadcast(session, event("UploadSuccessEvent", body));
        Reply::new(200, "text/plain", Vec::new())
            .with_cors()
            .header("etag", format!("\"{}\"", &sign(&self.key, id)[..16]))
    }

    /// `GET` of a download URL: the file's bytes with its type.
    pub(super) fn download(&self, req: &PlainRequest, id: &str) -> Reply {
        let expires = req
            .query_param("expires")
            .and_then(|e| e.parse::<u64>().ok());
        let signed = expires.is_some_and(|e| {
            req.query_param("signature").as_deref() == Some(self.download_signature(id, e).as_str())
        });
        if !signed {
            return s3_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            );
        }
        if expires.is_some_and(|e| e < frames::epoch_now()) {
            return s3_error(403, "AccessDenied", "Request has expired");
        }
        let sessions = lock(&self.sessions);
        let file = sessions
            .values()
            .find_map(|s| s.attachments.get(id))
            .filter(|a| !a.deleted)
            .and_then(|a| Some((a.file_type.clone(), a.bytes.clone()?)));
        match file {
            Some((file_type, bytes)) => Reply::new(200, &file_type, bytes).with_cors(),
            None => s3_error(404, "NoSuchKey", "The specified key does not exist."),
        }
    }
}

/// An uploaded, not deleted attachment of this session, or the error frame's code and text.
fn uploaded<'a>(session: &'a Session, id: &str) -> Result<&'a Attachment, (u16, &'static str)> {
    let a = session
        .attachments
        .get(id)
        .filter(|a| !a.deleted)
        .ok_or((4009, "Attachment not found"))?;
    if a.bytes.is_none() {
        return Err((4010, "Attachment has not been uploaded"));
    }
    Ok(a)
}

/// The CORS preflight for storage: allowed for PUT and GET with at most the signed headers.
pub(super) fn preflight(req: &PlainRequest) -> Reply {
    let method_ok = matches!(
        req.header("access-control-request-method"),
        Some("PUT" | "GET")
    );
    let allowed = ["content-type", META_HEADER];
    let headers_ok = req
        .header("access-control-request-headers")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .all(|h| allowed.iter().any(|a| a.eq_ignore_ascii_case(h)));
    if req.header("origin").is_none() || !method_ok || !headers_ok {
        return Reply::new(
            403,
            "application/xml",
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessForbidden</Code><Message>CORSResponse: This CORS request is not allowed.</Message></Error>".to_vec(),
        );
    }
    Reply::new(200, "text/plain", Vec::new())
        .with_cors()
        .header("access-control-allow-methods", "PUT, GET".into())
        .header(
            "access-control-allow-headers",
            format!("content-type, {META_HEADER}"),
        )
        .header("access-control-max-age", "3000".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_checks() {
        assert!(type_matches("image/png", "IMAGE/PNG"));
        assert!(type_matches("image/*", "image/jpeg"));
        assert!(type_matches("*/*", "application/pdf"));
        assert!(!type_matches("image/*", "video/mp4"));
        assert!(!type_matches("image/png", "image/jpeg"));
        assert!(bad_file_name(""));
        assert!(bad_file_name("a/b.png"));
        assert!(bad_file_name("a\\b.png"));
        assert!(bad_file_name("a\nb.png"));
        assert!(!bad_file_name("holiday photo.png"));
        let list = vec![".exe".to_owned(), "BAT".to_owned()];
        assert!(blocked("setup.EXE", &list));
        assert!(blocked("run.bat", &list));
        assert!(!blocked("exe", &list));
        assert!(!blocked("photo.png", &list));
        assert_eq!(media_type("image/png"), "Image");
        assert_eq!(media_type("application/pdf"), "File");
    }
}

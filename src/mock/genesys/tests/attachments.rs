//! Attachments: upload slots, the storage's checks and CORS, attachment messages.

use super::*;
use crate::mock::genesys::public_config::FileUploadMode;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\nfake image bytes";

fn uploads_on() -> FakeDeployment {
    FakeDeployment {
        file_upload_modes: vec![
            FileUploadMode {
                file_types: vec!["image/png".into(), "image/jpeg".into()],
                max_file_size_kb: 1,
            },
            FileUploadMode {
                file_types: vec!["application/pdf".into()],
                max_file_size_kb: 2,
            },
        ],
        blocked_extensions: vec![".exe".into(), ".bat".into()],
        ..FakeDeployment::default()
    }
}

fn fake_config(config: FakeGenesysConfig) -> FakeGenesysConfig {
    with_deployment(uploads_on(), config)
}

fn on_attachment(token: &str, id: &str, name: &str, file_type: &str, size: u64) -> Value {
    json!({
        "action": "onAttachment",
        "token": token,
        "attachmentId": id,
        "fileName": name,
        "fileType": file_type,
        "fileSize": size,
        "errorsAsJson": true,
        "tracingId": "att-1",
    })
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Asks for an upload slot for `PNG` and returns the PresignedUrlResponse body.
async fn slot(ws: &mut Client, token: &str) -> Value {
    send(
        ws,
        on_attachment(token, &new_id(), "photo.png", "image/png", PNG.len() as u64),
    )
    .await;
    let r = recv(ws).await;
    assert_eq!(r["class"], "PresignedUrlResponse", "{r}");
    r["body"].clone()
}

/// PUTs `body` to the slot's URL with the slot's headers plus/minus tweaks, raw.
async fn put(
    h: &FakeGenesysHandle,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpAnswer {
    let mut head = format!("PUT {} HTTP/1.1", path_and_query(url));
    for (k, v) in headers {
        head.push_str(&format!("\r\n{k}: {v}"));
    }
    raw_http(h, &head, body).await
}

fn slot_headers(slot: &Value) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = slot["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    headers.push(("content-length".into(), PNG.len().to_string()));
    headers
}

fn as_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[tokio::test]
async fn session_response_lists_allowed_media() {
    within(async {
        let on = start(fake_config(no_agent())).await;
        let (_, r) = session(&on, "media").await;
        assert_eq!(
            r["body"]["allowedMedia"],
            json!({
                "inbound": {
                    "fileTypes": [{"type":"image/png"},{"type":"image/jpeg"},{"type":"application/pdf"}],
                    "maxFileSizeKB": 2,
                },
                "blockedExtensions": [".exe", ".bat"],
            })
        );
        let off = start(no_agent()).await;
        let (_, r) = session(&off, "media").await;
        assert_eq!(
            r["body"]["allowedMedia"],
            json!({"inbound": {"fileTypes": [], "maxFileSizeKB": 0}, "blockedExtensions": []})
        );
    })
    .await
}

#[tokio::test]
async fn on_attachment_refuses_what_the_deployment_does_not_allow() {
    within(async {
        let h = start(fake_config(no_agent())).await;
        let (mut ws, _) = session(&h, "refuse").await;
        let long = format!("{}.png", "a".repeat(252));
        let cases = [
            (
                on_attachment("refuse", &new_id(), "a.gif", "image/gif", 10),
                4001,
            ),
            (
                on_attachment("refuse", &new_id(), "a.png", "image/png", 1025),
                4002,
            ),
            (
                on_attachment("refuse", &new_id(), "a.png", "image/png", 0),
                4002,
            ),
            (
                on_attachment("refuse", &new_id(), "b.pdf", "application/pdf", 2048),
                200,
            ),
            (
                on_attachment("refuse", &new_id(), "b.pdf", "application/pdf", 2049),
                4002,
            ),
            (
                on_attachment("refuse", &new_id(), "dir/a.png", "image/png", 10),
                4004,
            ),
            (
                on_attachment("refuse", &new_id(), "run.EXE", "image/png", 10),
                4004,
            ),
            (
                on_attachment("refuse", &new_id(), &long, "image/png", 10),
                4005,
            ),
            (
                on_attachment("refuse", "not-a-uuid", "a.png", "image/png", 10),
                400,
            ),
        ];
        assert_eq!(long.len(), 256);
        for (req, code) in cases {
            send(&mut ws, req.clone()).await;
            let r = recv(&mut ws).await;
            assert_eq!(r["code"], code, "{req} -> {r}");
            assert_eq!(r["tracingId"], "att-1");
            if code != 200 {
                assert_eq!(r["type"], "response");
                assert_eq!(r["class"], "string");
                assert!(r["body"].is_string());
            }
        }
        // The 255-character name is fine.
        let ok = format!("{}.png", "a".repeat(251));
        send(
            &mut ws,
            on_attachment("refuse", &new_id(), &ok, "image/png", 10),
        )
        .await;
        assert_eq!(recv(&mut ws).await["code"], 200);

        // No upload modes: every type is refused.
        let off = start(no_agent()).await;
        let (mut ws, _) = session(&off, "off").await;
        send(
            &mut ws,
            on_attachment("off", &new_id(), "a.png", "image/png", 10),
        )
        .await;
        assert_eq!(recv(&mut ws).await["code"], 4001);
    })
    .await
}

#[tokio::test]
async fn upload_happy_path_then_message_download_refresh_and_delete() {
    within(async {
        let h = start(fake_config(no_agent())).await;
        let (mut ws, _) = session(&h, "up").await;
        let (mut other, _) = session(&h, "up").await;
        let id = new_id();
        send(
            &mut ws,
            on_attachment("up", &id, "photo.png", "image/png", PNG.len() as u64),
        )
        .await;
        let r = recv(&mut ws).await;
        assert_eq!(
            (r["type"].as_str(), r["class"].as_str(), r["code"].as_i64()),
            (Some("response"), Some("PresignedUrlResponse"), Some(200))
        );
        assert_eq!(r["tracingId"], "att-1");
        let slot = &r["body"];
        assert_eq!(slot["attachmentId"], id.as_str());
        assert_eq!(
            (&slot["fileName"], &slot["fileType"], &slot["fileSize"]),
            (&json!("photo.png"), &json!("image/png"), &json!(PNG.len()))
        );
        assert_eq!(slot["headers"]["Content-Type"], "image/png");
        assert!(slot["headers"]["x-amz-meta-attachment"].is_string());
        let url = slot["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("http://{}/storage/{id}?expires=", h.addr())),
            "{url}"
        );

        // Before the upload the attachment cannot be sent.
        let msg = json!({"action":"onMessage","token":"up","message":{"type":"Text",
            "content":[{"contentType":"Attachment","attachment":{"id":id}}]}});
        send(&mut ws, msg.clone()).await;
        assert_eq!(recv(&mut ws).await["code"], 4010);

        // A real HTTP client uploads with exactly the headers it was given.
        let client =
            crate::auth::http_client::build_http_client(None, Duration::from_secs(5)).unwrap();
        let mut put = client.put(url).body(PNG.to_vec());
        for (k, v) in slot["headers"].as_object().unwrap() {
            put = put.header(k.as_str(), v.as_str().unwrap());
        }
        let resp = put.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["access-control-allow-origin"]
                .to_str()
                .unwrap(),
            "*"
        );
        assert_eq!(h.uploads(), vec![(id.clone(), PNG.len())]);
        let mut download = String::new();
        for socket in [&mut ws, &mut other] {
            let ev = recv(socket).await;
            assert_eq!(
                (
                    ev["type"].as_str(),
                    ev["class"].as_str(),
                    ev["code"].as_i64()
                ),
                (Some("message"), Some("UploadSuccessEvent"), Some(200))
            );
            assert_eq!(ev["body"]["attachmentId"], id.as_str());
            assert!(ev["body"]["timestamp"].as_str().unwrap().ends_with('Z'));
            download = ev["body"]["downloadUrl"].as_str().unwrap().to_owned();
        }
        let got = client.get(&download).send().await.unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.headers()["content-type"].to_str().unwrap(), "image/png");
        assert_eq!(
            got.headers()["access-control-allow-origin"]
                .to_str()
                .unwrap(),
            "*"
        );
        assert_eq!(got.bytes().await.unwrap().as_ref(), PNG);
        let forged = download.replace("signature=", "signature=x");
        assert_eq!(client.get(&forged).send().await.unwrap().status(), 403);

        // Now the message goes through, with the attachment filled in, into history.
        send(&mut ws, msg).await;
        let echo = recv(&mut ws).await;
        assert_eq!(echo["class"], "StructuredMessage", "{echo}");
        let att = &echo["body"]["content"][0]["attachment"];
        assert_eq!(echo["body"]["content"][0]["contentType"], "Attachment");
        assert_eq!(
            (
                &att["id"],
                &att["mediaType"],
                &att["filename"],
                &att["mime"]
            ),
            (
                &json!(id),
                &json!("Image"),
                &json!("photo.png"),
                &json!("image/png")
            )
        );
        let att_url = att["url"].as_str().unwrap();
        let fetched = client.get(att_url).send().await.unwrap();
        assert_eq!(fetched.bytes().await.unwrap().as_ref(), PNG);
        assert_eq!(h.history("up").unwrap().last().unwrap(), &echo["body"]);

        // getAttachment: a refreshed download URL, told apart from an upload slot the way
        // Genesys's SDK does (no headers, fileSize present).
        send(
            &mut ws,
            json!({"action":"getAttachment","token":"up","attachmentId":id,"tracingId":"g"}),
        )
        .await;
        let fresh = recv(&mut ws).await;
        assert_eq!(fresh["class"], "PresignedUrlResponse");
        assert_eq!(fresh["tracingId"], "g");
        assert_eq!(fresh["body"]["headers"], json!({}));
        assert_eq!(fresh["body"]["fileSize"], PNG.len());
        let refreshed = fresh["body"]["url"].as_str().unwrap();
        assert!(refreshed.contains("/download?"), "{refreshed}");

        send(
            &mut ws,
            json!({"action":"deleteAttachment","token":"up","attachmentId":id}),
        )
        .await;
        let deleted = recv(&mut ws).await;
        assert_eq!(
            (deleted["class"].as_str(), deleted["code"].as_i64()),
            (Some("AttachmentDeletedResponse"), Some(200))
        );
        assert_eq!(deleted["body"], json!({"attachmentId": id}));
        assert_eq!(client.get(refreshed).send().await.unwrap().status(), 404);
        send(
            &mut ws,
            json!({"action":"getAttachment","token":"up","attachmentId":id}),
        )
        .await;
        assert_eq!(recv(&mut ws).await["code"], 4009);
        send(
            &mut ws,
            json!({"action":"onMessage","token":"up","message":{"type":"Text",
                "content":[{"contentType":"Attachment","attachment":{"id":id}}]}}),
        )
        .await;
        assert_eq!(recv(&mut ws).await["code"], 4009);
    })
    .await
}

#[tokio::test]
async fn attachment_messages_refused_for_unknown_or_foreign_ids() {
    within(async {
        let h = start(fake_config(no_agent())).await;
        let (mut mine, _) = session(&h, "mine").await;
        let (mut theirs, _) = session(&h, "theirs").await;
        let slot = slot(&mut theirs, "theirs").await;
        let headers = slot_headers(&slot);
        let url = slot["url"].as_str().unwrap();
        assert_eq!(put(&h, url, &as_refs(&headers), PNG).await.status, 200);
        let foreign = slot["attachmentId"].as_str().unwrap();
        for id in [foreign.to_owned(), new_id()] {
            send(
                &mut mine,
                json!({"action":"onMessage","token":"mine","message":{"type":"Text","text":"see",
                    "content":[{"contentType":"Attachment","attachment":{"id":id}}]}}),
            )
            .await;
            let r = recv(&mut mine).await;
            assert_eq!(
                (r["class"].as_str(), r["code"].as_i64()),
                (Some("string"), Some(4009))
            );
        }
        // The id of another session's slot cannot be taken either.
        send(
            &mut mine,
            on_attachment("mine", foreign, "a.png", "image/png", 10),
        )
        .await;
        assert_eq!(recv(&mut mine).await["code"], 400);
        assert_eq!(h.history("mine").unwrap().len(), 0);
    })
    .await
}

#[tokio::test]
async fn storage_refuses_tampered_or_mismatched_uploads_and_tells_the_session() {
    within(async {
        let h = start(fake_config(no_agent())).await;
        let (mut ws, _) = session(&h, "st").await;
        let slot = slot(&mut ws, "st").await;
        let id = slot["attachmentId"].as_str().unwrap().to_owned();
        let url = slot["url"].as_str().unwrap().to_owned();
        let good = slot_headers(&slot);

        let failure = async |ws: &mut Client, code: u16| {
            let ev = recv(ws).await;
            assert_eq!(
                (ev["type"].as_str(), ev["class"].as_str()),
                (Some("message"), Some("UploadFailureEvent")),
                "{ev}"
            );
            assert_eq!(ev["body"]["attachmentId"], id.as_str());
            assert_eq!(ev["body"]["errorCode"], code);
            assert!(ev["body"]["errorMessage"].is_string());
            assert!(ev["body"]["timestamp"].is_string());
        };

        // Signature tampered with.
        let sig_at = url.find("signature=").unwrap() + "signature=".len();
        let mut tampered = url.clone();
        let flipped = if &url[sig_at..=sig_at] == "A" {
            "B"
        } else {
            "A"
        };
        tampered.replace_range(sig_at..=sig_at, flipped);
        let r = put(&h, &tampered, &as_refs(&good), PNG).await;
        assert_eq!(r.status, 403);
        assert!(
            r.text().contains("<Code>SignatureDoesNotMatch</Code>"),
            "{}",
            r.text()
        );
        failure(&mut ws, 4003).await;

        // Expiry moved: the signature no longer holds.
        let later = url.replace("expires=", "expires=9");
        assert_eq!(put(&h, &later, &as_refs(&good), PNG).await.status, 403);
        failure(&mut ws, 4003).await;

        // Wrong Content-Type, missing metadata header, an unsigned x-amz header.
        let mut wrong_type = good.clone();
        wrong_type[0] = ("Content-Type".into(), "image/jpeg".into());
        let no_meta: Vec<(String, String)> = good
            .iter()
            .filter(|(k, _)| k != "x-amz-meta-attachment")
            .cloned()
            .collect();
        let mut extra = good.clone();
        extra.push(("x-amz-meta-other".into(), "1".into()));
        for headers in [&wrong_type, &no_meta, &extra] {
            let r = put(&h, &url, &as_refs(headers), PNG).await;
            assert_eq!(r.status, 403, "{headers:?}");
            assert_eq!(r.header("access-control-allow-origin"), Some("*"));
            failure(&mut ws, 4003).await;
        }

        // Wrong size: the body does not have the signed length.
        let mut short = good.clone();
        short.last_mut().unwrap().1 = (PNG.len() - 1).to_string();
        let r = put(&h, &url, &as_refs(&short), &PNG[1..]).await;
        assert_eq!(r.status, 400);
        assert!(r.text().contains("IncompleteBody"), "{}", r.text());
        failure(&mut ws, 4002).await;
        let no_length: Vec<(String, String)> = good[..good.len() - 1].to_vec();
        assert_eq!(put(&h, &url, &as_refs(&no_length), b"").await.status, 411);
        failure(&mut ws, 4002).await;

        // Unknown slot: 404, nobody to tell.
        let unknown = url.replace(&id, &new_id());
        assert_eq!(put(&h, &unknown, &as_refs(&good), PNG).await.status, 404);

        // Refusals do not use the slot up; a used slot cannot be used again.
        assert!(h.uploads().is_empty());
        assert_eq!(put(&h, &url, &as_refs(&good), PNG).await.status, 200);
        assert_eq!(recv(&mut ws).await["class"], "UploadSuccessEvent");
        assert_eq!(put(&h, &url, &as_refs(&good), PNG).await.status, 403);
        assert_eq!(h.uploads(), vec![(id.clone(), PNG.len())]);
        assert_eq!(recv_within(&mut ws, Duration::from_millis(200)).await, None);
    })
    .await
}

#[tokio::test]
async fn upload_urls_expire() {
    within(async {
        let h = start(fake_config(FakeGenesysConfig {
            upload_url_lifetime: Duration::from_millis(200),
            ..no_agent()
        }))
        .await;
        let (mut ws, _) = session(&h, "late").await;
        let slot = slot(&mut ws, "late").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = put(
            &h,
            slot["url"].as_str().unwrap(),
            &as_refs(&slot_headers(&slot)),
            PNG,
        )
        .await;
        assert_eq!(r.status, 403);
        assert!(r.text().contains("Request has expired"), "{}", r.text());
        let ev = recv(&mut ws).await;
        assert_eq!(ev["class"], "UploadFailureEvent");
        assert_eq!(ev["body"]["errorCode"], 4008);
        assert!(h.uploads().is_empty());
    })
    .await
}

#[tokio::test]
async fn storage_answers_the_cors_preflight_for_the_signed_headers_only() {
    within(async {
        let h = start(fake_config(no_agent())).await;
        let preflight = |method: &str, headers: &str, origin: bool| {
            let mut head = format!(
                "OPTIONS /storage/{} HTTP/1.1\r\naccess-control-request-method: {method}",
                new_id()
            );
            if !headers.is_empty() {
                head.push_str(&format!("\r\naccess-control-request-headers: {headers}"));
            }
            if origin {
                head.push_str("\r\norigin: https://site.example");
            }
            head
        };
        let ok = raw_http(
            &h,
            &preflight("PUT", "content-type,x-amz-meta-attachment", true),
            b"",
        )
        .await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.header("access-control-allow-origin"), Some("*"));
        assert_eq!(ok.header("access-control-allow-methods"), Some("PUT, GET"));
        let allowed = ok
            .header("access-control-allow-headers")
            .unwrap()
            .to_owned();
        assert!(allowed.contains("content-type") && allowed.contains("x-amz-meta-attachment"));
        assert_eq!(
            raw_http(&h, &preflight("GET", "", true), b"").await.status,
            200
        );

        for (method, headers, origin) in [
            ("PUT", "content-type, authorization", true),
            ("DELETE", "", true),
            ("PUT", "content-type", false),
        ] {
            let r = raw_http(&h, &preflight(method, headers, origin), b"").await;
            assert_eq!(r.status, 403, "{method} {headers} {origin}");
            assert_eq!(r.header("access-control-allow-origin"), None);
        }
    })
    .await
}

#[tokio::test]
async fn oversized_bodies_are_refused_unread() {
    within(async {
        let h = start(fake_config(no_agent())).await;
        let head = format!(
            "PUT /storage/{} HTTP/1.1\r\ncontent-length: {}",
            new_id(),
            MAX_UPLOAD_BYTES + 1
        );
        assert_eq!(raw_http(&h, &head, b"").await.status, 413);
    })
    .await
}

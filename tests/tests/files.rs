//! Attachments: upload, sniffing, thumbnails, access control, limits, cleanup.

use anyhow::Result;
use mqchat_e2e::{files_under, TestServer, TestUser, PNG_1X1};
use serde_json::{json, Value};

const PNG: &[u8] = PNG_1X1;

async fn upload(
    user: &TestUser,
    name: &str,
    bytes: Vec<u8>,
    declared: &str,
) -> Result<(u16, Value)> {
    let res = user
        .request(reqwest::Method::POST, &format!("/v1/files?name={name}"))
        .header("content-type", declared)
        .body(bytes)
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

async fn download(user: &TestUser, id: &str) -> Result<(u16, Vec<u8>, String)> {
    let res = user
        .request(reqwest::Method::GET, &format!("/v1/files/{id}"))
        .send()
        .await?;
    let status = res.status().as_u16();
    let ctype = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    Ok((status, res.bytes().await?.to_vec(), ctype))
}

#[tokio::test]
async fn images_are_sniffed_thumbnailed_and_shared_only_with_the_conversation() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let carol = server.user("carol").await?;

    // The declared type is ignored: the bytes say PNG.
    let (s, file) = upload(&alice, "dot.png", PNG.to_vec(), "text/plain").await?;
    assert_eq!(s, 201, "{file}");
    assert_eq!(file["content_type"], "image/png");
    assert_eq!(
        (file["width"].as_u64(), file["height"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(file["size"], PNG.len());
    let id = file["id"].as_str().unwrap_or_default().to_owned();
    let thumb = file["thumbnail_id"].as_str().unwrap_or_default().to_owned();
    assert!(!thumb.is_empty(), "images get a thumbnail");

    // Before any message: only the uploader.
    assert_eq!(download(&alice, &id).await?.0, 200);
    assert_eq!(download(&bob, &id).await?.0, 404);

    let (s, m) = alice.post("/v1/messages", &json!({"to": {"user": bob.id}, "client_msg_id": "i1", "body": {"image": {"id": id, "name": "dot.png"}}})).await?;
    assert_eq!(s, 201, "{m}");
    let (s, bytes, ctype) = download(&bob, &id).await?;
    assert_eq!(
        (s, bytes.as_slice(), ctype.as_str()),
        (200, PNG, "image/png")
    );
    let (s, thumb_bytes, ctype) = download(&bob, &thumb).await?;
    assert_eq!((s, ctype.as_str()), (200, "image/png"));
    assert!(thumb_bytes.starts_with(&PNG[..8]));
    // Carol is not in the conversation.
    assert_eq!(download(&carol, &id).await?.0, 404);
    // Nor can she reference alice's file in her own message.
    let (s, _) = carol
        .post(
            "/v1/messages",
            &json!({"to": {"user": bob.id}, "client_msg_id": "c1", "body": {"file": {"id": id}}}),
        )
        .await?;
    assert_eq!(s, 400);
    // But bob, who can see it, may forward it.
    let (s, _) = bob.post("/v1/messages", &json!({"to": {"user": carol.id}, "client_msg_id": "b1", "body": {"image": {"id": id}}})).await?;
    assert_eq!(s, 201);
    assert_eq!(download(&carol, &id).await?.0, 200);

    // Path tricks never reach the file system.
    for bad in [
        "..%2F..%2Fetc%2Fpasswd",
        "../../etc/passwd",
        "ZZZZ",
        "0123456789abcdef0123456789abcdeF",
    ] {
        assert_eq!(download(&alice, bad).await?.0, 404, "{bad}");
    }
    Ok(())
}

#[tokio::test]
async fn uploads_are_limited_and_unreferenced_ones_cleaned() -> Result<()> {
    let server = TestServer::start_with(&["--max-upload-mb", "1"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let (s, body) = upload(
        &alice,
        "big.bin",
        vec![7u8; 2 * 1024 * 1024],
        "application/octet-stream",
    )
    .await?;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (s, small) = upload(&alice, "notes.txt", b"plain text".to_vec(), "text/plain").await?;
    assert_eq!(s, 201);
    assert_eq!(
        small["content_type"], "application/octet-stream",
        "unknown bytes are not trusted as text/html or similar"
    );
    let (_, kept) = upload(
        &alice,
        "kept.bin",
        b"referenced".to_vec(),
        "application/octet-stream",
    )
    .await?;
    alice.post("/v1/messages", &json!({"to": {"user": bob.id}, "client_msg_id": "k", "body": {"file": {"id": kept["id"]}}})).await?;
    // Nothing is left behind by the refused upload: only the two blobs.
    let blobs = files_under(&server.data_dir().join("files"));
    assert_eq!(blobs.len(), 2, "{blobs:?}");

    let token = std::fs::read_to_string(server.data_dir().join("admin.token"))?;
    let res = server
        .http_client
        .post(server.url("/admin/files/cleanup"))
        .bearer_auth(token.trim())
        .json(&json!({"older_than_secs": 0}))
        .send()
        .await?;
    let cleaned: Value = res.json().await?;
    assert_eq!(cleaned["deleted"], 1);
    assert_eq!(
        download(&alice, small["id"].as_str().unwrap_or_default())
            .await?
            .0,
        404
    );
    assert_eq!(
        download(&bob, kept["id"].as_str().unwrap_or_default())
            .await?
            .0,
        200
    );
    assert_eq!(files_under(&server.data_dir().join("files")).len(), 1);
    Ok(())
}

//! Files, names and edits that could mislead or exhaust.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use mqchat_e2e::{eventually, files_under, TestServer, TestUser, PNG_1X1};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ------------------------------------------------------------------ helpers

const PNG: &[u8] = PNG_1X1;

/// A page that runs a script if a browser renders it.
const HTML: &[u8] = b"<!DOCTYPE html><html><body><script>fetch('/v1/me')</script></body></html>";

/// An upload's answer: status, `Retry-After`, JSON body.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

async fn upload(user: &TestUser, name: &str, bytes: Vec<u8>) -> Result<Answer> {
    let res = user
        .request(reqwest::Method::POST, "/v1/files")
        .query(&[("name", name)])
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await?;
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = res.json().await.unwrap_or(Value::Null);
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// Uploads and returns the file's id (fails unless 201).
async fn uploaded(user: &TestUser, name: &str, bytes: Vec<u8>) -> Result<String> {
    let a = upload(user, name, bytes).await?;
    if a.status != 201 {
        bail!("upload {name}: {} {}", a.status, a.body);
    }
    Ok(a.body["id"].as_str().unwrap_or_default().to_owned())
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// Temporary upload files in the server's files directory.
fn partial_uploads(server: &TestServer) -> Vec<PathBuf> {
    files_under(&server.data_dir().join("files"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("upload-"))
        })
        .collect()
}

/// Bits written least significant first, as deflate packs them.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u64, bits: u32) {
        self.acc |= value << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code: its bits go most significant first.
    fn code(&mut self, code: u32, len: u32) {
        self.put(u64::from(code.reverse_bits() >> (32 - len)), len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for b in parts.iter().flat_map(|p| p.iter()) {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// A PNG of `w`×`h` black 16-bit RGB pixels: small compressed, `w`×`h`×6
/// bytes decoded (the decompression bomb of the issue is 6300×6300). The
/// zlib stream is written by hand: one fixed-Huffman deflate block of
/// 258-byte back-references to the zero before them. `tag` makes the bytes
/// (and so the stored blob) differ.
fn png_of_zeros(w: u32, h: u32, tag: &str) -> Vec<u8> {
    let raw = u64::from(h) * (1 + u64::from(w) * 6);
    let mut bits = Bits::default();
    bits.put(1, 1); // last block
    bits.put(1, 2); // fixed Huffman codes
    bits.code(0x30, 8); // literal 0
    let mut left = raw - 1;
    while left >= 258 {
        bits.code(0xC5, 8); // length 258 (symbol 285)
        bits.code(0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        bits.code(0x30, 8);
    }
    bits.code(0, 7); // end of block
    let mut zlib = vec![0x78, 0x01];
    zlib.extend(bits.finish());
    let adler = ((raw % 65_521) << 16) | 1;
    zlib.extend_from_slice(&(adler as u32).to_be_bytes());

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[16, 2, 0, 0, 0]); // 16-bit RGB
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"tEXt", format!("Comment\0{tag}").as_bytes());
    chunk(&mut png, b"IDAT", &zlib);
    chunk(&mut png, b"IEND", &[]);
    png
}

// ------------------------------------------------------------ item 4: decoding

/// Decompression bombs uploaded in parallel: each decodes to 238 MB, more
/// than the whole decode budget (192 MiB by default), so none is decoded;
/// they are stored without a thumbnail. Images that fit still get theirs,
/// and chatd's peak memory grows by less than the budget.
#[tokio::test]
async fn parallel_thumbnail_bombs_keep_memory_within_the_decode_budget() -> Result<()> {
    const BUDGET: u64 = 192 * 1024 * 1024;
    let server = TestServer::start().await?;
    let eve = server.user("eve").await?;
    let before = server.peak_rss_bytes()?;

    let started = Instant::now();
    let mut uploads = Vec::new();
    for i in 0..8 {
        let eve = eve.clone();
        let bomb = png_of_zeros(6300, 6300, &format!("bomb {i}"));
        uploads.push(tokio::spawn(async move {
            upload(&eve, &format!("bomb{i}.png"), bomb).await
        }));
    }
    for i in 0..4 {
        let eve = eve.clone();
        let photo = png_of_zeros(1500, 1000, &format!("photo {i}"));
        uploads.push(tokio::spawn(async move {
            upload(&eve, &format!("photo{i}.png"), photo).await
        }));
    }
    let mut answers = Vec::new();
    for u in uploads {
        answers.push(u.await?);
    }
    let elapsed = started.elapsed();
    let peak = server.peak_rss_bytes()?;
    let grew = peak.saturating_sub(before);
    eprintln!(
        "8 bombs (6300x6300x16-bit RGB, {} KB each) and 4 photos (1500x1000x16-bit) in parallel: \
         {elapsed:?}; peak RSS {} MiB -> {} MiB (+{} MiB)",
        png_of_zeros(6300, 6300, "bomb 0").len() / 1000,
        before >> 20,
        peak >> 20,
        grew >> 20
    );
    assert!(
        grew < BUDGET,
        "peak RSS grew by {} MiB, more than the {} MiB decode budget",
        grew >> 20,
        BUDGET >> 20
    );
    for (i, a) in answers.into_iter().enumerate() {
        let a = a?;
        assert_eq!(a.status, 201, "upload {i}: {}", a.body);
        assert_eq!(a.body["content_type"], "image/png", "upload {i}");
        if i < 8 {
            assert!(
                a.body["thumbnail_id"].is_null(),
                "a bomb got a thumbnail: {}",
                a.body
            );
        } else {
            assert!(
                a.body["thumbnail_id"].is_string() && a.body["width"] == 1500,
                "an image within the budget got no thumbnail: {}",
                a.body
            );
        }
    }
    Ok(())
}

// ------------------------------------------------------------- item 6: quotas

/// The daily quota: 429 `upload_quota_exceeded` with a Retry-After within
/// the day; parallel uploads can't overshoot it; other users are not
/// affected; refused uploads leave no file behind.
#[tokio::test]
async fn the_daily_upload_quota_is_answered_429_with_retry_after() -> Result<()> {
    let server = TestServer::start_with(&[
        "--upload-quota-daily-mb",
        "1",
        "--upload-quota-total-mb",
        "0",
    ])
    .await?;
    let eve = server.user("eve").await?;
    let bob = server.user("bob").await?;

    // Four 400 KB uploads at once into a 1 MiB day: two fit, never three.
    let mut parallel = Vec::new();
    for i in 0..4u8 {
        let eve = eve.clone();
        parallel.push(tokio::spawn(async move {
            upload(&eve, &format!("part{i}.bin"), vec![i; 400_000]).await
        }));
    }
    let mut stored = 0;
    for p in parallel {
        let a = p.await??;
        match a.status {
            201 => stored += 1,
            429 => {
                assert_eq!(code(&a.body), "upload_quota_exceeded", "{}", a.body);
                assert!(
                    a.retry_after.is_some_and(|s| (1..=86_400).contains(&s)),
                    "Retry-After {:?}",
                    a.retry_after
                );
            }
            s => bail!("parallel upload: {s} {}", a.body),
        }
    }
    assert!(
        (1..=2).contains(&stored),
        "{stored} uploads of 400 KB were stored under a 1 MiB quota"
    );
    // What doesn't fit in what is left is refused.
    let a = upload(&eve, "more.bin", vec![9; 700_000]).await?;
    assert_eq!(
        (a.status, code(&a.body)),
        (429, "upload_quota_exceeded"),
        "{}",
        a.body
    );
    assert!(a.retry_after.is_some_and(|s| (1..=86_400).contains(&s)));
    // Bob has his own quota.
    uploaded(&bob, "bob.bin", vec![200; 400_000]).await?;
    assert_eq!(partial_uploads(&server), Vec::<PathBuf>::new());
    let blobs = files_under(&server.data_dir().join("files")).len();
    assert_eq!(blobs, stored + 1, "only stored uploads are on disk");
    Ok(())
}

/// The total quota: 413 `upload_quota_exceeded`, no Retry-After (waiting
/// frees nothing); room comes back when unreferenced uploads are cleaned.
#[tokio::test]
async fn the_total_upload_quota_is_answered_413_until_uploads_are_cleaned() -> Result<()> {
    let server = TestServer::start_with(&[
        "--upload-quota-total-mb",
        "1",
        "--upload-quota-daily-mb",
        "0",
    ])
    .await?;
    let eve = server.user("eve").await?;
    uploaded(&eve, "a.bin", vec![1; 600_000]).await?;
    // Over the quota while it streams: refused once the quota is reached.
    let a = upload(&eve, "b.bin", vec![2; 600_000]).await?;
    assert_eq!(
        (a.status, code(&a.body), a.retry_after),
        (413, "upload_quota_exceeded", None),
        "{}",
        a.body
    );
    assert_eq!(partial_uploads(&server), Vec::<PathBuf>::new());
    let (s, cleaned) = server
        .admin_post("/admin/files/cleanup", json!({"older_than_secs": 0}))
        .await?;
    assert_eq!((s, cleaned["deleted"].as_u64()), (200, Some(1)));
    uploaded(&eve, "b.bin", vec![2; 600_000]).await?;
    Ok(())
}

/// An upload that stalls until the request timeout (30 s) cuts it leaves
/// no temporary file; nor does a client that hangs up mid-upload; and
/// partial uploads left by a crash are swept when chatd starts.
#[tokio::test]
async fn stalled_and_abandoned_uploads_leave_nothing_behind() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let mut server = TestServer::start_in(&data, &[]).await?;
    let eve = server.user("eve").await?;
    let head = format!(
        "POST /v1/files?name=stall.bin HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        server.http,
        eve.access_token,
        1 << 20
    );
    let partial_upload_appears = || async {
        eventually(Duration::from_secs(5), || async {
            Ok((!partial_uploads(&server).is_empty()).then_some(()))
        })
        .await
    };

    // Hangs up halfway.
    let mut gone = tokio::net::TcpStream::connect(server.http).await?;
    gone.write_all(head.as_bytes()).await?;
    gone.write_all(&vec![7u8; 256 * 1024]).await?;
    partial_upload_appears().await?;
    drop(gone);
    eventually(Duration::from_secs(5), || async {
        Ok(partial_uploads(&server).is_empty().then_some(()))
    })
    .await
    .map_err(|_| anyhow!("an abandoned upload left {:?}", partial_uploads(&server)))?;

    // Stalls: sends a part, then nothing, keeping the connection open.
    let mut stalled = tokio::net::TcpStream::connect(server.http).await?;
    stalled.write_all(head.as_bytes()).await?;
    stalled.write_all(&vec![7u8; 256 * 1024]).await?;
    partial_upload_appears().await?;
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(45), stalled.read(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {:?}: {answer}",
        started.elapsed()
    );
    eventually(Duration::from_secs(5), || async {
        Ok(partial_uploads(&server).is_empty().then_some(()))
    })
    .await
    .map_err(|_| anyhow!("a timed-out upload left {:?}", partial_uploads(&server)))?;

    // A crash leaves one: the next start sweeps it.
    server.kill9().await?;
    let leftover = data.join("files/upload-0123456789abcdef0123456789abcdef");
    std::fs::write(&leftover, vec![0u8; 4096])?;
    let _server = TestServer::start_in(&data, &[]).await?;
    eventually(Duration::from_secs(5), || async {
        Ok((!leftover.exists()).then_some(()))
    })
    .await
    .map_err(|_| anyhow!("a partial upload left before start was not swept"))?;
    Ok(())
}

// -------------------------------------------------------------- item 9: edits

/// An edit passes exactly the checks a send passes: no `notice` (reserved
/// for services), no `system`, no file the editor can't see, no `image`
/// that isn't one. Bob never sees a forged notice.
#[tokio::test]
async fn an_edit_can_not_carry_what_a_send_may_not() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let carol = server.user("carol").await?;
    let (s, sent) = alice.send_text(bob.id, "e1", "hello").await?;
    assert_eq!(s, 201, "{sent}");
    let path = format!("/v1/messages/{}", sent["id"]);

    let notice = json!({"text": "hello", "notice": {"title": "Security alert", "text": "log in at evil.example"}});
    let (s, m) = alice
        .post(
            "/v1/messages",
            &json!({"to": {"user": bob.id}, "client_msg_id": "n1", "body": notice}),
        )
        .await?;
    assert_eq!(s, 400, "a send with notice: {m}");

    let carols = uploaded(&carol, "secret.png", PNG.to_vec()).await?;
    let html = uploaded(&alice, "page.html", HTML.to_vec()).await?;
    for (what, body) in [
        ("notice", notice.clone()),
        (
            "system",
            json!({"text": "hello", "system": {"event": "joined"}}),
        ),
        (
            "someone else's file",
            json!({"text": "hello", "file": {"id": carols}}),
        ),
        (
            "an image that is HTML",
            json!({"text": "hello", "image": {"id": html}}),
        ),
    ] {
        let (s, m) = alice.patch(&path, &json!({"body": body})).await?;
        assert_eq!(
            (s, code(&m)),
            (400, "invalid_request"),
            "an edit adding {what}: {m}"
        );
    }
    // A plain edit still works.
    let (s, m) = alice
        .patch(&path, &json!({"body": {"text": "hello again"}}))
        .await?;
    assert_eq!(s, 200, "{m}");
    let events = bob.sync_all(0).await?;
    let forged = events
        .iter()
        .filter(|e| !e["message"]["body"]["notice"].is_null())
        .count();
    assert_eq!(forged, 0, "bob sees a notice: {events:?}");
    Ok(())
}

// -------------------------------------------------------------- item 13: names

/// Display names, group names and file names refuse characters that draw
/// nothing or reorder what follows; real names in any script and emoji
/// pass; usernames stay ASCII.
#[tokio::test]
async fn names_can_not_hide_or_reorder_characters() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    alice.befriend(&bob).await?;

    let hidden = [
        "bob\u{200B}",
        "\u{202E}bob",
        "b\u{2066}ob\u{2069}",
        "\u{FEFF}bob",
        "bo\u{00AD}b",
        "bob\u{061C}",
        "b\u{2060}ob",
        "\u{3164}",
        "b\u{200D}ob",
    ];
    for name in hidden {
        let (s, m) = alice
            .patch("/v1/me", &json!({"display_name": name}))
            .await?;
        assert_eq!(
            (s, code(&m)),
            (400, "invalid_request"),
            "display name {name:?}: {m}"
        );
        let (s, m) = alice
            .post("/v1/groups", &json!({"name": name, "members": [bob.id]}))
            .await?;
        assert_eq!(s, 400, "group name {name:?}: {m}");
        let a = upload(&alice, &format!("{name}.png"), PNG.to_vec()).await?;
        assert_eq!(a.status, 400, "file name {name:?}: {}", a.body);
        let res = server
            .http_client
            .post(server.url("/v1/auth/register"))
            .json(&json!({"username": name, "password": "long enough password"}))
            .send()
            .await?;
        assert_eq!(res.status(), 400, "username {name:?}");
    }
    // A file name that reverses its extension: "evil\u{202E}gnp.exe" shows
    // as "evilexe.png".
    let a = upload(&alice, "evil\u{202E}gnp.exe", PNG.to_vec()).await?;
    assert_eq!(a.status, 400, "{}", a.body);

    let (s, group) = alice
        .post("/v1/groups", &json!({"name": "team", "members": [bob.id]}))
        .await?;
    assert_eq!(s, 201, "{group}");
    let (s, m) = alice
        .patch(
            &format!("/v1/groups/{}", group["id"]),
            &json!({"name": "\u{202E}maet"}),
        )
        .await?;
    assert_eq!(s, 400, "rename to a bidi override: {m}");

    for name in [
        "Zoë Ångström",
        "محمد علي",
        "李小龍",
        "👩\u{200D}💻 Alice",
        "❤\u{FE0F} Alice",
    ] {
        let (s, m) = alice
            .patch("/v1/me", &json!({"display_name": name}))
            .await?;
        assert_eq!(s, 200, "display name {name:?}: {m}");
        assert_eq!(m["display_name"], name);
    }
    Ok(())
}

// ------------------------------------------------- item 14: how files are shown

/// The sniffed type, not the sender, decides how a file is shown: an
/// `image` reference to HTML is refused; HTML downloads as a sandboxed
/// attachment; images download inline, sandboxed too; the web client's
/// page comes with a CSP (no inline script but its own, by hash), no
/// framing, no referrer, no sniffing.
#[tokio::test]
async fn the_server_decides_how_a_file_is_shown() -> Result<()> {
    let server = TestServer::start().await?;
    let eve = server.user("eve").await?;
    let bob = server.user("bob").await?;
    let html = upload(&eve, "cat.png", HTML.to_vec()).await?;
    assert_eq!(html.status, 201, "{}", html.body);
    assert_eq!(html.body["content_type"], "text/html");
    let html_id = html.body["id"].as_str().unwrap_or_default().to_owned();

    let (s, m) = eve
        .post(
            "/v1/messages",
            &json!({"to": {"user": bob.id}, "client_msg_id": "x1", "body": {"image": {"id": html_id, "name": "cat.png"}}}),
        )
        .await?;
    assert_eq!(
        (s, code(&m)),
        (400, "invalid_request"),
        "HTML sent as an image: {m}"
    );
    let (s, m) = eve
        .post(
            "/v1/messages",
            &json!({"to": {"user": bob.id}, "client_msg_id": "x2", "body": {"file": {"id": html_id, "name": "cat.html"}}}),
        )
        .await?;
    assert_eq!(s, 201, "HTML sent as a file: {m}");
    let res = bob
        .request(reqwest::Method::GET, &format!("/v1/files/{html_id}"))
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    let header = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header(&res, "content-disposition").starts_with("attachment"));
    let csp = header(&res, "content-security-policy");
    assert!(
        csp.contains("sandbox") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");

    let png = uploaded(&eve, "dot.png", PNG.to_vec()).await?;
    let (s, m) = eve
        .post(
            "/v1/messages",
            &json!({"to": {"user": bob.id}, "client_msg_id": "x3", "body": {"image": {"id": png}}}),
        )
        .await?;
    assert_eq!(s, 201, "a PNG sent as an image: {m}");
    let res = bob
        .request(reqwest::Method::GET, &format!("/v1/files/{png}"))
        .send()
        .await?;
    assert_eq!(header(&res, "content-type"), "image/png");
    assert!(header(&res, "content-disposition").starts_with("inline"));
    assert!(header(&res, "content-security-policy").contains("sandbox"));
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");

    let res = server.http_client.get(server.url("/")).send().await?;
    let csp = header(&res, "content-security-policy");
    let frame = header(&res, "x-frame-options");
    let referrer = header(&res, "referrer-policy");
    let nosniff = header(&res, "x-content-type-options");
    let page = res.text().await?;
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let script_src = csp
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .unwrap_or_default();
    let inline_scripts =
        page.matches("<script>").count() + page.matches("<script type=\"module\">").count();
    assert_eq!(
        script_src.matches("'sha256-").count(),
        inline_scripts,
        "one hash per inline script: {script_src}"
    );
    assert!(csp.contains(&format!("ws://{}", server.http)), "{csp}");
    assert_eq!(
        (frame.as_str(), referrer.as_str(), nosniff.as_str()),
        ("DENY", "no-referrer", "nosniff")
    );
    Ok(())
}

/// A JSON body with a key twice is refused (400 `malformed_json`) at any
/// depth, for every body: serde keeps the last value, other readers the
/// first, so one body could say two things.
#[tokio::test]
async fn duplicate_json_keys_are_refused() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let raw = |path: &str, body: String| {
        alice
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body)
    };
    let to = bob.id;
    for body in [
        format!(
            r#"{{"to": {{"user": {to}}}, "client_msg_id": "d1", "body": {{"text": "hi", "text": "bye"}}}}"#
        ),
        format!(
            r#"{{"to": {{"user": {to}}}, "client_msg_id": "d2", "client_msg_id": "d3", "body": {{"text": "hi"}}}}"#
        ),
        format!(
            r#"{{"to": {{"user": {to}, "user": 1}}, "client_msg_id": "d4", "body": {{"text": "hi"}}}}"#
        ),
    ] {
        let res = raw("/v1/messages", body.clone()).send().await?;
        let status = res.status().as_u16();
        let m: Value = res.json().await?;
        assert_eq!((status, code(&m)), (400, "malformed_json"), "{body}: {m}");
    }
    let batch = format!(
        r#"{{"messages": [{{"to": {{"user": {to}}}, "client_msg_id": "b1", "body": {{"text": "a", "text": "b"}}}}]}}"#
    );
    let res = raw("/v1/messages/batch", batch).send().await?;
    assert_eq!(res.status(), 400);
    let res = server
        .http_client
        .post(server.url("/v1/auth/register"))
        .header("content-type", "application/json")
        .body(r#"{"username": "mallory", "username": "mallory2", "password": "long enough password"}"#)
        .send()
        .await?;
    assert_eq!(res.status(), 400);
    // The MQTT uplink reads sends the same way.
    let mut mqtt = server.mqtt(&alice).await?;
    let up = format!("users/{}/up/messages", alice.id);
    let dup = format!(
        r#"{{"to": {{"user": {to}}}, "client_msg_id": "m1", "body": {{"text": "a", "text": "b"}}}}"#
    );
    mqtt.client
        .publish(&up, rumqttc::QoS::AtLeastOnce, false, dup)
        .await?;
    let reply = mqtt
        .next_on("replies", Duration::from_secs(5))
        .await?
        .ok_or_else(|| anyhow!("no reply to the uplink send"))?;
    assert_eq!(
        (reply["status"].as_u64(), reply["error"]["code"].as_str()),
        (Some(400), Some("malformed_json")),
        "{reply}"
    );
    // Nothing was stored; ordinary bodies still are.
    assert_eq!(bob.synced_message_ids().await?.len(), 0);
    let (s, m) = alice.send_text(bob.id, "ok", "hi").await?;
    assert_eq!(s, 201, "{m}");
    Ok(())
}

//! Storage faults: a full disk, a data dir that turns read-only, a database
//! locked by another process. Sends get a clear 503 (never a 500), nothing
//! acknowledged is lost, reads keep working, and the server recovers.
//!
//! The disk tests mount file systems (tmpfs; ext4 on a loop device), so they
//! need root. Outside CI a machine that can't mount skips them with a note;
//! in CI (`CI=true`) that is a failure. Every mount is undone by a guard,
//! also when a test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mqchat_e2e::{chatd_bin, eventually, TestServer, TestUser};
use serde_json::{json, Value};

const SERVER_FLAGS: &[&str] = &["--send-rate", "0", "--auth-ip-rate", "0"];

/// A mounted file system, unmounted on drop (lazily if still busy, e.g.
/// when a failing test left chatd running).
struct Mounted {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Runs a command; an error carries its stderr.
fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("run {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Outside CI, a machine where this test can't mount skips it; in CI that
/// is an error (CI runs as root).
fn cannot_mount(why: anyhow::Error) -> Result<Option<Mounted>> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return Err(why.context("mounting is required in CI (run as root)"));
    }
    eprintln!("SKIPPED: can't mount here: {why:#}");
    Ok(None)
}

/// A tmpfs of `size` (e.g. "16m") on a fresh directory.
fn mount_tmpfs(size: &str) -> Result<Option<Mounted>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir)?;
    let opts = format!("size={size},mode=0755");
    match run(
        "mount",
        &["-t", "tmpfs", "-o", &opts, "tmpfs", path_str(&dir)?],
    ) {
        Ok(_) => Ok(Some(Mounted { dir, _tmp: tmp })),
        Err(e) => cannot_mount(e),
    }
}

/// An ext4 file system in an image file on a loop device, mounted with
/// `errors=remount-ro`: the way a server's data dir turns read-only under
/// a running process (Linux refuses `mount -o remount,ro` while a file on
/// it is open for writing, and SQLite keeps its files open).
struct Ext4 {
    mounted: Option<Mounted>,
    image: PathBuf,
    _image_dir: tempfile::TempDir,
}

impl Ext4 {
    fn create(size_mib: u64) -> Result<Option<Ext4>> {
        let image_dir = tempfile::tempdir()?;
        let image = image_dir.path().join("fs.img");
        std::fs::File::create(&image)?.set_len(size_mib << 20)?;
        if let Err(e) = run("mkfs.ext4", &["-q", "-F", path_str(&image)?]) {
            return cannot_mount(e).map(|_| None);
        }
        let mut fs = Ext4 {
            mounted: None,
            image,
            _image_dir: image_dir,
        };
        match fs.mount() {
            Ok(()) => Ok(Some(fs)),
            Err(e) => cannot_mount(e).map(|_| None),
        }
    }

    fn mount(&mut self) -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("mnt");
        std::fs::create_dir(&dir)?;
        run(
            "mount",
            &[
                "-o",
                "loop,errors=remount-ro",
                path_str(&self.image)?,
                path_str(&dir)?,
            ],
        )?;
        self.mounted = Some(Mounted { dir, _tmp: tmp });
        Ok(())
    }

    fn dir(&self) -> Result<&Path> {
        Ok(&self
            .mounted
            .as_ref()
            .ok_or_else(|| anyhow!("not mounted"))?
            .dir)
    }

    /// Makes ext4 report an error, which (`errors=remount-ro`) turns the
    /// file system read-only at once, open files included.
    fn fail(&self) -> Result<()> {
        let source = run("findmnt", &["-n", "-o", "SOURCE", path_str(self.dir()?)?])?;
        let dev = Path::new(source.trim())
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("no device for {source}"))?
            .to_owned();
        std::fs::write(format!("/sys/fs/ext4/{dev}/trigger_fs_error"), "test")
            .with_context(|| format!("trigger an ext4 error on {dev}"))?;
        Ok(())
    }

    /// Unmounts, repairs (replays the aborted journal) and mounts again.
    fn repair(&mut self) -> Result<()> {
        let mounted = self.mounted.take();
        drop(mounted);
        let out = Command::new("e2fsck")
            .args(["-f", "-y", path_str(&self.image)?])
            .output()?;
        // 0: clean, 1: errors corrected.
        if !matches!(out.status.code(), Some(0 | 1)) {
            bail!(
                "e2fsck: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            );
        }
        self.mount()
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))
}

/// An answer's status, `Retry-After` header and JSON body.
type Answer = (u16, Option<String>, Value);

async fn answer(request: reqwest::RequestBuilder) -> Result<Answer> {
    let res = request.send().await?;
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = res.text().await?;
    Ok((
        status,
        retry_after,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

async fn send(user: &TestUser, to: u64, id: &str, body: &Value) -> Result<Answer> {
    answer(
        user.request(reqwest::Method::POST, "/v1/messages")
            .json(&json!({"to": {"user": to}, "client_msg_id": id, "body": body})),
    )
    .await
}

/// Uploads `size` bytes as an attachment.
async fn upload(user: &TestUser, size: usize) -> Result<Answer> {
    let bytes: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
    answer(
        user.request(reqwest::Method::POST, "/v1/files?name=data.bin")
            .header("content-type", "application/octet-stream")
            .body(bytes),
    )
    .await
}

/// A 503 must be the documented error: JSON code `unavailable` and a
/// `Retry-After`.
fn assert_unavailable(what: &str, retry_after: &Option<String>, body: &Value) {
    assert_eq!(
        body["error"]["code"], "unavailable",
        "{what}: 503 without the unavailable code: {body}"
    );
    let secs: Option<u64> = retry_after.as_deref().and_then(|v| v.parse().ok());
    assert!(
        secs.is_some_and(|s| s >= 1),
        "{what}: 503 without a Retry-After: {retry_after:?}"
    );
}

fn text_body(text: &str) -> Value {
    json!({"text": text})
}

/// A body near the 16 KiB limit.
fn big_body(i: usize) -> Value {
    json!({"text": format!("{i} {}", "x".repeat(3990)), "pad": "p".repeat(11_000)})
}

/// What the recipient can read: message id per `client_msg_id`, checking
/// that cursors run 1..=n with no gap and no message appears twice.
async fn inbox(user: &TestUser) -> Result<BTreeMap<String, u64>> {
    let events = user.sync_all(0).await?;
    let mut by_client_id = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["cursor"].as_u64(),
            Some(i as u64 + 1),
            "inbox cursors are not gap-free at {i}: {e}"
        );
        if e["type"] == "message.created" {
            let m = &e["message"];
            let cid = m["client_msg_id"]
                .as_str()
                .ok_or_else(|| anyhow!("no client_msg_id in {m}"))?
                .to_owned();
            let id = m["id"].as_u64().ok_or_else(|| anyhow!("no id in {m}"))?;
            if by_client_id.insert(cid.clone(), id).is_some() {
                bail!("{cid} is in the inbox twice");
            }
        }
    }
    Ok(by_client_id)
}

/// Every acknowledged send is in `user`'s inbox exactly once, with the
/// acknowledged id; nothing else is there except the `allowed_extra` ids.
async fn assert_all_acknowledged_present(
    user: &TestUser,
    acked: &BTreeMap<String, u64>,
    allowed_extra: &BTreeSet<String>,
) -> Result<()> {
    let seen = inbox(user).await?;
    for (cid, id) in acked {
        assert_eq!(seen.get(cid), Some(id), "acknowledged {cid} (id {id}) lost");
    }
    for cid in seen.keys() {
        assert!(
            acked.contains_key(cid) || allowed_extra.contains(cid),
            "{cid} stored but never acknowledged nor retried"
        );
    }
    Ok(())
}

/// chatd on `dir` with alice and bob, and 20 messages from alice to bob
/// acknowledged (message id by `client_msg_id`).
async fn start_with_messages(
    dir: &Path,
) -> Result<(TestServer, TestUser, TestUser, BTreeMap<String, u64>)> {
    let server = TestServer::start_in(dir, SERVER_FLAGS).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut acked = BTreeMap::new();
    for i in 0..20 {
        let cid = format!("before-{i}");
        let (s, _, m) = send(&alice, bob.id, &cid, &text_body("before the fault")).await?;
        assert_eq!(s, 201, "{m}");
        acked.insert(cid, m["id"].as_u64().unwrap_or(0));
    }
    Ok((server, alice, bob, acked))
}

fn integrity_check(db: &Path) -> Result<()> {
    let conn = rusqlite::Connection::open(db)?;
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(check, "ok", "integrity check of {}", db.display());
    Ok(())
}

/// Fills the file system holding `path` with one file, to the last byte.
fn fill(path: &Path) -> Result<u64> {
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0xA5u8; 1 << 20];
    let mut written = 0u64;
    for size in [1 << 20, 4096, 1] {
        loop {
            match f.write(&chunk[..size]) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(written)
}

#[tokio::test]
async fn a_full_disk_turns_sends_into_503_and_sends_resume_when_space_returns() -> Result<()> {
    if mqchat_e2e::postgres::skip_unless_sqlite("a storage fault under chat.db") {
        return Ok(());
    }
    let Some(fs) = mount_tmpfs("24m")? else {
        return Ok(());
    };
    let dir = fs.dir.join("data");
    let (mut server, alice, bob, mut acked) = start_with_messages(&dir).await?;

    let filler = fs.dir.join("filler");
    let filled = fill(&filler)?;
    eprintln!("filler: {} MiB", filled >> 20);

    // The WAL may still have room it wrote before; big sends use it up.
    let mut refused = Vec::new();
    let mut sent_while_full = 0;
    for i in 0..3000 {
        let cid = format!("full-{i}");
        let (s, retry_after, m) = send(&alice, bob.id, &cid, &big_body(i)).await?;
        match s {
            201 => {
                sent_while_full += 1;
                acked.insert(cid, m["id"].as_u64().unwrap_or(0));
            }
            503 => {
                assert_unavailable(&cid, &retry_after, &m);
                refused.push(cid);
                break;
            }
            other => bail!("send {cid} on a full disk: {other} {m}"),
        }
    }
    assert!(
        !refused.is_empty(),
        "3000 big sends on a full disk all succeeded"
    );
    eprintln!("full disk: {sent_while_full} big sends fit before the first 503");
    // Still full: a small send may fit in space SQLite already holds (a
    // WAL that started over); each is kept or refused the same way, and the
    // room runs out soon.
    let mut small_refused = 0;
    for i in 0..500 {
        let cid = format!("still-full-{i}");
        let (s, retry_after, m) = send(&alice, bob.id, &cid, &text_body("small")).await?;
        match s {
            201 => {
                acked.insert(cid, m["id"].as_u64().unwrap_or(0));
            }
            503 => {
                assert_unavailable(&cid, &retry_after, &m);
                refused.push(cid);
                small_refused += 1;
                if small_refused == 3 {
                    break;
                }
            }
            other => bail!("send {cid} on a full disk: {other} {m}"),
        }
    }
    assert_eq!(small_refused, 3, "small sends kept fitting on a full disk");

    // An attachment can't be stored either: the same 503.
    let (s, retry_after, m) = upload(&alice, 256 * 1024).await?;
    assert_eq!(s, 503, "upload on a full disk: {m}");
    assert_unavailable("upload", &retry_after, &m);

    // Reads work on a full disk.
    server.health().await?;
    let no_extra = BTreeSet::new();
    assert_all_acknowledged_present(&bob, &acked, &no_extra).await?;
    let (s, convs) = bob.get("/v1/conversations").await?;
    assert_eq!(s, 200, "{convs}");

    // Space returns: sends succeed again, no restart.
    std::fs::remove_file(&filler)?;
    let started = Instant::now();
    let (cid, id) = eventually(Duration::from_secs(20), || async {
        let cid = format!("after-{}", started.elapsed().as_micros());
        let (s, _, m) = send(&alice, bob.id, &cid, &text_body("space is back")).await?;
        match s {
            201 => Ok(Some((cid, m["id"].as_u64().unwrap_or(0)))),
            503 => Ok(None),
            other => bail!("send after freeing space: {other} {m}"),
        }
    })
    .await?;
    eprintln!(
        "sends resumed {:?} after the filler was deleted",
        started.elapsed()
    );
    let (s, _, m) = upload(&alice, 256 * 1024).await?;
    assert_eq!(s, 201, "upload once space is back: {m}");
    acked.insert(cid, id);
    // The refused sends, retried with their ids, are stored once.
    for cid in &refused {
        let (s, _, m) = send(&alice, bob.id, cid, &text_body("retried")).await?;
        assert!(s == 201 || s == 200, "retry of {cid}: {s} {m}");
        acked.insert(cid.clone(), m["id"].as_u64().unwrap_or(0));
    }
    for i in 0..20 {
        let cid = format!("later-{i}");
        let (s, _, m) = send(&alice, bob.id, &cid, &big_body(i)).await?;
        assert_eq!(s, 201, "{m}");
        acked.insert(cid, m["id"].as_u64().unwrap_or(0));
    }
    assert_all_acknowledged_present(&bob, &acked, &no_extra).await?;

    // And all of it survives a restart.
    let status = server.terminate().await?;
    assert!(status.success(), "chatd exit status {status}");
    integrity_check(&dir.join("chat.db"))?;
    let server = TestServer::start_in(&dir, SERVER_FLAGS).await?;
    let bob = server.login("bob", "password-bob").await?;
    assert_all_acknowledged_present(&bob, &acked, &no_extra).await?;
    eprintln!(
        "full disk: {} acknowledged sends, all present once after recovery and restart",
        acked.len()
    );
    drop(server);
    drop(fs);
    Ok(())
}

#[tokio::test]
async fn a_data_dir_that_turns_read_only_refuses_sends_with_503_and_keeps_serving_reads(
) -> Result<()> {
    if mqchat_e2e::postgres::skip_unless_sqlite("a storage fault under chat.db") {
        return Ok(());
    }
    let Some(mut fs) = Ext4::create(64)? else {
        return Ok(());
    };
    let dir = fs.dir()?.join("data");
    let (mut server, alice, bob, mut acked) = start_with_messages(&dir).await?;

    fs.fail()?;
    let probe = std::fs::write(fs.dir()?.join("probe"), b"x");
    assert!(
        probe
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ReadOnlyFilesystem),
        "the file system did not turn read-only: {probe:?}"
    );

    let mut refused = BTreeSet::new();
    for i in 0..10 {
        let cid = format!("read-only-{i}");
        let (s, retry_after, m) =
            send(&alice, bob.id, &cid, &text_body("on a read-only disk")).await?;
        assert_eq!(s, 503, "send {cid} on a read-only data dir: {m}");
        assert_unavailable(&cid, &retry_after, &m);
        refused.insert(cid);
    }
    // Other writes too; reads keep working.
    let (s, retry_after, m) = upload(&alice, 64 * 1024).await?;
    assert_eq!(s, 503, "upload on a read-only data dir: {m}");
    assert_unavailable("upload", &retry_after, &m);
    let (s, m) = bob
        .post("/v1/friends/requests", &json!({"user_id": alice.id}))
        .await?;
    assert_eq!(s, 503, "{m}");
    server.health().await?;
    let no_extra = BTreeSet::new();
    assert_all_acknowledged_present(&bob, &acked, &no_extra).await?;
    let (s, convs) = alice.get("/v1/conversations").await?;
    assert_eq!(s, 200, "{convs}");
    let conv = convs["conversations"][0]["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("no conversation in {convs}"))?;
    let (s, history) = alice
        .get(&format!("/v1/conversations/{conv}/messages?limit=50"))
        .await?;
    assert_eq!(s, 200, "{history}");

    // An ext4 that went read-only after an error stays so until it is
    // unmounted and checked: the operator stops chatd, repairs, restarts.
    let stopping = Instant::now();
    let status = server.terminate().await?;
    eprintln!(
        "read-only: chatd stopped in {:?} with {status}",
        stopping.elapsed()
    );
    fs.repair()?;
    let dir = fs.dir()?.join("data");
    integrity_check(&dir.join("chat.db"))?;
    let server = TestServer::start_in(&dir, SERVER_FLAGS).await?;
    let alice = server.login("alice", "password-alice").await?;
    let bob = server.login("bob", "password-bob").await?;
    for cid in &refused {
        let (s, _, m) = send(&alice, bob.id, cid, &text_body("retried")).await?;
        assert_eq!(s, 201, "retry of {cid} after repair: {m}");
        acked.insert(cid.clone(), m["id"].as_u64().unwrap_or(0));
    }
    assert_all_acknowledged_present(&bob, &acked, &no_extra).await?;
    drop(server);
    drop(fs);
    Ok(())
}

#[tokio::test]
async fn starting_on_a_read_only_data_dir_fails_with_a_clear_error() -> Result<()> {
    let Some(fs) = mount_tmpfs("16m")? else {
        return Ok(());
    };
    let dir = fs.dir.join("data");
    let mut server = TestServer::start_in(&dir, &[]).await?;
    server.user("alice").await?;
    assert!(server.terminate().await?.success());
    run("mount", &["-o", "remount,ro", path_str(&fs.dir)?])?;

    for data_dir in [dir.clone(), fs.dir.join("fresh")] {
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::process::Command::new(chatd_bin()?)
                .args([
                    "--http",
                    "127.0.0.1:0",
                    "--mqtt",
                    "127.0.0.1:0",
                    "--data-dir",
                ])
                .arg(&data_dir)
                .env("RUST_LOG", "info")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .map_err(|_| anyhow!("chatd on a read-only data dir kept running"))??;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success(),
            "chatd started on a read-only data dir:\n{stdout}{stderr}"
        );
        assert!(
            stderr.contains(path_str(&data_dir)?) && stderr.contains("Read-only file system"),
            "unclear error for {}:\n{stderr}",
            data_dir.display()
        );
        eprintln!("read-only start: {}", stderr.trim());
    }

    // Made writable again, it starts with everything there.
    run("mount", &["-o", "remount,rw", path_str(&fs.dir)?])?;
    let server = TestServer::start_in(&dir, &[]).await?;
    server.login("alice", "password-alice").await?;
    drop(server);
    drop(fs);
    Ok(())
}

/// Holds SQLite's write lock on `db` from another connection (as a backup
/// tool or an operator's `sqlite3` shell would) for `hold`; resolves once
/// the lock is taken, and returns the handle that ends when it is released.
async fn hold_write_lock(db: &Path, hold: Duration) -> Result<std::thread::JoinHandle<Result<()>>> {
    let db = db.to_owned();
    let (locked_tx, locked) = tokio::sync::oneshot::channel();
    let holder = std::thread::spawn(move || -> Result<()> {
        let conn = rusqlite::Connection::open(&db)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let _ = locked_tx.send(());
        std::thread::sleep(hold);
        conn.execute_batch("COMMIT")?;
        Ok(())
    });
    locked
        .await
        .map_err(|_| anyhow!("the lock holder failed before locking"))?;
    Ok(holder)
}

#[tokio::test]
async fn a_database_locked_by_another_process_is_waited_for_then_503_never_500() -> Result<()> {
    if mqchat_e2e::postgres::skip_unless_sqlite("a storage fault under chat.db") {
        return Ok(());
    }
    let server = TestServer::start_with(SERVER_FLAGS).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let db = server.data_dir().join("chat.db");
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();

    // Held for 3 s, less than the 5 s busy timeout: sends wait and succeed.
    let holder = hold_write_lock(&db, Duration::from_secs(3)).await?;
    let locked_at = Instant::now();
    let sends = (0..10).map(|i| {
        let alice = alice.clone();
        async move {
            let cid = format!("short-{i}");
            let r = send(&alice, bob.id, &cid, &text_body("while locked")).await;
            (cid, r, locked_at.elapsed())
        }
    });
    let read_started = Instant::now();
    let (s, _) = bob.get("/v1/sync?after=0").await?;
    let read_took = read_started.elapsed();
    assert_eq!(s, 200);
    let mut slowest = Duration::ZERO;
    for (cid, r, took) in join_all(sends).await? {
        let (s, _, m) = r?;
        assert_eq!(
            s, 201,
            "send {cid} while the database was locked for 3 s: {m}"
        );
        acked.insert(cid, m["id"].as_u64().unwrap_or(0));
        slowest = slowest.max(took);
    }
    holder.join().map_err(|_| anyhow!("holder panicked"))??;
    eprintln!(
        "locked 3 s: 10 sends all 201, the last after {slowest:?}; a read took {read_took:?}"
    );
    assert!(
        slowest >= Duration::from_millis(2500),
        "sends did not wait for the lock ({slowest:?}): was it held?"
    );
    assert!(
        read_took < Duration::from_secs(2),
        "a read waited for the write lock: {read_took:?}"
    );

    // Held for 8 s, beyond the busy timeout: 503 with Retry-After, never 500.
    let holder = hold_write_lock(&db, Duration::from_secs(8)).await?;
    let sends = (0..10).map(|i| {
        let alice = alice.clone();
        async move {
            let cid = format!("long-{i}");
            let r = send(&alice, bob.id, &cid, &text_body("while locked long")).await;
            (cid, r)
        }
    });
    let mut refused = BTreeSet::new();
    for (cid, r) in join_all(sends).await? {
        let (s, retry_after, m) = r?;
        match s {
            503 => {
                assert_unavailable(&cid, &retry_after, &m);
                refused.insert(cid);
            }
            // Queued behind the refused group, it may get the lock once the
            // holder lets go.
            201 => {
                acked.insert(cid, m["id"].as_u64().unwrap_or(0));
            }
            other => bail!("send {cid} while the database was locked for 8 s: {other} {m}"),
        }
    }
    holder.join().map_err(|_| anyhow!("holder panicked"))??;
    eprintln!(
        "locked 8 s: {} of 10 sends 503, the rest 201",
        refused.len()
    );
    assert!(
        !refused.is_empty(),
        "no send was refused while locked for 8 s"
    );

    // The writer is fine afterwards; refused sends retried are stored once.
    for cid in &refused {
        let (s, _, m) = send(&alice, bob.id, cid, &text_body("retried")).await?;
        assert!(s == 201 || s == 200, "retry of {cid}: {s} {m}");
        acked.insert(cid.clone(), m["id"].as_u64().unwrap_or(0));
    }
    assert_all_acknowledged_present(&bob, &acked, &BTreeSet::new()).await?;
    integrity_check(&db)?;
    drop(server);
    Ok(())
}

/// Runs futures concurrently, results in order.
async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Result<Vec<F::Output>>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await?);
    }
    Ok(out)
}

//! A throwaway PostgreSQL cluster for tests: `initdb` into a temp dir,
//! started on a free loopback port (and a unix socket in the same dir),
//! stopped on drop. Never a system service, never a fixed port.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root (CI
//! does) the cluster belongs to the `postgres` user and its commands run
//! through `runuser -u postgres --`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::Command;

/// The database [`TestPostgres::init`] creates.
pub const DATABASE: &str = "chat";
/// The cluster's superuser (`initdb -U`), trusted on loopback.
pub const USER: &str = "mqchat";

/// chatd's flags for a node on the database at `url`, with no rate limit
/// on a test's many sign-ins and sends.
pub fn node_flags(url: &str) -> [&str; 8] {
    [
        "--store",
        url,
        "--auth-ip-rate",
        "0",
        "--login-rate",
        "0",
        "--send-rate",
        "0",
    ]
}

/// A running (or stopped, see [`TestPostgres::stop`]) PostgreSQL cluster
/// of its own.
pub struct TestPostgres {
    bin: PathBuf,
    /// `Some` when running as root: the cluster's commands run as this user.
    run_as: Option<&'static str>,
    /// The cluster's root: `data/` (the cluster), the socket, `log`.
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

impl TestPostgres {
    /// `initdb`, start, and create [`DATABASE`]. `None` when PostgreSQL is
    /// not installed outside CI (the test then skips, as with
    /// [`crate::tool_available`]); in CI (`CI=true`) that is an error, since
    /// `.ci/run` installs it.
    pub async fn init() -> Result<Option<TestPostgres>> {
        let Some(bin) = bin_dir() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                bail!("PostgreSQL (initdb, pg_ctl) is required in CI (apt-get install postgresql)");
            }
            eprintln!("SKIPPED: PostgreSQL (initdb, pg_ctl) not installed");
            return Ok(None);
        };
        let root = is_root().await?;
        let dir = tempfile::Builder::new().prefix("mqchat-pg-").tempdir()?;
        if root {
            let (uid, gid) = (id("-u").await?, id("-g").await?);
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("chown the cluster dir to postgres")?;
        }
        let mut pg = TestPostgres {
            bin,
            run_as: root.then_some("postgres"),
            dir,
            port: 0,
            running: false,
        };
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                pg.data_dir().as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                USER.as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                // Only initdb's own files: the server runs with fsync on.
                "--no-sync".as_ref(),
            ],
        )
        .await?;
        // A port free a moment ago may be taken by the time the server
        // binds it: try a few.
        let mut attempts = 1;
        loop {
            pg.port = free_port()?;
            match pg.start().await {
                Ok(()) => break,
                Err(_) if attempts < 3 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
        pg.create_database(DATABASE).await?;
        Ok(Some(pg))
    }

    /// `postgres://mqchat@127.0.0.1:PORT/chat`.
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// The URL of another database of this cluster.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The directory of the cluster's unix socket (for `host=DIR` URLs).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database; returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        let port = self.port.to_string();
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", USER, name])
            .stdin(Stdio::null())
            .output()
            .await
            .context("run createdb")?;
        if !out.status.success() {
            bail!("createdb {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(self.url_for(name))
    }

    /// Starts the server (again) on its port; the data is kept across
    /// [`TestPostgres::stop`] and `start`.
    pub async fn start(&mut self) -> Result<()> {
        let settings = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=on -c synchronous_commit=on \
             -c shared_buffers=32MB",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let started = self
            .run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    self.data_dir().as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-o".as_ref(),
                    settings.as_ref(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "30".as_ref(),
                    "start".as_ref(),
                ],
            )
            .await;
        if let Err(e) = started {
            return Err(e.context(format!("server log:\n{}", self.log())));
        }
        self.running = true;
        Ok(())
    }

    /// Stops the server (fast shutdown: sessions are ended, what committed
    /// stays).
    pub async fn stop(&mut self) -> Result<()> {
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data_dir().as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )
        .await?;
        self.running = false;
        Ok(())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the cluster's programs as the cluster's owner.
    async fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
        let path = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        // The cluster's owner may not be allowed into the caller's cwd.
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("run {}", path.display()))?;
        if !out.status.success() {
            bail!(
                "{program} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

/// `MQCHAT_TEST_STORE=postgres`: every [`crate::TestServer`] stores in
/// PostgreSQL instead of SQLite, to run the whole end-to-end suite against
/// that backend (`MQCHAT_TEST_STORE=postgres cargo test -p mqchat-e2e`).
pub fn suite_on_postgres() -> bool {
    std::env::var("MQCHAT_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// For a test of SQLite itself (its file, its locks, its disk faults):
/// true, with a note, when the suite runs on PostgreSQL, where it does not
/// apply; the caller then returns.
pub fn skip_unless_sqlite(what: &str) -> bool {
    if suite_on_postgres() {
        eprintln!("SKIPPED on PostgreSQL: {what} is SQLite's");
        return true;
    }
    false
}

static SHARED: tokio::sync::OnceCell<TestPostgres> = tokio::sync::OnceCell::const_new();
static DATABASES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The URL of a database of its own for a chatd on `data_dir`, in one
/// cluster shared by the whole test process (so a chatd restarted on the
/// same data dir finds its data again). The cluster is stopped, and its
/// directory removed, by a watchdog once the test process has exited.
pub async fn database_for(data_dir: &Path) -> Result<String> {
    let pg = SHARED
        .get_or_try_init(|| async {
            let pg = TestPostgres::init().await?.ok_or_else(|| {
                anyhow!("MQCHAT_TEST_STORE=postgres, but PostgreSQL is not installed")
            })?;
            pg.stop_after_exit()?;
            Ok::<_, anyhow::Error>(pg)
        })
        .await?;
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut h);
    let name = format!("t{:016x}", h.finish());
    let known = DATABASES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&name);
    if known {
        return Ok(pg.url_for(&name));
    }
    let url = pg.create_database(&name).await?;
    DATABASES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(name);
    Ok(url)
}

/// A fresh database in the test process's shared cluster (as
/// [`database_for`]), for tests that run several chatd nodes on one
/// database. `None` when PostgreSQL is not installed outside CI (the test
/// then skips, as with [`TestPostgres::init`]).
pub async fn fresh_database() -> Result<Option<String>> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if bin_dir().is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!("PostgreSQL (initdb, pg_ctl) is required in CI (apt-get install postgresql)");
        }
        eprintln!("SKIPPED: PostgreSQL (initdb, pg_ctl) not installed");
        return Ok(None);
    }
    let name = format!("/fresh-database/{}", NEXT.fetch_add(1, Ordering::Relaxed));
    database_for(Path::new(&name)).await.map(Some)
}

impl TestPostgres {
    /// Leaves a watchdog that stops this cluster and removes its directory
    /// once this process exits (for a cluster kept in a static, which is
    /// never dropped).
    fn stop_after_exit(&self) -> Result<()> {
        let pg_ctl = self.bin.join("pg_ctl");
        let owner = self
            .run_as
            .map(|u| format!("runuser -u {u} -- "))
            .unwrap_or_default();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {owner}'{pg_ctl}' -D '{data}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            pg_ctl = pg_ctl.display(),
            data = self.data_dir().display(),
            dir = self.dir.path().display(),
        );
        std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start the cluster's watchdog")?;
        Ok(())
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        // Immediate: nothing of a throwaway cluster needs a clean shutdown,
        // and the temp dir goes right after.
        let path = self.bin.join("pg_ctl");
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => std::process::Command::new(&path),
        };
        let _ = cmd
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The directory of PostgreSQL's programs (`initdb`, `pg_ctl`,
/// `createdb`): where the `initdb` on `PATH` really is (a link on `PATH`
/// may point into it), else Debian's `/usr/lib/postgresql/<version>/bin`,
/// newest version first.
fn bin_dir() -> Option<PathBuf> {
    let complete = |d: &Path| {
        ["initdb", "pg_ctl", "createdb"]
            .iter()
            .all(|p| d.join(p).is_file())
    };
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .filter_map(|d| std::fs::canonicalize(d.join("initdb")).ok())
            .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
            .find(|d| complete(d))
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, d)| complete(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

async fn is_root() -> Result<bool> {
    let out = Command::new("id").arg("-u").output().await?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The `postgres` user's uid (`-u`) or gid (`-g`).
async fn id(which: &str) -> Result<u32> {
    let out = Command::new("id")
        .args([which, "postgres"])
        .output()
        .await?;
    if !out.status.success() {
        bail!("running as root needs a `postgres` user to own the test cluster (apt-get install postgresql makes one)");
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| anyhow!("id {which} postgres: {e}"))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

//! A private PostgreSQL for the CDC tests: `initdb` in a temporary folder, a free port,
//! `wal_level=logical`. PostgreSQL refuses to run as root, so under root it runs as the
//! `postgres` user the Debian package creates.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;

/// Where Debian puts PostgreSQL 15's programs.
const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PostgresServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    /// `name=value` server settings given after the defaults, so they win.
    settings: Vec<String>,
}

pub(crate) fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program` as the user PostgreSQL runs as (the `postgres` user when we are root).
fn as_postgres(program: &str) -> Command {
    let path = Path::new(BIN).join(program);
    if running_as_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(path);
        command
    } else {
        Command::new(path)
    }
}

impl PostgresServer {
    pub fn start() -> Self {
        PostgresServer::start_with(&[])
    }

    /// With these `name=value` server settings over the defaults (`wal_level=replica`…).
    pub fn start_with(settings: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("redsink-pg-")
            .tempdir()
            .expect("create a temporary folder");
        if running_as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let init = as_postgres("initdb")
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run initdb (is postgresql installed? run `cargo make setup`)");
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let mut server = PostgresServer {
            child: None,
            port: free_port(),
            dir,
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).expect("log file");
        let child = as_postgres("postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "wal_level=logical",
            ])
            .args(["-c", "max_replication_slots=10", "-c", "max_wal_senders=10"])
            // Only an operating system crash could lose data without fsync: tests kill
            // processes, not machines.
            .args(["-c", "fsync=off"])
            .args(self.settings.iter().flat_map(|setting| ["-c", setting]))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.client().is_err() {
            assert!(
                Instant::now() < deadline,
                "postgres did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// A connection to the `postgres` database as the `postgres` user.
    pub fn client(&self) -> Result<postgres::Client, postgres::Error> {
        postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.port
            ),
            postgres::NoTls,
        )
    }

    /// Turns TLS on with these certificates (a reload: plain connections still work).
    pub fn enable_tls(&self, certificates: &crate::TestCertificates) {
        let mut client = self.client().unwrap();
        // One statement each: ALTER SYSTEM cannot run in a transaction.
        for statement in [
            format!(
                "ALTER SYSTEM SET ssl_cert_file = '{}'",
                certificates.cert.display()
            ),
            format!(
                "ALTER SYSTEM SET ssl_key_file = '{}'",
                certificates.key.display()
            ),
            "ALTER SYSTEM SET ssl = on".to_owned(),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            client.batch_execute(&statement).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self
            .client()
            .unwrap()
            .query_one("SHOW ssl", &[])
            .unwrap()
            .get::<_, String>(0)
            != "on"
        {
            assert!(
                Instant::now() < deadline,
                "TLS did not come on:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and data (after a kill): crash recovery runs.
    pub fn restart(&mut self) {
        self.kill();
        // The postmaster's children notice its death and exit; wait for the port.
        std::thread::sleep(Duration::from_millis(500));
        self.launch();
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT: immediate shutdown, shared memory released.
            let _ = Command::new("kill")
                .arg("-QUIT")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

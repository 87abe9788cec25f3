//! The release-built worker as the benchmarks run it: its own folder, configuration and
//! jobs, log lines at `warn`, killed when dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use redsink_tests::{start_on_cpu, workspace_dir};

pub struct WorkerProcess {
    child: Child,
    dir: tempfile::TempDir,
}

impl WorkerProcess {
    /// Starts the worker on `config` (YAML, with `jobs: ./jobs`) and `jobs` (file name,
    /// text), on `cpu` only if given.
    pub fn start(config: &str, jobs: &[(&str, &str)], cpu: Option<usize>) -> WorkerProcess {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("jobs")).unwrap();
        for (name, text) in jobs {
            std::fs::write(dir.path().join("jobs").join(name), text).unwrap();
        }
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("worker.log")).unwrap();
        let mut command = Command::new(worker_path());
        if let Some(cpu) = cpu {
            start_on_cpu(&mut command, cpu);
        }
        let child = command
            .arg("--config")
            .arg(dir.path().join("config.yaml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start redsink-worker (cargo make bench builds it)");
        WorkerProcess { child, dir }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("worker.log")).unwrap_or_default()
    }

    /// The CPU time the process has used so far (user + system, /proc), µs.
    pub fn cpu_us(&self) -> f64 {
        process_cpu_us(self.child.id())
    }

    /// SIGTERM, and wait for the exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$REDSINK_WORKER`, else the release build in the workspace's target folder.
fn worker_path() -> PathBuf {
    std::env::var_os("REDSINK_WORKER")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target/release/redsink-worker"))
}

/// The CPU time a process has used so far (user + system, /proc), µs; 0 if it is gone.
fn process_cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime are the 12th and 13th of them, in clock ticks.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf only reads a system setting.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / per_second * 1e6
}

/// The CPU time each running process named `name` has used so far, µs, by pid.
pub fn processes_cpu_us(name: &str) -> BTreeMap<u32, f64> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .map(|pid| (pid, process_cpu_us(pid)))
        .collect()
}

/// The CPU time the processes of `after` used since `before` (theirs in `before`, or
/// all of it for those started since), µs.
pub fn cpu_us_since(before: &BTreeMap<u32, f64>, after: &BTreeMap<u32, f64>) -> f64 {
    after
        .iter()
        .map(|(pid, used)| used - before.get(pid).copied().unwrap_or(0.0))
        .sum()
}

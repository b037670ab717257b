//! Child processes the harness measures (the real `guestgate serve`, the naive relay, the
//! byte-level floor forwarders), their resident memory and CPU time, the machine-wide CPU
//! split, and the process limits the idle test depends on.
//!
//! Every child runs under `timeout --foreground`, so it ends by itself even if the harness is
//! killed, and is stopped by pid (SIGTERM, then SIGKILL) when its handle is dropped. A
//! child's standard output goes to /dev/null, or ([`Output::CountLines`]) into a pipe a
//! harness thread drains, counting the lines (the log lines guestgate wrote).

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where a child's standard output goes (its standard error is the harness's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// /dev/null.
    Null,
    /// A pipe drained by a harness thread that counts the lines and discards them.
    CountLines,
}

/// A running child server.
pub struct Child {
    /// What it is, for messages.
    pub name: &'static str,
    /// The server process itself (the `timeout` wrapper's child).
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Lines the child has written to its standard output so far ([`Output::CountLines`]).
    pub stdout_lines: Option<Arc<AtomicU64>>,
    wrapper: std::process::Child,
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Starts `program args`, a WebSocket relay that must listen on `addr` in front of a running
/// upstream, for at most `lifetime`; waits until a WebSocket connection through it works. Its stdin is a pipe the child may watch to exit with the harness.
pub async fn spawn(
    name: &'static str,
    program: &Path,
    args: &[String],
    addr: SocketAddr,
    lifetime: Duration,
) -> Result<Child, String> {
    spawn_with(name, program, args, addr, lifetime, Output::Null).await
}

/// [`spawn`], with the child's standard output going to `output`.
pub async fn spawn_with(
    name: &'static str,
    program: &Path,
    args: &[String],
    addr: SocketAddr,
    lifetime: Duration,
    output: Output,
) -> Result<Child, String> {
    let mut wrapper = Command::new("timeout")
        .args(["--foreground", "-s", "TERM", "-k", "5"])
        .arg(format!("{}s", lifetime.as_secs().max(1)))
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(match output {
            Output::Null => Stdio::null(),
            Output::CountLines => Stdio::piped(),
        })
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting {name} ({}): {e}", program.display()))?;
    let stdout_lines = wrapper.stdout.take().map(|out| {
        let lines = Arc::new(AtomicU64::new(0));
        let counter = lines.clone();
        // Ends at end of file: when the child (and `timeout`) have exited.
        std::thread::spawn(move || count_lines(out, &counter));
        lines
    });
    let wrapper_pid = wrapper.id();
    let mut child = Child {
        name,
        pid: 0,
        addr,
        stdout_lines,
        wrapper,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.pid == 0 {
        let path = format!("/proc/{wrapper_pid}/task/{wrapper_pid}/children");
        let kids = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(pid) = kids.split_whitespace().next().and_then(|p| p.parse().ok()) {
            child.pid = pid;
        } else if Instant::now() > deadline || child.wrapper.try_wait().ok().flatten().is_some() {
            return Err(format!("{name} did not start ({})", program.display()));
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Probe with a full WebSocket round (upgrade and close), not a bare TCP connect: a
    // connection that never upgrades is not what is being measured, and guestgate keeps such
    // a connection's task until shutdown.
    loop {
        if let Ok(ws) = crate::load::connect(addr).await {
            crate::load::close(ws).await;
            return Ok(child);
        }
        if Instant::now() > deadline || child.wrapper.try_wait().ok().flatten().is_some() {
            return Err(format!("{name} is not listening on {addr}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `out` to its end, adding the newlines seen to `lines`.
fn count_lines(mut out: impl Read, lines: &AtomicU64) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match out.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let seen = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                lines.fetch_add(seen, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

impl Child {
    /// The server's resident set size in KiB.
    pub fn rss_kib(&self) -> Result<u64, String> {
        rss_kib(self.pid)
    }

    /// Lines written to standard output so far (0 unless started with
    /// [`Output::CountLines`]).
    pub fn stdout_lines(&self) -> u64 {
        self.stdout_lines
            .as_ref()
            .map_or(0, |l| l.load(Ordering::Relaxed))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.pid != 0 {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.wrapper.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} (pid {}) did not stop on SIGTERM; killing it",
            self.name, self.pid
        );
        if self.pid != 0 {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
        // `timeout` reaps the server and exits; only if it does not is it killed too.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.wrapper.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

/// VmRSS of `pid` in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// The soft limit on open files of this process (children inherit it).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

/// CPU time (user + system, all threads) `pid` has used, in seconds; `None` for "self".
pub fn cpu_secs(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / clock_ticks()
}

/// Clock ticks per second for `/proc` times (`getconf CLK_TCK`, 100 on Linux in practice).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Machine-wide CPU time from the `cpu` line of `/proc/stat`, in clock ticks, summed over
/// all CPUs. Softirq work done in ksoftirqd threads and in interrupt context shows here but
/// in no process's `/proc/<pid>/stat`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MachineTicks {
    /// user + nice.
    pub user: u64,
    /// system.
    pub system: u64,
    /// softirq.
    pub softirq: u64,
    /// idle + iowait.
    pub idle: u64,
    /// irq + steal.
    pub other: u64,
}

impl MachineTicks {
    /// The counters now (all zero if `/proc/stat` cannot be read).
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        Self::parse(&stat).unwrap_or_default()
    }

    /// Parses the aggregate `cpu` line of a `/proc/stat` text.
    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| f.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal (guest time is included in user).
        Some(Self {
            user: at(0) + at(1),
            system: at(2),
            idle: at(3) + at(4),
            other: at(5) + at(7),
            softirq: at(6),
        })
    }

    /// The ticks between `earlier` and `self`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
            softirq: self.softirq.saturating_sub(earlier.softirq),
            idle: self.idle.saturating_sub(earlier.idle),
            other: self.other.saturating_sub(earlier.other),
        }
    }

    /// Adds another window's ticks.
    pub fn add(&mut self, o: Self) {
        self.user += o.user;
        self.system += o.system;
        self.softirq += o.softirq;
        self.idle += o.idle;
        self.other += o.other;
    }

    /// `ticks` as a percentage of one CPU over `secs` (the unit of `relay%`: the four
    /// shares add up to about 100 x CPUs).
    pub fn pct(ticks: u64, secs: f64) -> f64 {
        ticks as f64 * 100.0 / clock_ticks() / secs.max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ticks_parse_the_cpu_line() {
        let stat = "cpu  10 2 30 400 5 6 7 8 9 0\ncpu0 1 1 1 1 1 1 1 1 1 1\nintr 1\n";
        let t = MachineTicks::parse(stat).unwrap();
        assert_eq!(
            t,
            MachineTicks {
                user: 12,
                system: 30,
                softirq: 7,
                idle: 405,
                other: 14
            }
        );
        let later = MachineTicks { idle: 500, ..t };
        assert_eq!(later.since(t).idle, 95);
        assert_eq!(later.since(t).user, 0);
        assert!(MachineTicks::now().idle > 0);
    }

    #[test]
    fn count_lines_counts_newlines_across_reads() {
        let lines = AtomicU64::new(0);
        let text = "a\n".repeat(70_000);
        count_lines(text.as_bytes(), &lines);
        assert_eq!(lines.load(Ordering::Relaxed), 70_000);
    }
}

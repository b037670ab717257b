//! The targets of a harness run: the echo upstream (in the harness process) and the relays in
//! front of it, the real guestgate binary, nginx (when there is one, see `nginx.rs`) and the
//! naive relay, each a child process on its own loopback port; optionally the two byte-level
//! TCP forwarders (`tcp-copy`, `tcp-splice`, see `forward.rs`) as floor references, child
//! processes too.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::echo;
use crate::nginx::Nginx;
use crate::procs;
use crate::report::Target;

/// The echo upstream (in this process) and the two relays (child processes) in front of it.
pub struct Targets {
    /// The echo upstream.
    pub echo: SocketAddr,
    /// The guestgate child.
    pub guestgate: procs::Child,
    /// The `guestgate+obs` child (`--log info`, stdout lines counted) and its admin listener,
    /// when asked for.
    pub guestgate_obs: Option<(procs::Child, SocketAddr)>,
    /// The naive relay child.
    pub naive: procs::Child,
    /// nginx, when a binary was found.
    pub nginx: Option<Nginx>,
    /// The floor forwarders (`tcp-copy`, `tcp-splice`), when asked for.
    pub floor: Option<[procs::Child; 2]>,
}

impl Targets {
    /// Starts the echo upstream and both relays, and the two floor forwarders if `floor`
    /// (each child lives at most `lifetime`), and nginx from the binary `nginx` if given.
    /// `guestgate` overrides the binary measured (default: next to this one); `buffer_bytes`
    /// runs it from a generated config with that `relay.buffer_bytes`. `observability` starts
    /// a second guestgate, the `guestgate+obs` target.
    pub async fn start(
        guestgate: Option<&Path>,
        buffer_bytes: Option<usize>,
        nginx: Option<&Path>,
        floor: bool,
        observability: bool,
        lifetime: Duration,
    ) -> Result<Self, String> {
        let me = std::env::current_exe().map_err(|e| format!("locating this binary: {e}"))?;
        let gg_bin = match guestgate {
            Some(p) => p.to_path_buf(),
            None => me.with_file_name("guestgate"),
        };
        if !gg_bin.is_file() {
            return Err(format!(
                "{} not found: build it with `cargo build --release --bin guestgate` or pass --guestgate",
                gg_bin.display()
            ));
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let echo = listener.local_addr().map_err(|e| e.to_string())?;
        tokio::spawn(echo::serve(listener));
        let upstream = format!("ws://{echo}/");
        let guestgate = spawn_guestgate(&gg_bin, &upstream, buffer_bytes, None, lifetime).await?;
        let guestgate_obs = if observability {
            let admin = SocketAddr::from(([127, 0, 0, 1], procs::free_port()?));
            let child =
                spawn_guestgate(&gg_bin, &upstream, buffer_bytes, Some(admin), lifetime).await?;
            // Fail now, not in the middle of a run, if the admin listener does not answer.
            crate::scrape::scrape(admin)
                .await
                .map_err(|e| format!("guestgate+obs: scraping http://{admin}/metrics: {e}"))?;
            eprintln!(
                "guestgate+obs pid {} on {} (--log info, stdout drained by the harness; /metrics on {admin} scraped every second during its cells)",
                child.pid, child.addr
            );
            Some((child, admin))
        } else {
            None
        };
        let nv_addr = SocketAddr::from(([127, 0, 0, 1], procs::free_port()?));
        let nv_args = [
            "naive-relay",
            "--listen",
            &nv_addr.to_string(),
            "--upstream",
            &upstream,
            "--exit-on-stdin-eof",
        ];
        let nv_args: Vec<String> = nv_args.iter().map(|s| s.to_string()).collect();
        let naive = procs::spawn("naive relay", &me, &nv_args, nv_addr, lifetime).await?;
        eprintln!(
            "echo upstream {echo} (in process); guestgate pid {} on {}; naive relay pid {} on {nv_addr}",
            guestgate.pid, guestgate.addr, naive.pid
        );
        let nginx = match nginx {
            Some(bin) => {
                let n = Nginx::start(bin, echo, lifetime).await?;
                eprintln!(
                    "nginx ({}) master pid {}, worker pid {} on {} (config in {})",
                    bin.display(),
                    n.child.pid,
                    n.worker,
                    n.addr(),
                    n.dir().display()
                );
                Some(n)
            }
            None => None,
        };
        let floor = if floor {
            let copy = spawn_forwarder(&me, echo, false, lifetime).await?;
            let splice = spawn_forwarder(&me, echo, true, lifetime).await?;
            eprintln!(
                "tcp-copy pid {} on {}; tcp-splice pid {} on {}",
                copy.pid, copy.addr, splice.pid, splice.addr
            );
            Some([copy, splice])
        } else {
            None
        };
        Ok(Self {
            echo,
            guestgate,
            guestgate_obs,
            naive,
            nginx,
            floor,
        })
    }

    fn child(&self, t: Target) -> Option<&procs::Child> {
        match t {
            Target::Direct => None,
            Target::Nginx => self.nginx.as_ref().map(|n| &n.child),
            Target::Guestgate => Some(&self.guestgate),
            Target::GuestgateObs => self.guestgate_obs.as_ref().map(|(c, _)| c),
            Target::Naive => Some(&self.naive),
            Target::TcpCopy => self.floor.as_ref().map(|f| &f[0]),
            Target::TcpSplice => self.floor.as_ref().map(|f| &f[1]),
        }
    }

    /// The relay process behind `t` whose CPU time is measured (none for a direct
    /// connection; nginx's worker, which does all its relaying).
    pub fn pid(&self, t: Target) -> Option<u32> {
        match t {
            Target::Nginx => self.nginx.as_ref().map(|n| n.worker),
            _ => self.child(t).map(|c| c.pid),
        }
    }

    /// The admin listener of `guestgate+obs`, when it runs.
    pub fn obs_admin(&self) -> Option<SocketAddr> {
        self.guestgate_obs.as_ref().map(|(_, a)| *a)
    }

    /// Log lines `guestgate+obs` has written so far (0 when it does not run).
    pub fn obs_log_lines(&self) -> u64 {
        self.guestgate_obs
            .as_ref()
            .map_or(0, |(c, _)| c.stdout_lines())
    }

    /// The targets of one round, in order: direct, guestgate, guestgate+obs (if running),
    /// nginx (if running), naive, then the floor forwarders (if running).
    pub fn round(&self) -> Vec<Target> {
        Target::EVERY
            .into_iter()
            .filter(|&t| t == Target::Direct || self.child(t).is_some())
            .collect()
    }

    /// Where to connect for `t`.
    pub fn addr(&self, t: Target) -> Result<SocketAddr, String> {
        match t {
            Target::Direct => Ok(self.echo),
            _ => self
                .child(t)
                .map(|c| c.addr)
                .ok_or_else(|| format!("{} was not started", t.name())),
        }
    }
}

/// Starts guestgate in front of the echo at `upstream`: `serve --upstream` (or a generated
/// config with `relay.buffer_bytes`). Plain (`obs_admin` `None`): `--log warn`, admin on an
/// ephemeral port, stdout to /dev/null. Observed (`obs_admin` given): `--log info`, so the
/// per-connection line is formatted and written, into a pipe the harness drains and counts;
/// admin on `obs_admin`.
async fn spawn_guestgate(
    gg_bin: &Path,
    upstream: &str,
    buffer_bytes: Option<usize>,
    obs_admin: Option<SocketAddr>,
    lifetime: Duration,
) -> Result<procs::Child, String> {
    let mut config_file = String::new();
    let gg_addr = SocketAddr::from(([127, 0, 0, 1], procs::free_port()?));
    let gg_args = match buffer_bytes {
        None => vec!["serve", "--upstream", upstream],
        Some(bytes) => {
            let path =
                std::env::temp_dir().join(format!("guestgate-loadgen-{}.toml", std::process::id()));
            let toml = format!(
                "[[routes]]\npath = \"/\"\nupstream = \"{upstream}\"\n\n\
                 [routes.relay]\nbuffer_bytes = {bytes}\n"
            );
            std::fs::write(&path, toml).map_err(|e| format!("writing {}: {e}", path.display()))?;
            config_file = path.to_string_lossy().into_owned();
            vec!["serve", "--config", &config_file]
        }
    };
    let gg_addr_text = gg_addr.to_string();
    let admin = obs_admin.map_or("127.0.0.1:0".to_string(), |a| a.to_string());
    let (log, output, name) = match obs_admin {
        None => ("warn", procs::Output::Null, "guestgate"),
        Some(_) => ("info", procs::Output::CountLines, "guestgate+obs"),
    };
    let rest = [
        "--listen",
        &gg_addr_text,
        "--admin-listen",
        &admin,
        "--log",
        log,
    ];
    let gg_args: Vec<String> = gg_args.iter().chain(&rest).map(|s| s.to_string()).collect();
    let child = procs::spawn_with(name, gg_bin, &gg_args, gg_addr, lifetime, output).await;
    if buffer_bytes.is_some() {
        let _ = std::fs::remove_file(&config_file);
    }
    child
}

/// Starts this binary's `tcp-forward` mode in front of the echo at `echo`.
async fn spawn_forwarder(
    me: &Path,
    echo: SocketAddr,
    splice: bool,
    lifetime: Duration,
) -> Result<procs::Child, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], procs::free_port()?));
    let mut args = vec![
        "tcp-forward".to_string(),
        "--listen".to_string(),
        addr.to_string(),
        "--upstream".to_string(),
        echo.to_string(),
        "--exit-on-stdin-eof".to_string(),
    ];
    let name = if splice {
        args.push("--splice".to_string());
        "tcp-splice forwarder"
    } else {
        "tcp-copy forwarder"
    };
    procs::spawn(name, me, &args, addr, lifetime).await
}

//! nginx as a peer relay: the reverse proxy operators would otherwise deploy, started by the
//! harness on loopback from a generated config in a temporary directory (one worker,
//! `proxy_pass` with the usual `Upgrade`/`Connection` headers, `access_log off`,
//! `backlog=4096`), run as the current user, and stopped (and its directory removed) when the
//! handle is dropped, also on an error or a panic. The harness installs nothing: it uses
//! `--nginx PATH`, else `nginx` on `PATH`, else `/usr/sbin/nginx` (Debian's `nginx` package).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::procs;

/// A running nginx: its master (the `procs::Child`, stopped by pid on drop), its one worker
/// (whose CPU time is the relay's), and its temporary directory (removed on drop, after the
/// process is stopped).
pub struct Nginx {
    /// The master process; field order matters: it is dropped (stopped) before `dir`.
    pub child: procs::Child,
    /// The worker process, which does all the relaying.
    pub worker: u32,
    dir: TempDir,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The nginx binary to use: `explicit`, else `nginx` on `PATH`, else `/usr/sbin/nginx`;
/// `None` if there is none.
pub fn find(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("nginx")).collect())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file())
}

/// Whether this process runs as root (nginx then needs `user root;` to keep its worker able
/// to use the temporary directory; as any other user it cannot switch users anyway).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// The generated configuration: one worker in front of `echo`, listening on `listen`.
pub fn config(listen: SocketAddr, echo: SocketAddr, dir: &Path, root: bool) -> String {
    let dir = dir.display();
    let user = if root { "user root;\n" } else { "" };
    format!(
        "{user}worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 20000;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {listen} backlog=4096;
        location / {{
            proxy_pass http://{echo};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection \"upgrade\";
            proxy_read_timeout 1h;
        }}
    }}
}}
"
    )
}

impl Nginx {
    /// Starts `bin` in front of the echo at `echo`, for at most `lifetime`, and waits until a
    /// WebSocket connection through it works.
    pub async fn start(bin: &Path, echo: SocketAddr, lifetime: Duration) -> Result<Self, String> {
        let path = std::env::temp_dir().join(format!(
            "guestgate-loadgen-nginx-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        let dir = TempDir(path);
        let listen = SocketAddr::from(([127, 0, 0, 1], procs::free_port()?));
        let conf = dir.0.join("nginx.conf");
        std::fs::write(&conf, config(listen, echo, &dir.0, running_as_root()))
            .map_err(|e| format!("writing {}: {e}", conf.display()))?;
        let args: Vec<String> = [
            "-p".as_ref(),
            dir.0.as_os_str(),
            "-c".as_ref(),
            conf.as_os_str(),
            "-e".as_ref(),
            dir.0.join("error.log").as_os_str(),
        ]
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
        let child = procs::spawn("nginx", bin, &args, listen, lifetime)
            .await
            .map_err(|e| {
                let log = std::fs::read_to_string(dir.0.join("error.log")).unwrap_or_default();
                format!("{e}; nginx error log: {}", log.trim())
            })?;
        let kids = format!("/proc/{0}/task/{0}/children", child.pid);
        let worker = std::fs::read_to_string(&kids)
            .ok()
            .and_then(|k| k.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| format!("nginx (pid {}) has no worker process", child.pid))?;
        Ok(Self { child, worker, dir })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.child.addr
    }

    /// Its temporary directory (config, pid file, error log).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_the_peer_settings() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let echo: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let c = config(listen, echo, Path::new("/tmp/x"), false);
        for want in [
            "worker_processes 1;",
            "daemon off;",
            "pid /tmp/x/nginx.pid;",
            "access_log off;",
            "listen 127.0.0.1:8080 backlog=4096;",
            "proxy_pass http://127.0.0.1:9000;",
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection \"upgrade\";",
        ] {
            assert!(c.contains(want), "{want} missing from\n{c}");
        }
        assert!(!c.contains("user root"));
        assert!(config(listen, echo, Path::new("/tmp/x"), true).starts_with("user root;\n"));
    }
}

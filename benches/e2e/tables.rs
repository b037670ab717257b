//! Printing the harness's tables: throughput per target, size and shape with guestgate's ratios
//! against nginx and the naive relay (and the floor), connect cycles, idle memory, and the
//! cost of observability (`guestgate+obs` over plain guestgate).

use crate::report::{Cell, Shape, Target, find, size_label};
use crate::scrape;

/// Per-round guestgate/other rate ratios, as "min..max".
fn round_ratios(gg: &Cell, other: &Cell) -> String {
    let r: Vec<f64> = gg
        .rates
        .iter()
        .zip(&other.rates)
        .map(|(a, b)| a / b.max(1e-9))
        .collect();
    let min = r.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = r.iter().cloned().fold(0.0, f64::max);
    format!("{min:.2}..{max:.2}")
}

/// Cells with fewer round trips than this are too short to compare (the window was shorter
/// than a round trip): their ratios are left out.
const MIN_MSGS: u64 = 20;

/// `a`'s rate over `b`'s, "1.23x", or "-" when either is missing or too short.
fn ratio(a: Option<&Cell>, b: Option<&Cell>) -> String {
    let ok = |c: &Cell| c.msgs() >= MIN_MSGS;
    match (a, b) {
        (Some(a), Some(b)) if ok(a) && ok(b) => format!("{:.2}x", a.rate() / b.rate().max(1e-9)),
        _ => "-".to_string(),
    }
}

/// `b`'s relay CPU per message over `a`'s ("how many times more CPU `b` spends").
fn cpu_ratio(a: Option<&Cell>, b: Option<&Cell>) -> String {
    let ok = |c: &Cell| c.msgs() >= MIN_MSGS;
    match (a, b) {
        (Some(a), Some(b)) if ok(a) && ok(b) => format!(
            "{:.2}x",
            b.relay_us_per_msg() / a.relay_us_per_msg().max(1e-9)
        ),
        _ => "-".to_string(),
    }
}

fn sort(cells: &mut [Cell]) {
    for c in cells.iter_mut() {
        c.rtts_us.sort_unstable();
    }
}

/// Prints the throughput table and guestgate's ratios against the targets.
pub fn print_throughput(cells: &mut [Cell], sizes: &[usize], shapes: &[Shape]) {
    sort(cells);
    println!(
        "\n{:<14} {:<13} {:>10} {:>8} {:>8} {:>8} {:>7} {:>9} {:>6} {:>6} {:>6} {:>9} {:>6}  msgs/s per round",
        "cell",
        "target",
        "msgs/s",
        "MB/s",
        "p50 ms",
        "p99 ms",
        "relay%",
        "relay us",
        "gen%",
        "user%",
        "sys%",
        "softirq%",
        "idle%",
    );
    let cell_label = |size, shape: Shape| format!("{} @{}", size_label(size), shape.label());
    for &shape in shapes {
        for &size in sizes {
            for t in Target::EVERY {
                let Some(c) = find(cells, t, size, shape) else {
                    continue;
                };
                let (relay_pct, relay_us) = match t {
                    Target::Direct => ("-".to_string(), "-".to_string()),
                    _ => (
                        format!("{:.0}", c.relay_pct()),
                        format!("{:.2}", c.relay_us_per_msg()),
                    ),
                };
                println!(
                    "{:<14} {:<13} {:>10.0} {:>8.1} {:>8.2} {:>8.2} {:>7} {:>9} {:>6.0} {:>6.0} {:>6.0} {:>9.0} {:>6.0}  {}",
                    cell_label(size, shape),
                    t.name(),
                    c.rate(),
                    c.rate() * size as f64 / 1e6,
                    c.pct_ms(0.50),
                    c.pct_ms(0.99),
                    relay_pct,
                    relay_us,
                    c.own_cpu * 100.0 / c.secs_total(),
                    c.machine_pct(|m| m.user),
                    c.machine_pct(|m| m.system),
                    c.machine_pct(|m| m.softirq),
                    c.machine_pct(|m| m.idle),
                    c.spread()
                );
            }
        }
    }
    println!(
        "\n{:<14} {:>9} {:>12} {:>12} {:>9} {:>12} {:>12} {:>9} {:>9}  issue targets",
        "cell",
        "gg/nginx",
        "(per round)",
        "CPU nginx/gg",
        "gg/naive",
        "(per round)",
        "CPU naive/gg",
        "gg/direct",
        "p99 gg/ng",
    );
    for &shape in shapes {
        for &size in sizes {
            let gg = find(cells, Target::Guestgate, size, shape);
            let Some(g) = gg.filter(|g| g.msgs() >= MIN_MSGS) else {
                continue;
            };
            let ng = find(cells, Target::Nginx, size, shape);
            let nv = find(cells, Target::Naive, size, shape);
            let dr = find(cells, Target::Direct, size, shape);
            let ng = ng.filter(|c| c.msgs() >= MIN_MSGS);
            let nv = nv.filter(|c| c.msgs() >= MIN_MSGS);
            let per_round = |o: Option<&Cell>| o.map_or("-".into(), |o| round_ratios(g, o));
            let p99 = ng.map_or("-".into(), |n| {
                format!("{:.2}x", g.pct_ms(0.99) / n.pct_ms(0.99))
            });
            let mut verdicts = Vec::new();
            if let Some(n) = ng
                && size <= 1024
            {
                let r = g.rate() / n.rate().max(1e-9);
                let cheaper = g.relay_us_per_msg() < n.relay_us_per_msg();
                let met = r >= 1.15 && cheaper;
                verdicts.push(format!(
                    "nginx >= 1.15x and less CPU/msg: {}",
                    if met { "met" } else { "NOT met" }
                ));
            }
            if let Some(n) = nv
                && size >= 16 << 10
                && shape.conns > 1
            {
                let met = g.rate() / n.rate().max(1e-9) >= 1.5;
                verdicts.push(format!(
                    "naive >= 1.5x: {}",
                    if met { "met" } else { "NOT met" }
                ));
            }
            println!(
                "{:<14} {:>9} {:>12} {:>12} {:>9} {:>12} {:>12} {:>9} {:>9}  {}",
                cell_label(size, shape),
                ratio(gg, ng),
                per_round(ng),
                cpu_ratio(gg, ng),
                ratio(gg, nv),
                per_round(nv),
                cpu_ratio(gg, nv),
                ratio(gg, dr),
                p99,
                verdicts.join("; ")
            );
        }
    }
    if ng_absent(cells) {
        println!("(nginx column absent: no nginx binary, see benches/README.md)");
    }
    for c in cells.iter().filter(|c| c.msgs() < MIN_MSGS) {
        println!(
            "{} {} @{}: only {} round trips in the windows, ratios left out: raise --duration above the round-trip time",
            c.target.name(),
            size_label(c.size),
            c.shape.label(),
            c.msgs()
        );
    }
    print_floor(cells, sizes, shapes);
}

fn ng_absent(cells: &[Cell]) -> bool {
    !cells.iter().any(|c| c.target == Target::Nginx)
}

/// With the floor targets measured: what fraction of the byte-forwarding rate each relay
/// reaches, and the best guestgate/naive ratio the floor allows.
fn print_floor(cells: &[Cell], sizes: &[usize], shapes: &[Shape]) {
    if !cells.iter().any(|c| Target::FLOOR.contains(&c.target)) {
        return;
    }
    println!(
        "\nfloor: byte-level TCP forwarders (no WebSocket work), the rate a relay would reach if its WebSocket work were free"
    );
    println!(
        "{:<14} {:>14} {:>14} {:>16} {:>12} {:>13} {:>16}",
        "cell",
        "gg/tcp-splice",
        "ng/tcp-splice",
        "naive/tcp-splice",
        "gg/tcp-copy",
        "splice/copy",
        "relay us gg/spl",
    );
    for &shape in shapes {
        for &size in sizes {
            let at = |t| find(cells, t, size, shape);
            let (gg, splice) = (at(Target::Guestgate), at(Target::TcpSplice));
            println!(
                "{:<14} {:>14} {:>14} {:>16} {:>12} {:>13} {:>16}",
                format!("{} @{}", size_label(size), shape.label()),
                ratio(gg, splice),
                ratio(at(Target::Nginx), splice),
                ratio(at(Target::Naive), splice),
                ratio(gg, at(Target::TcpCopy)),
                ratio(splice, at(Target::TcpCopy)),
                cpu_ratio(splice, gg),
            );
        }
    }
}

/// Prints the connect-cycle table (relay CPU per cycle included) and guestgate's ratios.
pub fn print_cycles(cells: &mut [Cell]) {
    sort(cells);
    println!(
        "\n{:<13} {:>10} {:>9} {:>9} {:>7} {:>13}  cycles/s per round",
        "target", "cycles/s", "p50 ms", "p99 ms", "relay%", "relay us/cyc"
    );
    let of = |t| cells.iter().find(|c| c.target == t);
    for t in Target::EVERY {
        let Some(c) = of(t) else { continue };
        let (pct, us) = match t {
            Target::Direct => ("-".to_string(), "-".to_string()),
            _ => (
                format!("{:.0}", c.relay_pct()),
                format!("{:.1}", c.relay_us_per_msg()),
            ),
        };
        println!(
            "{:<13} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>13}  {}",
            t.name(),
            c.rate(),
            c.pct_ms(0.50),
            c.pct_ms(0.99),
            pct,
            us,
            c.spread()
        );
    }
    let Some(gg) = of(Target::Guestgate) else {
        return;
    };
    println!();
    for (t, target) in [
        (Target::Nginx, " (issue target >= 1.3x)"),
        (Target::Naive, ""),
    ] {
        if let Some(o) = of(t) {
            println!(
                "guestgate/{} {:.2}x (per round {}), CPU per cycle {}/gg {}{target}",
                t.name(),
                gg.rate() / o.rate().max(1e-9),
                round_ratios(gg, o),
                t.name(),
                cpu_ratio(Some(gg), Some(o)),
            );
        }
    }
    if ng_absent(cells) {
        println!("(nginx absent: no nginx binary, see benches/README.md)");
    }
    if let Some(splice) = of(Target::TcpSplice) {
        println!(
            "floor: guestgate/tcp-splice {:.2}x",
            gg.rate() / splice.rate().max(1e-9),
        );
    }
}

/// The bound on the cost of metrics and logging: under 3 % of throughput.
const OBS_COST_LIMIT_PCT: f64 = 3.0;

/// Prints the cost of observability per cell (`keys`: size and shape of each): `guestgate+obs`
/// rate over plain guestgate's with its per-round range, both relays' CPU per `unit` (message
/// or cycle), and the verdict against "cost < 3 %"; then the scrapes and log lines behind it.
pub fn print_obs(
    cells: &[Cell],
    keys: &[(usize, Shape)],
    unit: &str,
    scrapes: &scrape::Stats,
    log_lines: u64,
) {
    println!(
        "\nobservability cost: guestgate+obs (--log info, /metrics scraped every 1 s) vs guestgate (--log warn, not scraped)"
    );
    let us_obs = format!("us/{unit} obs");
    let us_gg = format!("us/{unit} gg");
    println!(
        "{:<14} {:>8} {:>12} {:>11} {:>12} {:>10} {:>9} {:>9}  issue target",
        "cell", "obs/gg", "(per round)", us_gg, us_obs, "CPU obs/gg", "cost", "CPU cost"
    );
    for &(size, shape) in keys {
        let label = if size == 0 {
            format!("cycles @{}", shape.conns)
        } else {
            format!("{} @{}", size_label(size), shape.label())
        };
        let ok = |c: &&Cell| c.msgs() >= MIN_MSGS;
        let gg = find(cells, Target::Guestgate, size, shape).filter(ok);
        let obs = find(cells, Target::GuestgateObs, size, shape).filter(ok);
        let (Some(gg), Some(obs)) = (gg, obs) else {
            println!("{label:<14} {:>8}  (too few round trips to compare)", "-");
            continue;
        };
        let r = obs.rate() / gg.rate().max(1e-9);
        let cost = (1.0 - r) * 100.0;
        let per_round: Vec<f64> = obs
            .rates
            .iter()
            .zip(&gg.rates)
            .map(|(o, g)| o / g.max(1e-9))
            .collect();
        let min = per_round.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = per_round.iter().cloned().fold(0.0, f64::max);
        let bound = 1.0 - OBS_COST_LIMIT_PCT / 100.0;
        let met = |c: f64| {
            if c < OBS_COST_LIMIT_PCT {
                "met"
            } else {
                "NOT met"
            }
        };
        let cpu = obs.relay_us_per_msg() / gg.relay_us_per_msg().max(1e-9);
        let cpu_cost = (cpu - 1.0) * 100.0;
        let mut verdict = format!(
            "cost < {OBS_COST_LIMIT_PCT:.0} %: {} in throughput",
            met(cost)
        );
        if min < bound && max >= bound {
            verdict.push_str(&format!(
                " (rounds on both sides of {bound:.2}: not resolved at this noise)"
            ));
        }
        verdict.push_str(&format!(", {} in CPU/{unit}", met(cpu_cost)));
        println!(
            "{:<14} {:>7.3}x {:>12} {:>11.2} {:>12.2} {:>9.3}x {:>+8.1}% {:>+8.1}%  {verdict}",
            label,
            r,
            format!("{min:.3}..{max:.3}"),
            gg.relay_us_per_msg(),
            obs.relay_us_per_msg(),
            cpu,
            cost,
            cpu_cost,
        );
    }
    println!(
        "(cost = 1 - obs/gg in throughput, CPU cost = CPU obs/gg - 1; guestgate+obs wrote {log_lines} log lines; /metrics scrapes: {} ok, {} failed, {:.0} KiB read)",
        scrapes.ok,
        scrapes.failed,
        scrapes.bytes as f64 / 1024.0
    );
    if let Some(e) = &scrapes.first_failure {
        println!("first failed scrape: {e}");
    }
}

/// One relay's idle-memory measurement (RSS in KiB).
pub struct IdleRow {
    /// Which relay.
    pub target: Target,
    /// Connections held open at the end.
    pub connections: usize,
    /// Connections held at the intermediate reading.
    pub first: usize,
    /// RSS before any connection.
    pub before: u64,
    /// RSS with `first` connections open.
    pub at_first: u64,
    /// RSS with all connections open.
    pub after: u64,
}
/// Prints the idle-memory table and the verdict against the 8 KiB target.
pub fn print_idle(rows: &[IdleRow]) {
    println!(
        "\n{:<10} {:>6} {:>13} {:>12} {:>12} {:>15} {:>18}",
        "relay",
        "conns",
        "RSS before KiB",
        "RSS after",
        "delta KiB",
        "KiB/conn",
        "KiB/conn marginal"
    );
    for r in rows {
        let delta = r.after as f64 - r.before as f64;
        let per = delta / r.connections.max(1) as f64;
        let marginal =
            (r.after as f64 - r.at_first as f64) / (r.connections - r.first).max(1) as f64;
        println!(
            "{:<10} {:>6} {:>13} {:>12} {:>12.0} {:>15.2} {:>18.2}",
            r.target.name(),
            r.connections,
            r.before,
            r.after,
            delta,
            per,
            marginal
        );
    }
    if let Some(gg) = rows.iter().find(|r| r.target == Target::Guestgate) {
        let per = (gg.after as f64 - gg.before as f64) / gg.connections.max(1) as f64;
        let verdict = if per <= 8.0 { "met" } else { "NOT met" };
        println!(
            "\nissue target: guestgate <= 8 KiB per idle relayed connection: {per:.2} KiB, {verdict}"
        );
    }
}

//! Aggregating the harness's samples across rounds and printing the tables and ratios.

use crate::load::Sample;
use crate::procs::MachineTicks;

/// What the load generator talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Straight to the echo upstream.
    Direct,
    /// Through the real guestgate binary.
    Guestgate,
    /// Through the naive message-level relay.
    Naive,
    /// Through a byte-level TCP forwarder that copies through a 64 KiB buffer (a floor).
    TcpCopy,
    /// Through a byte-level TCP forwarder that splices through pipes (a floor).
    TcpSplice,
}

impl Target {
    /// The order targets run in within a round.
    pub const ALL: [Target; 3] = [Target::Direct, Target::Guestgate, Target::Naive];
    /// The floor references, run after [`Target::ALL`] in each round when asked for.
    pub const FLOOR: [Target; 2] = [Target::TcpCopy, Target::TcpSplice];
    /// Every target, in table order.
    const EVERY: [Target; 5] = [
        Target::Direct,
        Target::Guestgate,
        Target::Naive,
        Target::TcpCopy,
        Target::TcpSplice,
    ];

    /// The targets of a round: [`Target::ALL`], then [`Target::FLOOR`] if `floor`.
    pub fn round(floor: bool) -> Vec<Target> {
        let floor = if floor { &Self::FLOOR[..] } else { &[] };
        Self::ALL.iter().chain(floor).copied().collect()
    }

    /// The table label.
    pub fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Guestgate => "guestgate",
            Target::Naive => "naive",
            Target::TcpCopy => "tcp-copy",
            Target::TcpSplice => "tcp-splice",
        }
    }
}

/// Everything measured for one target and payload size, over all rounds.
pub struct Cell {
    target: Target,
    size: usize,
    msgs: u64,
    secs: f64,
    rtts_us: Vec<u32>,
    relay_cpu: f64,
    own_cpu: f64,
    machine: MachineTicks,
    /// Rate of each round.
    rates: Vec<f64>,
}

impl Cell {
    fn rate(&self) -> f64 {
        self.msgs as f64 / self.secs.max(1e-9)
    }

    /// Relay CPU microseconds per round trip (each message crosses the relay twice).
    fn relay_us_per_msg(&self) -> f64 {
        self.relay_cpu * 1e6 / self.msgs.max(1) as f64
    }

    /// The `p`-th percentile RTT in milliseconds (`rtts_us` must be sorted).
    fn pct_ms(&self, p: f64) -> f64 {
        if self.rtts_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.rtts_us.len() as f64 - 1.0) * p).round() as usize;
        self.rtts_us[i] as f64 / 1000.0
    }

    /// A machine-wide CPU share during the windows, in percent of one CPU.
    fn machine_pct(&self, kind: fn(&MachineTicks) -> u64) -> f64 {
        MachineTicks::pct(kind(&self.machine), self.secs)
    }

    fn spread(&self) -> String {
        let min = self.rates.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = self.rates.iter().cloned().fold(0.0, f64::max);
        format!("{min:.0}..{max:.0}")
    }
}

/// Adds one round's sample to its cell.
pub fn add(cells: &mut Vec<Cell>, target: Target, size: usize, s: Sample) {
    let rate = s.msgs as f64 / s.secs.max(1e-9);
    match cells
        .iter_mut()
        .find(|c| c.target == target && c.size == size)
    {
        Some(c) => {
            c.msgs += s.msgs;
            c.secs += s.secs;
            c.rtts_us.extend(s.rtts_us);
            c.relay_cpu += s.relay_cpu;
            c.own_cpu += s.own_cpu;
            c.machine.add(s.machine);
            c.rates.push(rate);
        }
        None => cells.push(Cell {
            target,
            size,
            msgs: s.msgs,
            secs: s.secs,
            rtts_us: s.rtts_us,
            relay_cpu: s.relay_cpu,
            own_cpu: s.own_cpu,
            machine: s.machine,
            rates: vec![rate],
        }),
    }
}

/// "64 B", "16 KiB", "1 MiB".
pub fn size_label(size: usize) -> String {
    if size >= 1 << 20 && size % (1 << 20) == 0 {
        format!("{} MiB", size >> 20)
    } else if size >= 1 << 10 && size % (1 << 10) == 0 {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

fn find(cells: &[Cell], t: Target, size: usize) -> Option<&Cell> {
    cells.iter().find(|c| c.target == t && c.size == size)
}

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

/// Prints the throughput table and guestgate's ratios against the targets.
pub fn print_throughput(cells: &mut [Cell], sizes: &[usize]) {
    for c in cells.iter_mut() {
        c.rtts_us.sort_unstable();
    }
    println!(
        "\n{:<8} {:<10} {:>10} {:>8} {:>8} {:>8} {:>7} {:>9} {:>6} {:>6} {:>6} {:>9} {:>6}  msgs/s per round",
        "size",
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
    for &size in sizes {
        for t in Target::EVERY {
            let Some(c) = find(cells, t, size) else {
                continue;
            };
            let (relay_pct, relay_us) = match t {
                Target::Direct => ("-".to_string(), "-".to_string()),
                _ => (
                    format!("{:.0}", c.relay_cpu * 100.0 / c.secs),
                    format!("{:.2}", c.relay_us_per_msg()),
                ),
            };
            println!(
                "{:<8} {:<10} {:>10.0} {:>8.1} {:>8.2} {:>8.2} {:>7} {:>9} {:>6.0} {:>6.0} {:>6.0} {:>9.0} {:>6.0}  {}",
                size_label(size),
                t.name(),
                c.rate(),
                c.rate() * size as f64 / 1e6,
                c.pct_ms(0.50),
                c.pct_ms(0.99),
                relay_pct,
                relay_us,
                c.own_cpu * 100.0 / c.secs,
                c.machine_pct(|m| m.user),
                c.machine_pct(|m| m.system),
                c.machine_pct(|m| m.softirq),
                c.machine_pct(|m| m.idle),
                c.spread()
            );
        }
    }
    println!(
        "\n{:<8} {:>16} {:>12} {:>17} {:>13} {:>15}  issue target vs naive",
        "size",
        "guestgate/naive",
        "(per round)",
        "guestgate/direct",
        "p99 gg/naive",
        "CPU naive/gg",
    );
    for &size in sizes {
        let (Some(gg), Some(nv), Some(dr)) = (
            find(cells, Target::Guestgate, size),
            find(cells, Target::Naive, size),
            find(cells, Target::Direct, size),
        ) else {
            continue;
        };
        let vs_naive = gg.rate() / nv.rate().max(1e-9);
        let need = if size >= 16 << 10 { 1.5 } else { 1.0 };
        let verdict = if (need > 1.0 && vs_naive >= need) || (need == 1.0 && vs_naive > 1.0) {
            "met"
        } else {
            "NOT met"
        };
        println!(
            "{:<8} {:>15.2}x {:>12} {:>16.2}x {:>12.2}x {:>14.2}x  {}{:.1}x: {verdict}",
            size_label(size),
            vs_naive,
            round_ratios(gg, nv),
            gg.rate() / dr.rate().max(1e-9),
            gg.pct_ms(0.99) / nv.pct_ms(0.99),
            nv.relay_us_per_msg() / gg.relay_us_per_msg().max(1e-9),
            if need > 1.0 { ">= " } else { "> " },
            need
        );
    }
    print_floor(cells, sizes);
}

/// With the floor targets measured: what fraction of the byte-forwarding rate each relay
/// reaches, and the best guestgate/naive ratio the floor allows.
fn print_floor(cells: &[Cell], sizes: &[usize]) {
    if !cells.iter().any(|c| Target::FLOOR.contains(&c.target)) {
        return;
    }
    println!(
        "\nfloor: byte-level TCP forwarders (no WebSocket work), the rate a relay would reach if its WebSocket work were free"
    );
    println!(
        "{:<8} {:>14} {:>16} {:>12} {:>14} {:>13} {:>16}",
        "size",
        "gg/tcp-splice",
        "naive/tcp-splice",
        "gg/tcp-copy",
        "naive/tcp-copy",
        "splice/copy",
        "relay us gg/spl",
    );
    let ratio = |a: Option<&Cell>, b: Option<&Cell>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a.rate() / b.rate().max(1e-9)),
        _ => "-".to_string(),
    };
    let mut bounds = Vec::new();
    for &size in sizes {
        let gg = find(cells, Target::Guestgate, size);
        let nv = find(cells, Target::Naive, size);
        let copy = find(cells, Target::TcpCopy, size);
        let splice = find(cells, Target::TcpSplice, size);
        let cpu = match (gg, splice) {
            (Some(g), Some(s)) => format!(
                "{:.2}x",
                g.relay_us_per_msg() / s.relay_us_per_msg().max(1e-9)
            ),
            _ => "-".to_string(),
        };
        println!(
            "{:<8} {:>14} {:>16} {:>12} {:>14} {:>13} {:>16}",
            size_label(size),
            ratio(gg, splice),
            ratio(nv, splice),
            ratio(gg, copy),
            ratio(nv, copy),
            ratio(splice, copy),
            cpu,
        );
        if let (Some(gg), Some(nv), Some(splice)) = (gg, nv, splice) {
            let bound = splice.rate() / nv.rate().max(1e-9);
            let actual = gg.rate() / nv.rate().max(1e-9);
            let mut line = format!(
                "{:<8} best possible guestgate/naive implied by the floor: tcp-splice/naive = {bound:.2}x \
                 (per round {}); measured guestgate/naive {actual:.2}x",
                size_label(size),
                round_ratios(splice, nv),
            );
            if actual > bound {
                line.push_str(
                    " (above the floor: noise, or the forwarder is no strict bound here)",
                );
            }
            if let Some(copy) = copy
                && copy.rate() > splice.rate()
            {
                let by_copy = copy.rate() / nv.rate().max(1e-9);
                line.push_str(&format!(
                    " (tcp-copy was faster: tcp-copy/naive = {by_copy:.2}x)"
                ));
            }
            bounds.push(line);
        }
    }
    if !bounds.is_empty() {
        println!();
        for line in bounds {
            println!("{line}");
        }
    }
}

/// Prints the connect-cycle table.
pub fn print_cycles(cells: &mut [Cell]) {
    for c in cells.iter_mut() {
        c.rtts_us.sort_unstable();
    }
    println!(
        "\n{:<10} {:>10} {:>9} {:>9}  cycles/s per round",
        "target", "cycles/s", "p50 ms", "p99 ms"
    );
    for t in Target::EVERY {
        let Some(c) = find(cells, t, 0) else { continue };
        println!(
            "{:<10} {:>10.0} {:>9.2} {:>9.2}  {}",
            t.name(),
            c.rate(),
            c.pct_ms(0.50),
            c.pct_ms(0.99),
            c.spread()
        );
    }
    if let (Some(gg), Some(nv), Some(dr)) = (
        find(cells, Target::Guestgate, 0),
        find(cells, Target::Naive, 0),
        find(cells, Target::Direct, 0),
    ) {
        println!(
            "\nguestgate/naive {:.2}x (per round {}), guestgate/direct {:.2}x",
            gg.rate() / nv.rate().max(1e-9),
            round_ratios(gg, nv),
            gg.rate() / dr.rate().max(1e-9)
        );
        if let Some(splice) = find(cells, Target::TcpSplice, 0) {
            println!(
                "floor: guestgate/tcp-splice {:.2}x, naive/tcp-splice {:.2}x",
                gg.rate() / splice.rate().max(1e-9),
                nv.rate() / splice.rate().max(1e-9)
            );
        }
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

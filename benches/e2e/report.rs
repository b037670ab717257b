//! Aggregating the harness's samples across rounds: the targets, the load shapes, and one
//! [`Cell`] per target, payload size and shape (the tables are printed by `tables.rs`).

use crate::load::Sample;
use crate::procs::MachineTicks;

/// What the load generator talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Straight to the echo upstream.
    Direct,
    /// Through the real guestgate binary.
    Guestgate,
    /// Through a second guestgate started with `--log info` (the per-connection line written
    /// to a pipe the harness drains) whose `/metrics` the harness scrapes every second:
    /// `--observability`.
    GuestgateObs,
    /// Through nginx (one worker, `proxy_pass` with the Upgrade headers).
    Nginx,
    /// Through the naive message-level relay.
    Naive,
    /// Through a byte-level TCP forwarder that copies through a 64 KiB buffer (a floor).
    TcpCopy,
    /// Through a byte-level TCP forwarder that splices through pipes (a floor).
    TcpSplice,
}

impl Target {
    /// The floor references, run last in each round when asked for.
    pub const FLOOR: [Target; 2] = [Target::TcpCopy, Target::TcpSplice];
    /// Every target, in table order, which is also the order within a round.
    pub const EVERY: [Target; 7] = [
        Target::Direct,
        Target::Guestgate,
        Target::GuestgateObs,
        Target::Nginx,
        Target::Naive,
        Target::TcpCopy,
        Target::TcpSplice,
    ];

    /// The table label.
    pub fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Guestgate => "guestgate",
            Target::GuestgateObs => "guestgate+obs",
            Target::Nginx => "nginx",
            Target::Naive => "naive",
            Target::TcpCopy => "tcp-copy",
            Target::TcpSplice => "tcp-splice",
        }
    }
}

/// A load shape: connections, and messages in flight on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Connections per target.
    pub conns: usize,
    /// Messages in flight per connection.
    pub window: usize,
}

impl Shape {
    /// "64x16".
    pub fn label(self) -> String {
        format!("{}x{}", self.conns, self.window)
    }
}

impl std::str::FromStr for Shape {
    type Err = String;

    /// Parses "CONNSxWINDOW", e.g. "64x16".
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not CONNECTIONSxIN_FLIGHT (e.g. 64x16)");
        let (c, w) = s.split_once('x').ok_or_else(bad)?;
        let (conns, window) = (c.parse().map_err(|_| bad())?, w.parse().map_err(|_| bad())?);
        if conns == 0 || window == 0 {
            return Err(bad());
        }
        Ok(Shape { conns, window })
    }
}

/// Everything measured for one target, payload size and shape, over all rounds.
pub struct Cell {
    pub(crate) target: Target,
    pub(crate) size: usize,
    pub(crate) shape: Shape,
    msgs: u64,
    secs: f64,
    pub(crate) rtts_us: Vec<u32>,
    relay_cpu: f64,
    pub(crate) own_cpu: f64,
    machine: MachineTicks,
    /// Rate of each round.
    pub(crate) rates: Vec<f64>,
}

impl Cell {
    /// Round trips (or cycles) per second over all rounds.
    pub fn rate(&self) -> f64 {
        self.msgs as f64 / self.secs.max(1e-9)
    }

    /// Relay CPU as a percentage of one CPU.
    pub fn relay_pct(&self) -> f64 {
        self.relay_cpu * 100.0 / self.secs.max(1e-9)
    }

    /// Relay CPU microseconds per round trip (each message crosses the relay twice).
    pub fn relay_us_per_msg(&self) -> f64 {
        self.relay_cpu * 1e6 / self.msgs.max(1) as f64
    }

    /// The `p`-th percentile RTT in milliseconds (`rtts_us` must be sorted).
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.rtts_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.rtts_us.len() as f64 - 1.0) * p).round() as usize;
        self.rtts_us[i] as f64 / 1000.0
    }

    /// Round trips (or cycles) counted over all rounds.
    pub fn msgs(&self) -> u64 {
        self.msgs
    }

    /// Length of all the windows together, in seconds.
    pub fn secs_total(&self) -> f64 {
        self.secs
    }

    /// A machine-wide CPU share during the windows, in percent of one CPU.
    pub fn machine_pct(&self, kind: fn(&MachineTicks) -> u64) -> f64 {
        MachineTicks::pct(kind(&self.machine), self.secs)
    }

    /// The per-round rates, as "min..max".
    pub fn spread(&self) -> String {
        let min = self.rates.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = self.rates.iter().cloned().fold(0.0, f64::max);
        format!("{min:.0}..{max:.0}")
    }
}

/// Adds one round's sample to its cell.
pub fn add(cells: &mut Vec<Cell>, target: Target, size: usize, shape: Shape, s: Sample) {
    let rate = s.msgs as f64 / s.secs.max(1e-9);
    match cells
        .iter_mut()
        .find(|c| c.target == target && c.size == size && c.shape == shape)
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
            shape,
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

/// The cell of `t` at `size` and `shape`.
pub fn find(cells: &[Cell], t: Target, size: usize, shape: Shape) -> Option<&Cell> {
    cells
        .iter()
        .find(|c| c.target == t && c.size == size && c.shape == shape)
}

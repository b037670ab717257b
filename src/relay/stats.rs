//! What a pump counts (frames, messages, bytes, spliced bytes) and how it publishes running
//! totals for the periodic metrics flush without touching shared cache lines on the hot path.

/// Counters kept per pump and flushed to shared metrics once, so the hot path never touches a
/// shared cache line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PumpStats {
    /// Frames read from the source (including consumed keepalive pongs).
    pub frames: u64,
    /// Complete data messages read from the source.
    pub messages: u64,
    /// Bytes read from the source (headers and payloads).
    pub bytes: u64,
    /// Of `bytes`, payload bytes moved socket to socket by splice(2), never copied.
    pub spliced: u64,
}

/// Totals a pump publishes for readers outside the relay (periodic metrics flushes). Stores
/// are relaxed and happen once per read, on a cache line only this connection writes.
#[derive(Debug, Default)]
pub struct LiveStats {
    frames: std::sync::atomic::AtomicU64,
    messages: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
    spliced: std::sync::atomic::AtomicU64,
}

impl LiveStats {
    /// The totals published so far.
    pub fn snapshot(&self) -> PumpStats {
        use std::sync::atomic::Ordering::Relaxed;
        PumpStats {
            frames: self.frames.load(Relaxed),
            messages: self.messages.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            spliced: self.spliced.load(Relaxed),
        }
    }

    pub(super) fn publish(&self, stats: &PumpStats) {
        use std::sync::atomic::Ordering::Relaxed;
        self.frames.store(stats.frames, Relaxed);
        self.messages.store(stats.messages, Relaxed);
        self.bytes.store(stats.bytes, Relaxed);
        self.spliced.store(stats.spliced, Relaxed);
    }
}

impl PumpStats {
    /// What was added since `earlier`.
    pub fn since(&self, earlier: &PumpStats) -> PumpStats {
        PumpStats {
            frames: self.frames - earlier.frames,
            messages: self.messages - earlier.messages,
            bytes: self.bytes - earlier.bytes,
            spliced: self.spliced - earlier.spliced,
        }
    }
}

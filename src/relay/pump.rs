//! One direction of a relay: read frames from one leg, check their headers, forward their bytes
//! verbatim to the other leg.
//!
//! The pump owns the source's read half and the destination's write half. Its state lives in
//! the struct rather than in the future, and write progress is recorded after every completed
//! write, so [`Pump::run`] can be cancelled and called again without losing or repeating a byte.
//! That lets the relay stop one direction, write a close frame on its writer at a frame
//! boundary, and drain its reader.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::lease::Lease;
use super::rate::{Bucket, RateLimit};
use super::rewrite::{MessageTransform, Reassembly};
use super::splice::{self, Splicer};
pub use super::stats::{LiveStats, PumpStats};
use crate::ws::frame::{
    self, Header, Kind, Limits, MessageState, OwnFrame, PING_PAYLOAD, Side, Violation,
};

/// Settings for one direction.
#[derive(Debug, Clone, Copy)]
pub struct PumpConfig {
    /// The leg the pump reads from.
    pub source: Side,
    /// Limits on frames from the source.
    pub limits: Limits,
    /// Size of the leased read buffer.
    pub buffer_size: usize,
    /// The source is given up on after this long without a byte.
    pub idle_timeout: Duration,
    /// How often to ping the destination (None: never).
    pub ping_interval: Option<Duration>,
    /// A write to the destination that makes no progress for this long fails the pump.
    pub write_stall: Duration,
    /// Limit on messages (pings and pongs included) from the source (None: unlimited).
    pub rate: Option<RateLimit>,
    /// A fragmented message must be complete this long after its first fragment (None: no
    /// bound beyond the idle timeout).
    pub message_timeout: Option<Duration>,
}

/// Why [`Pump::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The source sent a close frame (code if it had one); it was forwarded to the destination.
    CloseForwarded(Option<u16>),
    /// The source's transport ended without a close frame (EOF or read error).
    SourceLost(Option<io::ErrorKind>),
    /// The source broke the protocol or a limit; the destination is at a frame boundary.
    Violation(Violation),
    /// The source sent nothing for the idle timeout.
    SourceIdle,
    /// Writing to the destination failed.
    DestinationFailed(io::ErrorKind),
    /// Writing to the destination made no progress for the stall timeout.
    DestinationStalled,
    /// The relay was asked to stop.
    Cancelled,
    /// The message transform refused a source message (reason is secret-free).
    Refused(&'static str),
    /// The source went over a limit guestgate keeps on it over time.
    Limited(Limit),
}

/// A limit over time on what a source sends (see [`PumpEnd::Limited`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// More messages than the route's rate limit allows.
    Rate,
    /// A fragmented message not completed within the route's message timeout.
    MessageTimeout,
}

impl Limit {
    /// Short, secret-free text for the log line.
    pub fn detail(self) -> &'static str {
        match self {
            Limit::Rate => "message rate over the limit",
            Limit::MessageTimeout => "fragmented message not completed in time",
        }
    }
}

/// One relay direction. See the module docs.
pub struct Pump<R, W> {
    src: R,
    dst: W,
    cfg: PumpConfig,
    state: MessageState,
    lease: Lease,
    /// Bytes in the buffer.
    filled: usize,
    /// Next byte to examine.
    scan: usize,
    /// Bytes `[out_start, out_end)` are scanned and waiting to be written.
    out_start: usize,
    out_end: usize,
    /// Payload bytes of the current data frame not yet scanned.
    remaining: u64,
    /// The current data frame ends a message.
    completes_message: bool,
    /// `[scan, filled)` is an incomplete header or control frame.
    need_more: bool,
    /// A frame guestgate writes itself, and how much of it is written.
    own: Option<(OwnFrame, usize)>,
    /// Scanning found an end; returned once the output before it is flushed.
    end: Option<PumpEnd>,
    /// Drain mode: read and discard until a close frame or EOF.
    discard: bool,
    /// Keep the source's close frame instead of forwarding it (guestgate answers for itself).
    hold_close: bool,
    /// Forward only the rest of the frame in flight: stop before the next frame's header.
    to_boundary: bool,
    /// Slow path: data messages are reassembled and rewritten instead of forwarded.
    rewrite: Option<Box<Reassembly>>,
    /// Plain TCP on both ends: large payloads move socket to socket in the kernel.
    splice: Option<Splicer>,
    last_read: Instant,
    /// The source's message rate bucket, when the route limits it.
    bucket: Option<Bucket>,
    /// When the first fragment of the fragmented data message in flight arrived.
    message_started: Option<Instant>,
    stats: PumpStats,
    live: Option<std::sync::Arc<LiveStats>>,
}

impl<R, W> Pump<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// A pump from `src` to `dst`.
    pub fn new(src: R, dst: W, cfg: PumpConfig) -> Self {
        Self {
            src,
            dst,
            state: MessageState::new(cfg.source, cfg.limits),
            lease: Lease::new(cfg.buffer_size),
            cfg,
            filled: 0,
            scan: 0,
            out_start: 0,
            out_end: 0,
            remaining: 0,
            completes_message: false,
            need_more: false,
            own: None,
            end: None,
            discard: false,
            hold_close: false,
            to_boundary: false,
            rewrite: None,
            splice: None,
            last_read: Instant::now(),
            bucket: cfg.rate.map(|r| Bucket::new(r, Instant::now())),
            message_started: None,
            stats: PumpStats::default(),
            live: None,
        }
    }

    /// Puts this direction on the slow path: every data message goes through `transform`.
    pub fn with_transform(mut self, transform: Box<dyn MessageTransform>) -> Self {
        self.rewrite = Some(Box::new(Reassembly::new(transform)));
        self
    }

    /// Lets large payloads bypass the read buffer (see [`splice`]); `splicer` must move bytes
    /// between the very sockets under `src` and `dst`.
    pub fn with_splicer(mut self, splicer: Splicer) -> Self {
        self.splice = Some(splicer);
        self
    }

    /// Publishes the pump's totals to `live` after every read.
    pub fn with_live_stats(mut self, live: std::sync::Arc<LiveStats>) -> Self {
        self.live = Some(live);
        self
    }

    /// What the pump has counted so far.
    pub fn stats(&self) -> PumpStats {
        self.stats
    }

    /// True when everything scanned is written and the destination is between frames, so a
    /// frame of guestgate's own can be written without corrupting the stream.
    pub fn at_frame_boundary(&self) -> bool {
        let rewriting = self
            .rewrite
            .as_ref()
            .is_some_and(|r| !r.pending().is_empty());
        let mid_frame = self.remaining > 0 && (self.rewrite.is_none() || self.discard);
        let piped = self.splice.as_ref().is_some_and(|s| s.in_pipe() > 0);
        self.out_start == self.out_end && !mid_frame && !rewriting && !piped && self.own.is_none()
    }

    /// Forwards frames until the source closes, fails, idles out or breaks the protocol.
    /// Cancel-safe: dropping the future and calling it again continues where it stopped, so a
    /// caller stops it (say, on shutdown) by selecting it against its own signal.
    ///
    /// Per read, the loop touches no timer: one sleep per pump, set to the earliest of
    /// idleness, the fragmented-message deadline and the next ping, is re-armed only when it
    /// fires (or when a fragmented message starts), and is polled only when the read is not
    /// ready.
    pub async fn run(&mut self) -> PumpEnd {
        let every = self.cfg.ping_interval.filter(|_| !self.discard);
        let mut timers = Timers {
            ping_due: every.map(|e| Instant::now() + e),
            ping_wanted: false,
        };
        let timer = tokio::time::sleep_until(self.next_deadline(&timers));
        tokio::pin!(timer);
        loop {
            if let Err(end) = self.flush().await {
                return end;
            }
            if let Some(end) = self.end.take() {
                return end;
            }
            if self.to_boundary && self.at_frame_boundary() {
                return PumpEnd::Cancelled;
            }
            if !self.need_more && self.scan < self.filled {
                self.scan_some();
                if let Some(live) = &self.live {
                    live.publish(&self.stats);
                }
                // A fragmented message just started: its deadline may come before the timer.
                if let Some(at) = self.message_deadline()
                    && at < timer.deadline()
                {
                    timer.as_mut().reset(at);
                }
                continue;
            }
            if timers.ping_wanted && self.at_frame_boundary() {
                timers.ping_wanted = false;
                if let Some(every) = every {
                    timers.ping_due = Some(Instant::now() + every);
                }
                self.own = Some((OwnFrame::ping(self.cfg.source.other()), 0));
                timer.as_mut().reset(self.next_deadline(&timers));
                continue;
            }
            // Everything scanned is written: keep only an incomplete unit, at the front.
            let lease = self.lease.bytes_mut();
            lease.copy_within(self.scan..self.filled, 0);
            self.filled -= self.scan;
            (self.scan, self.out_start, self.out_end) = (0, 0, 0);
            self.need_more = false;
            let keep = self.filled;

            if keep == 0 && self.splice_payload_now() {
                // The rest of a large payload goes socket to socket; the buffer is not needed.
                self.lease.release();
                let remaining = self.remaining;
                let Some(splicer) = self.splice.as_mut() else {
                    unreachable!("splice_payload_now checked the splicer");
                };
                let moved = tokio::select! {
                    biased;
                    // Boxed (once per pipe-full) so idle connections do not keep room for it.
                    moved = Box::pin(splicer.fill(remaining)) => moved,
                    _ = &mut timer => {
                        match self.timer_fired(&mut timers, every) {
                            Ok(next) => timer.as_mut().reset(next),
                            Err(end) => return end,
                        }
                        continue;
                    }
                };
                match moved {
                    Ok(0) => return PumpEnd::SourceLost(None),
                    Ok(n) => self.spliced_in(n),
                    Err(e) => return PumpEnd::SourceLost(Some(e.kind())),
                }
                continue;
            }

            tokio::select! {
                biased;
                read = self.lease.read_from(&mut self.src, keep) => match read {
                    Ok(0) => return PumpEnd::SourceLost(None),
                    Ok(n) => {
                        self.filled += n;
                        self.stats.bytes += n as u64;
                        self.last_read = Instant::now();
                    }
                    Err(e) => return PumpEnd::SourceLost(Some(e.kind())),
                },
                _ = &mut timer => {
                    match self.timer_fired(&mut timers, every) {
                        Ok(next) => timer.as_mut().reset(next),
                        Err(end) => return end,
                    }
                }
            }
        }
    }

    /// When the fragmented message in flight must be complete, if one is in flight and the
    /// route bounds it (drain mode does not: it discards).
    fn message_deadline(&self) -> Option<Instant> {
        let started = self.message_started.filter(|_| !self.discard)?;
        Some(started + self.cfg.message_timeout?)
    }

    /// The next time the pump's timer must wake: idleness, the message deadline, or the next
    /// ping (unless one is already waiting for a frame boundary).
    fn next_deadline(&self, timers: &Timers) -> Instant {
        let mut at = self.last_read + self.cfg.idle_timeout;
        if let Some(m) = self.message_deadline() {
            at = at.min(m);
        }
        if let Some(p) = timers.ping_due.filter(|_| !timers.ping_wanted) {
            at = at.min(p);
        }
        at
    }

    /// The timer fired: the end it means, or when it must fire next. A due ping is marked
    /// wanted; it is written at the next frame boundary.
    fn timer_fired(
        &self,
        timers: &mut Timers,
        every: Option<Duration>,
    ) -> Result<Instant, PumpEnd> {
        let now = Instant::now();
        if self.message_deadline().is_some_and(|at| at <= now) {
            return Err(PumpEnd::Limited(Limit::MessageTimeout));
        }
        if self.last_read + self.cfg.idle_timeout <= now {
            return Err(PumpEnd::SourceIdle);
        }
        if every.is_some() && timers.ping_due.is_some_and(|at| at <= now) {
            timers.ping_wanted = true;
        }
        Ok(self.next_deadline(timers))
    }

    /// True when the current frame's unread payload should bypass the read buffer: there is
    /// a splicer, the rest is large, it is forwarded untouched (not rewritten, not
    /// discarded), and the source's read-ahead prefix is already consumed.
    fn splice_payload_now(&self) -> bool {
        self.remaining >= splice::MIN_PAYLOAD
            && !self.discard
            && self.rewrite.is_none()
            && self
                .splice
                .as_ref()
                .is_some_and(|s| s.usable(self.stats.bytes))
    }

    /// Books `n` payload bytes that went into the splice pipe as read and forwarded.
    fn spliced_in(&mut self, n: usize) {
        self.remaining -= n as u64;
        self.stats.bytes += n as u64;
        self.stats.spliced += n as u64;
        self.last_read = Instant::now();
        if self.remaining == 0 && self.completes_message {
            self.stats.messages += 1;
        }
        if let Some(live) = &self.live {
            live.publish(&self.stats);
        }
    }

    /// Writes a close frame of guestgate's own to the destination if it is, or can be brought
    /// to, a frame boundary. Returns whether the frame was written.
    pub async fn send_close(&mut self, code: u16, reason: &str) -> bool {
        if self.flush().await.is_err() || !self.at_frame_boundary() {
            return false;
        }
        self.own = Some((OwnFrame::close(code, reason, self.cfg.source.other()), 0));
        self.flush().await.is_ok()
    }

    /// Forwards the rest of the frame in flight (and nothing after it) so a frame of
    /// guestgate's own can follow, for at most `limit`. Returns whether the destination is
    /// now at a frame boundary; bytes already read past the frame stay unscanned.
    pub async fn finish_frame(&mut self, limit: Duration) -> bool {
        if self.at_frame_boundary() {
            return true;
        }
        self.to_boundary = true;
        let _ = tokio::time::timeout(limit, self.run()).await;
        self.to_boundary = false;
        self.at_frame_boundary()
    }

    /// Reads and discards from the source until it sends a close frame or its transport ends,
    /// for at most `limit`. Used after guestgate has sent a close, so the peer's reply is read
    /// and the connection is not reset with unread bytes. Returns the close code the peer sent.
    ///
    /// The destination is done by then: either guestgate closed it (nothing is pending) or it
    /// failed or stalled. Output still pending for it is dropped, so the source's close reply
    /// is read at once instead of after the stalled write is retried for the whole `limit`.
    pub async fn drain(&mut self, limit: Duration) -> Option<u16> {
        self.discard = true;
        self.end = None;
        self.drop_pending_output();
        match tokio::time::timeout(limit, self.run()).await {
            Ok(PumpEnd::CloseForwarded(code)) => code,
            _ => None,
        }
    }

    /// Forgets every byte scanned but not yet written to the destination: the forwarded
    /// range, an own frame, a rewritten frame, and what waits in the splice pipe (the pipe is
    /// closed, not pooled).
    fn drop_pending_output(&mut self) {
        self.out_start = self.out_end;
        self.own = None;
        if let Some(r) = self.rewrite.as_mut() {
            let pending = r.pending().len();
            r.consume(pending);
        }
        if self.splice.as_ref().is_some_and(|s| s.in_pipe() > 0) {
            self.splice = None;
        }
    }

    /// Keeps relaying until the source sends its close frame, which is not forwarded, for at
    /// most `limit`. Returns whether the close arrived. Used after guestgate closed the source
    /// on behalf of a misbehaving destination, so what the source still had in flight (the
    /// answer to the destination's last valid message) is delivered first.
    pub async fn relay_until_close(&mut self, limit: Duration) -> bool {
        self.hold_close = true;
        matches!(
            tokio::time::timeout(limit, self.run()).await,
            Ok(PumpEnd::CloseForwarded(_))
        )
    }

    /// Ends the destination's write side (TCP FIN, TLS close_notify), bounded by the stall
    /// timeout.
    pub async fn shutdown_destination(&mut self) {
        let _ = tokio::time::timeout(self.cfg.write_stall, self.dst.shutdown()).await;
    }

    /// Writes the pending own frame, then the pending forwarded range, then what waits in the
    /// splice pipe, then flushes.
    async fn flush(&mut self) -> Result<(), PumpEnd> {
        let mut wrote = false;
        if let Some((own, mut at)) = self.own {
            while at < own.as_bytes().len() {
                at += self.write_some(WriteFrom::Own(own, at)).await?;
                self.own = Some((own, at));
            }
            self.own = None;
            wrote = true;
        }
        while self
            .rewrite
            .as_ref()
            .is_some_and(|r| !r.pending().is_empty())
        {
            let n = self.write_some(WriteFrom::Rewritten).await?;
            if let Some(r) = self.rewrite.as_mut() {
                r.consume(n);
            }
            wrote = true;
        }
        while self.out_start < self.out_end {
            self.out_start += self.write_some(WriteFrom::Lease).await?;
            wrote = true;
        }
        let stall = self.cfg.write_stall;
        while let Some(splicer) = self.splice.as_mut().filter(|s| s.in_pipe() > 0) {
            // Boxed (once per pipe write) so idle connections do not keep room for it.
            match Box::pin(tokio::time::timeout(stall, splicer.drain_some())).await {
                Ok(Ok(_)) => wrote = true,
                Ok(Err(e)) => return Err(PumpEnd::DestinationFailed(e.kind())),
                Err(_) => return Err(PumpEnd::DestinationStalled),
            }
        }
        if wrote {
            let dst = &mut self.dst;
            match stall_bounded(self.cfg.write_stall, |cx| {
                Pin::new(&mut *dst).poll_flush(cx)
            })
            .await
            {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(PumpEnd::DestinationFailed(e.kind())),
                None => return Err(PumpEnd::DestinationStalled),
            }
        }
        Ok(())
    }

    /// One write call; a cancelled call has written nothing, which keeps `run` cancel-safe.
    async fn write_some(&mut self, from: WriteFrom) -> Result<usize, PumpEnd> {
        let bytes = match &from {
            WriteFrom::Own(frame, at) => &frame.as_bytes()[*at..],
            WriteFrom::Lease => &self.lease.bytes()[self.out_start..self.out_end],
            WriteFrom::Rewritten => self.rewrite.as_ref().map_or(&[][..], |r| r.pending()),
        };
        let dst = &mut self.dst;
        match stall_bounded(self.cfg.write_stall, |cx| {
            Pin::new(&mut *dst).poll_write(cx, bytes)
        })
        .await
        {
            Some(Ok(0)) => Err(PumpEnd::DestinationFailed(io::ErrorKind::WriteZero)),
            Some(Ok(n)) => Ok(n),
            Some(Err(e)) => Err(PumpEnd::DestinationFailed(e.kind())),
            None => Err(PumpEnd::DestinationStalled),
        }
    }

    /// Examines bytes from `scan`, extending the output range over forwarded bytes, until the
    /// buffer is used up, a unit is incomplete, a frame must be dropped (the range is flushed
    /// first), or an end is found.
    fn scan_some(&mut self) {
        while self.scan < self.filled {
            if self.remaining > 0 {
                let n = self.remaining.min((self.filled - self.scan) as u64) as usize;
                let slow = self.rewrite.is_some() && !self.discard;
                if slow && self.out_start < self.out_end {
                    return; // write the control frames before it first
                }
                if let Some(r) = self.rewrite.as_mut().filter(|_| slow) {
                    r.absorb(&self.lease.bytes()[self.scan..self.scan + n]);
                }
                self.remaining -= n as u64;
                self.advance(n, !slow);
                if self.remaining == 0 && self.completes_message {
                    self.stats.messages += 1;
                    if slow && !self.finish_rewrite() {
                        return;
                    }
                }
                continue;
            }
            if self.to_boundary {
                return; // the frame in flight is done; the next one is not started
            }
            let bytes = &self.lease.bytes()[self.scan..self.filled];
            let header = match frame::parse_header(bytes) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    self.need_more = true;
                    return;
                }
                Err(v) => return self.stop(PumpEnd::Violation(v)),
            };
            let slow = self.rewrite.is_some() && !self.discard;
            if slow && header.kind == Kind::Data && self.out_start < self.out_end {
                return; // write the control frames before it first (before admitting it)
            }
            let completes = match self.state.admit(&header) {
                Ok(completes) => completes,
                Err(v) => return self.stop(PumpEnd::Violation(v)),
            };
            // A message counts once, at its first frame; pings and pongs count each.
            let counted = header.opcode != 0 && header.kind != Kind::Close;
            if counted
                && !self.discard
                && let Some(bucket) = self.bucket.as_mut()
                && !bucket.admit(self.last_read)
            {
                return self.stop(PumpEnd::Limited(Limit::Rate));
            }
            if header.kind == Kind::Data {
                if completes {
                    self.message_started = None;
                } else if header.opcode != 0 {
                    self.message_started = Some(self.last_read);
                }
                if let Some(r) = self.rewrite.as_mut().filter(|_| slow) {
                    r.begin_frame(&header);
                }
                self.stats.frames += 1;
                self.remaining = header.payload_len;
                self.completes_message = completes;
                self.advance(header.header_len, !slow);
                if header.payload_len == 0 && completes {
                    self.stats.messages += 1;
                    if slow && !self.finish_rewrite() {
                        return;
                    }
                }
                continue;
            }
            let len = header.frame_len() as usize;
            if bytes.len() < len {
                self.need_more = true;
                return;
            }
            if !self.scan_control(&header, len) {
                return;
            }
        }
    }

    /// Handles a complete control frame at `scan`. Returns false when scanning must pause.
    fn scan_control(&mut self, header: &Header, len: usize) -> bool {
        let frame_bytes = &self.lease.bytes()[self.scan..self.scan + len];
        let (payload, n) = frame::control_payload(frame_bytes, header);
        match header.kind {
            Kind::Pong if &payload[..n] == PING_PAYLOAD => {
                // Answers guestgate's own ping: consumed. Write what precedes it first.
                if self.out_start < self.out_end {
                    return false;
                }
                self.stats.frames += 1;
                self.advance(len, false);
                true
            }
            Kind::Close => {
                if self.hold_close && self.out_start < self.out_end {
                    return false; // write what precedes it first
                }
                self.stats.frames += 1;
                self.advance(len, !self.hold_close);
                self.stop(PumpEnd::CloseForwarded(frame::close_code(&payload[..n])));
                false
            }
            _ => {
                self.stats.frames += 1;
                self.advance(len, true);
                true
            }
        }
    }

    /// Rewrites the completed message; returns false when scanning must pause (to write the
    /// rewritten frame, or because the transform refused the message).
    fn finish_rewrite(&mut self) -> bool {
        let Some(r) = self.rewrite.as_mut() else {
            return true;
        };
        match r.finish_message() {
            Ok(()) => false,
            Err(reason) => {
                self.stop(PumpEnd::Refused(reason));
                false
            }
        }
    }

    /// Moves the scan position by `n`, forwarding those bytes or dropping them.
    fn advance(&mut self, n: usize, forward: bool) {
        self.scan += n;
        if forward && !self.discard {
            self.out_end = self.scan;
        } else {
            // Dropped bytes are only skipped when nothing is pending before them.
            debug_assert!(self.out_start == self.out_end || self.discard);
            self.out_start = self.scan;
            self.out_end = self.scan;
        }
    }

    /// Records an end; bytes after it in the buffer are discarded.
    fn stop(&mut self, end: PumpEnd) {
        self.filled = self.scan;
        self.end = Some(end);
    }
}

/// Where a write takes its bytes from.
enum WriteFrom {
    /// Guestgate's own frame, from this offset.
    Own(OwnFrame, usize),
    /// The pending range of the leased buffer.
    Lease,
    /// The slow path's rewritten frame.
    Rewritten,
}

/// The pump's timer state besides idleness: when the next ping is due, and whether one is
/// due but waits for a frame boundary.
struct Timers {
    ping_due: Option<Instant>,
    ping_wanted: bool,
}

/// Polls `op` until it is ready, or gives up (`None`) once it has been pending for `limit`.
/// The timer is only created when `op` first returns pending: a write that goes through at
/// once (nearly all of them) reads no clock and touches no timer.
async fn stall_bounded<T>(
    limit: Duration,
    mut op: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Option<T> {
    let mut stall: Option<Pin<Box<tokio::time::Sleep>>> = None;
    poll_fn(|cx| {
        if let Poll::Ready(v) = op(cx) {
            return Poll::Ready(Some(v));
        }
        let sleep = stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

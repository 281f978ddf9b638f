//! How a worker's ring is sized ([`UringParams`]) and how a worker wakes another
//! ([`RelayWake`]).

/// The buffer group id of the worker's receive ring.
pub(super) const BGID: u16 = 0;
/// Receive buffers per worker. With incremental consumption a completion takes only the bytes it
/// received; on older kernels each completion takes a whole buffer, so this bounds how many
/// connections can deliver data in one turn before ENOBUFS (handled, but a re-arm costs).
const RECV_BUFFERS: u16 = 256;
/// Bytes per receive buffer: 256 × 32 KiB = 8 MiB per worker. Large enough that a 16 KiB
/// message usually arrives in one completion (zero-copy path).
///
/// This is address space, not resident memory, until the kernel receives into it: a page becomes
/// resident at its first receive. Receives walk the ring in order, so under load (after 8 MiB
/// received) all of it is resident; a quiet worker gives the pages back at most once a second
/// (`BufRing::release_pages` from `UringDriver::trim`), so an idle server keeps none of it.
/// RSS under sustained load is bounded by the ring's total size (BENCHMARKS.md, "io_uring
/// receive ring: resident memory").
const RECV_BUF_SIZE: u32 = 32 * 1024;
/// Submission queue entries.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries: room for a burst of receives and sends from every connection before
/// the kernel has to park completions in its overflow list.
const CQ_ENTRIES: u32 = 4096;

/// Sizes a worker's ring; the defaults suit a server, tests shrink them to force the ENOBUFS and
/// completion-queue-overflow paths.
#[derive(Debug, Clone, Copy)]
pub struct UringParams {
    /// Receive buffers in the provided-buffer ring (a power of two, at most 32768).
    pub recv_buffers: u16,
    /// Bytes per receive buffer.
    pub recv_buf_size: u32,
    /// Submission queue entries.
    pub sq_entries: u32,
    /// Completion queue entries (at least `sq_entries`).
    pub cq_entries: u32,
    /// How this worker wakes another one after relaying it messages; see [`RelayWake`].
    pub relay_wake: RelayWake,
}

/// How an io_uring worker wakes another worker that it handed pub/sub messages to.
///
/// Both are built; eventfd is the default because MSG_RING did not measure faster. Measured on the
/// shared 2-core VM (Linux 6.18, other builds running, so only differences of a factor would
/// count), commit 4786213:
///
/// - `cargo bench -p wsd --bench relay_wake` (worker A wakes B asleep in `io_uring_enter`, B
///   wakes A back; median of criterion's estimate, µs per round trip): threads free to use both
///   cores, `taskset -c 0,1`, 5 runs: eventfd 9.21 / 9.58 / 7.46 / 6.45 / 5.78, MSG_RING
///   8.10 / 9.90 / 7.61 / 6.68 / 6.86; both on one core, `taskset -c 0`: eventfd 8.49, MSG_RING
///   11.00. MSG_RING to a `DEFER_TASKRUN` ring is delivered as task work on the target, which
///   costs about what the eventfd write and multishot poll cost.
/// - Loadtest, 2 workers on core 0, 4 subscribers (2 per worker), 20,000 publications/s so every
///   publication wakes the other worker (`wsd-loadtest fanout --subscribers 4 --rate 20000
///   --duration 4`), server CPU µs per delivery over 3 alternating runs: eventfd 6.25 / 3.97 /
///   4.44, MSG_RING 4.06 / 4.68 / 3.69; p50 latency 77-89 µs vs 75-97 µs. No difference
///   beyond the noise.
///
/// MSG_RING saves the sender's `write` syscall (the wake-up rides on the turn's `io_uring_enter`)
/// and the target's eventfd `read`, i.e. two syscalls per woken worker per turn, not per message;
/// `WSD_RELAY_WAKE=msg_ring` selects it so a quiet machine can settle the choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RelayWake {
    /// Write the target's eventfd (one `write` syscall per target per turn, at flush).
    Eventfd,
    /// Post a completion to the target's ring with `IORING_OP_MSG_RING`, queued with this turn's
    /// sends and submitted by the same `io_uring_enter` (no syscall of its own).
    #[value(name = "msg_ring")]
    MsgRing,
}

impl RelayWake {
    /// The choice, from measurements (see the enum's documentation).
    pub const DEFAULT: RelayWake = RelayWake::Eventfd;
}

impl Default for UringParams {
    fn default() -> Self {
        UringParams {
            recv_buffers: RECV_BUFFERS,
            recv_buf_size: RECV_BUF_SIZE,
            sq_entries: SQ_ENTRIES,
            cq_entries: CQ_ENTRIES,
            relay_wake: RelayWake::DEFAULT,
        }
    }
}

/// Most iovecs one `SendMsg` carries (the kernel's `UIO_MAXIOV`); the rest goes in the next.
pub(super) const IOV_MAX: usize = 1024;

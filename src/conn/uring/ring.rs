//! The io_uring itself for the `uring` executor: how a worker's ring is set up (and the start-up
//! probe that says why it cannot be), the tokens that tie a completion to its connection and
//! operation, and the ring-mapped provided-buffer group that multishot receives fill.
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// Submission queue entries per ring. A turn queues at most a few operations per connection
/// that completed something (a send, a re-armed receive, a close), and a full queue is submitted
/// early ([`super::Worker::push`]), so this bounds a batch, not the connections.
pub const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries: 4× the submission queue, so a turn's completions (a multishot
/// receive posts one per arrival) rarely spill into the kernel's overflow list.
pub const CQ_ENTRIES: u32 = 4 * SQ_ENTRIES;

/// Builds a worker's ring.
/// - `SINGLE_ISSUER`: only this thread submits, so the kernel skips the submission lock.
/// - `DEFER_TASKRUN`: completion work (copying a received segment, posting the CQE) runs when we
///   ask for completions in `io_uring_enter`, in our thread and in one batch, instead of
///   interrupting the loop with task work after every wake-up.
/// - `COOP_TASKRUN`: no inter-processor interrupt to make us run that work.
/// - `SUBMIT_ALL`: one bad entry does not stop the rest of the batch from being submitted.
///
/// The experiment measured the same loop without DEFER_TASKRUN and fixed descriptors at
/// 1.16× the CPU per request of an epoll loop, and 0.905× with them.
pub fn build(entries: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_submit_all()
        .setup_cqsize(entries * 4)
        .build(entries)
}

/// Whether this process can create a ring as the workers do; the error is one line that names
/// the reason and suggests an architecture that needs no io_uring.
///
/// The ring is made and dropped on a short-lived thread (joined before returning, so a caller
/// that forks afterwards, like the supervisor, is single-threaded again): tearing a ring down
/// queues kernel work for the task that made it, signalled as a pending notification, and that
/// task's next interruptible wait on a socket with a timeout (SO_RCVTIMEO) fails with EINTR. A
/// test thread that probed, then read a response, saw "connection closed" a few times a run.
pub fn probe() -> Result<(), String> {
    let made = std::thread::spawn(|| build(8).map(drop))
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the probe thread panicked")));
    made.map_err(|e| unavailable(&e, &std::fs::read_to_string(DISABLED).ok()))
}

/// The sysctl that turns io_uring off for everyone (2) or for unprivileged processes (1).
const DISABLED: &str = "/proc/sys/kernel/io_uring_disabled";

/// The start-up error for a failed `io_uring_setup`. `disabled`: the sysctl's value, if any.
fn unavailable(e: &io::Error, disabled: &Option<String>) -> String {
    let why = match (e.raw_os_error(), disabled.as_deref().map(str::trim)) {
        (Some(libc::ENOSYS), _) => "this kernel has no io_uring (ENOSYS)".to_owned(),
        (Some(libc::EPERM), Some(v)) if v != "0" => {
            format!("io_uring is disabled here (kernel.io_uring_disabled = {v})")
        }
        (Some(libc::EPERM), _) => {
            "io_uring_setup is not permitted (EPERM: a seccomp profile or the sysctl)".to_owned()
        }
        (Some(libc::EINVAL), _) => {
            "this kernel lacks DEFER_TASKRUN (Linux 6.1 or later is needed)".to_owned()
        }
        _ => format!("io_uring_setup failed: {e}"),
    };
    format!("io_uring is unavailable: {why}; use --arch hybrid")
}

/// What a completion belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// An operation whose completion needs nothing (close, cancel): normally not even posted
    /// (`CQE_SKIP_SUCCESS`).
    Ignore = 0,
    Accept,
    Signal,
    Recv,
    Send,
    /// A small file body read into the reply's buffer.
    Read,
    /// File to pipe.
    SpliceIn,
    /// Pipe to socket.
    SpliceOut,
    /// The half-close before lingering.
    Shutdown,
    /// A CGI script's stdout read into its run's buffer.
    CgiRead,
    /// The request body written to a CGI script's stdin.
    CgiWrite,
    /// A finished CGI script's pidfd became readable: it exited (the token's slot is the
    /// worker's orphan index, not a connection).
    Reap,
}

const OPS: [Op; 12] = [
    Op::Ignore,
    Op::Accept,
    Op::Signal,
    Op::Recv,
    Op::Send,
    Op::Read,
    Op::SpliceIn,
    Op::SpliceOut,
    Op::Shutdown,
    Op::CgiRead,
    Op::CgiWrite,
    Op::Reap,
];

/// A completion's user data: the operation, the connection slot, and the slot's generation (a
/// slot is reused; a late completion of its previous connection must not touch the new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub op: Op,
    pub slot: u32,
    pub gen: u16,
}

impl Token {
    pub fn new(op: Op, slot: u32, gen: u16) -> Token {
        Token { op, slot, gen }
    }

    pub fn encode(self) -> u64 {
        (self.op as u64) << 56 | (self.gen as u64) << 32 | self.slot as u64
    }

    pub fn decode(data: u64) -> Token {
        Token {
            op: OPS
                .get((data >> 56) as usize)
                .copied()
                .unwrap_or(Op::Ignore),
            gen: (data >> 32) as u16,
            slot: data as u32,
        }
    }
}

/// The provided-buffer group multishot receives take from.
pub const GROUP: u16 = 0;
/// Buffers in the group, and their size: a request head is a few hundred bytes, so 4 KiB holds
/// one whole; 512 of them (2 MiB per worker, touched as used) are more than the receives that
/// complete in one turn, and every buffer goes back to the ring within the turn that filled it.
pub const BUFFERS: u16 = 512;
pub const BUFFER_SIZE: usize = 4096;

/// A ring-mapped provided-buffer group: `entries` descriptors the kernel takes buffers from (at
/// its head) and that we give buffers back to (at our tail). A connection waiting for a request
/// holds no buffer of its own: the kernel picks one only when bytes arrive.
///
/// The bookkeeping (tail, mask, publication) is plain memory: `give_back` writes the next
/// descriptor and advances a private tail; `publish` makes all of them visible to the kernel
/// with one release store, once per loop turn.
pub struct BufRing {
    entries: *mut BufRingEntry,
    count: u16,
    tail: u16,
    bufs: Box<[u8]>,
    size: usize,
}

impl BufRing {
    /// A group of `count` (a power of two) buffers of `size` bytes, all given to the ring.
    pub fn new(count: u16, size: usize) -> BufRing {
        assert!(count.is_power_of_two());
        let layout = Self::layout(count);
        // SAFETY: a non-zero size; the kernel requires the descriptors page-aligned.
        let entries = unsafe { alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        let mut ring = BufRing {
            entries,
            count,
            tail: 0,
            bufs: vec![0; count as usize * size].into_boxed_slice(),
            size,
        };
        for bid in 0..count {
            ring.give_back(bid);
        }
        ring.publish();
        ring
    }

    fn layout(count: u16) -> Layout {
        let bytes = count as usize * std::mem::size_of::<BufRingEntry>();
        Layout::from_size_align(bytes.max(4096), 4096).expect("page-aligned layout")
    }

    /// Registers the group with `ring`.
    pub fn register(&self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: the descriptors live as long as `self`, and a worker declares its ring before
        // its buffer group, so the ring (and with it the registration) goes first.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(self.entries as u64, self.count, GROUP, 0)
        }
    }

    /// The first `len` bytes of buffer `bid`, as a completion reported them.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        let start = (bid as usize % self.count as usize) * self.size;
        &self.bufs[start..start + len.min(self.size)]
    }

    /// Hands buffer `bid` back to the kernel (visible at the next [`BufRing::publish`]).
    pub fn give_back(&mut self, bid: u16) {
        let bid = bid % self.count;
        let at = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `at` < count, inside the descriptors; the kernel reads descriptors only
        // between its head and the published tail, and this one is past the published tail.
        let entry = unsafe { &mut *self.entries.add(at) };
        // SAFETY: the buffer stays allocated as long as the group.
        entry.set_addr(unsafe { self.bufs.as_ptr().add(bid as usize * self.size) } as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the tail: every buffer given back so far is the kernel's to use.
    pub fn publish(&self) {
        // SAFETY: the tail field of the first descriptor is a u16 the kernel reads atomically.
        let tail = unsafe { &*(BufRingEntry::tail(self.entries) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The published tail (for tests).
    #[cfg(test)]
    fn published(&self) -> u16 {
        // SAFETY: as in publish.
        unsafe { &*(BufRingEntry::tail(self.entries) as *const AtomicU16) }.load(Ordering::Acquire)
    }

    /// The descriptor at ring position `at` (for tests).
    #[cfg(test)]
    fn entry(&self, at: u16) -> (u64, u32, u16) {
        // SAFETY: masked into the descriptors.
        let e = unsafe { &*self.entries.add((at & (self.count - 1)) as usize) };
        (e.addr(), e.len(), e.bid())
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.entries.cast(), Self::layout(self.count)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for op in OPS {
            let t = Token::new(op, 123_456, 65_535);
            assert_eq!(Token::decode(t.encode()), t);
        }
        // An unknown operation byte is ignored, not misread.
        assert_eq!(Token::decode(0xff << 56).op, Op::Ignore);
    }

    #[test]
    fn a_new_group_gives_every_buffer_to_the_kernel() {
        let ring = BufRing::new(8, 64);
        assert_eq!(ring.published(), 8);
        let base = ring.bufs.as_ptr() as u64;
        for at in 0..8 {
            assert_eq!(ring.entry(at), (base + at as u64 * 64, 64, at));
        }
    }

    #[test]
    fn buffers_given_back_wrap_around_and_show_only_once_published() {
        let mut ring = BufRing::new(4, 16);
        // The kernel took buffers 2 and 0 (in that order); we give them back.
        ring.give_back(2);
        ring.give_back(0);
        assert_eq!(ring.published(), 4, "not visible before publish");
        ring.publish();
        assert_eq!(ring.published(), 6);
        let base = ring.bufs.as_ptr() as u64;
        // Positions 4 and 5 wrap onto descriptors 0 and 1.
        assert_eq!(ring.entry(4), (base + 2 * 16, 16, 2));
        assert_eq!(ring.entry(5), (base, 16, 0));
        // The tail wraps at 2^16 like the kernel's.
        ring.tail = u16::MAX;
        ring.give_back(1);
        assert_eq!(ring.tail, 0);
    }

    #[test]
    fn a_completion_never_reads_past_its_buffer() {
        let ring = BufRing::new(2, 16);
        assert_eq!(ring.get(1, 100).len(), 16);
        assert_eq!(
            ring.get(1, 5).as_ptr() as usize - ring.bufs.as_ptr() as usize,
            16
        );
    }

    #[test]
    fn setup_failures_name_the_reason_and_the_way_out() {
        let err = |code| io::Error::from_raw_os_error(code);
        let msg = unavailable(&err(libc::EPERM), &Some("2\n".into()));
        assert!(msg.contains("kernel.io_uring_disabled = 2"), "{msg}");
        assert!(msg.ends_with("use --arch hybrid"), "{msg}");
        assert!(unavailable(&err(libc::ENOSYS), &None).contains("ENOSYS"));
        assert!(unavailable(&err(libc::EPERM), &Some("0".into())).contains("seccomp"));
        assert!(!unavailable(&err(libc::EINVAL), &None).contains('\n'));
    }
}

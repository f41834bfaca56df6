//! A crash inside the C libraries (libhdf5) ends the process with one line naming the file and
//! the element being read or written, instead of a silent death by signal.
//!
//! cartscope's own code cannot crash (no unsafe memory access outside checked FFI calls, and a
//! panic is caught as an internal error), but libhdf5 can: damaged metadata makes some versions
//! dereference wild pointers. Every HDF5 access runs inside a [`Guard`] ([`reading`] or
//! [`writing`]) that records, per thread, the file and (through [`element`]) the element being
//! touched, in fixed buffers. [`install`] sets handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE and
//! SIGABRT which, when the faulting thread holds a guard, write the prepared line
//!
//! ```text
//! error: P03.h5ad: the HDF5 library crashed (SIGSEGV) while reading /obs/cell_type (the file is damaged or not a valid HDF5 file)
//! ```
//!
//! and end the process with exit code 2 for an input, 1 for an output. Without a guard the
//! previous handler runs (Rust's stack-overflow report, or the default action).
//!
//! Why a handler and not a child process per run: the handler costs nothing on the good path
//! (no second process reading a multi-gigabyte input, no copying of results between
//! processes), and covers `run`, `info`, `convert`, `run --joint` and `aggregate` alike. It
//! cannot survive every failure (an out-of-memory kill, a corrupted heap that breaks even
//! `write`), which is why `batch` additionally runs each sample in its own process.
//!
//! Damaged metadata can also make libhdf5 loop forever (HDF5 2.2 still does, reading a string
//! attribute whose global heap holds a free-space object of size 0). A stall watch (a thread started by
//! [`install`]) ends the process the same way when a guarded thread starts no new element for
//! [`DEFAULT_STALL_SECONDS`] (`CARTSCOPE_HDF5_STALL_SECONDS` overrides it; 0 turns it off), or
//! for a thirtieth of that (at least 1 s) while the element is metadata only (an attribute, a
//! header: [`metadata_element`]), and the process burned CPU for at least a quarter of that time: a
//! loop does, a read waiting on a slow disk or a stopped process does not.
//!
//! The handler only reads thread-local plain data, calls `write(2)` and `_exit(2)`, all
//! async-signal-safe.

use std::cell::{Cell, UnsafeCell};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

const PATH_MAX: usize = 1024;
const ELEMENT_MAX: usize = 256;

/// What the current thread is doing with an HDF5 file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Idle,
    Reading,
    Writing,
}

/// Fixed-size, allocation-free state the signal handler can read.
struct Slot {
    mode: Cell<Mode>,
    path: UnsafeCell<[u8; PATH_MAX]>,
    path_len: Cell<usize>,
    element: UnsafeCell<[u8; ELEMENT_MAX]>,
    element_len: Cell<usize>,
}

thread_local! {
    // Const-initialised and without a destructor: accessing it is a plain thread-local load,
    // safe inside a signal handler.
    static SLOT: Slot = const {
        Slot {
            mode: Cell::new(Mode::Idle),
            path: UnsafeCell::new([0; PATH_MAX]),
            path_len: Cell::new(0),
            element: UnsafeCell::new([0; ELEMENT_MAX]),
            element_len: Cell::new(0),
        }
    };
}

/// Copies as much of `text` as fits into `buf` (cut at a character boundary); returns the
/// length. The caller publishes the length after the bytes, so the handler never reads a
/// half-copied tail.
fn fill<const N: usize>(buf: &UnsafeCell<[u8; N]>, text: &str) -> usize {
    let mut end = text.len().min(N);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // SAFETY: only this thread writes its slot; the handler reads it on this same thread.
    unsafe { (&mut *buf.get())[..end].copy_from_slice(&text.as_bytes()[..end]) };
    end
}

fn set_path(slot: &Slot, path: &Path) {
    slot.path_len.set(0);
    let end = fill(&slot.path, &path.to_string_lossy());
    slot.path_len.set(end);
}

fn set_element(slot: &Slot, element: &str) {
    slot.element_len.set(0);
    let end = fill(&slot.element, element);
    slot.element_len.set(end);
}
/// The state a guard replaced, restored when it ends.
struct Saved {
    mode: Mode,
    path: String,
    element: String,
}

fn saved(slot: &Slot) -> Saved {
    // SAFETY: reads this thread's own buffers up to their published lengths.
    let (path, element) = unsafe {
        (
            String::from_utf8_lossy(&(&*slot.path.get())[..slot.path_len.get()]).into_owned(),
            String::from_utf8_lossy(&(&*slot.element.get())[..slot.element_len.get()]).into_owned(),
        )
    };
    Saved {
        mode: slot.mode.get(),
        path,
        element,
    }
}

/// While alive, a crash of this thread is reported as a crash on its file. Guards nest: the
/// inner one's file and element apply until it ends.
#[must_use = "the guard covers the code until it is dropped"]
pub struct Guard {
    previous: Saved,
    // A guard belongs to its thread.
    _not_send: std::marker::PhantomData<*const ()>,
}

fn guard(mode: Mode, path: &Path) -> Guard {
    SLOT.with(|slot| {
        let previous = saved(slot);
        if previous.mode == Mode::Idle {
            BUSY.fetch_add(1, Ordering::SeqCst);
        }
        slot.mode.set(Mode::Idle);
        set_path(slot, path);
        set_element(slot, "");
        slot.mode.set(mode);
        progress_at(mode, path, "");
        Guard {
            previous,
            _not_send: std::marker::PhantomData,
        }
    })
}

/// Covers reading the input `path`.
pub fn reading(path: &Path) -> Guard {
    guard(Mode::Reading, path)
}

/// Covers writing the output `path`.
pub fn writing(path: &Path) -> Guard {
    guard(Mode::Writing, path)
}

/// Names the element (e.g. `/obs/cell_type`) the current guard's file is at; no effect
/// without a guard.
pub fn element(name: &str) {
    SLOT.with(|slot| {
        let mode = slot.mode.get();
        if mode != Mode::Idle {
            METADATA.store(false, Ordering::SeqCst);
            set_element(slot, name);
            // SAFETY: this thread's own buffer, up to its published length.
            let path = unsafe { &(&*slot.path.get())[..slot.path_len.get()] };
            progress_at(mode, Path::new(&*String::from_utf8_lossy(path)), name);
        }
    });
}

/// [`element`] for an access that touches metadata only (an attribute, a dataset's or group's
/// header, a shape): no bulk data, so the stall watch's shorter metadata bound applies until
/// the next [`element`].
pub fn metadata_element(name: &str) {
    element(name);
    METADATA.store(true, Ordering::SeqCst);
}

/// Marks progress inside a guard without naming a new element (a long parse calls it now and
/// then, so the stall watch below never mistakes slow work for a hang).
pub fn progress() {
    PROGRESS_MS.store(now_ms(), Ordering::SeqCst);
    PROGRESS_CPU_MS.store(cpu_ms(), Ordering::SeqCst);
}

/// Threads inside a guard, all together.
static BUSY: AtomicUsize = AtomicUsize::new(0);
/// Whether the latest element is metadata only ([`metadata_element`]).
static METADATA: AtomicBool = AtomicBool::new(false);
/// When a guarded thread last started an element, in milliseconds since [`start`].
static PROGRESS_MS: AtomicU64 = AtomicU64::new(0);
/// The process's CPU time at that moment, in milliseconds.
static PROGRESS_CPU_MS: AtomicU64 = AtomicU64::new(0);
/// The file, element and direction of the latest progress, for the stall message.
static LATEST: Mutex<Option<(Mode, String, String)>> = Mutex::new(None);

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    start().elapsed().as_millis() as u64
}

/// CPU time of the whole process so far, in milliseconds.
fn cpu_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    (ts.tv_sec.max(0) as u64) * 1000 + (ts.tv_nsec.max(0) as u64) / 1_000_000
}

fn progress_at(mode: Mode, path: &Path, element: &str) {
    progress();
    if let Ok(mut latest) = LATEST.lock() {
        *latest = Some((mode, path.display().to_string(), element.to_string()));
    }
}

/// The environment variable that sets the stall bound in seconds (0 turns the watch off).
pub const STALL_ENV: &str = "CARTSCOPE_HDF5_STALL_SECONDS";
/// The default stall bound: no single element of a valid file takes minutes to read or write.
pub const DEFAULT_STALL_SECONDS: u64 = 300;

/// The bound for metadata-only accesses: a thirtieth of the stall bound, at least 1 s (10 s by
/// default). Reading an attribute or a header takes milliseconds of CPU; the endless loops
/// found in libhdf5 2.2 are all in attribute reads.
fn metadata_bound_ms(bound_ms: u64) -> u64 {
    (bound_ms / 30).max(1_000).min(bound_ms)
}

/// The stall watch: damaged metadata can also send libhdf5 into an endless loop (a damaged
/// global heap did, in the damaged-input campaign). A thread that stays inside a guard with no
/// new element for longer than the bound, while the process burns CPU (at least a quarter of the time),
/// ends the process with one line, exit 2 for an input
/// (1 for an output), as a crash does; `batch` then records the sample as failed.
fn watch_stalls() {
    let secs = match std::env::var(STALL_ENV) {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(s) => s,
            Err(_) => {
                eprintln!(
                    "warning: {STALL_ENV}={v:?} is not a number of seconds; using {DEFAULT_STALL_SECONDS}"
                );
                DEFAULT_STALL_SECONDS
            }
        },
        Err(_) => DEFAULT_STALL_SECONDS,
    };
    if secs == 0 {
        return;
    }
    let bound_ms = secs.saturating_mul(1000);
    let meta_ms = metadata_bound_ms(bound_ms);
    let tick = Duration::from_millis((meta_ms / 10).clamp(50, 1000));
    let _ = std::thread::Builder::new()
        .name("hdf5-stall-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                if BUSY.load(Ordering::SeqCst) == 0 {
                    continue;
                }
                let since = PROGRESS_MS.load(Ordering::SeqCst);
                let limit = if METADATA.load(Ordering::SeqCst) {
                    meta_ms
                } else {
                    bound_ms
                };
                let stalled = now_ms().saturating_sub(since);
                // An endless loop burns CPU; a read waiting on a slow disk or a stopped
                // process (Ctrl-Z) does not, and is never taken for one. A quarter of a core
                // counts as burning: on a loaded machine (a batch running several processes
                // per core) a spinning thread gets well under a whole core.
                let burned = cpu_ms().saturating_sub(PROGRESS_CPU_MS.load(Ordering::SeqCst));
                if stalled <= limit || burned * 4 < stalled || BUSY.load(Ordering::SeqCst) == 0 {
                    continue;
                }
                let (mode, path, element) = LATEST
                    .lock()
                    .ok()
                    .and_then(|l| l.clone())
                    .unwrap_or((Mode::Reading, String::from("?"), String::new()));
                let (verb, code, hint) = match mode {
                    Mode::Writing => ("writing", 1, "a damaged or hung file system?"),
                    _ => ("reading", 2, "the file is damaged or not a valid HDF5 file"),
                };
                let what = if element.is_empty() { "it" } else { element.as_str() };
                write_all(
                    format!(
                        "error: {path}: the HDF5 library made no progress for {} s while {verb} {what} ({hint}; {STALL_ENV} sets this bound)\n",
                        limit / 1000
                    )
                    .as_bytes(),
                );
                // SAFETY: ends the process at once, as a crash would; outputs are written to
                // temporary names, so nothing half-written looks complete.
                unsafe { libc::_exit(code) }
            }
        });
}

impl Drop for Guard {
    fn drop(&mut self) {
        SLOT.with(|slot| {
            slot.mode.set(Mode::Idle);
            set_path(slot, Path::new(&self.previous.path));
            set_element(slot, &self.previous.element);
            slot.mode.set(self.previous.mode);
            progress();
            if self.previous.mode == Mode::Idle {
                BUSY.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }
}

const SIGNALS: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// The handlers in place before [`install`], one per entry of `SIGNALS`.
static PREVIOUS: OnceLock<[Option<libc::sigaction>; SIGNALS.len()]> = OnceLock::new();

fn signal_name(sig: libc::c_int) -> &'static [u8] {
    match sig {
        libc::SIGSEGV => b"SIGSEGV",
        libc::SIGBUS => b"SIGBUS",
        libc::SIGILL => b"SIGILL",
        libc::SIGFPE => b"SIGFPE",
        libc::SIGABRT => b"SIGABRT",
        _ => b"a signal",
    }
}

fn write_all(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: write(2) on stderr with a valid buffer; async-signal-safe.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return;
        }
        rest = &rest[n as usize..];
    }
}

extern "C" fn on_crash(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let handled = SLOT.with(|slot| {
        let mode = slot.mode.get();
        if mode == Mode::Idle {
            return false;
        }
        // SAFETY: this thread's buffers, read up to their published lengths.
        let (path, element) = unsafe {
            (
                &(&*slot.path.get())[..slot.path_len.get()],
                &(&*slot.element.get())[..slot.element_len.get()],
            )
        };
        let (verb, code): (&[u8], i32) = match mode {
            Mode::Writing => (b"writing", 1),
            _ => (b"reading", 2),
        };
        write_all(b"error: ");
        write_all(path);
        write_all(b": the HDF5 library crashed (");
        write_all(signal_name(sig));
        write_all(b") while ");
        write_all(verb);
        write_all(b" ");
        write_all(if element.is_empty() { b"it" } else { element });
        write_all(if mode == Mode::Writing {
            b" (a damaged file system or a full disk?)\n"
        } else {
            b" (the file is damaged or not a valid HDF5 file)\n"
        });
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(code) }
    });
    if !handled {
        chain(sig, info, context);
    }
}

/// Hands the signal to the handler that was there before (or the default action).
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let Some(i) = SIGNALS.iter().position(|&s| s == sig) else {
        return;
    };
    match PREVIOUS.get().and_then(|p| p[i]) {
        Some(old) if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN => {
            if old.sa_flags & libc::SA_SIGINFO != 0 {
                type Action = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
                // SAFETY: an SA_SIGINFO handler has this signature.
                let f =
                    unsafe { std::mem::transmute::<libc::sighandler_t, Action>(old.sa_sigaction) };
                f(sig, info, context);
            } else {
                type Handler = extern "C" fn(libc::c_int);
                // SAFETY: a plain handler takes the signal number.
                let f =
                    unsafe { std::mem::transmute::<libc::sighandler_t, Handler>(old.sa_sigaction) };
                f(sig);
            }
        }
        _ => {
            // The default action: restore it and return, so the fault happens again and ends
            // the process with the signal as before.
            // SAFETY: plain sigaction/signal calls, async-signal-safe.
            // Raised again (pending until this handler returns) for a signal sent rather than
            // caused by a fault, which would not happen again by itself.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
        }
    }
}

/// Installs the crash handlers once per process (the binary calls it first thing in `main`).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut previous = [None; SIGNALS.len()];
        for (i, &sig) in SIGNALS.iter().enumerate() {
            // SAFETY: sigaction queried with a zeroed out-struct.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0 {
                    previous[i] = Some(old);
                }
            }
        }
        // Known before any handler that reads them is in place.
        let _ = PREVIOUS.set(previous);
        start();
        watch_stalls();
        for &sig in &SIGNALS {
            // SAFETY: sigaction with a zeroed struct filled field by field.
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_crash as *const () as libc::sighandler_t;
                // On the alternate stack Rust sets up per thread, so a crash deep in a C
                // library's recursion still gets its message out.
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                libc::sigaction(sig, &new, std::ptr::null_mut());
            }
        }
    });
}

/// Fault injection for the tests of the crash handling: with `CARTSCOPE_TEST_FAULT` set to
/// `NAME:FAULT[,NAME:FAULT...]`, opening an input whose file name is `NAME` does FAULT instead
/// of reading it: `segv` or `abort` (inside the reading guard, as a crash of libhdf5 would),
/// `segv-unguarded` (outside any guard: the process dies by the signal), `kill` (SIGKILL, as
/// the out-of-memory killer would), `hang` (sleeps until killed, as a read waiting on a stalled
/// disk), `spin` (burns CPU until killed, as libhdf5's endless loops) and `spin-attribute` (the
/// same inside a metadata-only element). Unset, it costs one
/// environment lookup per opened file.
pub fn inject_test_fault(path: &Path) {
    let Some(spec) = std::env::var_os("CARTSCOPE_TEST_FAULT") else {
        return;
    };
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let spec = spec.to_string_lossy();
    let Some(fault) = spec
        .split(',')
        .filter_map(|entry| entry.rsplit_once(':'))
        .find_map(|(n, fault)| (n == name).then_some(fault))
    else {
        return;
    };
    element("/injected");
    // SAFETY: raising signals and aborting are the point here; none returns into Rust state
    // that could be observed in a broken form.
    unsafe {
        match fault {
            "segv" => {
                libc::raise(libc::SIGSEGV);
            }
            "abort" => libc::abort(),
            "segv-unguarded" => {
                // As a fault outside any guard ends: by the signal's default action.
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
            "kill" => {
                libc::raise(libc::SIGKILL);
            }
            "hang" => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            "spin" | "spin-attribute" => {
                if fault == "spin-attribute" {
                    metadata_element("/injected attribute");
                }
                // Burns CPU without progress, as libhdf5's endless loops do.
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            _ => {}
        }
    }
}

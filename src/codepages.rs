//! Unmaps the code pages that only start-up ran.
//!
//! Most of an idle gateway's resident memory is pages of its own binary:
//! start-up reads the configuration (figment, toml, clap), parses the log
//! filter, opens and migrates the databases, builds every bridge and
//! connects the component streams, and the dynamic loader reads the whole
//! relocation table. The kernel maps each page touched (and its
//! neighbours: "fault-around", 64 KiB) into the process and leaves it there
//! for good, so the resident set keeps code that never runs again.
//!
//! Once start-up is over, [`release`] drops the mappings of the pages of
//! every read-only, unmodified segment of the loaded objects (the binary's
//! code, read-only data and relocation tables; libc's and the loader's)
//! with `madvise(MADV_DONTNEED)`. The pages stay in the page cache: what
//! runs afterwards maps them again with a minor fault (no disk read), so
//! the resident set becomes the code the gateway actually runs. Pages that
//! were written (relocated data, a debugger's breakpoints) are anonymous
//! and never given back: each page is checked in `/proc/self/pagemap`
//! first, and only present, file-backed pages of segments without write
//! permission are dropped — for those, `MADV_DONTNEED` on a private file
//! mapping means "read again from the file", which is what they hold.
//!
//! Nothing is done on other systems than Linux, or when
//! `/proc/self/pagemap` cannot be read.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long after start-up the pages are given back: the component
/// handshakes, the bridges' start and the restored sessions are done by
/// then (code they run later is simply mapped again).
pub const AFTER_START: Duration = Duration::from_secs(5);

/// Gives back start-up's pages [`AFTER_START`] from now, off the async
/// workers (reading the page map of a 60 MiB binary takes a few ms).
pub fn release_after_start(shutdown: CancellationToken) {
    if !imp::SUPPORTED {
        return;
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(AFTER_START) => {}
        }
        match tokio::task::spawn_blocking(release).await {
            Ok(Some(bytes)) => tracing::debug!(
                "start-up code pages unmapped: {} KiB (mapped again from the page cache when they run)",
                bytes / 1024
            ),
            Ok(None) => tracing::debug!("start-up code pages kept: /proc/self/pagemap unreadable"),
            Err(e) => tracing::debug!("start-up code pages kept: {e}"),
        }
    });
}

/// Drops the mappings of the present, unmodified pages of every read-only
/// segment of the loaded objects; the bytes given back, or `None` when the
/// page map cannot be read (then nothing was done).
pub fn release() -> Option<usize> {
    imp::release()
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::CStr;
    use std::fs::File;
    use std::ops::Range;
    use std::os::unix::fs::FileExt;

    pub const SUPPORTED: bool = true;

    /// `/proc/PID/pagemap` bits (Documentation/admin-guide/mm/pagemap.rst).
    const PRESENT: u64 = 1 << 63;
    const FILE_OR_SHARED: u64 = 1 << 61;

    fn page_size() -> usize {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).unwrap_or(4096)
    }

    /// The address ranges of the read-only loadable segments of every
    /// loaded object except the vDSO (kernel memory, not a file),
    /// rounded inwards to whole pages.
    fn read_only_segments(page: usize) -> Vec<Range<usize>> {
        unsafe extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: dl_iterate_phdr passes a valid info for the call, and
            // `data` is the Vec handed to it below, used by no one else.
            let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<(usize, usize)>>()) };
            if !info.dlpi_name.is_null() {
                // SAFETY: a non-null dlpi_name is a NUL-terminated string.
                let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes();
                if name.starts_with(b"linux-vdso") || name.starts_with(b"linux-gate") {
                    return 0;
                }
            }
            if info.dlpi_phdr.is_null() {
                return 0;
            }
            // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
            let headers =
                unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
            for h in headers {
                if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0 {
                    let (Ok(vaddr), Ok(size)) =
                        (usize::try_from(h.p_vaddr), usize::try_from(h.p_memsz))
                    else {
                        continue;
                    };
                    let start = (info.dlpi_addr as usize).wrapping_add(vaddr);
                    out.push((start, start.wrapping_add(size)));
                }
            }
            0
        }
        let mut raw: Vec<(usize, usize)> = Vec::new();
        // SAFETY: the callback only reads the headers it is given and
        // writes to `raw`, which outlives the call.
        unsafe {
            libc::dl_iterate_phdr(Some(each), (&raw mut raw).cast());
        }
        raw.into_iter()
            .filter_map(|(start, end)| {
                let start = start.checked_add(page - 1)? / page * page;
                let end = end / page * page;
                (start < end).then_some(start..end)
            })
            .collect()
    }

    /// The runs of pages of `range` that are present and file-backed (so
    /// unmodified: a written page of a private mapping is anonymous).
    fn droppable(pagemap: &File, range: &Range<usize>, page: usize) -> Option<Vec<Range<usize>>> {
        let pages = (range.end - range.start) / page;
        let mut raw = vec![0u8; pages * 8];
        let offset = u64::try_from(range.start / page * 8).ok()?;
        pagemap.read_exact_at(&mut raw, offset).ok()?;
        let mut runs: Vec<Range<usize>> = Vec::new();
        for (i, entry) in raw.chunks_exact(8).enumerate() {
            let entry = u64::from_ne_bytes(entry.try_into().ok()?);
            if entry & (PRESENT | FILE_OR_SHARED) != PRESENT | FILE_OR_SHARED {
                continue;
            }
            let at = range.start + i * page;
            match runs.last_mut() {
                Some(run) if run.end == at => run.end = at + page,
                _ => runs.push(at..at + page),
            }
        }
        Some(runs)
    }

    pub fn release() -> Option<usize> {
        let page = page_size();
        let pagemap = File::open("/proc/self/pagemap").ok()?;
        let mut released = 0;
        for segment in read_only_segments(page) {
            for run in droppable(&pagemap, &segment, page)? {
                // SAFETY: the run lies in a read-only, private file mapping
                // of a loaded object and holds only unmodified pages, which
                // MADV_DONTNEED turns back into "read from the file on the
                // next access": the memory's contents do not change.
                let done = unsafe {
                    libc::madvise(
                        run.start as *mut libc::c_void,
                        run.end - run.start,
                        libc::MADV_DONTNEED,
                    )
                };
                if done == 0 {
                    released += run.end - run.start;
                }
            }
        }
        Some(released)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub const SUPPORTED: bool = false;

    pub fn release() -> Option<usize> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::hint::black_box;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Relocated read-only data (a table of trait objects and strings: the
    /// vtable and string pointers are written by the loader at start).
    trait Speak {
        fn word(&self) -> &'static str;
    }
    struct Hello;
    struct Bye;
    impl Speak for Hello {
        fn word(&self) -> &'static str {
            "hello"
        }
    }
    impl Speak for Bye {
        fn word(&self) -> &'static str {
            "bye"
        }
    }
    static SPEAKERS: [&(dyn Speak + Sync); 2] = [&Hello, &Bye];
    static WRITTEN: AtomicUsize = AtomicUsize::new(7);

    /// Read-only data no other code touches (256 KiB of .rodata).
    static COLD: [u8; 64 * 4096] = [7; 64 * 4096];

    /// Whether the page holding `addr` is mapped in this process.
    fn present(addr: usize) -> bool {
        use std::os::unix::fs::FileExt;
        let mut entry = [0u8; 8];
        let pagemap = std::fs::File::open("/proc/self/pagemap").expect("pagemap");
        pagemap
            .read_exact_at(&mut entry, (addr / 4096 * 8) as u64)
            .expect("pagemap entry");
        u64::from_ne_bytes(entry) >> 63 == 1
    }

    #[test]
    fn code_pages_go_and_everything_still_runs() {
        WRITTEN.store(42, Ordering::SeqCst);
        // The middle of COLD: at least 64 KiB from its ends, so another
        // thread's fault-around cannot map it again behind our back.
        let middle = &COLD[32 * 4096] as *const u8 as usize;
        assert_eq!(black_box(&COLD)[32 * 4096], 7);
        assert!(present(middle));
        let released = super::release().expect("pagemap readable");
        assert!(released > 0, "nothing released");
        assert!(
            !present(middle),
            "an unmodified read-only page stayed mapped"
        );
        assert_eq!(
            black_box(&COLD)[32 * 4096 + 1],
            7,
            "mapped again from the file"
        );
        // Relocated and written data kept their values; code runs again.
        let words: Vec<&str> = black_box(&SPEAKERS).iter().map(|s| s.word()).collect();
        assert_eq!(words, ["hello", "bye"]);
        assert_eq!(WRITTEN.load(Ordering::SeqCst), 42);
        assert_eq!(format!("{:?}", black_box(vec![1, 2])), "[1, 2]");
        // A second call is harmless.
        assert!(super::release().is_some());
        assert_eq!(black_box(&SPEAKERS)[1].word(), "bye");
    }
}

//! Giving memory back to the system once models are loaded: a board's `watch` runs for months, and
//! what loading needed for a second should not stay counted against it.

/// Drops the memory pages of embedded bytes that have been read (a model, once its plan is built).
///
/// They are the binary's own read-only pages: reading the 10 MB SFace file to build its plan
/// leaves them resident, counted in the process's memory for as long as it runs, though nothing
/// reads them again. The kernel discards them and would read them back from the executable if
/// they were ever touched again, so nothing is lost.
pub fn release_pages(bytes: &'static [u8]) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => return,
        };
        let start = (bytes.as_ptr() as usize).div_ceil(page) * page;
        let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
        if end > start {
            // SAFETY: whole pages inside a `'static` read-only slice of the executable's image,
            // which MADV_DONTNEED only evicts: a private, unmodified file mapping reads the same
            // bytes back from the file on the next access.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = bytes;
}

/// Allocations from this size up get their own mappings while models load.
const LOADING_MMAP_THRESHOLD: i32 = 128 * 1024;
/// ... and from this size up once they are loaded (frames and activations stay in the heap).
const RUNNING_MMAP_THRESHOLD: i32 = 4 * 1024 * 1024;

/// Call before loading models (glibc only; elsewhere nothing to do).
///
/// Building a network's plan needs the model several times over for a moment (the file, its
/// decoded form, the folded weights, the packed weights). glibc raises its mmap threshold each
/// time a large mapped block is freed, so most of these end up in the heap, where the freed
/// space stays resident between the blocks still in use: `watch` peaked at 61 to 66 MB. With
/// the threshold held at 128 kB while loading, each large buffer is its own mapping and goes back
/// to the kernel the moment it is freed (peak 56 MB).
pub fn loading_begins() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy for later calls.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LOADING_MMAP_THRESHOLD);
    }
}

/// Call once models are loaded: returns the heap's free memory to the system, and lets the
/// per-frame buffers come from the heap again. A fixed small threshold at run time would map
/// and unmap every activation of every network run, which doubled embedding time.
pub fn loading_done() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of glibc's own heap to the kernel; mallopt
    // only changes the policy for later calls.
    unsafe {
        libc::malloc_trim(0);
        libc::mallopt(libc::M_MMAP_THRESHOLD, RUNNING_MMAP_THRESHOLD);
        // What glibc's own adaptive policy keeps: trim only past twice the threshold.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * RUNNING_MMAP_THRESHOLD);
    }
}

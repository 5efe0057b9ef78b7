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

/// Returns the heap's free memory to the system (glibc only; elsewhere nothing to do).
///
/// Building a network's plan needs the model several times over for a moment (the file, its
/// decoded form, the folded weights: 40 MB at the peak for SFace); freed, most of it stays in
/// glibc's heap, in the process's resident memory, unless trimmed.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of glibc's own heap to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

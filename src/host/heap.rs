//! Gives the memory a large sync freed back to the system. Host layer, and
//! one of the crate's two modules with `unsafe` (two glibc calls that take
//! no pointers; the other is [`super::lease`]).
//!
//! glibc keeps what a program frees in its arenas and returns only the top
//! of each heap, so after a burst of 100,000 files a daemon that idles on
//! a few MB would stay at its peak (hundreds of MB) for as long as it runs.
//! Two calls fix that: one arena for every thread (the daemon's threads
//! are a handful and rarely allocate at once, so nothing waits on it, and
//! a sync thread's garbage does not stay in an arena of its own), and
//! `malloc_trim(0)` once a large sync is done, which hands back every free
//! page of the heap. Elsewhere than glibc both are no-ops.

/// Done once at start, before any thread is spawned.
pub(crate) fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and changes only malloc's settings;
    // called before the runtime's threads exist.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}

/// Hands the free pages of the heap back to the system. Walks the heap
/// (milliseconds for a large one), so it is called after a large sync, not
/// after each.
pub(crate) fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes an integer; glibc serialises it with every
    // other allocator call.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

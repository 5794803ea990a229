//! The harness of `tests/fuzz_loaders.rs`: seeded cases run under `catch_unwind`, a cap on any
//! single allocation (a loader that trusts a size field asks for far more than a fixture holds;
//! the cap turns that into a named failure instead of an OOM kill or a silent overcommit), a
//! per-case watchdog against hangs, and a report grouped by failure.

pub mod codecs;
pub mod fixtures;
pub mod mutate;
pub mod recipes;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

pub use saescope::rng::{Draw, SplitMix64};

/// Cases per format: `SAESCOPE_FUZZ_CASES`, else `default`.
pub fn cases(default: usize) -> usize {
    std::env::var("SAESCOPE_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The base seed: `SAESCOPE_FUZZ_SEED` (decimal or `0x` hex), else a fixed one.
pub fn base_seed() -> u64 {
    std::env::var("SAESCOPE_FUZZ_SEED")
        .ok()
        .and_then(|s| match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        })
        .unwrap_or(0x5AE5_C0DE)
}

// ---------------------------------------------------------------------------------------------
// Allocation cap

/// The largest single allocation a case may make. The fixtures are at most ~25 MB.
pub const ALLOC_CAP: usize = 1 << 30;

pub struct CappedAlloc;

thread_local! {
    static CURRENT: RefCell<[u8; 480]> = const { RefCell::new([0; 480]) };
    static CURRENT_LEN: Cell<usize> = const { Cell::new(0) };
    static IN_CASE: Cell<bool> = const { Cell::new(false) };
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn write_usize(w: &mut impl Write, mut n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let _ = w.write_all(&buf[i..]);
}

/// Say which case asked for `size` bytes (without allocating) before the allocation fails.
fn refuse(size: usize) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(b"\nfuzz_loaders: refused a single allocation of ");
    write_usize(&mut e, size);
    let _ = e.write_all(b" bytes (cap 1 GiB) in case: ");
    let _ = CURRENT.try_with(|c| {
        if let Ok(c) = c.try_borrow() {
            let n = CURRENT_LEN.try_with(|l| l.get()).unwrap_or(0);
            let _ = e.write_all(&c[..n]);
        }
    });
    let _ = e.write_all(b"\n");
}

unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.size() > ALLOC_CAP {
            refuse(l.size());
            return std::ptr::null_mut();
        }
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if l.size() > ALLOC_CAP {
            refuse(l.size());
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > ALLOC_CAP {
            refuse(new);
            return std::ptr::null_mut();
        }
        System.realloc(p, l, new)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

// ---------------------------------------------------------------------------------------------
// Panic hook and watchdog

/// Inside a case, record the panic (message and location) instead of printing it.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CASE.with(|c| c.get()) {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg} (at {at})")));
            } else {
                prev(info)
            }
        }));
        // Watchdog: a case that runs for a minute is a hang; say which one and stop.
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            let running = RUNNING.lock().unwrap();
            for (t0, desc) in running.values() {
                if t0.elapsed() > CASE_TIMEOUT {
                    eprintln!(
                        "\nfuzz_loaders: case still running after {CASE_TIMEOUT:?} (a hang): {desc}"
                    );
                    std::process::abort();
                }
            }
        });
    });
}

const CASE_TIMEOUT: Duration = Duration::from_secs(60);
static RUNNING: Mutex<BTreeMap<String, (Instant, String)>> = Mutex::new(BTreeMap::new());

// ---------------------------------------------------------------------------------------------
// Cases

/// One format's fuzzing run: counts and the failures so far.
pub struct Fuzz {
    pub name: String,
    pub seed: u64,
    pub ok: usize,
    pub err: usize,
    /// Targeted cases run (the rest are random).
    pub targeted: usize,
    /// Failure signature → (count, first example).
    failures: BTreeMap<String, (usize, String)>,
    /// Panics caught inside the crate's own guards (reported, not failures).
    caught_inside: BTreeMap<String, usize>,
    t0: Instant,
    pub dir: tempfile::TempDir,
}

impl Fuzz {
    pub fn new(name: &str) -> Self {
        install_hook();
        let mut h = SplitMix64::new(base_seed());
        let seed = name.bytes().fold(h.next_u64(), |s, b| {
            saescope::rng::derive_seed(s, &[b as u64])
        });
        Fuzz {
            name: name.to_string(),
            seed,
            ok: 0,
            err: 0,
            targeted: 0,
            failures: BTreeMap::new(),
            caught_inside: BTreeMap::new(),
            t0: Instant::now(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The seed of case `i` (for `SplitMix64::new`).
    pub fn case_seed(&self, i: usize) -> u64 {
        saescope::rng::derive_seed(self.seed, &[i as u64])
    }

    /// A fresh, empty folder for a case.
    pub fn case_dir(&self, rel: &str) -> PathBuf {
        let d = self.dir.path().join("case");
        let _ = std::fs::remove_dir_all(&d);
        let d = d.join(rel);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Run one case. `run` loads the mutant (and uses what it loaded); it must give `Ok` or an
    /// error whose message contains one of `names` (the mutated files), and must not panic.
    pub fn case(
        &mut self,
        desc: &str,
        names: &[String],
        run: impl FnOnce() -> saescope::Result<()>,
    ) {
        let full = format!("{} seed {:#x}: {desc}", self.name, self.seed);
        let tid = format!("{:?}", std::thread::current().id());
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            let n = full.len().min(c.len());
            c[..n].copy_from_slice(&full.as_bytes()[..n]);
            CURRENT_LEN.with(|l| l.set(n));
        });
        RUNNING
            .lock()
            .unwrap()
            .insert(tid.clone(), (Instant::now(), full.clone()));
        PANIC.with(|p| *p.borrow_mut() = None);
        IN_CASE.with(|c| c.set(true));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
        IN_CASE.with(|c| c.set(false));
        RUNNING.lock().unwrap().remove(&tid);
        let panic = PANIC.with(|p| p.borrow_mut().take());
        if std::env::var_os("SAESCOPE_FUZZ_VERBOSE").is_some() {
            let outcome = match &r {
                Ok(Ok(())) => "Ok".to_string(),
                Ok(Err(e)) => format!("Err: {}", e.to_string().lines().next().unwrap_or_default()),
                Err(_) => format!("PANIC: {panic:?}"),
            };
            println!("{desc}\n    -> {outcome}");
        }
        match r {
            Ok(Ok(())) => self.ok += 1,
            Ok(Err(e)) => {
                // The first line: candle appends a backtrace when RUST_BACKTRACE is set.
                let msg = e.to_string().lines().next().unwrap_or_default().to_string();
                if names.iter().any(|n| msg.contains(n.as_str())) {
                    self.err += 1;
                } else {
                    let sig = format!("error does not name {}: {}", names.join(" / "), head(&msg));
                    self.fail(sig, format!("{desc}\n      error: {msg}"));
                }
                if let Some(p) = panic {
                    *self.caught_inside.entry(location(&p)).or_default() += 1;
                }
            }
            Err(_) => {
                let p = panic.unwrap_or_else(|| "panic without message".into());
                self.fail(
                    format!("panic: {}", location(&p)),
                    format!("{desc}\n      panic: {p}"),
                );
            }
        }
    }

    /// The targeted cases: each recipe applied to a copy of `fixture` (in a folder `rel`), then
    /// `load`ed.
    pub fn recipes(
        &mut self,
        recipes: &[recipes::Recipe],
        fixture: &Path,
        rel: &str,
        load: impl Fn(&Path) -> saescope::Result<()>,
    ) {
        for (i, r) in recipes.iter().enumerate() {
            let dir = self.case_dir(rel);
            copy_tree(fixture, &dir);
            r.apply(&dir);
            let names = r.files();
            self.case(&format!("{rel} recipe {i}: {}", r.what), &names, || {
                load(&dir)
            });
            self.targeted += 1;
        }
    }

    fn fail(&mut self, sig: String, example: String) {
        let e = self.failures.entry(sig).or_insert((0, example));
        e.0 += 1;
    }

    pub fn cases_run(&self) -> usize {
        self.ok + self.err + self.failures.values().map(|v| v.0).sum::<usize>()
    }

    /// Print the counts and fail with one example per distinct failure.
    pub fn finish(self) {
        let n = self.cases_run();
        println!(
            "fuzz {}: {n} cases ({} targeted, {} random; {} loaded, {} typed errors naming the file, {} failures) in {:.1} s (base seed {:#x}; SAESCOPE_FUZZ_CASES / SAESCOPE_FUZZ_SEED)",
            self.name,
            self.targeted,
            n - self.targeted,
            self.ok,
            self.err,
            n - self.ok - self.err,
            self.t0.elapsed().as_secs_f64(),
            base_seed(),
        );
        for (at, k) in &self.caught_inside {
            println!("  note: {k} panics caught by the crate's own guard at {at}");
        }
        if self.failures.is_empty() {
            return;
        }
        let mut s = format!(
            "{}: {} distinct failures (reproduce with SAESCOPE_FUZZ_SEED={:#x} and \
             SAESCOPE_FUZZ_CASES above the case number):\n",
            self.name,
            self.failures.len(),
            base_seed()
        );
        for (sig, (k, ex)) in &self.failures {
            s.push_str(&format!("  [{k}×] {sig}\n    e.g. {ex}\n"));
        }
        panic!("{s}");
    }
}

fn head(msg: &str) -> String {
    // Drop temp paths and numbers so that one bug is one signature.
    let s: String = msg
        .split_whitespace()
        .map(|w| if w.contains('/') { "<path>" } else { w })
        .take(12)
        .collect::<Vec<_>>()
        .join(" ");
    s.chars().filter(|c| !c.is_ascii_digit()).collect()
}

fn location(p: &str) -> String {
    p.rsplit_once("(at ")
        .map(|(_, l)| l.trim_end_matches(')').to_string())
        .unwrap_or_else(|| p.to_string())
}

// ---------------------------------------------------------------------------------------------
// Files

/// Copy every file of `src` (recursively) into `dst`.
pub fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &dst.join(e.file_name()));
        } else {
            std::fs::copy(&p, dst.join(e.file_name())).unwrap();
        }
    }
}

/// Link (or, failing that, copy) every file of `src` into `dst`: for big fixtures whose
/// unmutated files the loader only reads.
pub fn link_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let (p, q) = (e.path(), dst.join(e.file_name()));
        if p.is_dir() {
            link_tree(&p, &q);
        } else if std::fs::hard_link(&p, &q).is_err() {
            std::fs::copy(&p, &q).unwrap();
        }
    }
}

/// Replace a file's contents (breaking a hard link first).
pub fn write(p: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(p);
    std::fs::write(p, bytes).unwrap();
}

pub fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

//! Helpers shared by the benchmarks: `--name value` arguments, timing, memory.
#![allow(dead_code)]
use std::time::Instant;

/// The value after `--name` in `args`, parsed, or `default`.
pub fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// True when run by `cargo bench` (which passes `--bench`); otherwise print `hint`.
pub fn is_bench_run(args: &[String], hint: &str) -> bool {
    let yes = args.iter().any(|a| a == "--bench");
    if !yes {
        println!("{hint}");
    }
    yes
}

/// (VmRSS, VmHWM = peak) of this process in MiB.
pub fn rss_mib() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (get("VmRSS:"), get("VmHWM:"))
}

/// Seconds per call of `f` for `iters` timed calls after `warmup` untimed ones.
pub fn time_iters(iters: usize, warmup: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect()
}

/// This process's CPU time (user + system, all threads) in seconds, from `/proc/self/stat`
/// (0 where that file does not exist). In 10 ms ticks.
pub fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// Wall-clock and CPU seconds of each timed call.
#[derive(Debug, Default)]
pub struct Timing {
    pub wall: Vec<f64>,
    pub cpu: Vec<f64>,
}

impl Timing {
    fn time(&mut self, f: &mut impl FnMut(), keep: bool) {
        let (t, c) = (Instant::now(), cpu_seconds());
        f();
        if keep {
            self.wall.push(t.elapsed().as_secs_f64());
            self.cpu.push(cpu_seconds() - c);
        }
    }
}

/// Time `f` and `g`, called alternately (`f`, `g`, `f`, `g`, ...) so that machine noise hits
/// both alike: `iters` timed pairs after `warmup` untimed ones.
pub fn time_pairs(
    iters: usize,
    warmup: usize,
    mut f: impl FnMut(),
    mut g: impl FnMut(),
) -> (Timing, Timing) {
    let (mut tf, mut tg) = (Timing::default(), Timing::default());
    for i in 0..warmup + iters {
        tf.time(&mut f, i >= warmup);
        tg.time(&mut g, i >= warmup);
    }
    (tf, tg)
}

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

//! Latent-map throughput on CPU: UMAP 2-D + UMAP 10-D (one shared cosine kNN graph) + HDBSCAN
//! on the 10-D embedding, over the rows of `--rows FILE` (a safetensors file with one f32
//! tensor `rows [n, d]`; scripts/bench_map.sh writes 18 432 rows and feeds the same file to
//! umap-learn + hdbscan).
//!
//! `cargo bench --bench latent_map -- --rows target/bench-map/rows.safetensors [--seed 42]`
//!
//! Prints one JSON line with `wall_s` (the map only, file reading excluded), its stages'
//! share and `peak_rss_mb`.
use saescope::analysis::{LatentMap, LatentMapOptions};
use saescope::{Device, Tensor};
use std::time::Instant;
mod common;
use common::{arg, is_bench_run, rss_mib};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !is_bench_run(
        &args,
        "latent map benchmark: run with `cargo bench --bench latent_map -- --rows FILE`",
    ) {
        return;
    }
    let path: String = arg(
        &args,
        "--rows",
        "target/bench-map/rows.safetensors".to_string(),
    );
    let seed = arg(&args, "--seed", 42u64);
    let rows: Tensor = saescope::candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot read {path}: {e} (run scripts/bench_map.sh)"))
        .remove("rows")
        .expect("no tensor `rows` in the file");
    let n = rows.dim(0).unwrap();
    let ids: Vec<(usize, usize)> = (0..n).map(|i| (0, i)).collect();
    let mut opts = LatentMapOptions::default();
    opts.umap.seed = seed;
    let t = Instant::now();
    let map = LatentMap::from_directions(&rows, &ids, vec!["rows".into()], &opts).unwrap();
    let wall = t.elapsed().as_secs_f64();
    let (_, peak) = rss_mib();
    println!(
        "{{\"impl\": \"saescope\", \"n\": {n}, \"wall_s\": {wall:.2}, \"clusters\": {}, \
         \"noise\": {}, \"peak_rss_mb\": {peak:.0}, \"threads\": {}}}",
        map.n_clusters(),
        map.cluster_members(-1).len(),
        rayon::current_num_threads()
    );
}

//! Latent maps against the reference implementations (goldens written by
//! scripts/make_map_goldens.py with umap-learn 0.5.12, hdbscan 0.8.44, scikit-learn 1.9.1 on
//! the shipped SAE's 4608 unit decoder rows): HDBSCAN on hdbscan's exact input, sklearn's
//! trustworthiness and adjusted Rand index, the trustworthiness of our UMAP against
//! umap-learn's, determinism, errors on bad input, and the plots.
use saescope::analysis::{
    adjusted_rand_index, hdbscan, logit_table, trustworthiness, umap, umap_ab_params,
    HdbscanOptions, LatentMap, LatentMapOptions, MapMetric, UmapOptions,
};
use saescope::{DType, Device, HookedModel, Sae, Tensor};
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Goldens {
    t: HashMap<String, Tensor>,
    json: serde_json::Value,
}

fn goldens() -> &'static Goldens {
    static G: OnceLock<Goldens> = OnceLock::new();
    G.get_or_init(|| {
        let dir = root().join("tests/fixtures/map");
        let t = saescope::candle_core::safetensors::load(
            dir.join("umap_learn.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        let json =
            serde_json::from_str(&std::fs::read_to_string(dir.join("umap_learn.json")).unwrap())
                .unwrap();
        Goldens { t, json }
    })
}

fn f32s(name: &str) -> Vec<f32> {
    let t = &goldens().t[name];
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn labels(name: &str) -> Vec<i32> {
    let t = &goldens().t[name];
    let v: Vec<i64> = t.to_dtype(DType::I64).unwrap().to_vec1().unwrap();
    v.into_iter().map(|x| x as i32).collect()
}

fn golden(key: &str) -> f64 {
    goldens().json[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no `{key}` in umap_learn.json"))
}

/// The shipped SAE's decoder rows at unit norm, `[4608, 576]`, row-major.
fn decoder_rows() -> &'static (Vec<f32>, usize) {
    static X: OnceLock<(Vec<f32>, usize)> = OnceLock::new();
    X.get_or_init(|| {
        let sae = Sae::shipped().unwrap();
        let u = saescope::analysis::unit_decoder_directions(&sae, None).unwrap();
        let d = u.dim(1).unwrap();
        (u.flatten_all().unwrap().to_vec1().unwrap(), d)
    })
}

#[test]
fn ab_params_match_umap_learn() {
    for (spread, min_dist, a, b) in [
        (1.0, 0.1, 1.5769434602697652, 0.8950608778515733),
        (1.0, 0.5, 0.5830300203414425, 1.3341669924314914),
        (2.0, 0.0, 0.6460466719525826, 0.7904944906889044),
    ] {
        let (ga, gb) = umap_ab_params(spread, min_dist);
        assert!(
            (ga - a).abs() < 1e-4 && (gb - b).abs() < 1e-4,
            "({ga}, {gb}) vs ({a}, {b})"
        );
    }
}

/// Our labels of umap-learn's 10-D embedding against `key`'s, with the ARI and how many
/// labels are identical.
fn hdbscan_vs(x: &[f32], opts: &HdbscanOptions, key: &str) -> (f64, usize) {
    let want = labels(key);
    let got = hdbscan(x, 10, opts).unwrap();
    let ari = adjusted_rand_index(&want, &got).unwrap();
    let same = want.iter().zip(&got).filter(|(a, b)| a == b).count();
    println!(
        "hdbscan {opts:?} vs `{key}`: ARI {ari:.6}, identical labels {same}/{}, clusters {} \
         (hdbscan {})",
        want.len(),
        got.iter().max().unwrap() + 1,
        want.iter().max().unwrap() + 1
    );
    (ari, same)
}

#[test]
fn hdbscan_matches_hdbscan_on_its_own_input() {
    let x = f32s("umap10d");
    // min_samples = 1: no ties in the mutual reachability graph, one right answer: the same
    // partition (ARI 1; the cluster numbers follow the MST's edge orientation, which differs).
    for (mcs, key) in [
        (5, "hdbscan_umap10d_ms1"),
        (15, "hdbscan_umap10d_mcs15_ms1"),
    ] {
        let opts = HdbscanOptions {
            min_cluster_size: mcs,
            min_samples: Some(1),
        };
        let (ari, _) = hdbscan_vs(&x, &opts, key);
        assert!(ari > 1.0 - 1e-12, "min_samples 1, mcs {mcs}: ARI {ari}");
    }
    // The defaults: the MST of mutual reachability has tied weights, and the order in which
    // tied edges merge shapes the tree. hdbscan's Prim pipeline with a stable sort of the MST
    // (ties in Prim's order, as ours) is the same algorithm: the same partition.
    let opts = HdbscanOptions::default();
    let (ari, _) = hdbscan_vs(&x, &opts, "hdbscan_umap10d_prims_stable");
    assert!(
        ari > 1.0 - 1e-12,
        "defaults vs hdbscan's Prim, stable sort: ARI {ari}"
    );
    // hdbscan's own Boruvka and Prim (numpy's unstable sort) break ties differently (ARI
    // between them: `ari_boruvka_vs_prims`); ours is as close to each.
    let own = golden("ari_boruvka_vs_prims");
    for (mcs, key) in [
        (5, "hdbscan_umap10d"),
        (5, "hdbscan_umap10d_prims"),
        (15, "hdbscan_umap10d_mcs15"),
    ] {
        let opts = HdbscanOptions {
            min_cluster_size: mcs,
            ..Default::default()
        };
        let (ari, _) = hdbscan_vs(&x, &opts, key);
        assert!(
            ari >= 0.95,
            "mcs {mcs} vs {key}: ARI {ari} (hdbscan's Boruvka vs Prim: {own})"
        );
    }
}

#[test]
fn trustworthiness_and_ari_match_sklearn() {
    let (x, d) = decoder_rows();
    let (high, low) = (&x[..300 * d], f32s("small_low"));
    for (metric, name) in [
        (MapMetric::Cosine, "cosine"),
        (MapMetric::Euclidean, "euclidean"),
    ] {
        for k in [5, 10] {
            let got = trustworthiness(high, *d, &low, 2, k, metric).unwrap();
            let want = golden(&format!("small_trust_{name}_k{k}"));
            assert!(
                (got - want).abs() < 1e-12,
                "{name} k={k}: {got} vs sklearn {want}"
            );
        }
    }
    let (a, b) = (labels("hdbscan_umap10d"), labels("hdbscan_umap10d_mcs15"));
    let (got, want) = (
        adjusted_rand_index(&a, &b).unwrap(),
        golden("ari_mcs5_vs_mcs15"),
    );
    assert!((got - want).abs() < 1e-12, "ARI {got} vs sklearn {want}");
    // Renaming labels changes nothing; a partition against itself is 1.
    let renamed: Vec<i32> = a.iter().map(|&l| 1000 - l).collect();
    assert_eq!(adjusted_rand_index(&a, &renamed).unwrap(), 1.0);
    let split: Vec<i32> = (0..a.len() as i32).map(|i| i % 2).collect();
    assert!(adjusted_rand_index(&a, &split).unwrap().abs() < 0.05);
}

#[test]
fn umap_and_hdbscan_against_umap_learn() {
    let (x, d) = decoder_rows();
    let n = x.len() / d;
    let dirs = Tensor::from_slice(x, (n, *d), &Device::Cpu).unwrap();
    let ids: Vec<(usize, usize)> = (0..n).map(|i| (0, i)).collect();
    let t = std::time::Instant::now();
    let map = LatentMap::from_directions(
        &dirs,
        &ids,
        vec!["sae".into()],
        &LatentMapOptions::default(),
    )
    .unwrap();
    println!(
        "ours: UMAP 2-D + 10-D + HDBSCAN of {n} rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let xy: Vec<f32> = map.points().iter().flat_map(|p| p.xy).collect();
    for (emb, dim) in [(&xy, 2usize), (&map.cluster_embedding, 10)] {
        for k in [5, 10] {
            let ours = trustworthiness(x, *d, emb, dim, k, MapMetric::Cosine).unwrap();
            let theirs = golden(&format!("trust_umap{dim}d_k{k}"));
            println!("trustworthiness {dim}-D k={k}: ours {ours:.4}, umap-learn {theirs:.4}");
            assert!(
                ours >= theirs - 0.02,
                "{dim}-D k={k}: {ours} vs umap-learn {theirs}"
            );
        }
    }
    // Our trustworthiness of umap-learn's own 2-D embedding is sklearn's.
    let theirs2 = f32s("umap2d");
    let t5 = trustworthiness(x, *d, &theirs2, 2, 5, MapMetric::Cosine).unwrap();
    assert!((t5 - golden("trust_umap2d_k5")).abs() < 1e-6, "{t5}");
    let ari = adjusted_rand_index(&map.labels(), &labels("hdbscan_umap10d")).unwrap();
    println!(
        "cross-pipeline ARI (our UMAP + HDBSCAN vs umap-learn + hdbscan): {ari:.3}; clusters ours {} \
         (noise {}), theirs {} (noise {})",
        map.n_clusters(),
        map.cluster_members(-1).len(),
        golden("hdbscan_n_clusters"),
        golden("hdbscan_noise")
    );
    assert!(
        ari > 0.0,
        "the two pipelines' clusterings are unrelated (ARI {ari})"
    );
}

/// 400 points on 8 noisy clusters in 32-D.
fn blobs() -> Vec<f32> {
    use saescope::rng::{Draw, Rng};
    let mut r = Rng::new(7);
    let centres: Vec<Vec<f64>> = (0..8)
        .map(|_| (0..32).map(|_| r.normal()).collect())
        .collect();
    (0..400)
        .flat_map(|i| {
            centres[i % 8]
                .iter()
                .map(|c| (c + 0.1 * r.normal()) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn umap_is_deterministic_and_finds_clusters() {
    let x = blobs();
    let opts = UmapOptions {
        n_epochs: Some(100),
        ..Default::default()
    };
    let a = umap(&x, 32, &opts).unwrap();
    assert_eq!(a, umap(&x, 32, &opts).unwrap(), "same seed, same embedding");
    assert_ne!(a, umap(&x, 32, &opts.clone().with_seed(1)).unwrap());
    assert!(trustworthiness(&x, 32, &a, 2, 10, MapMetric::Cosine).unwrap() > 0.9);
    let truth: Vec<i32> = (0..400).map(|i| i % 8).collect();
    let ten = umap(&x, 32, &opts.clone().with_n_components(10)).unwrap();
    let got = hdbscan(&ten, 10, &HdbscanOptions::default()).unwrap();
    assert!(adjusted_rand_index(&truth, &got).unwrap() > 0.9, "{got:?}");
}

#[test]
fn bad_input_is_an_error() {
    let o = UmapOptions::default();
    let msg = |r: saescope::Result<Vec<f32>>| r.unwrap_err().to_string();
    assert!(msg(umap(&[], 4, &o)).contains("rows"));
    assert!(msg(umap(&[0.0; 10], 3, &o)).contains("row-major"));
    assert!(msg(umap(&vec![1.0; 15 * 4], 4, &o)).contains("n_neighbors"));
    let mut x = blobs();
    x[33] = f32::NAN;
    assert!(msg(umap(&x, 32, &o)).contains("row 1"));
    assert!(hdbscan(&x, 32, &HdbscanOptions::default()).is_err());
    let x = blobs();
    let bad = HdbscanOptions {
        min_cluster_size: 1,
        ..Default::default()
    };
    assert!(hdbscan(&x, 32, &bad).is_err());
    assert!(trustworthiness(&x, 32, &x[..64], 2, 5, MapMetric::Cosine).is_err());
    assert!(trustworthiness(&x, 32, &x, 32, 200, MapMetric::Cosine).is_err());
    assert!(adjusted_rand_index(&[0, 1], &[0]).is_err());
    let dirs = Tensor::from_slice(&x, (400, 32), &Device::Cpu).unwrap();
    assert!(
        LatentMap::from_directions(&dirs, &[(0, 0)], vec!["a".into()], &Default::default())
            .is_err()
    );
}

#[test]
fn maps_of_the_shipped_sae_with_tokens_and_plots() {
    let model = HookedModel::from_pretrained("smollm2").unwrap();
    let sae = Sae::shipped().unwrap();
    let opts = LatentMapOptions {
        latents: Some((0..300).collect()),
        ..Default::default()
    };
    let map = LatentMap::build_many(&[(&sae, "small"), (&sae, "copy")], &model, &opts).unwrap();
    assert_eq!(map.points().len(), 600);
    assert_eq!(map.groups, ["small", "copy"]);
    let p = &map.points()[7];
    let want: Vec<String> = logit_table(&model, &sae, 7, 8)
        .unwrap()
        .top
        .into_iter()
        .map(|t| t.token)
        .collect();
    assert_eq!((p.group, p.latent, &p.top_tokens), (0, 7, &want));
    // Identical directions in the two groups land together.
    let twin = &map.points()[307];
    assert_eq!(twin.latent, 7);
    assert_eq!(twin.cluster, p.cluster);
    let map = map.with_explanations(&HashMap::from([(7, "a <test> explanation".to_string())]));
    let html = map.plot().unwrap().into_string();
    assert_eq!(html.matches("<title>").count(), 600);
    assert!(html.contains("a &lt;test&gt; explanation"));
    assert!(html.contains("latent 7 (small) · cluster"));
    let tok = format!("{:?}", want[0])
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    assert!(html.contains(&tok), "top token {tok} not in the tooltip");
    let svg = map.plot_svg().unwrap().into_string();
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    // 300 circles and 300 squares, plus the legend's two circles (group 0, noise) and square.
    assert_eq!(svg.matches("<circle").count(), 302);
    assert_eq!(svg.matches("<rect class").count(), 301);
    assert!(!svg.contains("<title>"));
}

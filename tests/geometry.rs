//! The geometry of SAE latents: the eigen-decomposition and PCA against a brute-force Jacobi
//! diagonalisation of a covariance computed with plain loops, cosine similarities and nearest
//! neighbours against direct computation, the decoder as applied against `Sae::decode`, and
//! the plots.
use saescope::analysis::{
    cross_decoder_cosine_similarity, decoder_cosine_similarity, decoder_pca, effective_decoder,
    nearest_neighbours, nearest_neighbours_in, plot_cosine_similarity, plot_nearest_neighbours,
    plot_pca, reconstruct_from_latents, symmetric_eigen, unit_decoder_directions, Pca,
};
use saescope::rng::{Draw, Rng};
use saescope::viz::{scatter, ScatterOptions, ScatterSeries};
use saescope::{DType, Device, Sae, Tensor};
use std::path::Path;

fn fixture_sae(name: &str) -> Sae {
    Sae::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sae/saes")
            .join(name),
    )
    .unwrap()
}

/// Brute force: cyclic Jacobi rotations until the off-diagonal mass vanishes. Returns
/// eigenvalues (unsorted) and eigenvectors as the columns of `v` (row-major).
fn jacobi(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off < 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

fn random_symmetric(rng: &mut Rng, n: usize) -> Vec<f64> {
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let x = rng.normal();
            a[i * n + j] = x;
            a[j * n + i] = x;
        }
    }
    a
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `max_i ‖A v_i − λ_i v_i‖` and `max |VVᵀ − I|` for eigenvectors in rows.
fn residuals(a: &[f64], n: usize, vals: &[f64], vecs: &[f64]) -> (f64, f64) {
    let mut res: f64 = 0.0;
    let mut orth: f64 = 0.0;
    for i in 0..n {
        let v = &vecs[i * n..(i + 1) * n];
        for r in 0..n {
            res = res.max((dot(&a[r * n..(r + 1) * n], v) - vals[i] * v[r]).abs());
        }
        for j in 0..n {
            let want = if i == j { 1.0 } else { 0.0 };
            orth = orth.max((dot(v, &vecs[j * n..(j + 1) * n]) - want).abs());
        }
    }
    (res, orth)
}

#[test]
fn eigen_decomposition_matches_brute_force_jacobi() {
    let mut rng = Rng::new(3);
    for n in [1, 2, 3, 5, 8, 17, 40] {
        let a = random_symmetric(&mut rng, n);
        let (vals, vecs) = symmetric_eigen(&a, n).unwrap();
        let (jv, jvecs) = jacobi(&a, n);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&x, &y| jv[y].total_cmp(&jv[x]));
        let mut worst_val: f64 = 0.0;
        let mut worst_vec: f64 = 0.0;
        for (row, &k) in order.iter().enumerate() {
            worst_val = worst_val.max((vals[row] - jv[k]).abs());
            let jcol: Vec<f64> = (0..n).map(|i| jvecs[i * n + k]).collect();
            // Random spectra are simple: the vectors agree up to sign.
            worst_vec = worst_vec.max(1.0 - dot(&vecs[row * n..(row + 1) * n], &jcol).abs());
        }
        assert!(vals.windows(2).all(|w| w[0] >= w[1]), "not descending");
        let (res, orth) = residuals(&a, n, &vals, &vecs);
        eprintln!("n = {n}: |λ − λ_jacobi| ≤ {worst_val:.1e}, 1 − |v·v_jacobi| ≤ {worst_vec:.1e}, ‖Av − λv‖ ≤ {res:.1e}, |VVᵀ − I| ≤ {orth:.1e}");
        assert!(worst_val < 1e-10 && worst_vec < 1e-9 && res < 1e-10 && orth < 1e-12);
    }
}

#[test]
fn eigen_decomposition_of_a_known_spectrum_with_repeats() {
    // A = Q diag(λ) Qᵀ with a random orthogonal Q (Gram–Schmidt) and a repeated eigenvalue.
    let n = 6;
    let mut rng = Rng::new(9);
    let mut q: Vec<Vec<f64>> = Vec::new();
    while q.len() < n {
        let mut v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        for u in &q {
            let d = dot(&v, u);
            v.iter_mut().zip(u).for_each(|(x, y)| *x -= d * y);
        }
        let norm = dot(&v, &v).sqrt();
        q.push(v.iter().map(|x| x / norm).collect());
    }
    let lambda = [5.0, 3.0, 3.0, 1.0, 0.0, -2.0];
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = (0..n).map(|k| lambda[k] * q[k][i] * q[k][j]).sum();
        }
    }
    let (vals, vecs) = symmetric_eigen(&a, n).unwrap();
    for (v, l) in vals.iter().zip(lambda) {
        assert!((v - l).abs() < 1e-12, "{vals:?}");
    }
    let (res, orth) = residuals(&a, n, &vals, &vecs);
    assert!(res < 1e-12 && orth < 1e-12);
    // Diagonal and zero matrices, and bad input.
    let (vals, _) = symmetric_eigen(&[2.0, 0.0, 0.0, 7.0], 2).unwrap();
    assert_eq!(vals, vec![7.0, 2.0]);
    let (vals, vecs) = symmetric_eigen(&[0.0; 9], 3).unwrap();
    assert_eq!(vals, vec![0.0; 3]);
    assert!(residuals(&[0.0; 9], 3, &vals, &vecs).1 < 1e-15);
    assert!(symmetric_eigen(&[1.0, 2.0, 3.0], 2).is_err());
    assert!(symmetric_eigen(&[f64::NAN], 1).is_err());
}

/// Data with a known anisotropic covariance: `[n, d]` f32 and the same rows in f64.
fn anisotropic(n: usize, d: usize, seed: u64) -> (Tensor, Vec<Vec<f64>>) {
    let mut rng = Rng::new(seed);
    let mix: Vec<f64> = (0..d * d).map(|_| rng.normal()).collect();
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|_| {
            let z: Vec<f64> = (0..d).map(|k| rng.normal() * (d - k) as f64).collect();
            (0..d)
                .map(|j| 3.0 + (0..d).map(|k| z[k] * mix[k * d + j]).sum::<f64>())
                .collect()
        })
        .collect();
    let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    let rows64 = flat.iter().map(|&v| v as f64).collect::<Vec<_>>();
    let rows64 = rows64.chunks(d).map(|c| c.to_vec()).collect();
    (
        Tensor::from_vec(flat, (n, d), &Device::Cpu).unwrap(),
        rows64,
    )
}

#[test]
fn pca_matches_a_brute_force_covariance_eigen_decomposition() {
    let (n, d, k) = (200, 6, 4);
    let (x, rows) = anisotropic(n, d, 5);
    let pca = Pca::fit(&x, k).unwrap();
    // Brute force: mean and covariance with loops, diagonalised by Jacobi.
    let mean: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n as f64)
        .collect();
    let mut cov = vec![0.0; d * d];
    for r in &rows {
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] += (r[i] - mean[i]) * (r[j] - mean[j]) / (n - 1) as f64;
            }
        }
    }
    let (jv, jvecs) = jacobi(&cov, d);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| jv[b].total_cmp(&jv[a]));
    let comps: Vec<Vec<f64>> = pca.components().unwrap().to_vec2().unwrap();
    assert_eq!(comps.len(), k);
    for (i, &o) in order.iter().take(k).enumerate() {
        let jcol: Vec<f64> = (0..d).map(|r| jvecs[r * d + o]).collect();
        let rel = (pca.explained_variance()[i] - jv[o]).abs() / jv[o];
        assert!(
            rel < 1e-9,
            "component {i}: variance {} vs {}",
            pca.explained_variance()[i],
            jv[o]
        );
        assert!(
            1.0 - dot(&comps[i], &jcol).abs() < 1e-9,
            "component {i} direction"
        );
        // sklearn's sign convention: the largest-magnitude entry is positive.
        let big = comps[i]
            .iter()
            .fold(0.0f64, |m, &v| if v.abs() > m.abs() { v } else { m });
        assert!(big > 0.0);
        for (j, c) in comps.iter().enumerate() {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot(&comps[i], c) - want).abs() < 1e-12, "not orthonormal");
        }
    }
    for (m, w) in pca.mean().iter().zip(&mean) {
        assert!((m - w).abs() < 1e-9);
    }
    let total: f64 = jv.iter().sum();
    for (r, v) in pca
        .explained_variance_ratio()
        .iter()
        .zip(pca.explained_variance())
    {
        assert!((r - v / total).abs() < 1e-12);
    }
    // The projections: variance along component i is its eigenvalue, and they are uncorrelated.
    let z: Vec<Vec<f32>> = pca.transform(&x).unwrap().to_vec2().unwrap();
    for i in 0..k {
        let mi = z.iter().map(|r| r[i] as f64).sum::<f64>() / n as f64;
        assert!(mi.abs() < 1e-3 * pca.explained_variance()[i].sqrt());
        for j in 0..k {
            let c = z.iter().map(|r| r[i] as f64 * r[j] as f64).sum::<f64>() / (n - 1) as f64;
            let want = if i == j {
                pca.explained_variance()[i]
            } else {
                0.0
            };
            assert!(
                (c - want).abs() < 1e-4 * pca.explained_variance()[0],
                "cov[{i}][{j}] = {c}"
            );
        }
    }
    // All components: the ratios sum to 1.
    let full = Pca::fit(&x, d).unwrap();
    assert!((full.explained_variance_ratio().iter().sum::<f64>() - 1.0).abs() < 1e-12);
    // Points on a line: one component carries everything, along the line.
    let line: Vec<f32> = (0..10)
        .flat_map(|t| [t as f32 + 1.0, 2.0 * t as f32 - 3.0])
        .collect();
    let p = Pca::fit(&Tensor::from_vec(line, (10, 2), &Device::Cpu).unwrap(), 1).unwrap();
    let c: Vec<Vec<f64>> = p.components().unwrap().to_vec2().unwrap();
    let s5 = 5f64.sqrt();
    assert!(
        (c[0][0] - 1.0 / s5).abs() < 1e-12 && (c[0][1] - 2.0 / s5).abs() < 1e-12,
        "{c:?}"
    );
    assert!((p.explained_variance_ratio()[0] - 1.0).abs() < 1e-12);
    // Bad input.
    assert!(Pca::fit(&x, 0).is_err());
    assert!(Pca::fit(&x, d + 1).is_err());
    assert!(Pca::fit(&x.narrow(0, 0, 1).unwrap(), 1).is_err());
    assert!(Pca::fit(&Tensor::zeros(5, DType::F32, &Device::Cpu).unwrap(), 1).is_err());
    assert!(pca
        .transform(&Tensor::zeros((3, d + 1), DType::F32, &Device::Cpu).unwrap())
        .is_err());
}

#[test]
fn pca_of_the_shipped_decoder_is_fast_and_orthonormal() {
    let sae = Sae::shipped().unwrap();
    let t = std::time::Instant::now();
    let (pca, coords) = decoder_pca(&sae, None, 8).unwrap();
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "PCA of 4608 decoder rows (d = 576) in {secs:.2}s; top explained-variance ratios {:?}",
        pca.explained_variance_ratio()
            .iter()
            .map(|r| format!("{r:.4}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(coords.dims(), &[4608, 8]);
    let c: Vec<Vec<f64>> = pca.components().unwrap().to_vec2().unwrap();
    for i in 0..8 {
        for j in 0..8 {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot(&c[i], &c[j]) - want).abs() < 1e-10);
        }
    }
    assert!(pca.explained_variance().windows(2).all(|w| w[0] >= w[1]));
    assert!(secs < 30.0, "PCA took {secs}s");
}

#[test]
fn cosine_similarity_and_nearest_neighbours_match_direct_computation() {
    let sae = fixture_sae("standard");
    let w: Vec<Vec<f32>> = sae.w_dec().to_vec2().unwrap();
    let cos = |a: &[f32], b: &[f32]| {
        let d = |x: &[f32], y: &[f32]| {
            x.iter()
                .zip(y)
                .map(|(p, q)| *p as f64 * *q as f64)
                .sum::<f64>()
        };
        d(a, b) / (d(a, a) * d(b, b)).sqrt()
    };
    let latents = [3usize, 0, 17, 40];
    let sims: Vec<Vec<f32>> = decoder_cosine_similarity(&sae, &latents)
        .unwrap()
        .to_vec2()
        .unwrap();
    for (i, &a) in latents.iter().enumerate() {
        for (j, &b) in latents.iter().enumerate() {
            assert!((sims[i][j] as f64 - cos(&w[a], &w[b])).abs() < 1e-6);
        }
        assert!((sims[i][i] - 1.0).abs() < 1e-6);
    }
    let unit = unit_decoder_directions(&sae, None).unwrap();
    assert_eq!(unit.dims(), &[48, 16]);
    // Nearest neighbours: brute-force sort, the latent itself left out.
    let nn = nearest_neighbours(&sae, 7, 5).unwrap();
    let mut brute: Vec<(usize, f64)> = (0..48)
        .filter(|&i| i != 7)
        .map(|i| (i, cos(&w[7], &w[i])))
        .collect();
    brute.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(
        nn.iter().map(|p| p.0).collect::<Vec<_>>(),
        brute[..5].iter().map(|p| p.0).collect::<Vec<_>>()
    );
    for (got, want) in nn.iter().zip(&brute) {
        assert!((got.1 as f64 - want.1).abs() < 1e-6);
    }
    // Across two SAEs on the same space (feature splitting).
    let other = fixture_sae("topk");
    let wo: Vec<Vec<f32>> = other.w_dec().to_vec2().unwrap();
    let cross: Vec<Vec<f32>> = cross_decoder_cosine_similarity(&sae, &[7, 9], &other, None)
        .unwrap()
        .to_vec2()
        .unwrap();
    assert_eq!((cross.len(), cross[0].len()), (2, 48));
    assert!((cross[1][30] as f64 - cos(&w[9], &wo[30])).abs() < 1e-6);
    let nn = nearest_neighbours_in(&sae, 7, &other, 48).unwrap();
    assert_eq!(
        nn.len(),
        48,
        "another SAE keeps every latent, including index 7"
    );
    assert!(nn.windows(2).all(|p| p[0].1 >= p[1].1));
    // Different widths, bad indices.
    let wide = fixture_sae("smollm2_standard_l10");
    let e = cross_decoder_cosine_similarity(&sae, &[0], &wide, None).unwrap_err();
    assert!(e.to_string().contains("same hook point"), "{e}");
    assert!(decoder_cosine_similarity(&sae, &[48]).is_err());
}

#[test]
fn the_applied_decoder_matches_decode() {
    for name in ["topk_rescale", "topk", "standard"] {
        let sae = fixture_sae(name);
        let dec = effective_decoder(&sae).unwrap();
        let eye = Tensor::eye(48, DType::F32, &Device::Cpu).unwrap();
        let zero = Tensor::zeros((1, 48), DType::F32, &Device::Cpu).unwrap();
        let want = sae
            .decode(&eye)
            .unwrap()
            .broadcast_sub(&sae.decode(&zero).unwrap())
            .unwrap();
        let err = (dec - &want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(err < 1e-5, "{name}: {err}");
        // Reconstruction from every latent = decode − b_dec; from a subset, only its part.
        let mut rng = Rng::new(1);
        let x: Vec<f32> = (0..3 * 16).map(|_| rng.normal() as f32).collect();
        let x = Tensor::from_vec(x, (3, 16), &Device::Cpu).unwrap();
        let f = sae.encode(&x).unwrap();
        let all: Vec<usize> = (0..48).collect();
        let r = reconstruct_from_latents(&sae, &f, &all).unwrap();
        let want = sae.decode(&f).unwrap().broadcast_sub(sae.b_dec()).unwrap();
        let err = (r - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(err < 1e-4, "{name}: {err}");
        assert!(reconstruct_from_latents(&sae, &f, &[99]).is_err());
    }
}

#[test]
fn geometry_plots_render() {
    let sae = fixture_sae("standard");
    let latents = [1usize, 2, 3, 4];
    let sims = decoder_cosine_similarity(&sae, &latents).unwrap();
    let svg =
        plot_cosine_similarity("decoder cosine similarity", &sims, &latents, &latents).unwrap();
    assert!(svg.as_str().starts_with("<svg") && svg.as_str().contains("decoder cosine similarity"));
    let (_, coords) = decoder_pca(&sae, None, 3).unwrap();
    let groups: Vec<String> = (0..48)
        .map(|i| {
            if i % 7 == 0 {
                "Monday".into()
            } else {
                "Other".into()
            }
        })
        .collect();
    let labels: Vec<String> = (0..48)
        .map(|i| {
            if i < 2 {
                format!("L{i}")
            } else {
                String::new()
            }
        })
        .collect();
    let svg = plot_pca("PC2 vs PC3", &coords, 1, 2, &groups, &labels).unwrap();
    let s = svg.as_str();
    assert_eq!(
        s.matches("<circle").count(),
        48 + 2,
        "48 points and 2 legend markers"
    );
    assert!(s.contains("Monday") && s.contains("Other") && s.contains("PC2") && s.contains("L1"));
    // Neighbours within one SAE and across two (feature splitting).
    let (nn, svg) = plot_nearest_neighbours("neighbours of 7", &sae, 7, &sae, 4).unwrap();
    assert_eq!(nn, nearest_neighbours(&sae, 7, 4).unwrap());
    assert!(svg.as_str().contains("neighbours of 7"));
    let other = fixture_sae("topk");
    let (nn, svg) = plot_nearest_neighbours("split", &sae, 7, &other, 3).unwrap();
    assert_eq!(nn.len(), 3);
    assert!(svg.as_str().contains("A:7") && svg.as_str().contains(&format!("B:{}", nn[0].0)));
    assert!(plot_nearest_neighbours("x", &sae, 7, &other, 0).is_err());
    assert!(plot_pca("x", &coords, 0, 3, &[], &[]).is_err());
    assert!(plot_pca("x", &coords, 0, 1, &groups[..3], &[]).is_err());
    let bad = ScatterSeries {
        name: "a".into(),
        points: vec![(0.0, 1.0)],
        labels: vec!["x".into(), "y".into()],
    };
    assert!(scatter("t", &[bad], "x", "y", &ScatterOptions::default()).is_err());
    let nan = ScatterSeries::new("n", vec![(f32::NAN, 1.0)]);
    assert!(scatter("t", &[nan], "x", "y", &ScatterOptions::default()).is_err());
    assert!(scatter("t", &[], "x", "y", &ScatterOptions::default()).is_err());
}

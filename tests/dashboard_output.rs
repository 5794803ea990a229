//! Feature dashboards' outputs: the Neuronpedia JSON, errors that name the fix, the HTML in
//! headless Chromium, and the `saescope dashboard` CLI.
use saescope::analysis::dashboard::{
    corpus_rows, feature_dashboards_with, DashboardInput, LatentSelection,
};

mod dashboard_support;
use dashboard_support as bf;
use dashboard_support::fixture::{cfg, fix};

#[test]
fn neuronpedia_json_has_parallel_arrays_and_every_example() {
    let f = fix();
    let j = f.dash.to_neuronpedia_json();
    let feats = j["features"].as_array().unwrap();
    assert_eq!(feats.len(), f.latents.len());
    for (fj, d) in feats.iter().zip(&f.dash.features) {
        assert_eq!(fj["index"], d.latent);
        for k in ["freq_hist_data", "logits_hist_data"] {
            let h = fj[format!("{k}_bar_heights")].as_array().unwrap();
            let v = fj[format!("{k}_bar_values")].as_array().unwrap();
            assert_eq!(h.len(), v.len(), "{k}: heights and values must be parallel");
        }
        assert_eq!(fj["pos_str"].as_array().unwrap().len(), 10);
        assert_eq!(fj["maxActApprox"].as_f64().unwrap() as f32, d.stats.max);
        let n_ex = d.top_examples.examples.len()
            + d.quantile_groups
                .iter()
                .map(|g| g.examples.len())
                .sum::<usize>();
        let acts = fj["activations"].as_array().unwrap();
        assert_eq!(acts.len(), n_ex);
        for a in acts {
            let n = a["tokens"].as_array().unwrap().len();
            assert_eq!(a["values"].as_array().unwrap().len(), n);
            assert_eq!(a["lossValues"].as_array().unwrap().len(), n);
        }
    }
}

#[test]
fn bad_arguments_name_the_fix() {
    let f = fix();
    let rows = corpus_rows(&f.model, "default", 128, 64).unwrap();
    let err = feature_dashboards_with(
        &f.model,
        &f.sae,
        DashboardInput::Tokens(rows.clone()),
        LatentSelection::Indices(vec![4608]),
        &cfg(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("d_sae = 4608"), "{err}");
    let err = feature_dashboards_with(
        &f.model,
        &f.sae,
        DashboardInput::Tokens(rows),
        LatentSelection::Indices(vec![]),
        &cfg(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no latents"), "{err}");
    let err = feature_dashboards_with(
        &f.model,
        &f.sae,
        DashboardInput::act_cache("/nonexistent"),
        LatentSelection::Indices(vec![1]),
        &cfg(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("cache-activations"), "{err}");
    assert!(f.dash.feature_html(1_000_000).is_err());
}

#[test]
fn html_renders_in_headless_chromium_without_errors() {
    let Some(chrome) = bf::chromium() else { return };
    let f = fix();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("dash.html");
    f.dash.save_html(&page).unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<link") && !html.contains("src=\"http"),
        "the page must not load anything"
    );
    let dom = bf::dump_dom(&chrome, &page);
    assert!(
        dom.contains("id=\"saescope-ready\""),
        "the page's script did not finish"
    );
    let err_marker = "id=\"saescope-error\"";
    if let Some(i) = dom.find(err_marker) {
        panic!("script error: {}", &dom[i..(i + 300).min(dom.len())]);
    }
    // The error detector works: a throwing script leaves the marker.
    let broken = dir.path().join("broken.html");
    std::fs::write(
        &broken,
        html.replace("</body>", "<script>throw new Error('boom')</script></body>"),
    )
    .unwrap();
    assert!(bf::dump_dom(&chrome, &broken).contains(err_marker));
    // Screenshot: the top-examples table is on screen, its tokens highlighted in orange.
    let shot = dir.path().join("shot.png");
    let out = std::process::Command::new(&chrome)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--window-size=1400,900",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&page)
        .output()
        .unwrap();
    assert!(
        out.status.success() && shot.exists(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let orange = bf::orange_pixels(&shot);
    assert!(
        orange > 2000,
        "only {orange} orange pixels: the top-examples table is not visible"
    );
}

#[test]
fn cli_writes_html_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (html, json) = (dir.path().join("d.html"), dir.path().join("d.json"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_saescope"))
        .args([
            "dashboard",
            "--sae",
            "shipped",
            "--latents",
            "3,5-6",
            "--tokens",
            "512",
            "--context-size",
            "64",
            "--correlations",
            "selected",
            "--quiet",
        ])
        .arg("--out")
        .arg(&html)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let idx: Vec<u64> = j["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![3, 5, 6]);
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .starts_with("<!DOCTYPE html>"));
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_saescope"))
        .args([
            "dashboard",
            "--sae",
            "shipped",
            "--latents",
            "9999",
            "--tokens",
            "64",
            "--out",
        ])
        .arg(&html)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("d_sae = 4608"));
}

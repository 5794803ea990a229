//! Tests for `saescope::viz`: the charts render to well-formed SVG with the expected pieces, and
//! bad input is an error rather than a panic.
use saescope::viz::{self, ColorScale, HeatmapOptions, Html, Svg};
use saescope::{DType, Device, Error, Tensor};

fn count(svg: &Svg, needle: &str) -> usize {
    svg.as_str().matches(needle).count()
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

fn assert_svg_document(svg: &Svg) {
    let s = svg.as_str();
    assert!(
        s.trim_start().starts_with("<svg"),
        "not an SVG document: {}",
        &s[..s.len().min(80)]
    );
    assert!(s.trim_end().ends_with("</svg>"));
    assert_eq!(
        count(svg, "<text"),
        count(svg, "</text>"),
        "unbalanced <text> elements"
    );
}

fn layer_labels(n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("{i}_pre")).collect();
    v.push("final_post".into());
    v
}

#[test]
fn line_chart_has_title_lines_legend_and_labels() {
    let x = layer_labels(5);
    let series = vec![
        (" Paris".to_string(), vec![0.1, 0.4, 1.0, 3.0, 7.0, 9.5]),
        (" London".to_string(), vec![0.2, 0.3, 0.2, 0.1, -0.5, -1.0]),
        ("<bos> & co".to_string(), vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ];
    let svg = viz::line_chart("Logit lens: France", &x, &series, "logit").unwrap();
    assert_svg_document(&svg);
    let s = svg.as_str();
    assert!(s.contains("Logit lens: France"), "title missing");
    assert!(
        s.contains(">\nlogit\n<") || s.contains("logit"),
        "y label missing"
    );
    // One polyline per series for the data and one per legend entry (the data lines are the
    // only 2-px strokes; axes and ticks are 1 px).
    assert_eq!(
        count(&svg, "stroke-width=\"2\" points="),
        2 * series.len(),
        "{s}"
    );
    // Legend names (escaped) and every x tick label (6 labels, short: all shown).
    assert!(s.contains(" Paris") && s.contains(" London"));
    assert!(
        s.contains("&lt;bos&gt; &amp; co"),
        "legend text not escaped"
    );
    for label in &x {
        assert!(s.contains(label.as_str()), "x label {label} missing");
    }
    // Markers: one circle per point.
    assert_eq!(count(&svg, "<circle"), 6 * series.len());
}

#[test]
fn line_chart_gaps_many_labels_and_single_point() {
    // A NaN splits the line into two runs.
    let x: Vec<String> = (0..4).map(|i| i.to_string()).collect();
    let svg = viz::line_chart(
        "gap",
        &x,
        &[("a".into(), vec![1.0, f32::NAN, 2.0, 3.0])],
        "y",
    )
    .unwrap();
    assert_eq!(count(&svg, "stroke-width=\"2\" points="), 1 + 2);

    // 200 long labels: rotated and thinned, but the chart still renders.
    let x: Vec<String> = (0..200)
        .map(|i| format!("a fairly long token label {i}"))
        .collect();
    let ys: Vec<f32> = (0..200).map(|i| (i as f32 / 10.0).sin()).collect();
    let svg = viz::line_chart("many", &x, &[("sin".into(), ys)], "y").unwrap();
    assert_svg_document(&svg);
    // At most 40 tick labels are shown, plus the rotated y-axis description.
    let rotated = count(&svg, "rotate(270");
    assert!(rotated > 10 && rotated <= 41, "{rotated} rotated labels");
    assert!(
        svg.as_str().contains('…'),
        "long labels should be abbreviated"
    );

    let svg = viz::line_chart("one", &strings(&["only"]), &[("s".into(), vec![2.0])], "y").unwrap();
    assert!(svg.as_str().contains("only"));
}

#[test]
fn line_chart_rejects_bad_input() {
    let x = strings(&["a", "b", "c"]);
    let err = viz::line_chart("t", &x, &[("s".into(), vec![1.0, 2.0])], "y").unwrap_err();
    assert!(matches!(err, Error::Invalid(_)));
    assert!(
        err.to_string().contains("has 2 values but there are 3"),
        "{err}"
    );
    assert!(matches!(
        viz::line_chart("t", &x, &[], "y"),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        viz::line_chart("t", &[], &[("s".into(), vec![])], "y"),
        Err(Error::Invalid(_))
    ));
    let nan = vec![f32::NAN; 3];
    assert!(matches!(
        viz::line_chart("t", &x, &[("s".into(), nan)], "y"),
        Err(Error::Invalid(_))
    ));
}

/// A causal attention pattern: row q attends uniformly to keys 0..=q; masked cells are `mask`.
fn causal_pattern(p: usize, mask: f32) -> Tensor {
    let mut v = vec![mask; p * p];
    for q in 0..p {
        for k in 0..=q {
            v[q * p + k] = 1.0 / (q + 1) as f32;
        }
    }
    Tensor::from_vec(v, (p, p), &Device::Cpu).unwrap()
}

#[test]
fn heatmap_draws_one_rect_per_finite_cell_and_a_colour_bar() {
    let toks = strings(&["<|im_start|>", "The", " capital", " of", " France", " is"]);
    let p = toks.len();
    let full = viz::heatmap("L0H0", &causal_pattern(p, 0.0), &toks, &toks).unwrap();
    let masked = viz::heatmap("L0H0", &causal_pattern(p, f32::NEG_INFINITY), &toks, &toks).unwrap();
    let nan = viz::heatmap("L0H0", &causal_pattern(p, f32::NAN), &toks, &toks).unwrap();
    for svg in [&full, &masked, &nan] {
        assert_svg_document(svg);
        assert!(svg.as_str().contains("L0H0"));
        assert!(
            svg.as_str().contains("&lt;|im_start|&gt;"),
            "token labels missing/unescaped"
        );
        assert!(svg.as_str().contains(" capital"));
    }
    // The masked cells (strictly above the diagonal) are not drawn.
    let n_masked = p * (p - 1) / 2;
    assert_eq!(count(&full, "<rect") - count(&masked, "<rect"), n_masked);
    assert_eq!(count(&masked, "<rect"), count(&nan, "<rect"));
    // Cells + 64 colour-bar steps + the background.
    assert!(count(&full, "<rect") >= p * p + 64);
    // Column labels are rotated, row labels are not: one rotated label per column.
    assert_eq!(count(&full, "rotate(270"), p);
}

#[test]
fn heatmap_dtypes_scales_and_labels() {
    let t = Tensor::new(&[[-2.0f32, 0.0, 1.0], [0.5, 3.0, -1.0]], &Device::Cpu).unwrap();
    for dtype in [DType::F32, DType::F16, DType::BF16, DType::F64] {
        let svg = viz::heatmap("signed", &t.to_dtype(dtype).unwrap(), &[], &[]).unwrap();
        assert_svg_document(&svg);
        // Diverging scale, symmetric around 0: the colour bar runs from dark blue to dark red
        // and is labelled with negative and positive values.
        let s = svg.as_str();
        assert!(
            s.contains("-2.0") && s.contains(">\n2.0\n<"),
            "colour bar labels"
        );
    }
    // Red for the positive maximum in the diverging map.
    let svg = viz::heatmap("signed", &t, &[], &[]).unwrap();
    assert!(svg.as_str().contains("#67001F"), "max should be dark red");
    let opts = HeatmapOptions {
        scale: ColorScale::Sequential,
        vmin: Some(-3.0),
        vmax: Some(3.0),
    };
    let svg = viz::heatmap_with("seq", &t, &[], &[], &opts).unwrap();
    assert!(svg.as_str().contains("#08306B"), "max should be dark blue");
    // Index labels when none are given; a large map thins its labels.
    let big = Tensor::rand(0f32, 1f32, (150, 150), &Device::Cpu).unwrap();
    let svg = viz::heatmap("big", &big, &[], &[]).unwrap();
    assert_svg_document(&svg);
    assert!(count(&svg, "rotate(270") < 150);
    assert!(count(&svg, "<rect") >= 150 * 150);
}

#[test]
fn heatmap_rejects_bad_shapes_and_labels() {
    let t3 = Tensor::zeros((1, 2, 2), DType::F32, &Device::Cpu).unwrap();
    let err = viz::heatmap("t", &t3, &[], &[]).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)));
    assert!(err.to_string().contains("2-D"), "{err}");
    let t1 = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        viz::heatmap("t", &t1, &[], &[]),
        Err(Error::Invalid(_))
    ));
    let empty = Tensor::zeros((0, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        viz::heatmap("t", &empty, &[], &[]),
        Err(Error::Invalid(_))
    ));
    let t2 = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
    let err = viz::heatmap("t", &t2, &strings(&["a", "b", "c"]), &[]).unwrap_err();
    assert!(err.to_string().contains("3 row labels"), "{err}");
    assert!(matches!(
        viz::heatmap("t", &t2, &[], &strings(&["a"])),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn svg_and_html_wrappers() {
    let svg = viz::line_chart(
        "t",
        &strings(&["a", "b"]),
        &[("s".into(), vec![1.0, 2.0])],
        "y",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/chart.svg");
    svg.save(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), svg.as_str());
    assert_eq!(svg.to_string(), svg.0);

    let html = Html::row(&[svg.clone(), svg.clone()]);
    assert_eq!(html.as_str().matches("<svg").count(), 2);
    let h2: Html = svg.clone().into();
    assert!(h2.as_str().starts_with("<div><svg"));
    h2.save(dir.path().join("chart.html")).unwrap();
    // Saving into a path whose parent is a file fails with an error, not a panic.
    let bad = dir.path().join("chart.html/x.svg");
    assert!(svg.save(bad).is_err());
}

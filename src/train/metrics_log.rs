//! Reading a run's `metrics.jsonl` back (SAELens's wandb names, one JSON object per logging
//! step) to plot or check it in a notebook.
use crate::error::{Error, Result};
use crate::viz::{line_chart, Svg};
use serde_json::Value;
use std::path::Path;

/// The logging steps of a training run ([`MetricsLog::load`]).
#[derive(Clone, Debug, Default)]
pub struct MetricsLog {
    /// One JSON object per logged step (sparsity-window lines left out).
    pub rows: Vec<Value>,
}

impl MetricsLog {
    /// Read `metrics.jsonl` from a run folder (`output_path`) or the file itself.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let p = path.as_ref();
        let file = if p.is_dir() {
            p.join(super::trainer::METRICS)
        } else {
            p.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let rows = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("losses/overall_loss").is_some())
            .collect();
        Ok(MetricsLog { rows })
    }
    /// The step of each row, as chart labels.
    pub fn steps(&self) -> Vec<String> {
        self.rows
            .iter()
            .map(|r| {
                r.get("step")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    .to_string()
            })
            .collect()
    }
    /// One metric per row (`"metrics/l0"`, `"losses/mse_loss"`, ...), NaN where absent.
    pub fn series(&self, key: &str) -> Vec<f32> {
        self.rows
            .iter()
            .map(|r| r.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN) as f32)
            .collect()
    }
    /// The last logged value of a metric.
    pub fn last(&self, key: &str) -> Option<f64> {
        self.rows.last()?.get(key)?.as_f64()
    }
    /// The metrics `keys` over the steps, one line each.
    pub fn plot(&self, title: &str, keys: &[&str], y_label: &str) -> Result<Svg> {
        let series: Vec<(String, Vec<f32>)> = keys
            .iter()
            .map(|k| (k.to_string(), self.series(k)))
            .collect();
        line_chart(title, &self.steps(), &series, y_label)
    }
}

//! Resumable checkpoints of a multi-layer run: `checkpoint/step_NNNNNNNN/` holds one file per
//! layer (the trainer's checkpoint, with the layer's mixing buffer as its source state) and
//! `stream.json` (the corpus position and model-batch count); `checkpoint/LATEST` names the
//! complete one and is replaced atomically only after every file is written, and the older
//! step folders are removed after that. A kill at any moment leaves a complete checkpoint.
use super::state::TranscoderRun;
use crate::data::RowStreamState;
use crate::error::{Error, Result};
use crate::train::trainer::write_atomic;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Folder of the checkpoints in a run folder.
pub(super) const DIR: &str = "checkpoint";
/// The file naming the latest complete checkpoint folder.
const LATEST: &str = "LATEST";
const STREAM: &str = "stream.json";

fn layer_file(dir: &Path, layer: usize) -> PathBuf {
    dir.join(format!("layer_{layer:02}.safetensors"))
}

impl TranscoderRun {
    /// Write the resumable state of every layer and of the stream (see the module docs).
    pub fn save_checkpoint(&self) -> Result<()> {
        let root = self.dir.join(DIR);
        let name = format!("step_{:08}", self.step());
        let d = root.join(&name);
        if d.exists() {
            std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        for ((t, b), &l) in self.trainers.iter().zip(&self.buffers).zip(&self.layers) {
            t.save_checkpoint_to(&layer_file(&d, l), b.state()?)?;
        }
        let meta = json!({
            "step": self.step(),
            "layers": self.layers,
            "n_batches": self.batcher.n_batches,
            "stream": self.batcher.stream_state(),
        });
        write_atomic(&d.join(STREAM), meta.to_string().as_bytes())?;
        write_atomic(&root.join(LATEST), name.as_bytes())?;
        for e in std::fs::read_dir(&root).map_err(|e| Error::io(&root, e))? {
            let p = e.map_err(|e| Error::io(&root, e))?.path();
            let stale = p
                .file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f != name && (f.starts_with("step_") || f.contains(".tmp")));
            if stale && p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        Ok(())
    }

    /// Load the latest checkpoint, if any (false: none, nothing changed). A checkpoint that
    /// does not fit this run is an error naming the file.
    pub fn load_checkpoint(&mut self) -> Result<bool> {
        let root = self.dir.join(DIR);
        let latest = root.join(LATEST);
        let name = match std::fs::read_to_string(&latest) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(&latest, e)),
        };
        let d = root.join(&name);
        let sp = d.join(STREAM);
        let bad = |m: String| Error::SaeFile {
            path: sp.clone(),
            reason: m,
        };
        let s = std::fs::read_to_string(&sp).map_err(|e| Error::io(&sp, e))?;
        let meta: Value = serde_json::from_str(&s).map_err(|e| bad(format!("bad JSON: {e}")))?;
        let layers: Vec<usize> = serde_json::from_value(meta["layers"].clone())
            .map_err(|e| bad(format!("bad `layers`: {e}")))?;
        if layers != self.layers {
            return Err(bad(format!(
                "checkpoint of layers {layers:?}, this run trains {:?}",
                self.layers
            )));
        }
        let stream: RowStreamState = serde_json::from_value(meta["stream"].clone())
            .map_err(|e| bad(format!("bad `stream`: {e}")))?;
        let step = meta["step"]
            .as_u64()
            .ok_or_else(|| bad("no `step`".into()))? as usize;
        for ((t, b), &l) in self
            .trainers
            .iter_mut()
            .zip(self.buffers.iter_mut())
            .zip(&self.layers)
        {
            t.load_checkpoint_from(&layer_file(&d, l), &mut |st| b.load_state(st))?;
            if t.n_training_steps != step {
                return Err(bad(format!(
                    "layer {l}'s checkpoint is at step {}, the run's at {step}",
                    t.n_training_steps
                )));
            }
        }
        self.batcher.restore_stream(stream)?;
        self.batcher.n_batches = meta["n_batches"].as_u64().unwrap_or(0);
        Ok(true)
    }
}

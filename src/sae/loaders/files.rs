//! Reading tensor files robustly: safetensors, NumPy `.npz` and PyTorch `.pt` pickles.
//!
//! Every failure names the file and says why (missing, truncated, corrupt, not the expected
//! format). Nothing here panics on bad input: the third-party readers are additionally run
//! under `catch_unwind`, and declared tensor sizes are checked against the file size before any
//! allocation.
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// Tensors by name.
pub(crate) type TensorMap = BTreeMap<String, Tensor>;

fn guard<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(Error::sae_file(
            path,
            format!("corrupt {what} file (the reader failed on its contents)"),
        )),
    }
}

fn file_len(path: &Path) -> Result<u64> {
    let md = std::fs::metadata(path).map_err(|e| {
        Error::sae_file(
            path,
            if e.kind() == std::io::ErrorKind::NotFound {
                "file not found".to_string()
            } else {
                format!("cannot read: {e}")
            },
        )
    })?;
    if !md.is_file() {
        return Err(Error::sae_file(path, "not a regular file"));
    }
    Ok(md.len())
}

/// All tensors of a safetensors file, on `device`, dtype unchanged.
pub(crate) fn read_safetensors(path: &Path, device: &Device) -> Result<TensorMap> {
    file_len(path)?;
    crate::model::weights::safetensors_layout_problem(path)
        .map_err(|reason| Error::sae_file(path, reason))?;
    guard(path, "safetensors", || {
        // SAFETY: read-only mapping of a file we do not modify while it is mapped.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }
            .map_err(|e| Error::sae_file(path, format!("not a valid safetensors file: {e}")))?;
        let mut out = TensorMap::new();
        for (name, _) in st.tensors() {
            let t = st
                .load(&name, device)
                .map_err(|e| Error::sae_file(path, format!("tensor `{name}`: {e}")))?;
            out.insert(name, t);
        }
        Ok(out)
    })
}

/// All arrays of a NumPy `.npz` archive (`np.savez` / `np.savez_compressed`), on CPU.
pub(crate) fn read_npz(path: &Path) -> Result<TensorMap> {
    let len = file_len(path)?;
    guard(path, "npz", || {
        let npz = candle_core::npy::NpzTensors::new(path).map_err(|e| {
            Error::sae_file(
                path,
                format!("not a valid .npz archive (truncated or corrupt?): {e}"),
            )
        })?;
        let mut names: Vec<String> = npz.names().into_iter().cloned().collect();
        names.sort();
        let mut out = TensorMap::new();
        for name in names {
            let (shape, dtype) = npz.get_shape_and_dtype(&name).map_err(|e| {
                Error::sae_file(path, format!("array `{name}`: corrupt header: {e}"))
            })?;
            let bytes = shape.elem_count() as u128 * dtype.size_in_bytes() as u128;
            // Deflate cannot compress more than ~1032:1.
            if bytes > (len as u128 + 1024) * 1100 {
                return Err(Error::sae_file(
                    path,
                    format!(
                        "array `{name}` claims shape {:?} ({bytes} bytes), impossible for a {len}-byte file (corrupt)",
                        shape.dims()
                    ),
                ));
            }
            let t = npz
                .get(&name)
                .map_err(|e| {
                    Error::sae_file(path, format!("array `{name}`: {e} (truncated or corrupt?)"))
                })?
                .ok_or_else(|| Error::sae_file(path, format!("array `{name}` vanished")))?;
            out.insert(name, t);
        }
        Ok(out)
    })
}

/// All tensors of a PyTorch `torch.save` file holding a state dict (a dict of tensors, possibly
/// under `key`), on CPU.
pub(crate) fn read_pt(path: &Path, key: Option<&str>) -> Result<TensorMap> {
    let len = file_len(path)?;
    guard(path, "PyTorch", || {
        let pth = candle_core::pickle::PthTensors::new(path, key).map_err(|e| {
            Error::sae_file(
                path,
                format!(
                    "not a readable PyTorch (zip) checkpoint (truncated or corrupt, or the legacy \
                     non-zip format?): {e}"
                ),
            )
        })?;
        let mut names: Vec<String> = pth.tensor_infos().keys().cloned().collect();
        names.sort();
        let mut out = TensorMap::new();
        for name in names {
            let info = &pth.tensor_infos()[&name];
            let bytes =
                info.layout.shape().elem_count() as u128 * info.dtype.size_in_bytes() as u128;
            if bytes > len as u128 {
                return Err(Error::sae_file(
                    path,
                    format!(
                        "tensor `{name}` claims shape {:?} ({bytes} bytes) but the file has {len} (truncated or corrupt)",
                        info.layout.dims()
                    ),
                ));
            }
            let t = pth
                .get(&name)
                .map_err(|e| Error::sae_file(path, format!("tensor `{name}`: {e}")))?
                .ok_or_else(|| Error::sae_file(path, format!("tensor `{name}` vanished")))?;
            out.insert(name, t);
        }
        if out.is_empty() {
            return Err(Error::sae_file(
                path,
                "no tensors found (expected a state dict saved with torch.save)",
            ));
        }
        Ok(out)
    })
}

/// Take a tensor, or say which file lacked it and what it has.
pub(crate) fn take(m: &mut TensorMap, name: &str, path: &Path) -> Result<Tensor> {
    m.remove(name).ok_or_else(|| missing(m, name, path))
}

/// The first of `names` present.
pub(crate) fn take_any(m: &mut TensorMap, names: &[&str], path: &Path) -> Result<Tensor> {
    for n in names {
        if let Some(t) = m.remove(*n) {
            return Ok(t);
        }
    }
    Err(missing(m, &names.join("` or `"), path))
}

pub(crate) fn missing(m: &TensorMap, name: &str, path: &Path) -> Error {
    Error::sae_file(
        path,
        format!(
            "no tensor `{name}` (the file has: {})",
            m.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    )
}

/// `m[name]` if present, else the transpose of the torch `nn.Linear` weight `m[linear]`
/// (`[out, in]` → SAELens's `[in, out]`).
pub(crate) fn take_or_linear_t(
    m: &mut TensorMap,
    name: &str,
    linear: &str,
    path: &Path,
) -> Result<Tensor> {
    match m.remove(name) {
        Some(w) => Ok(w),
        None => t2(&take_any(m, &[linear], path)?, linear, path),
    }
}

/// Transpose a 2-D tensor into a contiguous copy.
pub(crate) fn t2(t: &Tensor, name: &str, path: &Path) -> Result<Tensor> {
    if t.rank() != 2 {
        return Err(Error::sae_file(
            path,
            format!("tensor `{name}` should be 2-D, has shape {:?}", t.dims()),
        ));
    }
    Ok(t.t()?.contiguous()?)
}

/// Cast every tensor to `dtype` and move it to `device`.
pub(crate) fn cast_all(m: TensorMap, dtype: DType, device: &Device) -> Result<TensorMap> {
    m.into_iter()
        .map(|(k, v)| Ok((k, v.to_device(device)?.to_dtype(dtype)?)))
        .collect()
}

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
            let bytes = claimed_bytes(shape.dims(), dtype.size_in_bytes());
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

/// The bytes of the first entry of a zip whose name ends with `suffix`, read through the
/// central directory, when it is stored uncompressed (as `torch.save` writes every entry).
/// `None` when there is no such entry or the archive is not one this can read (the zip reader
/// then reports it).
fn stored_zip_entry(path: &Path, suffix: &str) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut read_at = |at: u64, n: u64| -> Option<Vec<u8>> {
        if at.checked_add(n)? > len {
            return None;
        }
        let mut b = vec![0u8; n as usize];
        f.seek(SeekFrom::Start(at)).ok()?;
        f.read_exact(&mut b).ok()?;
        Some(b)
    };
    let u16_at =
        |b: &[u8], i: usize| Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?) as u64);
    let u32_at =
        |b: &[u8], i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?) as u64);
    // End of central directory: in the last 64 KiB + 22 bytes.
    let tail_len = len.min(65_557);
    let tail = read_at(len - tail_len, tail_len)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])?;
    let (cd_size, cd_off) = (u32_at(&tail, eocd + 12)?, u32_at(&tail, eocd + 16)?);
    let cd = read_at(cd_off, cd_size)?;
    let mut p = 0usize;
    while cd.get(p..p + 4)? == [0x50, 0x4b, 0x01, 0x02] {
        let (method, size) = (u16_at(&cd, p + 10)?, u32_at(&cd, p + 20)?);
        let (nl, xl, cl) = (
            u16_at(&cd, p + 28)?,
            u16_at(&cd, p + 30)?,
            u16_at(&cd, p + 32)?,
        );
        let local = u32_at(&cd, p + 42)?;
        let name = cd.get(p + 46..p + 46 + nl as usize)?;
        if name.ends_with(suffix.as_bytes()) {
            if method != 0 {
                return None;
            }
            let head = read_at(local, 30)?;
            let start = local + 30 + u16_at(&head, 26)? + u16_at(&head, 28)?;
            return read_at(start, size);
        }
        p += 46 + (nl + xl + cl) as usize;
    }
    None
}

/// Why candle's pickle reader would fail on `p` by allocating without bound, if it would: a
/// string (BINUNICODE) whose claimed length runs past the end of the pickle. Walks the opcodes
/// that reader knows (the others it refuses by itself).
fn pickle_problem(p: &[u8]) -> Option<String> {
    let mut i = 0usize;
    while i < p.len() {
        let op = p[i];
        i += 1;
        let arg = |n: usize| p.get(i..i + n);
        let skip = match op {
            b'.' => return None,
            0x80 | b'K' | b'q' | b'h' => 1,
            b'M' => 2,
            b'J' | b'r' | b'j' => 4,
            b'G' => 8,
            0x8a => 1 + arg(1)?[0] as usize,
            b'c' => {
                let first = p[i..].iter().position(|&c| c == b'\n')? + 1;
                first + p[i + first..].iter().position(|&c| c == b'\n')? + 1
            }
            b'X' => {
                let n = u32::from_le_bytes(arg(4)?.try_into().ok()?) as usize;
                if n > p.len() - i - 4 {
                    return Some(format!(
                        "its pickle (data.pkl) has a string of {n} bytes at offset {i}, past the end of its {} bytes",
                        p.len()
                    ));
                }
                4 + n
            }
            _ => 0,
        };
        i += skip;
    }
    None
}

/// The element count of `dims` and its size in bytes for `elem_size`-byte elements, without
/// the wrap-around of a plain product (a corrupt header can claim more than 2^64 elements).
fn claimed_bytes(dims: &[usize], elem_size: usize) -> u128 {
    dims.iter()
        .try_fold(elem_size as u128, |n, &d| n.checked_mul(d as u128))
        .unwrap_or(u128::MAX)
}

/// All tensors of a PyTorch `torch.save` file holding a state dict (a dict of tensors, possibly
/// under `key`), on CPU.
pub(crate) fn read_pt(path: &Path, key: Option<&str>) -> Result<TensorMap> {
    let len = file_len(path)?;
    if let Some(problem) = stored_zip_entry(path, "data.pkl")
        .as_deref()
        .and_then(pickle_problem)
    {
        return Err(Error::sae_file(
            path,
            format!("corrupt PyTorch checkpoint: {problem}"),
        ));
    }
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
            let bytes = claimed_bytes(info.layout.dims(), info.dtype.size_in_bytes());
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

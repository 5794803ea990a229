//! Just enough of each on-disk format to mutate it *inside* its framing: a safetensors file as
//! (JSON header, data), a stored zip (`.npz`, torch `.pt`) as entries with their CRCs recomputed,
//! a `.npy` header, and a map of every size / type / count field of a GGUF header.
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// safetensors

/// A safetensors file split into its JSON header and its data section.
pub struct Safetensors {
    pub header: serde_json::Map<String, Value>,
    pub data: Vec<u8>,
}

impl Safetensors {
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
        let header = serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
        Some(Safetensors {
            header,
            data: bytes[8 + n..].to_vec(),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let h = serde_json::to_vec(&Value::Object(self.header.clone())).unwrap();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&self.data);
        out
    }

    /// Tensor names (not `__metadata__`), sorted.
    pub fn names(&self) -> Vec<String> {
        self.header
            .keys()
            .filter(|k| *k != "__metadata__")
            .cloned()
            .collect()
    }

    /// `(start, end)` of a tensor's bytes inside `data`.
    pub fn range(&self, name: &str) -> Option<(usize, usize)> {
        let o = self.header.get(name)?.get("data_offsets")?.as_array()?;
        let (s, e) = (o.first()?.as_u64()? as usize, o.get(1)?.as_u64()? as usize);
        (s <= e && e <= self.data.len()).then_some((s, e))
    }

    /// Replace a tensor's dtype, shape and bytes, moving the tensors after it (a pristine
    /// header: every `data_offsets` valid).
    pub fn replace(&mut self, name: &str, dtype: &str, shape: &[usize], bytes: &[u8]) {
        let (s, e) = self.range(name).unwrap();
        let delta = bytes.len() as i64 - (e - s) as i64;
        self.data.splice(s..e, bytes.iter().copied());
        for (k, v) in self.header.iter_mut() {
            if k == "__metadata__" {
                continue;
            }
            let o = v["data_offsets"].as_array().unwrap();
            let (a, b) = (o[0].as_u64().unwrap() as i64, o[1].as_u64().unwrap() as i64);
            if k == name {
                v["data_offsets"] = serde_json::json!([s, s + bytes.len()]);
                v["dtype"] = dtype.into();
                v["shape"] = serde_json::json!(shape);
            } else if a as usize >= e {
                v["data_offsets"] = serde_json::json!([a + delta, b + delta]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// zip (stored entries only: what numpy's `savez` and `torch.save` write)

pub struct ZipEntry {
    pub name: String,
    pub data: Vec<u8>,
}

fn u16_at(b: &[u8], i: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?) as usize)
}
fn u32_at(b: &[u8], i: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?) as usize)
}

/// The entries of a zip whose members are stored (not deflated), read through the central
/// directory.
pub fn zip_read(b: &[u8]) -> Option<Vec<ZipEntry>> {
    let eocd = (0..b.len().saturating_sub(21))
        .rev()
        .find(|&i| b[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])?;
    let count = u16_at(b, eocd + 10)?;
    let mut p = u32_at(b, eocd + 16)?;
    let mut out = Vec::new();
    for _ in 0..count {
        if b.get(p..p + 4)? != [0x50, 0x4b, 0x01, 0x02] || u16_at(b, p + 10)? != 0 {
            return None;
        }
        let size = u32_at(b, p + 20)?;
        let (nl, xl, cl) = (u16_at(b, p + 28)?, u16_at(b, p + 30)?, u16_at(b, p + 32)?);
        let local = u32_at(b, p + 42)?;
        let name = String::from_utf8(b.get(p + 46..p + 46 + nl)?.to_vec()).ok()?;
        let start = local + 30 + u16_at(b, local + 26)? + u16_at(b, local + 28)?;
        out.push(ZipEntry {
            name,
            data: b.get(start..start + size)?.to_vec(),
        });
        p += 46 + nl + xl + cl;
    }
    Some(out)
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in data {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A zip of stored entries with correct CRCs (so a mutation reaches the reader inside).
pub fn zip_write(entries: &[ZipEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let crc = crc32(&e.data);
        let off = out.len() as u32;
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&0u16.to_le_bytes()); // stored
            v.extend_from_slice(&0u32.to_le_bytes()); // time, date
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(&[0x50, 0x4b, 0x03, 0x04]);
        common(&mut out);
        out.extend_from_slice(e.name.as_bytes());
        out.extend_from_slice(&e.data);
        central.extend_from_slice(&[0x50, 0x4b, 0x01, 0x02]);
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&[0; 6]); // comment len, disk, internal attrs
        central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
        central.extend_from_slice(&off.to_le_bytes());
        central.extend_from_slice(e.name.as_bytes());
    }
    let cd_off = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// npy

/// Split a `.npy` file into its header dict text and its data.
pub fn npy_split(b: &[u8]) -> Option<(String, Vec<u8>)> {
    if b.get(..6)? != b"\x93NUMPY" {
        return None;
    }
    let (len, start) = match b.get(6)? {
        1 => (u16_at(b, 8)?, 10),
        _ => (u32_at(b, 8)?, 12),
    };
    let h = String::from_utf8(b.get(start..start + len)?.to_vec()).ok()?;
    Some((h, b[start + len..].to_vec()))
}

/// A version-1 `.npy` file from a header dict text and data (padded like numpy).
pub fn npy_join(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.trim_end().to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len().min(u16::MAX as usize) as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

// ---------------------------------------------------------------------------------------------
// GGUF

/// What a field of a GGUF header holds.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufField {
    TensorCount,
    KvCount,
    /// A string's length prefix (`what` says whose).
    StrLen(String),
    ValueType(String),
    ArrayType(String),
    ArrayLen(String),
    /// A scalar metadata value: key and GGUF value type.
    Scalar(String, u32),
    NDims(String),
    Dim(String),
    GgmlType(String),
    TensorOffset(String),
}

impl GgufField {
    /// A short kind name, for choosing uniformly among kinds.
    pub fn kind(&self) -> &'static str {
        match self {
            GgufField::TensorCount => "tensor_count",
            GgufField::KvCount => "kv_count",
            GgufField::StrLen(_) => "string length",
            GgufField::ValueType(_) => "value type",
            GgufField::ArrayType(_) => "array element type",
            GgufField::ArrayLen(_) => "array length",
            GgufField::Scalar(..) => "scalar",
            GgufField::NDims(_) => "n_dims",
            GgufField::Dim(_) => "dim",
            GgufField::GgmlType(_) => "ggml type",
            GgufField::TensorOffset(_) => "tensor offset",
        }
    }
}

/// Every field of a GGUF (v2/v3) header, with its byte offset and width.
pub struct GgufMap {
    pub fields: Vec<(usize, usize, GgufField)>,
    /// Where the header (metadata + tensor infos) ends.
    pub header_end: usize,
    pub tensor_names: Vec<String>,
}

fn scalar_width(t: u32) -> Option<usize> {
    Some(match t {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        _ => return None,
    })
}

pub fn gguf_walk(b: &[u8]) -> Option<GgufMap> {
    struct W<'a> {
        b: &'a [u8],
        p: usize,
        f: Vec<(usize, usize, GgufField)>,
    }
    impl W<'_> {
        fn u32(&mut self) -> Option<u32> {
            let v = u32::from_le_bytes(self.b.get(self.p..self.p + 4)?.try_into().ok()?);
            self.p += 4;
            Some(v)
        }
        fn u64(&mut self) -> Option<u64> {
            let v = u64::from_le_bytes(self.b.get(self.p..self.p + 8)?.try_into().ok()?);
            self.p += 8;
            Some(v)
        }
        fn string(&mut self, whose: &str, record: bool) -> Option<String> {
            if record {
                self.f
                    .push((self.p, 8, GgufField::StrLen(whose.to_string())));
            }
            let n = self.u64()? as usize;
            let s = String::from_utf8_lossy(self.b.get(self.p..self.p.checked_add(n)?)?);
            self.p += n;
            Some(s.into_owned())
        }
        fn value(&mut self, t: u32, key: &str, top: bool) -> Option<()> {
            match t {
                8 => {
                    self.string(key, top)?;
                }
                9 => {
                    self.f
                        .push((self.p, 4, GgufField::ArrayType(key.to_string())));
                    let et = self.u32()?;
                    self.f
                        .push((self.p, 8, GgufField::ArrayLen(key.to_string())));
                    let n = self.u64()?;
                    // Record the first few element strings' lengths, not 49152 of them.
                    for i in 0..n {
                        if et == 8 {
                            self.string(key, i < 4)?;
                        } else {
                            self.value(et, key, false)?;
                        }
                    }
                }
                t => {
                    let w = scalar_width(t)?;
                    if top {
                        self.f
                            .push((self.p, w, GgufField::Scalar(key.to_string(), t)));
                    }
                    self.p += w;
                }
            }
            Some(())
        }
    }
    if b.get(..4)? != b"GGUF" {
        return None;
    }
    let mut w = W {
        b,
        p: 8,
        f: Vec::new(),
    };
    w.f.push((8, 8, GgufField::TensorCount));
    let nt = w.u64()?;
    w.f.push((16, 8, GgufField::KvCount));
    let nkv = w.u64()?;
    for _ in 0..nkv {
        let key_at = w.p;
        let key = w.string("", false)?;
        w.f.push((key_at, 8, GgufField::StrLen(format!("key {key}"))));
        w.f.push((w.p, 4, GgufField::ValueType(key.clone())));
        let t = w.u32()?;
        w.value(t, &key, true)?;
    }
    let mut names = Vec::new();
    for _ in 0..nt {
        let name_at = w.p;
        let name = w.string("", false)?;
        w.f.push((name_at, 8, GgufField::StrLen(format!("tensor {name}"))));
        w.f.push((w.p, 4, GgufField::NDims(name.clone())));
        let nd = w.u32()?;
        for _ in 0..nd {
            w.f.push((w.p, 8, GgufField::Dim(name.clone())));
            w.u64()?;
        }
        w.f.push((w.p, 4, GgufField::GgmlType(name.clone())));
        w.u32()?;
        w.f.push((w.p, 8, GgufField::TensorOffset(name.clone())));
        w.u64()?;
        names.push(name);
    }
    Some(GgufMap {
        fields: w.f,
        header_end: w.p,
        tensor_names: names,
    })
}

//! Hub dataset repos through hf-hub, in the standard cache layout
//! (`datasets--{org}--{name}/{blobs,refs,snapshots}`), with the same settings as model
//! downloads: `LoadOptions::{hub_cache_dir, hub_endpoint, offline, revision}`, else
//! `HF_HUB_CACHE` / `HF_HOME`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`, `main`.
use crate::error::{Error, Result};
use crate::model::hub::{env_nonempty, is_valid_repo_id, HubSettings};
use crate::model::LoadOptions;
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use std::path::PathBuf;

fn check_repo_id(repo_id: &str) -> Result<()> {
    if is_valid_repo_id(repo_id) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "`{repo_id}` is not a valid hub dataset id (expected `name` or `org/name`)"
        )))
    }
}

fn check_file(repo_id: &str, f: &str) -> Result<()> {
    if f.is_empty()
        || f.starts_with('/')
        || f.contains('\\')
        || f.split('/').any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Error::Hub {
            repo: repo_id.into(),
            file: f.into(),
            reason: "not a valid file path inside a repo".into(),
        });
    }
    Ok(())
}

/// Resolve `files` of dataset `repo_id` (cache first, then the hub) → (name, local path).
/// With no `files`, lists the repo (online only) and takes its `*.jsonl` / `*.txt` files.
pub(crate) fn fetch_dataset_files(
    repo_id: &str,
    files: &[&str],
    opts: &LoadOptions,
) -> Result<Vec<(String, PathBuf)>> {
    check_repo_id(repo_id)?;
    let HubSettings {
        cache_dir,
        endpoint,
        offline,
        revision,
    } = HubSettings::new(opts)?;
    let repo = Repo::with_revision(repo_id.to_string(), RepoType::Dataset, revision.clone());
    let cache = Cache::new(cache_dir.clone());
    let hub_err = |file: &str, reason: String| Error::Hub {
        repo: format!("datasets/{repo_id}"),
        file: file.to_string(),
        reason,
    };

    let api = if offline {
        None
    } else {
        let mut b = ApiBuilder::from_cache(cache.clone()).with_progress(false);
        if let Some(ep) = &endpoint {
            b = b.with_endpoint(ep.clone());
        }
        if let Some(token) = env_nonempty("HF_TOKEN") {
            b = b.with_token(Some(token));
        }
        let api = b
            .build()
            .map_err(|e| hub_err("", format!("cannot create the hub client: {e}")))?;
        Some(api.repo(repo.clone()))
    };

    let mut names: Vec<String> = files.iter().map(|s| s.to_string()).collect();
    if names.is_empty() {
        let Some(api) = &api else {
            return Err(hub_err(
                "",
                "offline: name the dataset files to read (hub:ORG/NAME:FILE,...) since the repo cannot be listed".into(),
            ));
        };
        let info = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| api.info()))
            .map_err(|_| hub_err("", "the hub client panicked while listing the repo".into()))?
            .map_err(|e| {
                hub_err(
                    "",
                    format!("cannot list the repo: {e}; name the files (hub:ORG/NAME:FILE,...)"),
                )
            })?;
        names = info
            .siblings
            .into_iter()
            .map(|s| s.rfilename)
            .filter(|f| f.ends_with(".jsonl") || f.ends_with(".txt"))
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(hub_err(
                "",
                "the repo has no *.jsonl or *.txt files (Parquet is not supported)".into(),
            ));
        }
    }

    let mut out = Vec::new();
    for f in &names {
        check_file(repo_id, f)?;
        if let Some(p) = cache.repo(repo.clone()).get(f) {
            out.push((f.clone(), p));
            continue;
        }
        let Some(api) = &api else {
            return Err(hub_err(
                f,
                format!(
                    "offline mode (LoadOptions::offline or HF_HUB_OFFLINE) and the file is not in the hub cache at {} (revision `{revision}`)",
                    cache_dir.display()
                ),
            ));
        };
        let url = api.url(f);
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| api.get(f)))
            .map_err(|_| hub_err(f, format!("the hub client panicked while fetching {url}")))?;
        match got {
            Ok(p) => out.push((f.clone(), p)),
            Err(e) => {
                return Err(hub_err(
                    f,
                    format!("cannot fetch {url}: {e} (check the dataset id, file name and revision `{revision}`)"),
                ))
            }
        }
    }
    Ok(out)
}

//! `carechain import`: loads FHIR Bundles (Synthea's transaction bundles, or any transaction
//! or batch Bundle) through the node's API, as the identity of the given key.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{client::Client, keyfile, out_line, txcmd::Conn};

#[derive(Args)]
pub struct ImportArgs {
    /// Bundle files, or directories of `.json` bundles (Synthea output). Files named
    /// `hospitalInformation*` and `practitionerInformation*` load first.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Key file of the importing identity (an organization or practitioner).
    #[arg(long)]
    pub key: PathBuf,
    /// Bundles sent at once (after the shared hospital and practitioner bundles, which go
    /// first, one at a time). Bundles over different resources are committed in parallel.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    #[command(flatten)]
    pub conn: Conn,
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if p.is_dir() {
        for e in std::fs::read_dir(p).with_context(|| p.display().to_string())? {
            collect(&e?.path(), out)?;
        }
    } else if p.extension().is_some_and(|x| x == "json") {
        out.push(p.to_path_buf());
    }
    Ok(())
}

fn file_name(f: &Path) -> String {
    f.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Synthea's shared organization and practitioner bundles, which patient bundles refer to.
fn is_shared(name: &str) -> bool {
    name.starts_with("hospitalInformation") || name.starts_with("practitionerInformation")
}

pub fn run(a: &ImportArgs) -> Result<()> {
    let mut files = Vec::new();
    for p in &a.paths {
        if !p.exists() {
            bail!("{} does not exist", p.display());
        }
        collect(p, &mut files)?;
    }
    // Shared organizations and practitioners first, then patients; otherwise by name.
    files.sort_by_key(|f| {
        let n = file_name(f);
        (!is_shared(&n), n)
    });
    let key = keyfile::read(&a.key)?;
    let client = Client::new(&a.conn.url);
    let aud = format!("{}/auth/token", a.conn.url.trim_end_matches('/'));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let token = client.token(
        &carechain_service::make_assertion(&key, &aud, now),
        "user/*.cruds",
    )?;
    let token = token["access_token"]
        .as_str()
        .context("no access token")?
        .to_string();
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} bundles {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let shared = files
        .iter()
        .take_while(|f| is_shared(&file_name(f)))
        .count();
    let outcomes = parking_lot::Mutex::new(Vec::with_capacity(files.len()));
    let send = |f: &PathBuf| {
        let name = file_name(f);
        let outcome = match std::fs::read(f) {
            Err(e) => Err(format!("{name}: {e}")),
            Ok(body) => match client.post_fhir("/fhir", &token, &body) {
                Ok((200, v)) => Ok(v["entry"].as_array().map_or(0, Vec::len)),
                Ok((status, v)) => {
                    let why = v["issue"][0]["diagnostics"].as_str().unwrap_or("refused");
                    Err(format!("{name}: HTTP {status}: {why}"))
                }
                Err(e) => Err(format!("{name}: {e}")),
            },
        };
        let mut all = outcomes.lock();
        all.push(outcome);
        let resources: usize = all.iter().filter_map(|o| o.as_ref().ok()).sum();
        bar.set_message(format!("{resources} resources"));
        bar.inc(1);
    };
    // What other bundles refer to first, then the rest on `jobs` connections.
    files[..shared].iter().for_each(send);
    let next = std::sync::atomic::AtomicUsize::new(shared);
    std::thread::scope(|scope| {
        for _ in 0..a.jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(f) = files.get(i) else { break };
                    send(f);
                }
            });
        }
    });
    let outcomes = outcomes.into_inner();
    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    let resources: usize = outcomes.iter().filter_map(|o| o.as_ref().ok()).sum();
    let failed: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    out_line(&serde_json::to_string_pretty(&serde_json::json!({
        "bundles": files.len(),
        "imported": ok,
        "failed": failed,
        "resources": resources,
        "seconds": secs,
        "resources_per_s": (resources as f64 / secs.max(1e-9)).round(),
    }))?);
    if !failed.is_empty() {
        bail!("{} of {} bundles failed", failed.len(), files.len());
    }
    Ok(())
}

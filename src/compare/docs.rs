//! The generated parts of docs/: blocks in Markdown files, between
//! `<!-- compare:table ID -->` (or `compare:chart NAME`) and `<!-- /compare -->`, rewritten
//! from a committed run directory, each naming the raw.csv it comes from and the command that
//! made it. Everything outside the blocks is left as written.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::render::markdown_table;
use super::report::parse_csv;
use super::tables::{ratios, sections, Table};

const END: &str = "<!-- /compare -->";

/// Rewrites every block of every file in `files` from the run in `run`; returns the files
/// changed.
pub fn update(run: &Path, files: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let raw = run.join("raw.csv");
    let text =
        std::fs::read_to_string(&raw).with_context(|| format!("reading {}", raw.display()))?;
    let samples = parse_csv(&text).map_err(anyhow::Error::msg)?;
    let mut tables: Vec<Table> = sections(None, &samples)
        .into_iter()
        .flat_map(|s| s.tables)
        .collect();
    tables.push(ratios(&samples));
    let source = Source::read(run);
    let mut changed = Vec::new();
    for file in files {
        let doc =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let new = rewrite(&doc, &|kind, id| {
            source.block(kind, id, &tables, &rel(base, run))
        })
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        if new != doc {
            std::fs::write(file, new)?;
            changed.push(file.clone());
        }
    }
    Ok(changed)
}

/// `run` as a link from a document in `base` (both relative to the current directory).
fn rel(base: &Path, run: &Path) -> String {
    run.strip_prefix(base).unwrap_or(run).display().to_string()
}

/// What a block says about the run it comes from (from summary.json, when present).
struct Source {
    command: String,
    git: String,
    date: String,
}

impl Source {
    fn read(run: &Path) -> Source {
        let json: serde_json::Value = std::fs::read_to_string(run.join("summary.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let get = |k: &str| json["setup"][k].as_str().unwrap_or("unknown").to_string();
        Source {
            command: get("command"),
            git: get("git"),
            date: get("date"),
        }
    }

    /// A block's new content.
    fn block(&self, kind: &str, id: &str, tables: &[Table], run: &str) -> Result<String, String> {
        match kind {
            "chart" => Ok(format!("![{id}]({run}/{id}.png)\n")),
            "table" => {
                let from = format!(
                    "From [`{run}/raw.csv`]({run}/raw.csv) ({}, commit {}; `{}`):\n\n",
                    self.date, self.git, self.command
                );
                Ok(
                    match tables.iter().find(|t| t.id == id && !t.rows.is_empty()) {
                        Some(t) => from + &markdown_table(t),
                        None => format!("*Not measured in `{run}`.*\n"),
                    },
                )
            }
            _ => Err(format!("unknown block kind `{kind}` (table or chart)")),
        }
    }
}

/// `doc` with the content of every block replaced by `fill(kind, id)`.
fn rewrite(
    doc: &str,
    fill: &dyn Fn(&str, &str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = doc;
    while let Some(start) = rest.find("<!-- compare:") {
        let open_end = start
            + rest[start..]
                .find("-->")
                .ok_or("unclosed <!-- compare: marker")?
            + 3;
        let marker = &rest[start + "<!-- compare:".len()..open_end - 3];
        let (kind, id) = marker
            .trim()
            .split_once(' ')
            .ok_or(format!("marker `{marker}` needs a kind and an id"))?;
        let close = open_end
            + rest[open_end..]
                .find(END)
                .ok_or(format!("no {END} after `{marker}`"))?;
        out.push_str(&rest[..open_end]);
        out.push('\n');
        out.push_str(&fill(kind, id.trim())?);
        out.push_str(END);
        rest = &rest[close + END.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Used by the tests: fails when a marker is malformed.
pub fn check(doc: &str) -> anyhow::Result<()> {
    if let Err(e) = rewrite(doc, &|_, _| Ok(String::new())) {
        bail!("{e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_rewritten_and_the_rest_kept() {
        let doc = "a\n<!-- compare:table static -->\nold\n<!-- /compare -->\nb\n<!-- compare:chart cpu -->\n<!-- /compare -->\n";
        let got = rewrite(doc, &|k, id| Ok(format!("{k}={id}\n"))).unwrap();
        assert_eq!(got, "a\n<!-- compare:table static -->\ntable=static\n<!-- /compare -->\nb\n<!-- compare:chart cpu -->\nchart=cpu\n<!-- /compare -->\n");
        assert!(check("<!-- compare:table x -->\nno end").is_err());
        assert!(check("<!-- compare:nokind -->\n<!-- /compare -->").is_err());
    }

    #[test]
    fn the_committed_docs_have_well_formed_blocks() {
        for f in ["docs/BENCHMARKS.md", "docs/ARCHITECTURES.md"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
            check(&std::fs::read_to_string(path).unwrap()).unwrap();
        }
    }
}

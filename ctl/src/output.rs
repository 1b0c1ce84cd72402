//! How answers are printed: the seed's JSON (`{"msg": "OK", "ret": 0}`) or readable tables,
//! and the migration progress bar.

use clap::ValueEnum;
use serde_json::Value;

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Table,
}

/// Renders rows under headers with aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.to_vec())];
    for r in rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints `v` (of `kind`: ok, slot, servers, proxies, plan, dump) as asked.
pub fn print_value(out: Output, kind: &str, v: &Value) {
    if out == Output::Json {
        match kind {
            "ok" | "plan" => println!("{v}"),
            _ => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        }
        return;
    }
    let rows = |a: &Value, cols: &[&str]| -> Vec<Vec<String>> {
        a.as_array()
            .map(|a| {
                a.iter()
                    .map(|r| cols.iter().map(|c| s(&r[*c])).collect())
                    .collect()
            })
            .unwrap_or_default()
    };
    match kind {
        "slot" => println!(
            "{}",
            table(
                &[
                    "SLOT",
                    "GROUP",
                    "MASTER",
                    "STATE",
                    "TARGET",
                    "TARGET MASTER"
                ],
                &[vec![
                    s(&v["id"]),
                    s(&v["group_id"]),
                    s(&v["master"]),
                    s(v["action"].get("state").unwrap_or(&Value::Null)),
                    s(v["action"].get("target_id").unwrap_or(&Value::Null)),
                    s(&v["target_master"]),
                ]],
            )
        ),
        "servers" => {
            let cols = [
                "gid",
                "addr",
                "expected_role",
                "role",
                "master",
                "link",
                "keys",
                "used_memory",
                "in_sync",
                "error",
            ];
            println!(
                "{}",
                table(
                    &[
                        "GROUP", "ADDR", "EXPECTED", "ROLE", "MASTER", "LINK", "KEYS", "MEMORY",
                        "IN SYNC", "ERROR"
                    ],
                    &rows(v, &cols)
                )
            )
        }
        "proxies" => {
            let cols = [
                "id",
                "token",
                "proxy_addr",
                "admin_addr",
                "alive",
                "registered",
                "acked_version",
            ];
            println!(
                "{}",
                table(
                    &[
                        "ID",
                        "TOKEN",
                        "PROXY",
                        "ADMIN",
                        "ALIVE",
                        "REGISTERED",
                        "ACKED VERSION"
                    ],
                    &rows(v, &cols)
                )
            )
        }
        "plan" => {
            let ranges = v["ranges"].as_array().cloned().unwrap_or_default();
            if ranges.is_empty() {
                println!("nothing to rebalance");
            }
            for r in ranges {
                println!("{}", s(&r));
            }
            if v["confirmed"] == Value::Bool(false)
                && !v["ranges"].as_array().is_none_or(|a| a.is_empty())
            {
                println!("(plan only: run with --confirm to apply it)");
            }
        }
        "dump" => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        _ => {
            println!("{}", s(&v["msg"]));
            if let Some(o) = v.as_object() {
                for (k, val) in o.iter().filter(|(k, _)| *k != "msg" && *k != "ret") {
                    println!("{k}: {}", s(val));
                }
            }
        }
    }
}

/// A progress bar over `total` slots (hidden when stderr is not a terminal).
pub fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "migrating {bar:40.cyan/blue} {pos}/{len} slots ({elapsed})",
    ) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligned() {
        let t = super::table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y");
    }
}

//! Text output helpers: aligned tables and RFC 3339 timestamps.

use std::io::{self, Write};

/// A table printed with aligned columns; numbers align right.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Shortens the widest column until the table is at most `width` characters wide
    /// (columns are never cut below 8 characters).
    pub fn fit(&mut self, width: usize) {
        loop {
            let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
            for row in &self.rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let total: usize = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
            let Some((widest, &w)) = widths.iter().enumerate().max_by_key(|(_, w)| **w) else { return };
            if total <= width || w <= 8 {
                return;
            }
            let target = w - (total - width).min(w - 8);
            let cut = |cell: &mut String| {
                if cell.chars().count() > target {
                    *cell = cell.chars().take(target.saturating_sub(1)).collect::<String>() + "…";
                }
            };
            if let Some(h) = self.header.get_mut(widest) {
                cut(h);
            }
            for row in &mut self.rows {
                if let Some(cell) = row.get_mut(widest) {
                    cut(cell);
                }
            }
        }
    }

    /// Prints the table.
    pub fn print(&self, out: &mut impl Write) -> io::Result<()> {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let numeric: Vec<bool> = (0..columns)
            .map(|c| {
                self.rows.iter().all(|r| r.get(c).is_none_or(|cell| cell.is_empty() || cell.parse::<f64>().is_ok()))
            })
            .collect();
        let line = |out: &mut dyn Write, cells: &[String]| -> io::Result<()> {
            let mut text = String::new();
            for (c, width) in widths.iter().enumerate() {
                let cell = cells.get(c).map(String::as_str).unwrap_or("");
                let pad = width.saturating_sub(cell.chars().count());
                if c > 0 {
                    text.push_str("  ");
                }
                if numeric.get(c).copied().unwrap_or(false) {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                }
            }
            writeln!(out, "{}", text.trim_end())
        };
        line(out, &self.header)?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(out, &rule)?;
        for row in &self.rows {
            line(out, row)?;
        }
        Ok(())
    }
}

/// A query result as an aligned table: durations in human units, nulls as `(none)`;
/// a TIMESERIES result gets a sparkline per series after the table.
pub fn print_result(result: &spanstore_query::QueryResult, out: &mut impl Write) -> io::Result<()> {
    print_result_width(result, usize::MAX, out)
}

/// [`print_result`] with the table cut to `width` columns: the widest cells are
/// shortened with `…` until the table fits.
pub fn print_result_width(result: &spanstore_query::QueryResult, width: usize, out: &mut impl Write) -> io::Result<()> {
    let header: Vec<&str> = result.columns.iter().map(String::as_str).collect();
    let mut table = Table::new(&header);
    for row in &result.rows {
        table.row(row.iter().map(|v| v.to_text(true)).collect());
    }
    table.fit(width);
    table.print(out)?;
    if result.timeseries && !result.rows.is_empty() {
        // One series per facet combination, one sparkline per aggregate column.
        let facets = 1..1 + result.facet_count;
        let mut series: Vec<(String, Vec<Vec<f64>>)> = Vec::new();
        for row in &result.rows {
            let key: Vec<String> =
                row.get(facets.clone()).unwrap_or_default().iter().map(|v| v.to_text(true)).collect();
            let key = key.join(", ");
            let values: Vec<f64> = row.iter().skip(1 + result.facet_count).map(|v| v.as_f64().unwrap_or(0.0)).collect();
            match series.iter_mut().find(|(k, _)| *k == key) {
                Some((_, points)) => points.push(values),
                None => series.push((key, vec![values])),
            }
        }
        for (key, points) in series {
            for (c, name) in result.columns.iter().skip(1 + result.facet_count).enumerate() {
                let column: Vec<f64> = points.iter().map(|p| p.get(c).copied().unwrap_or(0.0)).collect();
                let label = if key.is_empty() { name.clone() } else { format!("{key}: {name}") };
                writeln!(out, "{}  {label}", sparkline(&column))?;
            }
        }
    }
    writeln!(out, "({} rows)", result.rows.len())
}

/// Block characters scaled from the smallest to the largest value.
pub fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min).min(0.0);
    values
        .iter()
        .map(|v| {
            if max <= min {
                BARS[0]
            } else {
                let level = ((v - min) / (max - min) * 7.0).round().clamp(0.0, 7.0) as usize;
                BARS.get(level).copied().unwrap_or('█')
            }
        })
        .collect()
}

/// A trace as an indented tree: offset from the trace start, duration, status, service
/// and name, key attributes, and a waterfall bar.
pub fn print_trace(spans: &[spanstore_engine::Span], out: &mut impl Write) -> io::Result<()> {
    use std::collections::{HashMap, HashSet};
    let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_unix_nano()).max().unwrap_or(start).max(start + 1);
    let ids: HashSet<_> = spans.iter().map(|s| s.span_id).collect();
    let mut children: HashMap<Option<spanstore_engine::SpanId>, Vec<usize>> = HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        // A span whose parent is not in the trace is shown as a root.
        let parent = s.parent_span_id.filter(|p| ids.contains(p) && *p != s.span_id);
        children.entry(parent).or_default().push(i);
    }
    for list in children.values_mut() {
        list.sort_by_key(|&i| spans.get(i).map(|s| s.start_unix_nano));
    }
    writeln!(
        out,
        "trace {} — {} spans, {}",
        spans.first().map(|s| s.trace_id.to_hex()).unwrap_or_default(),
        spans.len(),
        spanstore_query::value::format_duration((end - start) as i64)
    )?;
    const WIDTH: usize = 40;
    let mut stack: Vec<(usize, usize)> =
        children.get(&None).map(|r| r.iter().rev().map(|&i| (i, 0)).collect()).unwrap_or_default();
    let mut seen = HashSet::new();
    while let Some((i, depth)) = stack.pop() {
        let Some(s) = spans.get(i) else { continue };
        if !seen.insert(i) {
            continue;
        }
        let offset = s.start_unix_nano - start;
        let from = (offset as f64 / (end - start) as f64 * WIDTH as f64) as usize;
        let len = ((s.duration_ns as f64 / (end - start) as f64 * WIDTH as f64).ceil() as usize).max(1);
        let bar: String = (0..WIDTH).map(|c| if c >= from && c < from + len { '█' } else { '·' }).collect();
        let status = match s.status_code {
            spanstore_engine::StatusCode::Error => " ERROR",
            _ => "",
        };
        let key_attributes: Vec<String> = s
            .attributes
            .iter()
            .filter(|kv| {
                [
                    "http.route",
                    "http.response.status_code",
                    "db.operation.name",
                    "faas.coldstart",
                    "messaging.system",
                    "aws.request_id",
                ]
                .contains(&kv.key.as_str())
            })
            .map(|kv| format!("{}={}", kv.key, spanstore_query::exec::any_value(&kv.value).to_text(true)))
            .collect();
        writeln!(
            out,
            "{bar} {:>9} {:>9}  {}{} {}{status}  {}",
            format!("+{}", spanstore_query::value::format_duration(offset as i64)),
            spanstore_query::value::format_duration(s.duration_ns as i64),
            "  ".repeat(depth),
            s.service().unwrap_or("?"),
            s.name,
            key_attributes.join(" ")
        )?;
        if let Some(kids) = children.get(&Some(s.span_id)) {
            for &k in kids.iter().rev() {
                stack.push((k, depth + 1));
            }
        }
    }
    Ok(())
}

/// Nanoseconds since the epoch as RFC 3339 UTC with nanoseconds.
pub fn timestamp(unix_nano: u64) -> String {
    spanstore_query::format_rfc3339_nanos(i64::try_from(unix_nano).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_with_nanoseconds() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(timestamp(1_795_698_000_123_456_789), "2026-11-26T13:00:00.123456789Z");
        assert_eq!(timestamp(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn tables_align_numbers_right() {
        let mut table = Table::new(&["name", "n"]);
        table.row(vec!["a".into(), "1".into()]);
        table.row(vec!["bbb".into(), "100".into()]);
        let mut out = Vec::new();
        table.print(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "name    n\n----  ---\na       1\nbbb   100\n");
    }
}

//! Table selection (include/exclude regexes over `schema.table`) and table mapping.

use std::collections::BTreeMap;

use regex::Regex;

/// Schemas that are never replicated: the server's own and fleetsync's state.
pub const SYSTEM_SCHEMAS: &[&str] = &[
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    "fleetsync",
];

/// Include/exclude filter on `schema.table`. Patterns are anchored at both ends.
#[derive(Debug, Clone)]
pub struct TableFilter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    /// Further filters a table may match instead (see [`TableFilter::any_of`]).
    alternatives: Vec<TableFilter>,
}

impl TableFilter {
    /// Errors carry the index of the bad pattern (include first, then exclude) and the reason.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, (usize, String)> {
        let compile = |pats: &[String], offset: usize| -> Result<Vec<Regex>, (usize, String)> {
            pats.iter()
                .enumerate()
                .map(|(i, p)| {
                    Regex::new(&format!("^(?:{p})$"))
                        .map_err(|e| (i + offset, format!("invalid regex {p:?}: {e}")))
                })
                .collect()
        };
        Ok(TableFilter {
            include: compile(include, 0)?,
            exclude: compile(exclude, include.len())?,
            alternatives: Vec::new(),
        })
    }

    /// A filter selecting what any of `filters` selects (an agent serving several syncs).
    pub fn any_of(mut filters: Vec<TableFilter>) -> TableFilter {
        match filters.len() {
            1 => filters.remove(0),
            _ => TableFilter {
                include: Vec::new(),
                // Matches nothing on its own: only the alternatives select.
                exclude: vec![Regex::new("^(?s).*$").expect("constant regex")],
                alternatives: filters,
            },
        }
    }

    /// Whether `schema.table` is selected. System schemas never are.
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        if SYSTEM_SCHEMAS.contains(&schema) {
            return false;
        }
        let name = format!("{schema}.{table}");
        let own = (self.include.is_empty() || self.include.iter().any(|r| r.is_match(&name)))
            && !self.exclude.iter().any(|r| r.is_match(&name));
        own || self.alternatives.iter().any(|f| f.matches(schema, table))
    }

    /// Include patterns that match none of `tables`: a likely typo or a missing table.
    pub fn unmatched_includes<'a>(&'a self, tables: &[(String, String)]) -> Vec<&'a str> {
        self.include
            .iter()
            .filter(|r| !tables.iter().any(|(s, t)| r.is_match(&format!("{s}.{t}"))))
            .map(|r| {
                let s = r.as_str();
                s.strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or(s)
            })
            .collect()
    }
}

/// Source `schema.table` to target `schema.table`. A table entry wins over a schema entry.
#[derive(Debug, Clone, Default)]
pub struct TableMap {
    schemas: BTreeMap<String, String>,
    tables: BTreeMap<(String, String), (String, String)>,
}

impl TableMap {
    pub fn new(map: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut out = TableMap::default();
        for (from, to) in map {
            match (from.split_once('.'), to.split_once('.')) {
                (None, None) if !from.is_empty() && !to.is_empty() => {
                    out.schemas.insert(from.clone(), to.clone());
                }
                (Some((fs, ft)), Some((ts, tt)))
                    if ![fs, ft, ts, tt].iter().any(|s| s.is_empty()) =>
                {
                    out.tables.insert(
                        (fs.to_string(), ft.to_string()),
                        (ts.to_string(), tt.to_string()),
                    );
                }
                _ => {
                    return Err(format!(
                    "{from:?} = {to:?}: map a schema to a schema or schema.table to schema.table"
                ))
                }
            }
        }
        Ok(out)
    }

    pub fn target(&self, schema: &str, table: &str) -> (String, String) {
        if let Some((s, t)) = self.tables.get(&(schema.to_string(), table.to_string())) {
            return (s.clone(), t.clone());
        }
        (self.target_schema(schema), table.to_string())
    }

    pub fn target_schema(&self, schema: &str) -> String {
        self.schemas
            .get(schema)
            .cloned()
            .unwrap_or_else(|| schema.to_string())
    }

    /// True when no table of `schema` is renamed or moved: DDL text can run unchanged on the
    /// target with the mapped default database.
    pub fn is_schema_identity_for_tables(&self, schema: &str) -> bool {
        !self.tables.keys().any(|(s, _)| s == schema)
    }
}

//! Queries on the index, shared by QIDO-RS and the C-FIND SCP: which attributes can be matched
//! at each level (study, series, instance), how a DICOM match value reads (single value,
//! `*`/`?` wildcards, date and time ranges, UID lists, fuzzy person names), and the results as
//! DICOM JSON objects (the attributes of the level and the levels above, counts, and any other
//! attribute asked for, taken from a stored instance's metadata).

use std::fmt;

use dicom_core::Tag;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;
use serde_json::{Map, Value as Json};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, Row, SqlitePool};

use crate::dicom::json::tag_key;

/// The level a query returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Studies.
    Study,
    /// Series.
    Series,
    /// Instances.
    Instance,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Study => "STUDY",
            Self::Series => "SERIES",
            Self::Instance => "IMAGE",
        })
    }
}

/// How an attribute matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Uid,
    Text,
    Name,
    Date,
    Time,
    Int,
    /// Modalities in Study: matches any of the study's series.
    Modalities,
    /// A count: returned, never matched.
    Count,
}

/// An attribute the index keeps.
#[derive(Debug)]
struct Attr {
    tag: Tag,
    vr: &'static str,
    level: Level,
    /// SQL expression over the aliases `st` (studies), `se` (series), `i` (instances).
    column: &'static str,
    kind: Kind,
}

const fn a(
    g: u16,
    e: u16,
    vr: &'static str,
    level: Level,
    column: &'static str,
    kind: Kind,
) -> Attr {
    Attr {
        tag: Tag(g, e),
        vr,
        level,
        column,
        kind,
    }
}

use Kind::*;
use Level::*;

const ATTRS: &[Attr] = &[
    a(0x0010, 0x0010, "PN", Study, "st.patient_name", Name),
    a(0x0010, 0x0020, "LO", Study, "st.patient_id", Text),
    a(0x0010, 0x0030, "DA", Study, "st.patient_birth_date", Date),
    a(0x0010, 0x0040, "CS", Study, "st.patient_sex", Text),
    a(0x0008, 0x0020, "DA", Study, "st.study_date", Date),
    a(0x0008, 0x0030, "TM", Study, "st.study_time", Time),
    a(0x0008, 0x0050, "SH", Study, "st.accession_number", Text),
    a(0x0020, 0x0010, "SH", Study, "st.study_id", Text),
    a(
        0x0008,
        0x0090,
        "PN",
        Study,
        "st.referring_physician_name",
        Name,
    ),
    a(0x0008, 0x1030, "LO", Study, "st.study_description", Text),
    a(0x0020, 0x000D, "UI", Study, "st.study_uid", Uid),
    a(
        0x0008,
        0x0061,
        "CS",
        Study,
        "(SELECT group_concat(DISTINCT x.modality) FROM series x WHERE x.study_uid = st.study_uid)",
        Modalities,
    ),
    a(
        0x0020,
        0x1206,
        "IS",
        Study,
        "(SELECT count(*) FROM series x WHERE x.study_uid = st.study_uid)",
        Count,
    ),
    a(
        0x0020,
        0x1208,
        "IS",
        Study,
        "(SELECT count(*) FROM instances y JOIN series x USING (series_uid) WHERE x.study_uid = st.study_uid)",
        Count,
    ),
    a(0x0008, 0x0060, "CS", Series, "se.modality", Text),
    a(0x0020, 0x000E, "UI", Series, "se.series_uid", Uid),
    a(0x0020, 0x0011, "IS", Series, "se.series_number", Int),
    a(0x0008, 0x103E, "LO", Series, "se.series_description", Text),
    a(0x0018, 0x0015, "CS", Series, "se.body_part_examined", Text),
    a(0x0040, 0x0244, "DA", Series, "se.pps_start_date", Date),
    a(
        0x0020,
        0x1209,
        "IS",
        Series,
        "(SELECT count(*) FROM instances y WHERE y.series_uid = se.series_uid)",
        Count,
    ),
    a(0x0008, 0x0016, "UI", Instance, "i.sop_class_uid", Uid),
    a(0x0008, 0x0018, "UI", Instance, "i.sop_instance_uid", Uid),
    a(0x0020, 0x0013, "IS", Instance, "i.instance_number", Int),
    a(0x0028, 0x0010, "US", Instance, "i.rows", Int),
    a(0x0028, 0x0011, "US", Instance, "i.columns", Int),
    a(0x0028, 0x0100, "US", Instance, "i.bits_allocated", Int),
    a(0x0028, 0x0008, "IS", Instance, "i.frames", Int),
];

/// Why a query cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A parameter is not an attribute, or has a bad value.
    #[error("{param}: {reason}")]
    Param {
        /// The parameter as given.
        param: String,
        /// Why.
        reason: String,
    },
    /// The index failed.
    #[error("index: {0}")]
    Index(String),
}

fn bad(param: &str, reason: impl Into<String>) -> QueryError {
    QueryError::Param {
        param: param.to_owned(),
        reason: reason.into(),
    }
}

/// Which attributes beyond the defaults a result carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Include {
    /// The defaults for the level.
    #[default]
    Defaults,
    /// The defaults and these.
    Tags(Vec<Tag>),
    /// Every attribute of the level that a stored instance has.
    All,
}

/// A query: a level, matching keys, and paging.
#[derive(Debug, Clone)]
pub struct Query {
    /// The level returned.
    pub level: Level,
    keys: Vec<(&'static Attr, String)>,
    /// Person names match any name component by prefix, ignoring case.
    pub fuzzy: bool,
    /// At most this many results.
    pub limit: u32,
    /// Results skipped.
    pub offset: u32,
    /// Attributes beyond the defaults.
    pub include: Include,
    /// When set, only studies from these institutions (Institution Name) match: a service
    /// account scoped to institutions.
    pub institutions: Option<Vec<String>>,
}

/// The most results one query returns.
pub const MAX_LIMIT: u32 = 10_000;

/// Names an attribute by keyword (`PatientName`) or tag (`00100010`, `0010,0010`).
pub fn parse_tag(s: &str) -> Option<Tag> {
    let hex = |h: &str| u16::from_str_radix(h, 16).ok();
    let t = s.trim_matches(|c| c == '(' || c == ')');
    if t.len() == 8 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(Tag(hex(&t[..4])?, hex(&t[4..])?));
    }
    if let Some((g, e)) = t.split_once(',')
        && g.len() == 4
        && e.len() == 4
    {
        return Some(Tag(hex(g)?, hex(e)?));
    }
    StandardDataDictionary.by_name(s).map(|e| e.tag())
}

/// The VR the standard dictionary gives an attribute ("UN" if unknown).
pub fn dictionary_vr(tag: Tag) -> String {
    StandardDataDictionary
        .by_tag(tag)
        .map(|e| format!("{:?}", e.vr()))
        .and_then(|v| {
            // VirtualVr prints as `Exact(PN)` or a named virtual VR.
            let inner = v.strip_prefix("Exact(")?.strip_suffix(')')?;
            Some(inner.to_owned())
        })
        .unwrap_or_else(|| "UN".to_owned())
}

impl Query {
    /// An empty query for `level`: everything, up to the default limit.
    pub fn new(level: Level) -> Self {
        Self {
            level,
            keys: Vec::new(),
            fuzzy: false,
            limit: 1000,
            offset: 0,
            include: Include::Defaults,
            institutions: None,
        }
    }

    /// Adds a matching key (`param` names it in errors). An empty value matches everything.
    pub fn key(&mut self, param: &str, tag: Tag, value: &str) -> Result<(), QueryError> {
        let attr = ATTRS
            .iter()
            .find(|a| a.tag == tag)
            .ok_or_else(|| bad(param, "not an attribute queries can match on"))?;
        if attr.level > self.level {
            return Err(bad(
                param,
                format!("matches {} level, below this query's level", attr.level),
            ));
        }
        if attr.kind == Count {
            return Err(bad(param, "a count is returned, not matched"));
        }
        if value.is_empty() || value == "*" {
            return Ok(());
        }
        match attr.kind {
            Int => {
                value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| bad(param, format!("{value:?} is not an integer")))?;
            }
            Date | Time => {
                let ok = value
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '-' || c == '.')
                    && value.matches('-').count() <= 1;
                if !ok {
                    return Err(bad(
                        param,
                        format!("{value:?} is not a date/time or range (YYYYMMDD, A-B, -B, A-)"),
                    ));
                }
            }
            Uid => {
                for u in split_list(value) {
                    if !crate::uid::is_valid(u) {
                        return Err(bad(param, format!("{u:?} is not a UID")));
                    }
                }
            }
            _ => {}
        }
        self.keys.push((attr, value.to_owned()));
        Ok(())
    }

    /// Runs the query: at most `limit` results after `offset`, and whether more matched.
    pub async fn run(&self, pool: &SqlitePool) -> Result<(Vec<Json>, bool), QueryError> {
        let returned: Vec<&Attr> = ATTRS.iter().filter(|a| a.level <= self.level).collect();
        let select: Vec<String> = returned.iter().map(|a| a.column.to_owned()).collect();
        let (from, order) = match self.level {
            Study => (
                "studies st",
                "st.study_date DESC, st.study_time DESC, st.study_uid",
            ),
            Series => (
                "series se JOIN studies st USING (study_uid)",
                "se.series_number, se.series_uid",
            ),
            Instance => (
                "instances i JOIN series se USING (series_uid) JOIN studies st ON st.study_uid = se.study_uid",
                "i.instance_number, i.sop_instance_uid",
            ),
        };
        let mut args = SqliteArguments::default();
        let mut wheres = Vec::new();
        for (attr, value) in &self.keys {
            wheres.push(condition(attr, value, self.fuzzy, &mut args)?);
        }
        if let Some(names) = &self.institutions {
            if names.is_empty() {
                wheres.push("0".to_owned());
            } else {
                for n in names {
                    args.add(n.clone())
                        .map_err(|e| QueryError::Index(format!("cannot bind a value: {e}")))?;
                }
                wheres.push(format!(
                    "st.institution_name IN ({})",
                    vec!["?"; names.len()].join(", ")
                ));
            }
        }
        let mut sql = format!("SELECT {} FROM {from}", select.join(", "));
        if !wheres.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&wheres.join(" AND "));
        }
        sql.push_str(&format!(
            " ORDER BY {order} LIMIT {} OFFSET {}",
            u64::from(self.limit.min(MAX_LIMIT)) + 1,
            self.offset
        ));
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .fetch_all(pool)
            .await
            .map_err(|e| QueryError::Index(e.to_string()))?;
        let more = rows.len() > self.limit.min(MAX_LIMIT) as usize;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows.iter().take(self.limit.min(MAX_LIMIT) as usize) {
            let mut obj = Map::new();
            for (n, attr) in returned.iter().enumerate() {
                let value: Option<String> = match attr.kind {
                    Int | Count => row
                        .try_get::<Option<i64>, _>(n)
                        .ok()
                        .flatten()
                        .map(|v| v.to_string()),
                    _ => row.try_get::<Option<String>, _>(n).ok().flatten(),
                };
                let value = value.unwrap_or_default();
                let value = if attr.kind == Modalities {
                    value.replace(',', "\\")
                } else {
                    value
                };
                obj.insert(tag_key(attr.tag), element(attr.vr, &value));
            }
            self.add_included(pool, &mut obj).await?;
            out.push(Json::Object(obj));
        }
        Ok((out, more))
    }

    /// Adds the attributes asked for that the index has no column for, from the metadata of a
    /// stored instance of the result (the first one of its study or series).
    async fn add_included(
        &self,
        pool: &SqlitePool,
        obj: &mut Map<String, Json>,
    ) -> Result<(), QueryError> {
        let wanted: Vec<String> = match &self.include {
            Include::Defaults => return Ok(()),
            Include::Tags(t) => t
                .iter()
                .map(|t| tag_key(*t))
                .filter(|k| !obj.contains_key(k))
                .collect(),
            Include::All => Vec::new(),
        };
        if wanted.is_empty() && self.include != Include::All {
            return Ok(());
        }
        let uid = |key: &str| {
            obj.get(key)
                .and_then(|e| e["Value"][0].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let (sql, uid) = match self.level {
            Study => (
                "SELECT i.metadata FROM instances i JOIN series se USING (series_uid) \
                 WHERE se.study_uid = ? LIMIT 1",
                uid("0020000D"),
            ),
            Series => (
                "SELECT metadata FROM instances WHERE series_uid = ? LIMIT 1",
                uid("0020000E"),
            ),
            Instance => (
                "SELECT metadata FROM instances WHERE sop_instance_uid = ?",
                uid("00080018"),
            ),
        };
        let metadata: Option<String> = sqlx::query_scalar(sql)
            .bind(uid)
            .fetch_optional(pool)
            .await
            .map_err(|e| QueryError::Index(e.to_string()))?;
        let Some(Json::Object(meta)) = metadata.and_then(|m| serde_json::from_str(&m).ok()) else {
            return Ok(());
        };
        match &self.include {
            Include::All => {
                for (k, v) in meta {
                    if k.as_str() < "7FE00000" && level_of(&k) <= self.level {
                        obj.entry(k).or_insert(v);
                    }
                }
            }
            _ => {
                for k in wanted {
                    if let Some(v) = meta.get(&k) {
                        obj.insert(k, v.clone());
                    }
                }
            }
        }
        Ok(())
    }
}

/// The level an attribute belongs to when returning "all": patient and study modules at study
/// level, series modules at series level, the rest at instance level (PS3.4 C.6.1.1 tables,
/// approximated by group for attributes the index does not know).
fn level_of(key: &str) -> Level {
    let tag = parse_tag(key).unwrap_or(Tag(0, 0));
    if let Some(a) = ATTRS.iter().find(|a| a.tag == tag) {
        return a.level;
    }
    match tag.0 {
        0x0010 => Study,
        0x0008 if matches!(tag.1, 0x0020 | 0x0030 | 0x0050 | 0x0090 | 0x1030 | 0x1032) => Study,
        0x0008 if matches!(tag.1, 0x0021 | 0x0031 | 0x0060 | 0x103E | 0x0070) => Series,
        0x0018 if tag.1 == 0x0015 => Series,
        0x0020 if matches!(tag.1, 0x0011 | 0x0060 | 0x0052) => Series,
        _ => Instance,
    }
}

/// One attribute as DICOM JSON from its index text (empty: no value).
fn element(vr: &str, value: &str) -> Json {
    let mut e = Map::new();
    e.insert("vr".into(), Json::String(vr.to_owned()));
    if !value.is_empty() {
        let values: Vec<Json> = value
            .split('\\')
            .map(|v| match vr {
                "PN" => {
                    let mut name = Map::new();
                    for (label, part) in ["Alphabetic", "Ideographic", "Phonetic"]
                        .iter()
                        .zip(v.split('='))
                    {
                        if !part.is_empty() {
                            name.insert((*label).to_owned(), Json::String(part.to_owned()));
                        }
                    }
                    Json::Object(name)
                }
                "IS" | "US" => v
                    .trim()
                    .parse::<i64>()
                    .map(Json::from)
                    .unwrap_or_else(|_| Json::String(v.to_owned())),
                _ => Json::String(v.to_owned()),
            })
            .collect();
        e.insert("Value".into(), Json::Array(values));
    }
    Json::Object(e)
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split([',', '\\'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A LIKE pattern from a DICOM wildcard value (`*` any run, `?` one character).
fn like_pattern(value: &str) -> String {
    let mut p = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => p.push('%'),
            '?' => p.push('_'),
            '%' | '_' | '\\' => {
                p.push('\\');
                p.push(c);
            }
            c => p.push(c),
        }
    }
    p
}

fn condition(
    attr: &Attr,
    value: &str,
    fuzzy: bool,
    args: &mut SqliteArguments,
) -> Result<String, QueryError> {
    let col = attr.column;
    let mut bind = |v: String| {
        args.add(v)
            .map_err(|e| QueryError::Index(format!("cannot bind a value: {e}")))
    };
    let wildcard = value.contains(['*', '?']);
    Ok(match attr.kind {
        Uid => {
            let list: Vec<&str> = split_list(value).collect();
            for u in &list {
                bind((*u).to_owned())?;
            }
            format!("{col} IN ({})", vec!["?"; list.len()].join(","))
        }
        Modalities => {
            let list: Vec<&str> = split_list(value).collect();
            for m in &list {
                bind((*m).to_owned())?;
            }
            format!(
                "EXISTS (SELECT 1 FROM series x WHERE x.study_uid = st.study_uid AND x.modality IN ({}))",
                vec!["?"; list.len()].join(",")
            )
        }
        Date | Time => match value.split_once('-') {
            Some((from, to)) => {
                let mut parts = vec![format!("{col} <> ''")];
                if !from.is_empty() {
                    bind(from.to_owned())?;
                    parts.push(format!("{col} >= ?"));
                }
                if !to.is_empty() {
                    // An upper bound includes the whole day or time it names.
                    bind(format!("{to}\u{10FFFF}"))?;
                    parts.push(format!("{col} <= ?"));
                }
                format!("({})", parts.join(" AND "))
            }
            None => {
                bind(value.to_owned())?;
                format!("{col} = ?")
            }
        },
        Int => {
            bind(value.trim().to_owned())?;
            format!("{col} = CAST(? AS INTEGER)")
        }
        Name if fuzzy && !wildcard => {
            // Every word of the value starts some component of the name.
            let mut parts = Vec::new();
            for word in value.split([' ', '^', '=', ',']).filter(|w| !w.is_empty()) {
                bind(format!("% {}%", like_pattern(word)))?;
                parts.push(format!(
                    "(' ' || replace(replace(replace({col}, '^', ' '), '=', ' '), ',', ' ')) LIKE ? ESCAPE '\\'"
                ));
            }
            if parts.is_empty() {
                "1".to_owned()
            } else {
                format!("({})", parts.join(" AND "))
            }
        }
        Name | Text if wildcard => {
            bind(like_pattern(value))?;
            format!("{col} LIKE ? ESCAPE '\\'")
        }
        Name => {
            bind(value.to_owned())?;
            format!("{col} = ? COLLATE NOCASE")
        }
        Text => {
            bind(value.to_owned())?;
            format!("{col} = ?")
        }
        Count => return Err(bad(&tag_key(attr.tag), "a count is returned, not matched")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_named_by_keyword_or_tag() {
        assert_eq!(parse_tag("PatientName"), Some(Tag(0x0010, 0x0010)));
        assert_eq!(parse_tag("00100020"), Some(Tag(0x0010, 0x0020)));
        assert_eq!(parse_tag("0020,000D"), Some(Tag(0x0020, 0x000D)));
        assert_eq!(parse_tag("NoSuchKeyword"), None);
        assert_eq!(dictionary_vr(Tag(0x0010, 0x0010)), "PN");
    }

    #[test]
    fn bad_keys_are_named() {
        let mut q = Query::new(Study);
        let e = q
            .key("SOPInstanceUID", Tag(0x0008, 0x0018), "1.2")
            .unwrap_err();
        assert!(e.to_string().contains("SOPInstanceUID"), "{e}");
        let e = q
            .key("StudyDate", Tag(0x0008, 0x0020), "2020x")
            .unwrap_err();
        assert!(e.to_string().contains("StudyDate"), "{e}");
        let e = q
            .key("StudyInstanceUID", Tag(0x0020, 0x000D), "1.2,x")
            .unwrap_err();
        assert!(e.to_string().contains("\"x\""), "{e}");
        let e = q.key("Rows", Tag(0x0028, 0x0010), "512").unwrap_err();
        assert!(e.to_string().contains("below"), "{e}");
    }

    #[test]
    fn wildcards_become_like_patterns() {
        assert_eq!(like_pattern("Wa*g?"), "Wa%g_");
        assert_eq!(like_pattern("100%_x"), "100\\%\\_x");
    }
}

//! Report templates: the built-in ones (general, imaging, pathology, ECG) and those the
//! consultation centre or the system administrator adds, each a title and ordered sections.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use workflow::Role;

use crate::accounts::now_ms;
use crate::http::{Api, ApiError, body, user};

/// A report template: its key, its Chinese title and its sections (key, title).
#[derive(Debug)]
pub struct Template {
    /// The key.
    pub key: &'static str,
    /// The title printed on the report.
    pub title: &'static str,
    /// Sections, in order.
    pub sections: &'static [(&'static str, &'static str)],
}

/// The built-in templates.
pub const TEMPLATES: &[Template] = &[
    Template {
        key: "general",
        title: "远程会诊报告",
        sections: &[
            ("opinion", "会诊意见"),
            ("diagnosis", "诊断"),
            ("advice", "处理建议"),
        ],
    },
    Template {
        key: "imaging",
        title: "远程影像会诊报告",
        sections: &[
            ("findings", "影像所见"),
            ("impression", "影像诊断"),
            ("advice", "建议"),
        ],
    },
    Template {
        key: "pathology",
        title: "远程病理会诊报告",
        sections: &[
            ("gross", "大体所见"),
            ("microscopic", "镜下所见"),
            ("diagnosis", "病理诊断"),
        ],
    },
    Template {
        key: "ecg",
        title: "远程心电会诊报告",
        sections: &[("findings", "心电图所见"), ("conclusion", "结论")],
    },
];

/// A template as used: a built-in one or one configured in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateDef {
    /// The key.
    pub key: String,
    /// The printed title.
    pub title: String,
    /// Sections, in order: (key, title).
    pub sections: Vec<(String, String)>,
}

impl From<&Template> for TemplateDef {
    fn from(t: &Template) -> Self {
        Self {
            key: t.key.to_owned(),
            title: t.title.to_owned(),
            sections: t
                .sections
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

/// Every template: the built-in ones, then the configured ones.
pub async fn all_templates(api: &Api) -> Result<Vec<TemplateDef>, ApiError> {
    let mut all: Vec<TemplateDef> = TEMPLATES.iter().map(TemplateDef::from).collect();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT key, title, sections FROM report_templates ORDER BY key")
            .fetch_all(&api.pool)
            .await?;
    for (key, title, sections) in rows {
        let sections: Vec<(String, String)> =
            serde_json::from_str(&sections).map_err(ApiError::internal)?;
        all.push(TemplateDef {
            key,
            title,
            sections,
        });
    }
    Ok(all)
}

/// The template `key`.
pub async fn template(api: &Api, key: &str) -> Result<Option<TemplateDef>, ApiError> {
    Ok(all_templates(api).await?.into_iter().find(|t| t.key == key))
}

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new().route(
        "/api/v1/report-templates",
        get(templates).post(add_template),
    )
}

async fn templates(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    user(&api, &headers, false).await?;
    let list: Vec<Value> = all_templates(&api)
        .await?
        .iter()
        .map(|t| {
            json!({ "key": t.key, "title": t.title,
                    "sections": t.sections.iter().map(|(k, title)| json!({ "key": k, "title": title })).collect::<Vec<_>>() })
        })
        .collect();
    Ok(Json(json!({ "templates": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTemplate {
    key: String,
    title: String,
    sections: Vec<NewSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSection {
    key: String,
    title: String,
}

fn template_key(k: &str) -> bool {
    (2..=32).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Adds a template (the consultation centre or the system administrator).
async fn add_template(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    if !matches!(u.role, Role::Coordinator | Role::SystemAdmin) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "templates are configured by the consultation centre or the system administrator",
        ));
    }
    let b: NewTemplate = body(&bytes)?;
    if !template_key(&b.key) {
        return Err(ApiError::field("key", "2-32 of a-z, 0-9 and _"));
    }
    if b.title.trim().is_empty() || b.title.chars().count() > 64 {
        return Err(ApiError::field("title", "1-64 characters"));
    }
    if b.sections.is_empty() || b.sections.len() > 20 {
        return Err(ApiError::field("sections", "1-20 sections"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for sec in &b.sections {
        if !template_key(&sec.key) || !seen.insert(sec.key.clone()) {
            return Err(ApiError::field(
                "sections",
                format!("{:?}: keys are unique, 2-32 of a-z, 0-9 and _", sec.key),
            ));
        }
        if sec.title.trim().is_empty() || sec.title.chars().count() > 64 {
            return Err(ApiError::field("sections", "titles have 1-64 characters"));
        }
    }
    if template(&api, &b.key).await?.is_some() {
        return Err(ApiError {
            field: Some("key"),
            ..ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{} exists", b.key),
            )
        });
    }
    let sections: Vec<(String, String)> = b
        .sections
        .into_iter()
        .map(|s| (s.key, s.title.trim().to_owned()))
        .collect();
    sqlx::query(
        "INSERT INTO report_templates (key, title, sections, created_by, created_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&b.key)
    .bind(b.title.trim())
    .bind(serde_json::to_string(&sections).map_err(ApiError::internal)?)
    .bind(u.id)
    .bind(now_ms())
    .execute(&api.pool)
    .await?;
    crate::cases::audit_event(
        &api,
        &u,
        &peer,
        "create",
        format!("template:{}", b.key),
        "ok",
    )
    .await?;
    Ok(StatusCode::CREATED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_have_unique_sections() {
        for t in TEMPLATES {
            let mut keys: Vec<_> = t.sections.iter().map(|(k, _)| k).collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), t.sections.len(), "{}", t.key);
        }
    }
}

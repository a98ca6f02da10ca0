//! The index's schema, one migration a step (`migrations/*.sql`), applied in order when the
//! store opens.

/// Version, name and SQL of each migration.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "index", include_str!("../../migrations/0001_index.sql")),
    (
        2,
        "institution",
        include_str!("../../migrations/0002_institution.sql"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;

    #[tokio::test]
    async fn the_institution_migration_fills_studies_stored_before_it() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(MIGRATIONS[0].2))
            .execute(&pool)
            .await
            .unwrap();
        let metadata = |name: &str| {
            serde_json::json!({ "00080080": { "vr": "LO", "Value": [name] } }).to_string()
        };
        for (study, name) in [("1.1", "城东社区卫生服务中心"), ("1.2", ""), ("1.3", "")] {
            sqlx::query("INSERT INTO studies (study_uid) VALUES (?)")
                .bind(study)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO series (series_uid, study_uid) VALUES (?, ?)")
                .bind(format!("{study}.1"))
                .bind(study)
                .execute(&pool)
                .await
                .unwrap();
            // 1.3 has no Institution Name at all.
            let meta = if study == "1.3" {
                "{}".to_owned()
            } else {
                metadata(name)
            };
            sqlx::query(
                "INSERT INTO instances (sop_instance_uid, series_uid, sop_class_uid, \
                 transfer_syntax, file, size, metadata) VALUES (?, ?, '1', '1', ?, 1, ?)",
            )
            .bind(format!("{study}.1.1"))
            .bind(format!("{study}.1"))
            .bind(format!("{study}.dcm"))
            .bind(meta)
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(MIGRATIONS[1].2))
            .execute(&pool)
            .await
            .unwrap();
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT study_uid, institution_name FROM studies ORDER BY study_uid")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            rows,
            [
                ("1.1".to_owned(), "城东社区卫生服务中心".to_owned()),
                ("1.2".to_owned(), String::new()),
                ("1.3".to_owned(), String::new()),
            ]
        );
    }
}

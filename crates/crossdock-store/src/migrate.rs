//! Schema migrations: one ordered list per backend, embedded in the binary, applied at startup
//! and by `crossdock migrate`. Each is applied in its own transaction and recorded in
//! `crossdock_migrations`.

/// One schema step.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sql: include_str!("../migrations/sqlite/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "governance",
        sql: include_str!("../migrations/sqlite/0002_governance.sql"),
    },
    Migration {
        version: 3,
        name: "catalog",
        sql: include_str!("../migrations/sqlite/0003_catalog.sql"),
    },
    Migration {
        version: 4,
        name: "inventory",
        sql: include_str!("../migrations/sqlite/0004_inventory.sql"),
    },
    Migration {
        version: 5,
        name: "availability_feed",
        sql: include_str!("../migrations/sqlite/0005_availability_feed.sql"),
    },
    Migration {
        version: 6,
        name: "edi",
        sql: include_str!("../migrations/sqlite/0006_edi.sql"),
    },
    Migration {
        version: 7,
        name: "orders",
        sql: include_str!("../migrations/sqlite/0007_orders.sql"),
    },
    Migration {
        version: 8,
        name: "returns_postings",
        sql: include_str!("../migrations/sqlite/0008_returns_postings.sql"),
    },
    Migration {
        version: 9,
        name: "conversions",
        sql: include_str!("../migrations/sqlite/0009_conversions.sql"),
    },
    Migration {
        version: 10,
        name: "listing_due",
        sql: include_str!("../migrations/sqlite/0010_listing_due.sql"),
    },
    Migration {
        version: 11,
        name: "outbox_status_indexes",
        sql: include_str!("../migrations/sqlite/0011_outbox_status_indexes.sql"),
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sql: include_str!("../migrations/pg/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "governance",
        sql: include_str!("../migrations/pg/0002_governance.sql"),
    },
    Migration {
        version: 3,
        name: "catalog",
        sql: include_str!("../migrations/pg/0003_catalog.sql"),
    },
    Migration {
        version: 4,
        name: "inventory",
        sql: include_str!("../migrations/pg/0004_inventory.sql"),
    },
    Migration {
        version: 5,
        name: "availability_feed",
        sql: include_str!("../migrations/pg/0005_availability_feed.sql"),
    },
    Migration {
        version: 6,
        name: "edi",
        sql: include_str!("../migrations/pg/0006_edi.sql"),
    },
    Migration {
        version: 7,
        name: "orders",
        sql: include_str!("../migrations/pg/0007_orders.sql"),
    },
    Migration {
        version: 8,
        name: "returns_postings",
        sql: include_str!("../migrations/pg/0008_returns_postings.sql"),
    },
    Migration {
        version: 9,
        name: "conversions",
        sql: include_str!("../migrations/pg/0009_conversions.sql"),
    },
];

pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS crossdock_migrations (\
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// What `migrate` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    /// The versions applied by this call, in order.
    pub applied: Vec<(i64, &'static str)>,
    /// The schema version afterwards.
    pub version: i64,
}

pub(crate) fn latest(migrations: &[Migration]) -> i64 {
    migrations.last().map_or(0, |m| m.version)
}

/// Compares the database's version with what this build knows.
pub(crate) fn check_version(found: i64, migrations: &[Migration]) -> crate::Result<()> {
    let known = latest(migrations);
    if found > known {
        Err(crate::StoreError::SchemaTooNew { found, known })
    } else if found < known {
        Err(crate::StoreError::NotMigrated { found, known })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::SQLITE;
    use rusqlite::Connection;

    /// A listing row as the test reads it: channel SKU, available, queued, rank, due, version.
    type ListingRow = (String, i64, Option<i64>, i64, Option<i64>, i64);

    fn migrated_to(conn: &Connection, version: i64) {
        for m in SQLITE.iter().filter(|m| m.version <= version) {
            conn.execute_batch(m.sql).unwrap();
        }
    }

    /// Migration 10 keeps every listing and sets `due_at` exactly where the listing was due
    /// (its value differs from what was queued), so no update is lost or sent twice.
    #[test]
    fn listing_due_keeps_what_was_due_and_only_that() {
        let conn = Connection::open_in_memory().unwrap();
        migrated_to(&conn, 9);
        conn.execute_batch(
            "INSERT INTO channel_availability (channel, channel_sku, sku, available, published, updated_at, \
             queued, queued_action, version, rank, due_at) VALUES \
             ('shop', 'never-queued', 'A', 5, NULL, 1, NULL, NULL, 1, 1, 100), \
             ('shop', 'queued', 'B', 5, 5, 1, 5, 7, 2, 1, 200), \
             ('shop', 'changed-since', 'C', 0, 3, 1, 3, 8, 3, 0, 300), \
             ('shop', 'held-increase', 'D', 9, 3, 1, 3, NULL, 4, 2, 400);",
        )
        .unwrap();
        let ten: Vec<_> = SQLITE.iter().filter(|m| m.version == 10).collect();
        assert_eq!(ten.len(), 1, "migration 10 is the listing_due one");
        conn.execute_batch(ten[0].sql).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT channel_sku, available, queued, rank, due_at, version FROM channel_availability \
                 ORDER BY channel_sku",
            )
            .unwrap();
        let rows: Vec<ListingRow> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("changed-since".to_owned(), 0, Some(3), 0, Some(300), 3),
                ("held-increase".to_owned(), 9, Some(3), 2, Some(400), 4),
                ("never-queued".to_owned(), 5, None, 1, Some(100), 1),
                ("queued".to_owned(), 5, Some(5), 1, None, 2),
            ]
        );
        let due: i64 = conn
            .query_row(
                "SELECT count(*) FROM channel_availability INDEXED BY channel_availability_due \
                 WHERE channel = 'shop' AND due_at IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(due, 3, "the due index holds the due listings");
    }
}

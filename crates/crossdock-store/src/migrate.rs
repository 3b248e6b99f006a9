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

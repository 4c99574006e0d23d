//! The auto-shop schema the demo and the tests run on, and what it seeds: one definition of the
//! tenants, their ids and their row counts, read by `tenantgate demo` and every test.

/// The schema: tenants, the tenant-scoped tables with forced RLS and fail-closed policies, the
/// hardened roles, and the seed rows.
pub const SCHEMA_SQL: &str = include_str!("schema.sql");

/// The tenant-scoped tables (all but `tenants`), each with RLS enabled and forced.
pub const TENANT_TABLES: [&str; 4] = ["customers", "vehicles", "services", "appointments"];

/// One seeded tenant and how many rows it owns in each table (distinct per tenant, so a count
/// says whose rows a session saw).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedTenant {
    /// The tenant id the RLS policies compare with the tenant setting.
    pub id: &'static str,
    /// Short name; also the prefix of every customer name (`"acme customer 1"`).
    pub slug: &'static str,
    /// The `tenants.name` row.
    pub name: &'static str,
    /// Seeded `customers` rows.
    pub customers: i64,
    /// Seeded `vehicles` rows.
    pub vehicles: i64,
    /// Seeded `services` rows.
    pub services: i64,
    /// Seeded `appointments` rows.
    pub appointments: i64,
}

impl SeedTenant {
    /// The seeded row count of a table (see [`TENANT_TABLES`]; `tenants` has one row each);
    /// `None` for a table the schema does not seed per tenant.
    pub fn count(&self, table: &str) -> Option<i64> {
        match table {
            "customers" => Some(self.customers),
            "vehicles" => Some(self.vehicles),
            "services" => Some(self.services),
            "appointments" => Some(self.appointments),
            "tenants" => Some(1),
            _ => None,
        }
    }
}

pub const ACME: SeedTenant = SeedTenant {
    id: "11111111-1111-1111-1111-111111111111",
    slug: "acme",
    name: "Acme Auto Repair",
    customers: 3,
    vehicles: 4,
    services: 2,
    appointments: 6,
};
pub const GLOBEX: SeedTenant = SeedTenant {
    id: "22222222-2222-2222-2222-222222222222",
    slug: "globex",
    name: "Globex Garage",
    customers: 5,
    vehicles: 6,
    services: 3,
    appointments: 10,
};
pub const INITECH: SeedTenant = SeedTenant {
    id: "33333333-3333-3333-3333-333333333333",
    slug: "initech",
    name: "Initech Tire & Lube",
    customers: 7,
    vehicles: 8,
    services: 4,
    appointments: 14,
};
pub const UMBRELLA: SeedTenant = SeedTenant {
    id: "44444444-4444-4444-4444-444444444444",
    slug: "umbrella",
    name: "Umbrella Motors",
    customers: 9,
    vehicles: 10,
    services: 5,
    appointments: 18,
};

/// Every seeded tenant, in id (and slug) order.
pub const TENANTS: [SeedTenant; 4] = [ACME, GLOBEX, INITECH, UMBRELLA];

/// The seeded tenant with this slug.
pub fn by_slug(slug: &str) -> Option<&'static SeedTenant> {
    TENANTS.iter().find(|t| t.slug == slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows and counts above are what `schema.sql` inserts: its `tenants` row, and `seed_plan`'s
    /// 2k+1 customers, 2k+2 vehicles, k+1 services and 4k+2 appointments for the k-th tenant.
    #[test]
    fn the_schema_seeds_what_is_declared_here() {
        assert!(SCHEMA_SQL.contains("2 * p.k + 1 AS customers"));
        assert!(SCHEMA_SQL.contains("4 * p.k + 2 AS appointments"));
        for (t, k) in TENANTS.iter().zip(1i64..) {
            let row = format!("('{}', '{}', '{}')", t.id, t.slug, t.name);
            assert!(SCHEMA_SQL.contains(&row), "{row}");
            assert!(
                SCHEMA_SQL.contains(&format!("('{}', {k})", t.slug)),
                "{}",
                t.slug
            );
            let want = (2 * k + 1, 2 * k + 2, k + 1, 4 * k + 2);
            assert_eq!((t.customers, t.vehicles, t.services, t.appointments), want);
        }
    }
}

//! Roles and permissions: the one table ([`ROLES`]) that says what each role may do. The
//! README's table is this one.
//!
//! Each route of `/api/v1` names the permission it needs in the OpenAPI document (its bearer
//! security requirement's scopes; none: any valid token); the auth layer reads it from there
//! (see `api::auth`), so the document and the enforcement cannot disagree.

use serde::{Deserialize, Serialize};

/// A permission. Names are the strings of [`Permission::as_str`] (`area:verb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    ServersRead,
    ServersWrite,
    SyncsRead,
    SyncsWrite,
    SyncsControl,
    BackupCreate,
    BackupRestore,
    MigrationRead,
    MigrationExecute,
    MigrationRollback,
    ValidationRun,
    IntegrityRepair,
    ConflictsResolve,
    ScheduleManage,
    AuditRead,
    TokensManage,
}

use Permission::*;

/// Every permission, in the order of the docs.
pub const PERMISSIONS: &[Permission] = &[
    ServersRead,
    ServersWrite,
    SyncsRead,
    SyncsWrite,
    SyncsControl,
    BackupCreate,
    BackupRestore,
    MigrationRead,
    MigrationExecute,
    MigrationRollback,
    ValidationRun,
    IntegrityRepair,
    ConflictsResolve,
    ScheduleManage,
    AuditRead,
    TokensManage,
];

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            ServersRead => "servers:read",
            ServersWrite => "servers:write",
            SyncsRead => "syncs:read",
            SyncsWrite => "syncs:write",
            SyncsControl => "syncs:control",
            BackupCreate => "backup:create",
            BackupRestore => "backup:restore",
            MigrationRead => "migration:read",
            MigrationExecute => "migration:execute",
            MigrationRollback => "migration:rollback",
            ValidationRun => "validation:run",
            IntegrityRepair => "integrity:repair",
            ConflictsResolve => "conflicts:resolve",
            ScheduleManage => "schedule:manage",
            AuditRead => "audit:read",
            TokensManage => "tokens:manage",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        PERMISSIONS.iter().copied().find(|p| p.as_str() == s)
    }
}

/// A token's role.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Operator,
    Viewer,
}

pub const ROLE_NAMES: &str = "owner, admin, operator or viewer";

/// What `viewer` may do: read, nothing else.
const VIEWER: &[Permission] = &[ServersRead, SyncsRead, MigrationRead];
/// `operator`: day-to-day operations that change no definition and lose no data.
const OPERATOR: &[Permission] = &[
    ServersRead,
    SyncsRead,
    MigrationRead,
    SyncsControl,
    BackupCreate,
    ValidationRun,
    ConflictsResolve,
];
/// `admin`: everything but managing tokens.
const ADMIN: &[Permission] = &[
    ServersRead,
    ServersWrite,
    SyncsRead,
    SyncsWrite,
    SyncsControl,
    BackupCreate,
    BackupRestore,
    MigrationRead,
    MigrationExecute,
    MigrationRollback,
    ValidationRun,
    IntegrityRepair,
    ConflictsResolve,
    ScheduleManage,
    AuditRead,
];

/// The role table.
pub const ROLES: &[(Role, &[Permission])] = &[
    (Role::Owner, PERMISSIONS),
    (Role::Admin, ADMIN),
    (Role::Operator, OPERATOR),
    (Role::Viewer, VIEWER),
];

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        ROLES.iter().map(|(r, _)| *r).find(|r| r.as_str() == s)
    }

    pub fn permissions(self) -> &'static [Permission] {
        ROLES
            .iter()
            .find(|(r, _)| *r == self)
            .map_or(&[], |(_, p)| *p)
    }

    pub fn allows(self, p: Permission) -> bool {
        self.permissions().contains(&p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_roles_nest() {
        for p in PERMISSIONS {
            assert_eq!(Permission::parse(p.as_str()), Some(*p));
        }
        for (r, _) in ROLES {
            assert_eq!(Role::parse(r.as_str()), Some(*r));
        }
        // Each role can do everything the role below it can.
        let order = [Role::Viewer, Role::Operator, Role::Admin, Role::Owner];
        for pair in order.windows(2) {
            for p in pair[0].permissions() {
                assert!(pair[1].allows(*p), "{:?} lacks {p:?}", pair[1]);
            }
        }
        assert!(!Role::Admin.allows(TokensManage));
        assert!(Role::Owner.allows(TokensManage));
        assert!(!Role::Viewer.allows(SyncsControl));
        assert!(Role::Operator.allows(SyncsControl));
        assert!(!Role::Operator.allows(AuditRead));
    }

    /// `[api] require_approval` is validated against the config crate's list of names: it
    /// must be this table's.
    #[test]
    fn config_knows_every_permission() {
        let names: Vec<&str> = PERMISSIONS.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, fleetsync_config::PERMISSION_NAMES);
    }
}

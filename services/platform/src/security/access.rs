//! The access matrix — who may call what, and over which records — written once for every
//! service. Each gRPC method of DTKS has one row: the roles that may call it at all, and
//! the scope the service then holds them to. The guard in front of every service
//! (`Context::serve` of the app module) refuses a caller whose role is not on the method's row
//! before the handler runs; the handler holds the caller to the row's scope on the records
//! it touches (`Claims::require_region`, and the owner checks). `docs/access-matrix.md`
//! is rendered from this table ([`markdown`]) and a test keeps the two equal; the end-to-end
//! matrix test calls every method as every role, inside and outside its region.

use tonic::Status;

use crate::auth::{Claims, Role};

pub use super::grants::{Grant, Reach, Scope};
pub use super::matrix::MATRIX;

/// The row of `method`, if DTKS serves it.
pub fn grant(method: &str) -> Option<&'static Grant> {
    MATRIX.iter().find(|g| g.method == method)
}

/// Whether `who` may call `method` at all: PERMISSION_DENIED for a role not on the row,
/// and for a method not in the matrix (nothing is open by default).
pub fn authorize(method: &str, who: &Claims) -> Result<&'static Grant, Status> {
    let Some(grant) = grant(method) else {
        return Err(Status::permission_denied(format!(
            "{method} is not in the access matrix"
        )));
    };
    if !grant.allows(who.role) {
        let roles: Vec<&str> = grant.roles.iter().map(|r| r.as_str()).collect();
        return Err(Status::permission_denied(format!(
            "a {} may not call {}; it is for: {}",
            who.role.title(),
            grant.name(),
            roles.join(", ")
        )));
    }
    Ok(grant)
}

/// Whether a token's region claim fits its role. The claim is parsed as a region code
/// (digits and dots only, so it can never act as a pattern in a query) and a regional
/// officer's claim must sit exactly at the role's level: a village operator's names a
/// village, a regency officer's a regency, a province officer's a province. A missing
/// claim never means national reach. A national role may carry a region, which only
/// narrows what it sees.
pub fn check_reach(who: &Claims) -> Result<(), Status> {
    let title = who.role.title();
    let reach = who.role.reach();
    if who.region.is_empty() {
        if reach != Reach::National {
            return Err(Status::unauthenticated(format!(
                "a {title}'s token must name its region"
            )));
        }
        return Ok(());
    }
    let code = dtks_domain::RegionCode::parse(&who.region).map_err(|_| {
        Status::unauthenticated(format!(
            "the token's region claim is not a region code (32, 32.04, 32.04.01 or 32.04.01.2001); a {title}'s token names its own region"
        ))
    })?;
    let wanted = match reach {
        Reach::Village => Some(dtks_domain::RegionLevel::Village),
        Reach::Regency => Some(dtks_domain::RegionLevel::Regency),
        Reach::Province => Some(dtks_domain::RegionLevel::Province),
        Reach::National => None,
    };
    if let Some(level) = wanted
        && code.level() != level
    {
        return Err(Status::unauthenticated(format!(
            "a {title}'s token must name a {level:?} code; {code} is a {:?} code",
            code.level()
        )));
    }
    Ok(())
}

/// The written matrix (`docs/access-matrix.md`), rendered from [`MATRIX`].
pub fn markdown() -> String {
    let mut out = String::from(
        "# Access matrix\n\n\
         Rendered from `services/platform/src/security/matrix.rs` (`dtks_platform::access::MATRIX`), the one \
         definition every service enforces; a unit test keeps this page equal to it, and the \
         end-to-end test `tests/e2e/access.rs` calls every method as every role, inside and \
         outside its region.\n\n\
         - Every call passes the guard in front of its service: the token is verified, a \
         regional role's token must name its region, and a role that is not on the method's row \
         is refused with PERMISSION_DENIED before any work is done. A method not in the matrix \
         is refused to everyone.\n\
         - The handler then holds the caller to the row's scope on every record it reads or \
         writes, including lists, searches, streams and exports: a record outside the scope is \
         refused with PERMISSION_DENIED, or left out of a list.\n\n\
         ## Roles and their reach\n\n| role | token name | reach |\n|---|---|---|\n",
    );
    for role in Role::ALL {
        out.push_str(&format!(
            "| {} | `{}` | {:?} |\n",
            role.title(),
            role.as_str(),
            role.reach()
        ));
    }
    let mut service = "";
    for grant in MATRIX {
        if grant.service() != service {
            service = grant.service();
            out.push_str(&format!(
                "\n## {service}\n\n| method | roles | scope | refined by the record |\n|---|---|---|---|\n"
            ));
        }
        let roles: Vec<&str> = grant.roles.iter().map(|r| r.as_str()).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            grant.name(),
            roles.join(", "),
            grant.scope.describe(),
            grant.refined.unwrap_or("—")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role::*;
    use crate::security::guard::CallLimits;

    fn claims(role: Role, region: &str) -> Claims {
        Claims {
            sub: "t".into(),
            role,
            region: region.into(),
            iss: "i".into(),
            aud: "a".into(),
            exp: 0,
            iat: 0,
        }
    }

    #[test]
    fn every_rpc_of_every_service_has_exactly_one_row() {
        let descriptor = prost_types::FileDescriptorSet::decode(dtks_proto::FILE_DESCRIPTOR_SET)
            .expect("test fixture");
        let mut served = Vec::new();
        for file in &descriptor.file {
            for service in &file.service {
                for method in &service.method {
                    served.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        served.sort();
        let mut rows: Vec<String> = MATRIX.iter().map(|g| g.method.to_owned()).collect();
        rows.sort();
        assert_eq!(served, rows);
        for grant in MATRIX {
            assert!(!grant.roles.is_empty(), "{}", grant.method);
        }
    }

    #[test]
    fn the_written_matrix_is_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/access-matrix.md");
        let written = std::fs::read_to_string(path).unwrap_or_default();
        if std::env::var_os("DTKS_WRITE_ACCESS_MATRIX").is_some() {
            std::fs::write(path, markdown()).expect("test fixture");
            return;
        }
        assert!(
            written == markdown(),
            "docs/access-matrix.md differs from access::MATRIX; regenerate it with \
             DTKS_WRITE_ACCESS_MATRIX=1 cargo test -p dtks-platform the_written_matrix"
        );
    }

    #[test]
    fn roles_off_the_row_and_unknown_methods_are_refused() {
        let determine = "/dtks.determination.v1.DeterminationService/Determine";
        assert!(authorize(determine, &claims(PusdatinAdmin, "")).is_ok());
        let refused = authorize(determine, &claims(RegencyOfficer, "32.04")).expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(refused.message().contains("Determine"), "{refused:?}");
        let unknown = authorize("/dtks.x.v1.X/Y", &claims(PusdatinAdmin, "")).expect_err("refused");
        assert_eq!(unknown.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn a_regional_token_without_its_region_is_refused() {
        assert!(check_reach(&claims(RegencyOfficer, "32.04")).is_ok());
        assert!(check_reach(&claims(MinistryAssessor, "")).is_ok());
        for role in [
            VillageOperator,
            RegencyOfficer,
            Bupati,
            PemdaUser,
            ProvinceOfficer,
        ] {
            let refused = check_reach(&claims(role, "")).expect_err("refused");
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        }
    }

    /// Finding 4: the region claim went raw into SQL `LIKE`: `%` or `32.0_` read every
    /// region, and a village role with a regency code got the regency. A claim is a
    /// region code at the role's level, or the token is refused.
    #[test]
    fn region_claims_that_are_patterns_or_at_another_level_are_refused() {
        for (role, region) in [
            (VillageOperator, "%"),
            (VillageOperator, "32.0_"),
            (VillageOperator, "32.04"),
            (VillageOperator, "32.04.05"),
            (VillageOperator, "32"),
            (VillageOperator, "32.04.05.2001%"),
            (VillageOperator, "32.04.05.2001 "),
            (RegencyOfficer, "32"),
            (RegencyOfficer, "32.04.05.2001"),
            (RegencyOfficer, "32.%"),
            (Bupati, "3204"),
            (PemdaUser, "32"),
            (ProvinceOfficer, "32.04"),
            (ProvinceOfficer, "_"),
            (MinistryAssessor, "%"),
            (QaTeam, "32.0_"),
            (Public, "32'; --"),
        ] {
            let refused = check_reach(&claims(role, region)).expect_err(region);
            assert_eq!(
                refused.code(),
                tonic::Code::Unauthenticated,
                "{role:?} {region}"
            );
            assert!(!refused.message().contains('%'), "{refused:?}");
        }
        for (role, region) in [
            (VillageOperator, "32.04.05.2001"),
            (RegencyOfficer, "32.04"),
            (Bupati, "32.73"),
            (PemdaUser, "32.03"),
            (ProvinceOfficer, "32"),
            (QaTeam, "32"),
            (QaTeam, ""),
        ] {
            assert!(
                check_reach(&claims(role, region)).is_ok(),
                "{role:?} {region}"
            );
        }
    }

    #[test]
    fn a_caller_gets_its_burst_then_the_sustained_rate() {
        let limits = CallLimits::new(10, 5);
        let t0 = std::time::Instant::now();
        for _ in 0..5 {
            limits.take("op-1", t0).expect("test fixture");
        }
        let refused = limits.take("op-1", t0).expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        use tonic_types::StatusExt;
        let wait = refused
            .get_details_retry_info()
            .expect("test fixture")
            .retry_delay
            .expect("test fixture");
        assert_eq!(wait, std::time::Duration::from_millis(100));
        // Another caller is not affected; 100 ms later one more call is allowed.
        limits.take("op-2", t0).expect("test fixture");
        let t1 = t0 + std::time::Duration::from_millis(100);
        limits.take("op-1", t1).expect("test fixture");
        assert!(limits.take("op-1", t1).is_err());
        // Idle callers refill up to the burst, not beyond.
        let t2 = t1 + std::time::Duration::from_secs(60);
        for _ in 0..5 {
            limits.take("op-1", t2).expect("test fixture");
        }
        assert!(limits.take("op-1", t2).is_err());
    }

    use prost::Message;
}

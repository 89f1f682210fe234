//! What one row of the access matrix says: the roles that may call a method, the scope
//! the service then holds them to, and each role's reach.

use crate::auth::Role;

/// How far a role's reach extends, and so which region a token for it must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// One village (*desa/kelurahan*): the village operator.
    Village,
    /// One regency or city (*kabupaten/kota*).
    Regency,
    /// One province.
    Province,
    /// The whole country; the token names no region.
    National,
}

impl Role {
    /// The reach of the role. Officers of a region carry their region in the token; a
    /// token of a regional role without one is refused, so that a missing claim never
    /// widens an officer's reach to the whole country.
    pub fn reach(self) -> Reach {
        match self {
            Role::VillageOperator => Reach::Village,
            Role::RegencyOfficer | Role::Bupati | Role::PemdaUser => Reach::Regency,
            Role::ProvinceOfficer => Reach::Province,
            Role::MinistryAssessor
            | Role::PusdatinAdmin
            | Role::EselonI
            | Role::KlUser
            | Role::Ppid
            | Role::QaTeam
            | Role::Public
            | Role::Minister
            | Role::DataOfficial
            | Role::Service => Reach::National,
        }
    }

    /// The officers' name of the role, for the written matrix.
    pub fn title(self) -> &'static str {
        match self {
            Role::VillageOperator => "village operator (operator desa)",
            Role::RegencyOfficer => "regency Dinsos officer",
            Role::Bupati => "Bupati/Walikota",
            Role::ProvinceOfficer => "province Dinsos officer",
            Role::MinistryAssessor => "ministry assessor",
            Role::PusdatinAdmin => "Pusdatin administrator",
            Role::EselonI => "Eselon I unit",
            Role::KlUser => "K/L user",
            Role::PemdaUser => "Pemda user",
            Role::Ppid => "PPID",
            Role::QaTeam => "QA team",
            Role::Public => "public (masyarakat)",
            Role::Minister => "Minister (Menteri Sosial)",
            Role::DataOfficial => "Eselon I official for data",
            Role::Service => "DTKS service",
        }
    }
}

/// What a caller on a method's row is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Records and queries inside the caller's region (national roles: everywhere).
    Region,
    /// Officers inside their region; a citizen only what they submitted themselves.
    RegionOrOwn,
    /// Only what the caller filed, or — for the authority that decides it — what was
    /// filed to them.
    Own,
    /// Aggregate figures without personal data, inside the caller's region.
    Aggregate,
    /// National operations; no personal data leaves.
    National,
}

impl Scope {
    pub fn describe(self) -> &'static str {
        match self {
            Scope::Region => "own region",
            Scope::RegionOrOwn => "own region; a citizen: own submissions",
            Scope::Own => "own requests (the deciding authority: requests routed to it)",
            Scope::Aggregate => "aggregates of own region",
            Scope::National => "national",
        }
    }
}

/// One row of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    /// The gRPC path, `/package.Service/Method`.
    pub method: &'static str,
    pub roles: &'static [Role],
    pub scope: Scope,
    /// A rule the handler applies on top of the row, decided by the record itself.
    pub refined: Option<&'static str>,
}

impl Grant {
    pub fn allows(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The method's short name (`SubmitProposal`).
    pub fn name(&self) -> &'static str {
        self.method.rsplit('/').next().unwrap_or(self.method)
    }

    /// The service's proto name (`dtks.intake.v1.IntakeService`).
    pub fn service(&self) -> &'static str {
        self.method
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
    }
}

pub(super) const fn row(
    method: &'static str,
    roles: &'static [Role],
    scope: Scope,
    refined: Option<&'static str>,
) -> Grant {
    Grant {
        method,
        roles,
        scope,
        refined,
    }
}

//! workflow: the consultation and referral workflows as pure state machines. Each takes an
//! actor (user, role, institution), an action and the current time, and either moves to its
//! next state, recording who, when and why, and naming whom to notify, or refuses with the
//! reason and stays exactly as it was. No IO, no clock: the appliance's shell loads a
//! workflow from the database, applies an action and stores the result with its outbox rows in
//! one transaction.

mod consultation;
mod referral;

pub use consultation::{
    Application, Attachment, Consultation, ConsultationAction, ConsultationKind, ConsultationState,
    Mode, SPECIALITIES, Urgency,
};
pub use referral::{Direction, Referral, ReferralAction, ReferralState};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC), passed in by the caller.
pub type Millis = i64;

/// One minute in [`Millis`].
pub const MINUTE: Millis = 60_000;

/// What a user is allowed to be. The three administrators are separate roles (MLPS level 3):
/// none can act as another, and none takes part in a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Asks for consultations and referrals for their patients.
    Doctor,
    /// Gives consultations and signs reports.
    Expert,
    /// Consultation-centre staff: schedule, close.
    Coordinator,
    /// Checks applications before they go on.
    QcReviewer,
    /// Referral-centre staff: QC and assignment of referrals.
    ReferralStaff,
    /// Manages an institution's departments and staff.
    InstitutionAdmin,
    /// Runs the system (configuration, services).
    SystemAdmin,
    /// Manages accounts, roles and security policy.
    SecurityAdmin,
    /// Reads the audit trail.
    AuditAdmin,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 9] = [
        Role::Doctor,
        Role::Expert,
        Role::Coordinator,
        Role::QcReviewer,
        Role::ReferralStaff,
        Role::InstitutionAdmin,
        Role::SystemAdmin,
        Role::SecurityAdmin,
        Role::AuditAdmin,
    ];

    /// The administrators, who must use a second factor.
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Role::InstitutionAdmin | Role::SystemAdmin | Role::SecurityAdmin | Role::AuditAdmin
        )
    }
}

/// Who acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The user's id.
    pub user: i64,
    /// The role the user acts in.
    pub role: Role,
    /// The user's institution.
    pub institution: i64,
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The state before.
    pub from: String,
    /// The state after.
    pub to: String,
    /// The action's name.
    pub action: String,
    /// Who.
    pub by: i64,
    /// In which role.
    pub role: Role,
    /// When.
    pub at: Millis,
    /// Why (reasons, feedback), when the action carries one.
    pub why: Option<String>,
}

/// Whom a transition concerns: the shell turns these into outbox rows (in-app and SMS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Notice {
    /// The applying doctor.
    Applicant {
        /// The user.
        user: i64,
        /// The event's template key.
        event: String,
    },
    /// One expert.
    Expert {
        /// The user.
        user: i64,
        /// The event's template key.
        event: String,
    },
    /// The patient (by SMS).
    Patient {
        /// The event's template key.
        event: String,
    },
    /// The receiving doctor of a referral.
    Receiver {
        /// The user.
        user: i64,
        /// The event's template key.
        event: String,
    },
    /// The consultation or referral centre's staff (by role).
    Centre {
        /// The role that should act next.
        role: Role,
        /// The event's template key.
        event: String,
    },
}

/// Why an action was refused. The workflow is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The action does not apply in the current state.
    #[error("{action} is not allowed when the application is {state}")]
    State {
        /// The action.
        action: &'static str,
        /// The current state.
        state: &'static str,
    },
    /// This actor may not take this action here.
    #[error("{action} is not allowed for this user ({reason})")]
    Forbidden {
        /// The action.
        action: &'static str,
        /// Why not.
        reason: String,
    },
    /// A field of the action or the application is missing or invalid.
    #[error("{field}: {message}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

pub(crate) fn field(field: &'static str, message: impl Into<String>) -> Refusal {
    Refusal::Field {
        field,
        message: message.into(),
    }
}

pub(crate) fn forbidden(action: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal::Forbidden {
        action,
        reason: reason.into(),
    }
}

/// A reason or feedback text: present, not blank, at most 2000 characters.
/// The kinds of clinical record item a consultation or referral shares, item by item.
pub const RECORD_KINDS: [&str; 6] = [
    "encounter",
    "order",
    "lab",
    "exam_report",
    "document",
    "diagnosis",
];

/// The most record items one case shares.
pub const MAX_RECORD_ITEMS: usize = 200;

/// Checks the record items a case shares: each `kind:id`, the kind one of [`RECORD_KINDS`],
/// the id a row's number, or for `lab` the analyte's code (its whole series and trend).
/// Duplicates are dropped, order kept.
pub fn check_records(items: Vec<String>) -> Result<Vec<String>, Refusal> {
    if items.len() > MAX_RECORD_ITEMS {
        return Err(field(
            "records",
            format!("at most {MAX_RECORD_ITEMS} items"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let item = item.trim().to_owned();
        let Some((kind, id)) = item.split_once(':') else {
            return Err(field(
                "records",
                format!("{item:?} is not kind:id (e.g. lab:2345-7, exam_report:12)"),
            ));
        };
        if !RECORD_KINDS.contains(&kind) {
            return Err(field(
                "records",
                format!("{item:?}: the kind is one of {}", RECORD_KINDS.join(", ")),
            ));
        }
        let ok = if kind == "lab" {
            !id.is_empty() && id.chars().count() <= 64 && !id.chars().any(char::is_whitespace)
        } else {
            id.parse::<u64>().is_ok_and(|n| n > 0)
        };
        if !ok {
            return Err(field(
                "records",
                format!("{item:?}: the id is a row number (a lab's is its analyte code)"),
            ));
        }
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Ok(out)
}

pub(crate) fn reason(name: &'static str, text: &str) -> Result<String, Refusal> {
    let t = text.trim();
    if t.is_empty() {
        return Err(field(name, "is required"));
    }
    if t.chars().count() > 2000 {
        return Err(field(name, "is longer than 2000 characters"));
    }
    Ok(t.to_owned())
}

/// Whether `code` has the shape of an ICD-10 code: a letter, two digits, and optionally a
/// point and one to four more characters (e.g. `I63.9`, `C34.1`, `J18`).
pub fn is_icd10(code: &str) -> bool {
    let b = code.as_bytes();
    if b.len() < 3 || !b[0].is_ascii_uppercase() || !b[1].is_ascii_digit() {
        return false;
    }
    if !(b[2].is_ascii_digit() || (b[0] == b'U' && b[2].is_ascii_uppercase())) {
        return false;
    }
    match &b[3..] {
        [] => true,
        [b'.', rest @ ..] => {
            (1..=4).contains(&rest.len()) && rest.iter().all(|c| c.is_ascii_alphanumeric())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn record_items_are_kind_and_id() {
        let ok = super::check_records(vec![
            "lab:2345-7".into(),
            " exam_report:12".into(),
            "lab:2345-7".into(),
        ])
        .unwrap();
        assert_eq!(ok, ["lab:2345-7", "exam_report:12"]);
        for bad in ["lab", "x-ray:1", "order:0", "order:abc", "lab:", "lab:a b"] {
            let e = super::check_records(vec![bad.into()]).unwrap_err();
            assert!(
                matches!(
                    &e,
                    super::Refusal::Field {
                        field: "records",
                        ..
                    }
                ),
                "{bad}: {e:?}"
            );
        }
        assert!(super::check_records(vec!["order:1".into(); 201]).is_err());
    }
}

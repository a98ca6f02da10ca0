//! The referral workflow, up (clinic to hospital) and down (hospital to clinic): draft →
//! submitted → QC passed (or rejected, fixed and resubmitted) → assigned to a receiving
//! department or doctor → accepted (or refused with feedback, then reassigned) → arrived →
//! closed; cancellation before arrival. Submitting grants the receiving side time-limited
//! read access to the shared records and images.

use serde::{Deserialize, Serialize};

use crate::{Actor, Event, MINUTE, Millis, Notice, Refusal, Role, field, forbidden, is_icd10};

/// Which way the patient goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From a clinic to the hospital.
    Up,
    /// From the hospital back to a clinic.
    Down,
}

/// Where a referral is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferralState {
    /// Being written.
    Draft,
    /// Waiting for quality control.
    Submitted,
    /// Sent back by quality control.
    Rejected,
    /// Passed quality control; waiting for the referral centre to assign it.
    QcPassed,
    /// Assigned to a receiving department (and perhaps doctor).
    Assigned,
    /// The receiving side refused it with feedback; the centre reassigns it.
    Refused,
    /// The receiving side accepted it; the admission slip can be printed.
    Accepted,
    /// The patient arrived.
    Arrived,
    /// Finished.
    Closed,
    /// Withdrawn.
    Cancelled,
}

impl ReferralState {
    /// The state's name as the API shows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Submitted => "submitted",
            Self::Rejected => "rejected",
            Self::QcPassed => "qc_passed",
            Self::Assigned => "assigned",
            Self::Refused => "refused",
            Self::Accepted => "accepted",
            Self::Arrived => "arrived",
            Self::Closed => "closed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more can happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Closed | Self::Cancelled)
    }
}

/// What someone does to a referral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ReferralAction {
    /// The referring doctor sends it.
    Submit,
    /// Quality control lets it through.
    QcPass,
    /// Quality control sends it back.
    QcReject {
        /// What must be fixed.
        reason: String,
    },
    /// The referral centre assigns the receiving side.
    Assign {
        /// The receiving institution.
        institution: i64,
        /// The receiving department.
        department: i64,
        /// The receiving doctor, when one is chosen.
        doctor: Option<i64>,
    },
    /// The receiving side accepts.
    Accept,
    /// The receiving side refuses, saying why.
    Refuse {
        /// Feedback to the referring doctor and the centre.
        feedback: String,
    },
    /// The receiving side records the patient's arrival.
    Arrive,
    /// The receiving side or the centre closes it.
    Close,
    /// The referring doctor or the centre withdraws it before arrival.
    Cancel {
        /// Why.
        reason: String,
    },
}

impl ReferralAction {
    /// The action's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::QcPass => "qc_pass",
            Self::QcReject { .. } => "qc_reject",
            Self::Assign { .. } => "assign",
            Self::Accept => "accept",
            Self::Refuse { .. } => "refuse",
            Self::Arrive => "arrive",
            Self::Close => "close",
            Self::Cancel { .. } => "cancel",
        }
    }
}

/// A referral and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    /// Up or down.
    pub direction: Direction,
    /// The referring doctor.
    pub applicant: i64,
    /// The referring institution.
    pub institution: i64,
    /// Why the patient is referred.
    pub reason: String,
    /// The diagnosis, ICD-10.
    pub diagnosis: String,
    /// Imaging studies shared with the receiving side (Study Instance UIDs).
    #[serde(default)]
    pub studies: Vec<String>,
    /// Clinical record items shared with the receiving side (`kind:id`).
    #[serde(default)]
    pub records: Vec<String>,
    /// How long the receiving side may read the shared records, from submission.
    pub grant_minutes: i64,
    /// Until when the shared records may be read (set on submission).
    pub grant_until: Option<Millis>,
    /// Where it stands.
    pub state: ReferralState,
    /// The receiving institution, department and doctor once assigned.
    pub receiver: Option<(i64, i64, Option<i64>)>,
    /// The institution and department the referring doctor proposes (the centre decides).
    #[serde(default)]
    pub proposed: Option<(i64, i64)>,
    /// Every transition, oldest first.
    pub history: Vec<Event>,
}

impl Referral {
    /// A new draft by `applicant`, sharing records for `grant_minutes` after submission.
    pub fn draft(
        applicant: &Actor,
        direction: Direction,
        grant_minutes: i64,
    ) -> Result<Self, Refusal> {
        if !matches!(applicant.role, Role::Doctor | Role::Expert) {
            return Err(forbidden("create", "only doctors refer patients"));
        }
        if !(60..=90 * 24 * 60).contains(&grant_minutes) {
            return Err(field("grant_minutes", "must be between 1 hour and 90 days"));
        }
        Ok(Self {
            direction,
            applicant: applicant.user,
            institution: applicant.institution,
            reason: String::new(),
            diagnosis: String::new(),
            studies: Vec::new(),
            records: Vec::new(),
            grant_minutes,
            grant_until: None,
            state: ReferralState::Draft,
            receiver: None,
            proposed: None,
            history: Vec::new(),
        })
    }

    /// Whether `actor` may read the shared records at `now`: the referring side always, the
    /// receiving institution while the grant lasts.
    pub fn may_read_records(&self, actor: &Actor, now: Millis) -> bool {
        if actor.user == self.applicant || actor.role == Role::ReferralStaff {
            return true;
        }
        matches!(self.receiver, Some((inst, _, _)) if inst == actor.institution)
            && self.grant_until.is_some_and(|until| now < until)
    }

    fn is_receiver(&self, actor: &Actor) -> bool {
        match self.receiver {
            Some((inst, _, Some(doctor))) => {
                actor.institution == inst
                    && (actor.user == doctor || actor.role == Role::ReferralStaff)
            }
            Some((inst, _, None)) => {
                actor.institution == inst
                    && matches!(
                        actor.role,
                        Role::Doctor | Role::Expert | Role::ReferralStaff
                    )
            }
            None => false,
        }
    }

    /// Applies `action` by `actor` at `now`; a refusal leaves the referral unchanged.
    pub fn apply(
        &mut self,
        actor: &Actor,
        action: ReferralAction,
        now: Millis,
    ) -> Result<Vec<Notice>, Refusal> {
        use ReferralState as S;
        let name = action.name();
        let from = self.state;
        let wrong_state = || Refusal::State {
            action: name,
            state: from.name(),
        };
        let is_applicant =
            actor.user == self.applicant && matches!(actor.role, Role::Doctor | Role::Expert);
        let centre = actor.role == Role::ReferralStaff;
        let receiver = self.is_receiver(actor);
        let mut why = None;
        let mut notices = Vec::new();
        let to = match action {
            ReferralAction::Submit => {
                if !matches!(from, S::Draft | S::Rejected) {
                    return Err(wrong_state());
                }
                if !is_applicant {
                    return Err(forbidden(name, "only the referring doctor submits"));
                }
                crate::reason("reason", &self.reason)?;
                if !is_icd10(self.diagnosis.trim()) {
                    return Err(field(
                        "diagnosis",
                        format!("{:?} is not an ICD-10 code", self.diagnosis),
                    ));
                }
                self.grant_until = Some(now + self.grant_minutes * MINUTE);
                notices.push(Notice::Centre {
                    role: Role::ReferralStaff,
                    event: "referral_submitted".into(),
                });
                S::Submitted
            }
            ReferralAction::QcPass | ReferralAction::QcReject { .. } => {
                if from != S::Submitted {
                    return Err(wrong_state());
                }
                if !matches!(actor.role, Role::QcReviewer | Role::ReferralStaff) {
                    return Err(forbidden(name, "quality control is for reviewers"));
                }
                if let ReferralAction::QcReject { reason } = &action {
                    why = Some(crate::reason("reason", reason)?);
                    notices.push(Notice::Applicant {
                        user: self.applicant,
                        event: "referral_rejected".into(),
                    });
                    S::Rejected
                } else {
                    S::QcPassed
                }
            }
            ReferralAction::Assign {
                institution,
                department,
                doctor,
            } => {
                if !matches!(from, S::QcPassed | S::Refused) {
                    return Err(wrong_state());
                }
                if !centre {
                    return Err(forbidden(name, "the referral centre assigns"));
                }
                if institution == self.institution {
                    return Err(field(
                        "institution",
                        "a referral goes to another institution",
                    ));
                }
                if let Some(d) = doctor {
                    notices.push(Notice::Receiver {
                        user: d,
                        event: "referral_assigned".into(),
                    });
                }
                self.receiver = Some((institution, department, doctor));
                S::Assigned
            }
            ReferralAction::Accept | ReferralAction::Refuse { .. } => {
                if from != S::Assigned {
                    return Err(wrong_state());
                }
                if !receiver {
                    return Err(forbidden(name, "only the receiving side answers"));
                }
                notices.push(Notice::Applicant {
                    user: self.applicant,
                    event: format!(
                        "referral_{}",
                        if name == "accept" {
                            "accepted"
                        } else {
                            "refused"
                        }
                    ),
                });
                if let ReferralAction::Refuse { feedback } = &action {
                    why = Some(crate::reason("feedback", feedback)?);
                    notices.push(Notice::Centre {
                        role: Role::ReferralStaff,
                        event: "referral_refused".into(),
                    });
                    S::Refused
                } else {
                    notices.push(Notice::Patient {
                        event: "referral_accepted".into(),
                    });
                    S::Accepted
                }
            }
            ReferralAction::Arrive => {
                if from != S::Accepted {
                    return Err(wrong_state());
                }
                if !receiver {
                    return Err(forbidden(name, "the receiving side records the arrival"));
                }
                S::Arrived
            }
            ReferralAction::Close => {
                if from != S::Arrived {
                    return Err(wrong_state());
                }
                if !(receiver || centre) {
                    return Err(forbidden(name, "the receiving side or the centre closes"));
                }
                S::Closed
            }
            ReferralAction::Cancel { reason } => {
                if !(is_applicant || centre) {
                    return Err(forbidden(
                        name,
                        "the referring doctor or the centre cancels",
                    ));
                }
                if !matches!(
                    from,
                    S::Draft
                        | S::Submitted
                        | S::Rejected
                        | S::QcPassed
                        | S::Assigned
                        | S::Refused
                        | S::Accepted
                ) {
                    return Err(wrong_state());
                }
                why = Some(crate::reason("reason", &reason)?);
                if let Some((_, _, Some(d))) = self.receiver {
                    notices.push(Notice::Receiver {
                        user: d,
                        event: "referral_cancelled".into(),
                    });
                }
                // The receiving side's access ends with the referral.
                self.grant_until = self.grant_until.map(|g| g.min(now));
                S::Cancelled
            }
        };
        self.state = to;
        self.history.push(Event {
            from: from.name().to_owned(),
            to: to.name().to_owned(),
            action: name.to_owned(),
            by: actor.user,
            role: actor.role,
            at: now,
            why,
        });
        Ok(notices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLINIC_DOCTOR: Actor = Actor {
        user: 1,
        role: Role::Doctor,
        institution: 20,
    };
    const CENTRE: Actor = Actor {
        user: 2,
        role: Role::ReferralStaff,
        institution: 1,
    };
    const HOSPITAL_DOCTOR: Actor = Actor {
        user: 3,
        role: Role::Doctor,
        institution: 1,
    };
    const OTHER_HOSPITAL_DOCTOR: Actor = Actor {
        user: 4,
        role: Role::Doctor,
        institution: 1,
    };
    const OTHER_CLINIC_DOCTOR: Actor = Actor {
        user: 5,
        role: Role::Doctor,
        institution: 21,
    };
    const HOUR: Millis = 60 * MINUTE;

    fn referral() -> Referral {
        let mut r = Referral::draft(&CLINIC_DOCTOR, Direction::Up, 72 * 60).unwrap();
        r.reason = "疑似脑梗，需上级医院进一步检查".into();
        r.diagnosis = "I63.9".into();
        r
    }

    fn assign(doctor: Option<i64>) -> ReferralAction {
        ReferralAction::Assign {
            institution: 1,
            department: 7,
            doctor,
        }
    }

    #[test]
    fn up_referral_journey_with_a_refusal_and_reassignment() {
        let mut r = referral();
        r.apply(&CLINIC_DOCTOR, ReferralAction::Submit, 0).unwrap();
        assert_eq!(r.grant_until, Some(72 * HOUR));
        r.apply(&CENTRE, ReferralAction::QcPass, 1).unwrap();
        r.apply(&CENTRE, assign(Some(4)), 2).unwrap();
        // Only the assigned doctor answers.
        assert!(matches!(
            r.apply(&HOSPITAL_DOCTOR, ReferralAction::Accept, 3),
            Err(Refusal::Forbidden { .. })
        ));
        let n = r
            .apply(
                &OTHER_HOSPITAL_DOCTOR,
                ReferralAction::Refuse {
                    feedback: "床位已满".into(),
                },
                3,
            )
            .unwrap();
        assert!(n.contains(&Notice::Centre {
            role: Role::ReferralStaff,
            event: "referral_refused".into()
        }));
        r.apply(&CENTRE, assign(Some(3)), 4).unwrap();
        let n = r
            .apply(&HOSPITAL_DOCTOR, ReferralAction::Accept, 5)
            .unwrap();
        assert!(n.contains(&Notice::Patient {
            event: "referral_accepted".into()
        }));
        r.apply(&HOSPITAL_DOCTOR, ReferralAction::Arrive, 6)
            .unwrap();
        r.apply(&HOSPITAL_DOCTOR, ReferralAction::Close, 7).unwrap();
        assert_eq!(r.state, ReferralState::Closed);
        assert_eq!(r.history[3].why.as_deref(), Some("床位已满"));
    }

    #[test]
    fn the_records_grant_is_time_limited_and_ends_with_a_cancellation() {
        let mut r = referral();
        assert!(!r.may_read_records(&HOSPITAL_DOCTOR, 0));
        r.apply(&CLINIC_DOCTOR, ReferralAction::Submit, 0).unwrap();
        r.apply(&CENTRE, ReferralAction::QcPass, 1).unwrap();
        r.apply(&CENTRE, assign(None), 2).unwrap();
        assert!(r.may_read_records(&HOSPITAL_DOCTOR, 71 * HOUR));
        assert!(!r.may_read_records(&HOSPITAL_DOCTOR, 72 * HOUR));
        assert!(!r.may_read_records(&OTHER_CLINIC_DOCTOR, HOUR));
        assert!(r.may_read_records(&CLINIC_DOCTOR, 100 * HOUR));
        // Unassigned doctor: any doctor of the receiving institution may answer.
        r.apply(
            &CLINIC_DOCTOR,
            ReferralAction::Cancel {
                reason: "患者拒绝转诊".into(),
            },
            HOUR,
        )
        .unwrap();
        assert!(!r.may_read_records(&HOSPITAL_DOCTOR, HOUR + 1));
    }

    #[test]
    fn bad_input_is_named() {
        assert!(matches!(
            Referral::draft(&CLINIC_DOCTOR, Direction::Down, 5),
            Err(Refusal::Field {
                field: "grant_minutes",
                ..
            })
        ));
        let mut r = referral();
        r.diagnosis = "x".into();
        assert!(matches!(
            r.apply(&CLINIC_DOCTOR, ReferralAction::Submit, 0),
            Err(Refusal::Field {
                field: "diagnosis",
                ..
            })
        ));
        r.diagnosis = "I63".into();
        r.apply(&CLINIC_DOCTOR, ReferralAction::Submit, 0).unwrap();
        r.apply(&CENTRE, ReferralAction::QcPass, 0).unwrap();
        assert!(matches!(
            r.apply(
                &CENTRE,
                ReferralAction::Assign {
                    institution: 20,
                    department: 1,
                    doctor: None
                },
                0
            ),
            Err(Refusal::Field {
                field: "institution",
                ..
            })
        ));
    }

    fn allowed(from: &str, action: &str, to: &str) -> bool {
        matches!(
            (from, action, to),
            ("draft" | "rejected", "submit", "submitted")
                | ("submitted", "qc_pass", "qc_passed")
                | ("submitted", "qc_reject", "rejected")
                | ("qc_passed" | "refused", "assign", "assigned")
                | ("assigned", "accept", "accepted")
                | ("assigned", "refuse", "refused")
                | ("accepted", "arrive", "arrived")
                | ("arrived", "close", "closed")
                | (
                    "draft"
                        | "submitted"
                        | "rejected"
                        | "qc_passed"
                        | "assigned"
                        | "refused"
                        | "accepted",
                    "cancel",
                    "cancelled"
                )
        )
    }

    fn any_action() -> impl Strategy<Value = ReferralAction> {
        prop_oneof![
            Just(ReferralAction::Submit),
            Just(ReferralAction::QcPass),
            "[a-z ]{0,2}".prop_map(|reason| ReferralAction::QcReject { reason }),
            (
                prop::sample::select(vec![1i64, 20]),
                prop::option::of(3i64..5)
            )
                .prop_map(|(institution, doctor)| ReferralAction::Assign {
                    institution,
                    department: 7,
                    doctor
                }),
            Just(ReferralAction::Accept),
            "[a-z ]{0,2}".prop_map(|feedback| ReferralAction::Refuse { feedback }),
            Just(ReferralAction::Arrive),
            Just(ReferralAction::Close),
            "[a-z ]{0,2}".prop_map(|reason| ReferralAction::Cancel { reason }),
        ]
    }

    proptest! {
        #[test]
        fn random_sequences_keep_the_rules(
            steps in prop::collection::vec(
                (
                    prop::sample::select(vec![
                        CLINIC_DOCTOR, CENTRE, HOSPITAL_DOCTOR, OTHER_HOSPITAL_DOCTOR,
                        OTHER_CLINIC_DOCTOR,
                    ]),
                    any_action(),
                    0i64..HOUR,
                ),
                1..60,
            )
        ) {
            let mut r = referral();
            let mut now = 0;
            for (actor, action, dt) in steps {
                now += dt;
                let before = r.clone();
                match r.apply(&actor, action, now) {
                    Ok(_) => {
                        prop_assert!(!before.state.is_final());
                        let e = r.history.last().unwrap();
                        prop_assert!(allowed(&e.from, &e.action, &e.to), "{:?}", e);
                        prop_assert_eq!(r.history.len(), before.history.len() + 1);
                    }
                    Err(_) => prop_assert_eq!(&r, &before),
                }
                // Nobody outside the two sides ever reads the records.
                prop_assert!(!r.may_read_records(&OTHER_CLINIC_DOCTOR, now));
            }
        }
    }
}

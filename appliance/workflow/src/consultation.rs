//! The consultation workflow: draft → submitted → QC passed (or rejected with reasons, fixed
//! and resubmitted) → scheduled → in progress → report drafted → signed → closed, with
//! cancellation before the consultation starts. A signed report that must change goes back to
//! drafted as a new version (the signed one is kept by the shell).

use serde::{Deserialize, Serialize};

use crate::{Actor, Event, MINUTE, Millis, Notice, Refusal, Role, field, forbidden, is_icd10};

/// How the consultation happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsultationKind {
    /// One or more experts by video.
    Remote,
    /// A multi-disciplinary team: two experts or more.
    Mdt,
    /// An expert on a phone or pad, at a time of their choosing.
    Mobile,
}

/// How experts are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A free slot of an expert's schedule is booked.
    Appointment,
    /// The applicant names the experts.
    Named,
}

/// Where a consultation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsultationState {
    /// Being written by the applicant.
    Draft,
    /// Waiting for quality control.
    Submitted,
    /// Sent back by quality control with reasons.
    Rejected,
    /// Passed quality control; waiting to be scheduled.
    QcPassed,
    /// Has a time, experts and a room.
    Scheduled,
    /// Someone has checked in.
    InProgress,
    /// A report is being written.
    ReportDrafted,
    /// The report is signed.
    Signed,
    /// Finished.
    Closed,
    /// Withdrawn before it started.
    Cancelled,
}

impl ConsultationState {
    /// The state's name as the API shows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Submitted => "submitted",
            Self::Rejected => "rejected",
            Self::QcPassed => "qc_passed",
            Self::Scheduled => "scheduled",
            Self::InProgress => "in_progress",
            Self::ReportDrafted => "report_drafted",
            Self::Signed => "signed",
            Self::Closed => "closed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Every state.
    pub const ALL: [ConsultationState; 10] = [
        Self::Draft,
        Self::Submitted,
        Self::Rejected,
        Self::QcPassed,
        Self::Scheduled,
        Self::InProgress,
        Self::ReportDrafted,
        Self::Signed,
        Self::Closed,
        Self::Cancelled,
    ];

    /// Whether nothing more can happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Closed | Self::Cancelled)
    }
}

/// What someone does to a consultation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ConsultationAction {
    /// The applicant sends the application (again, after a rejection).
    Submit,
    /// Quality control lets it through.
    QcPass,
    /// Quality control sends it back.
    QcReject {
        /// What must be fixed (at least one).
        reasons: Vec<String>,
    },
    /// The centre sets (or moves) the time, the experts and the room.
    Schedule {
        /// When it starts.
        at: Millis,
        /// The experts' user ids.
        experts: Vec<i64>,
        /// The video room's name.
        room: String,
    },
    /// An expert or the applicant joins (from 30 minutes before the time).
    CheckIn,
    /// An expert saves the report draft.
    DraftReport,
    /// An expert signs the report.
    Sign,
    /// An expert reopens a signed report; the next signature makes a new version.
    Amend {
        /// Why.
        reason: String,
    },
    /// The centre or the applicant closes a signed consultation.
    Close,
    /// The applicant or the centre withdraws it before it starts.
    Cancel {
        /// Why.
        reason: String,
    },
}

impl ConsultationAction {
    /// The action's name, as in the API and the history.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::QcPass => "qc_pass",
            Self::QcReject { .. } => "qc_reject",
            Self::Schedule { .. } => "schedule",
            Self::CheckIn => "check_in",
            Self::DraftReport => "draft_report",
            Self::Sign => "sign",
            Self::Amend { .. } => "amend",
            Self::Close => "close",
            Self::Cancel { .. } => "cancel",
        }
    }
}

fn general() -> String {
    "general".to_owned()
}

/// The specialities a consultation may ask for.
pub const SPECIALITIES: &[&str] = &[
    "general",
    "imaging",
    "pathology",
    "ecg",
    "neurology",
    "cardiology",
    "oncology",
    "paediatrics",
];

/// How soon a consultation is needed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Within days.
    #[default]
    Routine,
    /// Within hours.
    Urgent,
    /// Now.
    Emergency,
}

/// Material attached to an application by reference: what it is and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// "record", "lab" or "study".
    pub kind: String,
    /// The reference in its system (a record number, a lab order, a Study Instance UID).
    pub reference: String,
    /// What it is, for people.
    #[serde(default)]
    pub title: String,
}

/// The fields an applicant writes (and rewrites after a rejection); `None` keeps a field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// Why.
    pub reason: Option<String>,
    /// The question.
    pub question: Option<String>,
    /// ICD-10.
    pub diagnosis: Option<String>,
    /// The speciality.
    pub speciality: Option<String>,
    /// How soon.
    pub urgency: Option<Urgency>,
    /// Named experts.
    pub requested_experts: Option<Vec<i64>>,
    /// The expert's free slot the applicant would like (appointment mode); 0 clears it.
    pub requested_slot: Option<i64>,
    /// Studies (Study Instance UIDs).
    pub studies: Option<Vec<String>>,
    /// Clinical record items shared (`kind:id`, see [`crate::check_records`]).
    pub records: Option<Vec<String>>,
    /// Other attachments.
    pub attachments: Option<Vec<Attachment>>,
}

/// How early before its time a consultation may be joined.
pub const CHECK_IN_WINDOW: Millis = 30 * MINUTE;

/// A consultation application and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consultation {
    /// The applying doctor.
    pub applicant: i64,
    /// The applicant's institution.
    pub institution: i64,
    /// Remote, MDT or mobile.
    pub kind: ConsultationKind,
    /// Appointment or named experts.
    pub mode: Mode,
    /// Why the consultation is asked for.
    pub reason: String,
    /// The question for the experts.
    pub question: String,
    /// The working diagnosis, ICD-10.
    pub diagnosis: String,
    /// Experts the applicant asks for (named mode; in appointment mode, the slot's expert).
    pub requested_experts: Vec<i64>,
    /// The expert's slot the applicant would like (appointment mode); the centre books it.
    #[serde(default)]
    pub requested_slot: Option<i64>,
    /// Imaging studies attached by reference (Study Instance UIDs).
    #[serde(default)]
    pub studies: Vec<String>,
    /// Clinical record items shared with the experts (`kind:id`).
    #[serde(default)]
    pub records: Vec<String>,
    /// The speciality asked: general, imaging, pathology, ecg...
    #[serde(default = "general")]
    pub speciality: String,
    /// How soon.
    #[serde(default)]
    pub urgency: Urgency,
    /// Other material attached by reference (records, labs).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Where it stands.
    pub state: ConsultationState,
    /// The experts once scheduled.
    pub experts: Vec<i64>,
    /// The time once scheduled.
    pub scheduled_at: Option<Millis>,
    /// The video room once scheduled.
    pub room: Option<String>,
    /// The report's version: 1 for the first, one more after each amendment.
    pub report_version: u32,
    /// Every transition, oldest first.
    pub history: Vec<Event>,
}

impl Consultation {
    /// A new draft by `applicant`.
    pub fn draft(applicant: &Actor, kind: ConsultationKind, mode: Mode) -> Result<Self, Refusal> {
        if applicant.role != Role::Doctor && applicant.role != Role::Expert {
            return Err(forbidden(
                "create",
                "only doctors and experts apply for consultations",
            ));
        }
        Ok(Self {
            applicant: applicant.user,
            institution: applicant.institution,
            kind,
            mode,
            reason: String::new(),
            question: String::new(),
            diagnosis: String::new(),
            requested_experts: Vec::new(),
            requested_slot: None,
            studies: Vec::new(),
            records: Vec::new(),
            speciality: general(),
            urgency: Urgency::Routine,
            attachments: Vec::new(),
            state: ConsultationState::Draft,
            experts: Vec::new(),
            scheduled_at: None,
            room: None,
            report_version: 1,
            history: Vec::new(),
        })
    }

    /// Applies `action` by `actor` at `now`: the new state is recorded in the history and the
    /// notices say whom to tell. A refusal leaves the consultation unchanged.
    pub fn apply(
        &mut self,
        actor: &Actor,
        action: ConsultationAction,
        now: Millis,
    ) -> Result<Vec<Notice>, Refusal> {
        use ConsultationState as S;
        let name = action.name();
        let from = self.state;
        let wrong_state = || Refusal::State {
            action: name,
            state: from.name(),
        };
        let is_applicant =
            actor.user == self.applicant && matches!(actor.role, Role::Doctor | Role::Expert);
        let is_expert = actor.role == Role::Expert && self.experts.contains(&actor.user);
        let centre = matches!(actor.role, Role::Coordinator);
        let mut why = None;
        let mut notices = Vec::new();
        let event = |e: &str| e.to_owned();
        let to = match action {
            ConsultationAction::Submit => {
                if !matches!(from, S::Draft | S::Rejected) {
                    return Err(wrong_state());
                }
                if !is_applicant {
                    return Err(forbidden(name, "only the applicant submits"));
                }
                self.check_application()?;
                notices.push(Notice::Centre {
                    role: Role::QcReviewer,
                    event: event("consultation_submitted"),
                });
                S::Submitted
            }
            ConsultationAction::QcPass | ConsultationAction::QcReject { .. } => {
                if from != S::Submitted {
                    return Err(wrong_state());
                }
                if !matches!(actor.role, Role::QcReviewer | Role::Coordinator) {
                    return Err(forbidden(name, "quality control is for reviewers"));
                }
                if let ConsultationAction::QcReject { reasons } = &action {
                    let reasons: Vec<String> = reasons
                        .iter()
                        .map(|r| r.trim().to_owned())
                        .filter(|r| !r.is_empty())
                        .collect();
                    if reasons.is_empty() {
                        return Err(field("reasons", "at least one reason is required"));
                    }
                    why = Some(crate::reason("reasons", &reasons.join("; "))?);
                    notices.push(Notice::Applicant {
                        user: self.applicant,
                        event: event("consultation_rejected"),
                    });
                    S::Rejected
                } else {
                    notices.push(Notice::Centre {
                        role: Role::Coordinator,
                        event: event("consultation_qc_passed"),
                    });
                    S::QcPassed
                }
            }
            ConsultationAction::Schedule { at, experts, room } => {
                if !matches!(from, S::QcPassed | S::Scheduled) {
                    return Err(wrong_state());
                }
                if !centre {
                    return Err(forbidden(name, "the consultation centre schedules"));
                }
                if at <= now {
                    return Err(field("at", "must be in the future"));
                }
                let mut experts = experts;
                experts.sort_unstable();
                experts.dedup();
                if experts.is_empty() {
                    return Err(field("experts", "at least one expert is required"));
                }
                if self.kind == ConsultationKind::Mdt && experts.len() < 2 {
                    return Err(field(
                        "experts",
                        "an MDT consultation needs two experts or more",
                    ));
                }
                if self.mode == Mode::Named
                    && !self.requested_experts.iter().all(|e| experts.contains(e))
                {
                    return Err(field(
                        "experts",
                        "a named consultation includes every expert the applicant named",
                    ));
                }
                let room = room.trim().to_owned();
                if room.is_empty() {
                    return Err(field("room", "is required"));
                }
                if from == S::Scheduled {
                    why = Some("rescheduled".to_owned());
                }
                for &e in &experts {
                    notices.push(Notice::Expert {
                        user: e,
                        event: event("consultation_scheduled"),
                    });
                }
                notices.push(Notice::Applicant {
                    user: self.applicant,
                    event: event("consultation_scheduled"),
                });
                notices.push(Notice::Patient {
                    event: event("consultation_scheduled"),
                });
                self.experts = experts;
                self.scheduled_at = Some(at);
                self.room = Some(room);
                S::Scheduled
            }
            ConsultationAction::CheckIn => {
                if from != S::Scheduled {
                    return Err(wrong_state());
                }
                if !(is_expert || is_applicant) {
                    return Err(forbidden(name, "only its experts and applicant join"));
                }
                let at = self.scheduled_at.unwrap_or(now);
                if now < at - CHECK_IN_WINDOW {
                    return Err(field(
                        "at",
                        "check-in opens 30 minutes before the scheduled time",
                    ));
                }
                S::InProgress
            }
            ConsultationAction::DraftReport => {
                if !matches!(from, S::InProgress | S::ReportDrafted) {
                    return Err(wrong_state());
                }
                if !is_expert {
                    return Err(forbidden(name, "only its experts write the report"));
                }
                S::ReportDrafted
            }
            ConsultationAction::Sign => {
                if from != S::ReportDrafted {
                    return Err(wrong_state());
                }
                if !is_expert {
                    return Err(forbidden(name, "only its experts sign"));
                }
                notices.push(Notice::Applicant {
                    user: self.applicant,
                    event: event("consultation_report_signed"),
                });
                S::Signed
            }
            ConsultationAction::Amend { reason } => {
                if from != S::Signed {
                    return Err(wrong_state());
                }
                if !is_expert {
                    return Err(forbidden(name, "only its experts amend the report"));
                }
                why = Some(crate::reason("reason", &reason)?);
                self.report_version += 1;
                S::ReportDrafted
            }
            ConsultationAction::Close => {
                if from != S::Signed {
                    return Err(wrong_state());
                }
                if !(centre || is_applicant) {
                    return Err(forbidden(name, "the centre or the applicant closes"));
                }
                S::Closed
            }
            ConsultationAction::Cancel { reason } => {
                let allowed = if is_applicant {
                    matches!(
                        from,
                        S::Draft | S::Submitted | S::Rejected | S::QcPassed | S::Scheduled
                    )
                } else if centre {
                    matches!(from, S::Submitted | S::QcPassed | S::Scheduled)
                } else {
                    return Err(forbidden(name, "the applicant or the centre cancels"));
                };
                if !allowed {
                    return Err(wrong_state());
                }
                why = Some(crate::reason("reason", &reason)?);
                if from == S::Scheduled {
                    for &e in &self.experts {
                        notices.push(Notice::Expert {
                            user: e,
                            event: event("consultation_cancelled"),
                        });
                    }
                }
                if !is_applicant {
                    notices.push(Notice::Applicant {
                        user: self.applicant,
                        event: event("consultation_cancelled"),
                    });
                }
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

    /// The applicant rewrites the application while it is a draft or after a rejection; the
    /// change is recorded (action `revise`). Shapes are checked now, completeness at submission.
    pub fn revise(&mut self, actor: &Actor, a: Application, now: Millis) -> Result<(), Refusal> {
        use ConsultationState as S;
        if !matches!(self.state, S::Draft | S::Rejected) {
            return Err(Refusal::State {
                action: "revise",
                state: self.state.name(),
            });
        }
        if !(actor.user == self.applicant && matches!(actor.role, Role::Doctor | Role::Expert)) {
            return Err(forbidden(
                "revise",
                "only the applicant revises the application",
            ));
        }
        let mut next = self.clone();
        let long = |name: &'static str, t: &str| {
            if t.chars().count() > 2000 {
                Err(field(name, "is longer than 2000 characters"))
            } else {
                Ok(t.trim().to_owned())
            }
        };
        if let Some(t) = a.reason {
            next.reason = long("reason", &t)?;
        }
        if let Some(t) = a.question {
            next.question = long("question", &t)?;
        }
        if let Some(d) = a.diagnosis {
            let d = d.trim().to_owned();
            if !d.is_empty() && !is_icd10(&d) {
                return Err(field(
                    "diagnosis",
                    format!("{d:?} is not an ICD-10 code (e.g. I63.9)"),
                ));
            }
            next.diagnosis = d;
        }
        if let Some(sp) = a.speciality {
            if !SPECIALITIES.contains(&sp.as_str()) {
                return Err(field(
                    "speciality",
                    format!("one of {}", SPECIALITIES.join(", ")),
                ));
            }
            next.speciality = sp;
        }
        if let Some(u) = a.urgency {
            next.urgency = u;
        }
        if let Some(e) = a.requested_experts {
            next.requested_experts = e;
        }
        if let Some(slot) = a.requested_slot {
            if slot != 0 && self.mode != Mode::Appointment {
                return Err(field(
                    "requested_slot",
                    "a slot is chosen for appointment-mode consultations",
                ));
            }
            next.requested_slot = (slot > 0).then_some(slot);
        }
        if let Some(st) = a.studies {
            next.studies = st;
        }
        if let Some(r) = a.records {
            next.records = crate::check_records(r)?;
        }
        if let Some(at) = a.attachments {
            if at.len() > 50 {
                return Err(field("attachments", "at most 50"));
            }
            for x in &at {
                if !matches!(x.kind.as_str(), "record" | "lab" | "study")
                    || x.reference.trim().is_empty()
                {
                    return Err(field(
                        "attachments",
                        "each has a kind (record, lab or study) and a reference",
                    ));
                }
            }
            next.attachments = at;
        }
        next.history.push(Event {
            from: self.state.name().to_owned(),
            to: self.state.name().to_owned(),
            action: "revise".to_owned(),
            by: actor.user,
            role: actor.role,
            at: now,
            why: None,
        });
        *self = next;
        Ok(())
    }

    /// The application's own fields, checked when it is submitted.
    fn check_application(&self) -> Result<(), Refusal> {
        crate::reason("reason", &self.reason)?;
        crate::reason("question", &self.question)?;
        if !is_icd10(self.diagnosis.trim()) {
            return Err(field(
                "diagnosis",
                format!("{:?} is not an ICD-10 code (e.g. I63.9)", self.diagnosis),
            ));
        }
        if self.mode == Mode::Named && self.requested_experts.is_empty() {
            return Err(field(
                "requested_experts",
                "a named consultation names at least one expert",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const APPLICANT: Actor = Actor {
        user: 1,
        role: Role::Doctor,
        institution: 10,
    };
    const QC: Actor = Actor {
        user: 2,
        role: Role::QcReviewer,
        institution: 1,
    };
    const CENTRE: Actor = Actor {
        user: 3,
        role: Role::Coordinator,
        institution: 1,
    };
    const EXPERT: Actor = Actor {
        user: 4,
        role: Role::Expert,
        institution: 1,
    };
    const OTHER_EXPERT: Actor = Actor {
        user: 5,
        role: Role::Expert,
        institution: 1,
    };
    const STRANGER: Actor = Actor {
        user: 6,
        role: Role::Doctor,
        institution: 11,
    };
    const AUDITOR: Actor = Actor {
        user: 7,
        role: Role::AuditAdmin,
        institution: 1,
    };
    const HOUR: Millis = 60 * MINUTE;

    fn application() -> Consultation {
        let mut c = Consultation::draft(&APPLICANT, ConsultationKind::Remote, Mode::Appointment)
            .expect("draft");
        c.reason = "持续头痛两周".into();
        c.question = "是否需要手术？".into();
        c.diagnosis = "I63.9".into();
        c
    }

    fn schedule(at: Millis) -> ConsultationAction {
        ConsultationAction::Schedule {
            at,
            experts: vec![EXPERT.user],
            room: "room-1".into(),
        }
    }

    #[test]
    fn the_whole_journey_with_a_rejection_and_an_amendment() {
        let mut c = application();
        let t = 1_000 * HOUR;
        c.apply(&APPLICANT, ConsultationAction::Submit, t).unwrap();
        let n = c
            .apply(
                &QC,
                ConsultationAction::QcReject {
                    reasons: vec!["缺少影像".into(), " ".into()],
                },
                t + 1,
            )
            .unwrap();
        assert_eq!(
            n,
            vec![Notice::Applicant {
                user: 1,
                event: "consultation_rejected".into()
            }]
        );
        assert_eq!(c.history[1].why.as_deref(), Some("缺少影像"));
        c.apply(&APPLICANT, ConsultationAction::Submit, t + 2)
            .unwrap();
        c.apply(&QC, ConsultationAction::QcPass, t + 3).unwrap();
        let n = c.apply(&CENTRE, schedule(t + 24 * HOUR), t + 4).unwrap();
        assert!(n.contains(&Notice::Expert {
            user: 4,
            event: "consultation_scheduled".into()
        }));
        assert!(n.contains(&Notice::Patient {
            event: "consultation_scheduled".into()
        }));
        // Too early to join; then 20 minutes before.
        let early = c.apply(&EXPERT, ConsultationAction::CheckIn, t + 20 * HOUR);
        assert!(matches!(early, Err(Refusal::Field { field: "at", .. })));
        c.apply(
            &EXPERT,
            ConsultationAction::CheckIn,
            t + 24 * HOUR - 20 * MINUTE,
        )
        .unwrap();
        c.apply(&EXPERT, ConsultationAction::DraftReport, t + 25 * HOUR)
            .unwrap();
        c.apply(&EXPERT, ConsultationAction::Sign, t + 26 * HOUR)
            .unwrap();
        c.apply(
            &EXPERT,
            ConsultationAction::Amend {
                reason: "补充建议".into(),
            },
            t + 27 * HOUR,
        )
        .unwrap();
        assert_eq!(c.report_version, 2);
        c.apply(&EXPERT, ConsultationAction::Sign, t + 28 * HOUR)
            .unwrap();
        c.apply(&CENTRE, ConsultationAction::Close, t + 29 * HOUR)
            .unwrap();
        assert_eq!(c.state, ConsultationState::Closed);
        let path: Vec<&str> = c.history.iter().map(|e| e.to.as_str()).collect();
        assert_eq!(
            path,
            [
                "submitted",
                "rejected",
                "submitted",
                "qc_passed",
                "scheduled",
                "in_progress",
                "report_drafted",
                "signed",
                "report_drafted",
                "signed",
                "closed"
            ]
        );
        assert!(c.history.windows(2).all(|w| w[0].at < w[1].at));
    }

    #[test]
    fn the_applicant_revises_after_a_rejection() {
        let mut c = application();
        c.apply(&APPLICANT, ConsultationAction::Submit, 0).unwrap();
        let reject = ConsultationAction::QcReject {
            reasons: vec!["补充心电图".into()],
        };
        c.apply(&QC, reject, 1).unwrap();
        let fix = Application {
            attachments: Some(vec![Attachment {
                kind: "lab".into(),
                reference: "ECG-2026-1126-07".into(),
                title: "心电图".into(),
            }]),
            urgency: Some(Urgency::Urgent),
            ..Application::default()
        };
        assert!(matches!(
            c.revise(&STRANGER, fix.clone(), 2),
            Err(Refusal::Forbidden { .. })
        ));
        let bad = Application {
            speciality: Some("astrology".into()),
            ..Application::default()
        };
        let before = c.clone();
        assert!(matches!(
            c.revise(&APPLICANT, bad, 2),
            Err(Refusal::Field {
                field: "speciality",
                ..
            })
        ));
        assert_eq!(c, before, "a refused revision changes nothing");
        c.revise(&APPLICANT, fix, 2).unwrap();
        assert_eq!(c.urgency, Urgency::Urgent);
        assert_eq!(c.history.last().unwrap().action, "revise");
        c.apply(&APPLICANT, ConsultationAction::Submit, 3).unwrap();
        // Submitted: no more revisions.
        assert!(matches!(
            c.revise(&APPLICANT, Application::default(), 4),
            Err(Refusal::State { .. })
        ));
    }

    #[test]
    fn submission_names_the_missing_field() {
        let mut c = application();
        c.diagnosis = "headache".into();
        let e = c
            .apply(&APPLICANT, ConsultationAction::Submit, 0)
            .unwrap_err();
        assert!(
            matches!(
                e,
                Refusal::Field {
                    field: "diagnosis",
                    ..
                }
            ),
            "{e}"
        );
        c.diagnosis = "R51".into();
        c.question = "  ".into();
        let e = c
            .apply(&APPLICANT, ConsultationAction::Submit, 0)
            .unwrap_err();
        assert!(
            matches!(
                e,
                Refusal::Field {
                    field: "question",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(c.state, ConsultationState::Draft);
        assert!(c.history.is_empty());
    }

    #[test]
    fn roles_are_checked() {
        let mut c = application();
        assert!(matches!(
            c.apply(&STRANGER, ConsultationAction::Submit, 0),
            Err(Refusal::Forbidden { .. })
        ));
        c.apply(&APPLICANT, ConsultationAction::Submit, 0).unwrap();
        for who in [APPLICANT, EXPERT, STRANGER, AUDITOR] {
            assert!(matches!(
                c.apply(&who, ConsultationAction::QcPass, 1),
                Err(Refusal::Forbidden { .. })
            ));
        }
        c.apply(&QC, ConsultationAction::QcPass, 1).unwrap();
        assert!(matches!(
            c.apply(&QC, schedule(10 * HOUR), 2),
            Err(Refusal::Forbidden { .. })
        ));
        c.apply(&CENTRE, schedule(10 * HOUR), 2).unwrap();
        // An expert not on this consultation cannot join or write its report.
        assert!(matches!(
            c.apply(&OTHER_EXPERT, ConsultationAction::CheckIn, 10 * HOUR),
            Err(Refusal::Forbidden { .. })
        ));
        assert!(
            Consultation::draft(&AUDITOR, ConsultationKind::Remote, Mode::Appointment).is_err()
        );
    }

    #[test]
    fn mdt_and_named_consultations_need_their_experts() {
        let mut c = application();
        c.kind = ConsultationKind::Mdt;
        c.apply(&APPLICANT, ConsultationAction::Submit, 0).unwrap();
        c.apply(&QC, ConsultationAction::QcPass, 1).unwrap();
        let e = c.apply(&CENTRE, schedule(HOUR), 2).unwrap_err();
        assert!(matches!(
            e,
            Refusal::Field {
                field: "experts",
                ..
            }
        ));
        c.apply(
            &CENTRE,
            ConsultationAction::Schedule {
                at: HOUR,
                experts: vec![4, 5, 4],
                room: "mdt".into(),
            },
            2,
        )
        .unwrap();
        assert_eq!(c.experts, vec![4, 5]);

        let mut n = application();
        n.mode = Mode::Named;
        let e = n
            .apply(&APPLICANT, ConsultationAction::Submit, 0)
            .unwrap_err();
        assert!(matches!(
            e,
            Refusal::Field {
                field: "requested_experts",
                ..
            }
        ));
        n.requested_experts = vec![5];
        n.apply(&APPLICANT, ConsultationAction::Submit, 0).unwrap();
        n.apply(&QC, ConsultationAction::QcPass, 1).unwrap();
        let e = n.apply(&CENTRE, schedule(HOUR), 2).unwrap_err();
        assert!(matches!(
            e,
            Refusal::Field {
                field: "experts",
                ..
            }
        ));
    }

    #[test]
    fn cancellation_is_allowed_only_before_the_start() {
        let mut c = application();
        c.apply(&APPLICANT, ConsultationAction::Submit, 0).unwrap();
        c.apply(&QC, ConsultationAction::QcPass, 1).unwrap();
        c.apply(&CENTRE, schedule(HOUR), 2).unwrap();
        let mut started = c.clone();
        let n = c
            .apply(
                &CENTRE,
                ConsultationAction::Cancel {
                    reason: "专家出差".into(),
                },
                3,
            )
            .unwrap();
        assert!(n.contains(&Notice::Expert {
            user: 4,
            event: "consultation_cancelled".into()
        }));
        assert!(n.contains(&Notice::Applicant {
            user: 1,
            event: "consultation_cancelled".into()
        }));
        started
            .apply(&EXPERT, ConsultationAction::CheckIn, HOUR)
            .unwrap();
        let e = started
            .apply(
                &APPLICANT,
                ConsultationAction::Cancel { reason: "x".into() },
                HOUR,
            )
            .unwrap_err();
        assert!(matches!(e, Refusal::State { .. }));
        let e = application()
            .apply(
                &APPLICANT,
                ConsultationAction::Cancel { reason: " ".into() },
                0,
            )
            .unwrap_err();
        assert!(matches!(
            e,
            Refusal::Field {
                field: "reason",
                ..
            }
        ));
    }

    /// Every (from, action name, to) the machine may take.
    fn allowed(from: &str, action: &str, to: &str) -> bool {
        matches!(
            (from, action, to),
            ("draft" | "rejected", "submit", "submitted")
                | ("submitted", "qc_pass", "qc_passed")
                | ("submitted", "qc_reject", "rejected")
                | ("qc_passed" | "scheduled", "schedule", "scheduled")
                | ("scheduled", "check_in", "in_progress")
                | (
                    "in_progress" | "report_drafted",
                    "draft_report",
                    "report_drafted"
                )
                | ("report_drafted", "sign", "signed")
                | ("signed", "amend", "report_drafted")
                | ("signed", "close", "closed")
                | (
                    "draft" | "submitted" | "rejected" | "qc_passed" | "scheduled",
                    "cancel",
                    "cancelled"
                )
        )
    }

    fn any_actor() -> impl Strategy<Value = Actor> {
        prop::sample::select(vec![
            APPLICANT,
            QC,
            CENTRE,
            EXPERT,
            OTHER_EXPERT,
            STRANGER,
            AUDITOR,
        ])
    }

    fn any_action() -> impl Strategy<Value = ConsultationAction> {
        prop_oneof![
            Just(ConsultationAction::Submit),
            Just(ConsultationAction::QcPass),
            prop::collection::vec("[a-z ]{0,3}", 0..3)
                .prop_map(|reasons| ConsultationAction::QcReject { reasons }),
            (0i64..200, prop::collection::vec(3i64..7, 0..3)).prop_map(|(h, experts)| {
                ConsultationAction::Schedule {
                    at: h * HOUR,
                    experts,
                    room: "r".into(),
                }
            }),
            Just(ConsultationAction::CheckIn),
            Just(ConsultationAction::DraftReport),
            Just(ConsultationAction::Sign),
            "[a-z ]{0,3}".prop_map(|reason| ConsultationAction::Amend { reason }),
            Just(ConsultationAction::Close),
            "[a-z ]{0,3}".prop_map(|reason| ConsultationAction::Cancel { reason }),
        ]
    }

    proptest! {
        /// Random actions by random people at increasing times: a refusal changes nothing,
        /// every success adds one history entry along an allowed transition, and a closed or
        /// cancelled consultation refuses everything.
        #[test]
        fn random_sequences_keep_the_rules(
            steps in prop::collection::vec((any_actor(), any_action(), 0i64..3 * HOUR), 1..60)
        ) {
            let mut c = application();
            let mut now = 0;
            for (actor, action, dt) in steps {
                now += dt;
                let before = c.clone();
                match c.apply(&actor, action, now) {
                    Ok(_) => {
                        prop_assert!(!before.state.is_final());
                        prop_assert_eq!(c.history.len(), before.history.len() + 1);
                        let e = c.history.last().unwrap();
                        prop_assert!(allowed(&e.from, &e.action, &e.to), "{:?}", e);
                        prop_assert_eq!(&e.to, c.state.name());
                        prop_assert_eq!(e.by, actor.user);
                    }
                    Err(_) => prop_assert_eq!(&c, &before),
                }
            }
        }
    }
}
